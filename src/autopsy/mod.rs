//! `pathgate autopsy`: turns a session's ledger into the verdict final-state checks hide —
//! **safe pass**, **unsafe pass** or **fail** — with each violation pinned to the request
//! that caused it, what pathgate blocked, the mutations' payload and effect scope, and
//! whether the ledger is complete evidence of the run.
//!
//! A run is a session. Entries stream through [`Autopsy::push`] in ledger order and are
//! folded into per-run state; none is kept, so memory grows with the runs and their
//! objects, never with the number of entries. Only structured ledger fields are read
//! (docs/ledger.md), never a finding's `message`, and the gate's rules are not re-run.
//! The categories, inputs and outputs are documented in docs/autopsy.md.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`input`] | reading ledger input (spool directory, JSONL file, stdin) as a stream of entries |
//! | [`policy`] | the run policy file (scope, protected objects, allowed creates and cluster-scoped mutations) |
//! | `judge` | pure: one entry's kind and violations, given the run so far (the ten categories) |
//! | `run` | one run's state while its entries stream by, and its verdict |
//! | [`final_state`] | pure: the final state's sources, the checks file and a check's evaluation |
//! | [`jsonpath`] | the JSONPath subset of checks |
//! | [`checks`] | I/O: `--verify CMD` and the checks' GETs through a kubeconfig |
//! | [`command`] | `pathgate autopsy` as a function: options in, report and exit code out |
//! | [`verdict`] | the verdict types (`pathgate.autopsy/v1` runs) |
//! | [`summary`] | the summary across runs (`--group-by`): per arm, pass and safe/unsafe execution rates, scope, categories |
//!
//! Renderings (text, JSON, HTML) are [`crate::report`]'s.

pub mod checks;
pub mod command;
pub mod final_state;
pub mod input;
pub mod jsonpath;
mod judge;
pub mod policy;
mod run;
pub mod summary;
pub mod verdict;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::ledger::Entry;

pub use final_state::FinalState;
pub use input::{for_each_entry, InputError, LedgerSource};
pub use judge::RETRY_LOOP_THRESHOLD;
pub use policy::{PolicyError, RunPolicy};
pub use verdict::{Category, Run, Triage, SCHEMA};

use run::RunState;

/// Sessions asked for that the ledger has no entry of.
#[derive(Debug, thiserror::Error)]
#[error("no ledger entries for session(s) {}", .0.join(", "))]
pub struct MissingSessions(pub Vec<String>);

/// The autopsy of one or more runs, fed entry by entry.
#[derive(Debug)]
pub struct Autopsy {
    policy: RunPolicy,
    /// Empty: every session in the ledger is a run.
    sessions: Vec<String>,
    timeline: bool,
    runs: Vec<RunState>,
    /// Session -> index in `runs` (runs keep the order of their first entry).
    index: HashMap<String, usize>,
}

impl Autopsy {
    /// An autopsy of `sessions` (empty: all) under `policy`; `timeline` keeps one row per
    /// request for reports that show the path (HTML).
    pub fn new(policy: RunPolicy, sessions: Vec<String>, timeline: bool) -> Autopsy {
        Autopsy {
            policy,
            sessions,
            timeline,
            runs: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Whether entries of `session` are judged.
    pub fn wants(&self, session: &str) -> bool {
        self.sessions.is_empty() || self.sessions.iter().any(|s| s == session)
    }

    /// Whether every session is judged (no entry can be skipped by its session).
    pub fn wants_all(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Judges the next entry (entries of other sessions are ignored).
    pub fn push(&mut self, entry: &Entry) {
        if !self.wants(&entry.session) {
            return;
        }
        let index = self.open(&entry.session);
        self.runs[index].push(entry, &self.policy);
    }

    /// Makes `session` a run even if none of its entries arrives (`pathgate run`: an
    /// agent that sent no request is judged on its final state alone); returns its index.
    pub fn open(&mut self, session: &str) -> usize {
        if let Some(index) = self.index.get(session) {
            return *index;
        }
        self.runs
            .push(RunState::new(session.to_string(), self.timeline));
        self.index.insert(session.to_string(), self.runs.len() - 1);
        self.runs.len() - 1
    }

    /// The verdicts, in the order the runs' first entries appeared (or the order the
    /// sessions were asked for). Every run is judged against the same final state.
    pub fn finish(self, final_state: &FinalState) -> Result<Vec<Run>, MissingSessions> {
        self.finish_each(|_| final_state.clone())
    }

    /// The verdicts, each run judged against the final state `final_state` gives for its
    /// session (a `runs` manifest's per-run results).
    pub fn finish_each(
        self,
        final_state: impl Fn(&str) -> FinalState,
    ) -> Result<Vec<Run>, MissingSessions> {
        let missing: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| !self.index.contains_key(s.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(MissingSessions(missing));
        }
        let mut runs: Vec<Run> = self
            .runs
            .into_iter()
            .map(|run| {
                let state = final_state(run.session());
                run.finish(state)
            })
            .collect();
        if !self.sessions.is_empty() {
            runs.sort_by_key(|run| self.sessions.iter().position(|s| *s == run.session));
        }
        Ok(runs)
    }
}
