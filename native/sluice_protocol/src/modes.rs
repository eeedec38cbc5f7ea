//! RFC 4254 (section 8) terminal modes → Linux termios: the one table of what each
//! opcode changes. The BEAM maps mode names to opcodes (`Sluice.Pty`); this maps opcodes
//! to a control character, a flag bit or a speed. Pure: the helper program (the modes of
//! a new terminal, `spawn/pty.rs`) and the NIF (a running program's, `terminal.rs`) read
//! and write the termios themselves, and both check it with [`apply_all`] and
//! [`not_held`].
//!
//! Every opcode of the RFC is accepted. Three have no Linux equivalent and are accepted
//! but change nothing: VDSUSP (11), VFLUSH (15) and VSTATUS (17). IUTF8 (42) is the
//! RFC 8160 addition. A control character value of 255 means "disabled" (the SSH
//! convention); Linux's disabled value, 0, is stored.

use libc::{speed_t, tcflag_t, termios};

/// What one opcode changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `c_cc[index]`.
    Cc(usize),
    Iflag(tcflag_t),
    Oflag(tcflag_t),
    Lflag(tcflag_t),
    Cflag(tcflag_t),
    /// The character size (CS7, CS8): value non-zero selects it.
    CharSize(tcflag_t),
    Ispeed,
    Ospeed,
    /// No Linux equivalent: accepted, ignored.
    Ignored,
}

use Target::*;

/// `(opcode, RFC name, target)`.
const MODES: &[(u8, &str, Target)] = &[
    (1, "VINTR", Cc(libc::VINTR)),
    (2, "VQUIT", Cc(libc::VQUIT)),
    (3, "VERASE", Cc(libc::VERASE)),
    (4, "VKILL", Cc(libc::VKILL)),
    (5, "VEOF", Cc(libc::VEOF)),
    (6, "VEOL", Cc(libc::VEOL)),
    (7, "VEOL2", Cc(libc::VEOL2)),
    (8, "VSTART", Cc(libc::VSTART)),
    (9, "VSTOP", Cc(libc::VSTOP)),
    (10, "VSUSP", Cc(libc::VSUSP)),
    (11, "VDSUSP", Ignored),
    (12, "VREPRINT", Cc(libc::VREPRINT)),
    (13, "VWERASE", Cc(libc::VWERASE)),
    (14, "VLNEXT", Cc(libc::VLNEXT)),
    (15, "VFLUSH", Ignored),
    (16, "VSWTCH", Cc(libc::VSWTC)),
    (17, "VSTATUS", Ignored),
    (18, "VDISCARD", Cc(libc::VDISCARD)),
    (30, "IGNPAR", Iflag(libc::IGNPAR)),
    (31, "PARMRK", Iflag(libc::PARMRK)),
    (32, "INPCK", Iflag(libc::INPCK)),
    (33, "ISTRIP", Iflag(libc::ISTRIP)),
    (34, "INLCR", Iflag(libc::INLCR)),
    (35, "IGNCR", Iflag(libc::IGNCR)),
    (36, "ICRNL", Iflag(libc::ICRNL)),
    (37, "IUCLC", Iflag(libc::IUCLC)),
    (38, "IXON", Iflag(libc::IXON)),
    (39, "IXANY", Iflag(libc::IXANY)),
    (40, "IXOFF", Iflag(libc::IXOFF)),
    (41, "IMAXBEL", Iflag(libc::IMAXBEL)),
    (42, "IUTF8", Iflag(libc::IUTF8)),
    (50, "ISIG", Lflag(libc::ISIG)),
    (51, "ICANON", Lflag(libc::ICANON)),
    (52, "XCASE", Lflag(libc::XCASE)),
    (53, "ECHO", Lflag(libc::ECHO)),
    (54, "ECHOE", Lflag(libc::ECHOE)),
    (55, "ECHOK", Lflag(libc::ECHOK)),
    (56, "ECHONL", Lflag(libc::ECHONL)),
    (57, "NOFLSH", Lflag(libc::NOFLSH)),
    (58, "TOSTOP", Lflag(libc::TOSTOP)),
    (59, "IEXTEN", Lflag(libc::IEXTEN)),
    (60, "ECHOCTL", Lflag(libc::ECHOCTL)),
    (61, "ECHOKE", Lflag(libc::ECHOKE)),
    (62, "PENDIN", Lflag(libc::PENDIN)),
    (70, "OPOST", Oflag(libc::OPOST)),
    (71, "OLCUC", Oflag(libc::OLCUC)),
    (72, "ONLCR", Oflag(libc::ONLCR)),
    (73, "OCRNL", Oflag(libc::OCRNL)),
    (74, "ONOCR", Oflag(libc::ONOCR)),
    (75, "ONLRET", Oflag(libc::ONLRET)),
    (90, "CS7", CharSize(libc::CS7)),
    (91, "CS8", CharSize(libc::CS8)),
    (92, "PARENB", Cflag(libc::PARENB)),
    (93, "PARODD", Cflag(libc::PARODD)),
    (128, "TTY_OP_ISPEED", Ispeed),
    (129, "TTY_OP_OSPEED", Ospeed),
];

/// The line speeds Linux knows, in bits per second, with their `B*` constants.
const SPEEDS: &[(u32, speed_t)] = &[
    (0, libc::B0),
    (50, libc::B50),
    (75, libc::B75),
    (110, libc::B110),
    (134, libc::B134),
    (150, libc::B150),
    (200, libc::B200),
    (300, libc::B300),
    (600, libc::B600),
    (1200, libc::B1200),
    (1800, libc::B1800),
    (2400, libc::B2400),
    (4800, libc::B4800),
    (9600, libc::B9600),
    (19200, libc::B19200),
    (38400, libc::B38400),
    (57600, libc::B57600),
    (115_200, libc::B115200),
    (230_400, libc::B230400),
    (460_800, libc::B460800),
    (500_000, libc::B500000),
    (576_000, libc::B576000),
    (921_600, libc::B921600),
    (1_000_000, libc::B1000000),
    (1_152_000, libc::B1152000),
    (1_500_000, libc::B1500000),
    (2_000_000, libc::B2000000),
    (2_500_000, libc::B2500000),
    (3_000_000, libc::B3000000),
    (3_500_000, libc::B3500000),
    (4_000_000, libc::B4000000),
];

/// The RFC name of an opcode, for messages.
pub fn name(opcode: u8) -> String {
    MODES
        .iter()
        .find(|(o, _, _)| *o == opcode)
        .map_or_else(|| format!("opcode {opcode}"), |(_, n, _)| (*n).to_string())
}

fn target(opcode: u8) -> Option<Target> {
    MODES
        .iter()
        .find(|(o, _, _)| *o == opcode)
        .map(|(_, _, t)| *t)
}

fn set_bit(field: &mut tcflag_t, bit: tcflag_t, on: bool) {
    if on {
        *field |= bit;
    } else {
        *field &= !bit;
    }
}

/// Why a mode cannot be applied: its opcode, for the message.
#[derive(Debug, PartialEq, Eq)]
pub struct BadMode(pub u8);

/// Applies `(opcode, value)` to `t`. Fails for an unknown opcode, a control character
/// over 255 or a speed Linux does not have.
pub fn apply(t: &mut termios, opcode: u8, value: u32) -> Result<(), BadMode> {
    let on = value != 0;
    match target(opcode).ok_or(BadMode(opcode))? {
        Cc(i) => {
            let c = match value {
                255 => 0,
                v => u8::try_from(v).map_err(|_| BadMode(opcode))?,
            };
            t.c_cc[i] = c;
        }
        Iflag(bit) => set_bit(&mut t.c_iflag, bit, on),
        Oflag(bit) => set_bit(&mut t.c_oflag, bit, on),
        Lflag(bit) => set_bit(&mut t.c_lflag, bit, on),
        Cflag(bit) => set_bit(&mut t.c_cflag, bit, on),
        CharSize(size) => {
            if on {
                t.c_cflag = (t.c_cflag & !libc::CSIZE) | size;
            }
        }
        Ispeed | Ospeed => {
            let speed = SPEEDS
                .iter()
                .find(|(bps, _)| *bps == value)
                .map(|(_, b)| *b)
                .ok_or(BadMode(opcode))?;
            // termios keeps one speed on Linux (CBAUD): input and output are the same.
            t.c_cflag = (t.c_cflag & !libc::CBAUD) | speed;
        }
        Ignored => {}
    }
    Ok(())
}

/// Applies every `(opcode, value)` to `t`, in order: the first one that cannot be is the
/// error (nothing is set on a terminal yet).
pub fn apply_all(t: &mut termios, wanted: &[(u8, u32)]) -> Result<(), (u8, u32)> {
    wanted
        .iter()
        .try_for_each(|&(opcode, value)| apply(t, opcode, value).map_err(|_| (opcode, value)))
}

/// The first mode of `wanted` that `actual` (read back after setting them) does not hold,
/// counting only the last value given for each opcode: the terminal refused it (a
/// `tcsetattr` succeeds when any change took).
pub fn not_held(actual: &termios, wanted: &[(u8, u32)]) -> Option<(u8, u32)> {
    wanted.iter().enumerate().find_map(|(i, &(opcode, value))| {
        let last = !wanted[i + 1..].iter().any(|m| m.0 == opcode);
        (last && !holds(actual, opcode, value)).then_some((opcode, value))
    })
}

/// Whether `actual` (read back from the terminal) holds what `(opcode, value)` asked for.
pub fn holds(actual: &termios, opcode: u8, value: u32) -> bool {
    let mut wanted = *actual;
    apply(&mut wanted, opcode, value).is_ok() && same(&wanted, actual)
}

fn same(a: &termios, b: &termios) -> bool {
    a.c_iflag == b.c_iflag
        && a.c_oflag == b.c_oflag
        && a.c_cflag == b.c_cflag
        && a.c_lflag == b.c_lflag
        && a.c_cc == b.c_cc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zero() -> termios {
        // A termios is plain data; all fields zero is a valid value.
        termios {
            c_iflag: 0,
            c_oflag: 0,
            c_cflag: 0,
            c_lflag: 0,
            c_line: 0,
            c_cc: [0; libc::NCCS],
            c_ispeed: 0,
            c_ospeed: 0,
        }
    }

    #[test]
    fn opcodes_are_unique_and_cover_the_rfc() {
        let mut seen: Vec<u8> = MODES.iter().map(|m| m.0).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), MODES.len());
        // RFC 4254 section 8: 1-18, 30-41, 50-62, 70-75, 90-93, 128-129 (+ IUTF8, 42).
        let rfc = (1..=18)
            .chain(30..=42)
            .chain(50..=62)
            .chain(70..=75)
            .chain(90..=93)
            .chain(128..=129);
        assert!(rfc.eq(seen.iter().copied()));
    }

    #[test]
    fn applies_flags_chars_sizes_and_speeds() {
        let mut t = zero();
        apply(&mut t, 53, 1).unwrap();
        assert_eq!(t.c_lflag, libc::ECHO);
        apply(&mut t, 53, 0).unwrap();
        assert_eq!(t.c_lflag, 0);
        apply(&mut t, 1, 3).unwrap();
        assert_eq!(t.c_cc[libc::VINTR], 3);
        apply(&mut t, 5, 255).unwrap();
        assert_eq!(t.c_cc[libc::VEOF], 0);
        apply(&mut t, 91, 1).unwrap();
        assert_eq!(t.c_cflag & libc::CSIZE, libc::CS8);
        apply(&mut t, 129, 9600).unwrap();
        assert_eq!(t.c_cflag & libc::CBAUD, libc::B9600);
        assert!(holds(&t, 129, 9600) && !holds(&t, 129, 38_400));
        apply(&mut t, 11, 1).unwrap();
        assert!(holds(&t, 11, 1));
    }

    #[test]
    fn applies_in_order_and_checks_the_last_value_of_each() {
        let mut t = zero();
        apply_all(&mut t, &[(53, 1), (1, 3), (53, 0)]).unwrap();
        assert_eq!(t.c_lflag & libc::ECHO, 0);
        assert_eq!(not_held(&t, &[(53, 1), (1, 3), (53, 0)]), None);
        assert_eq!(not_held(&t, &[(53, 0), (1, 4)]), Some((1, 4)));
        assert_eq!(apply_all(&mut t, &[(53, 1), (1, 256)]), Err((1, 256)));
    }

    #[test]
    fn refuses_what_linux_cannot_hold() {
        let mut t = zero();
        assert_eq!(apply(&mut t, 0, 1), Err(BadMode(0)));
        assert_eq!(apply(&mut t, 19, 1), Err(BadMode(19)));
        assert_eq!(apply(&mut t, 1, 256), Err(BadMode(1)));
        assert_eq!(apply(&mut t, 128, 12_345), Err(BadMode(128)));
        assert_eq!(name(92), "PARENB");
        assert_eq!(name(200), "opcode 200");
    }
}
