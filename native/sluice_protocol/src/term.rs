//! Building and reading `eetf` terms, and [`DecodeError`], the one error every decoder in
//! this crate returns.

use std::fmt;

use eetf::{Atom, BigInteger, Binary, FixInteger, Term, Tuple};

use crate::stage::Stage;

/// Why a payload is not a valid term of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The request id, when it could be read: the error reply then names it.
    pub id: Option<u64>,
    /// Set when a `spawn` request with a readable id has an invalid spec; the helper program
    /// then answers `spawn_error` with this stage rather than a generic `error`, so the
    /// waiting spawner learns which part of its spec is wrong.
    pub spawn_stage: Option<Stage>,
    /// Human readable reason.
    pub message: String,
}

impl DecodeError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        DecodeError {
            id: None,
            spawn_stage: None,
            message: message.into(),
        }
    }

    pub(crate) fn at_stage(stage: Stage, message: impl Into<String>) -> Self {
        DecodeError {
            spawn_stage: Some(stage),
            ..DecodeError::new(message)
        }
    }

    pub(crate) fn with_id(mut self, id: Option<u64>) -> Self {
        if self.id.is_none() {
            self.id = id;
        }
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

// Builders.

pub(crate) fn atom(name: &str) -> Term {
    Term::Atom(Atom::from(name))
}

pub(crate) fn nil() -> Term {
    atom("nil")
}

pub(crate) fn boolean(b: bool) -> Term {
    atom(if b { "true" } else { "false" })
}

pub(crate) fn binary(bytes: &[u8]) -> Term {
    Term::Binary(Binary::from(bytes))
}

pub(crate) fn tuple(elements: Vec<Term>) -> Term {
    Term::Tuple(Tuple::from(elements))
}

pub(crate) fn int_u64(v: u64) -> Term {
    match i32::try_from(v) {
        Ok(i) => Term::FixInteger(FixInteger::from(i)),
        Err(_) => Term::BigInteger(BigInteger::from(v)),
    }
}

pub(crate) fn int_i64(v: i64) -> Term {
    match i32::try_from(v) {
        Ok(i) => Term::FixInteger(FixInteger::from(i)),
        Err(_) => Term::BigInteger(BigInteger::from(v)),
    }
}

// Readers.

pub(crate) fn atom_name(t: &Term) -> Option<&str> {
    match t {
        Term::Atom(a) => Some(&a.name),
        _ => None,
    }
}

pub(crate) fn is_nil(t: &Term) -> bool {
    atom_name(t) == Some("nil")
}

pub(crate) fn as_i128(t: &Term) -> Option<i128> {
    match t {
        Term::FixInteger(i) => Some(i128::from(i.value)),
        Term::BigInteger(b) => i128::try_from(&b.value).ok(),
        _ => None,
    }
}

pub(crate) fn as_u64(t: &Term, what: &str) -> Result<u64, DecodeError> {
    as_i128(t)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| DecodeError::new(format!("{what} must be a non-negative integer")))
}

pub(crate) fn as_i32(t: &Term, what: &str) -> Result<i32, DecodeError> {
    as_i128(t)
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| DecodeError::new(format!("{what} must be a 32-bit integer")))
}

pub(crate) fn as_bytes(t: &Term) -> Option<&[u8]> {
    match t {
        Term::Binary(b) => Some(&b.bytes),
        Term::ByteList(b) => Some(&b.bytes),
        _ => None,
    }
}

pub(crate) fn as_list(t: &Term) -> Option<&[Term]> {
    match t {
        Term::List(l) => Some(&l.elements),
        _ => None,
    }
}

/// The elements of a tuple whose first element is an atom, and that atom.
pub(crate) fn tagged(t: &Term) -> Option<(&str, &[Term])> {
    match t {
        Term::Tuple(t) => Some((atom_name(t.elements.first()?)?, &t.elements)),
        _ => None,
    }
}

/// A binary as text, for the codec's reading of replies.
#[cfg(any(test, feature = "codec"))]
pub(crate) fn as_string(t: &Term, what: &str) -> Result<String, DecodeError> {
    as_bytes(t)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or_else(|| DecodeError::new(format!("{what} must be a binary")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_pick_the_small_form_when_they_fit() {
        assert!(matches!(int_u64(5), Term::FixInteger(_)));
        assert!(matches!(int_u64(1 << 40), Term::BigInteger(_)));
        assert_eq!(as_i128(&int_i64(-7)), Some(-7));
        assert_eq!(as_u64(&int_u64(u64::MAX), "x"), Ok(u64::MAX));
        assert!(as_u64(&int_i64(-1), "x").is_err());
        assert!(as_i32(&int_u64(1 << 40), "x").is_err());
    }

    #[test]
    fn tagged_tuples() {
        let t = tuple(vec![atom("kill"), int_u64(1)]);
        assert_eq!(tagged(&t).map(|(tag, e)| (tag, e.len())), Some(("kill", 2)));
        assert!(tagged(&tuple(vec![])).is_none());
        assert!(tagged(&tuple(vec![int_u64(1)])).is_none());
        assert!(tagged(&nil()).is_none());
        assert!(is_nil(&nil()) && !is_nil(&boolean(true)));
    }
}
