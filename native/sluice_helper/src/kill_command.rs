//! `kill_command`: a program the helper program runs instead of sending `kill_signal`
//! when a program is to be stopped, with `CHILD_PID` (the program's pid) in its
//! environment, as erlexec does. It is a program of the helper program like any other:
//! its own session and group, stdin `/dev/null`, output to the console; it is SIGKILLed
//! (its whole group) when the program's grace ends, and reaped like every child, so it
//! can never outlive the stop it serves.

use sluice_protocol::{SpawnSpec, StderrMode, StdinMode, StdoutMode};

use crate::spawn;
use crate::sys;

/// Starts the kill command for the program whose leader is `pid`; returns its pid.
pub fn start(argv: &[Vec<u8>], pid: i32) -> Result<i32, String> {
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
    match spawn::spawn(&spec, helper_pid, None, false) {
        Ok(started) => Ok(started.pid),
        Err(f) => Err(f.detail),
    }
}

/// Ends a kill command that is still running (not reaped: its pid is still ours).
pub fn end(pid: i32) {
    let _ = sys::kill_group(pid, libc::SIGKILL);
}
