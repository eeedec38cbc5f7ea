//! `sluice_helper`: Sluice's per-node port program. It forks and execs every program,
//! reaps them, signals them, escalates kills, and kills everything when the BEAM goes away.
//! See `docs/architecture.md`.

mod args;
mod cgroup;
mod control;
mod errors;
mod event_loop;
mod kill;
mod procfs;
mod registry;
mod socket;
mod spawn;

use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use sluice_protocol::frame::{Reply, PROTOCOL_VERSION};

use crate::cgroup::Cgroups;
use crate::control::Control;
use crate::socket::{AcceptError, Listener};

/// How long the BEAM has to connect to the fd socket after `hello`.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one fd hand-off may block.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

fn main() {
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sluice_helper: {e}");
            eprintln!(
                "usage: sluice_helper --beam-pid PID [--cgroup auto|off|PATH] [--shutdown-grace-ms MS]"
            );
            std::process::exit(2);
        }
    };
    std::process::exit(run(args));
}

/// Makes sure fds 0-2 are open, so pipes created later never land on them (the child's
/// dup2 onto 0/1/2 relies on that).
fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the fd; open() of a constant C string.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
}

fn remove_cgroups(cg: &Option<Cgroups>) {
    if let Some(cg) = cg {
        let _ = cgroup::remove_tree(&cg.dir);
    }
}

fn run(args: args::Args) -> i32 {
    ensure_std_fds();
    // Own session: a terminal's Ctrl-C must not hit us; we clean up on stdin EOF.
    let _ = nix::unistd::setsid();
    // Orphans of our programs are re-parented to us, so we can reap and kill them.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("sluice_helper: PR_SET_CHILD_SUBREAPER: {e}");
    }
    // SAFETY: setting SIGPIPE's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };

    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    if let Err(e) = mask.thread_block() {
        eprintln!("sluice_helper: blocking signals: {e}");
        return 1;
    }
    let sigfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice_helper: signalfd: {e}");
            return 1;
        }
    };

    let pid = nix::unistd::getpid().as_raw();
    let cgroups = cgroup::detect(&args.cgroup).and_then(|root| {
        cgroup::sweep(&root, pid);
        Cgroups::setup(root, pid)
            .map_err(|e| eprintln!("sluice_helper: cannot create the helper cgroup: {e}"))
            .ok()
    });

    let listener = match Listener::create() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sluice_helper: cannot create the fd socket: {e}");
            remove_cgroups(&cgroups);
            return 1;
        }
    };
    let mut control = Control::new();
    let hello = Reply::Hello {
        version: PROTOCOL_VERSION,
        socket_path: listener.path_bytes(),
        helper_pid: pid as u32,
        cgroup_root: cgroups
            .as_ref()
            .map(|c| c.root.as_os_str().as_bytes().to_vec()),
    };
    if !control.send(&hello) {
        listener.remove();
        remove_cgroups(&cgroups);
        return 1;
    }
    let sock = match listener.accept_beam(args.beam_pid, ACCEPT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            listener.remove();
            remove_cgroups(&cgroups);
            return match e {
                AcceptError::StdinClosed => 0,
                AcceptError::Timeout => {
                    eprintln!("sluice_helper: the BEAM did not connect to the fd socket");
                    1
                }
                AcceptError::Sys(e) => {
                    eprintln!("sluice_helper: accept: {e}");
                    1
                }
            };
        }
    };
    // Only the BEAM may ever connect: the socket and its directory go right away.
    listener.remove();
    socket::set_send_timeout(&sock, SEND_TIMEOUT);

    event_loop::Helper::new(control, sock, sigfd, cgroups, pid, args.shutdown_grace).run()
}
