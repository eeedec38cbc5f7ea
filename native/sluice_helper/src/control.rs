//! The port side: request frames from stdin, reply frames to stdout.

use nix::errno::Errno;
use sluice_protocol::frame::{FrameReader, Reply};

/// `poll(2)`; EINTR counts as "nothing ready".
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<i32, Errno> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match Errno::result(n) {
        Ok(n) => Ok(n),
        Err(Errno::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}

/// What one read from stdin produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Data,
    Eof,
    /// Nothing to read after all (spurious wake-up).
    Nothing,
    Error(Errno),
}

/// Frames in from stdin, frames out to stdout.
pub struct Control {
    pub reader: FrameReader,
    buf: Vec<u8>,
    /// Set after a write failed: the BEAM is unreachable, nothing more is written.
    pub out_broken: bool,
}

impl Control {
    pub fn new() -> Control {
        Control {
            reader: FrameReader::new(),
            buf: vec![0; 64 * 1024],
            out_broken: false,
        }
    }

    /// One `read(0)` after poll said stdin is readable (so it does not block; stdin stays
    /// blocking because the port's fds may share a file description with stdout).
    pub fn read_stdin(&mut self) -> Input {
        loop {
            // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
            let n = unsafe { libc::read(0, self.buf.as_mut_ptr().cast(), self.buf.len()) };
            match Errno::result(n) {
                Ok(0) => return Input::Eof,
                Ok(n) => {
                    self.reader.push(&self.buf[..n as usize]);
                    return Input::Data;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Input::Nothing,
                Err(e) => return Input::Error(e),
            }
        }
    }

    /// Writes one reply frame (length + payload). Returns false when stdout is broken.
    pub fn send(&mut self, reply: &Reply) -> bool {
        if self.out_broken {
            return false;
        }
        let payload = reply.encode();
        let mut frame = Vec::with_capacity(payload.len() + 4);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        if let Err(e) = write_all(1, &frame) {
            // EPIPE is the VM going away: the shutdown that follows is the normal path.
            if e != Errno::EPIPE {
                eprintln!("sluice_helper: writing to the BEAM failed: {e}");
            }
            self.out_broken = true;
            return false;
        }
        true
    }
}

/// `write` until everything is out; waits for POLLOUT on EAGAIN in case the fd is
/// non-blocking.
pub fn write_all(fd: i32, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        // SAFETY: `data` is a valid readable buffer of `data.len()` bytes.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        match Errno::result(n) {
            Ok(n) => data = &data[n as usize..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut p = [libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                }];
                poll(&mut p, 1000)?;
                if p[0].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                    return Err(Errno::EPIPE);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
