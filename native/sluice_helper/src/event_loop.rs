//! The single-threaded event loop: requests from stdin, SIGCHLD and termination signals
//! from a signalfd, kill deadlines, and the shutdown that kills everything.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signalfd::SignalFd;
use sluice_protocol::frame::{ExitStatus, Reply, Request, SpawnSpec};
use sluice_protocol::handoff::Handoff;

use crate::cgroup::{self, Cgroups};
use crate::control::{self, Control, Input};
use crate::errors::{describe, errno_name};
use crate::kill::{self, Children};
use crate::procfs;
use crate::registry::{Program, Registry};
use crate::socket;
use crate::spawn;

/// How often programs whose leader is gone are checked for remnants.
const CHECK_KILLED: Duration = Duration::from_millis(100);
const CHECK_IDLE: Duration = Duration::from_secs(1);
/// How long the final SIGKILL-and-reap phase of a shutdown may take.
const FINAL_REAP: Duration = Duration::from_secs(2);

pub struct Helper {
    control: Control,
    sock: OwnedFd,
    sigfd: SignalFd,
    cgroups: Option<Cgroups>,
    reg: Registry,
    helper_pid: i32,
    shutdown_grace: Duration,
    last_check: Instant,
    /// Something changed that may let programs be forgotten.
    dirty: bool,
    /// A shutdown was requested.
    stop: bool,
}

fn exit_status(status: i32) -> Option<ExitStatus> {
    if libc::WIFEXITED(status) {
        Some(ExitStatus::Exited(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(ExitStatus::Signaled {
            signum: libc::WTERMSIG(status),
            core: libc::WCOREDUMP(status),
        })
    } else {
        None
    }
}

fn ms_until(t: Instant, now: Instant) -> i32 {
    let d = t.saturating_duration_since(now);
    // Round up so the loop does not wake just before the deadline and spin.
    d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
}

impl Helper {
    pub fn new(
        control: Control,
        sock: OwnedFd,
        sigfd: SignalFd,
        cgroups: Option<Cgroups>,
        helper_pid: i32,
        shutdown_grace: Duration,
    ) -> Helper {
        Helper {
            control,
            sock,
            sigfd,
            cgroups,
            reg: Registry::default(),
            helper_pid,
            shutdown_grace,
            last_check: Instant::now(),
            dirty: false,
            stop: false,
        }
    }

    /// Runs until shutdown; returns the exit code.
    pub fn run(mut self) -> i32 {
        loop {
            let timeout = self.poll_timeout();
            let mut fds = [
                libc::pollfd {
                    fd: 0,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.sigfd.as_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            if let Err(e) = control::poll(&mut fds, timeout) {
                eprintln!("sluice_helper: poll: {e}");
                return self.shutdown();
            }
            if fds[1].revents != 0 {
                self.drain_signals();
            }
            // Cheap (one waitpid when nothing exited), and robust against lost wake-ups.
            self.reap();
            if fds[0].revents != 0 && !self.stop {
                match self.control.read_stdin() {
                    Input::Data => self.handle_frames(),
                    Input::Nothing => {}
                    Input::Eof => self.stop = true,
                    Input::Error(e) => {
                        eprintln!("sluice_helper: reading stdin: {e}");
                        self.stop = true;
                    }
                }
            }
            if self.stop || self.control.out_broken {
                return self.shutdown();
            }
            self.run_deadlines();
            self.housekeeping();
        }
    }

    fn poll_timeout(&self) -> i32 {
        let now = Instant::now();
        let mut wake = self.reg.next_deadline();
        let (lingering, killed) = self.reg.has_lingering();
        if lingering {
            let tick = self.last_check + if killed { CHECK_KILLED } else { CHECK_IDLE };
            wake = Some(wake.map_or(tick, |w| w.min(tick)));
        }
        wake.map_or(-1, |w| ms_until(w, now))
    }

    /// Reads every pending signal; termination signals request a shutdown.
    fn drain_signals(&mut self) {
        loop {
            match self.sigfd.read_signal() {
                Ok(Some(info)) => {
                    let sig = info.ssi_signo as i32;
                    if sig == libc::SIGTERM || sig == libc::SIGINT || sig == libc::SIGHUP {
                        self.stop = true;
                    }
                }
                Ok(None) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("sluice_helper: signalfd: {e}");
                    return;
                }
            }
        }
    }

    /// Reaps every exited child. Returns true when the helper has no children left.
    fn reap(&mut self) -> bool {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status into a local integer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == 0 {
                return false;
            }
            if pid < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    _ => return true, // ECHILD
                }
            }
            if let Some(id) = self.reg.leader_reaped(pid) {
                self.dirty = true;
                if let Some(status) = exit_status(status) {
                    self.control.send(&Reply::Exit { id, status });
                }
            } else if let Some(cg) = self.reg.failed.remove(&pid) {
                // Exec failed: already reported as spawn_error, reaped silently.
                self.reg.stale_cgroups.extend(cg);
                self.dirty = true;
            }
            // Anything else is an adopted orphan: reaped silently.
        }
    }

    fn handle_frames(&mut self) {
        while let Some(frame) = self.control.reader.next_frame() {
            match frame {
                Err(e) => {
                    self.control.send(&Reply::Error {
                        id: None,
                        message: e.to_string(),
                    });
                }
                Ok(payload) => match Request::decode(&payload) {
                    Ok(req) => self.handle(req),
                    Err(e) => {
                        let reply = match (e.id, e.spawn_stage) {
                            (Some(id), Some(stage)) => Reply::SpawnError {
                                id,
                                errno: "EINVAL".into(),
                                stage: stage.into(),
                                detail: e.message,
                            },
                            (id, _) => Reply::Error {
                                id,
                                message: e.message,
                            },
                        };
                        self.control.send(&reply);
                    }
                },
            }
            if self.stop || self.control.out_broken {
                return;
            }
        }
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Spawn { id, spec } => self.spawn(id, &spec),
            Request::Signal { id, signum } => self.signal(id, signum),
            Request::Kill {
                id,
                signum,
                grace_ms,
            } => self.kill(id, signum, grace_ms),
        }
    }

    fn spawn(&mut self, id: u64, spec: &SpawnSpec) {
        if self.reg.programs.contains_key(&id) {
            self.control.send(&Reply::SpawnError {
                id,
                errno: "EEXIST".into(),
                stage: "id".into(),
                detail: format!("a program with id {id} is still known to the helper"),
            });
            return;
        }
        let started = match spawn::spawn(spec, self.helper_pid, self.cgroups.as_mut()) {
            Ok(s) => s,
            Err(f) => {
                match f.pid {
                    Some(pid) => {
                        self.reg.failed.insert(pid, f.cgroup.clone());
                    }
                    None => self.reg.stale_cgroups.extend(f.cgroup.clone()),
                }
                self.control.send(&Reply::SpawnError {
                    id,
                    errno: f.errno_name(),
                    stage: f.stage.into(),
                    detail: f.detail,
                });
                return;
            }
        };
        let raw: Vec<RawFd> = started.beam_fds.iter().map(|f| f.as_raw_fd()).collect();
        let payload = Handoff {
            id,
            nfds: raw.len() as u8,
        }
        .encode();
        let sent = socket::send_fds(self.sock.as_fd(), &payload, &raw);
        // The BEAM has its own copies now (or never will): ours go either way.
        drop(started.beam_fds);
        match sent {
            Ok(()) => {
                self.reg
                    .insert(Program::new(id, started.pid, started.cgroup));
                self.control.send(&Reply::Spawned {
                    id,
                    os_pid: started.pid as u32,
                });
            }
            Err(e) => {
                // The program cannot be used: kill it (its leader is un-reaped, so the
                // group id is still ours) and reap it silently.
                if let Some(dir) = &started.cgroup {
                    let _ = cgroup::kill(dir);
                }
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(-started.pid, libc::SIGKILL) };
                self.reg.failed.insert(started.pid, started.cgroup);
                self.control.send(&Reply::SpawnError {
                    id,
                    errno: errno_name(e),
                    stage: "handoff".into(),
                    detail: format!(
                        "sending the pipe fds to the BEAM failed: {} ({})",
                        describe(e),
                        errno_name(e)
                    ),
                });
                if matches!(e, Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN) {
                    eprintln!("sluice_helper: the fd socket is closed; shutting down");
                    self.stop = true;
                }
            }
        }
    }

    fn signal(&mut self, id: u64, signum: i32) {
        if !kill::valid_signal(signum) {
            self.control.send(&Reply::Error {
                id: Some(id),
                message: format!("invalid signal number {signum}"),
            });
            return;
        }
        let Some(p) = self.reg.programs.get(&id) else {
            return;
        };
        if let Err(e) = kill::signal_leader_group(p, signum) {
            self.control.send(&Reply::Error {
                id: Some(id),
                message: format!("signal {signum} to program {id}: {e}"),
            });
        }
    }

    fn kill(&mut self, id: u64, signum: i32, grace_ms: u64) {
        if !kill::valid_signal(signum) {
            self.control.send(&Reply::Error {
                id: Some(id),
                message: format!("invalid signal number {signum}"),
            });
            return;
        }
        let Some(p) = self.reg.programs.get_mut(&id) else {
            return;
        };
        p.kill_requested = true;
        self.dirty = true;
        let kids = Children::new();
        if grace_ms == 0 || signum == libc::SIGKILL || p.sigkill_done {
            kill::hard_kill(p, &kids);
            return;
        }
        // With a cgroup, escapees are left to cgroup.kill at the deadline.
        let walk = p.cgroup.is_none();
        kill::soft_kill(p, &kids, signum, walk);
        let due = Instant::now() + Duration::from_millis(grace_ms.min(u32::MAX as u64));
        p.deadline = Some(p.deadline.map_or(due, |d| d.min(due)));
    }

    fn run_deadlines(&mut self) {
        let now = Instant::now();
        let kids = Children::new();
        for p in self.reg.programs.values_mut() {
            if p.deadline.is_some_and(|d| d <= now) {
                kill::hard_kill(p, &kids);
                self.dirty = true;
            }
        }
    }

    /// Forgets programs whose leader was reaped and of which nothing remains, and retries
    /// removing cgroups that were busy.
    fn housekeeping(&mut self) {
        let (lingering, killed) = self.reg.has_lingering();
        if !lingering {
            return;
        }
        let now = Instant::now();
        let every = if killed { CHECK_KILLED } else { CHECK_IDLE };
        if !self.dirty && now.duration_since(self.last_check) < every {
            return;
        }
        self.dirty = false;
        self.last_check = now;

        let cgroups = &mut self.cgroups;
        self.reg
            .stale_cgroups
            .retain(|d| match release_cgroup(cgroups, d, true) {
                Ok(()) => false,
                Err(e) => e.kind() != std::io::ErrorKind::NotFound,
            });
        let kids = Children::new();
        let mut gone = Vec::new();
        for p in self.reg.programs.values() {
            if !p.leader_reaped {
                continue;
            }
            let remains = match &p.cgroup {
                Some(dir) => cgroup::populated(dir).unwrap_or(false),
                None => kids.has_group(p.pid) || kill::descendants_alive(p),
            };
            if remains {
                continue;
            }
            if let Some(dir) = &p.cgroup {
                match release_cgroup(&mut self.cgroups, dir, !p.sigkill_done) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => continue, // still busy: retried on a later round
                }
            }
            gone.push(p.id);
        }
        for id in gone {
            self.reg.programs.remove(&id);
        }
    }

    /// SIGTERM everything, wait the grace, SIGKILL everything, reap, remove cgroups.
    fn shutdown(mut self) -> i32 {
        self.stop = true;
        let kids = Children::new();
        for p in self.reg.programs.values_mut() {
            kill::soft_kill(p, &kids, libc::SIGTERM, true);
        }
        let end = Instant::now() + self.shutdown_grace;
        loop {
            if self.reap() || Instant::now() >= end {
                break;
            }
            self.wait_signal(ms_until(end, Instant::now()).min(50));
        }

        if let Some(cg) = &self.cgroups {
            let _ = cgroup::kill(&cg.dir);
        }
        let kids = Children::new();
        for p in self.reg.programs.values_mut() {
            kill::hard_kill(p, &kids);
        }
        let end = Instant::now() + FINAL_REAP;
        loop {
            // Our children (adopted orphans included) cannot be reused before we reap them.
            for (pid, _) in procfs::helper_children() {
                kill::kill_child(pid);
            }
            if self.reap() {
                break;
            }
            if Instant::now() >= end {
                eprintln!("sluice_helper: children left after shutdown");
                break;
            }
            self.wait_signal(10);
        }

        if let Some(cg) = &self.cgroups {
            let end = Instant::now() + Duration::from_millis(500);
            while let Err(e) = cgroup::remove_tree(&cg.dir) {
                if e.kind() == std::io::ErrorKind::NotFound || Instant::now() >= end {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for d in &self.reg.stale_cgroups {
            let _ = cgroup::remove_tree(d);
        }
        0
    }

    fn wait_signal(&mut self, ms: i32) {
        let mut fds = [libc::pollfd {
            fd: self.sigfd.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let _ = control::poll(&mut fds, ms.max(1));
        self.drain_signals();
    }
}

/// Returns an empty program cgroup to the pool (or removes it); see `Cgroups::release`.
fn release_cgroup(
    cgroups: &mut Option<Cgroups>,
    dir: &std::path::Path,
    reusable: bool,
) -> std::io::Result<()> {
    match cgroups {
        Some(cg) => cg.release(dir, reusable),
        None => cgroup::remove_tree(dir),
    }
}
