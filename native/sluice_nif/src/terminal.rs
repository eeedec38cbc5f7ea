//! Terminal ioctls on a pseudo-terminal's master, at the syscall boundary:
//! `set_window_size/3` (`TIOCSWINSZ`), `set_terminal_modes/2` (RFC 4254 modes, through
//! `sluice_protocol::modes`, the helper program's table) and `terminal_input/1` (whether
//! the line discipline is canonical and, if so, which input bytes end or edit a line,
//! read with `TCGETS`). On Linux they act on the slave's settings through the master, so
//! they see what the program set, at the time of the call.

use rustler::{Binary, Encoder, Env, NewBinary, NifResult, Term};
use sluice_protocol::modes;

use crate::atoms;
use crate::errno;
use crate::fd_resource::FdRef;

/// `set_terminal_modes(fd, [{opcode, value}])`: applies the modes, in order, over the
/// terminal's current ones, at once (`TCSANOW`: `TCSADRAIN` would wait for the program
/// to read its output), then reads them back. `:ok`; `{:error, {:unsupported, opcode,
/// value}}` for a value Linux has no place for (nothing is set then); `{:error,
/// {:rejected, opcode, value}}` for a mode the terminal did not take (the others it took
/// stay set); `{:error, errno}`.
#[rustler::nif(name = "set_terminal_modes")]
fn nif_set_terminal_modes<'a>(
    env: Env<'a>,
    fd: Term<'a>,
    wanted: Vec<(u8, u32)>,
) -> NifResult<Term<'a>> {
    let fd = FdRef::get(env, fd)?;
    let st = fd.lock();
    if st.closing {
        return Ok(env.error_tuple(atoms::closed()));
    }
    // SAFETY: termios is plain data, all zeros is a valid value; tcgetattr fills it from
    // an fd that is open while the state is locked and not closing.
    let (r, mut t) = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        (libc::tcgetattr(st.fd, &mut t), t)
    };
    if r != 0 {
        return Ok(errno::error_tuple(env, errno::last()));
    }
    if let Err((opcode, value)) = modes::apply_all(&mut t, &wanted) {
        return Ok(env.error_tuple((atoms::unsupported(), opcode, value)));
    }
    // SAFETY: the fd is open (locked, not closing); tcsetattr reads one termios through a
    // valid pointer and never waits with TCSANOW.
    if unsafe { libc::tcsetattr(st.fd, libc::TCSANOW, &t) } != 0 {
        return Ok(errno::error_tuple(env, errno::last()));
    }
    // SAFETY: as the first tcgetattr above.
    let (r, applied) = unsafe {
        let mut a: libc::termios = std::mem::zeroed();
        (libc::tcgetattr(st.fd, &mut a), a)
    };
    if r != 0 {
        return Ok(errno::error_tuple(env, errno::last()));
    }
    match modes::not_held(&applied, &wanted) {
        None => Ok(atoms::ok().encode(env)),
        Some((opcode, value)) => Ok(env.error_tuple((atoms::rejected(), opcode, value))),
    }
}

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

/// `terminal_input(fd)`: how the line discipline treats input now, read with `TCGETS`.
/// `{:ok, :raw}` when `ICANON` is off; otherwise `{:ok, {:canonical, veof, max_line,
/// ends, controls, lnexts}}`: the `VEOF` character (0 when disabled), how many bytes of
/// an unfinished line the terminal surely keeps, the bytes after which the line is
/// empty again (`ends`), those that take no room in it (`controls`) and those that quote
/// the byte after them (`lnexts`, `VLNEXT`), see [`classify`].
#[rustler::nif(name = "terminal_input")]
fn nif_terminal_input<'a>(env: Env<'a>, fd: Term<'a>) -> NifResult<Term<'a>> {
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
    let mode = match Canonical::of(&t) {
        None => atoms::raw().encode(env),
        Some(c) => (
            atoms::canonical(),
            c.veof,
            c.max_line,
            binary(env, &c.ends)?,
            binary(env, &c.controls)?,
            binary(env, &c.lnexts)?,
        )
            .encode(env),
    };
    Ok((atoms::ok(), mode).encode(env))
}

fn binary<'a>(env: Env<'a>, bytes: &[u8]) -> NifResult<Term<'a>> {
    let mut bin = NewBinary::new(env, bytes.len());
    bin.as_mut_slice().copy_from_slice(bytes);
    Ok(Binary::from(bin).to_term(env))
}

/// What a byte written to a canonical terminal does to the line being edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Stored in the line: takes one of its 4,095 places.
    Plain,
    /// Leaves the line empty: a line end (`\n`, `VEOF`, `VEOL`, `VEOL2`, `\r` made a
    /// newline by `ICRNL`), or a character that discards it (`VKILL`; `VINTR`, `VQUIT`,
    /// `VSUSP` with `ISIG` and without `NOFLSH`).
    End,
    /// Acted on and not stored (erase, start/stop, reprint, `\r` under `IGNCR`, a signal
    /// character under `NOFLSH`).
    Control,
    /// `VLNEXT`: not stored, and the next byte is stored as it is.
    Lnext,
}

/// A canonical terminal's input characters, from its termios.
struct Canonical {
    veof: u8,
    max_line: u16,
    ends: Vec<u8>,
    controls: Vec<u8>,
    lnexts: Vec<u8>,
}

/// n_tty's line buffer (`N_TTY_BUF_SIZE`) less the place kept for the line's end: an
/// unfinished line longer than this loses bytes (each new one replaces the last).
const MAX_LINE: u16 = 4095;

impl Canonical {
    /// `None` for a raw terminal (`ICANON` off).
    fn of(t: &libc::termios) -> Option<Canonical> {
        if t.c_lflag & libc::ICANON == 0 {
            return None;
        }
        let mut c = Canonical {
            veof: t.c_cc[libc::VEOF],
            // PARMRK stores a 0xff byte twice: count every byte as two.
            max_line: if t.c_iflag & libc::PARMRK != 0 {
                MAX_LINE / 2
            } else {
                MAX_LINE
            },
            ends: Vec::new(),
            controls: Vec::new(),
            lnexts: Vec::new(),
        };
        for b in 1..=u8::MAX {
            match classify(t, b) {
                Class::Plain => {}
                Class::End => c.ends.push(b),
                Class::Control => c.controls.push(b),
                Class::Lnext => c.lnexts.push(b),
            }
        }
        Some(c)
    }
}

/// Classifies one input byte of a canonical terminal as Linux's n_tty does: the byte as
/// `ISTRIP` and `IUCLC` leave it, then `n_tty_receive_char_special`'s checks in order,
/// where the first match wins. A control character set to 0 is disabled, and a NUL
/// byte is never special (n_tty leaves 0 out of its char map).
fn classify(t: &libc::termios, byte: u8) -> Class {
    let (iflag, lflag) = (t.c_iflag, t.c_lflag);
    let iexten = lflag & libc::IEXTEN != 0;
    let mut b = byte;
    if iflag & libc::ISTRIP != 0 {
        b &= 0x7f;
    }
    if iflag & libc::IUCLC != 0 && iexten {
        b = b.to_ascii_lowercase();
    }
    let cc = |i: usize| t.c_cc[i] != 0 && t.c_cc[i] == b;
    if b == 0 {
        return Class::Plain;
    }
    if iflag & libc::IXON != 0 && (cc(libc::VSTART) || cc(libc::VSTOP)) {
        return Class::Control;
    }
    if lflag & libc::ISIG != 0 && (cc(libc::VINTR) || cc(libc::VQUIT) || cc(libc::VSUSP)) {
        // isig() flushes the input unless NOFLSH.
        return if lflag & libc::NOFLSH == 0 {
            Class::End
        } else {
            Class::Control
        };
    }
    // The newline mappings come before the canonical checks, which see the mapped byte.
    let mapped = match b {
        b'\r' if iflag & libc::IGNCR != 0 => return Class::Control,
        b'\r' if iflag & libc::ICRNL != 0 => b'\n',
        b'\n' if iflag & libc::INLCR != 0 => b'\r',
        other => other,
    };
    let is = |i: usize| t.c_cc[i] != 0 && t.c_cc[i] == mapped;
    // eraser(): an erase wins over a kill set to the same byte; a kill empties the line.
    if is(libc::VERASE) || (iexten && is(libc::VWERASE)) {
        return Class::Control;
    }
    if is(libc::VKILL) {
        return Class::End;
    }
    if iexten && is(libc::VLNEXT) {
        return Class::Lnext;
    }
    if iexten && lflag & libc::ECHO != 0 && is(libc::VREPRINT) {
        return Class::Control;
    }
    if mapped == b'\n' || is(libc::VEOF) || is(libc::VEOL) || (iexten && is(libc::VEOL2)) {
        return Class::End;
    }
    Class::Plain
}
