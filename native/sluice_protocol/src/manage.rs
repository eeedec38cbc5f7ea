//! The `spec` of a `manage` request: a process the helper program did not start, to be
//! held by a pidfd and signalled, stopped and watched like a started program.

use eetf::Term;

use crate::request::{DEFAULT_KILL_GRACE_MS, DEFAULT_KILL_SIGNAL};
use crate::stage::Stage;
use crate::term::{as_i128, atom_name, is_nil, DecodeError};

/// What to adopt, and how to stop it: the `spec` map of `{:manage, id, spec}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManageSpec {
    /// The process to adopt.
    pub os_pid: i32,
    /// Sent when the channel closes while it runs (with `stop_on_owner_exit`), and by `kill`.
    pub kill_signal: i32,
    /// Milliseconds between `kill_signal` and SIGKILL.
    pub kill_grace_ms: u64,
    /// Whether the channel's EOF stops it (`true`) or only forgets it (`false`).
    pub stop_on_owner_exit: bool,
    /// Whether signals and stops go to its process group too, not to the process alone.
    pub group: bool,
}

impl Default for ManageSpec {
    fn default() -> Self {
        ManageSpec {
            os_pid: 0,
            kill_signal: DEFAULT_KILL_SIGNAL,
            kill_grace_ms: DEFAULT_KILL_GRACE_MS,
            stop_on_owner_exit: true,
            group: false,
        }
    }
}

fn bad(message: impl Into<String>) -> DecodeError {
    DecodeError::at_stage(Stage::Manage, message)
}

fn int<T: TryFrom<i128>>(v: Option<&Term>, key: &str) -> Result<Option<T>, DecodeError> {
    match v {
        None => Ok(None),
        Some(v) if is_nil(v) => Ok(None),
        Some(v) => as_i128(v)
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{key} is out of range"))),
    }
}

fn boolean(v: Option<&Term>, key: &str, default: bool) -> Result<bool, DecodeError> {
    match v.map(atom_name) {
        None => Ok(default),
        Some(Some("true")) => Ok(true),
        Some(Some("false")) => Ok(false),
        Some(_) => Err(bad(format!("{key} must be true or false"))),
    }
}

impl ManageSpec {
    pub(crate) fn from_term(t: &Term) -> Result<ManageSpec, DecodeError> {
        let Term::Map(m) = t else {
            return Err(bad("manage spec must be a map"));
        };
        let get = |key: &str| {
            m.map
                .iter()
                .find(|(k, _)| atom_name(k) == Some(key))
                .map(|(_, v)| v)
        };
        let os_pid = int::<i32>(get("os_pid"), "os_pid")?
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("os_pid must be a positive integer"))?;
        let d = ManageSpec::default();
        Ok(ManageSpec {
            os_pid,
            kill_signal: int(get("kill_signal"), "kill_signal")?.unwrap_or(d.kill_signal),
            kill_grace_ms: int(get("kill_grace"), "kill_grace")?.unwrap_or(d.kill_grace_ms),
            stop_on_owner_exit: boolean(
                get("stop_on_owner_exit"),
                "stop_on_owner_exit",
                d.stop_on_owner_exit,
            )?,
            group: boolean(get("group"), "group", d.group)?,
        })
    }
}

/// Encoding, as the BEAM does it: for tests and tools.
#[cfg(any(test, feature = "codec"))]
mod codec {
    use std::collections::HashMap;

    use eetf::{Map, Term};

    use super::ManageSpec;
    use crate::term::{atom, boolean, int_i64, int_u64};

    impl ManageSpec {
        /// The spec as a map term.
        pub fn to_term(&self) -> Term {
            let mut map = HashMap::new();
            map.insert(atom("os_pid"), int_i64(i64::from(self.os_pid)));
            map.insert(atom("kill_signal"), int_i64(i64::from(self.kill_signal)));
            map.insert(atom("kill_grace"), int_u64(self.kill_grace_ms));
            map.insert(atom("stop_on_owner_exit"), boolean(self.stop_on_owner_exit));
            map.insert(atom("group"), boolean(self.group));
            Term::Map(Map::from(map))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;

    #[test]
    fn round_trips_and_defaults() {
        let spec = ManageSpec {
            os_pid: 4242,
            kill_signal: 2,
            kill_grace_ms: 100,
            stop_on_owner_exit: false,
            group: true,
        };
        let req = Request::Manage { id: 9, spec };
        assert_eq!(Request::decode(&req.encode()).unwrap(), req);

        let mut only_pid = std::collections::HashMap::new();
        only_pid.insert(crate::term::atom("os_pid"), crate::term::int_u64(7));
        let spec = ManageSpec::from_term(&Term::Map(eetf::Map::from(only_pid))).unwrap();
        assert_eq!(
            spec,
            ManageSpec {
                os_pid: 7,
                ..ManageSpec::default()
            }
        );
    }

    #[test]
    fn refuses_bad_specs_at_the_manage_stage() {
        let with = |k: &str, v: Term| {
            let mut m = std::collections::HashMap::new();
            m.insert(crate::term::atom("os_pid"), crate::term::int_u64(7));
            m.insert(crate::term::atom(k), v);
            ManageSpec::from_term(&Term::Map(eetf::Map::from(m)))
        };
        for bad in [
            with("os_pid", crate::term::int_i64(0)),
            with("os_pid", crate::term::int_i64(-3)),
            with("os_pid", crate::term::int_u64(1 << 40)),
            with("group", crate::term::atom("maybe")),
            with("kill_grace", crate::term::int_i64(-1)),
        ] {
            assert_eq!(bad.unwrap_err().spawn_stage, Some(Stage::Manage));
        }
        assert!(ManageSpec::from_term(&crate::term::nil()).is_err());
    }
}
