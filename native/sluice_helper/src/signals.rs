//! The signals the helper program handles, read from a signalfd: SIGCHLD (something to
//! reap) and SIGTERM, SIGINT, SIGHUP (shut down). They are blocked, so they only ever
//! arrive here.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::sys;

pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the handled signals and opens the signalfd.
    pub fn setup() -> Result<Signals, String> {
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
        ] {
            mask.add(s);
        }
        mask.thread_block()
            .map_err(|e| format!("blocking signals: {e}"))?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("signalfd: {e}"))?;
        Ok(Signals { fd })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }

    /// Reads every pending signal; returns whether one asked for a shutdown.
    pub fn drain(&mut self) -> bool {
        let mut terminate = false;
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => {
                    let sig = info.ssi_signo as i32;
                    terminate |= matches!(sig, libc::SIGTERM | libc::SIGINT | libc::SIGHUP);
                }
                Ok(None) => return terminate,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("sluice_helper: signalfd: {e}");
                    return terminate;
                }
            }
        }
    }

    /// Waits up to `ms` (at least 1) for a signal, then drains them.
    pub fn wait(&mut self, ms: i32) {
        let mut fds = [sys::pollfd(self.raw_fd(), libc::POLLIN)];
        let _ = sys::poll(&mut fds, ms.max(1));
        self.drain();
    }
}
