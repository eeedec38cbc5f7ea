//! Messages with `SCM_RIGHTS` on `SOCK_SEQPACKET` sockets: the fd socket and the program
//! channels. Raw `recvmsg`/`sendmsg`, because a receiver must own (and so close) every fd
//! the kernel installed, even when the control data was truncated (nix hides the fds of a
//! `MSG_CTRUNC` message, which would leak them).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::{mem, ptr};

use nix::errno::Errno;

use crate::sys;

/// The most fds one received message may carry without being truncated. A spawn message
/// carries two at most; room for more lets a wrong message be told from a truncated one.
const MAX_FDS: usize = 8;

/// One received message.
#[derive(Debug)]
pub struct Message {
    /// Payload length (within the caller's buffer).
    pub len: usize,
    /// Every fd that arrived, owned: dropping the message closes them.
    pub fds: Vec<OwnedFd>,
    /// The payload did not fit the buffer (`MSG_TRUNC`).
    pub truncated: bool,
    /// Some fds did not fit (`MSG_CTRUNC`): the kernel closed those.
    pub fds_truncated: bool,
}

/// What one non-blocking receive produced.
#[derive(Debug)]
pub enum Recv {
    Message(Message),
    /// Nothing queued.
    WouldBlock,
    /// The peer closed its end.
    Eof,
    Error(Errno),
}

/// Control buffer for `MAX_FDS` fds, aligned for `cmsghdr`.
#[repr(C)]
union ControlBuf {
    _align: libc::cmsghdr,
    bytes: [u8; 128],
}

/// `CMSG_SPACE` for `n` fds; at most the control buffer's size.
fn control_space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE((n * mem::size_of::<RawFd>()) as u32) } as usize;
    assert!(space <= mem::size_of::<ControlBuf>());
    space
}

/// Receives one message with `MSG_CMSG_CLOEXEC | MSG_DONTWAIT`.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Recv {
    let mut control = ControlBuf { bytes: [0; 128] };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid (null name, no buffers) before the fields are set.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: only the address of the union is taken.
    msg.msg_control = unsafe { control.bytes.as_mut_ptr() }.cast();
    msg.msg_controllen = control_space(MAX_FDS);
    let n = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and `control`, all alive and exclusively
        // borrowed for the call.
        let n = unsafe {
            libc::recvmsg(
                sock.as_raw_fd(),
                &mut msg,
                libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
            )
        };
        match Errno::result(n) {
            Ok(n) => break n as usize,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Recv::WouldBlock,
            Err(e) => return Recv::Error(e),
        }
    };
    let fds = take_fds(&msg);
    // A SEQPACKET socket returns 0 both for an empty record and at EOF: only a hang-up
    // tells them apart.
    if n == 0 && fds.is_empty() && sys::hung_up(sock) {
        return Recv::Eof;
    }
    Recv::Message(Message {
        len: n.min(buf.len()),
        fds,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// Takes ownership of every fd in the `SCM_RIGHTS` messages of a received `msg`.
fn take_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by recvmsg; the CMSG_* macros walk its control buffer
    // within `msg_controllen`, and every fd in an SCM_RIGHTS payload was just installed
    // for us, so nothing else owns it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                for i in 0..len / mem::size_of::<RawFd>() {
                    let fd = ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    fds
}

/// Sends one message with `fds` as `SCM_RIGHTS`, never blocking and never raising SIGPIPE.
pub fn send(sock: BorrowedFd<'_>, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Errno> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let data_len = mem::size_of_val(raw.as_slice());
    let mut control = ControlBuf { bytes: [0; 128] };
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: a zeroed msghdr is valid (null name, no buffers) before the fields are set.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        let space = control_space(raw.len());
        // SAFETY: `control_space` checked that the header and data fit the buffer.
        unsafe {
            msg.msg_control = control.bytes.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(data_len as u32) as _;
            ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), data_len);
        }
    }
    loop {
        // SAFETY: `msg` points at `iov` (over `payload`, only read) and `control`.
        let n = unsafe {
            libc::sendmsg(
                sock.as_raw_fd(),
                &msg,
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        match Errno::result(n) {
            Ok(n) if n as usize == payload.len() => return Ok(()),
            // SEQPACKET sends records whole; a short count should not happen.
            Ok(_) => return Err(Errno::EMSGSIZE),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A connected `SOCK_SEQPACKET` pair, for the unit tests of this module and `channels`.
#[cfg(test)]
pub fn test_pair() -> (OwnedFd, OwnedFd) {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn pair() -> (OwnedFd, OwnedFd) {
        test_pair()
    }

    #[test]
    fn round_trip_with_fds_empty_records_and_eof() {
        let (a, b) = pair();
        let (x, y) = pair();
        send(a.as_fd(), b"hello", &[x.as_fd(), y.as_fd()]).unwrap();
        send(a.as_fd(), b"", &[]).unwrap();
        let mut buf = [0u8; 3];
        let Recv::Message(m) = recv(b.as_fd(), &mut buf) else {
            panic!("expected a message");
        };
        assert_eq!(
            (m.len, m.fds.len(), m.truncated, m.fds_truncated),
            (3, 2, true, false)
        );
        assert_eq!(&buf, b"hel");
        let Recv::Message(m) = recv(b.as_fd(), &mut buf) else {
            panic!("expected the empty record");
        };
        assert_eq!((m.len, m.fds.len()), (0, 0));
        assert!(matches!(recv(b.as_fd(), &mut buf), Recv::WouldBlock));
        drop(a);
        assert!(matches!(recv(b.as_fd(), &mut buf), Recv::Eof));
    }

    #[test]
    fn too_many_fds_are_truncated() {
        use std::io::IoSlice;

        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

        let (a, b) = pair();
        let (x, _y) = pair();
        let many = vec![x.as_raw_fd(); MAX_FDS + 4];
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(b"x")],
            &[ControlMessage::ScmRights(&many)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let mut buf = [0u8; 8];
        let Recv::Message(m) = recv(b.as_fd(), &mut buf) else {
            panic!("expected a message");
        };
        assert!(m.fds_truncated);
        // The ones the kernel installed are ours (and closed with the message).
        assert!(m.fds.len() <= MAX_FDS);
    }
}
