//! The transport of requests and replies, above `seqpacket`: spawn messages from the fd
//! socket (the channel fd, and the request inline or in a memfd), and the replies and
//! requests on each program's channel. What the terms mean is `programs`' business.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use sluice_protocol::{DecodeError, Reply, Request, MAX_FRAME_LEN, MAX_INLINE_LEN, MEMFD_PAYLOAD};

use crate::errors::errno_name;
use crate::seqpacket::{self, Message, Recv};

/// Channel requests are a few dozen bytes; anything over this is refused.
const MAX_CHANNEL_REQUEST: usize = 4096;

/// A spawn message, as far as the transport goes.
#[derive(Debug)]
pub enum SpawnMessage {
    /// A channel to answer on, and the request's ETF bytes or why they could not be had.
    Request {
        channel: OwnedFd,
        etf: Result<Vec<u8>, String>,
    },
    /// A message that cannot be answered (no channel fd): its fds are closed.
    Dropped(String),
}

/// What the fd socket produced.
#[derive(Debug)]
pub enum SocketEvent {
    Message(SpawnMessage),
    /// Nothing more queued.
    WouldBlock,
    /// The BEAM closed its end: it is gone.
    Eof,
    Error(Errno),
}

/// Fds kept free for receiving: a spawn message carries its channel (and maybe a memfd),
/// and an fd the kernel cannot install is dropped with the message, which could then not
/// even be answered. Released while a burst of messages is received, so a helper at its
/// fd limit still gets the channel and can answer EMFILE on it; refilled afterwards.
struct FdReserve {
    base: Option<OwnedFd>,
    spare: Vec<OwnedFd>,
}

const RESERVED_FDS: usize = 2;

impl FdReserve {
    fn new() -> FdReserve {
        let base = File::open("/dev/null").ok().map(OwnedFd::from);
        let mut r = FdReserve {
            base,
            spare: Vec::new(),
        };
        r.refill();
        r
    }

    fn release(&mut self) {
        self.spare.clear();
    }

    fn refill(&mut self) {
        let Some(base) = &self.base else { return };
        while self.spare.len() < RESERVED_FDS {
            match base.try_clone() {
                Ok(fd) => self.spare.push(fd),
                Err(_) => return,
            }
        }
    }
}

/// The fd socket, BEAM → helper program: one message per spawn.
pub struct SpawnSocket {
    sock: OwnedFd,
    buf: Vec<u8>,
    reserve: FdReserve,
}

impl SpawnSocket {
    pub fn new(sock: OwnedFd) -> SpawnSocket {
        SpawnSocket {
            sock,
            // An inline request is at most MAX_INLINE_LEN bytes; MSG_TRUNC flags longer ones.
            buf: vec![0; MAX_INLINE_LEN],
            reserve: FdReserve::new(),
        }
    }

    /// Frees the reserved fds before a burst of receives.
    pub fn begin(&mut self) {
        self.reserve.release();
    }

    /// Takes the reserved fds back after a burst.
    pub fn end(&mut self) {
        self.reserve.refill();
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Receives the next message without blocking.
    pub fn next(&mut self) -> SocketEvent {
        match seqpacket::recv(self.sock.as_fd(), &mut self.buf) {
            Recv::Message(m) => SocketEvent::Message(spawn_message(m, &self.buf)),
            Recv::WouldBlock => SocketEvent::WouldBlock,
            Recv::Eof => SocketEvent::Eof,
            Recv::Error(e) => SocketEvent::Error(e),
        }
    }
}

/// Checks the fds and the payload of one spawn message.
fn spawn_message(m: Message, buf: &[u8]) -> SpawnMessage {
    if m.fds_truncated {
        // Which fd is which cannot be told any more: all of them go.
        return SpawnMessage::Dropped(format!("{} fds arrived truncated", m.fds.len()));
    }
    let mut fds = m.fds.into_iter();
    let Some(channel) = fds.next() else {
        return SpawnMessage::Dropped(format!("a {} byte message without a channel fd", m.len));
    };
    let extra: Vec<OwnedFd> = fds.collect();
    let payload = &buf[..m.len];
    let etf = if m.truncated {
        Err(format!(
            "an inline request is at most {MAX_INLINE_LEN} bytes; larger ones go in a memfd"
        ))
    } else if payload == MEMFD_PAYLOAD {
        match extra.as_slice() {
            [memfd] => read_memfd(memfd.as_fd()),
            _ => Err(format!(
                "a memfd request carries 2 fds (channel, memfd), not {}",
                extra.len() + 1
            )),
        }
    } else if extra.is_empty() {
        Ok(payload.to_vec())
    } else {
        Err(format!(
            "an inline request carries 1 fd (the channel), not {}",
            extra.len() + 1
        ))
    };
    SpawnMessage::Request { channel, etf }
}

/// The whole content of a memfd (a regular file), read from offset 0 to its size.
fn read_memfd(fd: BorrowedFd<'_>) -> Result<Vec<u8>, String> {
    let file = File::from(fd.try_clone_to_owned().map_err(|e| e.to_string())?);
    let io_err = |what: &str, e: std::io::Error| {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        format!(
            "{what} the request memfd: {} ({})",
            errno.desc(),
            errno_name(errno)
        )
    };
    let meta = file.metadata().map_err(|e| io_err("cannot stat", e))?;
    if !meta.is_file() {
        return Err("the request fd is not a memfd (not a regular file)".into());
    }
    let len = meta.len();
    if len > MAX_FRAME_LEN as u64 {
        return Err(format!(
            "a request of {len} bytes exceeds the {MAX_FRAME_LEN} byte limit"
        ));
    }
    let mut etf = vec![0; len as usize];
    file.read_exact_at(&mut etf, 0)
        .map_err(|e| io_err("cannot read", e))?;
    Ok(etf)
}

/// Sends one reply on a program's channel, with `fds` as `SCM_RIGHTS`. Never blocks: a
/// reply the BEAM has no room for is dropped, and so is one to a closed channel.
pub fn send(channel: BorrowedFd<'_>, reply: &Reply, fds: &[BorrowedFd<'_>]) -> Result<(), Errno> {
    seqpacket::send(channel, &reply.encode(), fds)
}

/// What a program's channel produced.
#[derive(Debug)]
pub enum ChannelEvent {
    Request(Result<Request, DecodeError>),
    /// Nothing more queued.
    WouldBlock,
    /// The BEAM closed its end (or the fd is no channel at all).
    Closed,
}

/// Receives the next request on a program's channel without blocking. Fds sent along are
/// closed: requests carry none.
pub fn next_request(channel: BorrowedFd<'_>, buf: &mut [u8; MAX_CHANNEL_REQUEST]) -> ChannelEvent {
    match seqpacket::recv(channel, buf) {
        Recv::Message(m) if m.truncated => ChannelEvent::Request(Err(DecodeError {
            id: None,
            spawn_stage: None,
            message: format!("a channel request is at most {MAX_CHANNEL_REQUEST} bytes"),
        })),
        Recv::Message(m) => ChannelEvent::Request(Request::decode(&buf[..m.len])),
        Recv::WouldBlock => ChannelEvent::WouldBlock,
        Recv::Eof => ChannelEvent::Closed,
        Recv::Error(e) => {
            if !matches!(e, Errno::ECONNRESET | Errno::EPIPE) {
                eprintln!("sluice_helper: reading a program channel: {e}");
            }
            ChannelEvent::Closed
        }
    }
}

/// A buffer for [`next_request`].
pub fn request_buffer() -> Box<[u8; MAX_CHANNEL_REQUEST]> {
    Box::new([0; MAX_CHANNEL_REQUEST])
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::seqpacket::test_pair as pair;

    fn memfd(content: &[u8]) -> OwnedFd {
        let fd =
            nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
        let mut f = File::from(fd);
        f.write_all(content).unwrap();
        f.into()
    }

    fn receive(payload: &[u8], fds: &[BorrowedFd]) -> SocketEvent {
        let (a, b) = pair();
        seqpacket::send(a.as_fd(), payload, fds).unwrap();
        SpawnSocket::new(b).next()
    }

    #[test]
    fn spawn_messages() {
        let (chan, _peer) = pair();
        let m = memfd(b"\x83etf");
        let etf = |e: SocketEvent| match e {
            SocketEvent::Message(SpawnMessage::Request { etf, .. }) => etf,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            etf(receive(b"\x83x", &[chan.as_fd()])),
            Ok(b"\x83x".to_vec())
        );
        assert_eq!(
            etf(receive(b"F", &[chan.as_fd(), m.as_fd()])),
            Ok(b"\x83etf".to_vec())
        );
        assert!(etf(receive(b"F", &[chan.as_fd()])).is_err());
        assert!(etf(receive(b"x", &[chan.as_fd(), m.as_fd()])).is_err());
        // A pipe is no memfd.
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(etf(receive(b"F", &[chan.as_fd(), r.as_fd()])).is_err());
        assert!(matches!(
            receive(b"x", &[]),
            SocketEvent::Message(SpawnMessage::Dropped(_))
        ));
    }
}
