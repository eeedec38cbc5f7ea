//! The program's pseudo-terminal, made before the clone so that every failure (no pty
//! available, a mode the terminal rejects) is a spawn error at stage `pty`: the master
//! goes to the BEAM, the slave becomes the child's fds 0-2 and its controlling terminal
//! (the child only calls `TIOCSCTTY`), and the helper program's copy of the slave is
//! closed right after the clone, so the master reads EOF (EIO) once the program and
//! everything it started have closed theirs.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::{fchmod, Mode};
use nix::sys::termios::{tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::{fchown, Gid, Group, Uid};
use sluice_protocol::{modes, PtySpec, Stage};

use super::SpawnFailure;
use crate::sys;

/// Both sides of a fresh terminal, set up as the spec asks.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

fn failure(errno: Errno, what: &str) -> SpawnFailure {
    SpawnFailure::before_fork(errno, Stage::Pty, what)
}

/// Why no terminal could be had, in words that say what to do about it: ENOSPC is the
/// kernel's answer when every pseudo-terminal its limit allows is in use.
fn opening_failed(e: Errno) -> SpawnFailure {
    match e {
        Errno::ENOSPC => failure(
            e,
            "no free pseudo-terminal: as many are open as the system allows \
             (sysctl kernel.pty.max, or the devpts mount's max=)",
        ),
        Errno::ENOENT | Errno::ENODEV => failure(e, "no pseudo-terminals here (/dev/ptmx)"),
        _ => failure(e, "cannot open a pseudo-terminal"),
    }
}

/// Opens a terminal with the spec's modes and window size.
pub fn open_pty(spec: &PtySpec) -> Result<Pty, SpawnFailure> {
    // O_NOCTTY on both sides: the helper program is a session leader without a terminal,
    // and must not acquire this one.
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = posix_openpt(flags).map_err(opening_failed)?;
    grantpt(&master).map_err(|e| failure(e, "grantpt failed"))?;
    unlockpt(&master).map_err(|e| failure(e, "unlockpt failed"))?;
    let name = ptsname_r(&master).map_err(|e| failure(e, "ptsname failed"))?;
    let slave = open(name.as_str(), flags, Mode::empty())
        .map_err(|e| failure(e, &format!("cannot open {name}")))?;
    set_modes(slave.as_fd(), &spec.modes)?;
    sys::set_window_size(master.as_fd(), spec.rows, spec.cols)
        .map_err(|e| failure(e, "cannot set the window size"))?;
    Ok(Pty {
        master: master.into(),
        slave,
    })
}

/// The group a login gives terminals: `tty`, where the system has one (looked up once:
/// `getgrnam_r` reads the group database, which does not change under a running node).
fn tty_group() -> Option<libc::gid_t> {
    static TTY: OnceLock<Option<libc::gid_t>> = OnceLock::new();
    *TTY.get_or_init(|| {
        Group::from_name("tty")
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    })
}

/// Owner, group and mode of the terminal of a program that runs as user `uid` (group
/// `gid`): as login(1) and sshd leave it, the user and the `tty` group with 0620 (the group
/// may write to it: `write`, `wall`), or without a `tty` group the user's group and 0600.
pub fn ownership(
    uid: libc::uid_t,
    gid: libc::gid_t,
    tty: Option<libc::gid_t>,
) -> (libc::uid_t, libc::gid_t, u32) {
    match tty {
        Some(tty) => (uid, tty, 0o620),
        None => (uid, gid, 0o600),
    }
}

/// Hands the terminal to the user the program runs as (`user:`), before the clone: the
/// kernel made it root's, 0600 (the helper program opened it), and the program could not
/// reopen it by name (`$(tty)`, `screen`, `pinentry`, `ssh`'s prompts).
pub fn give_to(
    slave: BorrowedFd<'_>,
    uid: libc::uid_t,
    gid: libc::gid_t,
) -> Result<(), SpawnFailure> {
    let (uid, gid, mode) = ownership(uid, gid, tty_group());
    fchown(slave, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| failure(e, "cannot give the terminal to the user"))?;
    fchmod(slave, Mode::from_bits_truncate(mode))
        .map_err(|e| failure(e, "cannot set the terminal's mode"))
}

/// Applies the modes over the kernel's defaults, then reads them back: a mode the
/// terminal refused (EINVAL, or silently kept as it was) fails the spawn.
fn set_modes(slave: BorrowedFd<'_>, wanted: &[(u8, u32)]) -> Result<(), SpawnFailure> {
    if wanted.is_empty() {
        return Ok(());
    }
    let current = tcgetattr(slave).map_err(|e| failure(e, "cannot read the terminal modes"))?;
    let mut raw: libc::termios = current.into();
    modes::apply_all(&mut raw, wanted).map_err(|(opcode, value)| {
        let what = format!(
            "terminal mode {} = {value} is not supported",
            modes::name(opcode)
        );
        failure(Errno::EINVAL, &what)
    })?;
    let rejected = |e| {
        let names: Vec<String> = wanted.iter().map(|m| modes::name(m.0)).collect();
        failure(
            e,
            &format!("the terminal rejected the modes {}", names.join(", ")),
        )
    };
    tcsetattr(slave, SetArg::TCSANOW, &Termios::from(raw)).map_err(rejected)?;
    let applied: libc::termios = tcgetattr(slave).map_err(rejected)?.into();
    match modes::not_held(&applied, wanted) {
        None => Ok(()),
        Some((opcode, value)) => {
            let what = format!(
                "the terminal rejected mode {} = {value}",
                modes::name(opcode)
            );
            Err(failure(Errno::EINVAL, &what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(modes: Vec<(u8, u32)>) -> PtySpec {
        PtySpec {
            rows: 40,
            cols: 100,
            modes,
        }
    }

    #[test]
    fn opens_with_modes_applied() {
        let pty = open_pty(&spec(vec![(53, 0), (51, 0), (1, 7), (129, 9600)])).unwrap();
        let t: libc::termios = tcgetattr(pty.slave.as_fd()).unwrap().into();
        assert_eq!(t.c_lflag & (libc::ECHO | libc::ICANON), 0);
        assert_eq!(t.c_cc[libc::VINTR], 7);
        assert_eq!(t.c_cflag & libc::CBAUD, libc::B9600);
    }

    #[test]
    fn a_users_terminal_is_left_as_a_login_leaves_it() {
        assert_eq!(ownership(1000, 1000, Some(5)), (1000, 5, 0o620));
        assert_eq!(ownership(1000, 100, None), (1000, 100, 0o600));
        // Applied to a real terminal (to ourselves, so it works unprivileged too).
        let pty = open_pty(&spec(vec![])).unwrap();
        let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
        match give_to(pty.slave.as_fd(), uid.as_raw(), gid.as_raw()) {
            Ok(()) => {
                let st = nix::sys::stat::fstat(pty.slave.as_fd()).unwrap();
                let (_, want_gid, want_mode) = ownership(uid.as_raw(), gid.as_raw(), tty_group());
                assert_eq!((st.st_uid, st.st_gid), (uid.as_raw(), want_gid));
                assert_eq!(st.st_mode & 0o7777, want_mode);
            }
            // Unprivileged and not a member of the tty group: chown to it is refused.
            Err(e) => assert_eq!((e.stage, e.errno), (Stage::Pty, Errno::EPERM)),
        }
    }

    #[test]
    fn running_out_of_terminals_names_the_limit() {
        let f = opening_failed(Errno::ENOSPC);
        assert_eq!((f.stage, f.errno), (Stage::Pty, Errno::ENOSPC));
        assert!(f.detail.contains("kernel.pty.max"), "{}", f.detail);
        assert!(opening_failed(Errno::ENOENT).detail.contains("/dev/ptmx"));
    }

    #[test]
    fn refused_modes_fail_at_the_pty_stage() {
        // Parity: a pseudo-terminal refuses it (EINVAL or kept off).
        let e = open_pty(&spec(vec![(92, 1)])).err().unwrap();
        assert_eq!((e.stage, e.errno), (Stage::Pty, Errno::EINVAL));
        assert!(e.detail.contains("PARENB"), "{}", e.detail);
        let e = open_pty(&spec(vec![(128, 12_345)])).err().unwrap();
        assert!(e.detail.contains("TTY_OP_ISPEED"), "{}", e.detail);
        let e = open_pty(&spec(vec![(20, 1)])).err().unwrap();
        assert_eq!(e.stage, Stage::Pty);
    }
}
