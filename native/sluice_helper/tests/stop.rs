//! Stopping a program through its channel: signal and kill requests (SIGKILL after the
//! grace), requests that do not fit the channel, descendants walked without cgroups, and
//! the channel's close, which stops a running program and releases a finished one.

use std::time::{Duration, Instant};

use sluice_protocol::{ExitStatus, Request};

mod common;
use common::{dead, read_line, spec, wait_dead, Beam, TERM_IGNORED};

#[test]
fn kill_with_grace() {
    let h = Beam::start("off", 500);
    let p = h.spawn(10, spec(&["sleep", "100"]));
    p.channel.send(&Request::Kill {
        id: 10,
        signum: 15,
        grace_ms: 5000,
    });
    assert_eq!(
        p.channel.expect_exit(10),
        ExitStatus::Signaled {
            signum: 15,
            core: false
        }
    );
    assert!(dead(p.pid));

    // TERM is ignored (and stays ignored across exec): SIGKILL after the grace.
    let p = h.spawn(11, spec(&["sh", "-c", TERM_IGNORED]));
    assert_eq!(read_line(p.stdout.as_ref().unwrap()), "ready");
    let start = Instant::now();
    p.channel.send(&Request::Kill {
        id: 11,
        signum: 15,
        grace_ms: 300,
    });
    assert_eq!(
        p.channel.expect_exit(11),
        ExitStatus::Signaled {
            signum: 9,
            core: false
        }
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(dead(p.pid));

    // After the exit, a signal is ignored; an invalid one is still an error.
    p.channel.send(&Request::Signal { id: 11, signum: 15 });
    p.channel.send(&Request::Signal {
        id: 11,
        signum: 1000,
    });
    assert!(p.channel.expect_error_for(11).contains("invalid signal"));
    assert!(h.stop().success());
}

#[test]
fn bad_channel_requests_get_errors() {
    let h = Beam::start("off", 500);
    let p = h.spawn(12, spec(&["sleep", "100"]));
    p.channel.send_raw(b"\x83garbage");
    p.channel.expect_error_for(12);
    p.channel.send(&Request::Signal { id: 99, signum: 0 });
    assert!(p.channel.expect_error_for(12).contains("not 99"));
    p.channel.send(&Request::Kill {
        id: 99,
        signum: 9,
        grace_ms: 0,
    });
    p.channel.expect_error_for(12);
    p.channel.send(&Request::Spawn {
        id: 12,
        spec: Box::new(spec(&["true"])),
    });
    p.channel.expect_error_for(12);
    // Not one of them touched the program; a good request still works.
    assert!(!dead(p.pid));
    p.channel.send(&Request::Signal { id: 12, signum: 9 });
    assert_eq!(
        p.channel.expect_exit(12),
        ExitStatus::Signaled {
            signum: 9,
            core: false
        }
    );
    assert!(h.stop().success());
}

#[test]
fn walked_descendants_are_killed_without_cgroups() {
    let h = Beam::start("off", 500);
    let p = h.spawn(20, spec(&["sh", "-c", "setsid sleep 100 & echo $!; wait"]));
    let escapee: i32 = read_line(p.stdout.as_ref().unwrap())
        .trim()
        .parse()
        .unwrap();
    // Let setsid run before the walk.
    std::thread::sleep(Duration::from_millis(100));
    p.channel.send(&Request::Kill {
        id: 20,
        signum: 15,
        grace_ms: 200,
    });
    assert!(matches!(
        p.channel.expect_exit(20),
        ExitStatus::Signaled { .. }
    ));
    assert!(wait_dead(escapee), "setsid'd sleep survived");
    assert!(h.stop().success());
}

#[test]
fn channel_close_while_running_stops_the_program() {
    let h = Beam::start("off", 500);
    // kill_signal is what arrives first.
    let mut s = spec(&[
        "sh",
        "-c",
        "trap 'echo usr1; exit 0' USR1; echo ready; while :; do sleep 0.05; done",
    ]);
    s.kill_signal = libc::SIGUSR1;
    let mut p = h.spawn(70, s);
    let out = p.stdout.take().unwrap();
    assert_eq!(read_line(&out), "ready");
    drop(p.channel);
    assert_eq!(read_line(&out), "usr1");
    assert!(wait_dead(p.pid));

    // A program that ignores it gets SIGKILL after kill_grace.
    let mut s = spec(&["sh", "-c", TERM_IGNORED]);
    s.kill_grace_ms = 300;
    let p = h.spawn(71, s);
    assert_eq!(read_line(p.stdout.as_ref().unwrap()), "ready");
    let start = Instant::now();
    drop(p.channel);
    assert!(wait_dead(p.pid));
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(h.stop().success());
}

#[test]
fn channel_close_after_exit_releases_and_forgets() {
    let h = Beam::start("off", 500);
    // Nothing left: the close costs nothing, the helper program carries on.
    let p = h.spawn(80, spec(&["true"]));
    assert_eq!(p.channel.expect_exit(80), ExitStatus::Exited(0));
    drop(p.channel);
    // Leftovers of a finished program live until the owner closes the channel.
    let p = h.spawn(81, spec(&["sh", "-c", "sleep 100 & echo $!"]));
    let leftover: i32 = read_line(p.stdout.as_ref().unwrap())
        .trim()
        .parse()
        .unwrap();
    assert_eq!(p.channel.expect_exit(81), ExitStatus::Exited(0));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!dead(leftover));
    drop(p.channel);
    assert!(wait_dead(leftover), "the leftover survived the close");
    let p = h.spawn(82, spec(&["true"]));
    p.channel.expect_exit(82);
    assert!(h.stop().success());
}
