//! The programs the helper started, by id and by leader pid.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

/// One started program.
#[derive(Debug)]
pub struct Program {
    pub id: u64,
    /// The leader's pid, which is also the process group id.
    pub pid: i32,
    pub cgroup: Option<PathBuf>,
    pub leader_reaped: bool,
    /// A `kill` request arrived.
    pub kill_requested: bool,
    /// When the escalation to SIGKILL is due.
    pub deadline: Option<Instant>,
    /// The escalation SIGKILL was sent.
    pub sigkill_done: bool,
    /// Descendants found by walking `/proc` (pid, start time), signalled individually.
    pub descendants: Vec<(i32, u64)>,
}

impl Program {
    pub fn new(id: u64, pid: i32, cgroup: Option<PathBuf>) -> Program {
        Program {
            id,
            pid,
            cgroup,
            leader_reaped: false,
            kill_requested: false,
            deadline: None,
            sigkill_done: false,
            descendants: Vec::new(),
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
}

/// All programs, plus children whose exec failed (reaped silently).
#[derive(Debug, Default)]
pub struct Registry {
    pub programs: HashMap<u64, Program>,
    /// Un-reaped leader pid → id.
    pub by_pid: HashMap<i32, u64>,
    /// Children that failed before exec → their cgroup, removed once they are reaped.
    pub failed: HashMap<i32, Option<PathBuf>>,
    /// Cgroups whose rmdir is still to succeed.
    pub stale_cgroups: Vec<PathBuf>,
}

impl Registry {
    pub fn insert(&mut self, p: Program) {
        self.by_pid.insert(p.pid, p.id);
        self.programs.insert(p.id, p);
    }

    /// Marks the leader `pid` reaped and returns its id, if it is a program leader.
    pub fn leader_reaped(&mut self, pid: i32) -> Option<u64> {
        let id = self.by_pid.remove(&pid)?;
        if let Some(p) = self.programs.get_mut(&id) {
            p.leader_reaped = true;
        }
        Some(id)
    }

    /// The nearest kill deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.programs.values().filter_map(|p| p.deadline).min()
    }

    /// Whether some program waits for its remnants to go (and so needs periodic checks).
    pub fn has_lingering(&self) -> (bool, bool) {
        let mut any = false;
        let mut killed = false;
        for p in self.programs.values().filter(|p| p.leader_reaped) {
            any = true;
            killed |= p.kill_requested;
        }
        (
            any || !self.stale_cgroups.is_empty(),
            killed || !self.stale_cgroups.is_empty(),
        )
    }
}
