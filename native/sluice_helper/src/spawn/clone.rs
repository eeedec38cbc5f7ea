//! How the child is cloned: into its cgroup at birth (`clone3` with `CLONE_INTO_CGROUP`),
//! or, where `clone3` is refused, with `clone` and a join by the child itself.
//!
//! Why at birth: a process that *moves* into a cgroup (a write to `cgroup.procs`) takes
//! the kernel's cgroup threadgroup lock for writing. That lock is a per-cpu rwsem, and its
//! first writer after a quiet spell waits for an RCU grace period: measured here, a join
//! by write after 60 ms without a spawn costs 6-8 ms (back to back, ~0.2 ms), so an
//! application that spawns now and then paid it on nearly every call. A child placed in
//! its cgroup by `clone3` takes the same lock's read side only, which stays cheap.
//!
//! `clone3` has no libc wrapper that runs a function on a new stack, and the child shares
//! our memory (`CLONE_VM`, see `child.rs`), so the syscall is made here, in a few lines of
//! assembly: the child's first instructions call the entry function on the stack the
//! kernel switched it to. Where that is not written (architectures other than x86-64), or
//! the kernel or a seccomp filter refuses `clone3` (`ENOSYS`: some container runtimes'
//! default profiles), the child joins by write, as before.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

/// The child's entry function: never returns (it execs or exits).
pub type Entry = extern "C" fn(*mut libc::c_void) -> libc::c_int;

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Set once `clone3` said `ENOSYS`: it will not change its mind in this process.
static CLONE3_REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether a child can be cloned straight into a cgroup (as far as we know yet).
pub fn into_cgroup_available() -> bool {
    cfg!(target_arch = "x86_64") && !CLONE3_REFUSED.load(Ordering::Relaxed)
}

/// Clones a child sharing our memory (`vm`: `CLONE_VM`; 0 for a copy, a sandbox's
/// monitor), running `entry(arg)` on the stack ending at
/// `stack_top` (16-byte aligned, `stack_size` bytes), born in the cgroup whose directory
/// is `cgroup` (an `O_RDONLY | O_DIRECTORY` fd). Returns the child's pid. On `ENOSYS`,
/// remembers that `clone3` is refused, so [`into_cgroup_available`] says no from then on.
///
/// # Safety
/// As for `libc::clone` with `CLONE_VM`: `entry` must only make async-signal-safe calls
/// on memory the caller keeps alive and unwritten until the child has exec'ed or exited,
/// and the stack must be unused by anyone else meanwhile.
pub unsafe fn into_cgroup(
    entry: Entry,
    vm: libc::c_int,
    stack_top: *mut libc::c_void,
    stack_size: usize,
    arg: *mut libc::c_void,
    cgroup: RawFd,
) -> Result<libc::pid_t, Errno> {
    let args = CloneArgs {
        flags: vm as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack_top as u64 - stack_size as u64,
        stack_size: stack_size as u64,
        cgroup: cgroup as u64,
        ..CloneArgs::default()
    };
    // SAFETY: the caller's contract above; `args` outlives the syscall.
    let ret = unsafe { raw_clone3(&args, entry, arg) };
    if ret < 0 {
        let errno = Errno::from_raw(-ret as i32);
        if errno == Errno::ENOSYS {
            CLONE3_REFUSED.store(true, Ordering::Relaxed);
        }
        return Err(errno);
    }
    Ok(ret as libc::pid_t)
}

/// The `clone3` syscall. In the child, which starts on the new stack with every register
/// but `rax` (0), `rcx`, `r11` and `rsp` as the parent left them, `entry(arg)` is called
/// (the stack's top is 16-byte aligned, as a call wants) and the child exits with what it
/// returns, should it ever return. In the parent, returns the pid or `-errno`.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_clone3(args: &CloneArgs, entry: Entry, arg: *mut libc::c_void) -> i64 {
    let ret: i64;
    // SAFETY: the syscall reads `args`; the child branch never falls through to the
    // parent's code (it calls `entry`, then exit), and the parent branch only clobbers
    // `rax`, `rcx` and `r11`, which are declared.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            // The child: no frame to return to, so mark the end of the call chain.
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") entry as usize,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw_clone3(_: &CloneArgs, _: Entry, _: *mut libc::c_void) -> i64 {
    -(libc::ENOSYS as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_args_is_the_kernels_version_2() {
        // CLONE_ARGS_SIZE_VER2: the struct up to and including `cgroup`.
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
    }
}
