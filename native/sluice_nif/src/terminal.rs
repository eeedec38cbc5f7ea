//! Terminal ioctls on a pseudo-terminal's master, at the syscall boundary:
//! `set_window_size/3` (`TIOCSWINSZ`) and `terminal_eof/1` (the `VEOF` character and
//! whether the line discipline is canonical, read with `TCGETS`). On Linux both act on
//! the slave's settings through the master, so they see what the program set.

use rustler::{Encoder, Env, NifResult, Term};

use crate::atoms;
use crate::errno;
use crate::fd_resource::FdRef;

/// `set_window_size(fd, rows, cols)`: the kernel sends SIGWINCH to the terminal's
/// foreground process group when the size changes.
#[rustler::nif(name = "set_window_size")]
fn nif_set_window_size<'a>(
    env: Env<'a>,
    fd: Term<'a>,
    rows: u16,
    cols: u16,
) -> NifResult<Term<'a>> {
    let fd = FdRef::get(env, fd)?;
    let st = fd.lock();
    if st.closing {
        return Ok(env.error_tuple(atoms::closed()));
    }
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the fd is open while the state is locked and not closing; TIOCSWINSZ reads
    // one winsize struct through a valid pointer.
    let r = unsafe { libc::ioctl(st.fd, libc::TIOCSWINSZ, &size) };
    if r == 0 {
        Ok(atoms::ok().encode(env))
    } else {
        Ok(errno::error_tuple(env, errno::last()))
    }
}

/// `terminal_eof(fd)`: `{:ok, veof, canonical}`, with `veof` 0 when disabled.
#[rustler::nif(name = "terminal_eof")]
fn nif_terminal_eof<'a>(env: Env<'a>, fd: Term<'a>) -> NifResult<Term<'a>> {
    let fd = FdRef::get(env, fd)?;
    let st = fd.lock();
    if st.closing {
        return Ok(env.error_tuple(atoms::closed()));
    }
    // SAFETY: termios is plain data, all zeros is a valid value; tcgetattr fills it from
    // an fd that is open while the state is locked and not closing.
    let (r, t) = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        (libc::tcgetattr(st.fd, &mut t), t)
    };
    if r != 0 {
        return Ok(errno::error_tuple(env, errno::last()));
    }
    let canonical = t.c_lflag & libc::ICANON != 0;
    Ok((atoms::ok(), t.c_cc[libc::VEOF], canonical).encode(env))
}
