//! ETF control frames exchanged between the BEAM and the helper over the port.
//!
//! Every frame is a 4-byte big-endian length followed by one term in the Erlang external
//! term format (`{:packet, 4}` on the port). Requests flow BEAM → helper ([`Request`]),
//! replies and events flow helper → BEAM ([`Reply`]). [`FrameReader`] splits a byte stream
//! into payloads.
//!
//! The helper must never fall over on bad input, and `eetf`'s decoder trusts lengths, panics
//! on some tags and recurses without bound. So every payload is first checked by
//! [`check_etf`] (lengths within the input, supported tags only, bounded depth and term
//! count) and only then handed to `eetf`.

use std::collections::HashMap;
use std::fmt;

use eetf::{Atom, BigInteger, Binary, FixInteger, List, Map, Term, Tuple};

/// The protocol version sent in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Frames longer than this are rejected (and their bytes discarded).
pub const MAX_FRAME_LEN: usize = 64 * 1024 * 1024;

/// Nesting deeper than this is rejected before `eetf` sees the term.
pub const MAX_DEPTH: usize = 64;

/// More terms than this in one frame are rejected before `eetf` sees the frame.
pub const MAX_TERMS: usize = 1 << 20;

/// How the program's stderr is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StderrMode {
    /// A separate pipe whose read end goes to the BEAM.
    Pipe,
    /// Same pipe as stdout.
    Stdout,
    /// `/dev/null`.
    Null,
    /// The helper's own stderr (the BEAM's stderr).
    #[default]
    Inherit,
}

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

/// What to start: the `spec` map of a `spawn` request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpawnSpec {
    /// Program and arguments; `argv[0]` is searched in PATH when it has no slash.
    pub argv: Vec<Vec<u8>>,
    /// The complete environment, `NAME=value` entries; `None` (the atom `inherit`, or no
    /// `env` key) = the helper's own environment, which it inherited from the VM. The BEAM
    /// sends a list only when it differs, which saves building and decoding it per spawn.
    pub env: Option<Vec<Vec<u8>>>,
    /// Working directory, `None` = the helper's.
    pub cd: Option<Vec<u8>>,
    /// stderr wiring.
    pub stderr: StderrMode,
    /// `F_SETPIPE_SZ` for every pipe, `None` = kernel default.
    pub pipe_size: Option<usize>,
}

/// A request from the BEAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `{:spawn, id, spec}`
    Spawn { id: u64, spec: SpawnSpec },
    /// `{:signal, id, signum}`
    Signal { id: u64, signum: i32 },
    /// `{:kill, id, signum, grace_ms}`
    Kill { id: u64, signum: i32, grace_ms: u64 },
}

/// How a program leader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `{:exited, code}`
    Exited(i32),
    /// `{:signaled, signum, core_dumped}`
    Signaled { signum: i32, core: bool },
}

/// A reply or event from the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `{:hello, 1, socket_path, helper_os_pid, cgroup_root_or_nil}`
    Hello {
        version: u32,
        socket_path: Vec<u8>,
        helper_pid: u32,
        cgroup_root: Option<Vec<u8>>,
    },
    /// `{:spawned, id, os_pid}`
    Spawned { id: u64, os_pid: u32 },
    /// `{:spawn_error, id, errno, stage, detail}`
    SpawnError {
        id: u64,
        errno: String,
        stage: String,
        detail: String,
    },
    /// `{:exit, id, status}`
    Exit { id: u64, status: ExitStatus },
    /// `{:error, id_or_nil, message}`
    Error { id: Option<u64>, message: String },
}

/// Why a payload is not a valid term of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The request id, when it could be read: the error reply then names it.
    pub id: Option<u64>,
    /// Set when a `spawn` request with a readable id has an invalid spec; the helper then
    /// answers `spawn_error` with this stage (`"argv"`, `"env"`, `"chdir"`, `"spec"`) rather
    /// than a generic `error`, so the waiting spawner is answered.
    pub spawn_stage: Option<&'static str>,
    /// Human readable reason.
    pub message: String,
}

impl DecodeError {
    fn new(message: impl Into<String>) -> Self {
        DecodeError {
            id: None,
            spawn_stage: None,
            message: message.into(),
        }
    }

    fn with_id(mut self, id: Option<u64>) -> Self {
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

// ---------------------------------------------------------------------------------------
// Pre-validation of untrusted ETF bytes.

const VERSION_MAGIC: u8 = 131;

struct Checker<'a> {
    buf: &'a [u8],
    pos: usize,
    terms: usize,
}

impl Checker<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.buf.len() - self.pos < n {
            return Err(format!("truncated term at byte {}", self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn u32(&mut self) -> Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// A count of sub-terms: each takes at least one byte, so it cannot exceed what is left.
    fn count(&mut self, n: usize, per: usize) -> Result<usize, String> {
        let left = self.buf.len() - self.pos;
        if n.saturating_mul(per) > left {
            return Err(format!("element count {n} exceeds the frame"));
        }
        Ok(n)
    }

    fn terms(&mut self, n: usize, depth: usize) -> Result<(), String> {
        for _ in 0..n {
            self.term(depth)?;
        }
        Ok(())
    }

    fn atom(&mut self) -> Result<(), String> {
        match self.u8()? {
            100 | 118 => {
                let n = self.u16()?;
                self.take(n)?;
            }
            115 | 119 => {
                let n = self.u8()? as usize;
                self.take(n)?;
            }
            t => return Err(format!("expected an atom, got tag {t}")),
        }
        self.terms += 1;
        Ok(())
    }

    fn term(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("term nested too deeply".into());
        }
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err("too many terms in one frame".into());
        }
        let d = depth + 1;
        let tag = self.u8()?;
        match tag {
            70 => drop(self.take(8)?),
            77 => {
                let n = self.u32()?;
                let bits = self.u8()?;
                if !(1..=8).contains(&bits) {
                    return Err(format!("bad bitstring tail size {bits}"));
                }
                self.take(n)?;
            }
            97 => drop(self.take(1)?),
            98 => drop(self.take(4)?),
            99 => drop(self.take(31)?),
            100 | 118 => {
                let n = self.u16()?;
                self.take(n)?;
            }
            115 | 119 => {
                let n = self.u8()? as usize;
                self.take(n)?;
            }
            // Reference, port, pid and their newer forms: a node atom, then fixed bytes.
            101 | 102 | 103 | 88 | 89 | 120 => {
                self.atom()?;
                self.take(match tag {
                    101 | 102 => 5,
                    103 => 9,
                    89 => 8,
                    _ => 12,
                })?;
            }
            114 => {
                let n = self.u16()?;
                self.atom()?;
                self.take(1)?;
                self.take(n * 4)?;
            }
            90 => {
                let n = self.u16()?;
                self.atom()?;
                self.take(4)?;
                self.take(n * 4)?;
            }
            104 => {
                let n = self.u8()? as usize;
                self.terms(n, d)?;
            }
            105 => {
                let n = self.u32()?;
                let n = self.count(n, 1)?;
                self.terms(n, d)?;
            }
            106 => {}
            107 => {
                let n = self.u16()?;
                self.take(n)?;
            }
            108 => {
                let n = self.u32()?;
                let n = self.count(n, 1)?;
                self.terms(n, d)?;
                self.term(d)?;
            }
            109 => {
                let n = self.u32()?;
                self.take(n)?;
            }
            110 => {
                let n = self.u8()? as usize;
                if self.u8()? > 1 {
                    return Err("bad bignum sign".into());
                }
                self.take(n)?;
            }
            111 => {
                let n = self.u32()?;
                if self.u8()? > 1 {
                    return Err("bad bignum sign".into());
                }
                self.take(n)?;
            }
            116 => {
                let n = self.u32()?;
                let n = self.count(n, 2)?;
                self.terms(n * 2, d)?;
            }
            80 => return Err("compressed terms are not supported".into()),
            t => return Err(format!("unsupported term tag {t}")),
        }
        Ok(())
    }
}

/// Checks that `bytes` is one complete ETF term (with the 131 version byte) that `eetf` can
/// decode without panicking or allocating more than the input justifies.
pub fn check_etf(bytes: &[u8]) -> Result<(), String> {
    let mut c = Checker {
        buf: bytes,
        pos: 0,
        terms: 0,
    };
    if c.u8().map_err(|_| "empty frame".to_string())? != VERSION_MAGIC {
        return Err("not an external term (bad version byte)".into());
    }
    c.term(0)?;
    if c.pos != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the term",
            bytes.len() - c.pos
        ));
    }
    Ok(())
}

/// Decodes untrusted ETF bytes into a term.
pub fn decode_term(bytes: &[u8]) -> Result<Term, DecodeError> {
    check_etf(bytes).map_err(DecodeError::new)?;
    Term::decode(bytes).map_err(|e| DecodeError::new(format!("bad external term: {e}")))
}

/// Encodes a term to ETF bytes (with the version byte, without the length prefix).
pub fn encode_term(term: &Term) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec only fails for atoms longer than 65535 bytes, which we never build.
    if term.encode(&mut out).is_err() {
        out.clear();
    }
    out
}

// ---------------------------------------------------------------------------------------
// Term helpers.

fn atom(name: &str) -> Term {
    Term::Atom(Atom::from(name))
}

fn nil() -> Term {
    atom("nil")
}

fn boolean(b: bool) -> Term {
    atom(if b { "true" } else { "false" })
}

fn binary(bytes: &[u8]) -> Term {
    Term::Binary(Binary::from(bytes))
}

fn tuple(elements: Vec<Term>) -> Term {
    Term::Tuple(Tuple::from(elements))
}

fn int_u64(v: u64) -> Term {
    match i32::try_from(v) {
        Ok(i) => Term::FixInteger(FixInteger::from(i)),
        Err(_) => Term::BigInteger(BigInteger::from(v)),
    }
}

fn int_i64(v: i64) -> Term {
    match i32::try_from(v) {
        Ok(i) => Term::FixInteger(FixInteger::from(i)),
        Err(_) => Term::BigInteger(BigInteger::from(v)),
    }
}

fn atom_name(t: &Term) -> Option<&str> {
    match t {
        Term::Atom(a) => Some(&a.name),
        _ => None,
    }
}

fn is_nil(t: &Term) -> bool {
    atom_name(t) == Some("nil")
}

fn as_i128(t: &Term) -> Option<i128> {
    match t {
        Term::FixInteger(i) => Some(i128::from(i.value)),
        Term::BigInteger(b) => i128::try_from(&b.value).ok(),
        _ => None,
    }
}

fn as_u64(t: &Term, what: &str) -> Result<u64, DecodeError> {
    as_i128(t)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| DecodeError::new(format!("{what} must be a non-negative integer")))
}

fn as_i32(t: &Term, what: &str) -> Result<i32, DecodeError> {
    as_i128(t)
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| DecodeError::new(format!("{what} must be a 32-bit integer")))
}

fn as_bytes(t: &Term) -> Option<&[u8]> {
    match t {
        Term::Binary(b) => Some(&b.bytes),
        Term::ByteList(b) => Some(&b.bytes),
        _ => None,
    }
}

fn as_string(t: &Term, what: &str) -> Result<String, DecodeError> {
    as_bytes(t)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or_else(|| DecodeError::new(format!("{what} must be a binary")))
}

fn as_list(t: &Term) -> Option<&[Term]> {
    match t {
        Term::List(l) => Some(&l.elements),
        _ => None,
    }
}

fn spec_error(stage: &'static str, message: String) -> DecodeError {
    DecodeError {
        id: None,
        spawn_stage: Some(stage),
        message,
    }
}

/// A list of binaries without NUL bytes (argv and env elements end up as C strings).
fn binary_list(t: &Term, key: &str, stage: &'static str) -> Result<Vec<Vec<u8>>, DecodeError> {
    let list =
        as_list(t).ok_or_else(|| spec_error(stage, format!("{key} must be a list of binaries")))?;
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let b = as_bytes(e)
                .ok_or_else(|| spec_error(stage, format!("{key} element {i} is not a binary")))?;
            if b.contains(&0) {
                return Err(spec_error(
                    stage,
                    format!("{key} element {i} contains a NUL byte"),
                ));
            }
            Ok(b.to_vec())
        })
        .collect()
}

impl SpawnSpec {
    fn from_term(t: &Term) -> Result<SpawnSpec, DecodeError> {
        let map = match t {
            Term::Map(m) => &m.map,
            _ => return Err(spec_error("spec", "spawn spec must be a map".into())),
        };
        let get = |key: &str| {
            map.iter()
                .find(|(k, _)| atom_name(k) == Some(key))
                .map(|(_, v)| v)
        };

        let argv = match get("argv") {
            Some(v) => binary_list(v, "argv", "argv")?,
            None => return Err(spec_error("argv", "spawn spec has no argv".into())),
        };
        if argv.is_empty() {
            return Err(spec_error("argv", "argv must not be empty".into()));
        }
        let env = match get("env") {
            Some(v) if is_nil(v) => Some(Vec::new()),
            Some(v) if atom_name(v) == Some("inherit") => None,
            Some(v) => Some(binary_list(v, "env", "env")?),
            None => None,
        };
        let cd = match get("cd") {
            None => None,
            Some(v) if is_nil(v) => None,
            Some(v) => {
                let b = as_bytes(v)
                    .ok_or_else(|| spec_error("chdir", "cd must be a binary or nil".into()))?;
                if b.contains(&0) {
                    return Err(spec_error("chdir", "cd contains a NUL byte".into()));
                }
                Some(b.to_vec())
            }
        };
        let stderr = match get("stderr").map(|v| (v, atom_name(v))) {
            None => StderrMode::Inherit,
            Some((_, Some("pipe"))) => StderrMode::Pipe,
            Some((_, Some("stdout"))) => StderrMode::Stdout,
            Some((_, Some("null"))) => StderrMode::Null,
            Some((_, Some("inherit"))) | Some((_, Some("nil"))) => StderrMode::Inherit,
            Some(_) => {
                return Err(spec_error(
                    "spec",
                    "stderr must be :pipe, :stdout, :null or :inherit".into(),
                ))
            }
        };
        let pipe_size = match get("pipe_size") {
            None => None,
            Some(v) if is_nil(v) => None,
            Some(v) => Some(
                as_i128(v)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        spec_error("spec", "pipe_size must be a non-negative integer".into())
                    })?,
            ),
        };
        Ok(SpawnSpec {
            argv,
            env,
            cd,
            stderr,
            pipe_size,
        })
    }

    fn to_term(&self) -> Term {
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
        Term::Map(Map::from(map))
    }
}

impl Request {
    /// Decodes a request payload (ETF bytes without the length prefix).
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
        let tag = atom_name(&elems[0])
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

    /// The request as a term (what the BEAM sends).
    pub fn to_term(&self) -> Term {
        match self {
            Request::Spawn { id, spec } => tuple(vec![atom("spawn"), int_u64(*id), spec.to_term()]),
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

    /// Encodes the request (ETF bytes without the length prefix); used by tests and tools.
    pub fn encode(&self) -> Vec<u8> {
        encode_term(&self.to_term())
    }
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
            Reply::Spawned { id, os_pid } => tuple(vec![
                atom("spawned"),
                int_u64(*id),
                int_u64(u64::from(*os_pid)),
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
                binary(stage.as_bytes()),
                binary(detail.as_bytes()),
            ]),
            Reply::Exit { id, status } => {
                let status = match *status {
                    ExitStatus::Exited(code) => {
                        tuple(vec![atom("exited"), int_i64(i64::from(code))])
                    }
                    ExitStatus::Signaled { signum, core } => tuple(vec![
                        atom("signaled"),
                        int_i64(i64::from(signum)),
                        boolean(core),
                    ]),
                };
                tuple(vec![atom("exit"), int_u64(*id), status])
            }
            Reply::Error { id, message } => tuple(vec![
                atom("error"),
                id.map(int_u64).unwrap_or_else(nil),
                binary(message.as_bytes()),
            ]),
        }
    }

    /// Encodes the reply: ETF bytes without the 4-byte length.
    pub fn encode(&self) -> Vec<u8> {
        encode_term(&self.to_term())
    }

    /// Decodes a reply payload; the helper never needs it, tests and tools do.
    pub fn decode(bytes: &[u8]) -> Result<Reply, DecodeError> {
        let term = decode_term(bytes)?;
        let elems = match &term {
            Term::Tuple(t) if !t.elements.is_empty() => &t.elements,
            _ => return Err(DecodeError::new("a reply must be a tagged tuple")),
        };
        let tag = atom_name(&elems[0]).unwrap_or("");
        let want = |n: usize| {
            if elems.len() == n {
                Ok(())
            } else {
                Err(DecodeError::new(format!("bad {tag} reply arity")))
            }
        };
        let u32_of = |t: &Term, what: &str| {
            as_u64(t, what).and_then(|v| {
                u32::try_from(v).map_err(|_| DecodeError::new(format!("{what} out of range")))
            })
        };
        match tag {
            "hello" => {
                want(5)?;
                Ok(Reply::Hello {
                    version: u32_of(&elems[1], "version")?,
                    socket_path: as_bytes(&elems[2])
                        .ok_or_else(|| DecodeError::new("socket_path must be a binary"))?
                        .to_vec(),
                    helper_pid: u32_of(&elems[3], "helper_pid")?,
                    cgroup_root: if is_nil(&elems[4]) {
                        None
                    } else {
                        Some(
                            as_bytes(&elems[4])
                                .ok_or_else(|| DecodeError::new("cgroup_root must be a binary"))?
                                .to_vec(),
                        )
                    },
                })
            }
            "spawned" => {
                want(3)?;
                Ok(Reply::Spawned {
                    id: as_u64(&elems[1], "id")?,
                    os_pid: u32_of(&elems[2], "os_pid")?,
                })
            }
            "spawn_error" => {
                want(5)?;
                Ok(Reply::SpawnError {
                    id: as_u64(&elems[1], "id")?,
                    errno: as_string(&elems[2], "errno")?,
                    stage: as_string(&elems[3], "stage")?,
                    detail: as_string(&elems[4], "detail")?,
                })
            }
            "exit" => {
                want(3)?;
                let id = as_u64(&elems[1], "id")?;
                let st = match &elems[2] {
                    Term::Tuple(t) => &t.elements,
                    _ => return Err(DecodeError::new("exit status must be a tuple")),
                };
                let status = match (st.first().and_then(atom_name), st.len()) {
                    (Some("exited"), 2) => ExitStatus::Exited(as_i32(&st[1], "code")?),
                    (Some("signaled"), 3) => ExitStatus::Signaled {
                        signum: as_i32(&st[1], "signum")?,
                        core: atom_name(&st[2]) == Some("true"),
                    },
                    _ => return Err(DecodeError::new("bad exit status")),
                };
                Ok(Reply::Exit { id, status })
            }
            "error" => {
                want(3)?;
                Ok(Reply::Error {
                    id: if is_nil(&elems[1]) {
                        None
                    } else {
                        Some(as_u64(&elems[1], "id")?)
                    },
                    message: as_string(&elems[2], "message")?,
                })
            }
            other => Err(DecodeError::new(format!("unknown reply tag {other}"))),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Framing.

/// Prefixes `payload` with its 4-byte big-endian length.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A frame the reader refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix exceeds [`MAX_FRAME_LEN`]; the frame's bytes are discarded.
    TooLarge { len: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len } => write!(
                f,
                "frame of {len} bytes exceeds the {MAX_FRAME_LEN} byte limit; discarded"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Accumulates bytes from a stream and yields complete `{packet, 4}` payloads.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    /// Bytes of a rejected frame still to be dropped as they arrive.
    skip: usize,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete payload, an error for an oversized frame (the reader stays usable),
    /// or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > MAX_FRAME_LEN {
            let have = (avail.len() - 4).min(len);
            self.start += 4 + have;
            self.skip = len - have;
            self.compact();
            return Some(Err(FrameError::TooLarge { len }));
        }
        if avail.len() - 4 < len {
            return None;
        }
        let frame = avail[4..4 + len].to_vec();
        self.start += 4 + len;
        self.compact();
        Some(Ok(frame))
    }

    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec() -> SpawnSpec {
        SpawnSpec {
            argv: vec![b"cat".to_vec(), b"-u".to_vec()],
            env: Some(vec![b"PATH=/bin".to_vec()]),
            cd: Some(b"/tmp".to_vec()),
            stderr: StderrMode::Pipe,
            pipe_size: Some(65536),
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

    #[test]
    fn reply_round_trips() {
        let replies = [
            Reply::Hello {
                version: 1,
                socket_path: b"/tmp/sluice.x/sock".to_vec(),
                helper_pid: 42,
                cgroup_root: None,
            },
            Reply::Hello {
                version: 1,
                socket_path: b"/s".to_vec(),
                helper_pid: 4_000_000,
                cgroup_root: Some(b"/sys/fs/cgroup/sluice".to_vec()),
            },
            Reply::Spawned {
                id: 3_000_000_000,
                os_pid: 1234,
            },
            Reply::SpawnError {
                id: 2,
                errno: "ENOENT".into(),
                stage: "exec".into(),
                detail: "nope".into(),
            },
            Reply::Exit {
                id: 2,
                status: ExitStatus::Exited(3),
            },
            Reply::Exit {
                id: 2,
                status: ExitStatus::Signaled {
                    signum: 9,
                    core: true,
                },
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
                    // no env key: the helper's inherited environment
                    env: None,
                    cd: None,
                    stderr: StderrMode::Null,
                    pipe_size: None,
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

    #[test]
    fn rejects_bad_requests_with_id() {
        let bad_spec = |spec: Term| {
            let t = tuple(vec![atom("spawn"), int_u64(9), spec]);
            Request::decode(&encode_term(&t)).unwrap_err()
        };
        let mut m = HashMap::new();
        m.insert(atom("argv"), Term::List(List::nil()));
        let e = bad_spec(Term::Map(Map::from(m)));
        assert_eq!((e.id, e.spawn_stage), (Some(9), Some("argv")));

        let mut m = HashMap::new();
        m.insert(atom("argv"), Term::List(List::from(vec![binary(b"a\0b")])));
        let e = bad_spec(Term::Map(Map::from(m)));
        assert_eq!(e.spawn_stage, Some("argv"));
        assert!(e.message.contains("NUL"), "{}", e.message);

        let mut m = HashMap::new();
        m.insert(atom("argv"), Term::List(List::from(vec![binary(b"a")])));
        m.insert(atom("env"), Term::List(List::from(vec![binary(b"A=\0")])));
        m.insert(atom("future_key"), atom("whatever"));
        assert_eq!(bad_spec(Term::Map(Map::from(m))).spawn_stage, Some("env"));

        let e = Request::decode(&encode_term(&tuple(vec![atom("frobnicate"), int_u64(3)])))
            .unwrap_err();
        assert_eq!((e.id, e.spawn_stage), (Some(3), None));
        assert!(e.message.contains("frobnicate"));

        let e = Request::decode(&encode_term(&atom("x"))).unwrap_err();
        assert_eq!(e.id, None);
    }

    #[test]
    fn rejects_hostile_etf() {
        // DISTRIBUTION_HEADER and ATOM_CACHE_REF hit `unimplemented!()` in eetf.
        assert!(Request::decode(&[131, 68, 0]).is_err());
        assert!(Request::decode(&[131, 82, 0]).is_err());
        // A list claiming 4 billion elements.
        assert!(Request::decode(&[131, 108, 255, 255, 255, 255, 106]).is_err());
        // A binary claiming 4 GiB.
        assert!(Request::decode(&[131, 109, 255, 255, 255, 255]).is_err());
        // Bitstring with 0 tail bits (shift overflow in eetf).
        assert!(Request::decode(&[131, 77, 0, 0, 0, 1, 0, 5]).is_err());
        // Deep nesting.
        let mut deep = vec![131];
        for _ in 0..100_000 {
            deep.extend_from_slice(&[108, 0, 0, 0, 1]);
        }
        deep.push(106);
        assert!(Request::decode(&deep).is_err());
        // Compressed.
        assert!(Request::decode(&[131, 80, 0, 0, 0, 1, 0]).is_err());
        assert!(Request::decode(&[]).is_err());
    }

    #[test]
    fn frame_reader_splits_and_rejects_oversized() {
        let mut r = FrameReader::new();
        let mut stream = encode_frame(b"abc");
        stream.extend_from_slice(&((MAX_FRAME_LEN as u32) + 3).to_be_bytes());
        stream.extend_from_slice(b"xy");
        for b in &stream {
            r.push(std::slice::from_ref(b));
        }
        assert_eq!(r.next_frame(), Some(Ok(b"abc".to_vec())));
        assert_eq!(
            r.next_frame(),
            Some(Err(FrameError::TooLarge {
                len: MAX_FRAME_LEN + 3
            }))
        );
        assert_eq!(r.next_frame(), None);
        // The rest of the oversized frame is dropped as it arrives, then framing resumes.
        r.push(&vec![0u8; MAX_FRAME_LEN + 1]);
        assert_eq!(r.buffered(), 0);
        r.push(&encode_frame(b"ok")[..3]);
        assert_eq!(r.next_frame(), None);
        r.push(&encode_frame(b"ok")[3..]);
        assert_eq!(r.next_frame(), Some(Ok(b"ok".to_vec())));
        assert_eq!(r.next_frame(), None);
        r.push(&encode_frame(b""));
        assert_eq!(r.next_frame(), Some(Ok(vec![])));
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
            let _ = Reply::decode(&bytes);
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

        #[test]
        fn frame_reader_never_panics(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
        ) {
            let mut r = FrameReader::new();
            for c in chunks {
                r.push(&c);
                while let Some(f) = r.next_frame() {
                    if let Ok(f) = f {
                        let _ = Request::decode(&f);
                    }
                }
            }
        }

        #[test]
        fn frame_reader_reassembles(
            splits in proptest::collection::vec(1usize..40, 1..20),
        ) {
            let payloads = valid_payloads();
            let stream: Vec<u8> = payloads.iter().flat_map(|p| encode_frame(p)).collect();
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < stream.len() {
                let n = splits[i % splits.len()].min(stream.len() - pos);
                r.push(&stream[pos..pos + n]);
                pos += n;
                i += 1;
                while let Some(f) = r.next_frame() {
                    got.push(f.unwrap());
                }
            }
            prop_assert_eq!(got, payloads);
        }
    }
}
