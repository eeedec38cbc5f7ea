//! Spawn requests as the BEAM sends them (protocol version 2): each on the fd socket with
//! a channel of its own, inline or in a memfd; the program's pipes and status in reply, or
//! a spawn error naming its stage; malformed requests answered, never fatal.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};

use sluice_protocol::{ExitStatus, Reply, Request, SpawnSpec, Stage, StderrMode};

mod common;
use common::{read_all, spec, Beam, Channel};

#[test]
fn cat_round_trip() {
    let h = Beam::start("off", 500);
    let mut p = h.spawn(1, spec(&["cat"]));
    assert!(p.stderr.is_none());
    let mut w = std::fs::File::from(p.stdin.take().unwrap());
    w.write_all(b"hello sluice").unwrap();
    drop(w);
    assert_eq!(read_all(p.stdout.take().unwrap()), b"hello sluice");
    assert_eq!(p.channel.expect_exit(1), ExitStatus::Exited(0));
    assert!(h.stop().success());
}

#[test]
fn stderr_pipe_and_cd() {
    let h = Beam::start("off", 500);
    let mut s = spec(&["sh", "-c", "pwd; echo err >&2"]);
    s.stderr = StderrMode::Pipe;
    s.cd = Some(b"/".to_vec());
    s.pipe_size = Some(1 << 16);
    let mut p = h.spawn(2, s);
    assert_eq!(read_all(p.stdout.take().unwrap()), b"/\n");
    assert_eq!(read_all(p.stderr.take().unwrap()), b"err\n");
    assert_eq!(p.channel.expect_exit(2), ExitStatus::Exited(0));

    let mut s = spec(&["sh", "-c", "echo out; echo err >&2"]);
    s.stderr = StderrMode::Stdout;
    let mut p = h.spawn(3, s);
    assert!(p.stderr.is_none());
    assert_eq!(read_all(p.stdout.take().unwrap()), b"out\nerr\n");
    assert_eq!(p.channel.expect_exit(3), ExitStatus::Exited(0));
}

#[test]
fn spawn_errors() {
    let mut h = Beam::start("off", 500);
    let ch = h.request(5, spec(&["sluice-no-such-program"]));
    assert_eq!(ch.expect_spawn_error(), (5, "ENOENT".into(), Stage::Exec));

    let mut s = spec(&["true"]);
    s.cd = Some(b"/no/such/dir".to_vec());
    let ch = h.request(6, s);
    assert_eq!(ch.expect_spawn_error(), (6, "ENOENT".into(), Stage::Chdir));

    // A NUL byte in argv is answered, not fatal.
    let s = SpawnSpec {
        argv: vec![b"a\0b".to_vec()],
        ..SpawnSpec::default()
    };
    assert_eq!(h.request(7, s).expect_spawn_error().2, Stage::Argv);
    // So is a kill_signal that is no signal.
    let mut s = spec(&["true"]);
    s.kill_signal = 1000;
    assert_eq!(h.request(8, s).expect_spawn_error().2, Stage::Spec);
    // A request that is no spawn, on the fd socket.
    let ch = h.request_raw(&Request::Signal { id: 9, signum: 0 }.encode());
    assert_eq!(
        ch.expect_spawn_error(),
        (9, "EINVAL".into(), Stage::Request)
    );
    // Garbage with a channel: an error without an id, then EOF.
    let ch = h.request_raw(b"\x83garbage");
    assert!(matches!(ch.reply(), Reply::Error { id: None, .. }));
    ch.expect_eof();

    // The port takes no requests any more: each frame is answered with an error.
    h.send_port(b"\x83garbage").unwrap();
    assert!(matches!(h.port_reply(), Reply::Error { id: None, .. }));
    h.send_port(
        &Request::Spawn {
            id: 10,
            spec: Box::new(spec(&["true"])),
        }
        .encode(),
    )
    .unwrap();
    match h.port_reply() {
        Reply::Error { id: None, message } => assert!(message.contains("fd socket")),
        other => panic!("{other:?}"),
    }

    let p = h.spawn(11, spec(&["sh", "-c", "exit 3"]));
    assert_eq!(p.channel.expect_exit(11), ExitStatus::Exited(3));
    assert!(h.stop().success());
}

#[test]
fn a_large_request_travels_in_a_memfd() {
    let h = Beam::start("off", 500);
    // Over the 64 KiB an inline message may hold (one string may not pass 128 KiB in execve).
    let mut s = spec(&["sh", "-c", "echo ${#V0} $LAST"]);
    let env = s.env.as_mut().unwrap();
    for i in 0..1000 {
        env.push(format!("V{i}={}", "x".repeat(100)).into_bytes());
    }
    env.push(b"LAST=last".to_vec());
    let mut p = h.spawn(90, s);
    assert_eq!(read_all(p.stdout.take().unwrap()), b"100 last\n");
    assert_eq!(p.channel.expect_exit(90), ExitStatus::Exited(0));
    assert!(h.stop().success());
}

#[test]
fn messages_without_a_channel_are_dropped() {
    let h = Beam::start("off", 500);
    let req = Request::Spawn {
        id: 1,
        spec: Box::new(spec(&["true"])),
    }
    .encode();
    // No fd at all, an empty record, and too many fds (truncated control data).
    common::send_msg(h.sock.as_fd(), &req, &[]).unwrap();
    common::send_msg(h.sock.as_fd(), b"", &[]).unwrap();
    let (spare, peer) = Channel::pair();
    let many = vec![peer.as_raw_fd(); 16];
    common::send_msg(h.sock.as_fd(), &req, &many).unwrap();
    drop(peer);
    // The helper program closed every fd it got: our end sees EOF.
    spare.expect_eof();
    let p = h.spawn(91, spec(&["true"]));
    assert_eq!(p.channel.expect_exit(91), ExitStatus::Exited(0));
    assert!(h.stop().success());
}
