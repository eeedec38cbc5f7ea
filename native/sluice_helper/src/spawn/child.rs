//! The child between `clone` and `execve`: the one fence for the child's `unsafe`.
//!
//! The child is started almost the way posix_spawn does it, `clone(CLONE_VM)` on a stack
//! of its own: nothing is copied (a fork of the helper program cost ~110 us more under
//! virtualisation). Sharing the parent's memory, the child may only make raw syscalls on
//! what the parent prepared ([`ChildPlan`]): no allocation, no locks. A failure before
//! exec is written straight into the parent's memory (stage + errno), so a missing program
//! is never exit code 127.
//!
//! Unlike posix_spawn, there is no `CLONE_VFORK`: the kernel would suspend the parent until
//! the child execs or exits, *without bound*, and a child that has taken on a `user:` can
//! be held before its exec by that user (a SIGSTOP between setuid and execve; a write
//! lease on the executable, which makes execve wait `lease-break-time`, 45 s). The
//! single-threaded helper program would wait as long, and every spawn and stop of the node
//! with it. Instead the child alone holds the write end of a close-on-exec pipe (the
//! "exec pipe"): its end of file says the child has exec'ed (the fd closes once the new
//! program's memory has replaced ours) or exited. The parent polls it for at most
//! [`EXEC_DEADLINE`]; past it, the child is SIGKILLed (which ends a stop and a lease wait)
//! and the spawn fails with `:etimedout` at stage `:exec`. Until the end of file the
//! parent touches nothing the child uses: the stack, the plan, its strings, `Shared`.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use sluice_protocol::Stage;

use super::clone;
use super::credentials::{Applied, RlimitResource};
use super::sandbox;
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
    /// The directory of the cgroup the child is born in (or joins, see `clone.rs`), or -1.
    pub cgroup_fd: RawFd,
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
    /// Run in a sandbox (`sandbox/`), prepared before the clone.
    pub sandbox: Option<&'a sandbox::Prepared>,
}

/// What the child reported: `(stage index + 1) << 32 | errno`, 0 when exec succeeded.
pub(super) struct Shared<'a> {
    pub(super) plan: &'a ChildPlan<'a>,
    ignored_signals: &'a [libc::c_int],
    /// The child was not cloned into its cgroup and joins it itself (`clone.rs`).
    join_by_write: AtomicBool,
    failure: AtomicU64,
    /// A sandbox's processes share no memory with the helper program: they write the
    /// failure into the exec pipe, whose write end this is (-1: not sandboxed).
    report: RawFd,
    /// The parent the program checks it still has after `PR_SET_PDEATHSIG`: the helper
    /// program, or a sandbox's init.
    parent: AtomicI32,
}

impl Shared<'_> {
    /// The init of a sandbox, in its own copy, before forking the program.
    pub(super) fn set_parent(&self, pid: libc::pid_t) {
        self.parent.store(pid, Ordering::Relaxed);
    }
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
pub(super) fn fail(s: &Shared, stage: u64, errno: i32) -> ! {
    let code = stage << 32 | u64::from(errno as u32);
    s.failure.store(code, Ordering::SeqCst);
    // SAFETY: 8 bytes from a local into the exec pipe (atomic: under PIPE_BUF), then
    // _exit ends the child only (it is its own process) without running any of the
    // parent's at-exit code.
    unsafe {
        if s.report >= 0 {
            libc::write(s.report, (&code as *const u64).cast(), 8);
        }
        libc::_exit(127)
    }
}

/// Limits, priority, umask, then groups, group and user, in that order: the earlier steps
/// may need the privilege the last ones drop. Async-signal-safe only.
fn apply(s: &Shared, a: &Applied) {
    let last = Errno::last_raw;
    // SAFETY: raw syscalls on values and arrays the parent prepared and keeps alive, unread
    // and unwritten, until the exec pipe's end of file (see `start`); nothing here
    // allocates or locks.
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

impl Shared<'_> {
    /// Joins the cgroup by a write to its `cgroup.procs`, if the clone did not place the
    /// child there. Async-signal-safe.
    pub(super) fn join_cgroup(&self) {
        let p = self.plan;
        if p.cgroup_fd < 0 || !self.join_by_write.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: raw syscalls on the cgroup's directory fd, kept open by the parent.
        unsafe {
            let procs = libc::openat(
                p.cgroup_fd,
                c"cgroup.procs".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if procs < 0 || libc::write(procs, b"0".as_ptr().cast(), 1) != 1 {
                fail(self, CGROUP, Errno::last_raw());
            }
            libc::close(procs);
        }
    }

    /// Own session and process group (or the pipeline's): the group is what signals
    /// target. Async-signal-safe.
    pub(super) fn take_group(&self) {
        // SAFETY: setsid and setpgid take plain numbers.
        let grouped = unsafe {
            match self.plan.group {
                Grouping::Session => libc::setsid(),
                Grouping::Group => libc::setpgid(0, 0),
                Grouping::Join(leader) => libc::setpgid(0, leader),
            }
        };
        if grouped < 0 {
            fail(self, SETUP, Errno::last_raw());
        }
    }
}

/// The program in a sandbox (`sandbox/init.rs`): forked by the sandbox's init.
pub(super) fn run_program(s: &Shared) -> ! {
    run(s, true)
}

/// Runs in the child: only async-signal-safe calls, no allocation, no locks. `sandboxed`:
/// the program of a sandbox, a session of its own in its namespaces (its monitor took the
/// plan's group and cgroup).
fn run(s: &Shared, sandboxed: bool) -> ! {
    let p = s.plan;
    let last = Errno::last_raw;
    if !sandboxed {
        s.join_cgroup();
        s.take_group();
    }
    // SAFETY: the calls below are raw syscalls on fds and pointers prepared by the parent,
    // which keeps them alive and untouched until this child execs or exits (it waits for
    // the exec pipe's end of file, see `start`), so they all stay valid; nothing here
    // allocates or locks.
    unsafe {
        if sandboxed && libc::setsid() < 0 {
            fail(s, SETUP, last());
        }
        // The program gets the fd limit the helper program started with, not the one it
        // raised for itself (rlimits survive exec); then the spec's limits.
        if let Some(limit) = NOFILE.get() {
            libc::setrlimit(libc::RLIMIT_NOFILE, limit);
        }
        if sandboxed {
            sandbox::drop_bounding_set(s);
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
        if libc::getppid() != s.parent.load(Ordering::Relaxed) {
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
            // A sandbox whose view lacks the VM's directory (no `cd:` given) starts in /.
            let fallback = p.sandbox.is_some_and(|sb| sb.default_cd);
            if libc::chdir(cd.as_ptr()) != 0 && !(fallback && libc::chdir(c"/".as_ptr()) == 0) {
                fail(s, CHDIR, last());
            }
        }
        if let Some(sb) = p.sandbox {
            sandbox::lock_down(s, sb);
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
pub(super) const SETUP: u64 = Stage::Setup as u64 + 1;
pub(super) const SANDBOX: u64 = Stage::Sandbox as u64 + 1;
const PTY: u64 = Stage::Pty as u64 + 1;
const CHDIR: u64 = Stage::Chdir as u64 + 1;
const EXEC: u64 = Stage::Exec as u64 + 1;
const CREDENTIALS: u64 = Stage::Credentials as u64 + 1;
const PRIORITY: u64 = Stage::Priority as u64 + 1;
const LIMITS: u64 = Stage::Limits as u64 + 1;

/// Size of the stack the child runs on between the clone and exec.
const CHILD_STACK: usize = 64 * 1024;

/// The top of the child's stack. The parent does not return from `start` (and so starts
/// no other child) before the child is done with it (exec'ed or dead: the exec pipe's end
/// of file), so one stack serves every spawn.
fn stack_top() -> *mut libc::c_void {
    static STACK: OnceLock<usize> = OnceLock::new();
    let base = *STACK.get_or_init(|| {
        // u128 elements keep the top 16-byte aligned, as the ABI wants.
        let stack = vec![0u128; CHILD_STACK / 16].into_boxed_slice();
        Box::leak(stack).as_mut_ptr() as usize
    });
    (base + CHILD_STACK) as *mut libc::c_void
}

extern "C" fn sandbox_entry(shared: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `shared` is our copy of the parent's `Shared` (a fork: no CLONE_VM), alive
    // for as long as this process.
    let s = unsafe { &*(shared as *const Shared) };
    match s.plan.sandbox {
        Some(sb) => sandbox::monitor(s, sb),
        None => run(s, false),
    }
}

extern "C" fn entry(shared: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `shared` is the parent's `Shared`, which stays alive because the parent
    // stays in `start` until this child execs or exits (the exec pipe's end of file).
    run(unsafe { &*(shared as *const Shared) }, false)
}

/// How long a child may take from the clone to its exec. A normal exec takes well under a
/// millisecond; a child still before exec past this is stopped (a SIGSTOP from its
/// `user:`) or waiting in the kernel (a lease on the executable), and is SIGKILLed.
pub const EXEC_DEADLINE: Duration = Duration::from_secs(2);

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
    /// The child had not exec'ed at [`EXEC_DEADLINE`] and was SIGKILLed; it is still to
    /// be reaped.
    TimedOut(libc::pid_t),
}

/// The exec pipe: its read end, and its write end numbered 5 or above (the child `dup2`s
/// onto 0 to 4, which must not close it), both close-on-exec.
fn exec_pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two new fds into a local array; we own them from here on.
    let (read, write) = unsafe {
        Errno::result(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    // The helper program's fds 0 to 4 are taken (stdio, its port, its fd socket), so this
    // is rare.
    if write.as_raw_fd() < 5 {
        return Ok((read, sys::dup_at_least(write.as_fd(), 5)?));
    }
    Ok((read, write))
}

/// Polls the exec pipe's read end until its end of file (every write end closed: the child
/// exec'ed or died) or `deadline` (`None`: no deadline); returns whether the end of file
/// came. The child never writes, so "readable" is the end of file. Makes only syscalls that
/// leave errno alone when they succeed (poll fails only with EINTR, which needs a signal
/// handler and the helper program installs none, or ENOMEM) and allocates nothing: see
/// `start`'s SAFETY.
fn await_exec(pipe: &OwnedFd, deadline: Option<Instant>) -> bool {
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                // Rounded up, so the poll never wakes just before the deadline.
                (left.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32
            }
        };
        let mut p = [sys::pollfd(pipe.as_raw_fd(), libc::POLLIN)];
        if matches!(sys::poll(&mut p, timeout_ms), Ok(n) if n > 0) && p[0].revents != 0 {
            return true;
        }
    }
}

/// Clones the child and returns once it has exec'ed, failed, or been killed at
/// [`EXEC_DEADLINE`]: never later than the deadline, except for a child the kernel keeps in
/// an uninterruptible sleep past its SIGKILL (see `docs/architecture.md`).
pub fn start(plan: &ChildPlan) -> Result<Outcome, Errno> {
    let (exec_read, exec_write) = exec_pipe()?;
    // A sandbox's monitor is a copy-on-write fork (`sandbox/init.rs`): it outlives the
    // exec, so it must not share our memory; it reports through the exec pipe.
    let sandboxed = plan.sandbox.is_some();
    let shared = Shared {
        plan,
        ignored_signals: ignored_signals(),
        join_by_write: AtomicBool::new(true),
        failure: AtomicU64::new(0),
        report: if sandboxed {
            exec_write.as_raw_fd()
        } else {
            -1
        },
        parent: AtomicI32::new(plan.helper_pid),
    };
    let (entry, vm): (clone::Entry, libc::c_int) = match sandboxed {
        true => (sandbox_entry, 0),
        false => (entry, libc::CLONE_VM),
    };
    // The child shares our memory but runs on its own stack (`stack_top`); it only
    // reads the plan (and what it points to), makes raw syscalls and writes
    // `shared.failure`. All of it lives in this frame or our caller's, and this function
    // does not return, nor write any of it, before the exec pipe's end of file: the child's
    // copy of the write end (close-on-exec, numbered above the fds it dup2s onto, never
    // closed by it otherwise) closes only once the child has exec'ed (after the kernel
    // switched it to the new program's memory) or exited (after it released ours), so from
    // then on it uses none of our memory. Meanwhile we only close our copy of the write
    // end, poll, read the clock and send signals (`await_exec`), none of which allocates
    // or writes errno on success: the child shares our thread pointer and so our errno,
    // which it reads right after each failing call. No other thread of ours runs: the
    // helper program has none, and installs no signal handler (the signals it handles are
    // blocked and read from a signalfd, the others keep their default action, SIGPIPE
    // ignored), so no handler runs on this thread either.
    // The child is born in its cgroup where it can be (`clone.rs`), else joins it itself.
    let arg = &shared as *const Shared as *mut libc::c_void;
    let mut pid = Err(Errno::ENOSYS);
    if plan.cgroup_fd >= 0 && clone::into_cgroup_available() {
        shared.join_by_write.store(false, Ordering::Relaxed);
        // SAFETY: as above, nothing the child uses is freed or written by us before the
        // exec pipe's end of file, and we share nothing else with it but errno, left alone.
        pid =
            unsafe { clone::into_cgroup(entry, vm, stack_top(), CHILD_STACK, arg, plan.cgroup_fd) };
        // Refused (or a cgroup error, which the child's join by write then reports at
        // stage `:cgroup`): no child exists, clone the usual way.
        shared.join_by_write.store(pid.is_err(), Ordering::Relaxed);
    }
    if pid.is_err() {
        // SAFETY: as for `clone::into_cgroup` just above.
        let raw = unsafe { libc::clone(entry, stack_top(), vm | libc::SIGCHLD, arg) };
        pid = Errno::result(raw);
    }
    // Only the child holds the write end now (or nobody, if the clone failed).
    drop(exec_write);
    let pid = pid?;
    let mut timed_out = false;
    if !await_exec(&exec_read, Some(Instant::now() + EXEC_DEADLINE)) {
        // Stopped or held in the kernel before its exec: SIGKILL ends both (a stopped
        // process dies of it, a lease wait is interruptible). Our memory is ours again only
        // once it has died (the end of file). The kill cannot fail: the child is ours and
        // not reaped (only the event loop reaps, later).
        let _ = sys::kill_process(pid, libc::SIGKILL);
        // A sandbox shares none of our memory, and its init and program may hold the
        // pipe a little longer (they die of the monitor's death).
        if !sandboxed {
            await_exec(&exec_read, None);
        }
        timed_out = true;
    }
    let mut failure = shared.failure.load(Ordering::SeqCst);
    if sandboxed && !timed_out {
        // Every write end is closed: the read does not wait.
        let mut code = [0u8; 8];
        if sys::read_fd(exec_read.as_raw_fd(), &mut code) == Ok(8) {
            failure = u64::from_ne_bytes(code);
        }
    }
    if failure == 0 {
        return Ok(match timed_out {
            true => Outcome::TimedOut(pid),
            false => Outcome::Running(pid),
        });
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
