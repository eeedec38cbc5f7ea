//! Starting one program: pipes, cgroup, a `CLONE_VM | CLONE_VFORK` child, its set-up before
//! `execve`, and the precise report (stage + errno) of a failure before exec.

use std::ffi::{CStr, CString};
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use sluice_protocol::frame::{SpawnSpec, StderrMode};

use crate::cgroup::Cgroups;
use crate::errors::{describe, errno_name};

/// The PATH used when the program's environment has none.
pub const DEFAULT_PATH: &[u8] = b"/usr/local/bin:/usr/bin:/bin";

/// A running program.
#[derive(Debug)]
pub struct Spawned {
    /// Leader pid, also its process group id.
    pub pid: i32,
    /// stdin (write end), stdout (read end) and, with `stderr: :pipe`, stderr (read end).
    pub beam_fds: Vec<OwnedFd>,
    pub cgroup: Option<PathBuf>,
}

/// A spawn that did not produce a running program.
#[derive(Debug)]
pub struct SpawnFailure {
    pub errno: Errno,
    pub stage: &'static str,
    pub detail: String,
    /// Set when the child was forked and failed before exec: it is reaped silently.
    pub pid: Option<i32>,
    /// The program's cgroup, to remove once the child is reaped.
    pub cgroup: Option<PathBuf>,
}

impl SpawnFailure {
    fn before_fork(errno: Errno, stage: &'static str, what: &str) -> SpawnFailure {
        SpawnFailure {
            errno,
            stage,
            detail: format!("{what}: {} ({})", describe(errno), errno_name(errno)),
            pid: None,
            cgroup: None,
        }
    }

    /// The errno name for the reply.
    pub fn errno_name(&self) -> String {
        errno_name(self.errno)
    }
}

// Stage codes the child reports in `ChildPlan::failure`.
const STAGE_CGROUP: u8 = 1;
const STAGE_SETUP: u8 = 2;
const STAGE_CHDIR: u8 = 3;
const STAGE_EXEC: u8 = 4;

fn stage_name(code: u8) -> &'static str {
    match code {
        STAGE_CGROUP => "cgroup",
        STAGE_CHDIR => "chdir",
        STAGE_EXEC => "exec",
        _ => "setup",
    }
}

/// The signals the helper ignores (SIGPIPE, and whatever it inherited as ignored): the only
/// dispositions that would survive exec, so the only ones the child must reset. The
/// helper never changes dispositions after start-up, so this is computed once.
fn ignored_signals() -> &'static [libc::c_int] {
    static IGNORED: OnceLock<Vec<libc::c_int>> = OnceLock::new();
    IGNORED.get_or_init(|| {
        (1..=libc::SIGRTMAX())
            .filter(|&sig| sig != libc::SIGKILL && sig != libc::SIGSTOP)
            .filter(|&sig| {
                // SAFETY: a zeroed sigaction is a valid out-parameter, and a null new action
                // only reads the disposition.
                let (r, old) = unsafe {
                    let mut old: libc::sigaction = std::mem::zeroed();
                    (libc::sigaction(sig, ptr::null(), &mut old), old)
                };
                r == 0 && old.sa_sigaction == libc::SIG_IGN
            })
            .collect()
    })
}

/// The helper's own environment as `NAME=value` entries: what the VM had when it started
/// the helper. Programs get it when the spawn spec says `env: inherit`.
fn inherited_env() -> &'static [Vec<u8>] {
    static ENV: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    ENV.get_or_init(|| {
        std::env::vars_os()
            .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
            .collect()
    })
}

/// The files `execve` is tried on, in order: `argv0` itself when it has a slash, else each
/// PATH entry (from the program's environment) joined with it, an empty entry meaning the
/// current directory, like `execvp`.
pub fn path_candidates(argv0: &[u8], env: &[Vec<u8>]) -> Vec<Vec<u8>> {
    if argv0.is_empty() {
        return Vec::new();
    }
    if argv0.contains(&b'/') {
        return vec![argv0.to_vec()];
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(|b| *b == b':')
        .map(|dir| {
            if dir.is_empty() {
                argv0.to_vec()
            } else {
                let mut p = dir.to_vec();
                if !p.ends_with(b"/") {
                    p.push(b'/');
                }
                p.extend_from_slice(argv0);
                p
            }
        })
        .collect()
}

fn cstrings(items: &[Vec<u8>]) -> Option<Vec<CString>> {
    items.iter().map(|i| CString::new(i.clone()).ok()).collect()
}

fn null_terminated(items: &[CString]) -> Vec<*const libc::c_char> {
    items
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnFailure> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| SpawnFailure::before_fork(e, "pipe", "cannot create a pipe"))
}

fn set_pipe_size(fd: &OwnedFd, size: Option<usize>) {
    if let Some(size) = size {
        let size = size.min(i32::MAX as usize) as libc::c_int;
        // SAFETY: F_SETPIPE_SZ on a pipe fd we own; failure is harmless and ignored.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    }
}

/// Everything the child needs, prepared before the clone so the child does not allocate.
struct ChildPlan<'a> {
    /// The program cgroup's `cgroup.procs`, or -1.
    procs_fd: RawFd,
    stdin_r: RawFd,
    stdout_w: RawFd,
    /// -1: keep the helper's fd 2.
    stderr_w: RawFd,
    /// Where the child reports a failure before exec (the child shares our memory):
    /// `stage << 32 | errno`, 0 when exec succeeded.
    failure: AtomicU64,
    helper_pid: libc::pid_t,
    ignored_signals: &'a [libc::c_int],
    cd: Option<&'a CStr>,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    candidates: &'a [*const libc::c_char],
}

fn errno() -> i32 {
    Errno::last_raw()
}

/// Reports a failure to the suspended parent and exits. Async-signal-safe only.
fn child_fail(p: &ChildPlan, stage: u8, errno: i32) -> ! {
    p.failure.store(
        u64::from(stage) << 32 | u64::from(errno as u32),
        Ordering::SeqCst,
    );
    // SAFETY: _exit ends the child only (it is its own process) without running any of the
    // parent's at-exit code.
    unsafe { libc::_exit(127) }
}

/// Runs in the child: only async-signal-safe calls, no allocation, no locks.
fn run_child(p: &ChildPlan) -> ! {
    // SAFETY: the calls below are raw syscalls on fds and pointers prepared by the parent,
    // which is suspended until this child execs or exits (CLONE_VFORK), so they all stay
    // valid; nothing here allocates or locks.
    unsafe {
        if p.procs_fd >= 0 && libc::write(p.procs_fd, b"0".as_ptr().cast(), 1) != 1 {
            child_fail(p, STAGE_CGROUP, errno());
        }
        // Own session and process group: the group is what signals target.
        libc::setsid();
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            child_fail(p, STAGE_SETUP, errno());
        }
        // The helper may have died before PDEATHSIG was armed.
        if libc::getppid() != p.helper_pid {
            libc::_exit(1);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, ptr::null_mut());
        // Handlers are reset by exec itself; only ignored signals would stay ignored.
        for &sig in p.ignored_signals {
            libc::signal(sig, libc::SIG_DFL);
        }
        // All sources are >= 3 (fds 0-2 are kept open in the helper), so no dup2 clobbers
        // another source. dup2 clears FD_CLOEXEC on the target.
        if libc::dup2(p.stdin_r, 0) < 0 || libc::dup2(p.stdout_w, 1) < 0 {
            child_fail(p, STAGE_SETUP, errno());
        }
        if p.stderr_w >= 0 && libc::dup2(p.stderr_w, 2) < 0 {
            child_fail(p, STAGE_SETUP, errno());
        }
        // Nothing else the helper holds may leak into the program (fds inherited from the
        // BEAM included); errors (old kernels) are ignored.
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        if let Some(cd) = p.cd {
            if libc::chdir(cd.as_ptr()) != 0 {
                child_fail(p, STAGE_CHDIR, errno());
            }
        }
        // execvp's rules: EACCES wins if seen, ENOENT-like errors move on, anything else
        // stops the search.
        let mut seen_eacces = false;
        let mut last = libc::ENOENT;
        let mut hard = None;
        for &file in p.candidates {
            libc::execve(file, p.argv.as_ptr(), p.envp.as_ptr());
            last = errno();
            match last {
                libc::EACCES => seen_eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                e => {
                    hard = Some(e);
                    break;
                }
            }
        }
        let e = hard.unwrap_or(if seen_eacces { libc::EACCES } else { last });
        child_fail(p, STAGE_EXEC, e)
    }
}

/// Size of the stack the child runs on between the clone and exec.
const CHILD_STACK: usize = 64 * 1024;

/// The top of the child's stack. The parent is suspended while a child uses it
/// (CLONE_VFORK), so one stack serves every spawn.
fn child_stack_top() -> *mut libc::c_void {
    static STACK: OnceLock<usize> = OnceLock::new();
    let base = *STACK.get_or_init(|| {
        // u128 elements keep the top 16-byte aligned, as the ABI wants.
        let stack = vec![0u128; CHILD_STACK / 16].into_boxed_slice();
        Box::leak(stack).as_mut_ptr() as usize
    });
    (base + CHILD_STACK) as *mut libc::c_void
}

extern "C" fn child_entry(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `plan` is the `ChildPlan` of the parent, which stays suspended (CLONE_VFORK)
    // and so keeps it alive until this child execs or exits.
    run_child(unsafe { &*(plan as *const ChildPlan) })
}

/// Starts the child the way posix_spawn does: `clone(CLONE_VM | CLONE_VFORK)` on a stack
/// of its own. Nothing is copied (a fork of the helper costs ~100 us more under
/// virtualisation), and this returns only once the child has exec'ed or failed.
fn clone_child(plan: &ChildPlan) -> Result<libc::pid_t, Errno> {
    // SAFETY: the child shares our memory but runs on its own stack, while we are
    // suspended; it only reads the plan, makes raw syscalls and writes `plan.failure`.
    let pid = unsafe {
        libc::clone(
            child_entry,
            child_stack_top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            plan as *const ChildPlan as *mut libc::c_void,
        )
    };
    Errno::result(pid)
}

/// Starts one program.
pub fn spawn(
    spec: &SpawnSpec,
    helper_pid: i32,
    cgroups: Option<&mut Cgroups>,
) -> Result<Spawned, SpawnFailure> {
    let bad = |stage, what: &str| SpawnFailure::before_fork(Errno::EINVAL, stage, what);
    if spec.argv.is_empty() {
        return Err(bad("argv", "argv is empty"));
    }
    let program = String::from_utf8_lossy(&spec.argv[0]).into_owned();
    let argv = cstrings(&spec.argv).ok_or_else(|| bad("argv", "argv contains a NUL byte"))?;
    let env_list = spec.env.as_deref().unwrap_or_else(|| inherited_env());
    let env = cstrings(env_list).ok_or_else(|| bad("env", "env contains a NUL byte"))?;
    let cd = match &spec.cd {
        Some(c) => Some(CString::new(c.clone()).map_err(|_| bad("chdir", "cd contains a NUL"))?),
        None => None,
    };
    let candidates = cstrings(&path_candidates(&spec.argv[0], env_list))
        .ok_or_else(|| bad("argv", "argv contains a NUL byte"))?;
    let argv_p = null_terminated(&argv);
    let envp_p = null_terminated(&env);
    let cand_p: Vec<*const libc::c_char> = candidates.iter().map(|c| c.as_ptr()).collect();

    let (stdin_r, stdin_w) = pipe()?;
    let (stdout_r, stdout_w) = pipe()?;
    set_pipe_size(&stdin_w, spec.pipe_size);
    set_pipe_size(&stdout_r, spec.pipe_size);
    // (BEAM's read end, child's write end) for a separate stderr pipe; /dev/null's fd.
    let mut stderr_pipe = None;
    let mut devnull = None;
    match spec.stderr {
        StderrMode::Pipe => {
            let (r, w) = pipe()?;
            set_pipe_size(&r, spec.pipe_size);
            stderr_pipe = Some((r, w));
        }
        StderrMode::Null => {
            // std opens with O_CLOEXEC.
            let f = OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .map_err(|e| {
                    let e = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                    SpawnFailure::before_fork(e, "pipe", "cannot open /dev/null")
                })?;
            devnull = Some(OwnedFd::from(f));
        }
        StderrMode::Stdout | StderrMode::Inherit => {}
    }
    let stderr_w = match spec.stderr {
        StderrMode::Pipe => stderr_pipe.as_ref().map_or(-1, |(_, w)| w.as_raw_fd()),
        StderrMode::Stdout => stdout_w.as_raw_fd(),
        StderrMode::Null => devnull.as_ref().map_or(-1, |f| f.as_raw_fd()),
        StderrMode::Inherit => -1,
    };
    let (cgroup_dir, procs) = match cgroups {
        Some(cg) => match cg.create_program() {
            Ok((dir, fd)) => (Some(dir), Some(fd)),
            Err(e) => {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                return Err(SpawnFailure::before_fork(
                    errno,
                    "cgroup",
                    &format!("cannot create a cgroup in {}", cg.dir.display()),
                ));
            }
        },
        None => (None, None),
    };
    let remove_cgroup = |dir: &Option<PathBuf>| {
        if let Some(d) = dir {
            let _ = std::fs::remove_dir(d);
        }
    };

    let plan = ChildPlan {
        procs_fd: procs.as_ref().map_or(-1, |f| f.as_raw_fd()),
        stdin_r: stdin_r.as_raw_fd(),
        stdout_w: stdout_w.as_raw_fd(),
        stderr_w,
        failure: AtomicU64::new(0),
        helper_pid,
        ignored_signals: ignored_signals(),
        cd: cd.as_deref(),
        argv: &argv_p,
        envp: &envp_p,
        candidates: &cand_p,
    };

    let pid = match clone_child(&plan) {
        Ok(pid) => pid,
        Err(e) => {
            remove_cgroup(&cgroup_dir);
            return Err(SpawnFailure::before_fork(e, "fork", "clone failed"));
        }
    };

    // Parent: the child's ends must go, or EOFs never arrive.
    drop((stdin_r, stdout_w, procs, devnull));
    let stderr_r = stderr_pipe.map(|(r, w)| {
        drop(w);
        r
    });

    let failure = plan.failure.load(Ordering::SeqCst);
    if failure != 0 {
        let errno = Errno::from_raw(failure as u32 as i32);
        let stage = stage_name((failure >> 32) as u8);
        let what = match stage {
            "chdir" => format!(
                "chdir to {:?} for {program:?} failed",
                String::from_utf8_lossy(spec.cd.as_deref().unwrap_or_default())
            ),
            "exec" => format!("cannot execute {program:?}"),
            "cgroup" => format!("cannot join cgroup for {program:?}"),
            _ => format!("child set-up for {program:?} failed"),
        };
        return Err(SpawnFailure {
            errno,
            stage,
            detail: format!("{what}: {} ({})", describe(errno), errno_name(errno)),
            pid: Some(pid),
            cgroup: cgroup_dir,
        });
    }

    let mut beam_fds = vec![stdin_w, stdout_r];
    beam_fds.extend(stderr_r);
    Ok(Spawned {
        pid,
        beam_fds,
        cgroup: cgroup_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn candidates() {
        assert_eq!(path_candidates(b"/bin/ls", &[]), vec![v("/bin/ls")]);
        assert_eq!(path_candidates(b"./x", &[]), vec![v("./x")]);
        assert!(path_candidates(b"", &[]).is_empty());
        assert_eq!(
            path_candidates(b"ls", &[]),
            vec![v("/usr/local/bin/ls"), v("/usr/bin/ls"), v("/bin/ls")]
        );
        assert_eq!(
            path_candidates(b"ls", &[v("HOME=/"), v("PATH=/a/:/b::/c")]),
            vec![v("/a/ls"), v("/b/ls"), v("ls"), v("/c/ls")]
        );
        assert_eq!(path_candidates(b"ls", &[v("PATH=")]), vec![v("ls")]);
    }
}
