//! Drives the built `sluice_helper` binary the way the BEAM does: port frames on its
//! stdin/stdout and fd hand-offs on the unix socket.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, ChildStdin};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use nix::sys::time::TimeVal;
use sluice_protocol::frame::{encode_frame, ExitStatus, Reply, Request, SpawnSpec, StderrMode};
use sluice_protocol::handoff::Handoff;

mod common;
use common::spec;

const TIMEOUT: Duration = Duration::from_secs(10);

struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<Reply>,
    sock: OwnedFd,
    cgroup_root: Option<Vec<u8>>,
    pid: i32,
}

impl Helper {
    fn start(cgroup: &str) -> Helper {
        let mut child = common::start_helper(cgroup, 500);
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            while let Some(reply) = common::read_reply(&mut stdout) {
                if tx.send(reply).is_err() {
                    return;
                }
            }
        });
        let hello = rx.recv_timeout(TIMEOUT).expect("hello");
        let Reply::Hello {
            version,
            socket_path,
            helper_pid,
            cgroup_root,
        } = hello
        else {
            panic!("expected hello, got {hello:?}");
        };
        assert_eq!(version, 1);
        assert_eq!(helper_pid, child.id());
        let sock = common::connect_socket(&socket_path);
        setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(10, 0)).unwrap();
        let pid = child.id() as i32;
        Helper {
            stdin: child.stdin.take(),
            child,
            replies: rx,
            sock,
            cgroup_root,
            pid,
        }
    }

    fn send_raw(&mut self, payload: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(&encode_frame(payload)).unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, req: &Request) {
        self.send_raw(&req.encode());
    }

    fn recv(&self) -> Reply {
        self.replies
            .recv_timeout(TIMEOUT)
            .expect("reply from helper")
    }

    fn recv_fds(&self) -> (Handoff, Vec<OwnedFd>) {
        let mut buf = [0u8; 16];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 3]);
        let msg = recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these fds for us.
                fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        let n = msg.bytes;
        let h = Handoff::decode(&buf[..n]).expect("handoff payload");
        assert_eq!(h.nfds as usize, fds.len());
        (h, fds)
    }

    /// Spawns and returns (os_pid, fds).
    fn spawn(&mut self, id: u64, spec: SpawnSpec) -> (i32, Vec<OwnedFd>) {
        self.send(&Request::Spawn { id, spec });
        let (h, fds) = self.recv_fds();
        assert_eq!(h.id, id);
        match self.recv() {
            Reply::Spawned { id: got, os_pid } => {
                assert_eq!(got, id);
                (os_pid as i32, fds)
            }
            other => panic!("expected spawned, got {other:?}"),
        }
    }

    fn expect_exit(&self, id: u64) -> ExitStatus {
        match self.recv() {
            Reply::Exit { id: got, status } => {
                assert_eq!(got, id);
                status
            }
            other => panic!("expected exit, got {other:?}"),
        }
    }

    /// Closes stdin (the "VM died" signal) and waits for the helper to exit.
    fn stop(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        common::wait_exit(&mut self.child, TIMEOUT)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.stdin.take().is_some() {
            let end = Instant::now() + TIMEOUT;
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut f = std::fs::File::from(fd);
    let mut out = Vec::new();
    f.read_to_end(&mut out).unwrap();
    out
}

fn read_line(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = nix::unistd::read(fd, &mut b).unwrap();
        if n == 0 || b[0] == b'\n' {
            return String::from_utf8(out).unwrap();
        }
        out.push(b[0]);
    }
}

fn gone(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(Errno::ESRCH)
}

fn wait_gone(pid: i32) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn cat_round_trip() {
    let mut h = Helper::start("off");
    let (_pid, mut fds) = h.spawn(1, spec(&["cat"]));
    assert_eq!(fds.len(), 2);
    let stdout = fds.pop().unwrap();
    let stdin = fds.pop().unwrap();
    let mut w = std::fs::File::from(stdin);
    w.write_all(b"hello sluice").unwrap();
    drop(w);
    assert_eq!(read_all(stdout), b"hello sluice");
    assert_eq!(h.expect_exit(1), ExitStatus::Exited(0));
    assert!(h.stop().success());
}

#[test]
fn stderr_pipe_and_cd() {
    let mut h = Helper::start("off");
    let mut s = spec(&["sh", "-c", "pwd; echo err >&2"]);
    s.stderr = StderrMode::Pipe;
    s.cd = Some(b"/".to_vec());
    s.pipe_size = Some(1 << 16);
    let (_pid, mut fds) = h.spawn(2, s);
    assert_eq!(fds.len(), 3);
    let err = fds.pop().unwrap();
    let out = fds.pop().unwrap();
    assert_eq!(read_all(out), b"/\n");
    assert_eq!(read_all(err), b"err\n");
    assert_eq!(h.expect_exit(2), ExitStatus::Exited(0));

    let mut s = spec(&["sh", "-c", "echo out; echo err >&2"]);
    s.stderr = StderrMode::Stdout;
    let (_pid, mut fds) = h.spawn(3, s);
    assert_eq!(fds.len(), 2);
    assert_eq!(read_all(fds.pop().unwrap()), b"out\nerr\n");
    assert_eq!(h.expect_exit(3), ExitStatus::Exited(0));
}

#[test]
fn spawn_errors() {
    let mut h = Helper::start("off");
    h.send(&Request::Spawn {
        id: 5,
        spec: spec(&["sluice-no-such-program"]),
    });
    match h.recv() {
        Reply::SpawnError {
            id, errno, stage, ..
        } => assert_eq!((id, errno.as_str(), stage.as_str()), (5, "ENOENT", "exec")),
        other => panic!("{other:?}"),
    }
    let mut s = spec(&["true"]);
    s.cd = Some(b"/no/such/dir".to_vec());
    h.send(&Request::Spawn { id: 6, spec: s });
    match h.recv() {
        Reply::SpawnError {
            id, errno, stage, ..
        } => assert_eq!((id, errno.as_str(), stage.as_str()), (6, "ENOENT", "chdir")),
        other => panic!("{other:?}"),
    }
    // A NUL byte in argv is answered, not fatal.
    h.send(&Request::Spawn {
        id: 7,
        spec: SpawnSpec {
            argv: vec![b"a\0b".to_vec()],
            ..SpawnSpec::default()
        },
    });
    match h.recv() {
        Reply::SpawnError { id, stage, .. } => assert_eq!((id, stage.as_str()), (7, "argv")),
        other => panic!("{other:?}"),
    }
    // Garbage gets an error reply and the helper carries on.
    h.send_raw(b"\x83garbage");
    assert!(matches!(h.recv(), Reply::Error { id: None, .. }));
    let (_pid, _fds) = h.spawn(8, spec(&["sh", "-c", "exit 3"]));
    assert_eq!(h.expect_exit(8), ExitStatus::Exited(3));
    assert!(h.stop().success());
}

#[test]
fn kill_with_grace() {
    let mut h = Helper::start("off");
    let (pid, _fds) = h.spawn(10, spec(&["sleep", "100"]));
    h.send(&Request::Kill {
        id: 10,
        signum: 15,
        grace_ms: 5000,
    });
    assert_eq!(
        h.expect_exit(10),
        ExitStatus::Signaled {
            signum: 15,
            core: false
        }
    );
    assert!(gone(pid));

    // TERM is ignored (and stays ignored across exec): SIGKILL after the grace.
    let (pid, fds) = h.spawn(
        11,
        spec(&["sh", "-c", "trap '' TERM; echo ready; exec sleep 100"]),
    );
    assert_eq!(read_line(&fds[1]), "ready");
    let start = Instant::now();
    h.send(&Request::Kill {
        id: 11,
        signum: 15,
        grace_ms: 300,
    });
    assert_eq!(
        h.expect_exit(11),
        ExitStatus::Signaled {
            signum: 9,
            core: false
        }
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(gone(pid));

    // signal/kill for unknown ids are ignored; an invalid signal is an error.
    h.send(&Request::Signal {
        id: 999,
        signum: 15,
    });
    h.send(&Request::Signal {
        id: 11,
        signum: 1000,
    });
    assert!(matches!(h.recv(), Reply::Error { id: Some(11), .. }));
    assert!(h.stop().success());
}

#[test]
fn walked_descendants_are_killed_without_cgroups() {
    let mut h = Helper::start("off");
    let (_pid, fds) = h.spawn(20, spec(&["sh", "-c", "setsid sleep 100 & echo $!; wait"]));
    let escapee: i32 = read_line(&fds[1]).trim().parse().unwrap();
    // Let setsid run before the walk.
    std::thread::sleep(Duration::from_millis(100));
    h.send(&Request::Kill {
        id: 20,
        signum: 15,
        grace_ms: 200,
    });
    assert!(matches!(h.expect_exit(20), ExitStatus::Signaled { .. }));
    assert!(wait_gone(escapee), "setsid'd sleep survived");
    assert!(h.stop().success());
}

#[test]
fn stdin_eof_kills_everything() {
    let mut h = Helper::start("off");
    let (pid, _fds) = h.spawn(30, spec(&["sleep", "100"]));
    let (pid2, fds2) = h.spawn(
        31,
        spec(&["sh", "-c", "trap '' TERM; echo ready; exec sleep 100"]),
    );
    assert_eq!(read_line(&fds2[1]), "ready");
    let helper_pid = h.pid;
    let st = h.stop();
    assert_eq!(st.code(), Some(0));
    assert!(wait_gone(pid));
    assert!(wait_gone(pid2));
    assert!(gone(helper_pid));
}

#[test]
fn sigterm_shuts_down() {
    let mut h = Helper::start("off");
    let (pid, _fds) = h.spawn(50, spec(&["sleep", "100"]));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(h.pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // The BEAM still listens, so it hears about the program's end.
    assert_eq!(
        h.expect_exit(50),
        ExitStatus::Signaled {
            signum: 15,
            core: false
        }
    );
    assert_eq!(h.stop().code(), Some(0));
    assert!(wait_gone(pid));
}

#[test]
fn cgroup_kill_catches_escapees() {
    let mut h = Helper::start("auto");
    let Some(root) = h.cgroup_root.clone() else {
        eprintln!("no writable cgroup v2 hierarchy: skipping");
        return;
    };
    let root = std::path::PathBuf::from(String::from_utf8(root).unwrap());
    let hdir = root.join(format!("h{}", h.pid));
    assert!(hdir.is_dir());
    let (pid, fds) = h.spawn(40, spec(&["sh", "-c", "setsid sleep 100 & echo $!; wait"]));
    let escapee: i32 = read_line(&fds[1]).trim().parse().unwrap();
    let cgroup = cgroup_of(&hdir, pid).expect("the program runs in a cgroup of its own");
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == escapee.to_string()), "{procs}");
    h.send(&Request::Kill {
        id: 40,
        signum: 15,
        grace_ms: 200,
    });
    assert!(matches!(h.expect_exit(40), ExitStatus::Signaled { .. }));
    assert!(wait_gone(escapee), "setsid'd sleep survived cgroup.kill");
    // Once everything is gone the cgroup is empty (kept for reuse, or removed).
    assert!(wait_until(|| !populated(&cgroup)));

    // A child that fails before exec is reaped silently; no program cgroup stays populated.
    h.send(&Request::Spawn {
        id: 41,
        spec: spec(&["sluice-no-such-program"]),
    });
    assert!(matches!(h.recv(), Reply::SpawnError { id: 41, .. }));
    assert!(wait_until(|| program_cgroups(&hdir)
        .iter()
        .all(|d| !populated(d))));

    // A program that ended by itself leaves its cgroup for the next one to reuse; a cgroup
    // that was cgroup.kill'ed is not reused (children cloned into it would die at birth).
    let (_pid, _fds) = h.spawn(43, spec(&["true"]));
    h.expect_exit(43);
    assert!(wait_until(|| program_cgroups(&hdir)
        .iter()
        .all(|d| !populated(d))));
    let before = program_cgroups(&hdir).len();
    let (pid, fds) = h.spawn(44, spec(&["sh", "-c", "echo alive; sleep 5"]));
    assert_eq!(read_line(&fds[1]), "alive");
    assert!(cgroup_of(&hdir, pid).is_some());
    assert_eq!(program_cgroups(&hdir).len(), before);
    h.send(&Request::Kill {
        id: 44,
        signum: 9,
        grace_ms: 0,
    });
    h.expect_exit(44);
    let (_pid, fds) = h.spawn(45, spec(&["echo", "fine"]));
    assert_eq!(read_line(&fds[1]), "fine");
    h.expect_exit(45);

    // Shutdown kills what is left in the cgroups.
    let (pid, fds) = h.spawn(42, spec(&["sh", "-c", "setsid sleep 100 & echo $!; wait"]));
    let escapee: i32 = read_line(&fds[1]).trim().parse().unwrap();
    assert!(h.stop().success());
    assert!(wait_gone(pid) && wait_gone(escapee));
    assert!(!hdir.exists());
}

fn program_cgroups(hdir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(hdir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

fn cgroup_of(hdir: &std::path::Path, pid: i32) -> Option<std::path::PathBuf> {
    program_cgroups(hdir).into_iter().find(|d| {
        std::fs::read_to_string(d.join("cgroup.procs"))
            .map(|p| p.lines().any(|l| l == pid.to_string()))
            .unwrap_or(false)
    })
}

fn populated(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|e| e.contains("populated 1"))
        .unwrap_or(false)
}

fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while !cond() {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn dead(pid: i32) -> bool {
    gone(pid)
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
}

#[test]
fn next_helper_sweeps_a_killed_helpers_cgroup() {
    // The escapee is orphaned when its helper dies: adopt it so it is reaped here rather
    // than left as a zombie under an init that may not reap.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let mut h = Helper::start("auto");
    let Some(root) = h.cgroup_root.clone() else {
        eprintln!("no writable cgroup v2 hierarchy: skipping");
        return;
    };
    let root = std::path::PathBuf::from(String::from_utf8(root).unwrap());
    let hdir = root.join(format!("h{}", h.pid));
    let (pid, fds) = h.spawn(60, spec(&["sh", "-c", "setsid sleep 100 & echo $!; wait"]));
    let escapee: i32 = read_line(&fds[1]).trim().parse().unwrap();
    h.child.kill().unwrap();
    h.child.wait().unwrap();
    // The direct child dies by PR_SET_PDEATHSIG; the escapee lives on in the cgroup.
    let end = Instant::now() + Duration::from_secs(5);
    while !dead(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(dead(pid));
    assert!(!dead(escapee));
    assert!(hdir.is_dir());

    let h2 = Helper::start("auto");
    let end = Instant::now() + Duration::from_secs(5);
    while !dead(escapee) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(dead(escapee), "the sweep did not kill the escapee");
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(escapee), None);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert!(!hdir.exists());
    assert!(h2.stop().success());
}
