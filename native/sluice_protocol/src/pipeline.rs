//! The `pipeline` key of a spawn spec: the stages after the first, each started by the
//! helper program with its stdin the read end of a pipe the stage before writes to. Each
//! has its own `argv`, `env`, `cd` and `stderr`; everything else (stdin of the first,
//! stdout of the last, credentials, limits, the process group and the cgroup) is the
//! spec's, for the whole pipeline.

use eetf::Term;

use crate::request::{program_keys, StderrMode};
use crate::stage::Stage;
use crate::term::{as_list, atom_name, is_nil, DecodeError};

/// The most stages a pipeline may have.
pub const MAX_STAGES: usize = 64;

/// One stage after the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    pub argv: Vec<Vec<u8>>,
    /// `None`: the helper program's inherited environment.
    pub env: Option<Vec<Vec<u8>>>,
    pub cd: Option<Vec<u8>>,
    /// `Stdout`: into the next stage, with its stdout; `Pipe`: the one stderr pipe of the
    /// spec (every stage writing to it).
    pub stderr: StderrMode,
}

impl StageSpec {
    /// Decodes the `pipeline` key: absent or `nil` is no later stage.
    pub fn list(t: Option<&Term>) -> Result<Vec<StageSpec>, DecodeError> {
        let items = match t {
            None => return Ok(Vec::new()),
            Some(t) if is_nil(t) => return Ok(Vec::new()),
            Some(t) => as_list(t)
                .ok_or_else(|| DecodeError::at_stage(Stage::Spec, "pipeline must be a list"))?,
        };
        if items.len() >= MAX_STAGES {
            let e = format!("a pipeline has at most {MAX_STAGES} stages");
            return Err(DecodeError::at_stage(Stage::Spec, e));
        }
        items.iter().map(StageSpec::from_term).collect()
    }

    fn from_term(t: &Term) -> Result<StageSpec, DecodeError> {
        let Term::Map(m) = t else {
            let e = "a pipeline stage must be a map";
            return Err(DecodeError::at_stage(Stage::Spec, e));
        };
        let get = |key: &str| {
            m.map
                .iter()
                .find(|(k, _)| atom_name(k) == Some(key))
                .map(|(_, v)| v)
        };
        let (argv, env, cd, stderr) = program_keys(&get)?;
        Ok(StageSpec {
            argv,
            env,
            cd,
            stderr,
        })
    }
}

#[cfg(any(test, feature = "codec"))]
mod codec {
    use std::collections::HashMap;

    use eetf::{Map, Term};

    use super::StageSpec;
    use crate::request::SpawnSpec;
    use crate::term::atom;

    impl StageSpec {
        /// The stage as a map term.
        pub fn to_term(&self) -> Term {
            // A stage is a spec's program keys.
            let spec = SpawnSpec {
                argv: self.argv.clone(),
                env: self.env.clone(),
                cd: self.cd.clone(),
                stderr: self.stderr.clone(),
                ..SpawnSpec::default()
            };
            let Term::Map(full) = spec.to_term() else {
                unreachable!("a spec is a map")
            };
            let keep = ["argv", "env", "cd", "stderr"].map(atom);
            let map: HashMap<Term, Term> = full
                .map
                .into_iter()
                .filter(|(k, _)| keep.contains(k))
                .collect();
            Term::Map(Map::from(map))
        }
    }
}
