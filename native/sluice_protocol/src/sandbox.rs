//! The `sandbox` key of a spawn spec: the namespaces, the filesystem view and the filters
//! a program runs in (`sandbox:` of the options; `docs/guarantees.md`, "The sandbox").

use eetf::Term;

use crate::stage::Stage;
use crate::term::{as_bytes, as_list, atom_name, is_nil, DecodeError};

/// The most paths a view may name (read-only and writable together).
pub const MAX_PATHS: usize = 64;

/// The longest path of a view, in bytes (`PATH_MAX` less room for the mount prefixes).
pub const MAX_PATH_LEN: usize = 3072;

/// What the program sees of the host's filesystem, read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOnly {
    /// All of it (its mounts included), read-only.
    Host,
    /// Only these absolute paths, read-only; everything else is absent.
    Paths(Vec<Vec<u8>>),
}

/// A program's sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// A network namespace of its own with only loopback (`network: :none`).
    pub private_network: bool,
    pub read_only: ReadOnly,
    /// Absolute paths bound writable into the view.
    pub writable: Vec<Vec<u8>>,
    /// An empty tmpfs on `/tmp` (else the host's `/tmp`, writable).
    pub private_tmp: bool,
    /// A pid namespace of its own, its `/proc` showing only it (`processes: :private`).
    pub private_processes: bool,
    /// The seccomp filter (`docs/guarantees.md` lists the calls it refuses).
    pub seccomp: bool,
    /// The spawn's `cd` is the VM's directory, not one the caller chose: where the view
    /// lacks it, the program starts in `/`.
    pub default_cd: bool,
}

impl Default for SandboxSpec {
    /// `sandbox: true`: everything isolated.
    fn default() -> Self {
        SandboxSpec {
            private_network: true,
            read_only: ReadOnly::Host,
            writable: Vec::new(),
            private_tmp: true,
            private_processes: true,
            seccomp: true,
            default_cd: false,
        }
    }
}

fn bad(message: impl Into<String>) -> DecodeError {
    DecodeError::at_stage(Stage::Sandbox, message)
}

/// An absolute path without NUL bytes, `.` or `..` components.
fn path(t: &Term, key: &str) -> Result<Vec<u8>, DecodeError> {
    let b = as_bytes(t).ok_or_else(|| bad(format!("sandbox {key} must hold binaries")))?;
    let valid = b.first() == Some(&b'/')
        && b.len() <= MAX_PATH_LEN
        && !b.contains(&0)
        && !b.split(|&c| c == b'/').any(|c| c == b"." || c == b"..");
    match valid {
        true => Ok(b.to_vec()),
        false => Err(bad(format!(
            "sandbox {key} paths must be absolute, without NUL bytes, . or .. components"
        ))),
    }
}

fn paths(t: Option<&Term>, key: &str) -> Result<Vec<Vec<u8>>, DecodeError> {
    match t {
        None => Ok(Vec::new()),
        Some(t) if is_nil(t) => Ok(Vec::new()),
        Some(t) => as_list(t)
            .ok_or_else(|| bad(format!("sandbox {key} must be a list of paths")))?
            .iter()
            .map(|p| path(p, key))
            .collect(),
    }
}

/// A key whose value is one of two atoms: `first` gives true; absent gives `default`.
fn choice(
    t: Option<&Term>,
    key: &str,
    first: &str,
    second: &str,
    default: bool,
) -> Result<bool, DecodeError> {
    match t.map(atom_name) {
        None => Ok(default),
        Some(Some(a)) if a == first => Ok(true),
        Some(Some(a)) if a == second => Ok(false),
        _ => Err(bad(format!("sandbox {key} must be :{first} or :{second}"))),
    }
}

impl SandboxSpec {
    /// Decodes the value of the `sandbox` key: absent or `nil` gives `None`, else a map.
    pub fn from_term(t: Option<&Term>) -> Result<Option<SandboxSpec>, DecodeError> {
        let map = match t {
            None => return Ok(None),
            Some(t) if is_nil(t) => return Ok(None),
            Some(Term::Map(m)) => &m.map,
            Some(_) => return Err(bad("sandbox must be a map or nil")),
        };
        let get = |key: &str| {
            map.iter()
                .find(|(k, _)| atom_name(k) == Some(key))
                .map(|(_, v)| v)
        };
        let read_only = match get("read_only") {
            None => ReadOnly::Host,
            Some(t) if atom_name(t) == Some("host") => ReadOnly::Host,
            Some(t) => ReadOnly::Paths(paths(Some(t), "read_only")?),
        };
        let writable = paths(get("writable"), "writable")?;
        let named = match &read_only {
            ReadOnly::Host => 0,
            ReadOnly::Paths(p) => p.len(),
        };
        if named + writable.len() > MAX_PATHS {
            return Err(bad(format!("a sandbox names at most {MAX_PATHS} paths")));
        }
        Ok(Some(SandboxSpec {
            private_network: choice(get("network"), "network", "none", "host", true)?,
            read_only,
            writable,
            private_tmp: choice(get("tmp"), "tmp", "private", "host", true)?,
            private_processes: choice(get("processes"), "processes", "private", "host", true)?,
            seccomp: choice(get("seccomp"), "seccomp", "true", "false", true)?,
            default_cd: choice(get("default_cd"), "default_cd", "true", "false", false)?,
        }))
    }
}

#[cfg(any(test, feature = "codec"))]
mod codec {
    use std::collections::HashMap;

    use eetf::{List, Map, Term};

    use super::{ReadOnly, SandboxSpec};
    use crate::term::{atom, binary};

    impl SandboxSpec {
        /// The sandbox as a map term.
        pub fn to_term(&self) -> Term {
            let list = |items: &[Vec<u8>]| {
                Term::List(List::from(
                    items.iter().map(|b| binary(b)).collect::<Vec<_>>(),
                ))
            };
            let pick = |b: bool, yes: &str, no: &str| atom(if b { yes } else { no });
            let mut map = HashMap::new();
            map.insert(atom("network"), pick(self.private_network, "none", "host"));
            map.insert(
                atom("read_only"),
                match &self.read_only {
                    ReadOnly::Host => atom("host"),
                    ReadOnly::Paths(p) => list(p),
                },
            );
            map.insert(atom("writable"), list(&self.writable));
            map.insert(atom("tmp"), pick(self.private_tmp, "private", "host"));
            map.insert(
                atom("processes"),
                pick(self.private_processes, "private", "host"),
            );
            map.insert(atom("seccomp"), pick(self.seccomp, "true", "false"));
            map.insert(atom("default_cd"), pick(self.default_cd, "true", "false"));
            Term::Map(Map::from(map))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, binary};

    #[test]
    fn round_trips_and_defaults() {
        let spec = SandboxSpec {
            private_network: false,
            read_only: ReadOnly::Paths(vec![b"/usr".to_vec()]),
            writable: vec![b"/tmp/out".to_vec()],
            private_tmp: false,
            private_processes: true,
            seccomp: false,
            default_cd: true,
        };
        let t = spec.to_term();
        assert_eq!(SandboxSpec::from_term(Some(&t)).unwrap(), Some(spec));
        let empty = Term::Map(eetf::Map::from(
            std::collections::HashMap::<Term, Term>::new(),
        ));
        assert_eq!(
            SandboxSpec::from_term(Some(&empty)).unwrap(),
            Some(SandboxSpec::default())
        );
        assert_eq!(SandboxSpec::from_term(None).unwrap(), None);
    }

    #[test]
    fn bad_paths_and_values_are_the_sandboxs_fault() {
        for p in ["usr", "/a/../etc", "/a/./b", "/a\0b"] {
            let spec = SandboxSpec {
                writable: vec![p.as_bytes().to_vec()],
                ..Default::default()
            };
            let e = SandboxSpec::from_term(Some(&spec.to_term())).unwrap_err();
            assert_eq!(e.spawn_stage, Some(Stage::Sandbox), "{p}");
        }
        let mut m = std::collections::HashMap::new();
        m.insert(atom("network"), binary(b"none"));
        let e = SandboxSpec::from_term(Some(&Term::Map(eetf::Map::from(m)))).unwrap_err();
        assert_eq!(e.spawn_stage, Some(Stage::Sandbox));
        assert!(SandboxSpec::from_term(Some(&atom("true"))).is_err());
    }
}
