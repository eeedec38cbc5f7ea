//! Programs on a pseudo-terminal, through the built helper program: the master is the
//! only fd the BEAM gets, the program has the terminal as its controlling terminal, and
//! the master reads everything the program wrote, then EIO (EOF) once it is gone.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use sluice_protocol::{ExitStatus, PtySpec, Reply, SpawnSpec, Stage};

mod common;
use common::{spec, Beam};

fn on_pty(argv: &[&str], modes: Vec<(u8, u32)>) -> SpawnSpec {
    SpawnSpec {
        pty: Some(PtySpec {
            rows: 40,
            cols: 100,
            modes,
        }),
        stderr: sluice_protocol::StderrMode::Stdout,
        ..spec(argv)
    }
}

/// Reads the master until EIO, the end of a terminal's output.
fn read_to_eio(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(0) | Err(Errno::EIO) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn the_program_runs_on_its_own_terminal() {
    let h = Beam::start("off", 500);
    let script = "tty; stty size; test -t 0 && test -t 2 && echo both; \
                  ps -o tty= -p $$ | grep -q pts && echo controlling; exit 3";
    let mut p = h.spawn(1, on_pty(&["sh", "-c", script], vec![(70, 1), (72, 1)]));
    assert!(p.stdin.is_none() && p.stdout.is_none() && p.stderr.is_none());
    let out = String::from_utf8(read_to_eio(&p.pty.take().unwrap())).unwrap();
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(&lines[1..4], ["40 100", "both", "controlling"], "{out:?}");
    assert_eq!(p.channel.expect_exit(1), ExitStatus::Exited(3));
    assert!(h.stop().success());
}

#[test]
fn a_refused_mode_is_a_spawn_error_at_the_pty_stage() {
    let h = Beam::start("off", 500);
    // Parity on a pseudo-terminal: refused.
    let ch = h.request(2, on_pty(&["true"], vec![(92, 1)]));
    match ch.reply() {
        Reply::SpawnError {
            errno,
            stage,
            detail,
            ..
        } => {
            assert_eq!((errno.as_str(), stage), ("EINVAL", Stage::Pty));
            assert!(detail.contains("PARENB"), "{detail}");
        }
        other => panic!("expected spawn_error, got {other:?}"),
    }
    ch.expect_eof();
    assert!(h.stop().success());
}
