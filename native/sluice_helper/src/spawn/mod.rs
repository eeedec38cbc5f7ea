//! Starting one program or a kernel pipeline of them ([`pipeline`]): the command ([`command`]), its stdio ([`stdio`], with a
//! pseudo-terminal from [`pty`], whose modes `sluice_protocol::modes` maps), its cgroup, and
//! the child between clone and exec ([`child`]), with the precise report (stage + errno)
//! of a failure before exec.

mod child;
mod clone;
mod command;
mod credentials;
mod pipeline;
mod pty;
mod redirect;
mod sandbox;
mod stdio;

pub use child::raise_fd_limit;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use sluice_protocol::{Role, SpawnSpec, Stage};

use crate::cgroup::Cgroups;
use crate::errors::{describe, errno_name};
use child::{ChildPlan, Grouping, Outcome};
use command::Command;
use stdio::Stdio;

/// A running program.
#[derive(Debug)]
pub struct Spawned {
    /// Leader pid, also its process group id.
    pub pid: i32,
    /// Every process started, in pipeline order (the leader first).
    pub members: Vec<i32>,
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
    /// Stages of a pipeline that ran before a later one failed: killed, to reap silently.
    pub also_reap: Vec<i32>,
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
            also_reap: Vec::new(),
        }
    }

    /// The reason's name on the wire: `reason`, else the errno's name.
    pub fn reason_name(&self) -> String {
        self.reason
            .map_or_else(|| errno_name(self.errno), str::to_string)
    }
}

/// The cgroup a spawn's children join.
pub enum Placement<'a> {
    /// A program: a cgroup of its own from the pool, or none without cgroups.
    Program(Option<&'a mut Cgroups>),
    /// A kill command: the `kill` cgroup inside this program's (`cgroup::kill_command_cgroup`).
    KillCommand(&'a std::path::Path),
    /// No cgroup (a kill command of a program without one).
    Nowhere,
}

/// Starts one program, or every stage of a pipeline; returns once all have exec'ed or one
/// failed (the stages started before it are killed then, to be reaped silently).
/// `roomy`: the stdout pipe may be enlarged (the caller keeps the budget).
pub fn spawn(
    spec: &SpawnSpec,
    helper_pid: i32,
    placement: Placement<'_>,
    roomy: bool,
) -> Result<Spawned, SpawnFailure> {
    let applied = credentials::resolve(&spec.control)?;
    let mut commands = vec![Command::prepare(spec, &applied.login_env)?];
    for stage in &spec.pipeline {
        let as_spec = SpawnSpec {
            argv: stage.argv.clone(),
            env: stage.env.clone(),
            cd: stage.cd.clone(),
            ..SpawnSpec::default()
        };
        commands.push(Command::prepare(&as_spec, &applied.login_env)?);
    }
    let stdio = Stdio::open(spec, roomy, &applied)?;
    // A program run as another user gets its terminal as a login would leave it.
    if let (Some(slave), Some(uid)) = (stdio.terminal_slave(), applied.uid) {
        pty::give_to(slave, uid, applied.gid.unwrap_or(0))?;
    }
    let links = match spec.pipeline.is_empty() {
        true => None,
        false => Some(pipeline::Links::open(spec, &stdio, &applied)?),
    };
    let roomy = stdio.roomy;
    let sandbox = match &spec.sandbox {
        Some(sb) => Some(sandbox::Prepared::prepare(sb, stdio.terminal)?),
        None => None,
    };
    let cgroup_failure = |e: std::io::Error, dir: &std::path::Path| {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        let what = format!("cannot create a cgroup in {}", dir.display());
        SpawnFailure::before_fork(errno, Stage::Cgroup, &what)
    };
    let (cgroup, cgroup_dir) = match placement {
        Placement::Program(Some(cg)) => match cg.create_program() {
            Ok((dir, fd)) => (Some(dir), Some(fd)),
            Err(e) => return Err(cgroup_failure(e, &cg.dir)),
        },
        Placement::KillCommand(program) => match crate::cgroup::kill_command_cgroup(program) {
            Ok((dir, fd)) => (Some(dir), Some(fd)),
            Err(e) => return Err(cgroup_failure(e, program)),
        },
        Placement::Program(None) | Placement::Nowhere => (None, None),
    };

    let mut members: Vec<i32> = Vec::with_capacity(commands.len());
    let mut failure = None;
    for (i, command) in commands.iter().enumerate() {
        let plan = ChildPlan {
            cgroup_fd: cgroup_dir.as_ref().map_or(-1, |f| f.as_raw_fd()),
            stdio: links
                .as_ref()
                .map_or_else(|| stdio.child_fds(), |l| l.stage_fds(i)),
            // Later stages join the first one's process group: one group to signal.
            group: match (members.first(), &links) {
                (Some(&leader), _) => Grouping::Join(leader),
                (None, Some(_)) => Grouping::Group,
                (None, None) => Grouping::Session,
            },
            controlling_tty: stdio.terminal,
            applied: &applied,
            helper_pid,
            cd: command.cd.as_deref(),
            argv: &command.argv,
            envp: &command.envp,
            candidates: &command.candidates,
            sandbox: sandbox.as_ref(),
        };
        match child::start(&plan) {
            Ok(Outcome::Running(pid)) => members.push(pid),
            Ok(Outcome::Failed { pid, stage, errno }) => {
                failure = Some(SpawnFailure {
                    errno,
                    reason: None,
                    stage,
                    detail: command.failure_text(stage, errno),
                    pid: Some(pid),
                    cgroup: None,
                    also_reap: Vec::new(),
                });
                break;
            }
            Ok(Outcome::TimedOut(pid)) => {
                failure = Some(SpawnFailure {
                    errno: Errno::ETIMEDOUT,
                    reason: None,
                    stage: Stage::Exec,
                    detail: command.timeout_text(child::EXEC_DEADLINE),
                    pid: Some(pid),
                    cgroup: None,
                    also_reap: Vec::new(),
                });
                break;
            }
            Err(e) => {
                failure = Some(SpawnFailure::before_fork(e, Stage::Fork, "clone failed"));
                break;
            }
        }
    }
    drop(cgroup_dir);
    drop(links);
    // The child's ends close here, or EOFs would never arrive.
    let beam_fds = stdio.into_beam_ends();
    let Some(mut failed) = failure else {
        return Ok(Spawned {
            pid: members[0],
            members,
            beam_fds,
            cgroup,
            roomy,
        });
    };
    // Stages already running must not outlive the spawn that failed.
    if let Some(&leader) = members.first() {
        let _ = crate::sys::kill_group(leader, libc::SIGKILL);
    }
    failed.also_reap = members;
    match (failed.pid, failed.also_reap.is_empty(), &cgroup) {
        (None, true, Some(d)) => drop(std::fs::remove_dir(d)),
        _ => failed.cgroup = cgroup,
    }
    Err(failed)
}
