//! The processes of a sandbox, each a copy-on-write fork (none shares the helper
//! program's memory, so none is bound by its async-signal-safety rules; they still make
//! raw syscalls only, on what the helper program prepared):
//!
//! * the **monitor**, the helper program's child (its pid is the program's pid for
//!   Sluice, its cgroup the program's): it creates the namespaces by cloning the init,
//!   forwards every signal it gets to it, and when the init ends, ends as the program
//!   ended: the same exit code, or killed by the same signal. It is not pid 1 of anything,
//!   so it can die of a signal; a pid 1 cannot, even of its own signal.
//! * the **init**, pid 1 of the new pid namespace: builds the filesystem view
//!   (`mounts.rs`), sets the hostname, brings loopback up, forks the program, then
//!   forwards signals to the program's process group, reaps orphans, and when the program
//!   ends, hands its wait status to the monitor and exits (the kernel then SIGKILLs
//!   whatever is left in the namespace).
//! * the **program**, pid 2: `child::run`, with the bounding set dropped before the
//!   credentials and, after them, no capabilities, `no_new_privs` and the seccomp filter.
//!
//! A pid 1 gets only the signals it has a handler for (SIGKILL and SIGSTOP from outside
//! excepted): a `sleep` run as pid 1 would ignore `kill_signal`. Blocked signals are
//! queued whatever the handler, so the monitor and the init block them all and take them
//! with `sigwaitinfo`.

use std::ptr;

use nix::errno::Errno;

use super::super::child::{fail, run_program, Shared, SANDBOX, SETUP};
use super::{mounts, Prepared};

fn last() -> i32 {
    Errno::last_raw()
}

fn getpid() -> libc::pid_t {
    // SAFETY: no arguments. (glibc's getpid would be as good; the raw call does not
    // depend on any of glibc's per-thread state, which a raw clone leaves stale.)
    unsafe { libc::syscall(libc::SYS_getpid) as libc::pid_t }
}

/// A raw `clone` without a new stack: a fork, into `flags`' new namespaces.
fn fork(flags: libc::c_int) -> libc::pid_t {
    // SAFETY: without CLONE_VM the child gets a copy of our memory and continues on its
    // copy of this stack; the process is single-threaded, so nothing is left half-held.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        ) as libc::pid_t
    }
}

/// Blocks every signal; returns the full set, to wait on.
fn block_all() -> libc::sigset_t {
    // SAFETY: a local sigset_t, filled and installed.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, ptr::null_mut());
        all
    }
}

fn wait_signal(all: &libc::sigset_t) -> i32 {
    // SAFETY: `all` is a live sigset_t; the info is not needed.
    unsafe { libc::sigwaitinfo(all, ptr::null_mut()) }
}

/// Closes every fd but `keep`.
fn close_all_but(keep: i32) {
    // SAFETY: close_range on plain numbers; nothing in this process uses the others.
    unsafe {
        if keep > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
    }
}

/// Ends this process the way `status` says another ended: the same exit code, or the
/// same signal (without a core file of ours).
fn end_as(status: i32) -> ! {
    // SAFETY: plain syscalls on local values; _exit ends only this process.
    unsafe {
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::kill(getpid(), sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
            libc::_exit(128 + sig)
        }
        libc::_exit(libc::WEXITSTATUS(status))
    }
}

/// The monitor: runs in the helper program's child, born in the program's cgroup.
pub fn monitor(s: &Shared, sb: &Prepared) -> ! {
    s.join_cgroup();
    s.take_group();
    // SAFETY: plain syscalls; a local array for pipe2.
    let (status_r, status_w) = unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(s, SETUP, last());
        }
        if libc::getppid() != s.plan.helper_pid {
            libc::_exit(1);
        }
        let mut fds = [-1; 2];
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            fail(s, SETUP, last());
        }
        (fds[0], fds[1])
    };
    let all = block_all();
    let init = fork(sb.clone_flags);
    if init < 0 {
        fail(s, SANDBOX, last());
    }
    if init == 0 {
        // SAFETY: our copy of the pipe's read end.
        unsafe { libc::close(status_r) };
        init_main(s, sb, status_w, &all);
    }
    close_all_but(status_r);
    loop {
        let sig = wait_signal(&all);
        if sig == libc::SIGCHLD {
            let mut status = 0;
            // SAFETY: a local int for the status.
            if unsafe { libc::waitpid(init, &mut status, libc::WNOHANG) } != init {
                continue;
            }
            let mut program = [0u8; 4];
            // SAFETY: a local buffer of the size passed. Every write end is closed (the
            // init exited, the program closed its copy first thing): no wait.
            let n = unsafe { libc::read(status_r, program.as_mut_ptr().cast(), 4) };
            end_as(if n == 4 {
                i32::from_ne_bytes(program)
            } else {
                status
            });
        } else if sig > 0 {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(init, sig) };
        }
    }
}

/// The init: pid 1 of the sandbox's namespaces.
fn init_main(s: &Shared, sb: &Prepared, status_w: i32, all: &libc::sigset_t) -> ! {
    // SAFETY: plain syscalls on local values and prepared strings.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(s, SETUP, last());
        }
    }
    mounts::build(s, &sb.view);
    // SAFETY: a static name of the length passed.
    if unsafe { libc::sethostname(c"sandbox".as_ptr(), 7) } != 0 {
        fail(s, SANDBOX, last());
    }
    if sb.private_network {
        loopback_up(s);
    }
    s.set_parent(getpid());
    let program = fork(0);
    if program < 0 {
        fail(s, SANDBOX, last());
    }
    if program == 0 {
        // SAFETY: our copy of the monitor's pipe, which the program must not hold.
        unsafe { libc::close(status_w) };
        run_program(s);
    }
    close_all_but(status_w);
    loop {
        let sig = wait_signal(all);
        if sig == libc::SIGCHLD {
            loop {
                let mut status = 0;
                // SAFETY: a local int for the status.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == program {
                    let bytes = status.to_ne_bytes();
                    // SAFETY: a local buffer of the size passed; then _exit.
                    unsafe {
                        libc::write(status_w, bytes.as_ptr().cast(), 4);
                        libc::_exit(0);
                    }
                }
            }
        } else if sig > 0 {
            // SAFETY: signals to the program's group (it is a session leader), or to it.
            unsafe {
                if libc::kill(-program, sig) != 0 {
                    libc::kill(program, sig);
                }
            }
        }
    }
}

/// `ip link set lo up`, by ioctl.
fn loopback_up(s: &Shared) {
    // SAFETY: a local ifreq, named "lo" (NUL-terminated, within IFNAMSIZ); the socket is
    // closed before returning.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            fail(s, SANDBOX, last());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) != 0 {
            fail(s, SANDBOX, last());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) != 0 {
            fail(s, SANDBOX, last());
        }
        libc::close(sock);
    }
}

/// In the program, before its credentials: the capability bounding set emptied (which
/// needs CAP_SETPCAP, dropped with the credentials), so no exec gives a capability back.
pub fn drop_bounding_set(s: &Shared) {
    for cap in 0..64 {
        // SAFETY: prctl on plain numbers.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            match last() {
                // Past the last capability this kernel knows.
                libc::EINVAL => break,
                // Unprivileged: there is nothing to drop that an exec could give back
                // under no_new_privs.
                libc::EPERM if unsafe_free_euid() != 0 => break,
                e => fail(s, SANDBOX, e),
            }
        }
    }
}

fn unsafe_free_euid() -> libc::uid_t {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() }
}

// `struct __user_cap_header_struct` and `__user_cap_data_struct` (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// In the program, last before its exec: no capabilities (ambient, effective, permitted,
/// inheritable), `no_new_privs`, then the seccomp filter.
pub fn lock_down(s: &Shared, sb: &Prepared) {
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let none = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: prctl and capset on local structs of the kernel's layout; the filter is a
    // live vector prepared before the clone, its length in `prog`.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::syscall(libc::SYS_capset, &header as *const CapHeader, none.as_ptr()) != 0 {
            fail(s, SANDBOX, last());
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
            fail(s, SANDBOX, last());
        }
        if let Some(filter) = &sb.filter {
            let prog = libc::sock_fprog {
                len: filter.len() as libc::c_ushort,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            let mode = libc::SECCOMP_MODE_FILTER as libc::c_ulong;
            if libc::prctl(libc::PR_SET_SECCOMP, mode, &prog as *const libc::sock_fprog) != 0 {
                fail(s, SANDBOX, last());
            }
        }
    }
}
