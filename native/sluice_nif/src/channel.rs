//! The control plane as seen from the BEAM: `connect/1` to the helper's fd socket,
//! `spawn/2` (a request plus a fresh program channel), and `recv/1`/`send/2` on a program
//! channel. See `docs/protocol.md`.

use std::mem::{size_of, zeroed};
use std::os::unix::io::RawFd;

use rustler::{Binary, Encoder, Env, NifResult, Term};

use crate::atoms;
use crate::errno;
use crate::fd_resource::{self, FdRef};

/// Requests larger than this travel in a memfd: a socket message must fit the send buffer.
const INLINE_MAX: usize = 64 * 1024;
/// The largest message the helper sends on a program channel (a spawn error's text).
const REPLY_MAX: usize = 16 * 1024;
/// The most fds one channel message may carry.
const MAX_FDS: usize = 8;

fn close_all(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: the fds were just created or received and are owned by nobody else.
        unsafe {
            libc::close(fd);
        }
    }
}

/// Sets `O_NONBLOCK` on a received pipe or socket fd; the errno on failure. One F_SETFL
/// without reading the flags first: the only other status flags F_SETFL changes
/// (O_APPEND, O_ASYNC, O_DIRECT, O_NOATIME) are never set on these fds.
fn set_nonblocking(fd: RawFd) -> Result<(), i32> {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(errno::last());
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

/// Sends `payload` with `fds` as `SCM_RIGHTS` on `sock`, without blocking.
fn send_with_fds(sock: RawFd, payload: &[u8], fds: &[RawFd]) -> Result<(), i32> {
    let mut cmsg = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is plain data; all zeros is valid before we fill it in.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = std::mem::size_of_val(fds);
        // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes; the header and data written below
        // lie inside `cmsg`, which is large enough for MAX_FDS fds (checked by the assert).
        unsafe {
            let space = libc::CMSG_SPACE(bytes as u32) as usize;
            assert!(space <= cmsg.0.len() && fds.len() <= MAX_FDS);
            msg.msg_control = cmsg.0.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(bytes as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), bytes);
        }
    }
    loop {
        // SAFETY: `msg` points at live buffers (payload, iov, cmsg) of the stated sizes.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        match errno::last() {
            libc::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// A close-on-exec memfd holding `data`.
fn memfd_with(data: &[u8]) -> Result<RawFd, i32> {
    // SAFETY: memfd_create with a constant C string name and flags.
    let fd = unsafe { libc::memfd_create(c"sluice-spawn".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(errno::last());
    }
    let mut rest = data;
    while !rest.is_empty() {
        // SAFETY: `rest` is a readable slice; the memfd is ours.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = errno::last();
            if e == libc::EINTR {
                continue;
            }
            close_all(&[fd]);
            return Err(e);
        }
        rest = &rest[n as usize..];
    }
    Ok(fd)
}

/// A `SOCK_SEQPACKET` socketpair: (the BEAM's end, the helper's end).
fn channel_pair() -> Result<(RawFd, RawFd), i32> {
    let mut sv = [-1; 2];
    // SAFETY: socketpair writes two fds into the array.
    let rv = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            // Both ends non-blocking: the helper program polls its end too.
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
            sv.as_mut_ptr(),
        )
    };
    if rv < 0 {
        return Err(errno::last());
    }
    Ok((sv[0], sv[1]))
}

fn spawn<'a>(env: Env<'a>, sock: Term<'a>, request: Binary<'a>) -> NifResult<Term<'a>> {
    let sock = FdRef::get(env, sock)?;
    let (ours, theirs) = match channel_pair() {
        Ok(pair) => pair,
        Err(e) => return Ok(errno::error_tuple(env, e)),
    };
    let memfd = if request.len() > INLINE_MAX {
        match memfd_with(request.as_slice()) {
            Ok(fd) => Some(fd),
            Err(e) => {
                close_all(&[ours, theirs]);
                return Ok(errno::error_tuple(env, e));
            }
        }
    } else {
        None
    };
    let sent = {
        let st = sock.lock();
        if st.closing {
            Err(libc::ECONNRESET)
        } else {
            match memfd {
                Some(m) => send_with_fds(st.fd, b"F", &[theirs, m]),
                None => send_with_fds(st.fd, request.as_slice(), &[theirs]),
            }
        }
    };
    // The helper has its own copies now (or never will).
    close_all(&[theirs]);
    if let Some(m) = memfd {
        close_all(&[m]);
    }
    if let Err(e) = sent {
        close_all(&[ours]);
        return Ok(errno::error_tuple(env, e));
    }
    let Some(channel) = fd_resource::make(env, ours) else {
        return Ok(env.error_tuple(atoms::enomem()));
    };
    // The caller owns the program: if it dies, the channel closes and the helper stops it.
    let res = FdRef::get(env, channel)?;
    res.monitor();
    // Armed for the caller at once: the reply comes as a readiness message, with no recv
    // that could only find the channel empty this soon.
    let armed = {
        let st = res.lock();
        res.arm(&st, false)
    };
    if !armed {
        res.close();
        return Ok(env.error_tuple(atoms::select_failed()));
    }
    Ok((atoms::ok(), channel).encode(env))
}

/// `spawn(sock, request)`: sends one spawn request with the helper's end of a new program
/// channel, and returns the caller's end, owned (monitored) by the caller and armed for
/// it: the reply comes as `{:select, channel, :undefined, :ready_input}`. `{:error,
/// :eagain}` when the socket is full: nothing was sent, try again.
#[rustler::nif(name = "spawn")]
fn nif_spawn<'a>(env: Env<'a>, sock: Term<'a>, request: Binary<'a>) -> NifResult<Term<'a>> {
    spawn(env, sock, request)
}

/// `spawn_large(sock, request)`: `spawn/2` for requests over 64 KiB, which are copied into
/// a memfd first; on a dirty scheduler, since copying megabytes takes a while.
#[rustler::nif(name = "spawn_large", schedule = "DirtyIo")]
fn nif_spawn_large<'a>(env: Env<'a>, sock: Term<'a>, request: Binary<'a>) -> NifResult<Term<'a>> {
    spawn(env, sock, request)
}

/// What one `recvmsg` produced.
enum Received {
    Message(Vec<u8>, Vec<RawFd>),
    Eof,
    Truncated,
    Errno(i32),
}

fn recv_one(sock: RawFd) -> Received {
    let mut payload = vec![0u8; REPLY_MAX];
    let mut cmsg = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is plain data; all zeros is valid before we fill it in.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.0.len() as _;

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
    let mut fds = Vec::new();
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
    // Fds the kernel could not install (the VM is out of fds) are dropped with MSG_CTRUNC.
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        close_all(&fds);
        return Received::Errno(libc::EMFILE);
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        close_all(&fds);
        return Received::Truncated;
    }
    payload.truncate(n);
    Received::Message(payload, fds)
}

/// `recv(channel, rearm)`: one message from a program channel: `{:ok, payload, [fd]}`
/// (the fds non-blocking and owned by the caller), `:eof` once the helper closed it,
/// `{:error, :eagain}` after arming a read select for the caller, or `{:error, reason}`.
/// With `rearm` true a message also arms the read select: whatever comes next (a message
/// already queued included) is a readiness message, and no recv has to find the channel
/// empty to arm it.
#[rustler::nif(name = "recv")]
fn nif_recv<'a>(env: Env<'a>, channel: Term<'a>, rearm: bool) -> NifResult<Term<'a>> {
    let channel = FdRef::get(env, channel)?;
    let received = {
        let st = channel.lock();
        if st.closing {
            return Ok(env.error_tuple(atoms::closed()));
        }
        match recv_one(st.fd) {
            Received::Errno(libc::EAGAIN) => {
                return if channel.arm(&st, false) {
                    Ok(env.error_tuple(atoms::eagain()))
                } else {
                    Ok(env.error_tuple(atoms::select_failed()))
                };
            }
            Received::Message(payload, fds) if rearm => {
                if !channel.arm(&st, false) {
                    close_all(&fds);
                    return Ok(env.error_tuple(atoms::select_failed()));
                }
                Received::Message(payload, fds)
            }
            other => other,
        }
    };
    match received {
        Received::Message(payload, fds) => {
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
                    Some(t) => {
                        FdRef::get(env, t)?.monitor();
                        terms.push(t);
                    }
                    None => failed = true,
                }
            }
            if failed {
                return Ok(env.error_tuple(atoms::enomem()));
            }
            let Some(mut bin) = crate::io::alloc_binary(payload.len()) else {
                return Ok(env.error_tuple(atoms::enomem()));
            };
            bin.as_mut_slice().copy_from_slice(&payload);
            Ok((atoms::ok(), bin.release(env), terms).encode(env))
        }
        Received::Eof => Ok(atoms::eof().encode(env)),
        Received::Truncated => Ok(env.error_tuple(atoms::emsgsize())),
        Received::Errno(e) => Ok(errno::error_tuple(env, e)),
    }
}

/// `send(channel, payload)`: one message on a program channel, without blocking.
#[rustler::nif(name = "send")]
fn nif_send<'a>(env: Env<'a>, channel: Term<'a>, payload: Binary<'a>) -> NifResult<Term<'a>> {
    let channel = FdRef::get(env, channel)?;
    let st = channel.lock();
    if st.closing {
        return Ok(env.error_tuple(atoms::closed()));
    }
    match send_with_fds(st.fd, payload.as_slice(), &[]) {
        Ok(()) => Ok(atoms::ok().encode(env)),
        Err(e) => Ok(errno::error_tuple(env, e)),
    }
}
