//! Processes the helper program did not start, adopted on a `manage` request. Each is held
//! by a pidfd: every signal goes through `pidfd_send_signal`, so it can never reach a later
//! process that reused the pid, and the exit is noticed when the pidfd polls readable. Its
//! channel works like a started program's: `signal` (answered with `signaled`), `kill` (a
//! stop with escalation), EOF (a stop with the spec's signal and grace when
//! `stop_on_owner_exit`, else the helper program just lets go). Its process group and
//! cgroup are not ours: never changed, and the group is signalled only with `group`.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::{getpgid, Pid};
use sluice_protocol::{DecodeError, ExitStatus, ManageSpec, Reply, Request, Stage};

use crate::adopted::{status_of, Adopted, Life};
use crate::channels::{self, ChannelEvent};
use crate::errors::{describe, errno_name};
use crate::kill;
use crate::lifecycle::Phase;
use crate::procfs;
use crate::sys;
use crate::unmanageable;

/// An adopted process's key in the table (the helper program's own counter).
type Key = u64;

/// Which fd of an adopted process polled ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    Channel(Key),
    Pidfd(Key),
}

/// Every adopted process.
pub struct Managed {
    table: HashMap<Key, Adopted>,
    next_key: Key,
    helper_pid: i32,
    beam_pid: i32,
    /// Process groups never signalled as a group: the helper program's and the VM's.
    protected_groups: [i32; 2],
    request_buf: Box<[u8; 4096]>,
}

fn send(channel: BorrowedFd<'_>, reply: &Reply) {
    let _ = channels::send(channel, reply, &[]);
}

impl Managed {
    pub fn new(helper_pid: i32, beam_pid: i32) -> Managed {
        let group = |pid: i32| getpgid(Some(Pid::from_raw(pid))).map_or(pid, |g| g.as_raw());
        Managed {
            table: HashMap::new(),
            next_key: 0,
            helper_pid,
            beam_pid,
            protected_groups: [group(helper_pid), group(beam_pid)],
            request_buf: channels::request_buffer(),
        }
    }

    /// The fds to poll: open channels, and the pidfds of processes still running.
    pub fn watched(&self) -> impl Iterator<Item = (Watch, RawFd)> + '_ {
        self.table.iter().flat_map(|(k, a)| {
            let channel = a
                .channel
                .as_ref()
                .map(|c| (Watch::Channel(*k), c.as_raw_fd()));
            let pidfd = (a.life == Life::Running).then(|| (Watch::Pidfd(*k), a.pidfd.as_raw_fd()));
            channel.into_iter().chain(pidfd)
        })
    }

    /// Why `pid` must not be adopted, if it must not.
    fn forbidden(&self, pid: i32, is_leader: impl Fn(i32) -> bool) -> Option<(Errno, String)> {
        let never = |what: &str| Some((Errno::EINVAL, format!("{pid} is {what}: never managed")));
        if pid == 1 {
            never("init")
        } else if pid == self.helper_pid {
            never("the helper program")
        } else if pid == self.beam_pid {
            never("the VM")
        } else if is_leader(pid) {
            let why = format!("{pid} is a program Sluice started: it is managed already");
            Some((Errno::EBUSY, why))
        } else if self.table.values().any(|a| a.pid == pid && !a.exited()) {
            Some((Errno::EBUSY, format!("{pid} is managed already")))
        } else {
            None
        }
    }

    /// A `manage` request: opens a pidfd, checks that the process runs and may be
    /// signalled, and answers `managed` or a `spawn_error` at stage `manage`.
    pub fn adopt(
        &mut self,
        channel: OwnedFd,
        id: u64,
        spec: &ManageSpec,
        is_leader: impl Fn(i32) -> bool,
    ) {
        let pid = spec.os_pid;
        let refuse = |errno: Errno, detail: String| {
            let reply = Reply::SpawnError {
                id,
                errno: errno_name(errno),
                stage: Stage::Manage,
                detail,
            };
            send(channel.as_fd(), &reply);
        };
        if !kill::valid_signal(spec.kill_signal) {
            return refuse(
                Errno::EINVAL,
                format!("invalid kill_signal {}", spec.kill_signal),
            );
        }
        if let Some((errno, why)) = self.forbidden(pid, is_leader) {
            return refuse(errno, why);
        }
        let failed =
            |e: Errno, what: &str| format!("{what} {pid}: {} ({})", describe(e), errno_name(e));
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(Errno::ESRCH) => return refuse(Errno::ESRCH, format!("no process {pid}")),
            // A thread id (ENOENT on Linux 6.9+, EINVAL before): say so, not the errno.
            Err(e @ (Errno::ENOENT | Errno::EINVAL)) => {
                match unmanageable::thread_of(pid, self.helper_pid, self.beam_pid) {
                    Some(why) => return refuse(Errno::EINVAL, why),
                    None => return refuse(e, failed(e, "pidfd_open")),
                }
            }
            Err(e) => return refuse(e, failed(e, "pidfd_open")),
        };
        let exited = || format!("process {pid} has already exited");
        if sys::pidfd_exited(pidfd.as_fd()) {
            return refuse(Errno::ESRCH, exited());
        }
        // What /proc says is about the process the pidfd names only if it still runs once
        // read (its pid cannot be reused before then): checked again after.
        let Some(st) = procfs::stat(pid) else {
            return refuse(Errno::ESRCH, exited());
        };
        let comm = procfs::comm(pid);
        let parent = procfs::stat(st.ppid);
        if sys::pidfd_exited(pidfd.as_fd()) {
            return refuse(Errno::ESRCH, exited());
        }
        if let Some(why) =
            unmanageable::vital(pid, self.beam_pid, &st, comm.as_deref(), parent.as_ref())
        {
            return refuse(Errno::EINVAL, why);
        }
        if let Err(e) = sys::pidfd_send_signal(pidfd.as_fd(), 0) {
            return refuse(e, failed(e, "the node may not signal process"));
        }
        let adopted = Adopted {
            id,
            pid,
            pidfd,
            channel: None,
            life: Life::Running,
            phase: Phase::Running,
            spec: spec.clone(),
        };
        if spec.group && adopted.group(&self.protected_groups).is_none() {
            let why = format!("the process group of {pid} is the VM's or the helper program's");
            return refuse(Errno::EINVAL, why);
        }
        let sent = channels::send(
            channel.as_fd(),
            &Reply::Managed {
                id,
                os_pid: pid as u32,
            },
            &[],
        );
        let key = self.next_key;
        self.next_key += 1;
        self.table.insert(
            key,
            Adopted {
                channel: Some(channel),
                ..adopted
            },
        );
        if sent.is_err() {
            // The owner cannot have it: as if it had closed the channel.
            self.on_closed(key);
        }
    }

    /// A watched fd polled ready.
    pub fn on_ready(&mut self, watch: Watch, broken: bool) {
        match watch {
            Watch::Pidfd(key) => {
                let Some(a) = self.table.get(&key) else {
                    return;
                };
                let status = status_of(a.pidfd.as_fd());
                self.on_exit(key, status);
            }
            Watch::Channel(key) => loop {
                let Some(channel) = self.table.get(&key).and_then(|a| a.channel.as_ref()) else {
                    return;
                };
                match channels::next_request(channel.as_fd(), &mut self.request_buf) {
                    ChannelEvent::Request(req) => self.request(key, req),
                    ChannelEvent::WouldBlock if !broken => return,
                    ChannelEvent::WouldBlock | ChannelEvent::Closed => return self.on_closed(key),
                }
            },
        }
    }

    /// Children of the helper program that were reaped: an adopted one among them is
    /// over, and its status is known.
    pub fn on_reaped(&mut self, reaped: Vec<(i32, ExitStatus)>) {
        for (pid, status) in reaped {
            let found = self.table.iter().find(|(_, a)| {
                a.pid == pid && a.life == Life::Running && sys::pidfd_exited(a.pidfd.as_fd())
            });
            if let Some((&key, _)) = found {
                self.on_exit(key, status);
            }
        }
    }

    fn on_exit(&mut self, key: Key, status: ExitStatus) {
        let Some(a) = self.table.get_mut(&key) else {
            return;
        };
        if a.life == Life::Exited {
            return;
        }
        a.life = Life::Exited;
        match &a.channel {
            Some(channel) => send(
                channel.as_fd(),
                &Reply::Exit {
                    id: a.id,
                    status,
                    details: Default::default(),
                },
            ),
            None => drop(self.table.remove(&key)),
        }
    }

    fn request(&mut self, key: Key, req: Result<Request, DecodeError>) {
        let protected = self.protected_groups;
        let Some(a) = self.table.get_mut(&key) else {
            return;
        };
        let problem = match req {
            Err(e) => Some(e.message),
            Ok(r) if r.id() != a.id => Some(format!(
                "this channel belongs to process {}, not {}",
                a.id,
                r.id()
            )),
            Ok(Request::Signal { signum, .. } | Request::Kill { signum, .. })
                if !kill::valid_signal(signum) =>
            {
                Some(format!("invalid signal number {signum}"))
            }
            Ok(Request::Stats { .. }) => Some("stats is for programs Sluice started".into()),
            Ok(Request::Signal { id, signum }) => {
                let error = a.signal(signum, &protected).err().map(errno_name);
                if let Some(channel) = &a.channel {
                    send(channel.as_fd(), &Reply::Signaled { id, error });
                }
                None
            }
            Ok(Request::Kill {
                signum, grace_ms, ..
            }) => {
                let grace = Duration::from_millis(grace_ms.min(u32::MAX as u64));
                a.stop(signum, grace, &protected);
                None
            }
            Ok(Request::Spawn { .. } | Request::Manage { .. }) => {
                Some("spawn and manage requests go over the fd socket".into())
            }
        };
        if let (Some(message), Some(channel)) = (problem, &a.channel) {
            let reply = Reply::Error {
                id: Some(a.id),
                message,
            };
            send(channel.as_fd(), &reply);
        }
    }

    /// The owner closed the channel (or it broke): stop the process if the owner asked for
    /// that, else let go of it; a stop under way is carried to its end.
    fn on_closed(&mut self, key: Key) {
        let protected = self.protected_groups;
        let Some(a) = self.table.get_mut(&key) else {
            return;
        };
        a.channel = None;
        match (a.life, a.phase) {
            (Life::Exited, _) => drop(self.table.remove(&key)),
            (Life::Running, Phase::Running) if a.spec.stop_on_owner_exit => {
                let grace = Duration::from_millis(a.spec.kill_grace_ms.min(u32::MAX as u64));
                a.stop(a.spec.kill_signal, grace, &protected);
            }
            (Life::Running, Phase::Running) => drop(self.table.remove(&key)),
            (Life::Running, _) => {}
        }
    }

    /// The nearest SIGKILL deadline.
    pub fn next_wake(&self) -> Option<Instant> {
        self.table
            .values()
            .filter_map(|a| match a.phase {
                Phase::Stopping { deadline } if a.life == Life::Running => Some(deadline),
                _ => None,
            })
            .min()
    }

    /// SIGKILL where a deadline has passed.
    pub fn tick(&mut self) {
        let now = Instant::now();
        for a in self.table.values_mut() {
            if matches!(a.phase, Phase::Stopping { deadline } if deadline <= now) {
                a.kill_now(&self.protected_groups);
            }
        }
    }

    /// The shutdown's first step (the BEAM is gone): SIGTERM (+SIGCONT) to every adopted
    /// process whose owner wanted it stopped.
    pub fn shutdown_terminate(&mut self) {
        for a in self.table.values().filter(|a| a.stopped_at_shutdown()) {
            let _ = a.signal(libc::SIGTERM, &self.protected_groups);
            let _ = a.signal(libc::SIGCONT, &self.protected_groups);
        }
    }

    /// Whether an adopted process the shutdown stops still runs.
    pub fn shutdown_pending(&self) -> bool {
        self.table.values().any(|a| a.stopped_at_shutdown())
    }

    /// The shutdown's last step: SIGKILL to what is left of them.
    pub fn shutdown_kill(&mut self) {
        for a in self.table.values_mut() {
            if a.stopped_at_shutdown() {
                a.kill_now(&self.protected_groups);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed() -> Managed {
        let me = std::process::id() as i32;
        Managed::new(me, nix::unistd::getppid().as_raw())
    }

    #[test]
    fn never_adopts_init_the_helper_or_the_vm() {
        let m = managed();
        let no = |_| false;
        for pid in [1, m.helper_pid, m.beam_pid] {
            assert_eq!(m.forbidden(pid, no).map(|f| f.0), Some(Errno::EINVAL));
        }
        assert_eq!(
            m.forbidden(4242, |p| p == 4242).map(|f| f.0),
            Some(Errno::EBUSY)
        );
        assert_eq!(m.forbidden(4242, no), None);
    }
}
