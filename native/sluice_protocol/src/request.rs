//! Requests, BEAM → helper program: `spawn` on the fd socket, `signal` and `kill` on a
//! program's channel. Decoding is what the helper program needs; encoding (for tests and
//! tools) sits behind the `codec` feature.

use eetf::Term;

use crate::etf::decode_term;
use crate::stage::Stage;
use crate::term::{
    as_bytes, as_i128, as_i32, as_list, as_u64, atom_name, is_nil, tagged, DecodeError,
};

/// `kill_signal` when the spec has none: SIGTERM.
pub const DEFAULT_KILL_SIGNAL: i32 = 15;

/// `kill_grace` (ms) when the spec has none.
pub const DEFAULT_KILL_GRACE_MS: u64 = 5000;

/// How the program's stderr is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StderrMode {
    /// A separate pipe whose read end goes to the BEAM.
    Pipe,
    /// Same pipe as stdout.
    Stdout,
    /// `/dev/null`.
    Null,
    /// The helper program's own stderr (the BEAM's stderr).
    #[default]
    Inherit,
}

/// What to start: the `spec` map of a `spawn` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnSpec {
    /// Program and arguments; `argv[0]` is searched in PATH when it has no slash.
    pub argv: Vec<Vec<u8>>,
    /// The complete environment, `NAME=value` entries; `None` (the atom `inherit`, or no
    /// `env` key) = the helper program's own environment, which it inherited from the VM.
    /// The BEAM sends a list only when it differs, which saves building and decoding it per
    /// spawn.
    pub env: Option<Vec<Vec<u8>>>,
    /// Working directory, `None` = the helper program's.
    pub cd: Option<Vec<u8>>,
    /// stderr wiring.
    pub stderr: StderrMode,
    /// `F_SETPIPE_SZ` for every pipe, `None` = kernel default.
    pub pipe_size: Option<usize>,
    /// Sent when the channel closes while the program runs.
    pub kill_signal: i32,
    /// Milliseconds between `kill_signal` and SIGKILL.
    pub kill_grace_ms: u64,
}

impl Default for SpawnSpec {
    fn default() -> Self {
        SpawnSpec {
            argv: Vec::new(),
            env: None,
            cd: None,
            stderr: StderrMode::Inherit,
            pipe_size: None,
            kill_signal: DEFAULT_KILL_SIGNAL,
            kill_grace_ms: DEFAULT_KILL_GRACE_MS,
        }
    }
}

/// A request from the BEAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `{:spawn, id, spec}` (fd socket)
    Spawn { id: u64, spec: SpawnSpec },
    /// `{:signal, id, signum}` (program channel)
    Signal { id: u64, signum: i32 },
    /// `{:kill, id, signum, grace_ms}` (program channel)
    Kill { id: u64, signum: i32, grace_ms: u64 },
}

/// A list of binaries without NUL bytes (argv and env elements end up as C strings).
fn binary_list(t: &Term, key: &str, stage: Stage) -> Result<Vec<Vec<u8>>, DecodeError> {
    let list = as_list(t)
        .ok_or_else(|| DecodeError::at_stage(stage, format!("{key} must be a list of binaries")))?;
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let b = as_bytes(e).ok_or_else(|| {
                DecodeError::at_stage(stage, format!("{key} element {i} is not a binary"))
            })?;
            if b.contains(&0) {
                return Err(DecodeError::at_stage(
                    stage,
                    format!("{key} element {i} contains a NUL byte"),
                ));
            }
            Ok(b.to_vec())
        })
        .collect()
}

/// An optional integer key: absent or `nil` gives `None`.
fn opt_int<T: TryFrom<i128>>(v: Option<&Term>, what: &str) -> Result<Option<T>, DecodeError> {
    match v {
        None => Ok(None),
        Some(v) if is_nil(v) => Ok(None),
        Some(v) => as_i128(v)
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| DecodeError::at_stage(Stage::Spec, format!("{what} is out of range"))),
    }
}

impl SpawnSpec {
    fn from_term(t: &Term) -> Result<SpawnSpec, DecodeError> {
        let map = match t {
            Term::Map(m) => &m.map,
            _ => {
                return Err(DecodeError::at_stage(
                    Stage::Spec,
                    "spawn spec must be a map",
                ))
            }
        };
        let get = |key: &str| {
            map.iter()
                .find(|(k, _)| atom_name(k) == Some(key))
                .map(|(_, v)| v)
        };

        let argv = match get("argv") {
            Some(v) => binary_list(v, "argv", Stage::Argv)?,
            None => return Err(DecodeError::at_stage(Stage::Argv, "spawn spec has no argv")),
        };
        if argv.is_empty() {
            return Err(DecodeError::at_stage(Stage::Argv, "argv must not be empty"));
        }
        let env = match get("env") {
            Some(v) if is_nil(v) => Some(Vec::new()),
            Some(v) if atom_name(v) == Some("inherit") => None,
            Some(v) => Some(binary_list(v, "env", Stage::Env)?),
            None => None,
        };
        let cd = match get("cd") {
            None => None,
            Some(v) if is_nil(v) => None,
            Some(v) => {
                let b = as_bytes(v).ok_or_else(|| {
                    DecodeError::at_stage(Stage::Chdir, "cd must be a binary or nil")
                })?;
                if b.contains(&0) {
                    return Err(DecodeError::at_stage(
                        Stage::Chdir,
                        "cd contains a NUL byte",
                    ));
                }
                Some(b.to_vec())
            }
        };
        let stderr = match get("stderr").map(atom_name) {
            None | Some(Some("inherit")) | Some(Some("nil")) => StderrMode::Inherit,
            Some(Some("pipe")) => StderrMode::Pipe,
            Some(Some("stdout")) => StderrMode::Stdout,
            Some(Some("null")) => StderrMode::Null,
            Some(_) => {
                return Err(DecodeError::at_stage(
                    Stage::Spec,
                    "stderr must be :pipe, :stdout, :null or :inherit",
                ))
            }
        };
        Ok(SpawnSpec {
            argv,
            env,
            cd,
            stderr,
            pipe_size: opt_int(get("pipe_size"), "pipe_size")?,
            kill_signal: opt_int(get("kill_signal"), "kill_signal")?.unwrap_or(DEFAULT_KILL_SIGNAL),
            kill_grace_ms: opt_int(get("kill_grace"), "kill_grace")?
                .unwrap_or(DEFAULT_KILL_GRACE_MS),
        })
    }
}

impl Request {
    /// Decodes a request payload (ETF bytes, without any length prefix).
    pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
        let term = decode_term(bytes)?;
        Request::from_term(&term)
    }

    /// The request's id.
    pub fn id(&self) -> u64 {
        match self {
            Request::Spawn { id, .. } | Request::Signal { id, .. } | Request::Kill { id, .. } => {
                *id
            }
        }
    }

    fn from_term(term: &Term) -> Result<Request, DecodeError> {
        let elems = match term {
            Term::Tuple(t) if !t.elements.is_empty() => &t.elements,
            _ => return Err(DecodeError::new("a request must be a tagged tuple")),
        };
        // Best effort, so that the error reply can name the request.
        let id = elems.get(1).and_then(|t| as_u64(t, "id").ok());
        let (tag, _) = tagged(term)
            .ok_or_else(|| DecodeError::new("a request tag must be an atom").with_id(id))?;
        let arity = |n: usize| {
            if elems.len() == n {
                Ok(())
            } else {
                Err(DecodeError::new(format!(
                    "{tag} request must be a {n}-tuple, got {} elements",
                    elems.len()
                ))
                .with_id(id))
            }
        };
        match tag {
            "spawn" => {
                arity(3)?;
                let id = as_u64(&elems[1], "id")?;
                let spec = SpawnSpec::from_term(&elems[2]).map_err(|e| e.with_id(Some(id)))?;
                Ok(Request::Spawn { id, spec })
            }
            "signal" => {
                arity(3)?;
                let id = as_u64(&elems[1], "id")?;
                let signum = as_i32(&elems[2], "signum").map_err(|e| e.with_id(Some(id)))?;
                Ok(Request::Signal { id, signum })
            }
            "kill" => {
                arity(4)?;
                let id = as_u64(&elems[1], "id")?;
                let signum = as_i32(&elems[2], "signum").map_err(|e| e.with_id(Some(id)))?;
                let grace_ms = as_u64(&elems[3], "grace_ms").map_err(|e| e.with_id(Some(id)))?;
                Ok(Request::Kill {
                    id,
                    signum,
                    grace_ms,
                })
            }
            other => Err(DecodeError::new(format!("unknown request tag {other}")).with_id(id)),
        }
    }
}

/// Encoding, as the BEAM does it: for tests and tools, never for the helper program.
#[cfg(any(test, feature = "codec"))]
mod codec {
    use std::collections::HashMap;

    use eetf::{List, Map, Term};

    use super::{Request, SpawnSpec, StderrMode};
    use crate::etf::encode_term;
    use crate::term::{atom, binary, int_i64, int_u64, nil, tuple};

    impl StderrMode {
        fn atom(self) -> &'static str {
            match self {
                StderrMode::Pipe => "pipe",
                StderrMode::Stdout => "stdout",
                StderrMode::Null => "null",
                StderrMode::Inherit => "inherit",
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
            map.insert(atom("stderr"), atom(self.stderr.atom()));
            map.insert(
                atom("pipe_size"),
                self.pipe_size
                    .map(|n| int_u64(n as u64))
                    .unwrap_or_else(nil),
            );
            map.insert(atom("kill_signal"), int_i64(i64::from(self.kill_signal)));
            map.insert(atom("kill_grace"), int_u64(self.kill_grace_ms));
            Term::Map(Map::from(map))
        }
    }

    impl Request {
        /// The request as a term (what the BEAM sends).
        pub fn to_term(&self) -> Term {
            match self {
                Request::Spawn { id, spec } => {
                    tuple(vec![atom("spawn"), int_u64(*id), spec.to_term()])
                }
                Request::Signal { id, signum } => tuple(vec![
                    atom("signal"),
                    int_u64(*id),
                    int_i64(i64::from(*signum)),
                ]),
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
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use eetf::{List, Map};
    use proptest::prelude::*;

    use super::*;
    use crate::etf::encode_term;
    use crate::term::{atom, binary, int_i64, int_u64, nil, tuple};

    fn spec() -> SpawnSpec {
        SpawnSpec {
            argv: vec![b"cat".to_vec(), b"-u".to_vec()],
            env: Some(vec![b"PATH=/bin".to_vec()]),
            cd: Some(b"/tmp".to_vec()),
            stderr: StderrMode::Pipe,
            pipe_size: Some(65536),
            kill_signal: 2,
            kill_grace_ms: 1 << 33,
        }
    }

    #[test]
    fn request_round_trips() {
        let reqs = [
            Request::Spawn {
                id: 1,
                spec: spec(),
            },
            Request::Spawn {
                id: u64::MAX,
                spec: SpawnSpec {
                    argv: vec![b"x".to_vec()],
                    ..SpawnSpec::default()
                },
            },
            Request::Signal { id: 7, signum: 15 },
            Request::Kill {
                id: 1 << 40,
                signum: 9,
                grace_ms: 5_000_000_000,
            },
        ];
        for r in reqs {
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
    }

    /// `:erlang.term_to_binary({:spawn, 5, %{argv: ["ls"], cd: nil, stderr: :null}})` as
    /// OTP 26 writes it (SMALL_ATOM_UTF8 atoms).
    #[test]
    fn decodes_erlang_spawn() {
        let mut b = vec![131, 104, 3, 119, 5];
        b.extend_from_slice(b"spawn");
        b.extend_from_slice(&[97, 5, 116, 0, 0, 0, 3]);
        b.extend_from_slice(&[119, 4]);
        b.extend_from_slice(b"argv");
        b.extend_from_slice(&[108, 0, 0, 0, 1, 109, 0, 0, 0, 2]);
        b.extend_from_slice(b"ls");
        b.push(106);
        b.extend_from_slice(&[119, 2]);
        b.extend_from_slice(b"cd");
        b.extend_from_slice(&[119, 3]);
        b.extend_from_slice(b"nil");
        b.extend_from_slice(&[119, 6]);
        b.extend_from_slice(b"stderr");
        b.extend_from_slice(&[119, 4]);
        b.extend_from_slice(b"null");
        assert_eq!(
            Request::decode(&b).unwrap(),
            Request::Spawn {
                id: 5,
                spec: SpawnSpec {
                    argv: vec![b"ls".to_vec()],
                    // no env key: the helper program's inherited environment
                    env: None,
                    cd: None,
                    stderr: StderrMode::Null,
                    pipe_size: None,
                    // no kill keys: the defaults
                    kill_signal: 15,
                    kill_grace_ms: 5000,
                }
            }
        );
    }

    /// Bytes printed by `erl` (OTP with ATOM_EXT atoms) for
    /// `term_to_binary({spawn, 5, #{argv => [<<"ls">>], cd => nil, stderr => null}})`.
    #[test]
    fn decodes_bytes_from_erl() {
        let b: &[u8] = &[
            131, 104, 3, 100, 0, 5, 115, 112, 97, 119, 110, 97, 5, 116, 0, 0, 0, 3, 100, 0, 4, 97,
            114, 103, 118, 108, 0, 0, 0, 1, 109, 0, 0, 0, 2, 108, 115, 106, 100, 0, 2, 99, 100,
            100, 0, 3, 110, 105, 108, 100, 0, 6, 115, 116, 100, 101, 114, 114, 100, 0, 4, 110, 117,
            108, 108,
        ];
        let Request::Spawn { id, spec } = Request::decode(b).unwrap() else {
            panic!("not a spawn");
        };
        assert_eq!(id, 5);
        assert_eq!(spec.argv, vec![b"ls".to_vec()]);
        assert_eq!(spec.stderr, StderrMode::Null);
        assert_eq!(spec.cd, None);
    }

    /// `{:kill, 4294967296, 15, 1000}` with old-style ATOM_EXT and a SMALL_BIG id.
    #[test]
    fn decodes_erlang_kill_with_bignum() {
        let mut b = vec![131, 104, 4, 100, 0, 4];
        b.extend_from_slice(b"kill");
        b.extend_from_slice(&[110, 5, 0, 0, 0, 0, 0, 1]);
        b.extend_from_slice(&[97, 15]);
        b.extend_from_slice(&[98, 0, 0, 3, 232]);
        assert_eq!(
            Request::decode(&b).unwrap(),
            Request::Kill {
                id: 1 << 32,
                signum: 15,
                grace_ms: 1000
            }
        );
    }

    fn spec_map(entries: Vec<(&str, Term)>) -> Term {
        let m: HashMap<Term, Term> = entries.into_iter().map(|(k, v)| (atom(k), v)).collect();
        Term::Map(Map::from(m))
    }

    #[test]
    fn rejects_bad_requests_with_id() {
        let bad_spec = |spec: Term| {
            let t = tuple(vec![atom("spawn"), int_u64(9), spec]);
            Request::decode(&encode_term(&t)).unwrap_err()
        };
        let e = bad_spec(spec_map(vec![("argv", Term::List(List::nil()))]));
        assert_eq!((e.id, e.spawn_stage), (Some(9), Some(Stage::Argv)));

        let e = bad_spec(spec_map(vec![(
            "argv",
            Term::List(List::from(vec![binary(b"a\0b")])),
        )]));
        assert_eq!(e.spawn_stage, Some(Stage::Argv));
        assert!(e.message.contains("NUL"), "{}", e.message);

        let argv = || Term::List(List::from(vec![binary(b"a")]));
        let e = bad_spec(spec_map(vec![
            ("argv", argv()),
            ("env", Term::List(List::from(vec![binary(b"A=\0")]))),
            ("future_key", atom("whatever")),
        ]));
        assert_eq!(e.spawn_stage, Some(Stage::Env));

        let e = bad_spec(spec_map(vec![("argv", argv()), ("kill_signal", atom("x"))]));
        assert_eq!(e.spawn_stage, Some(Stage::Spec));
        let e = bad_spec(spec_map(vec![
            ("argv", argv()),
            ("kill_grace", int_i64(-1)),
        ]));
        assert_eq!(e.spawn_stage, Some(Stage::Spec));
        let e = bad_spec(binary(b"not a map"));
        assert_eq!(e.spawn_stage, Some(Stage::Spec));

        let e = Request::decode(&encode_term(&tuple(vec![atom("frobnicate"), int_u64(3)])))
            .unwrap_err();
        assert_eq!((e.id, e.spawn_stage), (Some(3), None));
        assert!(e.message.contains("frobnicate"));

        let e = Request::decode(&encode_term(&atom("x"))).unwrap_err();
        assert_eq!(e.id, None);
    }

    #[test]
    fn nil_kill_keys_take_the_defaults() {
        let t = tuple(vec![
            atom("spawn"),
            int_u64(1),
            spec_map(vec![
                ("argv", Term::List(List::from(vec![binary(b"a")]))),
                ("kill_signal", nil()),
                ("kill_grace", nil()),
            ]),
        ]);
        let Request::Spawn { spec, .. } = Request::decode(&encode_term(&t)).unwrap() else {
            panic!("not a spawn");
        };
        assert_eq!((spec.kill_signal, spec.kill_grace_ms), (15, 5000));
    }

    fn valid_payloads() -> Vec<Vec<u8>> {
        vec![
            Request::Spawn {
                id: 1,
                spec: spec(),
            }
            .encode(),
            Request::Kill {
                id: 1 << 40,
                signum: 9,
                grace_ms: 10,
            }
            .encode(),
            Request::Signal { id: 3, signum: 2 }.encode(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn decode_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Request::decode(&bytes);
            let mut with_magic = vec![131];
            with_magic.extend_from_slice(&bytes);
            let _ = Request::decode(&with_magic);
        }

        #[test]
        fn decode_never_panics_on_mutations(
            which in 0usize..3,
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        ) {
            let mut p = valid_payloads()[which].clone();
            for (i, b) in flips {
                let i = i.index(p.len());
                p[i] = b;
            }
            let _ = Request::decode(&p);
            let cut = cut.index(p.len() + 1);
            let _ = Request::decode(&p[..cut]);
        }
    }
}
