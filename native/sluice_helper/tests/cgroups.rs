//! Programs in cgroups of their own (`--cgroup auto`; skipped where no cgroup v2 hierarchy
//! is writable): `cgroup.kill` catches what left the process group, cgroups are reused or
//! released, and the next helper program sweeps a killed one's.

use std::path::{Path, PathBuf};

use sluice_protocol::{ExitStatus, Request};

mod common;
use common::{dead, helper_command, read_all, read_line, spec, wait_dead, wait_until, Beam};

/// The tests here run one at a time: a helper program starting up sweeps the cgroups of
/// dead ones, which would kill what `next_helper_sweeps_a_killed_helpers_cgroup` checks is
/// still alive after its helper's death.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
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
    let _serial = serial();
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
    assert_eq!(ch.expect_spawn_error().0, 41);
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
    let _serial = serial();
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
    let _serial = serial();
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

/// A seccomp filter that makes `clone3` fail with ENOSYS, as some container runtimes'
/// default profiles do; every other call is allowed.
fn refuse_clone3() -> std::io::Result<()> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        // seccomp_data.nr
        insn(LD_W_ABS, 0, 0, 0),
        insn(JEQ_K, 0, 1, libc::SYS_clone3 as u32),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl reads `prog` and the filter it points to, both alive for the call.
    let r = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    match r {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[test]
fn where_clone3_is_refused_children_join_their_cgroup_themselves() {
    let _serial = serial();
    use std::os::unix::process::CommandExt;
    let mut command = helper_command("auto", 500);
    // SAFETY: the closure runs in the forked child before exec and only makes prctl calls.
    unsafe { command.pre_exec(refuse_clone3) };
    let h = Beam::start_child(command.spawn().expect("start sluice_helper"));
    let Some(hdir) = helper_cgroup(&h) else {
        return;
    };
    // The program's first act sees it in its own cgroup, with and without a pool reuse,
    // and after a cgroup.kill'ed one was replaced.
    for id in 70..73 {
        let p = h.spawn(id, spec(&["cat", "/proc/self/cgroup"]));
        let out = String::from_utf8(read_all(p.stdout.unwrap())).unwrap();
        let own = out.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        let hname = hdir.file_name().unwrap().to_str().unwrap();
        assert!(own.contains(&format!("/{hname}/c")), "{out}");
        p.channel.expect_exit(id);
    }
    let p = h.spawn(73, spec(&["sh", "-c", "setsid sleep 100 & echo $!; wait"]));
    let escapee: i32 = read_line(p.stdout.as_ref().unwrap())
        .trim()
        .parse()
        .unwrap();
    assert!(cgroup_of(&hdir, escapee).is_some());
    p.channel.send(&Request::Kill {
        id: 73,
        signum: 9,
        grace_ms: 0,
    });
    p.channel.expect_exit(73);
    assert!(wait_dead(escapee));
    assert!(h.stop().success());
}
