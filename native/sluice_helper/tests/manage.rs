//! `manage` requests against the built `sluice_helper`: adopting processes it did not
//! start, signalling them through their pidfd, their exit notices, the refusals, and what
//! the channel's EOF and the shutdown do to them.

use std::process::{Child, Command};

use sluice_protocol::{ExitStatus, ManageSpec, Reply, Request, Stage};

mod common;
use common::{dead, read_line, spec, wait_dead, Beam, Channel};

/// The parent pid of `pid`, from /proc (the field after the parenthesised command name).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(1)?.parse().ok()
}

fn sleeper() -> Child {
    Command::new("sleep").arg("60").spawn().unwrap()
}

fn manage_spec(pid: i32) -> ManageSpec {
    ManageSpec {
        os_pid: pid,
        kill_grace_ms: 1000,
        ..ManageSpec::default()
    }
}

fn manage(h: &Beam, id: u64, spec: ManageSpec) -> Channel {
    h.request_raw(&Request::Manage { id, spec }.encode())
}

fn adopt(h: &Beam, id: u64, spec: ManageSpec) -> Channel {
    let pid = spec.os_pid;
    let ch = manage(h, id, spec);
    match ch.reply() {
        Reply::Managed { id: got, os_pid } => {
            assert_eq!((got, os_pid), (id, pid as u32));
        }
        other => panic!("expected managed, got {other:?}"),
    }
    ch
}

fn refused(h: &Beam, spec: ManageSpec) -> String {
    let ch = manage(h, 9, spec);
    match ch.reply() {
        Reply::SpawnError {
            id: 9,
            errno,
            stage: Stage::Manage,
            ..
        } => {
            ch.expect_eof();
            errno
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn signaled(ch: &Channel, id: u64) -> Option<String> {
    match ch.reply() {
        Reply::Signaled { id: got, error } if got == id => error,
        other => panic!("expected signaled, got {other:?}"),
    }
}

#[test]
fn adopt_signal_stop_and_exit() {
    let h = Beam::start("off", 500);
    let mut child = sleeper();
    let pid = child.id() as i32;
    let ch = adopt(&h, 1, manage_spec(pid));
    ch.send(&Request::Signal { id: 1, signum: 0 });
    assert_eq!(signaled(&ch, 1), None);
    ch.send(&Request::Signal {
        id: 1,
        signum: libc::SIGSTOP,
    });
    assert_eq!(signaled(&ch, 1), None);
    // A stop sends SIGCONT after the signal, so a stopped process sees it.
    ch.send(&Request::Kill {
        id: 1,
        signum: libc::SIGTERM,
        grace_ms: 5000,
    });
    // Not the helper program's child: how it ended is its parent's (this test's) to know.
    assert_eq!(ch.expect_exit(1), ExitStatus::Unknown);
    let st = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(15));
    // Gone: a signal is refused, and reaches no one.
    ch.send(&Request::Signal { id: 1, signum: 9 });
    assert_eq!(signaled(&ch, 1).as_deref(), Some("ESRCH"));
    assert!(h.stop().success());
}

#[test]
fn refusals() {
    let h = Beam::start("off", 500);
    let me = std::process::id() as i32;
    for pid in [1, h.pid, me] {
        assert_eq!(refused(&h, manage_spec(pid)), "EINVAL", "pid {pid}");
    }
    let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ghost = (2..pid_max)
        .rev()
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    assert_eq!(refused(&h, manage_spec(ghost)), "ESRCH");
    // A program it started is managed already.
    let mut p = h.spawn(2, spec(&["sh", "-c", "echo up; exec sleep 60"]));
    read_line(p.stdout.as_ref().unwrap());
    assert_eq!(refused(&h, manage_spec(p.pid)), "EBUSY");
    // So is a process adopted by another channel.
    let mut child = sleeper();
    let pid = child.id() as i32;
    let ch = adopt(&h, 3, manage_spec(pid));
    assert_eq!(refused(&h, manage_spec(pid)), "EBUSY");
    let bad_signal = ManageSpec {
        kill_signal: 99,
        ..manage_spec(pid)
    };
    assert_eq!(refused(&h, bad_signal), "EINVAL");
    // `group` is refused when the process shares the VM's group (this test plays the VM,
    // and its children are in its group): a group stop would hit the VM.
    let in_vm_group = ManageSpec {
        group: true,
        ..manage_spec(pid)
    };
    let mut other = sleeper();
    assert_eq!(
        refused(
            &h,
            ManageSpec {
                os_pid: other.id() as i32,
                ..in_vm_group
            }
        ),
        "EINVAL"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    // An exited process (a zombie not reaped yet) is refused too.
    drop(ch);
    child.wait().unwrap();
    let mut zombie = Command::new("true").spawn().unwrap();
    let zpid = zombie.id() as i32;
    assert!(wait_dead(zpid));
    assert_eq!(refused(&h, manage_spec(zpid)), "ESRCH");
    zombie.wait().unwrap();
    drop(p.stdout.take());
    assert!(h.stop().success());
}

#[test]
fn owner_eof_stops_or_lets_go() {
    let h = Beam::start("off", 500);
    let mut stopped = sleeper();
    let mut kept = sleeper();
    let a = adopt(&h, 1, manage_spec(stopped.id() as i32));
    let keep = ManageSpec {
        stop_on_owner_exit: false,
        ..manage_spec(kept.id() as i32)
    };
    let b = adopt(&h, 2, keep);
    drop(a);
    drop(b);
    let st = stopped.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(15));
    assert!(!dead(kept.id() as i32));
    // The shutdown leaves it too: the owner only watched it.
    assert!(h.stop().success());
    assert!(!dead(kept.id() as i32));
    kept.kill().unwrap();
    kept.wait().unwrap();
}

#[test]
fn shutdown_stops_adopted_processes() {
    let h = Beam::start("off", 300);
    let mut child = sleeper();
    let ignoring = Command::new("sh")
        .args(["-c", "trap '' TERM; while :; do sleep 0.05; done"])
        .spawn();
    let mut ignoring = ignoring.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let _a = adopt(&h, 1, manage_spec(child.id() as i32));
    let _b = adopt(&h, 2, manage_spec(ignoring.id() as i32));
    assert!(h.stop().success());
    // SIGTERM for the one, SIGKILL after the shutdown grace for the other.
    let st = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(15));
    let st = ignoring.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
}

#[test]
fn an_orphan_of_the_helper_gives_its_status() {
    let h = Beam::start("off", 500);
    // The subshell exits at once: its sleep is re-parented to the helper (a subreaper).
    let mut p = h.spawn(
        1,
        spec(&["sh", "-c", "(sleep 60 & echo $!); exec sleep 60"]),
    );
    let orphan: i32 = read_line(p.stdout.as_ref().unwrap()).parse().unwrap();
    // Only a child of the helper has a status to give: wait for the subshell to be gone
    // (its sleep dying first would be the subshell's zombie, unknowable to the helper).
    let reparented = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        parent_of(orphan) == Some(h.pid)
    });
    assert!(reparented, "the orphan was not re-parented to the helper");
    let ch = adopt(&h, 2, manage_spec(orphan));
    ch.send(&Request::Kill {
        id: 2,
        signum: libc::SIGTERM,
        grace_ms: 1000,
    });
    assert_eq!(
        ch.expect_exit(2),
        ExitStatus::Signaled {
            signum: 15,
            core: false
        }
    );
    drop(p.stdout.take());
    drop(p.channel);
    assert!(h.stop().success());
}
