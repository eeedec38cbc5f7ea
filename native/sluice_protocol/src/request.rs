//! Requests, BEAM → helper program: `spawn` and `manage` on the fd socket, `signal` and
//! `kill` on a program's channel. Decoding is what the helper program needs; encoding (for tests and
//! tools) sits behind the `codec` feature.

use eetf::Term;

use crate::control::Control;
use crate::etf::decode_term;
use crate::manage::ManageSpec;
use crate::pipeline::StageSpec;
use crate::pty::PtySpec;
use crate::redirect::{output_file, FileOutput, StdinMode};
use crate::sandbox::SandboxSpec;
use crate::stage::Stage;
use crate::term::{
    as_bytes, as_i128, as_i32, as_list, as_u64, atom_name, is_nil, tagged, DecodeError,
};

/// `kill_signal` when the spec has none: SIGTERM.
pub const DEFAULT_KILL_SIGNAL: i32 = 15;

/// `kill_grace` (ms) when the spec has none.
pub const DEFAULT_KILL_GRACE_MS: u64 = 5000;

/// How the program's stderr is wired.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
    /// A file (the same open file as stdout's when it names the same path).
    File(FileOutput),
}

/// Where the program's stdout (its fd 1) goes: to the BEAM (the data, or with
/// `use_stdio: false` its own output, to be logged), nowhere, the console or a file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StdoutMode {
    /// A pipe whose read end goes to the BEAM.
    #[default]
    Pipe,
    /// `/dev/null`.
    Null,
    /// The helper program's own stderr (the BEAM's stderr: the console).
    Inherit,
    /// A file.
    File(FileOutput),
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
    /// `false`: the data goes through fds 3 (the program's input) and 4 (its output), like
    /// Port's `nouse_stdio`; stdin is `/dev/null` and stdout is wired by `stdout`.
    pub use_stdio: bool,
    /// The program's stdin (with `use_stdio`; else it is `/dev/null`).
    pub stdin: StdinMode,
    /// The program's stdout (fd 1).
    pub stdout: StdoutMode,
    /// `F_SETPIPE_SZ` for every pipe, `None` = kernel default.
    pub pipe_size: Option<usize>,
    /// Sent when the channel closes while the program runs.
    pub kill_signal: i32,
    /// Milliseconds between `kill_signal` and SIGKILL.
    pub kill_grace_ms: u64,
    /// Run on a pseudo-terminal: stdin, stdout (and stderr with `StderrMode::Stdout`) are
    /// its slave; `None` = pipes.
    pub pty: Option<PtySpec>,
    /// Credentials, priority, limits, umask, arg0.
    pub control: Control,
    /// Run by the helper program instead of sending `kill_signal` (with `CHILD_PID`).
    pub kill_command: Option<Vec<Vec<u8>>>,
    /// The stages after this first one: each reads what the one before wrote.
    pub pipeline: Vec<StageSpec>,
    /// Run in a sandbox (every stage of a pipeline in one of its own); `None` = not.
    pub sandbox: Option<SandboxSpec>,
}

impl Default for SpawnSpec {
    fn default() -> Self {
        SpawnSpec {
            argv: Vec::new(),
            env: None,
            cd: None,
            stderr: StderrMode::Inherit,
            use_stdio: true,
            stdin: StdinMode::Pipe,
            stdout: StdoutMode::Pipe,
            pipe_size: None,
            kill_signal: DEFAULT_KILL_SIGNAL,
            kill_grace_ms: DEFAULT_KILL_GRACE_MS,
            pty: None,
            control: Control::default(),
            kill_command: None,
            pipeline: Vec::new(),
            sandbox: None,
        }
    }
}

/// A request from the BEAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `{:spawn, id, spec}` (fd socket)
    Spawn { id: u64, spec: Box<SpawnSpec> },
    /// `{:manage, id, spec}` (fd socket): adopt a process the helper program did not start
    Manage { id: u64, spec: ManageSpec },
    /// `{:signal, id, signum}` (program channel)
    Signal { id: u64, signum: i32 },
    /// `{:kill, id, signum, grace_ms}` (program channel)
    Kill { id: u64, signum: i32, grace_ms: u64 },
    /// `{:stats, id}` (program channel): what the program has cost so far
    Stats { id: u64 },
}

/// A list of binaries without NUL bytes (argv and env elements end up as C strings).
pub(crate) fn binary_list(t: &Term, key: &str, stage: Stage) -> Result<Vec<Vec<u8>>, DecodeError> {
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

/// The keys every program of a spawn has, the first and each later pipeline stage:
/// `argv`, `env`, `cd` and `stderr`.
pub(crate) type ProgramKeys = (
    Vec<Vec<u8>>,
    Option<Vec<Vec<u8>>>,
    Option<Vec<u8>>,
    StderrMode,
);

/// Decodes [`ProgramKeys`]; `get` finds a key of the map.
pub(crate) fn program_keys<'a>(
    get: &impl Fn(&str) -> Option<&'a Term>,
) -> Result<ProgramKeys, DecodeError> {
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
            let b = as_bytes(v)
                .ok_or_else(|| DecodeError::at_stage(Stage::Chdir, "cd must be a binary or nil"))?;
            if b.contains(&0) {
                return Err(DecodeError::at_stage(
                    Stage::Chdir,
                    "cd contains a NUL byte",
                ));
            }
            Some(b.to_vec())
        }
    };
    let stderr_file = get("stderr").and_then(|t| output_file(t, Stage::Stderr));
    let stderr = match get("stderr").map(atom_name) {
        _ if stderr_file.is_some() => StderrMode::File(stderr_file.unwrap()?),
        None | Some(Some("inherit")) | Some(Some("nil")) => StderrMode::Inherit,
        Some(Some("pipe")) => StderrMode::Pipe,
        Some(Some("stdout")) => StderrMode::Stdout,
        Some(Some("null")) => StderrMode::Null,
        Some(_) => {
            return Err(DecodeError::at_stage(
                Stage::Spec,
                "stderr must be :pipe, :stdout, :null, :inherit or a file",
            ))
        }
    };
    Ok((argv, env, cd, stderr))
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

        let (argv, env, cd, stderr) = program_keys(&get)?;
        let use_stdio = match get("use_stdio").map(atom_name) {
            None | Some(Some("true")) | Some(Some("nil")) => true,
            Some(Some("false")) => false,
            Some(_) => {
                return Err(DecodeError::at_stage(
                    Stage::Spec,
                    "use_stdio must be true or false",
                ))
            }
        };
        let stdout_file = get("stdout").and_then(|t| output_file(t, Stage::Stdout));
        let stdout = match get("stdout").map(atom_name) {
            _ if stdout_file.is_some() => StdoutMode::File(stdout_file.unwrap()?),
            None | Some(Some("pipe")) | Some(Some("nil")) => StdoutMode::Pipe,
            Some(Some("null")) => StdoutMode::Null,
            Some(Some("inherit")) => StdoutMode::Inherit,
            Some(_) => {
                return Err(DecodeError::at_stage(
                    Stage::Spec,
                    "stdout must be :pipe, :null, :inherit or a file",
                ))
            }
        };
        Ok(SpawnSpec {
            argv,
            env,
            cd,
            stderr,
            use_stdio,
            stdin: StdinMode::from_term(get("stdin"))?,
            stdout,
            pipe_size: opt_int(get("pipe_size"), "pipe_size")?,
            kill_signal: opt_int(get("kill_signal"), "kill_signal")?.unwrap_or(DEFAULT_KILL_SIGNAL),
            kill_grace_ms: opt_int(get("kill_grace"), "kill_grace")?
                .unwrap_or(DEFAULT_KILL_GRACE_MS),
            pty: PtySpec::from_term(get("pty"))?,
            control: Control::from_spec(get)?,
            kill_command: match get("kill_command") {
                None => None,
                Some(v) if is_nil(v) => None,
                Some(v) => Some(binary_list(v, "kill_command", Stage::Spec)?)
                    .filter(|argv| !argv.is_empty()),
            },
            pipeline: StageSpec::list(get("pipeline"))?,
            sandbox: SandboxSpec::from_term(get("sandbox"))?,
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
            Request::Spawn { id, .. }
            | Request::Manage { id, .. }
            | Request::Signal { id, .. }
            | Request::Kill { id, .. }
            | Request::Stats { id } => *id,
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
                Ok(Request::Spawn {
                    id,
                    spec: Box::new(spec),
                })
            }
            "manage" => {
                arity(3)?;
                let id = as_u64(&elems[1], "id")?;
                let spec = ManageSpec::from_term(&elems[2]).map_err(|e| e.with_id(Some(id)))?;
                Ok(Request::Manage { id, spec })
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
            "stats" => {
                arity(2)?;
                let id = as_u64(&elems[1], "id")?;
                Ok(Request::Stats { id })
            }
            other => Err(DecodeError::new(format!("unknown request tag {other}")).with_id(id)),
        }
    }
}

/// Encoding, as the BEAM does it: for tests and tools, never for the helper program.
#[cfg(any(test, feature = "codec"))]
#[path = "request_codec.rs"]
mod codec;

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
