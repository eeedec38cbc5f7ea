//! What `manage` never adopts whatever the caller asks, decided from `/proc` (read by
//! `managed.rs` after it opened the pidfd, and trusted only while that pidfd still shows
//! the process running): kernel threads, which no signal ends; what the VM itself depends
//! on (its `erl_child_setup`, its `heart`, `epmd`); and thread ids, which are no process.

use crate::procfs;

/// Why a running process must never be adopted, from what `/proc` says of it: a kernel
/// thread (no signal a stop sends can end it: `stop` would wait out its grace for
/// nothing), or a process the VM (`beam_pid`) itself depends on. `parent` is its parent's
/// stat.
pub fn vital(
    pid: i32,
    beam_pid: i32,
    st: &procfs::Stat,
    comm: Option<&str>,
    parent: Option<&procfs::Stat>,
) -> Option<String> {
    let name = comm.unwrap_or("?");
    // kthreadd is pid 2 and the parent of every other kernel thread.
    if st.flags & procfs::PF_KTHREAD != 0 || pid == 2 || st.ppid == 2 {
        return Some(format!(
            "{pid} is a kernel thread ({name}): no signal ends it, never managed"
        ));
    }
    if st.ppid == beam_pid && name == "erl_child_setup" {
        // The VM's one child, which forks every port program (the helper program too).
        return Some(format!(
            "{pid} is the VM's {name}: the VM starts its port programs through it and \
             aborts when it dies, never managed"
        ));
    }
    // A port program of the VM: a child of its erl_child_setup.
    let grandchild = parent.is_some_and(|p| p.ppid == beam_pid);
    if name == "heart" && grandchild {
        return Some(format!(
            "{pid} is the VM's heart program: the node is halted when it dies, never managed"
        ));
    }
    if name == "epmd" {
        return Some(format!(
            "{pid} is epmd, the port mapper every distributed node of this machine \
             registers with: never managed"
        ));
    }
    None
}

/// Why `pid`, which `pidfd_open` refused, cannot be adopted: a thread id that is not
/// its process's (the thread group's leader).
pub fn thread_of(pid: i32, helper_pid: i32, beam_pid: i32) -> Option<String> {
    let tgid = procfs::tgid(pid).filter(|&t| t != pid)?;
    let whose = match tgid {
        t if t == beam_pid => " (the VM)",
        t if t == helper_pid => " (the helper program)",
        _ => "",
    };
    Some(format!(
        "{pid} is a thread of process {tgid}{whose}, not a process: only a process can \
         be managed"
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stat(ppid: i32, flags: u32) -> procfs::Stat {
        procfs::Stat {
            state: 'S',
            ppid,
            pgrp: 4242,
            flags,
            starttime: 1,
            cpu_ticks: [0; 4],
        }
    }

    #[test]
    fn never_adopts_kernel_threads_or_what_the_vm_depends_on() {
        let beam = nix::unistd::getppid().as_raw();
        let why = |pid, st: procfs::Stat, comm, parent: Option<procfs::Stat>| {
            vital(pid, beam, &st, Some(comm), parent.as_ref())
        };
        let kthread = why(7, stat(2, procfs::PF_KTHREAD), "kworker/0:1", None).unwrap();
        assert!(kthread.contains("7 is a kernel thread"), "{kthread}");
        assert!(why(2, stat(0, 0), "kthreadd", None).is_some());
        let setup = why(8, stat(beam, 0), "erl_child_setup", None).unwrap();
        assert!(setup.contains("8 is the VM's erl_child_setup"), "{setup}");
        let heart = why(9, stat(8, 0), "heart", Some(stat(beam, 0))).unwrap();
        assert!(heart.contains("heart program"), "{heart}");
        assert!(why(10, stat(1, 0), "epmd", None).unwrap().contains("epmd"));
        // An ordinary process, another child of the VM, a "heart" that is not the VM's.
        assert_eq!(why(11, stat(1, 0), "sleep", None), None);
        assert_eq!(why(13, stat(beam, 0), "sleep", None), None);
        assert_eq!(why(12, stat(8, 0), "heart", Some(stat(1, 0))), None);
    }

    #[test]
    fn a_thread_id_is_named_as_one() {
        let (me, vm) = (std::process::id() as i32, nix::unistd::getppid().as_raw());
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        let tid = rx.recv().unwrap();
        let why = thread_of(tid, me, vm).unwrap();
        assert!(why.contains(&format!("{tid} is a thread of process {me}")));
        assert!(why.contains("(the helper program)"), "{why}");
        assert_eq!(thread_of(me, me, vm), None);
        t.join().unwrap();
    }
}
