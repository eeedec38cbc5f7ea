//! The helper program's raw syscalls outside the child, each behind a named operation
//! (`kill_group(pgid, sig)` rather than `kill(-pgid, sig)`), pidfds included. With
//! `spawn/child.rs` (the child between clone and exec) and `seqpacket.rs` (SCM_RIGHTS),
//! this is one of the three places that may say `unsafe`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use nix::errno::Errno;

/// `poll(2)`; EINTR counts as "nothing ready".
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<i32, Errno> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match Errno::result(n) {
        Ok(n) => Ok(n),
        Err(Errno::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}

/// A `pollfd` asking for `events` on `fd` (a negative fd is skipped by poll).
pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Whether `fd` has something to read (or an error or hang-up to report), without waiting.
pub fn ready(fd: BorrowedFd<'_>) -> bool {
    let mut p = [pollfd(fd.as_raw_fd(), libc::POLLIN)];
    poll(&mut p, 0).is_ok() && p[0].revents != 0
}

/// Whether the peer of a connected socket has hung up, without waiting.
pub fn hung_up(fd: BorrowedFd<'_>) -> bool {
    let mut p = [pollfd(fd.as_raw_fd(), libc::POLLRDHUP)];
    poll(&mut p, 0).is_ok() && p[0].revents & (libc::POLLHUP | libc::POLLRDHUP) != 0
}

/// `kill(-pgid, sig)`: a signal to every member of a process group.
pub fn kill_group(pgid: i32, sig: i32) -> Result<(), Errno> {
    debug_assert!(pgid > 0);
    // SAFETY: kill(2) has no memory-safety preconditions.
    Errno::result(unsafe { libc::kill(-pgid, sig) }).map(drop)
}

/// `kill(pid, sig)`: a signal to one process.
pub fn kill_process(pid: i32, sig: i32) -> Result<(), Errno> {
    debug_assert!(pid > 0);
    // SAFETY: kill(2) has no memory-safety preconditions.
    Errno::result(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// `pidfd_open(pid, 0)` (Linux 5.3): an fd that names this process, not its pid number,
/// for as long as it is open. ESRCH: no such process.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    debug_assert!(pid > 0);
    // SAFETY: pidfd_open takes two integers and has no memory-safety preconditions; a
    // non-negative result is a new fd that nothing else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    Errno::result(fd).map(|fd| {
        // SAFETY: `fd` was just returned by the kernel, open, and owned by no one else.
        unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
    })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: a signal to the process the pidfd names,
/// never to a later process with the same pid (ESRCH once it was reaped). `sig` 0 only
/// checks that it may be signalled (EPERM).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> Result<(), Errno> {
    // SAFETY: a null siginfo is allowed (the kernel fills in a kill()-like one); the fd and
    // signal are plain integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Whether the process a pidfd names has exited (the pidfd polls readable from then on).
pub fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut p = [pollfd(pidfd.as_raw_fd(), libc::POLLIN)];
    poll(&mut p, 0).is_ok() && p[0].revents != 0
}

/// What one `wait4(-1, WNOHANG)` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A child ended (or stopped, continued: see the raw status), with its rusage (which
    /// includes the children it reaped).
    Child {
        pid: i32,
        status: i32,
        usage: Rusage,
    },
    /// Children exist, none has changed.
    Nothing,
    /// The helper program has no children at all.
    NoChildren,
}

/// The parts of a `struct rusage` Sluice reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rusage {
    pub user_us: u64,
    pub system_us: u64,
    pub max_rss_kb: u64,
}

/// Clock ticks (of `/proc/PID/stat`) in microseconds.
pub fn ticks_to_us(ticks: u64) -> u64 {
    static PER_SECOND: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = *PER_SECOND.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    });
    ticks * 1_000_000 / hz
}

fn micros(t: libc::timeval) -> u64 {
    (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64
}

/// `wait4(-1, &status, WNOHANG, &rusage)`, retried on EINTR.
pub fn waitpid_any_nohang() -> Wait {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, valid when zeroed.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 writes the status and the rusage into locals.
        let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut ru) };
        match pid {
            0 => return Wait::Nothing,
            p if p > 0 => {
                let usage = Rusage {
                    user_us: micros(ru.ru_utime),
                    system_us: micros(ru.ru_stime),
                    max_rss_kb: ru.ru_maxrss.max(0) as u64,
                };
                return Wait::Child {
                    pid: p,
                    status,
                    usage,
                };
            }
            _ if Errno::last() == Errno::EINTR => continue,
            _ => return Wait::NoChildren, // ECHILD
        }
    }
}

/// `read(2)` into `buf`, retried on EINTR.
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match Errno::result(n) {
            Ok(n) => return Ok(n as usize),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `write(2)` until everything is out; waits for POLLOUT on EAGAIN in case the fd is
/// non-blocking.
pub fn write_all(fd: RawFd, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        // SAFETY: `data` is a valid readable buffer of `data.len()` bytes.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        match Errno::result(n) {
            Ok(n) => data = &data[n as usize..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut p = [pollfd(fd, libc::POLLOUT)];
                poll(&mut p, 1000)?;
                if p[0].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                    return Err(Errno::EPIPE);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes sure fds 0-2 are open, so pipes created later never land on them (the child's
/// dup2 onto 0/1/2 relies on that).
pub fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the fd; open() of a constant C string.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
}

/// Makes sure the helper program's stderr is not its stdout, the port: programs inherit
/// stderr (`stdout: :inherit`, `stderr: :inherit`, a kill command's output), and no byte a
/// program writes may reach the port. Should fd 2 be the same open file as fd 1 (a port
/// opened with `stderr_to_stdout`), it becomes `/dev/null`. Returns whether it was moved.
pub fn keep_stderr_off_port() -> bool {
    let (out, err) = (std::io::stdout(), std::io::stderr());
    let same = match (
        nix::sys::stat::fstat(out.as_fd()),
        nix::sys::stat::fstat(err.as_fd()),
    ) {
        (Ok(out), Ok(err)) => out.st_dev == err.st_dev && out.st_ino == err.st_ino,
        _ => false,
    };
    if !same {
        return false;
    }
    // SAFETY: open() of a constant C string; dup2 onto fd 2 replaces only the helper
    // program's own stderr; close() of the fd just opened here.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 2);
            libc::close(null);
        }
    }
    true
}

/// SIGPIPE ignored: a write to a closed pipe or socket is an EPIPE to handle, not death.
pub fn ignore_sigpipe() {
    // SAFETY: setting SIGPIPE's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Whether `sig`'s disposition is SIG_IGN.
pub fn signal_is_ignored(sig: i32) -> bool {
    // SAFETY: a zeroed sigaction is a valid out-parameter, and a null new action only
    // reads the disposition.
    let (r, old) = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(sig, ptr::null(), &mut old), old)
    };
    r == 0 && old.sa_sigaction == libc::SIG_IGN
}

/// A close-on-exec duplicate of `fd` numbered `lowest` or above (`F_DUPFD_CLOEXEC`).
pub fn dup_at_least(fd: BorrowedFd<'_>, lowest: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: F_DUPFD_CLOEXEC on an fd we borrow creates a new fd, which we then own alone.
    unsafe {
        let new = libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, lowest);
        Errno::result(new).map(|new| OwnedFd::from_raw_fd(new))
    }
}

/// `F_SETPIPE_SZ`; returns whether it took. Failure (a size over the limit) is harmless.
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> bool {
    let size = size.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: F_SETPIPE_SZ on a pipe fd we own has no memory-safety preconditions.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) >= 0 }
}

/// `TIOCSWINSZ`: a terminal's window size in character cells (pixels unknown).
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct through the pointer, which is valid.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) }).map(drop)
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(AT_FDCWD, path, {flags, mode, RESOLVE_NO_MAGICLINKS})` (Linux 5.6): opens
/// `path` like `open(2)` but refuses, with ELOOP, to pass through a `/proc` magic link
/// (`/proc/self/fd/N`, `/dev/stdout`, `/dev/fd/N`), which would name one of the helper
/// program's own fds rather than a file. `O_CLOEXEC` is always added.
pub fn open_no_magic_links(
    path: &std::ffi::CStr,
    flags: libc::c_int,
    mode: u32,
) -> Result<OwnedFd, Errno> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if flags & libc::O_CREAT != 0 {
            u64::from(mode)
        } else {
            0
        },
        resolve: libc::RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: `path` is a NUL-terminated C string and `how` a valid open_how whose
        // size is passed with it; a non-negative result is a new fd owned by no one else.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match Errno::result(fd) {
            // SAFETY: `fd` was just returned by the kernel, open, and owned by no one else.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `open(2)` with `O_CLOEXEC` added, following magic links: only for the helper program's
/// own paths (`/proc/self/fd/2`, the console), never for a path a caller gave.
pub fn open_own(path: &std::ffi::CStr, flags: libc::c_int) -> Result<OwnedFd, Errno> {
    loop {
        // SAFETY: `path` is a NUL-terminated C string; no O_CREAT, so no mode is read; a
        // non-negative result is a new fd owned by no one else.
        let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
        match Errno::result(fd) {
            // SAFETY: `fd` was just returned by the kernel, open, and owned by no one else.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The type of the filesystem an open file lives on (`fstatfs`'s `f_type`).
pub fn filesystem_type(fd: BorrowedFd<'_>) -> Result<i64, Errno> {
    // SAFETY: statfs is plain data, valid when zeroed; fstatfs writes into it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, exclusively borrowed statfs for the call.
    Errno::result(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// Clears `O_NONBLOCK` on an open file description (the program expects blocking stdio).
pub fn set_blocking(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: F_GETFL/F_SETFL on an fd we borrow have no memory-safety preconditions.
    unsafe {
        let flags = Errno::result(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        Errno::result(libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETFL,
            flags & !libc::O_NONBLOCK,
        ))
        .map(drop)
    }
}

/// The identity the kernel checks file access against (fsuid, fsgid, supplementary
/// groups), switched for the calling thread only, restored when dropped. The helper
/// program is single-threaded; raw syscalls (not glibc's wrappers, which change every
/// thread) keep that true of tests too.
pub struct FsIdentity {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

fn set_fsuid(uid: libc::uid_t) -> libc::uid_t {
    // SAFETY: setfsuid takes an integer; it returns the previous fsuid.
    unsafe { libc::syscall(libc::SYS_setfsuid, uid) as libc::uid_t }
}

fn set_fsgid(gid: libc::gid_t) -> libc::gid_t {
    // SAFETY: setfsgid takes an integer; it returns the previous fsgid.
    unsafe { libc::syscall(libc::SYS_setfsgid, gid) as libc::gid_t }
}

fn set_thread_groups(groups: &[libc::gid_t]) -> Result<(), Errno> {
    // SAFETY: `groups` is a valid array of `groups.len()` gids, read by the kernel.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    Errno::result(r).map(drop)
}

fn thread_groups() -> Result<Vec<libc::gid_t>, Errno> {
    // SAFETY: a null list with size 0 only asks for the count.
    let n = Errno::result(unsafe {
        libc::syscall(libc::SYS_getgroups, 0, ptr::null_mut::<libc::gid_t>())
    })?;
    let mut groups = vec![0 as libc::gid_t; n as usize];
    // SAFETY: `groups` has room for `n` gids.
    let n = Errno::result(unsafe { libc::syscall(libc::SYS_getgroups, n, groups.as_mut_ptr()) })?;
    groups.truncate(n as usize);
    Ok(groups)
}

impl FsIdentity {
    /// Accesses files as `uid` (its capabilities over files dropped, as the kernel does
    /// when the fsuid leaves 0), `gid` and `groups`, each `None` left as it is. EPERM
    /// when the kernel would not switch (the helper program is not privileged).
    pub fn assume(
        uid: Option<libc::uid_t>,
        gid: Option<libc::gid_t>,
        groups: Option<&[libc::gid_t]>,
    ) -> Result<FsIdentity, Errno> {
        // setfsuid(-1) and setfsgid(-1) change nothing and return the current ids.
        let saved = FsIdentity {
            uid: set_fsuid(libc::uid_t::MAX),
            gid: set_fsgid(libc::gid_t::MAX),
            groups: thread_groups()?,
        };
        if let Some(groups) = groups {
            set_thread_groups(groups)?;
        }
        if let Some(gid) = gid {
            set_fsgid(gid);
            if set_fsgid(libc::gid_t::MAX) != gid {
                return Err(Errno::EPERM);
            }
        }
        if let Some(uid) = uid {
            set_fsuid(uid);
            if set_fsuid(libc::uid_t::MAX) != uid {
                return Err(Errno::EPERM);
            }
        }
        Ok(saved)
    }
}

impl Drop for FsIdentity {
    fn drop(&mut self) {
        // The fsuid first: back at 0 it regains the privilege the others need.
        set_fsuid(self.uid);
        set_fsgid(self.gid);
        let _ = set_thread_groups(&self.groups);
    }
}

/// The highest valid signal number.
pub fn sigrtmax() -> i32 {
    libc::SIGRTMAX()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn named_operations() {
        assert!(sigrtmax() >= 32);
        assert_eq!(kill_process(std::process::id() as i32, 0), Ok(()));
        assert_eq!(kill_group(i32::MAX, 0), Err(Errno::ESRCH));
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!hung_up(a.as_fd()));
        drop(b);
        // Another test thread may fork while `b` is open; its child holds a copy
        // until it execs, so the hang-up can come a moment later.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !hung_up(a.as_fd()) {
            assert!(std::time::Instant::now() < deadline, "no hang-up after 5 s");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn pidfds() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let fd = pidfd_open(child.id() as i32).unwrap();
        assert!(!pidfd_exited(fd.as_fd()));
        assert_eq!(pidfd_send_signal(fd.as_fd(), 0), Ok(()));
        assert_eq!(pidfd_send_signal(fd.as_fd(), libc::SIGKILL), Ok(()));
        child.wait().unwrap();
        assert!(pidfd_exited(fd.as_fd()));
        // Reaped: the pidfd names no process any more, whatever now has its number.
        assert_eq!(pidfd_send_signal(fd.as_fd(), 0), Err(Errno::ESRCH));
        assert_eq!(pidfd_open(i32::MAX).err(), Some(Errno::ESRCH));
    }
}
