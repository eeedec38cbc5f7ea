//! Replies and events, helper program → BEAM: `hello` on the port, everything else on a
//! program's channel. Encoding is what the helper program needs; decoding (for tests and
//! tools) sits behind the `codec` feature.

use eetf::Term;

use crate::etf::encode_term;
use crate::stage::Stage;
use crate::term::{atom, binary, boolean, int_i64, int_u64, nil, tuple};
use crate::usage::ExitDetails;

/// Which of the program's stdio a pipe end sent with `spawned` belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The write end of the program's stdin.
    Stdin,
    /// The read end of the program's stdout.
    Stdout,
    /// The read end of the program's stderr (with `stderr: :pipe`).
    Stderr,
    /// The master of the program's pseudo-terminal: its stdin and stdout (and stderr
    /// unless the spec sends it elsewhere), read and written through this one fd.
    Pty,
    /// The write end of the pipe the program reads as fd 3 (`use_stdio: false`).
    Fd3,
    /// The read end of the pipe the program writes as fd 4 (`use_stdio: false`).
    Fd4,
}

impl Role {
    /// The atom on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Stdin => "stdin",
            Role::Stdout => "stdout",
            Role::Stderr => "stderr",
            Role::Pty => "pty",
            Role::Fd3 => "fd3",
            Role::Fd4 => "fd4",
        }
    }
}

/// How a program leader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `{:exited, code}`
    Exited(i32),
    /// `{:signaled, signum, core_dumped}`
    Signaled { signum: i32, core: bool },
    /// `:unknown`: an adopted process that is not the helper program's child ended; only
    /// its parent can learn how.
    Unknown,
}

impl ExitStatus {
    /// `{:exited, code}`, `{:signaled, signum, core_dumped}` or `:unknown`.
    pub fn to_term(&self) -> Term {
        match *self {
            ExitStatus::Exited(code) => tuple(vec![atom("exited"), int_i64(i64::from(code))]),
            ExitStatus::Signaled { signum, core } => tuple(vec![
                atom("signaled"),
                int_i64(i64::from(signum)),
                boolean(core),
            ]),
            ExitStatus::Unknown => atom("unknown"),
        }
    }
}

/// A reply or event from the helper program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `{:hello, 2, socket_path, helper_os_pid, cgroup_root_or_nil}` (port)
    Hello {
        version: u32,
        socket_path: Vec<u8>,
        helper_pid: u32,
        cgroup_root: Option<Vec<u8>>,
    },
    /// `{:spawned, id, os_pid, roles, cgroup_or_nil}`: the message carries one fd per role,
    /// in order; `cgroup` is the program's own cgroup directory.
    Spawned {
        id: u64,
        os_pid: u32,
        roles: Vec<Role>,
        cgroup: Option<Vec<u8>>,
    },
    /// `{:managed, id, os_pid}`: the process is adopted (held by a pidfd).
    Managed { id: u64, os_pid: u32 },
    /// `{:signaled, id, :ok | errno}`: the answer to `signal` on an adopted process's
    /// channel; `errno` like `"ESRCH"` (it has exited: nothing was sent).
    Signaled { id: u64, error: Option<String> },
    /// `{:spawn_error, id, errno, stage, detail}`
    SpawnError {
        id: u64,
        errno: String,
        stage: Stage,
        detail: String,
    },
    /// `{:exit, id, status}`, or `{:exit, id, status, details}` when there are details
    /// (every status of a pipeline, the usage).
    Exit {
        id: u64,
        status: ExitStatus,
        details: ExitDetails,
    },
    /// `{:error, id_or_nil, message}`
    Error { id: Option<u64>, message: String },
    /// `{:stats, id, %{usage: usage, pids_current: n}}`: the answer to `stats`.
    Stats {
        id: u64,
        usage: crate::usage::Usage,
        pids_current: u64,
    },
}

impl Reply {
    /// The reply as a term.
    pub fn to_term(&self) -> Term {
        match self {
            Reply::Hello {
                version,
                socket_path,
                helper_pid,
                cgroup_root,
            } => tuple(vec![
                atom("hello"),
                int_u64(u64::from(*version)),
                binary(socket_path),
                int_u64(u64::from(*helper_pid)),
                cgroup_root.as_deref().map(binary).unwrap_or_else(nil),
            ]),
            Reply::Spawned {
                id,
                os_pid,
                roles,
                cgroup,
            } => tuple(vec![
                atom("spawned"),
                int_u64(*id),
                int_u64(u64::from(*os_pid)),
                Term::List(eetf::List::from(
                    roles.iter().map(|r| atom(r.as_str())).collect::<Vec<_>>(),
                )),
                cgroup.as_deref().map(binary).unwrap_or_else(nil),
            ]),
            Reply::Managed { id, os_pid } => tuple(vec![
                atom("managed"),
                int_u64(*id),
                int_u64(u64::from(*os_pid)),
            ]),
            Reply::Signaled { id, error } => tuple(vec![
                atom("signaled"),
                int_u64(*id),
                error
                    .as_deref()
                    .map(|e| binary(e.as_bytes()))
                    .unwrap_or_else(|| atom("ok")),
            ]),
            Reply::SpawnError {
                id,
                errno,
                stage,
                detail,
            } => tuple(vec![
                atom("spawn_error"),
                int_u64(*id),
                binary(errno.as_bytes()),
                binary(stage.as_str().as_bytes()),
                binary(detail.as_bytes()),
            ]),
            Reply::Exit {
                id,
                status,
                details,
            } => {
                let mut elems = vec![atom("exit"), int_u64(*id), status.to_term()];
                if !details.is_empty() {
                    elems.push(details.to_term(ExitStatus::to_term));
                }
                tuple(elems)
            }
            Reply::Stats {
                id,
                usage,
                pids_current,
            } => {
                let map = std::collections::HashMap::from([
                    (atom("usage"), usage.to_term()),
                    (atom("pids_current"), int_u64(*pids_current)),
                ]);
                tuple(vec![
                    atom("stats"),
                    int_u64(*id),
                    Term::Map(eetf::Map::from(map)),
                ])
            }
            Reply::Error { id, message } => tuple(vec![
                atom("error"),
                id.map(int_u64).unwrap_or_else(nil),
                binary(message.as_bytes()),
            ]),
        }
    }

    /// Encodes the reply: ETF bytes, without any length prefix.
    pub fn encode(&self) -> Vec<u8> {
        encode_term(&self.to_term())
    }
}

/// Decoding, as the BEAM does it: for tests and tools, never for the helper program.
#[cfg(any(test, feature = "codec"))]
mod codec {
    use eetf::Term;

    use super::{ExitStatus, Reply, Role};
    use crate::etf::decode_term;
    use crate::stage::Stage;
    use crate::term::DecodeError;
    use crate::term::{as_bytes, as_i32, as_list, as_string, as_u64, atom_name, is_nil, tagged};

    fn err(message: impl Into<String>) -> DecodeError {
        DecodeError {
            id: None,
            spawn_stage: None,
            message: message.into(),
        }
    }

    fn u32_of(t: &Term, what: &str) -> Result<u32, DecodeError> {
        as_u64(t, what).and_then(|v| u32::try_from(v).map_err(|_| err(format!("{what} too big"))))
    }

    fn bytes_or_nil(t: &Term, what: &str) -> Result<Option<Vec<u8>>, DecodeError> {
        if is_nil(t) {
            return Ok(None);
        }
        as_bytes(t)
            .map(|b| Some(b.to_vec()))
            .ok_or_else(|| err(format!("{what} must be a binary")))
    }

    fn role(t: &Term) -> Result<Role, DecodeError> {
        match atom_name(t) {
            Some("stdin") => Ok(Role::Stdin),
            Some("stdout") => Ok(Role::Stdout),
            Some("stderr") => Ok(Role::Stderr),
            Some("pty") => Ok(Role::Pty),
            Some("fd3") => Ok(Role::Fd3),
            Some("fd4") => Ok(Role::Fd4),
            _ => Err(err(
                "a role must be :stdin, :stdout, :stderr, :pty, :fd3 or :fd4",
            )),
        }
    }

    fn status(t: &Term) -> Result<ExitStatus, DecodeError> {
        match tagged(t) {
            Some(("exited", [_, code])) => Ok(ExitStatus::Exited(as_i32(code, "code")?)),
            Some(("signaled", [_, signum, core])) => Ok(ExitStatus::Signaled {
                signum: as_i32(signum, "signum")?,
                core: atom_name(core) == Some("true"),
            }),
            _ if atom_name(t) == Some("unknown") => Ok(ExitStatus::Unknown),
            _ => Err(err("bad exit status")),
        }
    }

    impl Reply {
        /// Decodes a reply payload.
        pub fn decode(bytes: &[u8]) -> Result<Reply, DecodeError> {
            let term = decode_term(bytes)?;
            let (tag, elems) =
                tagged(&term).ok_or_else(|| err("a reply must be a tagged tuple"))?;
            match (tag, elems) {
                ("hello", [_, version, path, pid, root]) => Ok(Reply::Hello {
                    version: u32_of(version, "version")?,
                    socket_path: bytes_or_nil(path, "socket_path")?
                        .ok_or_else(|| err("socket_path must be a binary"))?,
                    helper_pid: u32_of(pid, "helper_pid")?,
                    cgroup_root: bytes_or_nil(root, "cgroup_root")?,
                }),
                ("spawned", [_, id, pid, roles, cgroup]) => Ok(Reply::Spawned {
                    id: as_u64(id, "id")?,
                    os_pid: u32_of(pid, "os_pid")?,
                    roles: as_list(roles)
                        .ok_or_else(|| err("roles must be a list"))?
                        .iter()
                        .map(role)
                        .collect::<Result<_, _>>()?,
                    cgroup: bytes_or_nil(cgroup, "cgroup")?,
                }),
                ("managed", [_, id, pid]) => Ok(Reply::Managed {
                    id: as_u64(id, "id")?,
                    os_pid: u32_of(pid, "os_pid")?,
                }),
                ("signaled", [_, id, result]) => Ok(Reply::Signaled {
                    id: as_u64(id, "id")?,
                    error: match atom_name(result) {
                        Some("ok") => None,
                        _ => Some(as_string(result, "errno")?),
                    },
                }),
                ("spawn_error", [_, id, errno, stage, detail]) => Ok(Reply::SpawnError {
                    id: as_u64(id, "id")?,
                    errno: as_string(errno, "errno")?,
                    stage: Stage::parse(&as_string(stage, "stage")?)
                        .ok_or_else(|| err("unknown stage"))?,
                    detail: as_string(detail, "detail")?,
                }),
                ("exit", [_, id, st]) => Ok(Reply::Exit {
                    id: as_u64(id, "id")?,
                    status: status(st)?,
                    details: crate::usage::ExitDetails::default(),
                }),
                // Tools read the status; the details are for the BEAM.
                ("exit", [_, id, st, _details]) => Ok(Reply::Exit {
                    id: as_u64(id, "id")?,
                    status: status(st)?,
                    details: crate::usage::ExitDetails::default(),
                }),
                ("error", [_, id, message]) => Ok(Reply::Error {
                    id: if is_nil(id) {
                        None
                    } else {
                        Some(as_u64(id, "id")?)
                    },
                    message: as_string(message, "message")?,
                }),
                (tag, _) => Err(err(format!("unknown reply {tag} or bad arity"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reply_round_trips() {
        let replies = [
            Reply::Hello {
                version: 2,
                socket_path: b"/tmp/sluice.x/sock".to_vec(),
                helper_pid: 42,
                cgroup_root: None,
            },
            Reply::Hello {
                version: 2,
                socket_path: b"/s".to_vec(),
                helper_pid: 4_000_000,
                cgroup_root: Some(b"/sys/fs/cgroup/sluice".to_vec()),
            },
            Reply::Spawned {
                id: 3_000_000_000,
                os_pid: 1234,
                roles: vec![Role::Stdin, Role::Stdout, Role::Stderr],
                cgroup: Some(b"/sys/fs/cgroup/sluice/h1/c0".to_vec()),
            },
            Reply::Spawned {
                id: 1,
                os_pid: 1,
                roles: vec![],
                cgroup: None,
            },
            Reply::Managed { id: 4, os_pid: 77 },
            Reply::Signaled { id: 4, error: None },
            Reply::Signaled {
                id: 4,
                error: Some("ESRCH".into()),
            },
            Reply::Exit {
                id: 4,
                status: ExitStatus::Unknown,
                details: Default::default(),
            },
            Reply::SpawnError {
                id: 2,
                errno: "ENOENT".into(),
                stage: Stage::Exec,
                detail: "nope".into(),
            },
            Reply::Exit {
                id: 2,
                status: ExitStatus::Exited(3),
                details: Default::default(),
            },
            Reply::Exit {
                id: 2,
                status: ExitStatus::Signaled {
                    signum: 9,
                    core: true,
                },
                details: Default::default(),
            },
            Reply::Error {
                id: None,
                message: "bad".into(),
            },
            Reply::Error {
                id: Some(9),
                message: "bad".into(),
            },
        ];
        for r in replies {
            assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn decode_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Reply::decode(&bytes);
            let mut with_magic = vec![131];
            with_magic.extend_from_slice(&bytes);
            let _ = Reply::decode(&with_magic);
        }
    }
}
