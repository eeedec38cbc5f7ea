//! `kill_command`: a program the helper program runs instead of sending `kill_signal`
//! when a program is to be stopped, with `CHILD_PID` (the program's pid) in its
//! environment, as erlexec does. It is a program of the helper program like any other:
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

use sluice_protocol::{SpawnSpec, StderrMode, StdinMode, StdoutMode};

use crate::kill::Children;
use crate::lifecycle::Killer;
use crate::spawn::{self, Placement};
use crate::{procfs, sys};

/// At most this many descendants of a running kill command are walked.
const WALK_LIMIT: usize = 4096;

/// Starts the kill command for the program whose leader is `pid` and whose cgroup is
/// `cgroup`; returns its pid.
pub fn start(argv: &[Vec<u8>], pid: i32, cgroup: Option<&Path>) -> Result<i32, String> {
    let mut env: Vec<Vec<u8>> = std::env::vars_os()
        .filter(|(k, _)| k != "CHILD_PID")
        .map(|(k, v)| [k.as_encoded_bytes(), b"=", v.as_encoded_bytes()].concat())
        .collect();
    env.push(format!("CHILD_PID={pid}").into_bytes());
    let spec = SpawnSpec {
        argv: argv.to_vec(),
        env: Some(env),
        stdin: StdinMode::Null,
        stdout: StdoutMode::Inherit,
        stderr: StderrMode::Inherit,
        ..SpawnSpec::default()
    };
    let helper_pid = std::process::id() as i32;
    let placement = match cgroup {
        Some(dir) => Placement::KillCommand(dir),
        None => Placement::Nowhere,
    };
    match spawn::spawn(&spec, helper_pid, placement, false) {
        Ok(started) => Ok(started.pid),
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
