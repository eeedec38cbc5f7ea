//! The port (stdin/stdout, `{packet, 4}`): `hello` out at start, and stdin watched for EOF,
//! which means the VM is gone. Requests do not come this way any more (they use the fd
//! socket and the program channels), so every frame that arrives is answered with an
//! error and otherwise ignored; whatever the bytes, the helper program carries on.

use nix::errno::Errno;
use sluice_protocol::{encode_frame, FrameReader, Reply, Request};

use crate::sys;

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
pub struct Port {
    reader: FrameReader,
    buf: Vec<u8>,
    /// Set after a write failed: the BEAM is unreachable, nothing more is written.
    pub out_broken: bool,
}

impl Port {
    pub fn new() -> Port {
        Port {
            reader: FrameReader::new(),
            buf: vec![0; 64 * 1024],
            out_broken: false,
        }
    }

    /// One `read(0)` after poll said stdin is readable (so it does not block; stdin stays
    /// blocking because the port's fds may share a file description with stdout).
    pub fn read_stdin(&mut self) -> Input {
        match sys::read_fd(0, &mut self.buf) {
            Ok(0) => Input::Eof,
            Ok(n) => {
                self.reader.push(&self.buf[..n]);
                Input::Data
            }
            Err(Errno::EAGAIN) => Input::Nothing,
            Err(e) => Input::Error(e),
        }
    }

    /// Answers every complete frame read so far with `{:error, nil, message}`.
    pub fn answer_frames(&mut self) {
        while let Some(frame) = self.reader.next_frame() {
            let message = match frame {
                Err(e) => e.to_string(),
                Ok(payload) => match Request::decode(&payload) {
                    Ok(_) => "requests go over the fd socket".to_string(),
                    Err(e) => e.message,
                },
            };
            if !self.send(&Reply::Error { id: None, message }) {
                return;
            }
        }
    }

    /// Writes one reply frame. Returns false when stdout is broken.
    pub fn send(&mut self, reply: &Reply) -> bool {
        if self.out_broken {
            return false;
        }
        if let Err(e) = sys::write_all(1, &encode_frame(&reply.encode())) {
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
