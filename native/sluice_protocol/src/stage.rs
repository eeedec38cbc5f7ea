//! The stage names of `spawn_error` (`manage` when a `manage` request is refused): the one
//! list of them, shared by the decoder (a bad spec), the helper program (a failure before
//! or in the child) and the tests.

use std::fmt;

/// Where a spawn failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// `argv` is missing, empty, not binaries, or holds a NUL byte.
    Argv,
    /// `env` is not a list of binaries, or holds a NUL byte.
    Env,
    /// `cd` is invalid, or `chdir` failed in the child.
    Chdir,
    /// Another spec key has a bad value.
    Spec,
    /// Creating a pipe or opening `/dev/null` failed.
    Pipe,
    /// Opening the pseudo-terminal, applying its modes or size, or making it the child's
    /// controlling terminal failed (no pty available, a mode the terminal rejects).
    Pty,
    /// Creating or joining the program's cgroup failed.
    Cgroup,
    /// `clone` failed.
    Fork,
    /// The child's set-up before exec (`PR_SET_PDEATHSIG`, `dup2`) failed.
    Setup,
    /// `execve` failed for every candidate.
    Exec,
    /// The spawn message itself: not a `spawn` term, the wrong fds, an unreadable memfd.
    Request,
    /// Adopting a process (`manage`): a bad spec, a process that does not exist or may
    /// not be signalled, or one that must not be managed.
    Manage,
    /// Opening the file the program reads as stdin (`stdin: {:file, path}`).
    Stdin,
    /// Opening the file the program writes as stdout.
    Stdout,
    /// Opening the file the program writes as stderr.
    Stderr,
    /// The user or group: unknown (`NOUSER`, `NOGROUP`), refused by `allowed_users`, or
    /// `setgroups`/`setgid`/`setuid` failed in the child (`EPERM` without privilege).
    Credentials,
    /// `nice`: `setpriority` failed in the child (`EPERM` below 0 without privilege).
    Priority,
    /// `rlimits` or `umask`: a bad value, `setrlimit` failed in the child, or the spec's fd
    /// limit left no room for the program's own stdio (`EBADF` from `dup2`).
    Limits,
    /// The sandbox (`sandbox:`): a namespace, mount, seccomp filter or capability drop
    /// the kernel refused (no user namespaces, no seccomp), or a path of the view that
    /// cannot be bound.
    Sandbox,
}

impl Stage {
    /// Every stage, in the order of the protocol description.
    pub const ALL: [Stage; 19] = [
        Stage::Argv,
        Stage::Env,
        Stage::Chdir,
        Stage::Spec,
        Stage::Pipe,
        Stage::Pty,
        Stage::Cgroup,
        Stage::Fork,
        Stage::Setup,
        Stage::Exec,
        Stage::Request,
        Stage::Manage,
        Stage::Stdin,
        Stage::Stdout,
        Stage::Stderr,
        Stage::Credentials,
        Stage::Priority,
        Stage::Limits,
        Stage::Sandbox,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Argv => "argv",
            Stage::Env => "env",
            Stage::Chdir => "chdir",
            Stage::Spec => "spec",
            Stage::Pipe => "pipe",
            Stage::Pty => "pty",
            Stage::Cgroup => "cgroup",
            Stage::Fork => "fork",
            Stage::Setup => "setup",
            Stage::Exec => "exec",
            Stage::Request => "request",
            Stage::Manage => "manage",
            Stage::Stdin => "stdin",
            Stage::Stdout => "stdout",
            Stage::Stderr => "stderr",
            Stage::Credentials => "credentials",
            Stage::Priority => "priority",
            Stage::Limits => "limits",
            Stage::Sandbox => "sandbox",
        }
    }

    /// The stage with this wire name.
    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.as_str()), Some(s));
        }
        assert_eq!(Stage::parse("handoff"), None);
    }
}
