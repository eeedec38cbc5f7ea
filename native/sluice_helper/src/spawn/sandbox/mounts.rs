//! The sandbox's filesystem view, built by its init (pid 1 of the new namespaces, a
//! copy-on-write fork, not sharing the helper program's memory) in its own mount
//! namespace, the way bubblewrap does it:
//!
//! 1. every mount becomes a slave (nothing propagates back to the host);
//! 2. a tmpfs on `/tmp` becomes the root (`pivot_root`), the host's root underneath it at
//!    `/oldroot` (whose `/tmp` is the host's again: the tmpfs moved);
//! 3. the view is assembled in `/newroot`: the host read-only (a recursive bind made
//!    read-only with `mount_setattr(AT_RECURSIVE)`), or an empty tmpfs; a private tmpfs
//!    (or the host's) on `/tmp`; a new `proc`; a tmpfs `/dev` with `null`, `zero`,
//!    `full`, `random`, `urandom` and `tty` bound from the host (and `pts` with a
//!    terminal); then the chosen paths, read-only, and the writable ones, read-write;
//! 4. `/newroot` becomes the root and the rest is detached (`pivot_root(".", ".")`).
//!
//! Every path is prepared as a C string by the helper program before the clone; the init
//! makes raw syscalls only.

use std::ffi::{CStr, CString};

use sluice_protocol::{ReadOnly, SandboxSpec};

use super::super::child::{fail, Shared, SANDBOX};

/// One path of the view: bound from the host (`/oldroot/...`) onto `/newroot/...`.
pub struct Bind {
    source: CString,
    target: CString,
    /// `/newroot/a`, `/newroot/a/b`, ...: created as directories where missing.
    parents: Vec<CString>,
    writable: bool,
    /// A missing source fails the spawn (a writable path); else it is skipped.
    required: bool,
}

/// The view, prepared.
pub struct View {
    host: bool,
    /// Read-only paths, then writable ones: a writable path inside a read-only one wins.
    binds: Vec<Bind>,
    private_tmp: bool,
    /// Bind the host's `/dev/pts` (the program runs on a terminal).
    terminal: bool,
}

fn bind(path: &[u8], writable: bool) -> Bind {
    let c = |prefix: &str, p: &[u8]| {
        let mut v = prefix.as_bytes().to_vec();
        v.extend_from_slice(p);
        // The protocol refused NUL bytes.
        CString::new(v).unwrap_or_default()
    };
    let trimmed = match path.len() > 1 && path.ends_with(b"/") {
        true => &path[..path.len() - 1],
        false => path,
    };
    let parents = trimmed
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'/' && i > 0)
        .map(|(i, _)| c("/newroot", &trimmed[..i]))
        .collect();
    Bind {
        source: c("/oldroot", trimmed),
        target: c("/newroot", trimmed),
        parents,
        writable,
        required: writable,
    }
}

impl View {
    pub fn prepare(spec: &SandboxSpec, terminal: bool) -> View {
        let mut binds = Vec::new();
        let host = match &spec.read_only {
            ReadOnly::Host => true,
            ReadOnly::Paths(paths) => {
                binds.extend(paths.iter().map(|p| bind(p, false)));
                false
            }
        };
        binds.extend(spec.writable.iter().map(|p| bind(p, true)));
        View {
            host,
            binds,
            private_tmp: spec.private_tmp,
            terminal,
        }
    }
}

// `struct mount_attr` and its flags (linux/mount.h), for `mount_setattr`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const AT_RECURSIVE: libc::c_uint = 0x8000;

const DEVICES: [&CStr; 6] = [c"null", c"zero", c"full", c"random", c"urandom", c"tty"];

/// Fails the spawn at stage `sandbox` with the last errno. Never returns.
fn refused(s: &Shared) -> ! {
    fail(s, SANDBOX, nix::errno::Errno::last_raw())
}

fn mount(
    s: &Shared,
    source: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) {
    // SAFETY: every pointer is a NUL-terminated string prepared before the clone, or null.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.map_or(std::ptr::null(), CStr::as_ptr),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if r != 0 {
        refused(s);
    }
}

/// Read-only (and nosuid) through every mount under `target`, or nosuid alone.
fn seal(s: &Shared, target: &CStr, read_only: bool) {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `target` is a C string and `attr` a live struct of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        refused(s);
    }
}

/// `mkdir`, an existing entry being fine.
fn mkdir(s: &Shared, path: &CStr, mode: libc::mode_t) {
    // SAFETY: a C string prepared before the clone.
    if unsafe { libc::mkdir(path.as_ptr(), mode) } != 0
        && nix::errno::Errno::last_raw() != libc::EEXIST
    {
        refused(s);
    }
}

/// An empty file to bind a file onto, an existing one being fine.
fn touch(s: &Shared, path: &CStr) {
    // SAFETY: a C string prepared before the clone; the fd is closed at once.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 && nix::errno::Errno::last_raw() != libc::EEXIST {
            refused(s);
        }
        libc::close(fd);
    }
}

fn chdir(s: &Shared, path: &CStr) {
    // SAFETY: a C string.
    if unsafe { libc::chdir(path.as_ptr()) } != 0 {
        refused(s);
    }
}

fn pivot_root(s: &Shared, new_root: &CStr, put_old: &CStr) {
    // SAFETY: C strings.
    if unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) } != 0 {
        refused(s);
    }
}

/// One path of the view: a symlink stays a symlink (`/lib` -> `usr/lib`), a directory
/// or a file is bound, recursively, and sealed.
fn bind_path(s: &Shared, b: &Bind) {
    for parent in &b.parents {
        mkdir(s, parent, 0o755);
    }
    // SAFETY: C strings prepared before the clone; `st` and `link` are local buffers of
    // the sizes passed.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::lstat(b.source.as_ptr(), &mut st) != 0 {
            if b.required {
                refused(s);
            }
            return;
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK && !b.writable {
            let mut link = [0u8; 4096];
            let n = libc::readlink(b.source.as_ptr(), link.as_mut_ptr().cast(), link.len() - 1);
            if n < 0 {
                refused(s);
            }
            if libc::symlink(link.as_ptr().cast(), b.target.as_ptr()) != 0
                && nix::errno::Errno::last_raw() != libc::EEXIST
            {
                refused(s);
            }
            return;
        }
    }
    match st_is_dir(s, &b.source) {
        true => mkdir(s, &b.target, 0o755),
        false => touch(s, &b.target),
    }
    mount(
        s,
        &b.source,
        &b.target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    );
    seal(s, &b.target, !b.writable);
}

fn st_is_dir(s: &Shared, path: &CStr) -> bool {
    // SAFETY: a C string and a local stat buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::stat(path.as_ptr(), &mut st) != 0 {
            refused(s);
        }
        st.st_mode & libc::S_IFMT == libc::S_IFDIR
    }
}

/// `/dev`: a tmpfs with the harmless devices bound from the host, the usual links, a
/// `shm` directory, and the terminals' `pts` when the program has one.
fn devices(s: &Shared, terminal: bool) {
    mkdir(s, c"/newroot/dev", 0o755);
    let nodev_flags = libc::MS_NOSUID | libc::MS_NOEXEC;
    mount(
        s,
        c"tmpfs",
        c"/newroot/dev",
        Some(c"tmpfs"),
        nodev_flags,
        Some(c"mode=0755,size=65536k"),
    );
    chdir(s, c"/newroot/dev");
    let mut source = [0u8; 32];
    source[..12].copy_from_slice(b"/oldroot/dev");
    source[12] = b'/';
    for dev in DEVICES {
        touch(s, dev);
        let name = dev.to_bytes_with_nul();
        source[13..13 + name.len()].copy_from_slice(name);
        let src = CStr::from_bytes_until_nul(&source).unwrap_or(c"/dev/null");
        mount(s, src, dev, None, libc::MS_BIND, None);
    }
    for (target, link) in [
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
        (c"pts/ptmx", c"ptmx"),
    ] {
        // SAFETY: C strings.
        if unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) } != 0 {
            refused(s);
        }
    }
    mkdir(s, c"shm", 0o1777);
    mkdir(s, c"pts", 0o755);
    if terminal {
        mount(s, c"/oldroot/dev/pts", c"pts", None, libc::MS_BIND, None);
    }
    chdir(s, c"/");
}

/// Builds the view and makes it the root. Runs in the sandbox's init; fails the spawn at
/// stage `sandbox` on any refusal.
pub fn build(s: &Shared, v: &View) {
    mount(s, c"none", c"/", None, libc::MS_REC | libc::MS_SLAVE, None);
    mount(
        s,
        c"tmpfs",
        c"/tmp",
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(c"mode=0755"),
    );
    chdir(s, c"/tmp");
    mkdir(s, c"oldroot", 0o755);
    mkdir(s, c"newroot", 0o755);
    pivot_root(s, c".", c"oldroot");
    chdir(s, c"/");
    if v.host {
        mount(
            s,
            c"/oldroot",
            c"/newroot",
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        );
        seal(s, c"/newroot", true);
    } else {
        mount(
            s,
            c"tmpfs",
            c"/newroot",
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(c"mode=0755"),
        );
    }
    mkdir(s, c"/newroot/tmp", 0o1777);
    match v.private_tmp {
        true => mount(
            s,
            c"tmpfs",
            c"/newroot/tmp",
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(c"mode=1777"),
        ),
        false => {
            mount(
                s,
                c"/oldroot/tmp",
                c"/newroot/tmp",
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            );
            seal(s, c"/newroot/tmp", false);
        }
    }
    mkdir(s, c"/newroot/proc", 0o555);
    let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount(
        s,
        c"proc",
        c"/newroot/proc",
        Some(c"proc"),
        proc_flags,
        None,
    );
    devices(s, v.terminal);
    // After /tmp, /proc and /dev, so that a path under /tmp is not hidden by the tmpfs;
    // the read-only paths first, so that a writable one inside them wins.
    for b in v.binds.iter() {
        bind_path(s, b);
    }
    if !v.host {
        let flags =
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        mount(s, c"none", c"/newroot", None, flags, None);
    }
    chdir(s, c"/newroot");
    pivot_root(s, c".", c".");
    // SAFETY: a C string; the old root (the tmpfs holding /oldroot) is now stacked on ".".
    if unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) } != 0 {
        refused(s);
    }
    chdir(s, c"/");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_knows_its_parents() {
        let b = bind(b"/srv/in/a.png", false);
        assert_eq!(b.source.as_bytes(), b"/oldroot/srv/in/a.png");
        assert_eq!(b.target.as_bytes(), b"/newroot/srv/in/a.png");
        let parents: Vec<_> = b.parents.iter().map(|p| p.as_bytes().to_vec()).collect();
        assert_eq!(
            parents,
            vec![b"/newroot/srv".to_vec(), b"/newroot/srv/in".to_vec()]
        );
        assert!(bind(b"/", false).parents.is_empty());
        assert_eq!(bind(b"/out/", true).target.as_bytes(), b"/newroot/out");
    }
}
