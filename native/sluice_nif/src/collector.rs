//! `read_into/3` and `collected/1`: output read straight into one growing binary
//! (`Sluice.run` collecting stdout and stderr) and handed over whole at the end, so each
//! byte is copied once, by the kernel, from the pipe into the binary the caller gets.
//!
//! The binary grows by doubling with `enif_realloc_binary`; past the allocator's
//! single-block threshold (512 KiB) that is `mremap`, which moves no byte. Nothing is
//! allocated before the program has written something, not even the collector: the first
//! read is given `nil`, goes into a small buffer on the stack (an empty pipe answers
//! EAGAIN or end of file), and only a read that brought bytes makes the collector, so a
//! `run` waiting on a silent program costs no more than before.

use std::sync::{Mutex, MutexGuard};

use rustler::{Encoder, Env, Error, NifResult, OwnedBinary, ResourceArc, Term};

use crate::atoms;
use crate::fd_resource::{FdRef, FdState};
use crate::io::{alloc_binary, buffered, charge_timeslice, failed, prefault, read_fd};

/// One collector: the bytes read so far, in a binary of `capacity >= len` bytes.
pub struct Collector {
    buf: Mutex<Buffer>,
}

impl rustler::Resource for Collector {}

impl Collector {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // No code panics while holding it; recover anyway, as the fd resource does.
        self.buf
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Default)]
struct Buffer {
    /// The binary, `None` until the first byte arrives and after `collected/1`.
    bin: Option<OwnedBinary>,
    /// Bytes of `bin` that hold output.
    len: usize,
    /// Bytes of `bin` whose pages were faulted in ahead of the reads (`prefault`).
    faulted: usize,
}

/// Registers the resource type. Called from `load`.
pub fn register(env: Env<'_>) -> bool {
    env.register::<Collector>().is_ok()
}

/// Room wanted before a read: a default output pipe's capacity (256 KiB), so one read takes
/// what the pipe holds. Below it the pipe is asked how much it holds, and the binary grows.
const MIN_ROOM: usize = 256 * 1024;

/// The least bytes worth faulting in ahead of a read (one `madvise`), 16 pages: a short
/// output is not worth the call.
const PREFAULT_MIN: usize = 64 * 1024;

/// A read of a pipe that holds nothing goes into this much stack: it answers EAGAIN or end
/// of file, unless bytes arrived since the pipe was asked.
const PROBE: usize = 4096;

/// `read_into(fd, collector, max)`: one non-blocking read of at most `max` bytes onto the
/// end of the collector: `{:ok, bytes}`, `:eof`, or `{:error, :eagain}` after arming the
/// caller for a `:ready_input` message, as `read/2`. With `nil` for the collector, a read
/// that brings bytes makes one: `{:ok, bytes, collector}`.
#[rustler::nif(name = "read_into")]
fn nif_read_into<'a>(
    env: Env<'a>,
    fd: Term<'a>,
    collector: Option<ResourceArc<Collector>>,
    max: u64,
) -> NifResult<Term<'a>> {
    let max = usize::try_from(max).map_err(|_| Error::BadArg)?;
    if max == 0 {
        return Err(Error::BadArg);
    }
    let fd = FdRef::get(env, fd)?;
    let st = fd.lock();
    if st.closing {
        return Ok(env.error_tuple(atoms::closed()));
    }
    let (result, made) = match &collector {
        Some(collector) => (collector.lock().read_from(&st, max), None),
        None => {
            let mut buf = Buffer::default();
            let result = buf.read_from(&st, max);
            let made = buf.bin.is_some().then(|| {
                ResourceArc::new(Collector {
                    buf: Mutex::new(buf),
                })
            });
            (result, made)
        }
    };
    match result {
        Ok(0) => Ok(atoms::eof().encode(env)),
        Ok(n) => {
            charge_timeslice(env, n);
            match made {
                Some(collector) => Ok((atoms::ok(), n as u64, collector).encode(env)),
                None => Ok((atoms::ok(), n as u64).encode(env)),
            }
        }
        Err(e) => Ok(failed(env, &fd, &st, e, false)),
    }
}

/// `collected(collector)`: every byte read into it, as one binary (no copy: the binary the
/// bytes were read into, trimmed to their length); the collector is empty afterwards.
#[rustler::nif(name = "collected")]
fn nif_collected<'a>(env: Env<'a>, collector: ResourceArc<Collector>) -> NifResult<Term<'a>> {
    let Buffer { bin, len, .. } = std::mem::take(&mut *collector.lock());
    let Some(mut bin) = bin.filter(|_| len > 0) else {
        return Ok("".encode(env));
    };
    // Trimmed in place (past 512 KiB an mremap); if that fails, the first `len` bytes as a
    // sub-binary, still without a copy.
    if len == bin.len() || bin.realloc(len) {
        Ok(bin.release(env).encode(env))
    } else {
        Ok(bin.release(env).make_subbinary(0, len)?.encode(env))
    }
}

impl Buffer {
    fn capacity(&self) -> usize {
        self.bin.as_ref().map_or(0, |bin| bin.len())
    }

    /// Reads at most `max` bytes of the fd onto the end: the bytes read, 0 at end of file,
    /// or the errno (ENOMEM when the binary cannot grow).
    fn read_from(&mut self, st: &FdState, max: usize) -> Result<usize, libc::c_int> {
        // Nothing collected yet: most likely nothing to read either (the other output's
        // turn, a program that has not written), so straight to the probe.
        if self.bin.is_none() {
            return self.probe(st, max);
        }
        let room = self.capacity() - self.len;
        if room < max.min(MIN_ROOM) {
            match buffered(st) {
                Some(0) => return self.probe(st, max),
                Some(n) if n > room => self.grow(n.min(max))?,
                Some(_) => {}
                // Not a pipe, socket or terminal: room for a pipe's worth.
                None => self.grow(max.min(MIN_ROOM))?,
            }
        }
        let end = self.len + (self.capacity() - self.len).min(max);
        let Some(bin) = self.bin.as_mut() else {
            return Err(libc::ENOMEM);
        };
        // The pages a pipe's worth of reads will fill, faulted in at once, outside the read.
        let ahead = (self.len + MIN_ROOM).min(end);
        if ahead >= self.faulted.max(self.len) + PREFAULT_MIN {
            prefault(&mut bin.as_mut_slice()[self.faulted.max(self.len)..ahead]);
            self.faulted = ahead;
        }
        let n = read_fd(st, &mut bin.as_mut_slice()[self.len..end])?;
        self.len += n;
        Ok(n)
    }

    /// The pipe held nothing when asked: reads into the stack, and keeps what came since.
    fn probe(&mut self, st: &FdState, max: usize) -> Result<usize, libc::c_int> {
        let mut small = [0u8; PROBE];
        let n = read_fd(st, &mut small[..max.min(PROBE)])?;
        if n > 0 {
            if self.capacity() - self.len < n {
                self.grow(n)?;
            }
            if let Some(bin) = self.bin.as_mut() {
                bin.as_mut_slice()[self.len..self.len + n].copy_from_slice(&small[..n]);
                self.len += n;
            }
        }
        Ok(n)
    }

    /// Makes room for at least `wanted` more bytes: the exact size at first (a short output
    /// stays small), then at least double the capacity.
    fn grow(&mut self, wanted: usize) -> Result<(), libc::c_int> {
        let needed = self.len.checked_add(wanted).ok_or(libc::ENOMEM)?;
        match self.bin.as_mut() {
            None => {
                self.bin = Some(alloc_binary(needed).ok_or(libc::ENOMEM)?);
                Ok(())
            }
            Some(bin) => {
                let capacity = needed.max(bin.len().saturating_mul(2));
                if bin.realloc(capacity) {
                    // Moved pages stay faulted in, copied ones need not: ask again.
                    self.faulted = self.len;
                    Ok(())
                } else {
                    Err(libc::ENOMEM)
                }
            }
        }
    }
}
