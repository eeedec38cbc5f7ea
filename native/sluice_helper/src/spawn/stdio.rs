//! The program's stdio: a pipe for stdin and stdout, or one pseudo-terminal for both
//! ([`super::pty`]), and for stderr a pipe, what stdout is, `/dev/null` or the helper
//! program's own. The child's ends go to fds 0-2 in the child; the BEAM's ends go over
//! the channel, each tagged with its role.
//!
//! stdin may instead be `/dev/null` or a file, stdout `/dev/null`, the console or a file
//! (`redirect.rs`): no fd goes to the BEAM for those.
//!
//! With `use_stdio: false` (Port's `nouse_stdio`) the data pipes go to fds 3 (input) and
//! 4 (output) instead, stdin is `/dev/null`, and stdout is a pipe (to be logged),
//! `/dev/null` or the helper program's stderr, as the spec's `stdout` says (no terminal
//! then: the spec is refused).

use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use sluice_protocol::{Role, SpawnSpec, Stage, StderrMode, StdinMode, StdoutMode};

use super::credentials::Applied;
use super::pty::open_pty;
use super::redirect;
use super::SpawnFailure;
use crate::sys;

/// Every fd of one program's stdio, until the clone; then [`Stdio::into_beam_ends`].
pub struct Stdio {
    /// The child's ends, for its fds 0 to 4: `None` for 2 keeps the helper program's
    /// stderr (or takes stdout's, see `stderr`); 3 and 4 only with `use_stdio: false`.
    child: [Option<OwnedFd>; 5],
    /// stderr is what stdout is (`:stdout`, or the same file).
    stderr_is_stdout: bool,
    /// The write end of the BEAM's stderr pipe when only later stages of a pipeline write
    /// to it (the first stage's own stderr goes elsewhere).
    stages_stderr: Option<OwnedFd>,
    /// The BEAM's ends, in the order of the `spawned` reply.
    beam: Vec<(Role, OwnedFd)>,
    /// The data output pipe was enlarged to `ROOMY_OUTPUT`.
    pub roomy: bool,
    /// stdin and stdout are a pseudo-terminal's slave, to become the controlling terminal.
    pub terminal: bool,
}

/// The size of a program's output pipes when the spec asks for none, while the helper's
/// budget of such pipes lasts (`Programs`): measured with a producer writing 1 MiB blocks,
/// `Sluice.stream!` moved ~3.5 GiB/s through 256 KiB pipes against ~0.85 GiB/s (Port's
/// rate) through the kernel's 64 KiB, where every 64 KiB costs a wake-up on each side.
pub const ROOMY_OUTPUT: usize = 256 * 1024;

/// The lowest fd a child's end may have: the child dup2s onto 0 to 4, so no source may
/// be one of those targets (fds 0-2 are kept open in the helper program, 3 and 4 are
/// usually its own long-lived fds, but nothing promises that).
const FIRST_SOURCE_FD: RawFd = 5;

fn io_failure(e: std::io::Error, what: &str) -> SpawnFailure {
    let e = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    SpawnFailure::before_fork(e, Stage::Pipe, what)
}

/// `fd`, or a close-on-exec copy of it at `FIRST_SOURCE_FD` or above.
pub(super) fn above_targets(fd: OwnedFd) -> Result<OwnedFd, SpawnFailure> {
    if fd.as_raw_fd() >= FIRST_SOURCE_FD {
        return Ok(fd);
    }
    sys::dup_at_least(fd.as_fd(), FIRST_SOURCE_FD)
        .map_err(|e| SpawnFailure::before_fork(e, Stage::Pipe, "cannot move a pipe fd"))
}

fn pipe(size: Option<usize>) -> Result<(OwnedFd, OwnedFd), SpawnFailure> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| SpawnFailure::before_fork(e, Stage::Pipe, "cannot create a pipe"))?;
    if let Some(size) = size {
        // Setting one end sizes the pipe.
        sys::set_pipe_size(r.as_fd(), size);
    }
    Ok((r, w))
}

/// A pipe both of whose ends go to children (between two stages of a pipeline), above
/// the targets of their dup2s.
pub(super) fn child_pipe(size: Option<usize>) -> Result<(OwnedFd, OwnedFd), SpawnFailure> {
    let (r, w) = pipe(size)?;
    Ok((above_targets(r)?, above_targets(w)?))
}

/// An output pipe: the spec's size, else a roomy one when allowed. Returns whether the
/// pipe was made roomy (it counts against the budget).
fn output_pipe(size: Option<usize>, roomy: bool) -> Result<(OwnedFd, OwnedFd, bool), SpawnFailure> {
    let (r, w) = pipe(size)?;
    let enlarged = size.is_none() && roomy && sys::set_pipe_size(r.as_fd(), ROOMY_OUTPUT);
    Ok((r, w, enlarged))
}

/// The program's fd 1: with stdio its stdout (the data, when piped: the pipe may be
/// roomy), else its own output beside the data on fd 4 (piped to be logged). Returns the
/// child's end and whether a pipe was made roomy.
fn output(
    spec: &SpawnSpec,
    roomy: bool,
    beam: &mut Vec<(Role, OwnedFd)>,
    who: &Applied,
) -> Result<(OwnedFd, bool), SpawnFailure> {
    Ok(match &spec.stdout {
        StdoutMode::Pipe => {
            let (r, w, roomy) = output_pipe(spec.pipe_size, roomy)?;
            beam.push((Role::Stdout, r));
            (w, roomy)
        }
        StdoutMode::Null => (dev_null(true)?, false),
        StdoutMode::Inherit => match redirect::open_console(Stage::Stdout, who)? {
            Some(fd) => (fd, false),
            None => {
                let fd = sys::dup_at_least(std::io::stderr().as_fd(), 0)
                    .map_err(|e| SpawnFailure::before_fork(e, Stage::Pipe, "cannot dup stderr"))?;
                (fd, false)
            }
        },
        StdoutMode::File(f) => {
            let fd = redirect::open_output(f, spec.cd.as_deref(), Stage::Stdout, who)?;
            (fd, false)
        }
    })
}

/// `/dev/null`, for reading (a private channel's stdin) or writing (`:null` outputs).
pub(super) fn dev_null(write: bool) -> Result<OwnedFd, SpawnFailure> {
    // std opens with O_CLOEXEC.
    let f = OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map_err(|e| io_failure(e, "cannot open /dev/null"))?;
    Ok(OwnedFd::from(f))
}

impl Stdio {
    /// Opens the pipes and files (`O_CLOEXEC`: only the child's dup2 onto 0-4 passes them
    /// on). `roomy`: output pipes without a size in the spec may be enlarged. Files are
    /// opened with the rights of `who` (see `redirect.rs`).
    pub fn open(spec: &SpawnSpec, roomy: bool, who: &Applied) -> Result<Stdio, SpawnFailure> {
        let refuse = |what| Err(SpawnFailure::before_fork(Errno::EINVAL, Stage::Spec, what));
        if spec.pty.is_some() && !spec.use_stdio {
            return refuse("a pseudo-terminal needs use_stdio");
        }
        let piped = spec.stdin == StdinMode::Pipe && spec.stdout == StdoutMode::Pipe;
        if spec.pty.is_some() && !piped {
            return refuse("a pseudo-terminal is stdin and stdout: neither may be redirected");
        }
        let cd = spec.cd.as_deref();
        let mut beam = Vec::with_capacity(4);
        let mut child: [Option<OwnedFd>; 5] = Default::default();
        let roomy = match &spec.pty {
            None if spec.use_stdio => {
                child[0] = Some(match &spec.stdin {
                    StdinMode::Pipe => {
                        let (child_in, beam_in) = pipe(spec.pipe_size)?;
                        beam.push((Role::Stdin, beam_in));
                        child_in
                    }
                    StdinMode::Null => dev_null(false)?,
                    StdinMode::File(path) => redirect::open_input(path, cd, who)?,
                    // Its write end closes here: the program reads EOF, as from a pipe
                    // the BEAM closed, and the BEAM gets no fd to close.
                    StdinMode::Closed => pipe(None)?.0,
                });
                let (out, roomy) = output(spec, roomy, &mut beam, who)?;
                child[1] = Some(out);
                roomy
            }
            None => {
                let (child_in, beam_in) = pipe(spec.pipe_size)?;
                let (beam_out, child_out, roomy) = output_pipe(spec.pipe_size, roomy)?;
                child[3] = Some(child_in);
                child[4] = Some(child_out);
                beam.push((Role::Fd3, beam_in));
                beam.push((Role::Fd4, beam_out));
                child[0] = Some(dev_null(false)?);
                child[1] = Some(output(spec, false, &mut beam, who)?.0);
                roomy
            }
            Some(pty) => {
                let pty = open_pty(pty)?;
                let slave_out = pty.slave.try_clone().map_err(|e| {
                    let e = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EMFILE));
                    SpawnFailure::before_fork(e, Stage::Pty, "cannot duplicate the terminal")
                })?;
                child[0] = Some(pty.slave);
                child[1] = Some(slave_out);
                beam.push((Role::Pty, pty.master));
                false
            }
        };
        // stderr naming stdout's file shares its open file description (one offset).
        let stderr_is_stdout = match (&spec.stderr, &spec.stdout) {
            (StderrMode::Stdout, _) => true,
            (StderrMode::File(e), StdoutMode::File(o)) => {
                redirect::resolve(&e.path, cd) == redirect::resolve(&o.path, cd)
            }
            _ => false,
        };
        child[2] = match &spec.stderr {
            _ if stderr_is_stdout => None,
            StderrMode::Pipe => {
                let (r, w) = pipe(spec.pipe_size)?;
                beam.push((Role::Stderr, r));
                Some(w)
            }
            StderrMode::Null => Some(dev_null(true)?),
            StderrMode::File(f) => Some(redirect::open_output(f, cd, Stage::Stderr, who)?),
            StderrMode::Stdout => None,
            // The helper program's own (kept by the child), or the console as `who` may
            // open it.
            StderrMode::Inherit => redirect::open_console(Stage::Stderr, who)?,
        };
        // A stage's own stderr wins for that stage only: with the first stage's elsewhere,
        // the later stages that read theirs back still share one pipe to the BEAM.
        let later_piped = spec.pipeline.iter().any(|s| s.stderr == StderrMode::Pipe);
        let stages_stderr = if later_piped && spec.stderr != StderrMode::Pipe {
            let (r, w) = pipe(spec.pipe_size)?;
            beam.push((Role::Stderr, r));
            Some(above_targets(w)?)
        } else {
            None
        };
        let mut moved: [Option<OwnedFd>; 5] = Default::default();
        for (slot, fd) in moved.iter_mut().zip(child) {
            *slot = fd.map(above_targets).transpose()?;
        }
        Ok(Stdio {
            child: moved,
            stderr_is_stdout,
            stages_stderr,
            beam,
            roomy,
            terminal: spec.pty.is_some(),
        })
    }

    /// The terminal's slave, with `pty:` (the child's fd 0).
    pub fn terminal_slave(&self) -> Option<BorrowedFd<'_>> {
        match self.terminal {
            true => self.child[0].as_ref().map(|fd| fd.as_fd()),
            false => None,
        }
    }

    /// The fds the child puts on 0 to 4 (-1: none; for 2, keep the helper program's).
    pub fn child_fds(&self) -> [RawFd; 5] {
        let raw = |i: usize| self.child[i].as_ref().map_or(-1, |fd| fd.as_raw_fd());
        let stderr = if self.stderr_is_stdout {
            raw(1)
        } else {
            raw(2)
        };
        [raw(0), raw(1), stderr, raw(3), raw(4)]
    }

    /// The write end of the BEAM's stderr pipe (role `Stderr`), if there is one: the
    /// first stage's fd 2, or the later stages' alone.
    pub fn stderr_pipe(&self, spec: &SpawnSpec) -> Option<RawFd> {
        match (&self.stages_stderr, &spec.stderr) {
            (Some(fd), _) => Some(fd.as_raw_fd()),
            (None, StderrMode::Pipe) => self.child[2].as_ref().map(|fd| fd.as_raw_fd()),
            (None, _) => None,
        }
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
    use sluice_protocol::FileOutput;

    #[test]
    fn roles_follow_the_stderr_mode() {
        let roles = |stderr| {
            let spec = SpawnSpec {
                stderr,
                pipe_size: Some(1 << 16),
                ..SpawnSpec::default()
            };
            let s = Stdio::open(&spec, false, &Applied::default()).unwrap();
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
    fn a_closed_stdin_is_a_pipe_at_its_end_and_no_fd_of_the_beams() {
        use std::io::Read;
        use std::os::unix::fs::FileTypeExt;
        let spec = SpawnSpec {
            stdin: StdinMode::Closed,
            ..SpawnSpec::default()
        };
        let s = Stdio::open(&spec, false, &Applied::default()).unwrap();
        let stdin = s.child[0].as_ref().unwrap().try_clone().unwrap();
        let mut stdin = std::fs::File::from(stdin);
        assert!(stdin.metadata().unwrap().file_type().is_fifo());
        assert_eq!(stdin.read(&mut [0u8; 8]).unwrap(), 0);
        let roles: Vec<Role> = s.into_beam_ends().into_iter().map(|(r, _)| r).collect();
        assert_eq!(roles, vec![Role::Stdout]);
    }

    #[test]
    fn a_pipelines_stderr_pipe_is_the_stages_that_read_it_back() {
        let stage = |stderr| sluice_protocol::StageSpec {
            argv: vec![b"cat".to_vec()],
            env: None,
            cd: None,
            stderr,
        };
        let open = |first, later| {
            let spec = SpawnSpec {
                stderr: first,
                pipeline: vec![stage(later)],
                ..SpawnSpec::default()
            };
            let s = Stdio::open(&spec, false, &Applied::default()).unwrap();
            let (fds, pipe) = (s.child_fds(), s.stderr_pipe(&spec));
            let roles: Vec<Role> = s.into_beam_ends().into_iter().map(|(r, _)| r).collect();
            (roles, fds[2], pipe)
        };
        let three = vec![Role::Stdin, Role::Stdout, Role::Stderr];
        // The first stage's own stderr elsewhere: the later stage still has the pipe.
        for first in [StderrMode::Stdout, StderrMode::Null, StderrMode::Inherit] {
            let (roles, first_fd, pipe) = open(first, StderrMode::Pipe);
            assert_eq!(roles, three);
            assert!(pipe.is_some_and(|fd| fd >= FIRST_SOURCE_FD && fd != first_fd));
        }
        // Shared with the first stage when it reads its stderr back too.
        let (roles, first_fd, pipe) = open(StderrMode::Pipe, StderrMode::Pipe);
        assert_eq!((roles, pipe), (three, Some(first_fd)));
        // Nobody reads stderr back: no pipe.
        let (roles, _, pipe) = open(StderrMode::Null, StderrMode::Stdout);
        assert_eq!((roles, pipe), (vec![Role::Stdin, Role::Stdout], None));
    }

    #[test]
    fn a_private_channel_is_fds_3_and_4() {
        let open = |stdout, stderr| {
            let spec = SpawnSpec {
                use_stdio: false,
                stdout,
                stderr,
                ..SpawnSpec::default()
            };
            let s = Stdio::open(&spec, false, &Applied::default()).unwrap();
            let fds = s.child_fds();
            let roles: Vec<Role> = s.into_beam_ends().into_iter().map(|(r, _)| r).collect();
            (roles, fds)
        };
        let (roles, fds) = open(StdoutMode::Pipe, StderrMode::Pipe);
        let all = vec![Role::Fd3, Role::Fd4, Role::Stdout, Role::Stderr];
        assert_eq!(roles, all);
        // Every source sits above the targets 0-4, so no dup2 clobbers another.
        assert!(fds.iter().all(|&fd| fd >= FIRST_SOURCE_FD), "{fds:?}");
        let (roles, fds) = open(StdoutMode::Inherit, StderrMode::Inherit);
        assert_eq!(roles, vec![Role::Fd3, Role::Fd4]);
        assert!(fds[1] >= FIRST_SOURCE_FD && fds[2] == -1, "{fds:?}");
        let (_, fds) = open(StdoutMode::Null, StderrMode::Stdout);
        assert_eq!(fds[1], fds[2]);
        // A terminal is stdin and stdout: there is none with a private channel.
        let spec = SpawnSpec {
            use_stdio: false,
            pty: Some(sluice_protocol::PtySpec {
                rows: 24,
                cols: 80,
                modes: vec![],
            }),
            ..SpawnSpec::default()
        };
        let refused = Stdio::open(&spec, false, &Applied::default())
            .err()
            .expect("refused");
        assert_eq!((refused.errno, refused.stage), (Errno::EINVAL, Stage::Spec));
    }

    /// The audit of issue 19 (finding 4): the helper program's fd 1 is the port, so no
    /// program may ever get it. Whatever the spec, the child's fds 0 and 1 are always set
    /// by Sluice (a pipe, a terminal, `/dev/null`, a file, or for `stdout: :inherit` a
    /// copy of the helper program's stderr), so fds 0 and 1 are never inherited; fd 2 is
    /// set, or the helper program's stderr (never its stdout: `sys::keep_stderr_off_port`).
    #[test]
    fn no_program_inherits_the_port() {
        let dir = std::env::temp_dir().join(format!("sluice-stdio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str| dir.join(name).as_os_str().as_encoded_bytes().to_vec();
        let output = |name: &str| FileOutput {
            path: file(name),
            append: true,
            mode: 0o600,
        };
        std::fs::write(dir.join("in"), b"").unwrap();
        let stdins = [
            StdinMode::Pipe,
            StdinMode::Null,
            StdinMode::File(file("in")),
            StdinMode::Closed,
        ];
        let stdouts = [
            StdoutMode::Pipe,
            StdoutMode::Null,
            StdoutMode::Inherit,
            StdoutMode::File(output("out")),
        ];
        let stderrs = [
            StderrMode::Pipe,
            StderrMode::Stdout,
            StderrMode::Null,
            StderrMode::Inherit,
            StderrMode::File(output("err")),
        ];
        let pty = sluice_protocol::PtySpec {
            rows: 24,
            cols: 80,
            modes: vec![],
        };
        let mut checked = 0;
        for stdin in &stdins {
            for stdout in &stdouts {
                for stderr in &stderrs {
                    for (use_stdio, pty) in [(true, None), (false, None), (true, Some(&pty))] {
                        let spec = SpawnSpec {
                            stdin: stdin.clone(),
                            stdout: stdout.clone(),
                            stderr: stderr.clone(),
                            use_stdio,
                            pty: pty.cloned(),
                            ..SpawnSpec::default()
                        };
                        let Ok(s) = Stdio::open(&spec, false, &Applied::default()) else {
                            continue; // refused combinations start nothing
                        };
                        let fds = s.child_fds();
                        let what = format!("{spec:?}: {fds:?}");
                        assert!(fds[0] >= FIRST_SOURCE_FD, "{what}");
                        assert!(fds[1] >= FIRST_SOURCE_FD, "{what}");
                        assert!(fds[2] == -1 || fds[2] >= FIRST_SOURCE_FD, "{what}");
                        let inherited = matches!(stderr, StderrMode::Inherit)
                            || (matches!(stderr, StderrMode::Stdout) && fds[2] == -1);
                        assert_eq!(fds[2] == -1, inherited, "{what}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 50, "{checked}");
        // A kill command's spec (kill_command.rs): /dev/null in, output to stderr's copy.
        let spec = SpawnSpec {
            stdin: StdinMode::Null,
            stdout: StdoutMode::Inherit,
            stderr: StderrMode::Inherit,
            ..SpawnSpec::default()
        };
        let fds = Stdio::open(&spec, false, &Applied::default())
            .unwrap()
            .child_fds();
        assert!(fds[0] >= FIRST_SOURCE_FD && fds[1] >= FIRST_SOURCE_FD && fds[2] == -1);
        std::fs::remove_dir_all(&dir).unwrap();
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
        let s = Stdio::open(&spec(StderrMode::Stdout), true, &Applied::default()).unwrap();
        let fds = s.child_fds();
        assert!(s.terminal && !s.roomy && fds[2] == fds[1]);
        let roles: Vec<Role> = s.into_beam_ends().into_iter().map(|(r, _)| r).collect();
        assert_eq!(roles, vec![Role::Pty]);
        let s = Stdio::open(&spec(StderrMode::Pipe), false, &Applied::default()).unwrap();
        let roles: Vec<Role> = s.into_beam_ends().into_iter().map(|(r, _)| r).collect();
        assert_eq!(roles, vec![Role::Pty, Role::Stderr]);
    }
}
