//! The fds of a kernel pipeline's stages: a pipe between each stage and the next (made
//! here, so no byte passes through the VM), and each later stage's own stderr. The first
//! stage's stdin and the last stage's stdout are the spawn's stdio (`stdio.rs`).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use sluice_protocol::{SpawnSpec, Stage, StderrMode};

use super::credentials::Applied;
use super::redirect;
use super::stdio::{self, Stdio};
use super::SpawnFailure;

/// The fds each stage puts on 0 to 2 (-1 for 2: the helper program's stderr).
pub struct Links {
    /// Every fd opened here, kept open until the clones are done.
    _owned: Vec<OwnedFd>,
    per_stage: Vec<[RawFd; 5]>,
}

impl Links {
    /// Opens the pipes between the stages and the later stages' stderr files.
    pub fn open(spec: &SpawnSpec, stdio: &Stdio, who: &Applied) -> Result<Links, SpawnFailure> {
        if spec.pty.is_some() || !spec.use_stdio {
            let what = "a pipeline needs use_stdio and no pseudo-terminal";
            return Err(SpawnFailure::before_fork(Errno::EINVAL, Stage::Spec, what));
        }
        let ends = stdio.child_fds();
        let count = spec.pipeline.len() + 1;
        let mut owned = Vec::new();
        let mut per_stage = Vec::with_capacity(count);
        let mut input = ends[0];
        for i in 0..count {
            let mut next_input = -1;
            let output = if i + 1 == count {
                ends[1]
            } else {
                // The next stage reads what this one writes.
                let (r, w) = stdio::child_pipe(spec.pipe_size)?;
                next_input = r.as_raw_fd();
                let output = w.as_raw_fd();
                owned.extend([r, w]);
                output
            };
            per_stage.push([input, output, -1, -1, -1]);
            input = next_input;
        }
        // The first stage's stderr is the spec's; `stdout` is its own stdout, the link.
        per_stage[0][2] = match spec.stderr {
            StderrMode::Stdout => per_stage[0][1],
            _ => ends[2],
        };
        let shared_pipe = stdio.stderr_pipe(spec);
        for (i, stage) in spec.pipeline.iter().enumerate() {
            let fds = &mut per_stage[i + 1];
            fds[2] = match &stage.stderr {
                StderrMode::Stdout => fds[1],
                StderrMode::Pipe => shared_pipe.unwrap_or(-1),
                StderrMode::Inherit => match redirect::open_console(Stage::Stderr, who)? {
                    None => -1,
                    Some(fd) => {
                        let fd = stdio::above_targets(fd)?;
                        let raw = fd.as_raw_fd();
                        owned.push(fd);
                        raw
                    }
                },
                StderrMode::Null => {
                    let fd = stdio::above_targets(stdio::dev_null(true)?)?;
                    let raw = fd.as_raw_fd();
                    owned.push(fd);
                    raw
                }
                StderrMode::File(f) => {
                    let fd = redirect::open_output(f, stage.cd.as_deref(), Stage::Stderr, who)?;
                    let fd = stdio::above_targets(fd)?;
                    let raw = fd.as_raw_fd();
                    owned.push(fd);
                    raw
                }
            };
        }
        Ok(Links {
            _owned: owned,
            per_stage,
        })
    }

    /// What stage `i` puts on its fds 0 to 4.
    pub fn stage_fds(&self, i: usize) -> [RawFd; 5] {
        self.per_stage[i]
    }
}
