//! The child between `clone` and `execve`: the one fence for the child's `unsafe`.
//!
//! The child is started the way posix_spawn does it, `clone(CLONE_VM | CLONE_VFORK)` on a
//! stack of its own: nothing is copied (a fork of the helper program cost ~110 us more
//! under virtualisation), and the parent resumes once the child has exec'ed or failed.
//! Sharing the parent's memory, the child may only make raw syscalls on what the parent
//! prepared ([`ChildPlan`]): no allocation, no locks. A failure before exec is written
//! straight into the parent's memory (stage + errno), so a missing program is never
//! exit code 127.

use std::ffi::CStr;
use std::os::fd::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use nix::errno::Errno;
use sluice_protocol::Stage;

use super::credentials::{Applied, RlimitResource};
use crate::sys;

/// The session and process group of a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// A session (and group) of its own: a single program, which may own a terminal.
    Session,
    /// A group of its own, in the helper program's session: a pipeline's first stage (the
    /// others could not join its group from another session).
    Group,
    /// The group of this leader: a pipeline's later stage.
    Join(libc::pid_t),
}

/// Everything the child needs, prepared before the clone.
pub struct ChildPlan<'a> {
    /// The program cgroup's `cgroup.procs`, or -1.
    pub procs_fd: RawFd,
    /// What goes on fds 0 to 4 (-1: nothing; for 2, keep the helper program's). Every
    /// source is above 4, so no dup2 clobbers another source.
    pub stdio: [RawFd; 5],
    /// The session and process group the child gets.
    pub group: Grouping,
    /// fd 0 is a pseudo-terminal's slave: make it the controlling terminal.
    pub controlling_tty: bool,
    /// Limits, priority, umask and credentials to apply.
    pub applied: &'a Applied,
    pub helper_pid: libc::pid_t,
    pub cd: Option<&'a CStr>,
    /// NULL-terminated.
    pub argv: &'a [*const libc::c_char],
    /// NULL-terminated.
    pub envp: &'a [*const libc::c_char],
    pub candidates: &'a [*const libc::c_char],
}

/// What the child reported: `(stage index + 1) << 32 | errno`, 0 when exec succeeded.
struct Shared<'a> {
    plan: &'a ChildPlan<'a>,
    ignored_signals: &'a [libc::c_int],
    failure: AtomicU64,
}

/// The signals the helper program ignores (SIGPIPE, and whatever it inherited as ignored):
/// the only dispositions that would survive exec, so the only ones the child must reset.
/// Dispositions never change after start-up, so this is computed once.
fn ignored_signals() -> &'static [libc::c_int] {
    static IGNORED: OnceLock<Vec<libc::c_int>> = OnceLock::new();
    IGNORED.get_or_init(|| {
        (1..=sys::sigrtmax())
            .filter(|&sig| sig != libc::SIGKILL && sig != libc::SIGSTOP)
            .filter(|&sig| sys::signal_is_ignored(sig))
            .collect()
    })
}

/// The fd limit the helper program inherited, restored in every program.
static NOFILE: OnceLock<libc::rlimit> = OnceLock::new();

/// Raises the helper program's own fd limit to the hard limit (every running program
/// holds a channel fd in it) and remembers the inherited one for the programs.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a local rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let _ = NOFILE.set(limit);
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
    }
}

/// Reports a failure to the suspended parent and exits. Async-signal-safe only.
fn fail(s: &Shared, stage: u64, errno: i32) -> ! {
    s.failure
        .store(stage << 32 | u64::from(errno as u32), Ordering::SeqCst);
    // SAFETY: _exit ends the child only (it is its own process) without running any of
    // the parent's at-exit code.
    unsafe { libc::_exit(127) }
}

/// Limits, priority, umask, then groups, group and user, in that order: the earlier steps
/// may need the privilege the last ones drop. Async-signal-safe only.
fn apply(s: &Shared, a: &Applied) {
    let last = Errno::last_raw;
    // SAFETY: raw syscalls on values and arrays the parent prepared and keeps alive while
    // it is suspended (CLONE_VFORK); nothing here allocates or locks.
    unsafe {
        for (resource, limit) in &a.rlimits {
            if libc::setrlimit(*resource, limit) != 0 {
                fail(s, LIMITS, last());
            }
        }
        if let Some(nice) = a.nice {
            if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                fail(s, PRIORITY, privilege_errno(last()));
            }
        }
        if let Some(mask) = a.umask {
            libc::umask(mask);
        }
        if let Some(groups) = &a.groups {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                fail(s, CREDENTIALS, last());
            }
        }
        if let Some(gid) = a.gid {
            if libc::setgid(gid) != 0 {
                fail(s, CREDENTIALS, last());
            }
        }
        if let Some(uid) = a.uid {
            if libc::setuid(uid) != 0 {
                fail(s, CREDENTIALS, last());
            }
        }
    }
}

/// Whether the spec's fd limit (its `RLIMIT_NOFILE` soft value) leaves no room for `fd`.
/// Async-signal-safe: it only reads the slice.
fn over_fd_limit(rlimits: &[(RlimitResource, libc::rlimit)], fd: usize) -> bool {
    rlimits.iter().any(|(resource, limit)| {
        *resource == libc::RLIMIT_NOFILE && limit.rlim_cur <= fd as libc::rlim_t
    })
}

/// `setpriority` says EACCES where a lower nice value needs a privilege the process lacks
/// (CAP_SYS_NICE); for our own pid that is its only meaning. Sluice names a missing
/// privilege EPERM, as for credentials. Async-signal-safe.
fn privilege_errno(errno: i32) -> i32 {
    if errno == libc::EACCES {
        libc::EPERM
    } else {
        errno
    }
}

/// Runs in the child: only async-signal-safe calls, no allocation, no locks.
fn run(s: &Shared) -> ! {
    let p = s.plan;
    let last = Errno::last_raw;
    // SAFETY: the calls below are raw syscalls on fds and pointers prepared by the parent,
    // which is suspended until this child execs or exits (CLONE_VFORK), so they all stay
    // valid; nothing here allocates or locks.
    unsafe {
        if p.procs_fd >= 0 && libc::write(p.procs_fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(s, CGROUP, last());
        }
        // Own session and process group (or the pipeline's): the group is what signals
        // target.
        let grouped = match p.group {
            Grouping::Session => libc::setsid(),
            Grouping::Group => libc::setpgid(0, 0),
            Grouping::Join(leader) => libc::setpgid(0, leader),
        };
        if grouped < 0 {
            fail(s, SETUP, last());
        }
        // The program gets the fd limit the helper program started with, not the one it
        // raised for itself (rlimits survive exec); then the spec's limits.
        if let Some(limit) = NOFILE.get() {
            libc::setrlimit(libc::RLIMIT_NOFILE, limit);
        }
        apply(s, p.applied);
        // After the credentials: a change of them clears the parent-death signal.
        let pdeath = libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if pdeath != 0 {
            fail(s, SETUP, last());
        }
        // The helper program may have died before PDEATHSIG was armed.
        if libc::getppid() != p.helper_pid {
            libc::_exit(1);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, ptr::null_mut());
        // Handlers are reset by exec itself; only ignored signals would stay ignored.
        for &sig in s.ignored_signals {
            libc::signal(sig, libc::SIG_DFL);
        }
        // All sources are >= 5 (stdio.rs moves them there), so no dup2 clobbers another
        // source. dup2 clears FD_CLOEXEC on the target.
        let mut first_private = 3;
        for (target, &source) in p.stdio.iter().enumerate() {
            if source < 0 {
                continue;
            }
            if libc::dup2(source, target as libc::c_int) < 0 {
                let errno = last();
                // An fd past the spec's own fd limit (`rlimits: [nofile: 0]`) is EBADF:
                // the limit failed the program, not the set-up.
                let stage = if errno == libc::EBADF && over_fd_limit(&p.applied.rlimits, target) {
                    LIMITS
                } else {
                    SETUP
                };
                fail(s, stage, errno);
            }
            first_private = first_private.max(target as libc::c_uint + 1);
        }
        // The program is a session leader (setsid above): its terminal becomes the
        // session's, so ^C reaches its foreground group and it gets SIGWINCH.
        if p.controlling_tty && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
            fail(s, PTY, last());
        }
        // Nothing else the helper program holds may leak into the program (fds inherited
        // from the BEAM, other programs' channels): the program sees 0-2, and 3-4 with a
        // private channel. Errors (old kernels) are ignored.
        libc::syscall(
            libc::SYS_close_range,
            first_private,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        if let Some(cd) = p.cd {
            if libc::chdir(cd.as_ptr()) != 0 {
                fail(s, CHDIR, last());
            }
        }
        // execvp's rules: EACCES wins if seen, ENOENT-like errors move on, anything else
        // stops the search.
        let mut seen_eacces = false;
        let mut errno = libc::ENOENT;
        let mut hard = None;
        for &file in p.candidates {
            libc::execve(file, p.argv.as_ptr(), p.envp.as_ptr());
            errno = last();
            match errno {
                libc::EACCES => seen_eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                e => {
                    hard = Some(e);
                    break;
                }
            }
        }
        let e = hard.unwrap_or(if seen_eacces { libc::EACCES } else { errno });
        fail(s, EXEC, e)
    }
}

// The stage codes the child reports: a stage's position in `Stage::ALL`, plus one (0 is
// "no failure").
const CGROUP: u64 = Stage::Cgroup as u64 + 1;
const SETUP: u64 = Stage::Setup as u64 + 1;
const PTY: u64 = Stage::Pty as u64 + 1;
const CHDIR: u64 = Stage::Chdir as u64 + 1;
const EXEC: u64 = Stage::Exec as u64 + 1;
const CREDENTIALS: u64 = Stage::Credentials as u64 + 1;
const PRIORITY: u64 = Stage::Priority as u64 + 1;
const LIMITS: u64 = Stage::Limits as u64 + 1;

/// Size of the stack the child runs on between the clone and exec.
const CHILD_STACK: usize = 64 * 1024;

/// The top of the child's stack. The parent is suspended while a child uses it
/// (CLONE_VFORK), so one stack serves every spawn.
fn stack_top() -> *mut libc::c_void {
    static STACK: OnceLock<usize> = OnceLock::new();
    let base = *STACK.get_or_init(|| {
        // u128 elements keep the top 16-byte aligned, as the ABI wants.
        let stack = vec![0u128; CHILD_STACK / 16].into_boxed_slice();
        Box::leak(stack).as_mut_ptr() as usize
    });
    (base + CHILD_STACK) as *mut libc::c_void
}

extern "C" fn entry(shared: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `shared` is the parent's `Shared`, which stays alive because the parent is
    // suspended (CLONE_VFORK) until this child execs or exits.
    run(unsafe { &*(shared as *const Shared) })
}

/// How the clone went.
pub enum Outcome {
    /// The child exec'ed.
    Running(libc::pid_t),
    /// The child failed before exec (and exited); it is still to be reaped.
    Failed {
        pid: libc::pid_t,
        stage: Stage,
        errno: Errno,
    },
}

/// Clones the child and returns once it has exec'ed or failed.
pub fn start(plan: &ChildPlan) -> Result<Outcome, Errno> {
    let shared = Shared {
        plan,
        ignored_signals: ignored_signals(),
        failure: AtomicU64::new(0),
    };
    // SAFETY: the child shares our memory but runs on its own stack, while we are
    // suspended; it only reads the plan, makes raw syscalls and writes `shared.failure`.
    let pid = unsafe {
        libc::clone(
            entry,
            stack_top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &shared as *const Shared as *mut libc::c_void,
        )
    };
    let pid = Errno::result(pid)?;
    let failure = shared.failure.load(Ordering::SeqCst);
    if failure == 0 {
        return Ok(Outcome::Running(pid));
    }
    let code = (failure >> 32) as usize;
    Ok(Outcome::Failed {
        pid,
        stage: Stage::ALL
            .get(code.wrapping_sub(1))
            .copied()
            .unwrap_or(Stage::Setup),
        errno: Errno::from_raw(failure as u32 as i32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_codes_decode_through_the_stage_list() {
        for (i, s) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(s as usize, i);
        }
        assert_eq!(Stage::ALL[EXEC as usize - 1], Stage::Exec);
    }

    #[test]
    fn an_fd_past_the_specs_fd_limit_is_the_limits_fault() {
        let nofile = |soft| {
            (
                libc::RLIMIT_NOFILE,
                libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: soft,
                },
            )
        };
        let core = (
            libc::RLIMIT_CORE,
            libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            },
        );
        assert!(over_fd_limit(&[nofile(0)], 0));
        assert!(over_fd_limit(&[core, nofile(2)], 2));
        assert!(!over_fd_limit(&[nofile(3)], 2));
        assert!(!over_fd_limit(&[core], 0));
        assert!(!over_fd_limit(&[], 4));
    }

    #[test]
    fn a_refused_lower_nice_is_eperm() {
        assert_eq!(privilege_errno(libc::EACCES), libc::EPERM);
        assert_eq!(privilege_errno(libc::EINVAL), libc::EINVAL);
    }
}
