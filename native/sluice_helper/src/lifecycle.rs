//! One program's life, as explicit states rather than flags whose meaning depends on
//! which is tested first.
//!
//! Two independent facts: the leader is [`Leader::Running`] or [`Leader::Reaped`], and the
//! stop is [`Phase::Running`] (none asked for), [`Phase::Stopping`] (a soft signal was sent,
//! SIGKILL is due at the deadline) or [`Phase::Killed`] (SIGKILL sent). A third, whether
//! the BEAM still holds the channel, is whether `channel` is `Some`. The program is
//! forgotten once the channel is closed, the leader reaped and nothing of it remains.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_protocol::{ExitDetails, ExitStatus, Usage, UsageSource};

use crate::kill::{self, Children};
use crate::kill_command;
use crate::procfs;
use crate::sys;
use crate::sys::Rusage;

/// The program's leader (its pid is the process group id) and, for a pipeline, the other
/// stages: `Running` until every one of them is reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leader {
    /// Not all reaped yet: the group id is still ours.
    Running,
    /// All reaped; the exit status went to the BEAM.
    Reaped,
}

/// One process the helper program started for the program: the leader, or a later stage
/// of a pipeline, with its status once reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub pid: i32,
    pub status: Option<ExitStatus>,
}

/// How far stopping the program has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No stop was asked for.
    Running,
    /// A soft signal was sent; SIGKILL to whatever remains at `deadline`.
    Stopping { deadline: Instant },
    /// SIGKILL was sent (with a cgroup: `cgroup.kill`, so the cgroup is not reused).
    Killed,
}

/// One started program.
#[derive(Debug)]
pub struct Program {
    /// The BEAM's id for it, repeated in every reply.
    pub id: u64,
    /// The leader's pid, which is also the process group id.
    pub pid: i32,
    pub cgroup: Option<PathBuf>,
    /// The helper program's end of the channel; `None` once the BEAM closed its end.
    pub channel: Option<OwnedFd>,
    pub leader: Leader,
    pub phase: Phase,
    /// Descendants found by walking `/proc` (pid, start time), signalled individually.
    pub descendants: Vec<(i32, u64)>,
    /// The stop applied when the channel closes while the program runs.
    pub kill_signal: i32,
    pub kill_grace: Duration,
    /// Holds a roomy stdout pipe (counts against the helper's budget of them).
    pub roomy: bool,
    /// Every process started for it, in pipeline order (the leader first).
    pub members: Vec<Member>,
    /// The rusage of the members reaped so far (CPU summed, the largest RSS).
    pub rusage: Rusage,
    /// The cgroup's `cpu.stat` CPU times when the program started (a pooled cgroup has
    /// counted earlier programs).
    pub cpu_baseline: Option<(u64, u64)>,
    /// Run instead of sending `kill_signal` on a stop, when set.
    pub kill_command: Option<kill_command::KillCommand>,
    /// The kill command, once a stop started it.
    pub killer: Option<Killer>,
}

/// The kill command of a program's stop, once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killer {
    /// Not reaped: its pid (and its group's id) is ours.
    Running(i32),
    /// Reaped; what it started may still run (in its group, or its cgroup).
    Ended(i32),
}

/// What closing the channel left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterClose {
    /// Leader reaped, no stop asked for: whether anything remains is settled once the
    /// spawns waiting were served (`Programs::settle_closed`), which forgets the program
    /// or stops what remains of it (`settle`).
    Settle,
    /// Something still runs (now being stopped): housekeeping forgets it later.
    Linger,
}

impl Program {
    /// A program just spawned, stopped with `kill_signal` and SIGKILL after `kill_grace`
    /// when its channel closes: the spec's, as the BEAM sent them (this file has no
    /// defaults of its own).
    pub fn new(
        id: u64,
        pid: i32,
        cgroup: Option<PathBuf>,
        channel: OwnedFd,
        kill_signal: i32,
        kill_grace: Duration,
    ) -> Program {
        Program {
            id,
            pid,
            cgroup,
            channel: Some(channel),
            leader: Leader::Running,
            phase: Phase::Running,
            descendants: Vec::new(),
            kill_signal,
            kill_grace,
            roomy: false,
            members: vec![Member { pid, status: None }],
            rusage: Rusage::default(),
            cpu_baseline: None,
            kill_command: None,
            killer: None,
        }
    }

    /// The members not reaped yet.
    pub fn live_pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.members
            .iter()
            .filter(|m| m.status.is_none())
            .map(|m| m.pid)
    }

    /// A member was reaped; returns the exit to report once every member is: the last
    /// stage's status (as a shell's), every status for a pipeline, and the usage.
    pub fn on_member_reaped(
        &mut self,
        pid: i32,
        status: ExitStatus,
        usage: Rusage,
    ) -> Option<(ExitStatus, ExitDetails)> {
        let m = self.members.iter_mut().find(|m| m.pid == pid)?;
        m.status = Some(status);
        self.rusage.user_us += usage.user_us;
        self.rusage.system_us += usage.system_us;
        self.rusage.max_rss_kb = self.rusage.max_rss_kb.max(usage.max_rss_kb);
        if self.live_pids().next().is_some() {
            return None;
        }
        self.on_reaped();
        let statuses: Vec<ExitStatus> = self.members.iter().filter_map(|m| m.status).collect();
        let last = *statuses.last()?;
        let details = ExitDetails {
            statuses: if statuses.len() > 1 {
                statuses
            } else {
                Vec::new()
            },
            usage: Some(self.usage()),
        };
        Some((last, details))
    }

    /// What the running program has cost so far, and how many processes it has (members
    /// of its cgroup, else of its process group): the answer to `stats`. Without a cgroup
    /// the CPU times are the reaped members' rusage plus the live members' own and reaped
    /// children's times from `/proc`.
    pub fn stats(&self) -> (Usage, u64) {
        let mut usage = self.usage();
        for pid in self.live_pids() {
            usage.max_rss_kb = usage.max_rss_kb.max(procfs::max_rss_kb(pid).unwrap_or(0));
            if usage.source == UsageSource::Rusage {
                if let Some(st) = procfs::stat(pid) {
                    let [u, s, cu, cs] = st.cpu_ticks.map(sys::ticks_to_us);
                    usage.cpu_user_us += u + cu;
                    usage.cpu_system_us += s + cs;
                }
            }
        }
        let pids = match &self.cgroup {
            Some(dir) => crate::cgroup::procs(dir).len(),
            None => procfs::group_members(self.pid).len(),
        };
        (usage, pids as u64)
    }

    /// What the program cost so far: its cgroup's CPU times when it has one (the whole
    /// tree, reaped or not), else the reaped members' rusage.
    pub fn usage(&self) -> Usage {
        let from_cgroup = self.cgroup.as_deref().and_then(crate::cgroup::cpu_stat);
        match (from_cgroup, self.cpu_baseline) {
            (Some((user, system)), base) => {
                let (bu, bs) = base.unwrap_or((0, 0));
                Usage {
                    source: UsageSource::Cgroup,
                    cpu_user_us: user.saturating_sub(bu),
                    cpu_system_us: system.saturating_sub(bs),
                    max_rss_kb: self.rusage.max_rss_kb,
                }
            }
            (None, _) => Usage {
                source: UsageSource::Rusage,
                cpu_user_us: self.rusage.user_us,
                cpu_system_us: self.rusage.system_us,
                max_rss_kb: self.rusage.max_rss_kb,
            },
        }
    }

    /// Adds newly walked descendants to the remembered ones.
    pub fn remember(&mut self, found: &[(i32, u64)]) {
        for d in found {
            if !self.descendants.contains(d) {
                self.descendants.push(*d);
            }
        }
    }

    /// When SIGKILL is due, if a stop is under way.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Stopping { deadline } => Some(deadline),
            Phase::Running | Phase::Killed => None,
        }
    }

    /// Stop: `signum` now (and SIGCONT), SIGKILL to everything left after `grace`. A stop
    /// never moves backwards: a later one can only bring the deadline nearer.
    pub fn stop(&mut self, kids: &Children, signum: i32, grace: Duration) {
        if grace.is_zero() || signum == libc::SIGKILL || self.phase == Phase::Killed {
            self.kill_now(kids);
            return;
        }
        // With a cgroup, escapees are left to cgroup.kill at the deadline.
        let walk = self.cgroup.is_none();
        if !self.run_kill_command() {
            kill::soft_kill(self, kids, signum, walk);
        }
        let now = Instant::now();
        let due = now
            .checked_add(grace)
            .unwrap_or(now + Duration::from_secs(86400 * 365));
        let deadline = match self.phase {
            Phase::Stopping { deadline } => deadline.min(due),
            Phase::Running | Phase::Killed => due,
        };
        self.phase = Phase::Stopping { deadline };
    }

    /// Whether `pid` is this program's kill command, still running.
    pub fn killer_running(&self, pid: i32) -> bool {
        self.killer == Some(Killer::Running(pid))
    }

    /// SIGKILL to everything left, the kill command and what it started included (with a
    /// cgroup, `cgroup.kill` of the program's reaches its `kill` cgroup).
    pub fn kill_now(&mut self, kids: &Children) {
        // Before the program's own kill, which could orphan the command's descendants.
        if let Some(killer) = self.killer {
            kill_command::end(killer, kids);
        }
        kill::hard_kill(self, kids);
        self.phase = Phase::Killed;
    }

    /// The first stop of a program with a `kill_command` runs it (once); returns whether
    /// it was started (if not, the stop sends the signal).
    fn run_kill_command(&mut self) -> bool {
        let (Some(command), Phase::Running, Leader::Running) =
            (&self.kill_command, self.phase, self.leader)
        else {
            return false;
        };
        match kill_command::start(command, self.pid, self.cgroup.as_deref()) {
            Ok(pid) => {
                self.killer = Some(Killer::Running(pid));
                true
            }
            Err(why) => {
                eprintln!("sluice_helper: kill_command for {}: {why}", self.pid);
                false
            }
        }
    }

    /// SIGKILL if the deadline has passed; returns whether it had.
    pub fn on_tick(&mut self, kids: &Children, now: Instant) -> bool {
        match self.phase {
            Phase::Stopping { deadline } if deadline <= now => {
                self.kill_now(kids);
                true
            }
            _ => false,
        }
    }

    /// The leader was reaped.
    pub fn on_reaped(&mut self) {
        self.leader = Leader::Reaped;
    }

    /// The BEAM closed its end: if no stop is under way, stop with the spec's signal and
    /// grace. A program whose leader was reaped is settled later (`settle`): whether
    /// anything of it remains takes reads of `/proc` or of its cgroup, which wait until
    /// the spawns already asked for were served.
    pub fn on_channel_closed(&mut self, kids: &Children) -> AfterClose {
        self.channel = None;
        match (self.phase, self.leader) {
            (Phase::Running, Leader::Reaped) => AfterClose::Settle,
            (Phase::Running, _) => {
                self.stop(kids, self.kill_signal, self.kill_grace);
                AfterClose::Linger
            }
            (Phase::Stopping { .. } | Phase::Killed, _) => AfterClose::Linger,
        }
    }

    /// After a close that left the program [`AfterClose::Settle`], with something of it
    /// remaining after all (a member of its cgroup or group, a kill command): stopped as
    /// a close while it runs is (a program already gone entirely costs no signal at all:
    /// its forgetting needed no settling).
    pub fn settle(&mut self, kids: &Children) {
        if self.phase == Phase::Running {
            self.stop(kids, self.kill_signal, self.kill_grace);
        }
    }

    /// Whether the release of its cgroup is the check that nothing remains: with a
    /// cgroup, once the leader is reaped and no kill command runs, what could remain is a
    /// member of the cgroup, and a populated cgroup is not released (`Cgroups::release`).
    /// Its `cgroup.events` is then read once, by the release.
    pub fn release_tells(&self) -> bool {
        self.cgroup.is_some()
            && self.leader == Leader::Reaped
            && !matches!(self.killer, Some(Killer::Running(_)))
    }

    /// Whether anything of the program may still run: the leader, a member of its cgroup,
    /// or (without a cgroup) a member of its group or a walked descendant.
    pub fn remains(&self, kids: &Children) -> bool {
        // A kill command and what it started are the program's too, until its deadline:
        // with a cgroup they are in it (its `kill` cgroup); without, the command until it
        // is reaped, then the members of its group.
        let killer = match self.killer {
            Some(Killer::Running(_)) => true,
            Some(Killer::Ended(pid)) => self.cgroup.is_none() && kids.has_group(pid),
            None => false,
        };
        if self.leader == Leader::Running || killer {
            return true;
        }
        match &self.cgroup {
            Some(dir) => crate::cgroup::populated(dir).unwrap_or(false),
            None => kids.has_group(self.pid) || kill::descendants_alive(self),
        }
    }

    /// Channel closed, leader reaped: waiting only for remnants to go.
    pub fn lingering(&self) -> bool {
        self.channel.is_none() && self.leader == Leader::Reaped
    }

    /// Whether its cgroup may go back to the pool: not after `cgroup.kill` (see
    /// `Cgroups::release`).
    pub fn cgroup_reusable(&self) -> bool {
        self.phase != Phase::Killed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program whose pid is the test process's, so the stop's signals must not be sent:
    /// these tests only drive the states that send none.
    fn program() -> Program {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut p = Program::new(
            1,
            i32::MAX,
            None,
            a.into(),
            sluice_protocol::request::DEFAULT_KILL_SIGNAL,
            Duration::from_millis(sluice_protocol::request::DEFAULT_KILL_GRACE_MS),
        );
        p.leader = Leader::Reaped;
        p
    }

    #[test]
    fn closing_after_the_end_settles_without_a_signal() {
        let mut p = program();
        assert_eq!(p.on_channel_closed(&Children::new()), AfterClose::Settle);
        assert_eq!(p.phase, Phase::Running);
        assert!(p.lingering() && !p.remains(&Children::new()));
        assert!(!p.release_tells());
        p.cgroup = Some(PathBuf::from("/nonexistent/c0"));
        assert!(p.release_tells());
        p.killer = Some(Killer::Running(i32::MAX));
        assert!(!p.release_tells());
    }

    #[test]
    fn a_kill_command_is_the_programs_until_it_and_its_group_are_gone() {
        let mut p = program();
        let kids = Children::new();
        assert!(!p.remains(&kids));
        // Running: the program lingers whatever its own processes do.
        p.killer = Some(Killer::Running(i32::MAX));
        assert!(p.remains(&kids) && p.killer_running(i32::MAX));
        // Reaped, and no member of its group is our child: nothing of it is left.
        p.killer = Some(Killer::Ended(i32::MAX));
        assert!(!p.remains(&kids) && !p.killer_running(i32::MAX));
    }

    #[test]
    fn a_stop_under_way_is_kept_on_close() {
        let mut p = program();
        let deadline = Instant::now() + Duration::from_secs(60);
        p.phase = Phase::Stopping { deadline };
        assert_eq!(p.on_channel_closed(&Children::new()), AfterClose::Linger);
        assert_eq!(p.deadline(), Some(deadline));
        assert!(!p.on_tick(&Children::new(), Instant::now()));
    }
}
