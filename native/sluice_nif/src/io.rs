//! `read/2`, `write/2`, `close/1`, `monitor/1` and `fileno/1` on fd resources, and
//! `cwd/0`.

use std::mem::MaybeUninit;

use rustler::sys::{enif_alloc_binary, ErlNifBinary};
use rustler::{Binary, Encoder, Env, Error, NifResult, OwnedBinary, Term};

use crate::atoms;
use crate::errno;
use crate::fd_resource::{FdRef, FdState};

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
    let st = fd.lock();
    if st.closing {
        return Ok(env.error_tuple(atoms::closed()));
    }
    let Some(mut buf) = alloc_binary(read_size(&st, max)) else {
        return Ok(env.error_tuple(atoms::enomem()));
    };
    match read_fd(&st, buf.as_mut_slice()) {
        Ok(0) => Ok(atoms::eof().encode(env)),
        Ok(n) => {
            if n < buf.len() && !buf.realloc(n) {
                let mut exact = match alloc_binary(n) {
                    Some(exact) => exact,
                    None => return Ok(env.error_tuple(atoms::enomem())),
                };
                exact.as_mut_slice().copy_from_slice(&buf.as_slice()[..n]);
                buf = exact;
            }
            charge_timeslice(env, n);
            Ok((atoms::ok(), buf.release(env)).encode(env))
        }
        Err(e) => Ok(failed(env, &fd, &st, e, false)),
    }
}

/// One `read(2)` of the fd into `buf` (retried on EINTR): the bytes read, 0 at end of
/// file, or the errno. Call with the state locked and not closing.
/// What a read or write that failed with `errno` answers: on EAGAIN the fd is armed
/// (`enif_select` for reading, or for writing when `write`), so a readiness message will
/// come to the caller, and the answer is `{:error, :eagain}` (`:select_failed` when the
/// arming failed); any other errno is `{:error, name}`. Call with the state locked.
pub(crate) fn failed<'a>(
    env: Env<'a>,
    fd: &FdRef,
    st: &FdState,
    errno: libc::c_int,
    write: bool,
) -> Term<'a> {
    match errno {
        libc::EAGAIN if fd.arm(st, write) => env.error_tuple(atoms::eagain()),
        libc::EAGAIN => env.error_tuple(atoms::select_failed()),
        e => errno::error_tuple(env, e),
    }
}

pub(crate) fn read_fd(st: &FdState, buf: &mut [u8]) -> Result<usize, libc::c_int> {
    loop {
        // SAFETY: the fd is open while the state is locked and not closing; `buf` is
        // `buf.len()` writable bytes.
        let n = unsafe { libc::read(st.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        match errno::last() {
            libc::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Faults in the pages of `region` for writing (`MADV_POPULATE_WRITE`, Linux 5.14), in one
/// call rather than one page fault per page during a later read: those faults would be
/// taken inside `read(2)`, with the pipe locked against its writer. Best effort: an older
/// kernel's refusal changes nothing.
pub(crate) fn prefault(region: &mut [u8]) {
    const PAGE: usize = 4096;
    if region.is_empty() {
        return;
    }
    let start = region.as_mut_ptr() as usize;
    let first = start & !(PAGE - 1);
    let end = start + region.len();
    // SAFETY: every page from `first` to `end` holds some of `region`, writable memory of
    // ours, and protection is per page, so all of them are mapped and writable; populating
    // writes no byte (whatever else shares the first and last page is left as it is), it
    // only faults the pages in.
    unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            end - first,
            libc::MADV_POPULATE_WRITE,
        );
    }
}

/// Bytes moved that count as a whole timeslice of the calling process.
const BYTES_PER_TIMESLICE: usize = 64 * 1024;

/// Charges the calling process for the bytes it moved, so a process streaming at full
/// speed yields to the others every few chunks (a NIF call otherwise costs about one
/// reduction, and 200 busy readers would each run a whole timeslice of copying while
/// everything else on the scheduler waits).
pub(crate) fn charge_timeslice(env: Env, bytes: usize) {
    let percent = (bytes * 100 / BYTES_PER_TIMESLICE).clamp(1, 100) as libc::c_int;
    // SAFETY: the env is the calling process's, valid for the duration of this NIF call.
    unsafe { rustler::sys::enif_consume_timeslice(env.as_c_arg(), percent) };
}

/// Reads of at most this many bytes allocate `max` at once, without asking the fd: the
/// block comes from the allocator's multi-block carriers and shrinks in place to what was
/// read, which costs less than the `FIONREAD` (and its second lock of the pipe against the
/// writer).
const ALLOC_MAX_AT_ONCE: usize = 64 * 1024;

/// How many bytes to allocate for a read of at most `max`: up to 64 KiB `max` itself, past
/// it what the pipe holds (`FIONREAD`), so a large `max` does not page in and unmap a fresh
/// block per read. When nothing is buffered the read will say EOF or EAGAIN, unless data
/// arrives in between: a small buffer is enough then.
fn read_size(st: &FdState, max: usize) -> usize {
    if max <= ALLOC_MAX_AT_ONCE {
        return max;
    }
    match buffered(st) {
        Some(0) => max.min(4096),
        Some(n) => n.min(max),
        // Not a pipe or socket (FIONREAD unsupported): fall back to `max`.
        None => max,
    }
}

/// The bytes a pipe, socket or terminal holds now (`FIONREAD`), or `None` when the fd
/// cannot say. Call with the state locked and not closing.
pub(crate) fn buffered(st: &FdState) -> Option<usize> {
    let mut avail: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer; the fd is open (state locked).
    let r = unsafe { libc::ioctl(st.fd, libc::FIONREAD, &mut avail) };
    if r == 0 {
        usize::try_from(avail).ok()
    } else {
        None
    }
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
        Err(e) => Ok(failed(env, &fd, &st, e, true)),
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
