//! The helper program never falls over: random and truncated frames on the port's stdin,
//! random and mutated spawn messages on the fd socket, random and mutated requests on a
//! program channel (a bounded fuzz of the running binary, on top of the decoder proptests
//! in `sluice_protocol`), and EPIPE towards the BEAM.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use sluice_protocol::{Reply, Request};

mod common;
use common::{spec, wait_dead, Beam, Channel, Incoming};

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

    /// Random bytes, a valid payload truncated, or one with a few bytes flipped.
    fn mutate(&mut self, valid: &[Vec<u8>]) -> Vec<u8> {
        match self.below(3) {
            0 => {
                let mut b: Vec<u8> = (0..self.below(64)).map(|_| self.next() as u8).collect();
                if self.below(2) == 0 {
                    b.insert(0, 131);
                }
                b
            }
            1 => {
                let v = &valid[self.below(valid.len())];
                v[..self.below(v.len())].to_vec()
            }
            _ => {
                let mut v = valid[self.below(valid.len())].clone();
                for _ in 0..1 + self.below(4) {
                    let i = self.below(v.len());
                    v[i] = self.next() as u8;
                }
                v
            }
        }
    }
}

fn valid_requests() -> Vec<Vec<u8>> {
    vec![
        Request::Kill {
            id: 77,
            signum: 9,
            grace_ms: 10,
        }
        .encode(),
        Request::Signal { id: 77, signum: 2 }.encode(),
        // A spawn of a program that does not exist: mutations must not start anything.
        Request::Spawn {
            id: 79,
            spec: Box::new(spec(&["/nonexistent/sluice-fuzz"])),
        }
        .encode(),
    ]
}

#[test]
fn survives_random_and_truncated_port_frames() {
    let mut h = Beam::start("off", 200);
    let valid = valid_requests();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut sent = 0;
    while sent < 3_000 && Instant::now() < deadline {
        let frame = rng.mutate(&valid);
        h.send_port(&frame).unwrap();
        sent += 1;
        // Every frame is answered with one error, in order; reading them now and then keeps
        // the helper program from blocking on a full stdout.
        if sent % 50 == 0 {
            for _ in 0..50 {
                assert!(matches!(h.port_reply(), Reply::Error { id: None, .. }));
            }
        }
    }
    for _ in 0..sent % 50 {
        assert!(matches!(h.port_reply(), Reply::Error { id: None, .. }));
    }
    assert!(h.child.try_wait().unwrap().is_none(), "the helper exited");
    // Still fully working.
    let p = h.spawn(1, spec(&["true"]));
    p.channel.expect_exit(1);
    assert!(h.stop().success());
}

#[test]
fn survives_random_spawn_messages() {
    let mut h = Beam::start("off", 200);
    let valid = valid_requests();
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut sent = 0;
    while sent < 1_000 && Instant::now() < deadline {
        let etf = rng.mutate(&valid);
        let ch = if rng.below(8) == 0 {
            // Wrong fds: none, or a memfd marker without the memfd.
            let (ch, theirs) = Channel::pair();
            let fds = [theirs.as_raw_fd()];
            let (payload, fds): (&[u8], &[i32]) = match rng.below(2) {
                0 => (&etf, &[]),
                _ => (b"F", &fds),
            };
            common::send_msg(h.sock.as_fd(), payload, fds).unwrap();
            drop(theirs);
            ch
        } else {
            h.request_raw(&etf)
        };
        // Each message is refused (or dropped): never a program.
        loop {
            match ch.recv() {
                Incoming::Eof => break,
                Incoming::Reply(Reply::SpawnError { .. } | Reply::Error { .. }, fds) => {
                    assert!(fds.is_empty())
                }
                Incoming::Reply(r, _) => panic!("a mutated request got {r:?}"),
            }
        }
        sent += 1;
    }
    assert!(h.child.try_wait().unwrap().is_none(), "the helper exited");
    let p = h.spawn(1, spec(&["true"]));
    p.channel.expect_exit(1);
    assert!(h.stop().success());
}

#[test]
fn survives_random_channel_requests() {
    let mut h = Beam::start("off", 200);
    let p = h.spawn(77, spec(&["sleep", "100"]));
    // Replies are read concurrently, so none is dropped for want of room.
    let reader = Channel {
        fd: p.channel.fd.try_clone().unwrap(),
    };
    let marker = std::thread::spawn(move || loop {
        match reader.recv() {
            Incoming::Reply(Reply::Error { message, .. }, _) if message.contains("not 4242") => {
                return
            }
            // Every error names the channel's program; a mutation may have stopped it.
            Incoming::Reply(Reply::Error { id, .. }, fds) => {
                assert_eq!((id, fds.len()), (Some(77), 0));
            }
            Incoming::Reply(Reply::Exit { id, .. }, fds) => {
                assert_eq!((id, fds.len()), (77, 0));
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    let valid = valid_requests();
    let mut rng = Rng(0x5eed_1234_abcd_0003);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut sent = 0;
    while sent < 3_000 && Instant::now() < deadline {
        p.channel.send_raw(&rng.mutate(&valid));
        sent += 1;
    }
    // Replies the reader had no room for were dropped (by design: the helper program never
    // blocks on a channel). Let the backlog drain, so the marker's reply has room; requests
    // are answered in order, so it comes last.
    std::thread::sleep(Duration::from_millis(500));
    p.channel.send(&Request::Signal {
        id: 4242,
        signum: 0,
    });
    marker.join().expect("reader");
    assert!(h.child.try_wait().unwrap().is_none(), "the helper exited");
    drop(p.channel);
    assert!(wait_dead(p.pid));
    assert!(h.stop().success());
}

#[test]
fn epipe_towards_the_beam_is_an_orderly_shutdown() {
    let mut h = Beam::start("off", 200);
    let p = h.spawn(1, spec(&["sleep", "100"]));
    // The BEAM's end of the helper program's stdout goes away; the next reply on the port
    // hits EPIPE.
    // (The port reader thread drops it once it fails to pass a reply on.)
    drop(std::mem::replace(&mut h.port, std::sync::mpsc::channel().1));
    let end = Instant::now() + common::TIMEOUT;
    let st = loop {
        if let Some(st) = h.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "the helper program did not exit");
        let _ = h.send_port(b"\x83garbage");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Not killed by SIGPIPE: it shut down, killing its program.
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(wait_dead(p.pid), "the program survived the shutdown");
}
