//! What a program runs as and with: the `user`, `group`, `login_env`, `allowed_users`,
//! `nice`, `rlimits`, `umask` and `arg0` keys of a spawn spec. Names are looked up by the
//! helper program before the clone (`getpwnam` is not async-signal-safe); the child only
//! applies numbers.

use eetf::Term;

use crate::stage::Stage;
use crate::term::{as_bytes, as_i128, as_list, atom_name, is_nil, DecodeError};

/// A user or group: by name or by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Name(Vec<u8>),
    Id(u32),
}

/// A resource of `setrlimit(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Memlock,
    Nofile,
    Nproc,
    Stack,
}

impl Resource {
    /// Every resource, with its name on the wire.
    pub const ALL: [(Resource, &'static str); 9] = [
        (Resource::As, "as"),
        (Resource::Core, "core"),
        (Resource::Cpu, "cpu"),
        (Resource::Data, "data"),
        (Resource::Fsize, "fsize"),
        (Resource::Memlock, "memlock"),
        (Resource::Nofile, "nofile"),
        (Resource::Nproc, "nproc"),
        (Resource::Stack, "stack"),
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        Resource::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("?", |(_, n)| n)
    }
}

/// One limit: `None` is `RLIM_INFINITY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// The variables a login sets: `HOME`, `USER`, `LOGNAME`, `SHELL` from the user's passwd
/// entry, `PATH` as login.defs sets it.
pub const LOGIN_VARS: [&[u8]; 5] = [b"HOME", b"USER", b"LOGNAME", b"SHELL", b"PATH"];

/// The credentials, priority and limits of a program.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Control {
    pub user: Option<Principal>,
    pub group: Option<Principal>,
    /// Of [`LOGIN_VARS`]: those to set as a login of the user sets them (the caller's
    /// `env` did not set them).
    pub login_env: Vec<Vec<u8>>,
    /// `None`: any user; else `user` must be one of these (by name or uid).
    pub allowed_users: Option<Vec<Principal>>,
    /// `setpriority` value, -20..19.
    pub nice: Option<i32>,
    pub rlimits: Vec<Rlimit>,
    pub umask: Option<u32>,
    /// What the program sees as `argv[0]` (the file executed stays `argv[0]` of the spec).
    pub arg0: Option<Vec<u8>>,
}

fn cred_error(message: impl Into<String>) -> DecodeError {
    DecodeError::at_stage(Stage::Credentials, message)
}

fn limit_error(message: impl Into<String>) -> DecodeError {
    DecodeError::at_stage(Stage::Limits, message)
}

fn principal(t: &Term, what: &str) -> Result<Principal, DecodeError> {
    if let Some(b) = as_bytes(t) {
        if !b.is_empty() && !b.contains(&0) {
            return Ok(Principal::Name(b.to_vec()));
        }
    }
    as_i128(t)
        .and_then(|n| u32::try_from(n).ok())
        .map(Principal::Id)
        .ok_or_else(|| cred_error(format!("{what} must be a name or a number")))
}

fn opt_principal(t: Option<&Term>, what: &str) -> Result<Option<Principal>, DecodeError> {
    match t {
        None => Ok(None),
        Some(t) if is_nil(t) => Ok(None),
        Some(t) => principal(t, what).map(Some),
    }
}

fn limit_value(t: &Term) -> Result<Option<u64>, DecodeError> {
    if atom_name(t) == Some("infinity") {
        return Ok(None);
    }
    as_i128(t)
        .and_then(|n| u64::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| limit_error("an rlimit value must be a non-negative integer or :infinity"))
}

fn rlimit(t: &Term) -> Result<Rlimit, DecodeError> {
    let elems = match t {
        Term::Tuple(t) if t.elements.len() == 3 => &t.elements,
        _ => {
            return Err(limit_error(
                "rlimits must be {resource, soft, hard} triples",
            ))
        }
    };
    let name = atom_name(&elems[0]);
    let resource = Resource::ALL
        .iter()
        .find(|(_, n)| Some(*n) == name)
        .map(|(r, _)| *r)
        .ok_or_else(|| limit_error("unknown rlimit resource"))?;
    let (soft, hard) = (limit_value(&elems[1])?, limit_value(&elems[2])?);
    if let (Some(s), Some(h)) = (soft, hard) {
        if s > h {
            return Err(limit_error(
                "an rlimit's soft value is above its hard value",
            ));
        }
    }
    if let (None, Some(_)) = (soft, hard) {
        return Err(limit_error(
            "an rlimit's soft value is above its hard value",
        ));
    }
    Ok(Rlimit {
        resource,
        soft,
        hard,
    })
}

impl Control {
    /// Decodes the keys of a spawn spec this module owns; `get` finds a key.
    pub fn from_spec<'a>(get: impl Fn(&str) -> Option<&'a Term>) -> Result<Control, DecodeError> {
        let present = |key: &str| get(key).filter(|t| !is_nil(t));
        let names = |key: &str| -> Result<Vec<Vec<u8>>, DecodeError> {
            let Some(t) = present(key) else {
                return Ok(Vec::new());
            };
            let list = as_list(t).ok_or_else(|| cred_error(format!("{key} must be a list")))?;
            list.iter()
                .map(|e| match as_bytes(e) {
                    Some(b) if LOGIN_VARS.contains(&b) => Ok(b.to_vec()),
                    _ => Err(cred_error(format!(
                        "{key} holds HOME, USER, LOGNAME, SHELL or PATH only"
                    ))),
                })
                .collect()
        };
        let allowed_users = match present("allowed_users") {
            None => None,
            // A list of small uids travels as a byte string (ETF's STRING_EXT).
            Some(Term::ByteList(b)) => {
                Some(b.bytes.iter().map(|&u| Principal::Id(u.into())).collect())
            }
            Some(t) => {
                let list = as_list(t).ok_or_else(|| cred_error("allowed_users must be a list"))?;
                Some(
                    list.iter()
                        .map(|e| principal(e, "an allowed user"))
                        .collect::<Result<_, _>>()?,
                )
            }
        };
        let nice = match present("nice") {
            None => None,
            Some(t) => Some(
                as_i128(t)
                    .filter(|n| (-20..=19).contains(n))
                    .ok_or_else(|| DecodeError::at_stage(Stage::Priority, "nice is -20..19"))?
                    as i32,
            ),
        };
        let rlimits = match present("rlimits") {
            None => Vec::new(),
            Some(t) => as_list(t)
                .ok_or_else(|| limit_error("rlimits must be a list"))?
                .iter()
                .map(rlimit)
                .collect::<Result<_, _>>()?,
        };
        let umask = match present("umask") {
            None => None,
            Some(t) => Some(
                as_i128(t)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|&n| n <= 0o777)
                    .ok_or_else(|| limit_error("umask must be an integer 0..0o777"))?,
            ),
        };
        let arg0 = match present("arg0") {
            None => None,
            Some(t) => match as_bytes(t) {
                Some(b) if !b.contains(&0) => Some(b.to_vec()),
                _ => {
                    let e = "arg0 must be a binary without NUL bytes";
                    return Err(DecodeError::at_stage(Stage::Argv, e));
                }
            },
        };
        Ok(Control {
            user: opt_principal(get("user"), "user")?,
            group: opt_principal(get("group"), "group")?,
            login_env: names("login_env")?,
            allowed_users,
            nice,
            rlimits,
            umask,
            arg0,
        })
    }
}

/// Encoding, as the BEAM does it: for tests and tools.
#[cfg(any(test, feature = "codec"))]
pub(crate) mod codec {
    use std::collections::HashMap;

    use eetf::{List, Term};

    use super::{Control, Principal};
    use crate::term::{atom, binary, int_i64, int_u64, tuple};

    fn principal(p: &Principal) -> Term {
        match p {
            Principal::Name(n) => binary(n),
            Principal::Id(id) => int_u64(u64::from(*id)),
        }
    }

    fn list(items: Vec<Term>) -> Term {
        Term::List(List::from(items))
    }

    impl Control {
        /// Adds this module's keys to a spec map.
        pub fn put_terms(&self, map: &mut HashMap<Term, Term>) {
            if let Some(u) = &self.user {
                map.insert(atom("user"), principal(u));
            }
            if let Some(g) = &self.group {
                map.insert(atom("group"), principal(g));
            }
            let names = self.login_env.iter().map(|n| binary(n)).collect();
            map.insert(atom("login_env"), list(names));
            if let Some(a) = &self.allowed_users {
                map.insert(
                    atom("allowed_users"),
                    list(a.iter().map(principal).collect()),
                );
            }
            if let Some(n) = self.nice {
                map.insert(atom("nice"), int_i64(i64::from(n)));
            }
            let value = |v: Option<u64>| v.map(int_u64).unwrap_or_else(|| atom("infinity"));
            let limits = self
                .rlimits
                .iter()
                .map(|l| {
                    tuple(vec![
                        atom(l.resource.as_str()),
                        value(l.soft),
                        value(l.hard),
                    ])
                })
                .collect();
            map.insert(atom("rlimits"), list(limits));
            if let Some(m) = self.umask {
                map.insert(atom("umask"), int_u64(u64::from(m)));
            }
            if let Some(a) = &self.arg0 {
                map.insert(atom("arg0"), binary(a));
            }
        }
    }
}
