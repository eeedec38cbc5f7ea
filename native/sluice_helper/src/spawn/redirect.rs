//! Files as a program's stdin, stdout or stderr, opened by the helper program before the
//! clone (so the child only `dup2`s, and no byte of them passes through the VM). A
//! relative path resolves against the program's working directory.
//!
//! The helper program often runs as root while the program does not, and a program can
//! replace its own files with symlinks before the next spawn. So a file is opened with
//! the rights of whom the program runs as (`user:`'s fsuid, `group:`'s fsgid, the user's
//! groups), never through a `/proc` magic link (`/dev/stdout`, `/proc/self/fd/N`: they
//! would name the helper program's own fds, its control port among them), and never on
//! `/proc` at all (`/proc/self/mem` is the helper program's memory). The open never
//! waits: `O_NONBLOCK` (a FIFO without a reader is ENXIO rather than a helper program
//! frozen in `open`), cleared again before the program gets the fd.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use sluice_protocol::{FileOutput, Stage};

use super::credentials::Applied;
use super::SpawnFailure;
use crate::sys::{self, FsIdentity};

/// `statfs.f_type` of procfs.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// `path`, or `cd` joined with it when it is relative.
pub fn resolve(path: &[u8], cd: Option<&[u8]>) -> PathBuf {
    let path = Path::new(std::ffi::OsStr::from_bytes(path));
    match cd {
        Some(cd) if path.is_relative() => Path::new(std::ffi::OsStr::from_bytes(cd)).join(path),
        _ => path.to_path_buf(),
    }
}

fn failure(errno: Errno, stage: Stage, path: &Path) -> SpawnFailure {
    let why = match errno {
        Errno::ELOOP => {
            "; a redirect may not pass through /proc's magic links (/dev/stdout, \
                         /dev/fd/N, /proc/self/fd/N): use stdout: :console for the VM's console"
        }
        Errno::ENXIO => "; a FIFO with no reader (the helper program never waits for one)",
        _ => "",
    };
    let what = format!("cannot open {}{why}", path.display());
    SpawnFailure::before_fork(errno, stage, &what)
}

/// How a path is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Through {
    /// A caller's path: never through a magic link.
    NoMagicLinks,
    /// The helper program's own `/proc/self/fd/N`: through that one magic link, which is
    /// the point (the console).
    OwnFd,
}

/// Opens `path` as `who` runs, without following magic links (unless `through` says it is
/// the helper program's own fd) or waiting, and refuses a file on /proc.
fn open(
    path: &[u8],
    cd: Option<&[u8]>,
    flags: libc::c_int,
    mode: u32,
    stage: Stage,
    who: &Applied,
    through: Through,
) -> Result<OwnedFd, SpawnFailure> {
    let path = resolve(path, cd);
    let fail = |e| match through {
        Through::NoMagicLinks => failure(e, stage, &path),
        Through::OwnFd => console_failure(e, stage),
    };
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| fail(Errno::EINVAL))?;
    let flags = flags | libc::O_NONBLOCK | libc::O_NOCTTY;
    let fd = {
        let _as_user = match (who.uid, who.gid) {
            (None, None) => None,
            (uid, gid) => {
                let identity = FsIdentity::assume(uid, gid, who.groups.as_deref());
                // Unprivileged, the helper program cannot be the user: neither can the
                // child, whose credentials step would fail the same way.
                let what = format!(
                    "cannot take on the program's user to open {}",
                    path.display()
                );
                Some(
                    identity
                        .map_err(|e| SpawnFailure::before_fork(e, Stage::Credentials, &what))?,
                )
            }
        };
        match through {
            Through::NoMagicLinks => sys::open_no_magic_links(&c_path, flags, mode),
            Through::OwnFd => sys::open_own(&c_path, flags),
        }
        .map_err(fail)?
    };
    if sys::filesystem_type(fd.as_fd()).map_err(fail)? == PROC_SUPER_MAGIC {
        let what = format!(
            "cannot open {}: a file on /proc is refused (it could be the helper program's \
             own memory or fds)",
            path.display()
        );
        return Err(SpawnFailure::before_fork(Errno::EACCES, stage, &what));
    }
    sys::set_blocking(fd.as_fd()).map_err(fail)?;
    Ok(fd)
}

/// Opens the file a program reads as stdin. A FIFO opens at once: with no writer yet, the
/// program reads end of file.
pub fn open_input(path: &[u8], cd: Option<&[u8]>, who: &Applied) -> Result<OwnedFd, SpawnFailure> {
    open(
        path,
        cd,
        libc::O_RDONLY,
        0,
        Stage::Stdin,
        who,
        Through::NoMagicLinks,
    )
}

/// Opens (creating with `mode`, truncating unless `append`) a file a program writes to.
pub fn open_output(
    file: &FileOutput,
    cd: Option<&[u8]>,
    stage: Stage,
    who: &Applied,
) -> Result<OwnedFd, SpawnFailure> {
    let how = match file.append {
        true => libc::O_APPEND,
        false => libc::O_TRUNC,
    };
    let flags = libc::O_WRONLY | libc::O_CREAT | how;
    open(
        &file.path,
        cd,
        flags,
        file.mode,
        stage,
        who,
        Through::NoMagicLinks,
    )
}

fn console_failure(errno: Errno, stage: Stage) -> SpawnFailure {
    let (name, choices) = match stage {
        Stage::Stderr => ("stderr", ":null, a file, :stdout or :capture"),
        _ => ("stdout", ":null, a file, :capture or :consume"),
    };
    let what = format!(
        "{name}: :console with user: or group: is the VM's stderr opened afresh with the \
         program's user's rights, and that user may not open it (a terminal or file of the \
         node's user); use {choices}"
    );
    SpawnFailure::before_fork(errno, stage, &what)
}

/// The console (the helper program's stderr, the VM's) for a program's `stage` (stdout or
/// stderr) that runs as `who`; `None` when it runs as the helper program does, which then
/// shares the helper program's own open file, as always.
///
/// A program of another user (`user:` or `group:`) gets nothing its user could not open
/// itself: a shared open file description would let it `ftruncate` a root-only log,
/// read what the operator types on a root terminal, or push input into it (TIOCSTI).
/// * a regular file or a device (a terminal): opened afresh, as `who`, through
///   `/proc/self/fd/2` (the helper program's own fd: the one magic link allowed), write
///   only and `O_APPEND`, without becoming a controlling terminal; EACCES when `who` may
///   not open it;
/// * a pipe: shared, as before: a pipe's write end can only write (and the program could
///   not reopen it otherwise: /proc would give it the same pipe);
/// * a socket (journald's stream under systemd, where most nodes run): shared too, as a
///   socket cannot be reopened and refusing it would refuse `:console` (the default
///   `stderr:` of `Sluice.Process`) on those nodes. What the program can do with it is
///   write, or `shutdown()` the VM's log stream: a loss of logs, no access (journald
///   sends nothing to read).
pub fn open_console(stage: Stage, who: &Applied) -> Result<Option<OwnedFd>, SpawnFailure> {
    if who.uid.is_none() && who.gid.is_none() {
        return Ok(None);
    }
    let stderr = std::io::stderr();
    let kind = nix::sys::stat::fstat(stderr.as_fd())
        .map_err(|e| console_failure(e, stage))?
        .st_mode
        & libc::S_IFMT;
    match kind {
        libc::S_IFIFO | libc::S_IFSOCK => sys::dup_at_least(stderr.as_fd(), 0)
            .map(Some)
            .map_err(|e| console_failure(e, stage)),
        _ => {
            let flags = libc::O_WRONLY | libc::O_APPEND;
            let fd = open(
                b"/proc/self/fd/2",
                None,
                flags,
                0,
                stage,
                who,
                Through::OwnFd,
            )?;
            Ok(Some(fd))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
        let me = Applied::default();
        let out = |append| FileOutput {
            path: b"f".to_vec(),
            append,
            mode: 0o600,
        };
        for (append, text) in [(false, "one"), (true, "two"), (false, "three")] {
            let fd = open_output(&out(append), Some(cd), Stage::Stdout, &me).unwrap();
            std::fs::File::from(fd).write_all(text.as_bytes()).unwrap();
        }
        let mut got = String::new();
        let fd = open_input(b"f", Some(cd), &me).unwrap();
        std::fs::File::from(fd).read_to_string(&mut got).unwrap();
        assert_eq!(got, "three");
        let mode = std::fs::metadata(dir.join("f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let missing = open_input(b"nope/x", Some(cd), &me).err().unwrap();
        assert_eq!(
            (missing.errno, missing.stage),
            (Errno::ENOENT, Stage::Stdin)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn stdout_to(path: &str) -> FileOutput {
        FileOutput {
            path: path.as_bytes().to_vec(),
            append: true,
            mode: 0o600,
        }
    }

    fn refused(path: &str, who: &Applied) -> Errno {
        open_output(&stdout_to(path), None, Stage::Stdout, who)
            .expect_err("refused")
            .errno
    }

    #[test]
    fn never_the_helper_programs_own_fds_or_memory() {
        let me = Applied::default();
        for path in [
            "/dev/stdout",
            "/dev/fd/1",
            "/proc/self/fd/1",
            "/proc/thread-self/fd/0",
        ] {
            assert_eq!(refused(path, &me), Errno::ELOOP, "{path}");
        }
        let pid = std::process::id();
        for path in [
            "/proc/self/mem",
            &format!("/proc/{pid}/mem"),
            "/proc/self/environ",
        ] {
            assert_eq!(refused(path, &me), Errno::EACCES, "{path}");
        }
        // Nor through a symlink someone planted.
        let dir = std::env::temp_dir().join(format!("sluice-redirect-link-{pid}"));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("log");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/proc/self/mem", &link).unwrap();
        assert_eq!(refused(link.to_str().unwrap(), &me), Errno::EACCES);
        let f = open_input(link.as_os_str().as_bytes(), None, &me)
            .err()
            .unwrap();
        assert_eq!((f.errno, f.stage), (Errno::EACCES, Stage::Stdin));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fifo_never_waits() {
        let dir = std::env::temp_dir().join(format!("sluice-redirect-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let me = Applied::default();
        // No reader: refused at once, not a helper program blocked in open().
        assert_eq!(refused(fifo.to_str().unwrap(), &me), Errno::ENXIO);
        // A reader opens at once; the writer then gets a blocking fd.
        let reader = open_input(fifo.as_os_str().as_bytes(), None, &me).unwrap();
        let writer = open_output(&stdout_to(fifo.to_str().unwrap()), None, Stage::Stdout, &me);
        let writer = std::fs::File::from(writer.unwrap());
        let flags = nix::fcntl::fcntl(&writer, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        (&writer).write_all(b"through").unwrap();
        drop(writer);
        let mut got = String::new();
        std::fs::File::from(reader)
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "through");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn opened_with_the_users_rights() {
        if nix::unistd::geteuid().as_raw() != 0 {
            return; // switching the fsuid needs root
        }
        let dir = std::env::temp_dir().join(format!("sluice-redirect-user-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "root only").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let nobody = Applied {
            uid: Some(65534),
            gid: Some(65534),
            groups: Some(vec![65534]),
            ..Applied::default()
        };
        assert_eq!(refused(secret.to_str().unwrap(), &nobody), Errno::EACCES);
        let f = open_input(secret.as_os_str().as_bytes(), None, &nobody)
            .err()
            .unwrap();
        assert_eq!(f.errno, Errno::EACCES);
        // A file it creates is its own; the helper's identity is back afterwards.
        let mine = dir.join("mine");
        drop(
            open_output(
                &stdout_to(mine.to_str().unwrap()),
                None,
                Stage::Stdout,
                &nobody,
            )
            .unwrap(),
        );
        let meta = std::fs::metadata(&mine).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        assert!(open_input(secret.as_os_str().as_bytes(), None, &Applied::default()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
