//! Where a program's stdin, stdout and stderr go when not to the BEAM: the `stdin`,
//! `stdout` and `stderr` keys of a spawn spec. Files are opened by the helper program (a
//! relative path resolves against the program's `cd`), so no byte passes through the VM.

use eetf::Term;

use crate::stage::Stage;
use crate::term::{as_bytes, as_i128, atom_name, tagged, DecodeError};

/// A file an output is written to: `{:file, path, append, mode}` on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutput {
    pub path: Vec<u8>,
    /// `true`: `O_APPEND`; `false`: `O_TRUNC`.
    pub append: bool,
    /// The mode of a file created by the open (before the umask).
    pub mode: u32,
}

/// How the program's stdin is wired.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StdinMode {
    /// A pipe whose write end goes to the BEAM.
    #[default]
    Pipe,
    /// `/dev/null`.
    Null,
    /// A file, read from its start: `{:file, path}`.
    File(Vec<u8>),
    /// A pipe whose write end the helper closes: the program reads end of file at once,
    /// as from a pipe the BEAM closed, and no fd goes to the BEAM (`run` and streams
    /// without input).
    Closed,
}

fn path(t: &Term, stage: Stage) -> Result<Vec<u8>, DecodeError> {
    match as_bytes(t) {
        Some(b) if !b.is_empty() && !b.contains(&0) => Ok(b.to_vec()),
        _ => Err(DecodeError::at_stage(
            stage,
            "a file path must be a non-empty binary without NUL bytes",
        )),
    }
}

/// `{:file, path}` for stdin.
pub fn input_file(t: &Term) -> Option<Result<Vec<u8>, DecodeError>> {
    match tagged(t) {
        Some(("file", [_, p])) => Some(path(p, Stage::Stdin)),
        _ => None,
    }
}

/// `{:file, path, append, mode}` for stdout or stderr; `None` when `t` is not a file tuple.
pub fn output_file(t: &Term, stage: Stage) -> Option<Result<FileOutput, DecodeError>> {
    let Some(("file", [_, p, append, mode])) = tagged(t) else {
        return None;
    };
    let file = || {
        let append = match atom_name(append) {
            Some("true") => true,
            Some("false") => false,
            _ => return Err(DecodeError::at_stage(stage, "append must be a boolean")),
        };
        let mode = as_i128(mode)
            .and_then(|m| u32::try_from(m).ok())
            .filter(|&m| m <= 0o7777)
            .ok_or_else(|| DecodeError::at_stage(stage, "mode must be an integer 0..0o7777"))?;
        Ok(FileOutput {
            path: path(p, stage)?,
            append,
            mode,
        })
    };
    Some(file())
}

impl StdinMode {
    /// Decodes the `stdin` key (absent: a pipe).
    pub fn from_term(t: Option<&Term>) -> Result<StdinMode, DecodeError> {
        let Some(t) = t else {
            return Ok(StdinMode::Pipe);
        };
        if let Some(file) = input_file(t) {
            return file.map(StdinMode::File);
        }
        match atom_name(t) {
            Some("pipe") | Some("nil") => Ok(StdinMode::Pipe),
            Some("null") => Ok(StdinMode::Null),
            Some("closed") => Ok(StdinMode::Closed),
            _ => Err(DecodeError::at_stage(
                Stage::Stdin,
                "stdin must be :pipe, :closed, :null or {:file, path}",
            )),
        }
    }
}

/// Encoding, as the BEAM does it: for tests and tools.
#[cfg(any(test, feature = "codec"))]
pub(crate) mod codec {
    use eetf::Term;

    use super::{FileOutput, StdinMode};
    use crate::term::{atom, binary, boolean, int_u64, tuple};

    impl FileOutput {
        pub fn to_term(&self) -> Term {
            tuple(vec![
                atom("file"),
                binary(&self.path),
                boolean(self.append),
                int_u64(u64::from(self.mode)),
            ])
        }
    }

    impl StdinMode {
        pub fn to_term(&self) -> Term {
            match self {
                StdinMode::Pipe => atom("pipe"),
                StdinMode::Null => atom("null"),
                StdinMode::File(p) => tuple(vec![atom("file"), binary(p)]),
                StdinMode::Closed => atom("closed"),
            }
        }
    }
}
