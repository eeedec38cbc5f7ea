//! The seccomp filter of a sandboxed program: classic BPF built in the helper program
//! before the clone, installed by the program last before its exec (after
//! `no_new_privs`, which lets an unprivileged process install it).
//!
//! A refused call returns `EPERM` to the program, which is not killed for trying; only a
//! call made through another architecture's system call table (32-bit or x32 calls
//! from a 64-bit program, which would bypass the numbers below) kills the process.
//! `clone3` is `ENOSYS` (its flags are in memory, which a filter cannot read: libc falls
//! back to `clone`, whose flags it can), and `clone` with a namespace flag is `EPERM`.
//! The list is in `docs/guarantees.md` ("The sandbox").

/// The calls refused with `EPERM`, by name (for the docs and tests) and number.
#[cfg(target_arch = "x86_64")]
pub const REFUSED: &[(&str, libc::c_long)] = &[
    // Mounts and the filesystem root.
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    // Namespaces.
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    // Other processes' memory and files.
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("kcmp", libc::SYS_kcmp),
    // The kernel itself: modules, kexec, BPF, perf, keyrings, swap, reboot.
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("syslog", libc::SYS_syslog),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("uselib", libc::SYS_uselib),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("_sysctl", libc::SYS__sysctl),
    ("vhangup", libc::SYS_vhangup),
    // Files by handle (they bypass path permissions), and watching whole mounts.
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("fanotify_init", libc::SYS_fanotify_init),
    // The clock and the names of the machine.
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("sethostname", libc::SYS_sethostname),
    ("setdomainname", libc::SYS_setdomainname),
];

/// The namespace flags `clone` is refused with.
const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP
    | 0x80) as u32; // CLONE_NEWTIME

// Classic BPF opcodes (linux/bpf_common.h).
// BPF_LD | BPF_W | BPF_ABS (0x00 | 0x00 | 0x20).
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x05 | 0x10;
const JGE_K: u16 = 0x05 | 0x30;
const JSET_K: u16 = 0x05 | 0x40;
const RET_K: u16 = 0x06;

// Offsets in `struct seccomp_data`: nr, arch, then args[6] (u64, little-endian).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;
const ARG1_LOW: u32 = 24;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter's instructions; `None` where no filter is written for the architecture.
pub fn build() -> Option<Vec<libc::sock_filter>> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let mut f = vec![
            stmt(LD_W_ABS, ARCH),
            jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
            stmt(RET_K, KILL),
            stmt(LD_W_ABS, NR),
            jump(JGE_K, X32_SYSCALL_BIT, 0, 1),
            stmt(RET_K, KILL),
        ];
        for &(_, nr) in REFUSED {
            f.push(jump(JEQ_K, nr as u32, 0, 1));
            f.push(stmt(RET_K, EPERM));
        }
        f.push(jump(JEQ_K, libc::SYS_clone3 as u32, 0, 1));
        f.push(stmt(RET_K, ENOSYS));
        // clone: refused with a namespace flag in its first argument.
        f.push(jump(JEQ_K, libc::SYS_clone as u32, 0, 4));
        f.push(stmt(LD_W_ABS, ARG0_LOW));
        f.push(jump(JSET_K, NAMESPACE_FLAGS, 0, 1));
        f.push(stmt(RET_K, EPERM));
        f.push(stmt(RET_K, ALLOW));
        // ioctl: no faking a terminal's input (TIOCSTI) or the console's (TIOCLINUX).
        f.push(jump(JEQ_K, libc::SYS_ioctl as u32, 0, 4));
        f.push(stmt(LD_W_ABS, ARG1_LOW));
        f.push(jump(JEQ_K, libc::TIOCSTI as u32, 1, 0));
        f.push(jump(JEQ_K, libc::TIOCLINUX as u32, 0, 1));
        f.push(stmt(RET_K, EPERM));
        f.push(stmt(RET_K, ALLOW));
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program_and_it_ends_in_a_return() {
        let f = build().expect("x86_64");
        for (i, ins) in f.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < f.len(), "{i}");
            }
        }
        assert_eq!(f.last().unwrap().code, RET_K);
        assert!(f.len() < 4096);
    }
}
