//! The `pty` key of a spawn spec: run the program on a pseudo-terminal of this size, with
//! these terminal modes. Modes travel as RFC 4254 (section 8) opcodes with their values;
//! the BEAM maps the names, the helper program maps the opcodes to termios.

use eetf::Term;

use crate::stage::Stage;
use crate::term::{as_i128, as_list, atom_name, is_nil, DecodeError};

/// The terminal a program runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtySpec {
    /// Window size in character cells, each 1..=65535.
    pub rows: u16,
    pub cols: u16,
    /// `(opcode, value)` pairs, applied in order over the kernel's default termios.
    pub modes: Vec<(u8, u32)>,
}

fn bad(message: impl Into<String>) -> DecodeError {
    DecodeError::at_stage(Stage::Pty, message)
}

/// A window dimension: 1..=65535 (`struct winsize` holds 16 bits; 0 means unknown).
fn dimension(t: Option<&Term>, what: &str) -> Result<u16, DecodeError> {
    t.and_then(as_i128)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| bad(format!("pty {what} must be an integer 1..65535")))
}

fn mode(t: &Term) -> Result<(u8, u32), DecodeError> {
    let pair = match t {
        Term::Tuple(t) if t.elements.len() == 2 => &t.elements,
        _ => return Err(bad("pty modes must be {opcode, value} pairs")),
    };
    let opcode = as_i128(&pair[0]).and_then(|n| u8::try_from(n).ok());
    let value = as_i128(&pair[1]).and_then(|n| u32::try_from(n).ok());
    match (opcode, value) {
        (Some(o), Some(v)) => Ok((o, v)),
        _ => Err(bad("a pty mode must be {opcode 0..255, value 0..2^32-1}")),
    }
}

impl PtySpec {
    /// Decodes the value of the `pty` key: absent or `nil` gives `None`, else a map with
    /// `rows`, `cols` and `modes`.
    pub fn from_term(t: Option<&Term>) -> Result<Option<PtySpec>, DecodeError> {
        let map = match t {
            None => return Ok(None),
            Some(t) if is_nil(t) => return Ok(None),
            Some(Term::Map(m)) => &m.map,
            Some(_) => return Err(bad("pty must be a map or nil")),
        };
        let get = |key: &str| {
            map.iter()
                .find(|(k, _)| atom_name(k) == Some(key))
                .map(|(_, v)| v)
        };
        let modes = match get("modes") {
            None => Vec::new(),
            Some(v) => as_list(v)
                .ok_or_else(|| bad("pty modes must be a list"))?
                .iter()
                .map(mode)
                .collect::<Result<_, _>>()?,
        };
        Ok(Some(PtySpec {
            rows: dimension(get("rows"), "rows")?,
            cols: dimension(get("cols"), "cols")?,
            modes,
        }))
    }
}

#[cfg(any(test, feature = "codec"))]
mod codec {
    use std::collections::HashMap;

    use eetf::{List, Map, Term};

    use super::PtySpec;
    use crate::term::{atom, int_u64, tuple};

    impl PtySpec {
        /// The spec as the BEAM sends it.
        pub fn to_term(&self) -> Term {
            let modes = self
                .modes
                .iter()
                .map(|&(o, v)| tuple(vec![int_u64(u64::from(o)), int_u64(u64::from(v))]))
                .collect::<Vec<_>>();
            let mut map = HashMap::new();
            map.insert(atom("rows"), int_u64(u64::from(self.rows)));
            map.insert(atom("cols"), int_u64(u64::from(self.cols)));
            map.insert(atom("modes"), Term::List(List::from(modes)));
            Term::Map(Map::from(map))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, int_i64, int_u64, nil, tuple};

    #[test]
    fn round_trips_and_defaults() {
        let spec = PtySpec {
            rows: 40,
            cols: 100,
            modes: vec![(53, 0), (129, 38_400), (1, 3)],
        };
        let term = spec.to_term();
        assert_eq!(PtySpec::from_term(Some(&term)), Ok(Some(spec)));
        assert_eq!(PtySpec::from_term(None), Ok(None));
        assert_eq!(PtySpec::from_term(Some(&nil())), Ok(None));
    }

    #[test]
    fn bad_values_name_the_pty_stage() {
        let with = |rows: Term, modes: Term| {
            let mut m = std::collections::HashMap::new();
            m.insert(atom("rows"), rows);
            m.insert(atom("cols"), int_u64(80));
            m.insert(atom("modes"), modes);
            PtySpec::from_term(Some(&Term::Map(eetf::Map::from(m))))
        };
        let no_modes = || Term::List(eetf::List::nil());
        for rows in [int_u64(0), int_u64(65_536), int_i64(-1), atom("x")] {
            let e = with(rows, no_modes()).unwrap_err();
            assert_eq!(e.spawn_stage, Some(Stage::Pty), "{e}");
        }
        let bad_modes = [
            atom("x"),
            Term::List(eetf::List::from(vec![int_u64(1)])),
            Term::List(eetf::List::from(vec![tuple(vec![
                int_u64(256),
                int_u64(1),
            ])])),
            Term::List(eetf::List::from(vec![tuple(vec![int_u64(1), int_i64(-1)])])),
        ];
        for modes in bad_modes {
            let e = with(int_u64(24), modes).unwrap_err();
            assert_eq!(e.spawn_stage, Some(Stage::Pty), "{e}");
        }
        assert!(PtySpec::from_term(Some(&atom("true"))).is_err());
    }
}
