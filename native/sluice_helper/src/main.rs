//! `sluice_helper`, the helper program: Sluice's per-node port program. It starts every
//! program, reaps them, signals them, stops them when their owner closes their channel,
//! adopts processes it did not start (through pidfds), and kills everything when the BEAM
//! goes away. This file is the start-up; the protocol
//! is `docs/protocol.md`, the design `docs/architecture.md`.

mod adopted;
mod args;
mod cgroup;
mod channels;
mod errors;
mod event_loop;
mod kill;
mod kill_command;
mod lifecycle;
mod managed;
mod port;
mod procfs;
mod programs;
mod seqpacket;
mod shutdown;
mod signals;
mod socket;
mod spawn;
mod sys;
mod unmanageable;

use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use sluice_protocol::{Reply, PROTOCOL_VERSION};

use crate::cgroup::Cgroups;
use crate::channels::SpawnSocket;
use crate::managed::Managed;
use crate::port::Port;
use crate::programs::Programs;
use crate::signals::Signals;
use crate::socket::{AcceptError, Listener};

/// How long the BEAM has to connect to the fd socket after `hello`.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

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

fn remove_cgroups(cg: &Option<Cgroups>) {
    if let Some(cg) = cg {
        let _ = cgroup::remove_tree(&cg.dir);
    }
}

fn run(args: args::Args) -> i32 {
    sys::ensure_std_fds();
    // fd 1 is the port: nothing a program inherits may be it (docs/protocol.md).
    sys::keep_stderr_off_port();
    // Not dumpable: /proc/SELF/{fd,mem,environ,...} are then root's and need
    // CAP_SYS_PTRACE, so a program running as our own uid (a node that is not root runs
    // its programs so) cannot open the port as /proc/HELPER/fd/1, nor our memory. Programs
    // are dumpable again after their exec.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("sluice_helper: PR_SET_DUMPABLE: {e}");
    }
    spawn::raise_fd_limit();
    // Own session: a terminal's Ctrl-C must not hit us; we clean up on stdin EOF.
    let _ = nix::unistd::setsid();
    // Orphans of our programs are re-parented to us, so we can reap and kill them.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("sluice_helper: PR_SET_CHILD_SUBREAPER: {e}");
    }
    sys::ignore_sigpipe();
    let signals = match Signals::setup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice_helper: {e}");
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
    let mut port = Port::new();
    let hello = Reply::Hello {
        version: PROTOCOL_VERSION,
        socket_path: listener.path_bytes(),
        helper_pid: pid as u32,
        cgroup_root: cgroups
            .as_ref()
            .map(|c| c.root.as_os_str().as_bytes().to_vec()),
    };
    if !port.send(&hello) {
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

    event_loop::Helper {
        port,
        socket: SpawnSocket::new(sock),
        signals,
        programs: Programs::new(cgroups, pid),
        managed: Managed::new(pid, args.beam_pid),
        shutdown_grace: args.shutdown_grace,
    }
    .run()
}
