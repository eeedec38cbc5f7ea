//! Drives the built `sluice_helper` binary the way the BEAM does (protocol version 2): spawn
//! requests on the fd socket, each with its own channel; replies, exit statuses and
//! signal/kill requests on the channel; the port only for `hello` and stdin EOF.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice_protocol::{ExitStatus, Reply, Request, SpawnSpec, Stage, StderrMode};

mod common;
use common::{dead, read_all, read_line, spec, wait_dead, wait_until, Beam, Channel};

const TERM_IGNORED: &str = "trap '' TERM; echo ready; exec sleep 100";

fn spawn_error(ch: &Channel) -> (u64, String, Stage) {
    match ch.reply() {
        Reply::SpawnError {
            id, errno, stage, ..
        } => {
            // The helper program closes the channel after a spawn error.
            ch.expect_eof();
            (id, errno, stage)
        }
        other => panic!("expected spawn_error, got {other:?}"),
    }
}

fn error_for(ch: &Channel, want: u64) -> String {
    match ch.reply() {
        Reply::Error { id, message } => {
            assert_eq!(id, Some(want), "{message}");
            message
        }
        other => panic!("expected error, got {other:?}"),
    }
}

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
    assert_eq!(spawn_error(&ch), (5, "ENOENT".into(), Stage::Exec));

    let mut s = spec(&["true"]);
    s.cd = Some(b"/no/such/dir".to_vec());
    let ch = h.request(6, s);
    assert_eq!(spawn_error(&ch), (6, "ENOENT".into(), Stage::Chdir));

    // A NUL byte in argv is answered, not fatal.
    let s = SpawnSpec {
        argv: vec![b"a\0b".to_vec()],
        ..SpawnSpec::default()
    };
    assert_eq!(spawn_error(&h.request(7, s)).2, Stage::Argv);
    // So is a kill_signal that is no signal.
    let mut s = spec(&["true"]);
    s.kill_signal = 1000;
    assert_eq!(spawn_error(&h.request(8, s)).2, Stage::Spec);
    // A request that is no spawn, on the fd socket.
    let ch = h.request_raw(&Request::Signal { id: 9, signum: 0 }.encode());
    assert_eq!(spawn_error(&ch), (9, "EINVAL".into(), Stage::Request));
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
    assert!(error_for(&p.channel, 11).contains("invalid signal"));
    assert!(h.stop().success());
}

#[test]
fn bad_channel_requests_get_errors() {
    let h = Beam::start("off", 500);
    let p = h.spawn(12, spec(&["sleep", "100"]));
    p.channel.send_raw(b"\x83garbage");
    error_for(&p.channel, 12);
    p.channel.send(&Request::Signal { id: 99, signum: 0 });
    assert!(error_for(&p.channel, 12).contains("not 99"));
    p.channel.send(&Request::Kill {
        id: 99,
        signum: 9,
        grace_ms: 0,
    });
    error_for(&p.channel, 12);
    p.channel.send(&Request::Spawn {
        id: 12,
        spec: Box::new(spec(&["true"])),
    });
    error_for(&p.channel, 12);
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

#[test]
fn stdin_eof_kills_everything() {
    let h = Beam::start("off", 500);
    let p = h.spawn(30, spec(&["sleep", "100"]));
    let p2 = h.spawn(31, spec(&["sh", "-c", TERM_IGNORED]));
    assert_eq!(read_line(p2.stdout.as_ref().unwrap()), "ready");
    let helper_pid = h.pid;
    let st = h.stop();
    assert_eq!(st.code(), Some(0));
    assert!(wait_dead(p.pid));
    assert!(wait_dead(p2.pid));
    assert!(dead(helper_pid));
    // Every channel reaches EOF when the helper program is gone.
    p.channel.expect_exit(30);
    p.channel.expect_eof();
}

#[test]
fn closing_the_fd_socket_is_a_shutdown() {
    let mut h = Beam::start("off", 500);
    let p = h.spawn(32, spec(&["sleep", "100"]));
    // What closing it does to the helper program's end (we keep the fd for Drop).
    nix::sys::socket::shutdown(h.sock.as_raw_fd(), nix::sys::socket::Shutdown::Both).unwrap();
    assert_eq!(
        common::wait_exit(&mut h.child, common::TIMEOUT).code(),
        Some(0)
    );
    assert!(wait_dead(p.pid));
}

#[test]
fn sigterm_shuts_down() {
    let h = Beam::start("off", 500);
    let p = h.spawn(50, spec(&["sleep", "100"]));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(h.pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // The BEAM still listens, so it hears about the program's end.
    assert_eq!(
        p.channel.expect_exit(50),
        ExitStatus::Signaled {
            signum: 15,
            core: false
        }
    );
    assert_eq!(h.stop().code(), Some(0));
    assert!(wait_dead(p.pid));
}

fn program_cgroups(hdir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(hdir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

fn cgroup_of(hdir: &Path, pid: i32) -> Option<PathBuf> {
    program_cgroups(hdir).into_iter().find(|d| {
        std::fs::read_to_string(d.join("cgroup.procs"))
            .map(|p| p.lines().any(|l| l == pid.to_string()))
            .unwrap_or(false)
    })
}

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|e| e.contains("populated 1"))
        .unwrap_or(false)
}

fn helper_cgroup(h: &Beam) -> Option<PathBuf> {
    let Some(root) = h.cgroup_root.clone() else {
        eprintln!("no writable cgroup v2 hierarchy: skipping");
        return None;
    };
    let root = PathBuf::from(String::from_utf8(root).unwrap());
    Some(root.join(format!("h{}", h.pid)))
}

#[test]
fn cgroup_kill_catches_escapees() {
    let h = Beam::start("auto", 500);
    let Some(hdir) = helper_cgroup(&h) else {
        return;
    };
    assert!(hdir.is_dir());
    let p = h.spawn(40, spec(&["sh", "-c", "setsid sleep 100 & echo $!; wait"]));
    let escapee: i32 = read_line(p.stdout.as_ref().unwrap())
        .trim()
        .parse()
        .unwrap();
    let cgroup = cgroup_of(&hdir, p.pid).expect("the program runs in a cgroup of its own");
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == escapee.to_string()), "{procs}");
    p.channel.send(&Request::Kill {
        id: 40,
        signum: 15,
        grace_ms: 200,
    });
    assert!(matches!(
        p.channel.expect_exit(40),
        ExitStatus::Signaled { .. }
    ));
    assert!(wait_dead(escapee), "setsid'd sleep survived cgroup.kill");
    // Once everything is gone the cgroup is empty (kept for reuse, or removed).
    assert!(wait_until(|| !populated(&cgroup)));
    drop(p.channel);

    // A child that fails before exec is reaped silently; no program cgroup stays populated.
    let ch = h.request(41, spec(&["sluice-no-such-program"]));
    assert_eq!(spawn_error(&ch).0, 41);
    assert!(wait_until(|| program_cgroups(&hdir)
        .iter()
        .all(|d| !populated(d))));

    // A program that ended by itself gives its cgroup back when its channel closes, for the
    // next one to reuse; a cgroup that was cgroup.kill'ed is not reused (children cloned
    // into it would die at birth).
    let p = h.spawn(43, spec(&["true"]));
    p.channel.expect_exit(43);
    drop(p.channel);
    let before = program_cgroups(&hdir).len();
    let p = h.spawn(44, spec(&["sh", "-c", "echo alive; sleep 5"]));
    assert_eq!(read_line(p.stdout.as_ref().unwrap()), "alive");
    assert!(cgroup_of(&hdir, p.pid).is_some());
    assert_eq!(program_cgroups(&hdir).len(), before);
    p.channel.send(&Request::Kill {
        id: 44,
        signum: 9,
        grace_ms: 0,
    });
    p.channel.expect_exit(44);
    drop(p.channel);
    let p = h.spawn(45, spec(&["echo", "fine"]));
    assert_eq!(read_line(p.stdout.as_ref().unwrap()), "fine");
    p.channel.expect_exit(45);

    // Shutdown kills what is left in the cgroups.
    let p = h.spawn(42, spec(&["sh", "-c", "setsid sleep 100 & echo $!; wait"]));
    let escapee: i32 = read_line(p.stdout.as_ref().unwrap())
        .trim()
        .parse()
        .unwrap();
    assert!(h.stop().success());
    assert!(wait_dead(p.pid) && wait_dead(escapee));
    assert!(!hdir.exists());
}

#[test]
fn channel_close_releases_a_finished_programs_cgroup() {
    let h = Beam::start("auto", 500);
    let Some(hdir) = helper_cgroup(&h) else {
        return;
    };
    // A finished program's leftovers keep its cgroup until the channel closes; then they
    // get kill_signal, escapees from the group included.
    let p = h.spawn(46, spec(&["sh", "-c", "setsid sleep 100 & echo $!"]));
    let leftover: i32 = read_line(p.stdout.as_ref().unwrap())
        .trim()
        .parse()
        .unwrap();
    p.channel.expect_exit(46);
    let cgroup = cgroup_of(&hdir, leftover).expect("the leftover is in the cgroup");
    drop(p.channel);
    assert!(wait_dead(leftover), "the leftover survived the close");
    assert!(wait_until(|| !populated(&cgroup)));
    assert!(h.stop().success());
}

#[test]
fn next_helper_sweeps_a_killed_helpers_cgroup() {
    // The escapee is orphaned when its helper program dies: adopt it so it is reaped here
    // rather than left as a zombie under an init that may not reap.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let mut h = Beam::start("auto", 500);
    let Some(hdir) = helper_cgroup(&h) else {
        return;
    };
    let p = h.spawn(60, spec(&["sh", "-c", "setsid sleep 100 & echo $!; wait"]));
    let escapee: i32 = read_line(p.stdout.as_ref().unwrap())
        .trim()
        .parse()
        .unwrap();
    h.child.kill().unwrap();
    h.child.wait().unwrap();
    // The direct child dies by PR_SET_PDEATHSIG; the escapee lives on in the cgroup.
    assert!(wait_dead(p.pid));
    assert!(!dead(escapee));
    assert!(hdir.is_dir());
    // The channel reaches EOF at once: the helper program is gone.
    p.channel.expect_eof();

    let h2 = Beam::start("auto", 500);
    assert!(wait_dead(escapee), "the sweep did not kill the escapee");
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(escapee), None);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p.pid), None);
    assert!(!hdir.exists());
    assert!(h2.stop().success());
}
