//! What to execute, prepared in the parent: argv, the environment, the PATH candidates
//! (searched like `execvp`, with PATH from the program's environment), the directory, as
//! C strings, so the child does not allocate; and the text of a failure.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::ptr;
use std::sync::OnceLock;

use nix::errno::Errno;
use sluice_protocol::{SpawnSpec, Stage};

use super::SpawnFailure;
use crate::errors::{describe, errno_name};

/// The PATH used when the program's environment has none.
pub const DEFAULT_PATH: &[u8] = b"/usr/local/bin:/usr/bin:/bin";

/// A spec turned into C strings and the pointer arrays `execve` takes.
pub struct Command {
    /// argv[0], for failure texts.
    pub program: String,
    pub cd: Option<CString>,
    /// Kept alive for the pointers below.
    _strings: [Vec<CString>; 3],
    /// NULL-terminated argv and envp.
    pub argv: Vec<*const libc::c_char>,
    pub envp: Vec<*const libc::c_char>,
    /// The files `execve` is tried on, in order.
    pub candidates: Vec<*const libc::c_char>,
}

/// The helper program's own environment as `NAME=value` entries: what the VM had when it
/// started the helper program. Programs get it when the spawn spec says `env: inherit`.
fn inherited_env() -> &'static [Vec<u8>] {
    static ENV: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    ENV.get_or_init(|| {
        std::env::vars_os()
            .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
            .collect()
    })
}

/// The files `execve` is tried on, in order: `argv0` itself when it has a slash, else each
/// PATH entry (from the program's environment) joined with it, an empty entry meaning the
/// current directory, like `execvp`.
pub fn path_candidates(argv0: &[u8], env: &[Vec<u8>]) -> Vec<Vec<u8>> {
    if argv0.is_empty() {
        return Vec::new();
    }
    if argv0.contains(&b'/') {
        return vec![argv0.to_vec()];
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(|b| *b == b':')
        .map(|dir| {
            if dir.is_empty() {
                argv0.to_vec()
            } else {
                let mut p = dir.to_vec();
                if !p.ends_with(b"/") {
                    p.push(b'/');
                }
                p.extend_from_slice(argv0);
                p
            }
        })
        .collect()
}

/// The environment with the `login` entries in place of the variables they name.
fn with_login_env(env: &[Vec<u8>], login: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let name = |e: &[u8]| e.split(|b| *b == b'=').next().map(<[u8]>::to_vec);
    let replaced: Vec<_> = login.iter().filter_map(|e| name(e)).collect();
    env.iter()
        .filter(|e| !name(e).is_some_and(|n| replaced.contains(&n)))
        .chain(login)
        .cloned()
        .collect()
}

fn cstrings(items: &[Vec<u8>]) -> Option<Vec<CString>> {
    items.iter().map(|i| CString::new(i.clone()).ok()).collect()
}

fn pointers(items: &[CString]) -> impl Iterator<Item = *const libc::c_char> + '_ {
    items.iter().map(|c| c.as_ptr())
}

impl Command {
    /// Prepares `spec`; the decoder already refused NUL bytes, this keeps it safe anyway.
    /// `login_env` (`NAME=value`) replaces those variables of the environment.
    pub fn prepare(spec: &SpawnSpec, login_env: &[Vec<u8>]) -> Result<Command, SpawnFailure> {
        let bad = |stage, what: &str| SpawnFailure::before_fork(Errno::EINVAL, stage, what);
        let Some(argv0) = spec.argv.first() else {
            return Err(bad(Stage::Argv, "argv is empty"));
        };
        let mut argv = cstrings(&spec.argv).ok_or_else(|| bad(Stage::Argv, "argv holds a NUL"))?;
        // The program sees arg0; the file executed is still found from argv[0].
        if let Some(arg0) = &spec.control.arg0 {
            argv[0] =
                CString::new(arg0.clone()).map_err(|_| bad(Stage::Argv, "arg0 holds a NUL"))?;
        }
        let env_list = spec.env.as_deref().unwrap_or_else(|| inherited_env());
        let env = with_login_env(env_list, login_env);
        // Found on the PATH the program gets (a login's, with `user:`).
        let candidates = cstrings(&path_candidates(argv0, &env))
            .ok_or_else(|| bad(Stage::Argv, "argv holds a NUL"))?;
        let env = cstrings(&env).ok_or_else(|| bad(Stage::Env, "env holds a NUL"))?;
        let cd = match &spec.cd {
            Some(c) => {
                Some(CString::new(c.clone()).map_err(|_| bad(Stage::Chdir, "cd holds a NUL"))?)
            }
            None => None,
        };
        let nul = std::iter::once(ptr::null());
        Ok(Command {
            program: String::from_utf8_lossy(argv0).into_owned(),
            cd,
            argv: pointers(&argv).chain(nul.clone()).collect(),
            envp: pointers(&env).chain(nul).collect(),
            candidates: pointers(&candidates).collect(),
            // Moving the Vecs does not move their heap buffers: the pointers stay valid.
            _strings: [argv, env, candidates],
        })
    }

    /// The detail of a failure the child reported.
    /// The text of a child killed because it had not exec'ed by `deadline`.
    pub fn timeout_text(&self, deadline: std::time::Duration) -> String {
        format!(
            "{:?} could not start within {} ms: its process was stopped (SIGSTOP) or held in \
             the kernel (a lease on the executable) before its exec, and was killed; the \
             helper program never waits for a program to start ({})",
            self.program,
            deadline.as_millis(),
            errno_name(Errno::ETIMEDOUT)
        )
    }

    pub fn failure_text(&self, stage: Stage, errno: Errno) -> String {
        let program = &self.program;
        let what = match stage {
            Stage::Chdir => format!(
                "chdir to {:?} for {program:?} failed",
                self.cd
                    .as_deref()
                    .map(|c| c.to_string_lossy())
                    .unwrap_or_default()
            ),
            Stage::Exec => format!("cannot execute {program:?}"),
            Stage::Cgroup => format!("cannot join cgroup for {program:?}"),
            Stage::Pty => format!("cannot make the terminal {program:?}'s controlling terminal"),
            Stage::Limits => format!(
                "the rlimits of {program:?} could not be set, or its fd limit leaves no fd \
                 for its stdio"
            ),
            _ => format!("child set-up for {program:?} failed"),
        };
        format!("{what}: {} ({})", describe(errno), errno_name(errno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn candidates() {
        assert_eq!(path_candidates(b"/bin/ls", &[]), vec![v("/bin/ls")]);
        assert_eq!(path_candidates(b"./x", &[]), vec![v("./x")]);
        assert!(path_candidates(b"", &[]).is_empty());
        assert_eq!(
            path_candidates(b"ls", &[]),
            vec![v("/usr/local/bin/ls"), v("/usr/bin/ls"), v("/bin/ls")]
        );
        assert_eq!(
            path_candidates(b"ls", &[v("HOME=/"), v("PATH=/a/:/b::/c")]),
            vec![v("/a/ls"), v("/b/ls"), v("ls"), v("/c/ls")]
        );
        assert_eq!(path_candidates(b"ls", &[v("PATH=")]), vec![v("ls")]);
    }

    #[test]
    fn login_variables_replace_the_environment_s() {
        let env = [v("HOME=/x"), v("PATH=/bin"), v("USER=me")];
        let got = with_login_env(&env, &[v("HOME=/home/u"), v("USER=u")]);
        assert_eq!(got, vec![v("PATH=/bin"), v("HOME=/home/u"), v("USER=u")]);
        assert_eq!(with_login_env(&env, &[]), env.to_vec());
    }

    #[test]
    fn prepares_null_terminated_arrays() {
        let spec = SpawnSpec {
            argv: vec![v("ls"), v("-l")],
            env: Some(vec![v("PATH=/x")]),
            ..SpawnSpec::default()
        };
        let c = Command::prepare(&spec, &[]).unwrap();
        assert_eq!((c.argv.len(), c.envp.len(), c.candidates.len()), (3, 2, 1));
        assert!(c.argv[2].is_null() && c.envp[1].is_null());
        let empty = SpawnSpec::default();
        assert_eq!(
            Command::prepare(&empty, &[]).err().unwrap().stage,
            Stage::Argv
        );
        let text = c.failure_text(Stage::Exec, Errno::ENOENT);
        assert!(
            text.contains("\"ls\"") && text.ends_with("(ENOENT)"),
            "{text}"
        );
    }
}
