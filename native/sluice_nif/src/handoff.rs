//! `connect/1` and `recv_fds/1`: the unix socket over which the helper hands pipe fds.

use std::mem::{size_of, zeroed};
use std::os::unix::io::RawFd;

use rustler::{Binary, Encoder, Env, NifResult, Term};
use sluice_protocol::handoff::{Handoff, MAX_FDS, PAYLOAD_LEN};

use crate::atoms;
use crate::errno;
use crate::fd_resource::{self, FdRef};

fn close_all(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: the fds were just received and are owned by nobody else.
        unsafe {
            libc::close(fd);
        }
    }
}

/// Sets `O_NONBLOCK` on `fd`; the errno on failure.
fn set_nonblocking(fd: RawFd) -> Result<(), i32> {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(errno::last());
        }
    }
    Ok(())
}

/// `connect(path)`: a non-blocking, close-on-exec `SOCK_SEQPACKET` socket connected to `path`.
#[rustler::nif(name = "connect")]
fn nif_connect<'a>(env: Env<'a>, path: Binary<'a>) -> NifResult<Term<'a>> {
    let path = path.as_slice();
    // SAFETY: sockaddr_un is plain data; all zeros is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { zeroed() };
    if path.is_empty() || path.contains(&0) {
        return Ok(errno::error_tuple(env, libc::EINVAL));
    }
    if path.len() >= addr.sun_path.len() {
        return Ok(errno::error_tuple(env, libc::ENAMETOOLONG));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(path) {
        *dst = src as libc::c_char;
    }
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Ok(errno::error_tuple(env, errno::last()));
    }
    let len = (size_of::<libc::sa_family_t>() + path.len() + 1) as libc::socklen_t;
    // SAFETY: `addr` is an initialised sockaddr_un and `len` does not exceed its size. A
    // non-blocking unix connect completes at once or fails (EAGAIN when the backlog is full).
    let rv = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) };
    if rv < 0 {
        let e = errno::last();
        close_all(&[fd]);
        return Ok(errno::error_tuple(env, e));
    }
    match fd_resource::make(env, fd) {
        Some(term) => Ok((atoms::ok(), term).encode(env)),
        None => Ok(env.error_tuple(atoms::enomem())),
    }
}

/// Space for one `SCM_RIGHTS` control message with `MAX_FDS` fds, suitably aligned.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// What one `recvmsg` produced.
enum Received {
    Message(Handoff, Vec<RawFd>),
    Eof,
    Bad,
    Errno(i32),
}

fn recv_one(sock: RawFd) -> Received {
    let mut payload = [0u8; PAYLOAD_LEN];
    let mut cmsg = CmsgBuf([0; 64]);
    // SAFETY: CMSG_SPACE only computes a size.
    let cmsg_space = unsafe { libc::CMSG_SPACE((MAX_FDS * size_of::<RawFd>()) as u32) } as usize;
    debug_assert!(cmsg_space <= cmsg.0.len());
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is plain data; all zeros is valid before we fill it in.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_space.min(cmsg.0.len()) as _;

    let n = loop {
        // SAFETY: `msg` points at live buffers (payload, iov, cmsg) of the stated sizes.
        let n =
            unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT) };
        if n >= 0 {
            break n as usize;
        }
        match errno::last() {
            libc::EINTR => continue,
            e => return Received::Errno(e),
        }
    };

    // Collect every fd the kernel installed, whatever else is wrong with the message.
    let mut fds = Vec::with_capacity(MAX_FDS);
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded by
    // msg_controllen; each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 fds,
    // read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / size_of::<RawFd>() {
                    let p = data.add(i * size_of::<RawFd>()) as *const RawFd;
                    fds.push(p.read_unaligned());
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }

    if n == 0 && fds.is_empty() {
        return Received::Eof;
    }
    let truncated = msg.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0;
    match Handoff::decode(&payload[..n.min(PAYLOAD_LEN)]) {
        Some(h) if !truncated && h.nfds as usize == fds.len() => Received::Message(h, fds),
        _ => {
            close_all(&fds);
            Received::Bad
        }
    }
}

/// `recv_fds(sock)`: one hand-off message, `{:ok, id, [fd]}`, or `{:error, :eagain}` after
/// arming a read select for the caller.
#[rustler::nif(name = "recv_fds")]
fn nif_recv_fds<'a>(env: Env<'a>, sock: Term<'a>) -> NifResult<Term<'a>> {
    let sock = FdRef::get(env, sock)?;
    let received = {
        let st = sock.lock();
        if st.closing {
            return Ok(env.error_tuple(atoms::closed()));
        }
        match recv_one(st.fd) {
            Received::Errno(libc::EAGAIN) => {
                return if sock.arm(&st, false) {
                    Ok(env.error_tuple(atoms::eagain()))
                } else {
                    Ok(env.error_tuple(atoms::select_failed()))
                };
            }
            other => other,
        }
    };
    match received {
        Received::Message(h, fds) => {
            if let Some(e) = fds.iter().find_map(|&fd| set_nonblocking(fd).err()) {
                close_all(&fds);
                return Ok(errno::error_tuple(env, e));
            }
            let mut terms = Vec::with_capacity(fds.len());
            let mut failed = false;
            for fd in fds {
                // `make` takes ownership of fd (closing it on failure); resources already
                // made close theirs when garbage collected.
                match fd_resource::make(env, fd) {
                    Some(t) => terms.push(t),
                    None => failed = true,
                }
            }
            if failed {
                return Ok(env.error_tuple(atoms::enomem()));
            }
            Ok((atoms::ok(), h.id, terms).encode(env))
        }
        Received::Eof => Ok(env.error_tuple(atoms::eof())),
        Received::Bad => Ok(env.error_tuple(atoms::bad_handoff())),
        Received::Errno(e) => Ok(errno::error_tuple(env, e)),
    }
}
