//! The program's stdio: a pipe for stdin and stdout, or one pseudo-terminal for both
//! ([`super::pty`]), and for stderr a pipe, what stdout is, `/dev/null` or the helper
//! program's own. The child's ends go to fds 0-2 in the child; the BEAM's ends go over
//! the channel, each tagged with its role.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use sluice_protocol::{Role, SpawnSpec, Stage, StderrMode};

use super::pty::open_pty;
use super::SpawnFailure;
use crate::sys;

/// Every fd of one program's stdio, until the clone; then [`Stdio::into_beam_ends`].
pub struct Stdio {
    /// The child's ends: read end of stdin, write end of stdout, and what fd 2 becomes.
    child_stdin: OwnedFd,
    child_stdout: OwnedFd,
    /// A separate stderr pipe's write end, or /dev/null; `None` for stdout or inherit.
    child_stderr: Option<OwnedFd>,
    stderr: StderrMode,
    /// The BEAM's ends, in the order of the `spawned` reply.
    beam: Vec<(Role, OwnedFd)>,
    /// stdout was enlarged to `ROOMY_OUTPUT`.
    pub roomy: bool,
    /// stdin and stdout are a pseudo-terminal's slave, to become the controlling terminal.
    pub terminal: bool,
}

/// The size of a program's output pipes when the spec asks for none, while the helper's
/// budget of such pipes lasts (`Programs`): measured with a producer writing 1 MiB blocks,
/// `Sluice.stream!` moved ~3.5 GiB/s through 256 KiB pipes against ~0.85 GiB/s (Port's
/// rate) through the kernel's 64 KiB, where every 64 KiB costs a wake-up on each side.
pub const ROOMY_OUTPUT: usize = 256 * 1024;

fn pipe(size: Option<usize>) -> Result<(OwnedFd, OwnedFd), SpawnFailure> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| SpawnFailure::before_fork(e, Stage::Pipe, "cannot create a pipe"))?;
    if let Some(size) = size {
        // Setting one end sizes the pipe.
        sys::set_pipe_size(r.as_fd(), size);
    }
    Ok((r, w))
}

/// An output pipe: the spec's size, else a roomy one when allowed. Returns whether the
/// pipe was made roomy (it counts against the budget).
fn output_pipe(size: Option<usize>, roomy: bool) -> Result<(OwnedFd, OwnedFd, bool), SpawnFailure> {
    let (r, w) = pipe(size)?;
    let enlarged = size.is_none() && roomy && sys::set_pipe_size(r.as_fd(), ROOMY_OUTPUT);
    Ok((r, w, enlarged))
}

impl Stdio {
    /// Opens the pipes (`O_CLOEXEC`: only the child's dup2 onto 0-2 passes them on).
    /// `roomy`: output pipes without a size in the spec may be enlarged.
    pub fn open(spec: &SpawnSpec, roomy: bool) -> Result<Stdio, SpawnFailure> {
        let (child_stdin, child_stdout, mut beam, roomy) = match &spec.pty {
            None => {
                let (child_stdin, beam_stdin) = pipe(spec.pipe_size)?;
                let (beam_stdout, child_stdout, roomy) = output_pipe(spec.pipe_size, roomy)?;
                let beam = vec![(Role::Stdin, beam_stdin), (Role::Stdout, beam_stdout)];
                (child_stdin, child_stdout, beam, roomy)
            }
            Some(pty) => {
                let pty = open_pty(pty)?;
                let slave_out = pty.slave.try_clone().map_err(|e| {
                    let e = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EMFILE));
                    SpawnFailure::before_fork(e, Stage::Pty, "cannot duplicate the terminal")
                })?;
                (pty.slave, slave_out, vec![(Role::Pty, pty.master)], false)
            }
        };
        let child_stderr = match spec.stderr {
            StderrMode::Pipe => {
                let (r, w) = pipe(spec.pipe_size)?;
                beam.push((Role::Stderr, r));
                Some(w)
            }
            StderrMode::Null => {
                // std opens with O_CLOEXEC.
                let f = OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .map_err(|e| {
                        let e = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                        SpawnFailure::before_fork(e, Stage::Pipe, "cannot open /dev/null")
                    })?;
                Some(OwnedFd::from(f))
            }
            StderrMode::Stdout | StderrMode::Inherit => None,
        };
        Ok(Stdio {
            child_stdin,
            child_stdout,
            child_stderr,
            stderr: spec.stderr,
            beam,
            roomy,
            terminal: spec.pty.is_some(),
        })
    }

    /// The fds the child puts on 0, 1 and 2 (-1: keep the helper program's fd 2).
    pub fn child_fds(&self) -> [RawFd; 3] {
        let stderr = match (&self.child_stderr, self.stderr) {
            (Some(fd), _) => fd.as_raw_fd(),
            (None, StderrMode::Stdout) => self.child_stdout.as_raw_fd(),
            (None, _) => -1,
        };
        [
            self.child_stdin.as_raw_fd(),
            self.child_stdout.as_raw_fd(),
            stderr,
        ]
    }

    /// After the clone: the child's ends close here (or EOFs would never arrive), the
    /// BEAM's ends remain, with their roles.
    pub fn into_beam_ends(self) -> Vec<(Role, OwnedFd)> {
        self.beam
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_stderr_mode() {
        let roles = |stderr| {
            let spec = SpawnSpec {
                stderr,
                pipe_size: Some(1 << 16),
                ..SpawnSpec::default()
            };
            let s = Stdio::open(&spec, false).unwrap();
            let fds = s.child_fds();
            let roles: Vec<Role> = s.into_beam_ends().into_iter().map(|(r, _)| r).collect();
            (roles, fds[2] >= 0, fds[2] == fds[1])
        };
        let two = vec![Role::Stdin, Role::Stdout];
        let three = vec![Role::Stdin, Role::Stdout, Role::Stderr];
        assert_eq!(roles(StderrMode::Pipe), (three, true, false));
        assert_eq!(roles(StderrMode::Stdout), (two.clone(), true, true));
        assert_eq!(roles(StderrMode::Null), (two.clone(), true, false));
        assert_eq!(roles(StderrMode::Inherit), (two, false, false));
    }

    #[test]
    fn a_terminal_is_one_master_for_the_beam() {
        let spec = |stderr| SpawnSpec {
            stderr,
            pty: Some(sluice_protocol::PtySpec {
                rows: 24,
                cols: 80,
                modes: vec![],
            }),
            ..SpawnSpec::default()
        };
        let s = Stdio::open(&spec(StderrMode::Stdout), true).unwrap();
        let fds = s.child_fds();
        assert!(s.terminal && !s.roomy && fds[2] == fds[1]);
        let roles: Vec<Role> = s.into_beam_ends().into_iter().map(|(r, _)| r).collect();
        assert_eq!(roles, vec![Role::Pty]);
        let s = Stdio::open(&spec(StderrMode::Pipe), false).unwrap();
        let roles: Vec<Role> = s.into_beam_ends().into_iter().map(|(r, _)| r).collect();
        assert_eq!(roles, vec![Role::Pty, Role::Stderr]);
    }
}
