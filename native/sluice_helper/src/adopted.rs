//! One adopted process (see `managed`): held by a pidfd, its life (running or exited) and
//! its stop (`lifecycle::Phase`) as explicit states, and how a signal reaches it: through
//! the pidfd, or to its process group with `group`, whose id is read while the pidfd shows
//! the process running.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgid, Pid};
use sluice_protocol::{ExitStatus, ManageSpec};

use crate::lifecycle::Phase;
use crate::sys;

/// Whether the adopted process still runs, as far as its pidfd tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Running,
    /// It exited (the pidfd polled readable, or it was reaped as an orphan of ours); the
    /// exit went to the owner.
    Exited,
}

/// One adopted process.
pub struct Adopted {
    pub id: u64,
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// `None` once the BEAM closed its end.
    pub channel: Option<OwnedFd>,
    pub life: Life,
    pub phase: Phase,
    pub spec: ManageSpec,
}

fn can_continue(sig: i32) -> bool {
    sig != 0 && sig != libc::SIGKILL && sig != libc::SIGCONT
}

impl Adopted {
    pub fn exited(&self) -> bool {
        self.life == Life::Exited || sys::pidfd_exited(self.pidfd.as_fd())
    }

    /// Its process group, read while the pidfd shows it running and checked again after
    /// the read (a pgid read once it had exited could be another process's); `None` for a
    /// protected group.
    pub fn group(&self, protected: &[i32]) -> Option<i32> {
        let pgid = getpgid(Some(Pid::from_raw(self.pid))).ok()?.as_raw();
        if self.exited() || pgid <= 1 || protected.contains(&pgid) {
            return None;
        }
        Some(pgid)
    }

    /// A signal to the process (through its pidfd), or to its group with `group`.
    /// ESRCH once it has exited: nothing is sent.
    pub fn signal(&self, sig: i32, protected: &[i32]) -> Result<(), Errno> {
        if self.exited() {
            return Err(Errno::ESRCH);
        }
        if self.spec.group {
            if let Some(pgid) = self.group(protected) {
                return sys::kill_group(pgid, sig);
            }
        }
        sys::pidfd_send_signal(self.pidfd.as_fd(), sig)
    }

    /// Stop: `signum` now (and SIGCONT), SIGKILL after `grace`; never moves backwards.
    pub fn stop(&mut self, signum: i32, grace: Duration, protected: &[i32]) {
        if self.exited() {
            return;
        }
        if grace.is_zero() || signum == libc::SIGKILL || self.phase == Phase::Killed {
            return self.kill_now(protected);
        }
        let _ = self.signal(signum, protected);
        if can_continue(signum) {
            let _ = self.signal(libc::SIGCONT, protected);
        }
        let now = Instant::now();
        let due = now
            .checked_add(grace)
            .unwrap_or(now + Duration::from_secs(86400));
        let deadline = match self.phase {
            Phase::Stopping { deadline } => deadline.min(due),
            Phase::Running | Phase::Killed => due,
        };
        self.phase = Phase::Stopping { deadline };
    }

    pub fn kill_now(&mut self, protected: &[i32]) {
        let _ = self.signal(libc::SIGKILL, protected);
        self.phase = Phase::Killed;
    }

    /// Whether the shutdown (the BEAM is gone) stops it: the owner asked for that, or a
    /// stop is under way.
    pub fn stopped_at_shutdown(&self) -> bool {
        !self.exited() && (self.spec.stop_on_owner_exit || self.phase != Phase::Running)
    }
}

/// How an adopted process that polled readable ended: its status if it is a child of the
/// helper program not reaped yet, else unknowable.
pub fn status_of(pidfd: BorrowedFd<'_>) -> ExitStatus {
    match waitid(
        Id::PIDFd(pidfd),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
    ) {
        Ok(WaitStatus::Exited(_, code)) => ExitStatus::Exited(code),
        Ok(WaitStatus::Signaled(_, sig, core)) => ExitStatus::Signaled {
            signum: sig as i32,
            core,
        },
        _ => ExitStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaped_process_is_never_signalled() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let a = Adopted {
            id: 1,
            pid,
            pidfd: sys::pidfd_open(pid).unwrap(),
            channel: None,
            life: Life::Running,
            phase: Phase::Running,
            spec: ManageSpec {
                os_pid: pid,
                ..ManageSpec::default()
            },
        };
        assert_eq!(a.signal(0, &[]), Ok(()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(a.signal(libc::SIGTERM, &[]), Err(Errno::ESRCH));
        assert!(!a.stopped_at_shutdown());
    }
}
