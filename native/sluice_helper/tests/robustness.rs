//! The helper never falls over: random and truncated control frames (a bounded fuzz of the
//! running binary, on top of the decoder proptests in `sluice_protocol`), and EPIPE
//! towards the BEAM.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::{Child, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use sluice_protocol::frame::{encode_frame, Reply, Request};

mod common;
use common::spec;

struct Raw {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    _sock: OwnedFd,
}

fn read_reply(stdout: &mut ChildStdout) -> Reply {
    common::read_reply(stdout).expect("a reply")
}

fn start() -> Raw {
    let mut child = common::start_helper("off", 200);
    let mut stdout = child.stdout.take().unwrap();
    let Reply::Hello { socket_path, .. } = read_reply(&mut stdout) else {
        panic!("expected hello");
    };
    let sock = common::connect_socket(&socket_path);
    Raw {
        stdin: child.stdin.take(),
        stdout: Some(stdout),
        child,
        _sock: sock,
    }
}

impl Raw {
    fn send_raw(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(&encode_frame(payload))?;
        stdin.flush()
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        common::wait_exit(&mut self.child, Duration::from_secs(10))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// xorshift64*: a fixed seed keeps the fuzz reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn gone(pid: i32) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                return true
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    false
}

#[test]
fn survives_random_and_truncated_frames() {
    let mut h = start();
    let mut stdout = h.stdout.take().unwrap();
    const MARKER: u64 = 1 << 40;
    // Replies are read concurrently, so the helper never blocks on a full stdout.
    let reader = std::thread::spawn(move || {
        let mut replies = 0;
        loop {
            match read_reply(&mut stdout) {
                Reply::SpawnError { id, .. } if id == MARKER => return replies,
                Reply::Spawned { id, .. } => panic!("a mutated frame started program {id}"),
                _ => replies += 1,
            }
        }
    });
    let valid = [
        Request::Kill {
            id: 77,
            signum: 9,
            grace_ms: 10,
        }
        .encode(),
        Request::Signal { id: 78, signum: 2 }.encode(),
        // A spawn of a program that does not exist: mutations must not start anything else.
        Request::Spawn {
            id: 79,
            spec: spec(&["/nonexistent/sluice-fuzz"]),
        }
        .encode(),
    ];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut sent = 0;
    while sent < 3_000 && Instant::now() < deadline {
        let frame: Vec<u8> = match rng.below(3) {
            // random bytes, sometimes with the ETF version byte
            0 => {
                let mut b: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                if rng.below(2) == 0 {
                    b.insert(0, 131);
                }
                b
            }
            // a valid request, truncated
            1 => {
                let v = &valid[rng.below(valid.len())];
                v[..rng.below(v.len())].to_vec()
            }
            // a valid request with a few bytes flipped
            _ => {
                let mut v = valid[rng.below(valid.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(v.len());
                    v[i] = rng.next() as u8;
                }
                v
            }
        };
        h.send_raw(&frame).unwrap();
        sent += 1;
        // Drain replies now and then so the helper never blocks on a full stdout.
        if sent % 50 == 0 {
            h.send_raw(
                &Request::Signal {
                    id: 1 << 50,
                    signum: 0,
                }
                .encode(),
            )
            .unwrap();
        }
    }
    // A marker: the helper answers frames in order, so its reply comes after all others.
    h.send_raw(
        &Request::Spawn {
            id: MARKER,
            spec: spec(&["/nonexistent/marker"]),
        }
        .encode(),
    )
    .unwrap();
    let replies = reader.join().expect("reader");
    assert!(replies > 0);
    assert!(h.child.try_wait().unwrap().is_none(), "the helper exited");
    // Still fully working: EOF on stdin is an orderly shutdown.
    drop(h.stdin.take());
    assert!(h.wait_exit().success());
}

#[test]
fn epipe_towards_the_beam_is_an_orderly_shutdown() {
    let mut h = start();
    let mut stdout = h.stdout.take().unwrap();
    h.send_raw(
        &Request::Spawn {
            id: 1,
            spec: spec(&["sleep", "100"]),
        }
        .encode(),
    )
    .unwrap();
    let Reply::Spawned { os_pid, .. } = read_reply(&mut stdout) else {
        panic!("expected spawned");
    };
    // The BEAM's end of the helper's stdout goes away; the next reply hits EPIPE.
    drop(stdout);
    h.send_raw(b"\x83garbage").unwrap();
    let st = h.wait_exit();
    // Not killed by SIGPIPE: it shut down, killing its program.
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(
        gone(os_pid as i32),
        "the program survived the helper's shutdown"
    );
}
