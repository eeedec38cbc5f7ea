//! Reading `/proc`: process status, children and descendants.

use std::collections::HashSet;
use std::fs;

/// The fields of `/proc/PID/stat` the helper needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// The kernel's `PF_*` flags (field 9): [`PF_KTHREAD`] marks a kernel thread.
    pub flags: u32,
    /// Start time in clock ticks since boot: tells a process from a later one with the
    /// same pid.
    pub starttime: u64,
    /// CPU time in clock ticks: its own (user, system), and that of the children it reaped.
    pub cpu_ticks: [u64; 4],
}

/// `PF_KTHREAD` of `include/linux/sched.h`: the process is a kernel thread.
pub const PF_KTHREAD: u32 = 0x0020_0000;

/// Parses the content of `/proc/PID/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        flags: f.get(6)?.parse().ok()?,
        starttime: f.get(19)?.parse().ok()?,
        // Fields 14-17: utime, stime, cutime, cstime.
        cpu_ticks: [11, 12, 13, 14].map(|i| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0)),
    })
}

/// The stat of `pid`, `None` when it is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `VmHWM` of `/proc/PID/status`: the largest resident set so far, in KiB.
pub fn max_rss_kb(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The processes whose process group is `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|st| st.pgrp == pgid))
        .collect()
}

/// `Tgid` of `/proc/PID/status`: the thread group (the process) that `pid` belongs to; a
/// thread id that is not its group's leader has another. `/proc/TID` of any thread can be
/// read, though it is not listed.
pub fn tgid(pid: i32) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_tgid(&s)
}

fn parse_tgid(status: &str) -> Option<i32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Tgid:"))?;
    line.trim().parse().ok()
}

/// `/proc/PID/comm` without the newline.
pub fn comm(pid: i32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(s.trim_end_matches('\n').to_string())
}

/// Parses a `children` file: space separated pids.
pub fn parse_children(s: &str) -> Vec<i32> {
    s.split_ascii_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The children of every thread of `who` ("self" or a pid).
pub fn children_of(who: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{who}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(s) = fs::read_to_string(task.path().join("children")) {
            out.extend(parse_children(&s));
        }
    }
    out
}

/// The helper's own un-reaped children (adopted orphans included) with their pgid.
/// A child listed here cannot have its pid (or its group's id) reused while we don't reap it.
pub fn helper_children() -> Vec<(i32, i32)> {
    children_of("self")
        .into_iter()
        .filter_map(|pid| stat(pid).map(|s| (pid, s.pgrp)))
        .collect()
}

/// The descendants of `root` (not `root` itself) with their start times, breadth first,
/// at most `limit` of them.
pub fn descendants(root: i32, limit: usize) -> Vec<(i32, u64)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut queue = vec![root];
    seen.insert(root);
    while let Some(pid) = queue.pop() {
        for child in children_of(&pid.to_string()) {
            if out.len() >= limit {
                return out;
            }
            if seen.insert(child) {
                if let Some(s) = stat(child) {
                    out.push((child, s.starttime));
                    queue.push(child);
                }
            }
        }
    }
    out
}

/// Whether `pid` still names the process that started at `starttime` and has not exited.
pub fn same_live_process(pid: i32, starttime: u64) -> Option<Stat> {
    stat(pid).filter(|s| s.starttime == starttime && s.state != 'Z' && s.state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    98765 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                state: 'S',
                ppid: 1,
                pgrp: 1234,
                flags: 4194560,
                starttime: 98765,
                cpu_ticks: [1, 2, 0, 0],
            }
        );
        assert_eq!(parse_stat("12 (x) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_own_stat() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert_eq!(s.ppid, nix::unistd::getppid().as_raw());
        assert!(same_live_process(me, s.starttime).is_some());
        assert!(same_live_process(me, s.starttime + 1).is_none());
    }

    #[test]
    fn kernel_threads_and_thread_groups() {
        // kthreadd (pid 2) is a kernel thread on every Linux; we are not.
        let kthreadd = stat(2).unwrap();
        assert_ne!(kthreadd.flags & PF_KTHREAD, 0);
        let me = std::process::id() as i32;
        assert_eq!(stat(me).unwrap().flags & PF_KTHREAD, 0);
        assert_eq!(tgid(me), Some(me));
        assert_eq!(parse_tgid("Name:\tx\nTgid:\t42\nPid:\t43\n"), Some(42));
        assert_eq!(parse_tgid("Name:\tx\n"), None);
        // A thread of ours: its own id, our thread group.
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
        });
        let tid = rx.recv().unwrap();
        assert_eq!(tgid(tid), Some(me));
        t.join().unwrap();
    }

    #[test]
    fn parses_children() {
        assert_eq!(parse_children("12 34 \n"), vec![12, 34]);
        assert!(parse_children("").is_empty());
    }
}
