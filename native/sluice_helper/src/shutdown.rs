//! The shutdown that kills everything: stdin EOF or a hang-up of the fd socket (the BEAM
//! is gone), SIGTERM/SIGINT/SIGHUP, or EPIPE on the port. SIGTERM (+SIGCONT) to every
//! program and to every adopted process whose owner wanted it stopped, the shutdown grace,
//! SIGKILL to every group and cgroup, to those adopted processes and to every child the
//! helper program has (adopted orphans included), reap until no child is left, remove
//! the cgroups.

use std::time::{Duration, Instant};

use crate::cgroup;
use crate::kill::{self, Children};
use crate::managed::Managed;
use crate::procfs;
use crate::programs::Programs;
use crate::signals::Signals;

/// How long the final SIGKILL-and-reap phase may take.
const FINAL_REAP: Duration = Duration::from_secs(2);

fn ms_until(t: Instant) -> i32 {
    t.saturating_duration_since(Instant::now())
        .as_millis()
        .min(i32::MAX as u128) as i32
}

/// Runs the shutdown; returns the helper program's exit code.
pub fn run(
    programs: &mut Programs,
    managed: &mut Managed,
    signals: &mut Signals,
    grace: Duration,
) -> i32 {
    let kids = Children::new();
    for p in programs.all_mut() {
        kill::soft_kill(p, &kids, libc::SIGTERM, true);
    }
    managed.shutdown_terminate();
    // Exit statuses still reach the channels the BEAM holds open.
    let end = Instant::now() + grace;
    loop {
        let children_gone = programs.reap();
        if (children_gone && !managed.shutdown_pending()) || Instant::now() >= end {
            break;
        }
        signals.wait(ms_until(end).min(50));
    }
    managed.shutdown_kill();

    if let Some(cg) = &programs.cgroups {
        let _ = cgroup::kill(&cg.dir);
    }
    let kids = Children::new();
    for p in programs.all_mut() {
        p.kill_now(&kids);
    }
    let end = Instant::now() + FINAL_REAP;
    loop {
        // Our children (adopted orphans included) cannot be reused before we reap them.
        for (pid, _) in procfs::helper_children() {
            kill::kill_child(pid);
        }
        if programs.reap() {
            break;
        }
        if Instant::now() >= end {
            eprintln!("sluice_helper: children left after shutdown");
            break;
        }
        signals.wait(10);
    }

    if let Some(cg) = &programs.cgroups {
        let end = Instant::now() + Duration::from_millis(500);
        while let Err(e) = cgroup::remove_tree(&cg.dir) {
            if e.kind() == std::io::ErrorKind::NotFound || Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for d in programs.stale_cgroups() {
        let _ = cgroup::remove_tree(d);
    }
    0
}
