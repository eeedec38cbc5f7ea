//! The private fd socket: a `SOCK_SEQPACKET` listener in a 0700 temporary directory and
//! the one accepted connection from the BEAM, on which spawn requests then arrive.

use std::ffi::OsString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    accept4, bind, getsockopt, listen, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    UnixAddr,
};

use crate::sys;

/// The listening socket and the directory holding it.
pub struct Listener {
    pub dir: PathBuf,
    pub path: PathBuf,
    fd: OwnedFd,
}

/// What ended the wait for the BEAM's connection without a connection.
#[derive(Debug)]
pub enum AcceptError {
    /// Nobody (acceptable) connected in time.
    Timeout,
    /// The BEAM closed our stdin: it is gone.
    StdinClosed,
    Sys(Errno),
}

impl Listener {
    /// `mkdtemp $TMPDIR/sluice.XXXXXX` (0700) and a listener `sock` in it. Falls back to
    /// `/tmp` when `$TMPDIR` is unusable (e.g. too long for `sun_path`).
    pub fn create() -> Result<Listener, String> {
        let mut bases = Vec::new();
        if let Some(t) = std::env::var_os("TMPDIR").filter(|t| !t.is_empty()) {
            bases.push(PathBuf::from(t));
        }
        bases.push(PathBuf::from("/tmp"));
        let mut last = String::new();
        for base in bases {
            match Self::create_in(&base) {
                Ok(l) => return Ok(l),
                Err(e) => last = format!("{}: {e}", base.display()),
            }
        }
        Err(last)
    }

    fn create_in(base: &Path) -> Result<Listener, Errno> {
        let dir = nix::unistd::mkdtemp(&base.join("sluice.XXXXXX"))?;
        let path = dir.join("sock");
        let result = (|| {
            let fd = socket(
                AddressFamily::Unix,
                SockType::SeqPacket,
                SockFlag::SOCK_CLOEXEC,
                None,
            )?;
            bind(fd.as_raw_fd(), &UnixAddr::new(&path)?)?;
            listen(&fd, Backlog::new(8)?)?;
            Ok(fd)
        })();
        match result {
            Ok(fd) => Ok(Listener { dir, path, fd }),
            Err(e) => {
                let _ = fs::remove_file(&path);
                let _ = fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// The socket path as bytes, for `hello`.
    pub fn path_bytes(&self) -> Vec<u8> {
        OsString::from(self.path.clone()).into_vec()
    }

    /// Accepts the first connection whose peer has our euid and `beam_pid`; others are
    /// closed. Gives up after `timeout` or when stdin reaches EOF.
    pub fn accept_beam(&self, beam_pid: i32, timeout: Duration) -> Result<OwnedFd, AcceptError> {
        let end = Instant::now() + timeout;
        let euid = nix::unistd::geteuid().as_raw();
        let mut watch_stdin = true;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AcceptError::Timeout);
            }
            let mut fds = [
                sys::pollfd(self.fd.as_raw_fd(), libc::POLLIN),
                // A negative fd is skipped by poll.
                sys::pollfd(if watch_stdin { 0 } else { -1 }, libc::POLLIN),
            ];
            sys::poll(&mut fds, left.as_millis().min(i32::MAX as u128) as i32)
                .map_err(AcceptError::Sys)?;
            if fds[1].revents != 0 {
                // Frames may already be queued; they wait for the event loop. Only a
                // hang-up without data means the BEAM is gone.
                if fds[1].revents & libc::POLLIN == 0 {
                    return Err(AcceptError::StdinClosed);
                }
                watch_stdin = false;
            }
            if fds[0].revents & libc::POLLIN == 0 {
                continue;
            }
            let conn = match accept4(self.fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                // SAFETY: accept4 just returned this fd and nothing else owns it.
                Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
                Err(Errno::EINTR | Errno::EAGAIN | Errno::ECONNABORTED) => continue,
                Err(e) => return Err(AcceptError::Sys(e)),
            };
            match getsockopt(&conn, sockopt::PeerCredentials) {
                Ok(c) if c.uid() == euid && c.pid() == beam_pid => return Ok(conn),
                Ok(c) => eprintln!(
                    "sluice_helper: refused a connection from pid {} uid {}",
                    c.pid(),
                    c.uid()
                ),
                Err(e) => eprintln!("sluice_helper: SO_PEERCRED failed: {e}"),
            }
        }
    }

    /// Unlinks the socket and removes the directory; the listener fd closes on drop.
    pub fn remove(self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_dir(&self.dir);
    }
}
