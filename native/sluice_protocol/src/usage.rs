//! What an exit reply says beyond the status: every stage's status of a pipeline, and what
//! the program cost (`usage`), from its cgroup's `cpu.stat` (the whole tree) or from the
//! `rusage` of `wait4` (each stage and the children it waited for).

use std::collections::HashMap;

use eetf::{List, Map, Term};

use crate::reply::ExitStatus;
use crate::term::{atom, int_u64};

/// Where the CPU times of a [`Usage`] come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// The program's cgroup (`cpu.stat`): everything that ran in it.
    Cgroup,
    /// `wait4`'s rusage of the leader (or of each stage): it and the children it reaped.
    Rusage,
}

/// What a program cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub source: UsageSource,
    pub cpu_user_us: u64,
    pub cpu_system_us: u64,
    /// The largest resident set of a stage (or of a child it reaped), from rusage.
    pub max_rss_kb: u64,
}

impl Usage {
    /// The usage as a map term.
    pub fn to_term(&self) -> Term {
        let source = match self.source {
            UsageSource::Cgroup => "cgroup",
            UsageSource::Rusage => "rusage",
        };
        let map = HashMap::from([
            (atom("source"), atom(source)),
            (atom("cpu_user_us"), int_u64(self.cpu_user_us)),
            (atom("cpu_system_us"), int_u64(self.cpu_system_us)),
            (atom("max_rss_kb"), int_u64(self.max_rss_kb)),
        ]);
        Term::Map(Map::from(map))
    }
}

/// The fourth element of `{:exit, id, status, details}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitDetails {
    /// Every stage's status, in order (a pipeline); empty for a single program.
    pub statuses: Vec<ExitStatus>,
    pub usage: Option<Usage>,
}

impl ExitDetails {
    /// Whether there is nothing to add to the status (the 3-tuple is sent).
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.usage.is_none()
    }

    /// The details as a map term; `status_term` encodes one status.
    pub fn to_term(&self, status_term: impl Fn(&ExitStatus) -> Term) -> Term {
        let statuses = self.statuses.iter().map(status_term).collect::<Vec<_>>();
        let mut map = HashMap::from([(atom("statuses"), Term::List(List::from(statuses)))]);
        if let Some(u) = &self.usage {
            map.insert(atom("usage"), u.to_term());
        }
        Term::Map(Map::from(map))
    }
}
