//! cgroup v2: finding a writable hierarchy, per-program cgroups, `cgroup.kill`, and the
//! sweep of cgroups left behind by dead helpers.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::args::CgroupMode;
use crate::procfs;

/// The helper's cgroups: `root/h<pid>`, with one `c<n>` per running program below it
/// (taken from a pool of empty ones, see `create_program`).
#[derive(Debug)]
pub struct Cgroups {
    /// The directory reported in `hello`.
    pub root: PathBuf,
    /// `root/h<helper pid>`.
    pub dir: PathBuf,
    /// Empty program cgroups kept for reuse (see `create_program`).
    free: Vec<PathBuf>,
    /// Number of the next program cgroup to create (`c<n>`).
    next: u64,
}

/// Empty program cgroups kept for reuse. As large as the number of programs a busy node runs
/// at once: with 32, 100 concurrent callers made the helper mkdir a cgroup for 68% of
/// spawns and rmdir 61% of them. An empty cgroup costs the kernel a few KB.
const POOL_MAX: usize = 256;

/// The cgroup2 mount point and the mount's root (the cgroup path it shows) from
/// `/proc/self/mountinfo`.
pub fn parse_mountinfo(s: &str) -> Option<(PathBuf, String)> {
    for line in s.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.get(sep + 1) == Some(&"cgroup2") && fields.len() > 4 {
            return Some((PathBuf::from(unescape(fields[4])), unescape(fields[3])));
        }
    }
    None
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The unified-hierarchy path from `/proc/self/cgroup` (the `0::` line).
pub fn parse_own_cgroup(s: &str) -> Option<String> {
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.to_string())
}

/// The candidate roots for `auto`, in order: `<mount>/sluice`, `<mount><own>/sluice`.
pub fn auto_candidates(mount: &Path, mount_root: &str, own: Option<&str>) -> Vec<PathBuf> {
    let mut out = vec![mount.join("sluice")];
    if let Some(own) = own {
        // Our cgroup path is relative to the namespace root; the mount shows `mount_root`.
        let rel = relative(own, mount_root);
        if !rel.is_empty() {
            out.push(mount.join(rel).join("sluice"));
        }
    }
    out
}

/// `mkdir -p root` succeeds, a test child gets a `cgroup.kill` file, and we may place a
/// process there: cgroup v2 wants write access to `cgroup.procs` of the destination and of
/// the nearest cgroup holding both it and the helper program's own (`own`, when known). A
/// directory only chown'ed to a user that is not root (not delegated with its
/// `cgroup.procs`, as systemd's `Delegate=yes` does) would pass the first checks and then
/// fail every spawn with EACCES.
fn usable(root: &Path, own: Option<&Path>) -> bool {
    if fs::create_dir_all(root).is_err() {
        return false;
    }
    let probe = root.join(format!("probe-{}", std::process::id()));
    if let Err(e) = fs::create_dir(&probe) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return false;
        }
    }
    let writable = |dir: &Path| {
        OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .is_ok()
    };
    let ok = probe.join("cgroup.kill").exists()
        && writable(&probe)
        && own.is_none_or(|own| writable(&common_ancestor(own, &probe)));
    let _ = fs::remove_dir(&probe);
    ok
}

/// The deepest directory that holds both `a` and `b`.
fn common_ancestor(a: &Path, b: &Path) -> PathBuf {
    a.components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

/// The cgroup2 mount, the mount's root, and this process's cgroup path.
struct Hierarchy {
    mount: PathBuf,
    mount_root: String,
    own: Option<String>,
}

impl Hierarchy {
    fn read() -> Option<Hierarchy> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let (mount, mount_root) = parse_mountinfo(&mountinfo)?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|s| parse_own_cgroup(&s));
        Some(Hierarchy {
            mount,
            mount_root,
            own,
        })
    }

    /// Our own cgroup's directory under the mount.
    fn own_dir(&self) -> Option<PathBuf> {
        let own = self.own.as_deref()?;
        Some(self.mount.join(relative(own, &self.mount_root)))
    }
}

/// A cgroup path (relative to the namespace's root) under a mount showing `mount_root`.
fn relative<'a>(path: &'a str, mount_root: &str) -> &'a str {
    let rel = if mount_root != "/" {
        path.strip_prefix(mount_root).unwrap_or(path)
    } else {
        path
    };
    rel.trim_start_matches('/')
}

/// Picks the cgroup root for `mode`, or `None` to run without cgroups.
pub fn detect(mode: &CgroupMode) -> Option<PathBuf> {
    let hierarchy = Hierarchy::read();
    let own = hierarchy.as_ref().and_then(Hierarchy::own_dir);
    match mode {
        CgroupMode::Off => None,
        CgroupMode::Path(p) => {
            if usable(p, own.as_deref()) {
                Some(p.clone())
            } else {
                eprintln!(
                    "sluice_helper: cgroup path {} is not a usable cgroup v2 directory; running without cgroups",
                    p.display()
                );
                None
            }
        }
        CgroupMode::Auto => {
            let h = hierarchy?;
            auto_candidates(&h.mount, &h.mount_root, h.own.as_deref())
                .into_iter()
                .find(|c| usable(c, own.as_deref()))
        }
    }
}

impl Cgroups {
    /// Creates `root/h<pid>`.
    pub fn setup(root: PathBuf, helper_pid: i32) -> io::Result<Cgroups> {
        let dir = root.join(format!("h{helper_pid}"));
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        Ok(Cgroups {
            root,
            dir,
            free: Vec::new(),
            next: 0,
        })
    }

    /// Takes an empty program cgroup from the pool, or creates one, and opens its directory
    /// for the child to be born in (`spawn/clone.rs`). The first process in a freshly made
    /// cgroup costs 150-300 us more than in one that existed before: hence the pool.
    pub fn create_program(&mut self) -> io::Result<(PathBuf, OwnedFd)> {
        while let Some(dir) = self.free.pop() {
            if let Ok(fd) = open_dir(&dir) {
                return Ok((dir, fd));
            }
        }
        let dir = self.dir.join(format!("c{}", self.next));
        self.next += 1;
        fs::create_dir(&dir)?;
        match open_dir(&dir) {
            Ok(fd) => Ok((dir, fd)),
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// Gives back the cgroup of a program of which nothing remains: kept for reuse while the
    /// pool has room and the program left no child cgroups, removed otherwise.
    ///
    /// A cgroup that was ever `cgroup.kill`ed is not reused (`reusable` false): on Linux 6.x
    /// a child cloned into such a cgroup with `CLONE_INTO_CGROUP` is killed at birth (the
    /// kernel compares the cgroup's kill sequence with the parent's), and a fresh cgroup
    /// keeps the helper clear of that whatever way it joins.
    /// Empty child cgroups a program may have made stay until the cgroup is removed
    /// (`remove_tree`); they hold no process, so the next program is not affected.
    pub fn release(&mut self, dir: &Path, reusable: bool) -> io::Result<()> {
        if populated(dir)? {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        if !reusable || self.free.len() >= POOL_MAX {
            return remove_tree(dir);
        }
        self.free.push(dir.to_path_buf());
        Ok(())
    }
}

/// The cgroup a program's kill command runs in: `kill` inside the program's own, created
/// if needed, with its directory open for the child to be born in. Inside, so that the
/// program's `cgroup.kill` at the deadline reaches the command and everything it started
/// (setsid children included), its members count while the program's cgroup is populated,
/// and they are not the program's own escapees (`procs` of the program's cgroup lists
/// only its direct members).
pub fn kill_command_cgroup(program: &Path) -> io::Result<(PathBuf, OwnedFd)> {
    let dir = program.join("kill");
    match fs::create_dir(&dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let fd = open_dir(&dir)?;
    Ok((dir, fd))
}

/// Opens a cgroup's directory, as `clone3` wants it (`O_RDONLY | O_DIRECTORY`; std adds
/// `O_CLOEXEC`). Checks nothing the clone will not: a cgroup the helper program may not
/// move a child into fails the spawn at stage `:cgroup` either way.
fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?;
    Ok(f.into())
}

/// Writes `1` to `cgroup.kill`: SIGKILL to every process in the subtree.
pub fn kill(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))?
        .write_all(b"1")
}

/// The pids in a cgroup (`cgroup.procs`); empty when it cannot be read.
pub fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `user_usec` and `system_usec` of `cpu.stat` (present in every cgroup v2 group, with or
/// without the cpu controller): CPU time of everything that ran in the subtree.
pub fn cpu_stat(dir: &Path) -> Option<(u64, u64)> {
    parse_cpu_stat(&fs::read_to_string(dir.join("cpu.stat")).ok()?)
}

fn parse_cpu_stat(s: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((field("user_usec")?, field("system_usec")?))
}

/// `populated` from `cgroup.events`: whether any process is left in the subtree.
pub fn populated(dir: &Path) -> io::Result<bool> {
    let s = fs::read_to_string(dir.join("cgroup.events"))?;
    Ok(parse_populated(&s).unwrap_or(true))
}

fn parse_populated(s: &str) -> Option<bool> {
    s.lines()
        .find_map(|l| l.strip_prefix("populated "))
        .map(|v| v.trim() != "0")
}

/// Removes a cgroup directory and any child cgroups, deepest first.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let _ = remove_tree(&e.path());
            }
        }
    }
    fs::remove_dir(dir)
}

/// Waits up to `timeout` for a cgroup to become empty.
pub fn wait_empty(dir: &Path, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        match populated(dir) {
            Ok(false) | Err(_) => return true,
            Ok(true) if Instant::now() >= end => return false,
            Ok(true) => sleep(Duration::from_millis(10)),
        }
    }
}

fn is_live_helper(pid: i32) -> bool {
    // kill(pid, 0) says whether the pid exists; comm says whether it is still a helper.
    let exists = !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    );
    // A zombie is dead: its cgroup is ours to sweep even before its parent reaps it.
    let zombie = procfs::stat(pid).is_some_and(|st| st.state == 'Z');
    exists && !zombie && procfs::comm(pid).as_deref() == Some("sluice_helper")
}

/// Kills and removes every `h<pid>` under `root` whose helper is gone (or is us: a stale
/// directory with our pid is from a dead predecessor).
pub fn sweep(root: &Path, own_pid: i32) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix('h'))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid != own_pid && is_live_helper(pid) {
            continue;
        }
        let dir = e.path();
        let _ = kill(&dir);
        if !wait_empty(&dir, Duration::from_secs(1)) {
            eprintln!(
                "sluice_helper: stale cgroup {} did not empty",
                dir.display()
            );
        }
        if let Err(err) = remove_tree(&dir) {
            eprintln!(
                "sluice_helper: cannot remove stale cgroup {}: {err}",
                dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stat_fields() {
        let s = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n";
        assert_eq!(parse_cpu_stat(s), Some((1000, 500)));
        assert_eq!(parse_cpu_stat("usage_usec 3\n"), None);
    }

    const MOUNTINFO: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,name=systemd
";

    #[test]
    fn finds_cgroup2_mount() {
        assert_eq!(
            parse_mountinfo(MOUNTINFO),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".to_string()))
        );
        assert_eq!(
            parse_mountinfo("22 1 0:21 / /proc rw - proc proc rw\n"),
            None
        );
        let escaped = "31 30 0:27 /x /mnt/my\\040cg rw shared:1 - cgroup2 none rw\n";
        assert_eq!(
            parse_mountinfo(escaped),
            Some((PathBuf::from("/mnt/my cg"), "/x".to_string()))
        );
    }

    #[test]
    fn own_cgroup_and_candidates() {
        let s = "12:pids:/user.slice\n1:name=systemd:/user.slice/x\n0::/user.slice/x.scope\n";
        assert_eq!(parse_own_cgroup(s).as_deref(), Some("/user.slice/x.scope"));
        assert_eq!(parse_own_cgroup("1:cpu:/\n"), None);
        let m = Path::new("/sys/fs/cgroup");
        assert_eq!(
            auto_candidates(m, "/", Some("/user.slice/x.scope")),
            vec![
                PathBuf::from("/sys/fs/cgroup/sluice"),
                PathBuf::from("/sys/fs/cgroup/user.slice/x.scope/sluice")
            ]
        );
        assert_eq!(auto_candidates(m, "/", Some("/")).len(), 1);
        assert_eq!(
            auto_candidates(m, "/ns", Some("/ns/a"))[1],
            PathBuf::from("/sys/fs/cgroup/a/sluice")
        );
    }

    #[test]
    fn the_nearest_cgroup_holding_both() {
        let m = Path::new("/sys/fs/cgroup/system.slice/app.service");
        assert_eq!(
            common_ancestor(
                m,
                Path::new("/sys/fs/cgroup/system.slice/app.service/sluice/p")
            ),
            m
        );
        assert_eq!(
            common_ancestor(m, Path::new("/sys/fs/cgroup/sluice/probe-1")),
            Path::new("/sys/fs/cgroup")
        );
    }

    #[test]
    fn parses_events() {
        assert_eq!(parse_populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(parse_populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(parse_populated(""), None);
    }
}
