//! `sandbox:`: a program in namespaces of its own (mount, pid, network, UTS, IPC), seeing
//! a filesystem view of the host, without capabilities, under `no_new_privs` and a seccomp
//! filter. Prepared here, in the helper program, before the clone (paths as C strings, the
//! filter's instructions); carried out by the sandbox's processes ([`init`]), the view by
//! [`mounts`], the filter from [`filter`].

mod filter;
mod init;
mod mounts;

pub use init::{drop_bounding_set, lock_down, monitor};

use nix::errno::Errno;
use sluice_protocol::{SandboxSpec, Stage};

use super::SpawnFailure;

/// A sandbox, ready for the clone.
pub struct Prepared {
    /// The namespaces the init is cloned into.
    clone_flags: libc::c_int,
    private_network: bool,
    view: mounts::View,
    filter: Option<Vec<libc::sock_filter>>,
    /// No `cd:` was given: where the view lacks the VM's directory, start in `/`.
    pub default_cd: bool,
}

impl Prepared {
    /// `terminal`: the program runs on a pseudo-terminal (its `/dev/pts` is bound).
    pub fn prepare(spec: &SandboxSpec, terminal: bool) -> Result<Prepared, SpawnFailure> {
        let refuse =
            |errno, what: &str| Err(SpawnFailure::before_fork(errno, Stage::Sandbox, what));
        if nix::unistd::geteuid().as_raw() != 0 {
            return refuse(
                Errno::EPERM,
                "a sandbox needs the helper program to run as root (mount namespaces, pivot_root)",
            );
        }
        let mut clone_flags = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
        if spec.private_network {
            clone_flags |= libc::CLONE_NEWNET;
        }
        if spec.private_processes {
            clone_flags |= libc::CLONE_NEWPID;
        }
        let filter = match (spec.seccomp, filter::build()) {
            (false, _) => None,
            (true, Some(f)) => Some(f),
            (true, None) => {
                return refuse(
                    Errno::ENOSYS,
                    "no seccomp filter is written for this architecture (seccomp: false runs without one)",
                )
            }
        };
        Ok(Prepared {
            clone_flags,
            private_network: spec.private_network,
            view: mounts::View::prepare(spec, terminal),
            filter,
            default_cd: spec.default_cd,
        })
    }
}
