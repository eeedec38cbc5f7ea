//! Files as a program's stdin, stdout or stderr, opened by the helper program before the
//! clone (so the child only `dup2`s, and no byte of them passes through the VM). A
//! relative path resolves against the program's working directory. The files are opened
//! with the helper program's credentials, not those of a `user:` the program runs as.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use sluice_protocol::{FileOutput, Stage};

use super::SpawnFailure;

/// `path`, or `cd` joined with it when it is relative.
pub fn resolve(path: &[u8], cd: Option<&[u8]>) -> PathBuf {
    let path = Path::new(std::ffi::OsStr::from_bytes(path));
    match cd {
        Some(cd) if path.is_relative() => Path::new(std::ffi::OsStr::from_bytes(cd)).join(path),
        _ => path.to_path_buf(),
    }
}

fn failure(e: std::io::Error, stage: Stage, path: &Path) -> SpawnFailure {
    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    SpawnFailure::before_fork(errno, stage, &format!("cannot open {}", path.display()))
}

/// Opens the file a program reads as stdin.
pub fn open_input(path: &[u8], cd: Option<&[u8]>) -> Result<OwnedFd, SpawnFailure> {
    let path = resolve(path, cd);
    // std opens with O_CLOEXEC: only the child's dup2 passes it on.
    let file = OpenOptions::new()
        .read(true)
        .open(&path)
        .map_err(|e| failure(e, Stage::Stdin, &path))?;
    Ok(file.into())
}

/// Opens (creating with `mode`, truncating unless `append`) a file a program writes to.
pub fn open_output(
    file: &FileOutput,
    cd: Option<&[u8]>,
    stage: Stage,
) -> Result<OwnedFd, SpawnFailure> {
    let path = resolve(&file.path, cd);
    let mut options = OpenOptions::new();
    options.create(true).mode(file.mode);
    if file.append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    let opened = options.open(&path).map_err(|e| failure(e, stage, &path))?;
    Ok(opened.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn relative_paths_resolve_against_cd() {
        assert_eq!(resolve(b"out", Some(b"/tmp")), PathBuf::from("/tmp/out"));
        assert_eq!(resolve(b"/a/out", Some(b"/tmp")), PathBuf::from("/a/out"));
        assert_eq!(resolve(b"out", None), PathBuf::from("out"));
    }

    #[test]
    fn truncates_or_appends_with_the_mode() {
        let dir = std::env::temp_dir().join(format!("sluice-redirect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cd = dir.as_os_str().as_bytes();
        let out = |append| FileOutput {
            path: b"f".to_vec(),
            append,
            mode: 0o600,
        };
        for (append, text) in [(false, "one"), (true, "two"), (false, "three")] {
            let fd = open_output(&out(append), Some(cd), Stage::Stdout).unwrap();
            std::fs::File::from(fd).write_all(text.as_bytes()).unwrap();
        }
        let mut got = String::new();
        let fd = open_input(b"f", Some(cd)).unwrap();
        std::fs::File::from(fd).read_to_string(&mut got).unwrap();
        assert_eq!(got, "three");
        let mode = std::fs::metadata(dir.join("f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let missing = open_input(b"nope/x", Some(cd)).err().unwrap();
        assert_eq!(
            (missing.errno, missing.stage),
            (Errno::ENOENT, Stage::Stdin)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
