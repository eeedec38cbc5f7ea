//! Starting one program: the command ([`command`]), its stdio ([`stdio`], with a
//! pseudo-terminal from [`pty`] whose modes [`modes`] maps), its cgroup, and
//! the child between clone and exec ([`child`]), with the precise report (stage + errno)
//! of a failure before exec.

mod child;
mod command;
mod credentials;
mod modes;
mod pty;
mod redirect;
mod stdio;

pub use child::raise_fd_limit;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use sluice_protocol::{Role, SpawnSpec, Stage};

use crate::cgroup::Cgroups;
use crate::errors::{describe, errno_name};
use child::{ChildPlan, Outcome};
use command::Command;
use stdio::Stdio;

/// A running program.
#[derive(Debug)]
pub struct Spawned {
    /// Leader pid, also its process group id.
    pub pid: i32,
    /// The BEAM's pipe ends, each with its role, in the order they are sent.
    pub beam_fds: Vec<(Role, OwnedFd)>,
    pub cgroup: Option<PathBuf>,
    /// Its stdout pipe is a roomy one (see `stdio::ROOMY_OUTPUT`).
    pub roomy: bool,
}

/// A spawn that did not produce a running program.
#[derive(Debug)]
pub struct SpawnFailure {
    pub errno: Errno,
    /// A reason that is no errno (`NOUSER`, `NOGROUP`), sent in its place.
    pub reason: Option<&'static str>,
    pub stage: Stage,
    pub detail: String,
    /// Set when the child was cloned and failed before exec: it is reaped silently.
    pub pid: Option<i32>,
    /// The program's cgroup, to remove once the child is reaped.
    pub cgroup: Option<PathBuf>,
}

impl SpawnFailure {
    pub fn before_fork(errno: Errno, stage: Stage, what: &str) -> SpawnFailure {
        SpawnFailure {
            errno,
            reason: None,
            stage,
            detail: format!("{what}: {} ({})", describe(errno), errno_name(errno)),
            pid: None,
            cgroup: None,
        }
    }

    /// The reason's name on the wire: `reason`, else the errno's name.
    pub fn reason_name(&self) -> String {
        self.reason
            .map_or_else(|| errno_name(self.errno), str::to_string)
    }
}

/// Starts one program; returns once it has exec'ed or failed.
/// `roomy`: the stdout pipe may be enlarged (the caller keeps the budget).
pub fn spawn(
    spec: &SpawnSpec,
    helper_pid: i32,
    cgroups: Option<&mut Cgroups>,
    roomy: bool,
) -> Result<Spawned, SpawnFailure> {
    let applied = credentials::resolve(&spec.control)?;
    let command = Command::prepare(spec, &applied.login_env)?;
    let stdio = Stdio::open(spec, roomy)?;
    let roomy = stdio.roomy;
    let (cgroup, procs) = match cgroups {
        Some(cg) => match cg.create_program() {
            Ok((dir, fd)) => (Some(dir), Some(fd)),
            Err(e) => {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                let what = format!("cannot create a cgroup in {}", cg.dir.display());
                return Err(SpawnFailure::before_fork(errno, Stage::Cgroup, &what));
            }
        },
        None => (None, None),
    };

    let plan = ChildPlan {
        procs_fd: procs.as_ref().map_or(-1, |f| f.as_raw_fd()),
        stdio: stdio.child_fds(),
        controlling_tty: stdio.terminal,
        applied: &applied,
        helper_pid,
        cd: command.cd.as_deref(),
        argv: &command.argv,
        envp: &command.envp,
        candidates: &command.candidates,
    };
    let outcome = child::start(&plan);
    drop(procs);
    // The child's ends close here, or EOFs would never arrive.
    let beam_fds = stdio.into_beam_ends();
    match outcome {
        Ok(Outcome::Running(pid)) => Ok(Spawned {
            pid,
            beam_fds,
            cgroup,
            roomy,
        }),
        Ok(Outcome::Failed { pid, stage, errno }) => Err(SpawnFailure {
            errno,
            reason: None,
            stage,
            detail: command.failure_text(stage, errno),
            pid: Some(pid),
            cgroup,
        }),
        Err(e) => {
            if let Some(d) = &cgroup {
                let _ = std::fs::remove_dir(d);
            }
            Err(SpawnFailure::before_fork(e, Stage::Fork, "clone failed"))
        }
    }
}
