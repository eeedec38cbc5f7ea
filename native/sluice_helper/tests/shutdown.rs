//! How the helper program ends, and that nothing outlives it: stdin EOF on the port, the
//! fd socket closed, SIGTERM.

use std::os::fd::AsRawFd;

use sluice_protocol::ExitStatus;

mod common;
use common::{dead, read_line, spec, wait_dead, Beam, TERM_IGNORED};

#[test]
fn stdin_eof_kills_everything() {
    let h = Beam::start("off", 500);
    let p = h.spawn(30, spec(&["sleep", "100"]));
    let p2 = h.spawn(31, spec(&["sh", "-c", TERM_IGNORED]));
    assert_eq!(read_line(p2.stdout.as_ref().unwrap()), "ready");
    let helper_pid = h.pid;
    let st = h.stop();
    assert_eq!(st.code(), Some(0));
    assert!(wait_dead(p.pid));
    assert!(wait_dead(p2.pid));
    assert!(dead(helper_pid));
    // Every channel reaches EOF when the helper program is gone.
    p.channel.expect_exit(30);
    p.channel.expect_eof();
}

#[test]
fn closing_the_fd_socket_is_a_shutdown() {
    let mut h = Beam::start("off", 500);
    let p = h.spawn(32, spec(&["sleep", "100"]));
    // What closing it does to the helper program's end (we keep the fd for Drop).
    nix::sys::socket::shutdown(h.sock.as_raw_fd(), nix::sys::socket::Shutdown::Both).unwrap();
    assert_eq!(
        common::wait_exit(&mut h.child, common::TIMEOUT).code(),
        Some(0)
    );
    assert!(wait_dead(p.pid));
}

#[test]
fn sigterm_shuts_down() {
    let h = Beam::start("off", 500);
    let p = h.spawn(50, spec(&["sleep", "100"]));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(h.pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // The BEAM still listens, so it hears about the program's end.
    assert_eq!(
        p.channel.expect_exit(50),
        ExitStatus::Signaled {
            signum: 15,
            core: false
        }
    );
    assert_eq!(h.stop().code(), Some(0));
    assert!(wait_dead(p.pid));
}
