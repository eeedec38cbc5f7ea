//! What the helper's integration tests share: starting the real binary, reading its
//! replies, connecting to its fd socket, waiting for it to exit.

#![allow(dead_code)] // each test file uses its own subset

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use sluice_protocol::frame::{Reply, SpawnSpec, StderrMode};

/// Starts `sluice_helper` with this test process as its "BEAM".
pub fn start_helper(cgroup: &str, shutdown_grace_ms: u32) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice_helper"))
        .args([
            "--beam-pid",
            &std::process::id().to_string(),
            "--cgroup",
            cgroup,
            "--shutdown-grace-ms",
            &shutdown_grace_ms.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sluice_helper")
}

/// Reads one `{packet, 4}` frame from the helper's stdout; `None` at EOF.
pub fn read_reply(stdout: &mut ChildStdout) -> Option<Reply> {
    let mut len = [0u8; 4];
    stdout.read_exact(&mut len).ok()?;
    let mut payload = vec![0; u32::from_be_bytes(len) as usize];
    stdout.read_exact(&mut payload).ok()?;
    Some(Reply::decode(&payload).expect("the helper sent a bad frame"))
}

/// Connects to the fd socket named in the helper's `hello`.
pub fn connect_socket(socket_path: &[u8]) -> OwnedFd {
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let path = std::ffi::OsStr::new(std::str::from_utf8(socket_path).unwrap());
    connect(sock.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    sock
}

/// Waits up to `timeout` for the helper to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let end = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < end, "the helper did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A spawn spec for `argv` with a plain PATH and stderr inherited.
pub fn spec(argv: &[&str]) -> SpawnSpec {
    SpawnSpec {
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: Some(vec![b"PATH=/usr/local/bin:/usr/bin:/bin".to_vec()]),
        cd: None,
        stderr: StderrMode::Inherit,
        pipe_size: None,
    }
}
