//! Who gets a signal when a program is stopped: process groups only while their id cannot
//! have been reused, walked descendants only while they are the same process, cgroup
//! members that left the group, and at the end `cgroup.kill`. When to send what is
//! `lifecycle`'s business.

use std::cell::OnceCell;

use nix::errno::Errno;

use crate::cgroup;
use crate::lifecycle::{Leader, Program};
use crate::procfs;
use crate::sys;

/// At most this many descendants are walked per program.
const WALK_LIMIT: usize = 4096;

/// Signal numbers a request may carry (0 = existence check).
pub fn valid_signal(signum: i32) -> bool {
    (0..=sys::sigrtmax()).contains(&signum)
}

/// A snapshot of the helper's un-reaped children and their process groups, read from
/// `/proc` on first use only.
#[derive(Default)]
pub struct Children(OnceCell<Vec<(i32, i32)>>);

impl Children {
    pub fn new() -> Children {
        Children::default()
    }

    pub fn has_group(&self, pgid: i32) -> bool {
        self.0
            .get_or_init(procfs::helper_children)
            .iter()
            .any(|&(_, g)| g == pgid)
    }
}

/// Whether the program's group id still names its group: the leader is un-reaped, or one
/// of the group's members is an un-reaped child of the helper.
pub fn group_is_ours(p: &Program, kids: &Children) -> bool {
    p.leader == Leader::Running || kids.has_group(p.pid)
}

/// Signals the program's group if that is safe; returns whether it was signalled.
pub fn signal_group(p: &Program, kids: &Children, sig: i32) -> bool {
    if !group_is_ours(p, kids) {
        return false;
    }
    match sys::kill_group(p.pid, sig) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(e) => {
            eprintln!("sluice_helper: kill(-{}, {sig}): {e}", p.pid);
            false
        }
    }
}

/// Walks the descendants of every member not reaped yet (their pids are ours) and adds
/// them to the remembered ones.
pub fn walk(p: &mut Program) {
    let live: Vec<i32> = p.live_pids().collect();
    for pid in live {
        let found = procfs::descendants(pid, WALK_LIMIT);
        p.remember(&found);
    }
}

/// Signals remembered descendants that are still the same live process. Those in the
/// program's group are skipped when the group itself was signalled.
pub fn signal_descendants(p: &Program, sig: i32, group_signalled: bool) {
    for &(pid, start) in &p.descendants {
        if let Some(st) = procfs::same_live_process(pid, start) {
            if group_signalled && st.pgrp == p.pid {
                continue;
            }
            let _ = sys::kill_process(pid, sig);
        }
    }
}

/// Whether remembered descendants are still alive.
pub fn descendants_alive(p: &Program) -> bool {
    p.descendants
        .iter()
        .any(|&(pid, start)| procfs::same_live_process(pid, start).is_some())
}

/// Sends `sig` (then SIGCONT, so a stopped program sees it) to the group, to the members of
/// the program's cgroup outside the group and, when `descendants` is set, to the leader's
/// walked descendants outside the group.
pub fn soft_kill(p: &mut Program, kids: &Children, sig: i32, descendants: bool) {
    if descendants {
        walk(p);
    }
    let grouped = signal_group(p, kids, sig);
    let cont = sig != 0 && sig != libc::SIGKILL && sig != libc::SIGCONT;
    if cont {
        signal_group(p, kids, libc::SIGCONT);
    }
    signal_descendants(p, sig, grouped);
    signal_cgroup_escapees(p, sig);
    if cont {
        signal_descendants(p, libc::SIGCONT, grouped);
        signal_cgroup_escapees(p, libc::SIGCONT);
    }
}

/// With a cgroup, the members that left the program's process group (setsid children,
/// daemons) get the signal too, so they can end gracefully before `cgroup.kill` at the
/// deadline. The pids are members when read; one could only be another process by the
/// time of the kill if pid allocation wrapped around in between.
fn signal_cgroup_escapees(p: &Program, sig: i32) {
    let Some(dir) = &p.cgroup else {
        return;
    };
    for pid in cgroup::procs(dir) {
        if procfs::stat(pid).is_some_and(|st| st.pgrp != p.pid) {
            let _ = sys::kill_process(pid, sig);
        }
    }
}

/// SIGKILL to everything left: `cgroup.kill` with a cgroup, plus the group and the walked
/// descendants.
pub fn hard_kill(p: &mut Program, kids: &Children) {
    if let Some(dir) = &p.cgroup {
        if let Err(e) = cgroup::kill(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("sluice_helper: cgroup.kill in {}: {e}", dir.display());
            }
        }
    } else {
        walk(p);
    }
    let grouped = signal_group(p, kids, libc::SIGKILL);
    signal_descendants(p, libc::SIGKILL, grouped);
}

/// SIGKILL to a child of the helper (its pid cannot be reused before we reap it).
pub fn kill_child(pid: i32) {
    let _ = sys::kill_process(pid, libc::SIGKILL);
}

/// A signal to a program's group, for the `signal` request.
pub fn signal_leader_group(p: &Program, sig: i32) -> Result<(), Errno> {
    if p.leader == Leader::Reaped {
        return Ok(());
    }
    match sys::kill_group(p.pid, sig) {
        Err(Errno::ESRCH) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_range() {
        assert!(valid_signal(0));
        assert!(valid_signal(9));
        assert!(valid_signal(sys::sigrtmax()));
        assert!(!valid_signal(-1));
        assert!(!valid_signal(sys::sigrtmax() + 1));
    }
}
