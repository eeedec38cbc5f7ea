//! Every program the helper program started, and what happens to them: spawn requests
//! turned into programs, channel requests and channel closes, reaping with the exit
//! status sent on the channel, kill deadlines, and the housekeeping that forgets programs
//! of which nothing remains and gives their cgroups back.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice_protocol::{DecodeError, ExitStatus, Reply, Request, SpawnSpec, Stage};

use crate::cgroup::{self, Cgroups};
use crate::channels::{self, ChannelEvent, SpawnMessage};
use crate::errors::errno_name;
use crate::kill::{self, Children};
use crate::lifecycle::{AfterClose, Killer, Member, Program};
use crate::managed::Managed;
use crate::spawn::{self, Placement};
use crate::sys::{self, Wait};

/// How often lingering programs (channel closed, leader reaped, remnants being killed)
/// and busy cgroups are checked again.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// A program's key in the table: the helper program's own counter, since ids are the
/// BEAM's and each channel answers for one program only.
type Key = u64;

/// At most this many running programs get a roomy stdout pipe: pipe capacity counts against
/// the user's `pipe-user-pages-soft` (16384 pages unless privileged), and past it the
/// kernel gives every new pipe of that user a single page. 64 × 64 pages is a quarter.
const ROOMY_PROGRAMS: usize = 64;

pub struct Programs {
    table: HashMap<Key, Program>,
    next_key: Key,
    /// Un-reaped leader pid → key.
    by_pid: HashMap<i32, Key>,
    /// Children that failed before exec → their cgroup, removed once they are reaped.
    failed: HashMap<i32, Option<PathBuf>>,
    /// Cgroups whose rmdir is still to succeed.
    stale_cgroups: Vec<PathBuf>,
    pub cgroups: Option<Cgroups>,
    helper_pid: i32,
    request_buf: Box<[u8; 4096]>,
    last_check: Instant,
    /// Something changed that may let programs be forgotten: check without waiting.
    dirty: bool,
    /// Programs whose channel closed after their end, settled once the spawns waiting
    /// were served (`settle_closed`).
    closed: Vec<Key>,
    /// Children reaped that were no program (adopted orphans), with their status: one
    /// may be a managed process, whose owner then learns how it ended.
    orphans: Vec<(i32, ExitStatus)>,
}

/// The exit status in a raw `waitpid` status, if it ended.
pub fn exit_status(status: i32) -> Option<ExitStatus> {
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

/// Sends a reply on a channel; one the BEAM cannot take now (or any more) is dropped.
fn send(channel: BorrowedFd<'_>, reply: &Reply) {
    let _ = channels::send(channel, reply, &[]);
}

impl Programs {
    pub fn new(cgroups: Option<Cgroups>, helper_pid: i32) -> Programs {
        Programs {
            table: HashMap::new(),
            next_key: 0,
            by_pid: HashMap::new(),
            failed: HashMap::new(),
            stale_cgroups: Vec::new(),
            cgroups,
            helper_pid,
            request_buf: channels::request_buffer(),
            last_check: Instant::now(),
            dirty: false,
            closed: Vec::new(),
            orphans: Vec::new(),
        }
    }

    /// Whether `pid` is the (un-reaped) leader of a started program.
    pub fn is_leader(&self, pid: i32) -> bool {
        self.by_pid.contains_key(&pid)
    }

    /// The orphans reaped since the last call, with their status.
    pub fn take_orphans(&mut self) -> Vec<(i32, ExitStatus)> {
        std::mem::take(&mut self.orphans)
    }

    /// The open channels, to poll.
    pub fn channels(&self) -> impl Iterator<Item = (Key, RawFd)> + '_ {
        self.table
            .iter()
            .filter_map(|(k, p)| p.channel.as_ref().map(|c| (*k, c.as_raw_fd())))
    }

    /// Every program, for the shutdown.
    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut Program> {
        self.table.values_mut()
    }

    /// Cgroups still to remove, for the shutdown.
    pub fn stale_cgroups(&self) -> &[PathBuf] {
        &self.stale_cgroups
    }

    /// Handles one message from the fd socket; `manage` requests go to `managed`.
    pub fn on_spawn_message(&mut self, msg: SpawnMessage, managed: &mut Managed) {
        let (channel, etf) = match msg {
            SpawnMessage::Dropped(why) => {
                eprintln!("sluice_helper: dropped a spawn message: {why}");
                return;
            }
            SpawnMessage::Request { channel, etf } => (channel, etf),
        };
        // The caller already gave up (its timeout passed while this request waited, say for
        // a stopped helper program): starting the program now could only let it act after
        // its caller was told it did not run.
        if sys::hung_up(channel.as_fd()) {
            return;
        }
        let refuse = |id: Option<u64>, stage: Option<Stage>, message: String| match id {
            Some(id) => Reply::SpawnError {
                id,
                errno: "EINVAL".into(),
                stage: stage.unwrap_or(Stage::Request),
                detail: message,
            },
            None => Reply::Error { id: None, message },
        };
        let reply = match etf.map(|b| Request::decode(&b)) {
            Ok(Ok(Request::Spawn { id, spec })) => return self.spawn(channel, id, &spec),
            Ok(Ok(Request::Manage { id, spec })) => {
                return managed.adopt(channel, id, &spec, |pid| self.is_leader(pid))
            }
            Ok(Ok(other)) => refuse(
                Some(other.id()),
                None,
                "only spawn and manage requests go over the fd socket".into(),
            ),
            Ok(Err(DecodeError {
                id,
                spawn_stage,
                message,
            })) => refuse(id, spawn_stage, message),
            Err(why) => refuse(None, None, why),
        };
        // The channel closes after the refusal: the spawner learns it either way.
        send(channel.as_fd(), &reply);
    }

    fn spawn(&mut self, channel: OwnedFd, id: u64, spec: &SpawnSpec) {
        if !kill::valid_signal(spec.kill_signal) {
            let detail = format!("invalid kill_signal {}", spec.kill_signal);
            let reply = Reply::SpawnError {
                id,
                errno: "EINVAL".into(),
                stage: Stage::Spec,
                detail,
            };
            return send(channel.as_fd(), &reply);
        }
        let roomy = self.table.values().filter(|p| p.roomy).count() < ROOMY_PROGRAMS;
        let started = match spawn::spawn(
            spec,
            self.helper_pid,
            Placement::Program(self.cgroups.as_mut()),
            roomy,
        ) {
            Ok(s) => s,
            Err(f) => {
                let reason = f.reason_name();
                for pid in f.also_reap {
                    self.failed.insert(pid, None);
                }
                match f.pid {
                    Some(pid) => drop(self.failed.insert(pid, f.cgroup)),
                    None => self.stale_cgroups.extend(f.cgroup),
                }
                let reply = Reply::SpawnError {
                    id,
                    errno: reason,
                    stage: f.stage,
                    detail: f.detail,
                };
                return send(channel.as_fd(), &reply);
            }
        };
        let reply = Reply::Spawned {
            id,
            os_pid: started.pid as u32,
            roles: started.beam_fds.iter().map(|(r, _)| *r).collect(),
            cgroup: (started.cgroup.as_ref()).map(|d| d.as_os_str().as_bytes().to_vec()),
        };
        let fds: Vec<BorrowedFd> = started.beam_fds.iter().map(|(_, f)| f.as_fd()).collect();
        let sent = channels::send(channel.as_fd(), &reply, &fds);
        // The BEAM has its own copies now (or never will): ours go either way.
        drop(fds);
        drop(started.beam_fds);

        let key = self.next_key;
        self.next_key += 1;
        let grace = Duration::from_millis(spec.kill_grace_ms.min(u32::MAX as u64));
        let mut program = Program::new(
            id,
            started.pid,
            started.cgroup,
            channel,
            spec.kill_signal,
            grace,
        );
        program.members = (started.members.iter())
            .map(|&pid| Member { pid, status: None })
            .collect();
        program.cpu_baseline = program.cgroup.as_deref().and_then(cgroup::cpu_stat);
        program.kill_command = crate::kill_command::KillCommand::of(spec);
        program.roomy = started.roomy;
        for m in &program.members {
            self.by_pid.insert(m.pid, key);
        }
        self.table.insert(key, program);
        if let Err(e) = sent {
            // The owner cannot have the program: as if it had closed the channel.
            eprintln!("sluice_helper: sending spawned for {id}: {e}");
            self.close_channel(key);
        }
    }

    /// Reads every request queued on a program's channel. `broken`: poll reported an
    /// error on it, so "nothing to read" means it is unusable.
    pub fn on_channel(&mut self, key: Key, broken: bool) {
        loop {
            let Some(channel) = self.table.get(&key).and_then(|p| p.channel.as_ref()) else {
                return;
            };
            match channels::next_request(channel.as_fd(), &mut self.request_buf) {
                ChannelEvent::Request(req) => self.request(key, req),
                ChannelEvent::WouldBlock if !broken => return,
                ChannelEvent::WouldBlock | ChannelEvent::Closed => {
                    return self.close_channel(key);
                }
            }
        }
    }

    fn request(&mut self, key: Key, req: Result<Request, DecodeError>) {
        let Some(p) = self.table.get_mut(&key) else {
            return;
        };
        let (id, signum) = match &req {
            Ok(Request::Signal { id, signum }) | Ok(Request::Kill { id, signum, .. }) => {
                (*id, *signum)
            }
            Ok(Request::Stats { id }) => (*id, 0),
            _ => (p.id, 0),
        };
        let problem = match req {
            Err(e) => Some(e.message),
            Ok(Request::Spawn { .. } | Request::Manage { .. }) => {
                Some("spawn and manage requests go over the fd socket".into())
            }
            Ok(_) if id != p.id => Some(format!(
                "this channel belongs to program {}, not {id}",
                p.id
            )),
            Ok(_) if !kill::valid_signal(signum) => Some(format!("invalid signal number {signum}")),
            Ok(Request::Signal { .. }) => kill::signal_leader_group(p, signum)
                .err()
                .map(|e| format!("signal {signum} to program {id}: {e} ({})", errno_name(e))),
            Ok(Request::Stats { .. }) => {
                let (usage, pids_current) = p.stats();
                if let Some(channel) = &p.channel {
                    let reply = Reply::Stats {
                        id,
                        usage,
                        pids_current,
                    };
                    send(channel.as_fd(), &reply);
                }
                None
            }
            Ok(Request::Kill { grace_ms, .. }) => {
                let grace = Duration::from_millis(grace_ms.min(u32::MAX as u64));
                p.stop(&Children::new(), signum, grace);
                self.dirty = true;
                None
            }
        };
        if let (Some(message), Some(channel)) = (problem, &p.channel) {
            let reply = Reply::Error {
                id: Some(p.id),
                message,
            };
            send(channel.as_fd(), &reply);
        }
    }

    /// The BEAM closed its end of a program's channel (or it broke).
    fn close_channel(&mut self, key: Key) {
        let Some(p) = self.table.get_mut(&key) else {
            return;
        };
        match p.on_channel_closed(&Children::new()) {
            AfterClose::Settle => self.closed.push(key),
            AfterClose::Linger => self.dirty = true,
        }
    }

    /// Whether programs wait to be settled (`settle_closed`).
    pub fn has_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    /// Settles the programs whose channel closed after their end: forgets those of which
    /// nothing remains (their cgroups back in the pool) and stops what remains of the
    /// others. Called once the spawns waiting were served: the clean-up of the programs
    /// that ended is not on the path of the next spawn (its caller closed the previous
    /// program's channel a moment before asking).
    pub fn settle_closed(&mut self) {
        if self.closed.is_empty() {
            return;
        }
        let kids = Children::new();
        for key in std::mem::take(&mut self.closed) {
            if !self.forget_if_done(key, &kids) {
                if let Some(p) = self.table.get_mut(&key) {
                    p.settle(&kids);
                }
                self.dirty = true;
            }
        }
    }

    /// Forgets a program if nothing of it remains; returns whether it is gone. With a
    /// cgroup the release is the check (`Program::release_tells`): `cgroup.events` is
    /// read once, not once to decide and again to release.
    fn forget_if_done(&mut self, key: Key, kids: &Children) -> bool {
        match self.table.get(&key) {
            None => true,
            Some(p) if !p.release_tells() && p.remains(kids) => false,
            Some(_) => self.forget(key),
        }
    }

    /// Forgets a program of which nothing remains, giving its cgroup back; a cgroup still
    /// busy (or populated) leaves the program for a later round. Returns whether it is
    /// gone.
    fn forget(&mut self, key: Key) -> bool {
        let Some(p) = self.table.get(&key) else {
            return true;
        };
        if let Some(dir) = &p.cgroup {
            match release_cgroup(&mut self.cgroups, dir, p.cgroup_reusable()) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(_) => return false,
            }
        }
        self.table.remove(&key);
        true
    }

    /// Reaps every exited child. Returns true when the helper program has no children left.
    pub fn reap(&mut self) -> bool {
        loop {
            let (pid, status, usage) = match sys::waitpid_any_nohang() {
                Wait::Child { pid, status, usage } => (pid, status, usage),
                Wait::Nothing => return false,
                Wait::NoChildren => return true,
            };
            if let Some(key) = self.by_pid.remove(&pid) {
                self.dirty = true;
                let Some(p) = self.table.get_mut(&key) else {
                    continue;
                };
                // A raw status that is no end (never asked for) counts as one, so the
                // program cannot linger as running.
                let status = exit_status(status).unwrap_or(ExitStatus::Unknown);
                let ended = p.on_member_reaped(pid, status, usage);
                if let (Some((status, details)), Some(channel)) = (ended, &p.channel) {
                    let reply = Reply::Exit {
                        id: p.id,
                        status,
                        details,
                    };
                    send(channel.as_fd(), &reply);
                }
            } else if let Some(cg) = self.failed.remove(&pid) {
                // Exec failed: already reported as spawn_error, reaped silently.
                self.stale_cgroups.extend(cg);
                self.dirty = true;
            } else if let Some(p) = (self.table.values_mut()).find(|p| p.killer_running(pid)) {
                // A kill command ended: its pid is no longer ours to signal (its group's
                // id stays one while a member of the group is our child).
                p.killer = Some(Killer::Ended(pid));
            } else if let Some(status) = exit_status(status) {
                // An adopted orphan: its status matters only if it is managed.
                self.orphans.push((pid, status));
            }
        }
    }

    fn needs_checks(&self) -> bool {
        !self.stale_cgroups.is_empty() || self.table.values().any(|p| p.lingering())
    }

    /// When the loop must wake next: the nearest kill deadline or housekeeping round.
    pub fn next_wake(&self) -> Option<Instant> {
        let deadline = self.table.values().filter_map(|p| p.deadline()).min();
        let check = self.needs_checks().then(|| self.last_check + CHECK_EVERY);
        deadline.into_iter().chain(check).min()
    }

    /// Kill deadlines that have passed, then housekeeping.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let kids = Children::new();
        for p in self.table.values_mut() {
            self.dirty |= p.on_tick(&kids, now);
        }
        self.housekeeping(now);
    }

    /// Forgets lingering programs of which nothing remains, and retries removing cgroups
    /// that were busy.
    fn housekeeping(&mut self, now: Instant) {
        if !self.needs_checks() {
            return;
        }
        if !self.dirty && now.duration_since(self.last_check) < CHECK_EVERY {
            return;
        }
        self.dirty = false;
        self.last_check = now;

        let cgroups = &mut self.cgroups;
        self.stale_cgroups
            .retain(|d| match release_cgroup(cgroups, d, true) {
                Ok(()) => false,
                Err(e) => e.kind() != ErrorKind::NotFound,
            });
        let kids = Children::new();
        let lingering: Vec<Key> = (self.table.iter())
            .filter(|(k, p)| p.lingering() && !self.closed.contains(k))
            .map(|(k, _)| *k)
            .collect();
        for key in lingering {
            self.forget_if_done(key, &kids);
        }
    }
}

/// Returns an empty program cgroup to the pool (or removes it); see `Cgroups::release`.
fn release_cgroup(
    cgroups: &mut Option<Cgroups>,
    dir: &Path,
    reusable: bool,
) -> std::io::Result<()> {
    match cgroups {
        Some(cg) => cg.release(dir, reusable),
        None => cgroup::remove_tree(dir),
    }
}
