//! `read/2`, `write/2`, `close/1`, `monitor/1` and `fileno/1` on fd resources, and
//! `cwd/0`.

use std::mem::MaybeUninit;

use rustler::sys::{enif_alloc_binary, ErlNifBinary};
use rustler::{Binary, Encoder, Env, Error, NifResult, OwnedBinary, Term};

use crate::atoms;
use crate::errno;
use crate::fd_resource::FdRef;

/// A fresh binary of `size` bytes, or `None` when the allocation fails.
pub(crate) fn alloc_binary(size: usize) -> Option<OwnedBinary> {
    let mut bin = MaybeUninit::<ErlNifBinary>::uninit();
    // SAFETY: `bin` is an out parameter, initialised when enif_alloc_binary succeeds.
    unsafe {
        if enif_alloc_binary(size, bin.as_mut_ptr()) == 0 {
            return None;
        }
        Some(OwnedBinary::from_raw(bin.assume_init()))
    }
}

/// `read(fd, max)`: one non-blocking read of at most `max` bytes; on EAGAIN the caller is
/// armed for a `:ready_input` message.
#[rustler::nif(name = "read")]
fn nif_read<'a>(env: Env<'a>, fd: Term<'a>, max: Term<'a>) -> NifResult<Term<'a>> {
    read(env, fd, max)
}

fn read<'a>(env: Env<'a>, fd: Term<'a>, max: Term<'a>) -> NifResult<Term<'a>> {
    let max: u64 = max.decode()?;
    let fd = FdRef::get(env, fd)?;
    let max = usize::try_from(max).map_err(|_| Error::BadArg)?;
    if max == 0 {
        return Err(Error::BadArg);
    }
    let mut st = fd.lock();
    if st.closing {
        return Ok(env.error_tuple(atoms::closed()));
    }
    // A warm fd is asked how much it holds (FIONREAD), so a large `max` does not page in
    // and unmap a fresh block per read. A cold one (fresh, or last found empty) is read
    // into a small buffer first: it is empty (EAGAIN), at its end, or holds little, and
    // one read answers all three without the ioctl; a full buffer then asks for the rest.
    let first = if st.warm {
        read_size(st.fd, max)
    } else {
        max.min(COLD_READ)
    };
    let Some(mut buf) = alloc_binary(first) else {
        return Ok(env.error_tuple(atoms::enomem()));
    };
    let n = match read_into(st.fd, buf.as_mut_slice()) {
        Ok(0) => {
            st.warm = false;
            return Ok(atoms::eof().encode(env));
        }
        Ok(n) => n,
        Err(libc::EAGAIN) => {
            st.warm = false;
            return if fd.arm(&st, false) {
                Ok(env.error_tuple(atoms::eagain()))
            } else {
                Ok(env.error_tuple(atoms::select_failed()))
            };
        }
        Err(e) => return Ok(errno::error_tuple(env, e)),
    };
    let mut total = n;
    if !st.warm && n == first && first < max {
        let more = pending_bytes(st.fd).min(max - first);
        if more > 0 {
            if let Some(grown) = resized(buf, first + more) {
                buf = grown;
                // What the pipe held a moment ago is there: a failure here is no loss,
                // the next read meets it again.
                total += read_into(st.fd, &mut buf.as_mut_slice()[first..]).unwrap_or(0);
            } else {
                return Ok(env.error_tuple(atoms::enomem()));
            }
        }
    }
    st.warm = total == buf.len();
    drop(st);
    if total < buf.len() {
        let Some(exact) = resized(buf, total) else {
            return Ok(env.error_tuple(atoms::enomem()));
        };
        buf = exact;
    }
    charge_timeslice(env, total);
    Ok((atoms::ok(), buf.release(env)).encode(env))
}

/// Bytes a cold read takes without asking FIONREAD first.
const COLD_READ: usize = 4096;

/// One `read` into `buf`, retried on EINTR; the errno on failure.
fn read_into(fd: libc::c_int, buf: &mut [u8]) -> Result<usize, i32> {
    loop {
        // SAFETY: the caller holds the fd's state locked and not closing, so the fd is
        // open; `buf` is `buf.len()` writable bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        match errno::last() {
            libc::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// `bin` with `len` bytes (its first bytes kept), or `None` when memory ran out.
fn resized(mut bin: OwnedBinary, len: usize) -> Option<OwnedBinary> {
    if bin.realloc(len) {
        return Some(bin);
    }
    let mut copy = alloc_binary(len)?;
    let keep = len.min(bin.len());
    copy.as_mut_slice()[..keep].copy_from_slice(&bin.as_slice()[..keep]);
    Some(copy)
}

/// Bytes moved that count as a whole timeslice of the calling process.
const BYTES_PER_TIMESLICE: usize = 64 * 1024;

/// Charges the calling process for the bytes it moved, so a process streaming at full
/// speed yields to the others every few chunks (a NIF call otherwise costs about one
/// reduction, and 200 busy readers would each run a whole timeslice of copying while
/// everything else on the scheduler waits).
fn charge_timeslice(env: Env, bytes: usize) {
    let percent = (bytes * 100 / BYTES_PER_TIMESLICE).clamp(1, 100) as libc::c_int;
    // SAFETY: the env is the calling process's, valid for the duration of this NIF call.
    unsafe { rustler::sys::enif_consume_timeslice(env.as_c_arg(), percent) };
}

/// How many bytes to allocate for a read of at most `max`: what the pipe holds
/// (`FIONREAD`), so a large `max` does not page in and unmap a fresh block per read. When
/// nothing is buffered the read will say EOF or EAGAIN, unless data arrives in between: a
/// small buffer is enough then.
fn read_size(fd: libc::c_int, max: usize) -> usize {
    match fionread(fd) {
        Some(n) if n > 0 => n.min(max),
        // Not a pipe or socket (FIONREAD unsupported): fall back to `max`.
        None => max,
        Some(_) => max.min(COLD_READ),
    }
}

/// What FIONREAD says the fd holds, or `None` when it is no pipe or socket.
fn fionread(fd: libc::c_int) -> Option<usize> {
    let mut avail: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer; the fd is open (state locked).
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut avail) };
    (r == 0).then(|| usize::try_from(avail).unwrap_or(0))
}

/// Bytes waiting in the fd, 0 when unknown.
fn pending_bytes(fd: libc::c_int) -> usize {
    fionread(fd).unwrap_or(0)
}

/// `write(fd, iodata)`: one non-blocking write; may be partial.
#[rustler::nif(name = "write")]
fn nif_write<'a>(env: Env<'a>, fd: Term<'a>, data: Term<'a>) -> NifResult<Term<'a>> {
    let fd = FdRef::get(env, fd)?;
    // A binary is used in place; any other iodata is flattened once.
    let data = match Binary::from_term(data) {
        Ok(bin) => bin,
        Err(_) => Binary::from_iolist(data)?,
    };
    let st = fd.lock();
    if st.closing {
        return Ok(env.error_tuple(atoms::closed()));
    }
    let bytes = data.as_slice();
    if bytes.is_empty() {
        return Ok((atoms::ok(), 0u64).encode(env));
    }
    let n = loop {
        // SAFETY: the fd is open while the state is locked and not closing; `bytes` is a
        // readable slice kept alive by its term.
        let n = unsafe { libc::write(st.fd, bytes.as_ptr().cast(), bytes.len()) };
        if n >= 0 {
            break Ok(n as u64);
        }
        match errno::last() {
            libc::EINTR => continue,
            e => break Err(e),
        }
    };
    match n {
        Ok(n) => {
            charge_timeslice(env, n as usize);
            Ok((atoms::ok(), n).encode(env))
        }
        Err(libc::EAGAIN) => {
            if fd.arm(&st, true) {
                Ok(env.error_tuple(atoms::eagain()))
            } else {
                Ok(env.error_tuple(atoms::select_failed()))
            }
        }
        Err(e) => Ok(errno::error_tuple(env, e)),
    }
}

/// `close(fd)`: idempotent; later operations answer `{:error, :closed}`.
#[rustler::nif(name = "close")]
fn nif_close<'a>(env: Env<'a>, fd: Term<'a>) -> NifResult<Term<'a>> {
    FdRef::get(env, fd)?.close();
    Ok(atoms::ok().encode(env))
}

/// `monitor(fd)`: the caller becomes the owner; the fd is closed when it dies.
#[rustler::nif(name = "monitor")]
fn nif_monitor<'a>(env: Env<'a>, fd: Term<'a>) -> NifResult<Term<'a>> {
    if FdRef::get(env, fd)?.monitor() {
        Ok(atoms::ok().encode(env))
    } else {
        Ok(env.error_tuple(atoms::noproc()))
    }
}

/// `fileno(fd)`: the OS fd number, -1 once a close was requested.
#[rustler::nif(name = "fileno")]
fn nif_fileno<'a>(env: Env<'a>, fd: Term<'a>) -> NifResult<Term<'a>> {
    let fd = FdRef::get(env, fd)?;
    let st = fd.lock();
    let n = if st.closing { -1 } else { st.fd };
    Ok(n.encode(env))
}

/// `cwd()`: the VM's current working directory (`getcwd`), `{:ok, path}` or `{:error,
/// errno}` (`:enoent` once it was removed). A regular NIF: `:prim_file.get_cwd/0` runs on
/// a dirty I/O scheduler, and a spawn that asked it moved its caller there and back (and
/// left that scheduler spinning) for one fast syscall.
#[rustler::nif(name = "cwd")]
fn nif_cwd(env: Env<'_>) -> NifResult<Term<'_>> {
    use std::os::unix::ffi::OsStrExt;
    match std::env::current_dir() {
        Ok(dir) => {
            let bytes = dir.as_os_str().as_bytes();
            let Some(mut bin) = alloc_binary(bytes.len()) else {
                return Ok(env.error_tuple(atoms::enomem()));
            };
            bin.as_mut_slice().copy_from_slice(bytes);
            Ok((atoms::ok(), bin.release(env)).encode(env))
        }
        Err(e) => Ok(errno::error_tuple(
            env,
            e.raw_os_error().unwrap_or(libc::EIO),
        )),
    }
}
