//! Tests of request decoding: every field, defaults, and the errors that name a stage.

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
        use_stdio: false,
        stdout: StdoutMode::Null,
        pipe_size: Some(65536),
        kill_signal: 2,
        kill_grace_ms: 1 << 33,
        pty: Some(PtySpec {
            rows: 24,
            cols: 80,
            modes: vec![(53, 1), (70, 0)],
        }),
        stdin: crate::redirect::StdinMode::File(b"in.txt".to_vec()),
        control: crate::control::Control {
            user: Some(crate::control::Principal::Name(b"nobody".to_vec())),
            group: Some(crate::control::Principal::Id(65534)),
            login_env: vec![b"HOME".to_vec()],
            allowed_users: Some(vec![crate::control::Principal::Id(0)]),
            nice: Some(-5),
            rlimits: vec![crate::control::Rlimit {
                resource: crate::control::Resource::Nofile,
                soft: Some(64),
                hard: None,
            }],
            umask: Some(0o27),
            arg0: Some(b"cat-renamed".to_vec()),
        },
        kill_command: Some(vec![b"kill".to_vec(), b"-9".to_vec()]),
        pipeline: vec![crate::pipeline::StageSpec {
            argv: vec![b"gzip".to_vec()],
            env: None,
            cd: Some(b"/".to_vec()),
            stderr: StderrMode::Stdout,
        }],
        sandbox: Some(crate::sandbox::SandboxSpec {
            writable: vec![b"/srv/out".to_vec()],
            ..Default::default()
        }),
    }
}

#[test]
fn request_round_trips() {
    let reqs = [
        Request::Spawn {
            id: 1,
            spec: Box::new(spec()),
        },
        Request::Spawn {
            id: u64::MAX,
            spec: Box::new(SpawnSpec {
                argv: vec![b"x".to_vec()],
                ..SpawnSpec::default()
            }),
        },
        Request::Spawn {
            id: 2,
            spec: Box::new(SpawnSpec {
                argv: vec![b"true".to_vec()],
                stdin: crate::redirect::StdinMode::Closed,
                ..SpawnSpec::default()
            }),
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
            spec: Box::new(SpawnSpec {
                argv: vec![b"ls".to_vec()],
                // no env key: the helper program's inherited environment
                env: None,
                cd: None,
                stderr: StderrMode::Null,
                // no use_stdio or stdout keys: stdio as usual
                use_stdio: true,
                stdout: StdoutMode::Pipe,
                pipe_size: None,
                // no kill keys: the defaults
                kill_signal: 15,
                kill_grace_ms: 5000,
                // no pty key: pipes
                pty: None,
                stdin: crate::redirect::StdinMode::Pipe,
                control: crate::control::Control::default(),
                kill_command: None,
                pipeline: Vec::new(),
                // no sandbox key: not sandboxed
                sandbox: None,
            })
        }
    );
}

/// Bytes printed by `erl` (OTP with ATOM_EXT atoms) for
/// `term_to_binary({spawn, 5, #{argv => [<<"ls">>], cd => nil, stderr => null}})`.
#[test]
fn decodes_bytes_from_erl() {
    let b: &[u8] = &[
        131, 104, 3, 100, 0, 5, 115, 112, 97, 119, 110, 97, 5, 116, 0, 0, 0, 3, 100, 0, 4, 97, 114,
        103, 118, 108, 0, 0, 0, 1, 109, 0, 0, 0, 2, 108, 115, 106, 100, 0, 2, 99, 100, 100, 0, 3,
        110, 105, 108, 100, 0, 6, 115, 116, 100, 101, 114, 114, 100, 0, 4, 110, 117, 108, 108,
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

    let e =
        Request::decode(&encode_term(&tuple(vec![atom("frobnicate"), int_u64(3)]))).unwrap_err();
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
            spec: Box::new(spec()),
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
