//! `kill_command`: a program the helper program runs instead of sending `kill_signal`
//! when a program is to be stopped, with `CHILD_PID` (the program's pid) in its
//! environment, as erlexec does. For a program of another user (`user:`, `group:`) it runs
//! as that user, group and groups, with the program's environment ([`AsProgram`]): a
//! kill command the program's user could replace (a script in its home) must not run as
//! root with the node's environment. It is a program of the helper program like any other:
//! its own session and group, stdin `/dev/null`, output to the console; it is reaped like
//! every child. At the program's deadline everything it started is SIGKILLed with the
//! program, so nothing of it outlives the stop it serves:
//!
//! * with cgroups it runs in the `kill` cgroup inside the program's
//!   (`cgroup::kill_command_cgroup`): the program's `cgroup.kill` at the deadline reaches
//!   it and every descendant, setsid ones included, and the program lingers (its cgroup is
//!   populated) until they are gone;
//! * without cgroups its process group, while the group's id is ours (the command is not
//!   reaped yet, or one of the group's members is an orphan re-parented to the helper
//!   program), and, while the command runs, its descendants walked from `/proc`. A setsid
//!   child of a command that already ended is in neither and survives, as a double-forked
//!   daemon of a program does (`docs/guarantees.md`).

use std::path::Path;

use sluice_protocol::{Control, SpawnSpec, Stage, StderrMode, StdinMode, StdoutMode};

use crate::kill::Children;
use crate::lifecycle::Killer;
use crate::spawn::{self, Placement};
use crate::{procfs, sys};

/// At most this many descendants of a running kill command are walked.
const WALK_LIMIT: usize = 4096;

/// A program's kill command, as its spawn asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillCommand {
    pub argv: Vec<Vec<u8>>,
    /// For a program of another user (`user:` or `group:`): who the kill command runs as
    /// and with which environment. `None`: as the helper program, with its environment.
    pub as_program: Option<AsProgram>,
}

/// Who a kill command runs as when its program runs as another user: the program's user,
/// group and groups (its limits, priority and umask are the program's own business), and
/// the program's environment (the login variables put in by the spawn as for the
/// program), never the helper program's, which is the node's (`RELEASE_COOKIE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsProgram {
    pub control: Control,
    pub env: Option<Vec<Vec<u8>>>,
}

impl KillCommand {
    /// The kill command of the program `spec` starts, if it has one.
    pub fn of(spec: &SpawnSpec) -> Option<KillCommand> {
        let argv = spec.kill_command.clone()?;
        let c = &spec.control;
        let as_program = (c.user.is_some() || c.group.is_some()).then(|| AsProgram {
            control: Control {
                user: c.user.clone(),
                group: c.group.clone(),
                login_env: c.login_env.clone(),
                allowed_users: c.allowed_users.clone(),
                ..Control::default()
            },
            env: spec.env.clone(),
        });
        Some(KillCommand { argv, as_program })
    }
}

/// The `NAME=value` entries of `env` but `CHILD_PID`, then `CHILD_PID=pid`.
fn with_child_pid(env: impl Iterator<Item = Vec<u8>>, pid: i32) -> Vec<Vec<u8>> {
    let mut env: Vec<Vec<u8>> = env.filter(|e| !e.starts_with(b"CHILD_PID=")).collect();
    env.push(format!("CHILD_PID={pid}").into_bytes());
    env
}

/// Starts the kill command for the program whose leader is `pid` and whose cgroup is
/// `cgroup`; returns its pid.
pub fn start(command: &KillCommand, pid: i32, cgroup: Option<&Path>) -> Result<i32, String> {
    let helper_env = || {
        std::env::vars_os()
            .map(|(k, v)| [k.as_encoded_bytes(), b"=", v.as_encoded_bytes()].concat())
    };
    let (env, control) = match &command.as_program {
        None => (with_child_pid(helper_env(), pid), Control::default()),
        Some(p) => {
            let env = match &p.env {
                Some(env) => with_child_pid(env.iter().cloned(), pid),
                // The program had the helper program's environment: so does its command.
                None => with_child_pid(helper_env(), pid),
            };
            (env, p.control.clone())
        }
    };
    let mut spec = SpawnSpec {
        argv: command.argv.clone(),
        env: Some(env),
        stdin: StdinMode::Null,
        stdout: StdoutMode::Inherit,
        stderr: StderrMode::Inherit,
        control,
        ..SpawnSpec::default()
    };
    let helper_pid = std::process::id() as i32;
    let placement = || match cgroup {
        Some(dir) => Placement::KillCommand(dir),
        None => Placement::Nowhere,
    };
    match spawn::spawn(&spec, helper_pid, placement(), false) {
        Ok(started) => Ok(started.pid),
        // The console its user may not open (`redirect::open_console`): its output goes
        // nowhere rather than the stop being a signal.
        Err(f) if matches!(f.stage, Stage::Stdout | Stage::Stderr) => {
            spec.stdout = StdoutMode::Null;
            spec.stderr = StderrMode::Null;
            match spawn::spawn(&spec, helper_pid, placement(), false) {
                Ok(started) => Ok(started.pid),
                Err(f) => Err(f.detail),
            }
        }
        Err(f) => Err(f.detail),
    }
}

/// SIGKILL to what is left of a kill command at its program's deadline, without a cgroup
/// to do it (with one this only comes first). Its descendants are walked while it runs
/// (their pids are remembered with their start times, so a reused pid is never killed),
/// before its group is killed and they are orphaned.
pub fn end(killer: Killer, kids: &Children) {
    match killer {
        Killer::Running(pid) => {
            let walked = procfs::descendants(pid, WALK_LIMIT);
            let _ = sys::kill_group(pid, libc::SIGKILL);
            for (child, start) in walked {
                if procfs::same_live_process(child, start).is_some() {
                    let _ = sys::kill_process(child, libc::SIGKILL);
                }
            }
        }
        // Reaped: its group's id is still ours only while a member is our child.
        Killer::Ended(pid) if kids.has_group(pid) => {
            let _ = sys::kill_group(pid, libc::SIGKILL);
        }
        Killer::Ended(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::Principal;

    #[test]
    fn child_pid_replaces_any_given() {
        let env = [b"A=1".to_vec(), b"CHILD_PID=9".to_vec()];
        assert_eq!(
            with_child_pid(env.into_iter(), 42),
            [b"A=1".to_vec(), b"CHILD_PID=42".to_vec()]
        );
    }

    #[test]
    fn only_a_program_of_another_user_gives_its_identity_and_environment() {
        let mut spec = SpawnSpec {
            kill_command: Some(vec![b"stop".to_vec()]),
            env: Some(vec![b"APP=1".to_vec()]),
            ..SpawnSpec::default()
        };
        spec.control.nice = Some(5);
        assert_eq!(KillCommand::of(&spec).unwrap().as_program, None);
        spec.control.user = Some(Principal::Name(b"app".to_vec()));
        let as_program = KillCommand::of(&spec).unwrap().as_program.unwrap();
        assert_eq!(as_program.env, spec.env);
        assert_eq!(as_program.control.user, spec.control.user);
        // Its user, group and groups; not the program's priority or limits.
        assert_eq!(as_program.control.nice, None);
        spec.kill_command = None;
        assert_eq!(KillCommand::of(&spec), None);
    }
}
