//! Encoding of requests, as the BEAM does it: for tests and tools, never for the helper
//! program.

use std::collections::HashMap;

use eetf::{List, Map, Term};

use super::{Request, SpawnSpec, StderrMode, StdoutMode};
use crate::etf::encode_term;
use crate::term::{atom, binary, int_i64, int_u64, nil, tuple};

impl StderrMode {
    fn to_term(&self) -> Term {
        match self {
            StderrMode::Pipe => atom("pipe"),
            StderrMode::Stdout => atom("stdout"),
            StderrMode::Null => atom("null"),
            StderrMode::Inherit => atom("inherit"),
            StderrMode::File(f) => f.to_term(),
        }
    }
}

impl StdoutMode {
    fn to_term(&self) -> Term {
        match self {
            StdoutMode::Pipe => atom("pipe"),
            StdoutMode::Null => atom("null"),
            StdoutMode::Inherit => atom("inherit"),
            StdoutMode::File(f) => f.to_term(),
        }
    }
}

impl SpawnSpec {
    /// The spec as a map term.
    pub fn to_term(&self) -> Term {
        let list = |items: &[Vec<u8>]| {
            Term::List(List::from(
                items.iter().map(|b| binary(b)).collect::<Vec<_>>(),
            ))
        };
        let mut map = HashMap::new();
        map.insert(atom("argv"), list(&self.argv));
        map.insert(
            atom("env"),
            self.env
                .as_deref()
                .map(list)
                .unwrap_or_else(|| atom("inherit")),
        );
        map.insert(
            atom("cd"),
            self.cd.as_deref().map(binary).unwrap_or_else(nil),
        );
        map.insert(atom("stderr"), self.stderr.to_term());
        let use_stdio = if self.use_stdio { "true" } else { "false" };
        map.insert(atom("use_stdio"), atom(use_stdio));
        map.insert(atom("stdin"), self.stdin.to_term());
        map.insert(atom("stdout"), self.stdout.to_term());
        self.control.put_terms(&mut map);
        if let Some(k) = &self.kill_command {
            map.insert(atom("kill_command"), list(k));
        }
        if !self.pipeline.is_empty() {
            let stages = self
                .pipeline
                .iter()
                .map(|s| s.to_term())
                .collect::<Vec<_>>();
            map.insert(atom("pipeline"), Term::List(List::from(stages)));
        }
        map.insert(
            atom("pipe_size"),
            self.pipe_size
                .map(|n| int_u64(n as u64))
                .unwrap_or_else(nil),
        );
        map.insert(atom("kill_signal"), int_i64(i64::from(self.kill_signal)));
        map.insert(atom("kill_grace"), int_u64(self.kill_grace_ms));
        if let Some(pty) = &self.pty {
            map.insert(atom("pty"), pty.to_term());
        }
        if let Some(sandbox) = &self.sandbox {
            map.insert(atom("sandbox"), sandbox.to_term());
        }
        Term::Map(Map::from(map))
    }
}

impl Request {
    /// The request as a term (what the BEAM sends).
    pub fn to_term(&self) -> Term {
        match self {
            Request::Spawn { id, spec } => tuple(vec![atom("spawn"), int_u64(*id), spec.to_term()]),
            Request::Manage { id, spec } => {
                tuple(vec![atom("manage"), int_u64(*id), spec.to_term()])
            }
            Request::Signal { id, signum } => tuple(vec![
                atom("signal"),
                int_u64(*id),
                int_i64(i64::from(*signum)),
            ]),
            Request::Stats { id } => tuple(vec![atom("stats"), int_u64(*id)]),
            Request::Kill {
                id,
                signum,
                grace_ms,
            } => tuple(vec![
                atom("kill"),
                int_u64(*id),
                int_i64(i64::from(*signum)),
                int_u64(*grace_ms),
            ]),
        }
    }

    /// Encodes the request (ETF bytes).
    pub fn encode(&self) -> Vec<u8> {
        encode_term(&self.to_term())
    }
}
