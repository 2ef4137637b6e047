//! Pure policy: the rule catalog (PG001–PG017) and `decide`.
//!
//! Owns: rule ids and their documentation strings, the validated [`Policy`], the decision
//! for one classified request given the facts and the session's history, the rewrites a
//! decision asks for, and the confirmation-token bookkeeping of sessions.
//!
//! Does not own: reading the config file (that is [`crate::config`]), fetching facts from
//! the apiserver or applying rewrites to the wire (that is [`crate::proxy`]).

use serde::Serialize;

use crate::classify::{Analysis, RequestInfo};

/// How pathgate acts on its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Never blocks; records what `enforce` would have done.
    Observe,
    /// Applies every rule's action.
    #[default]
    Enforce,
    /// Forwards every mutation with `dryRun=All`.
    Rehearse,
}

/// What a rule (or the whole decision) does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Flag,
    Rewrite,
    Confirm,
    Deny,
}

/// A change pathgate makes to a request before forwarding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Rewrite {
    /// Add `dryRun=All` to the query.
    AddDryRun,
    /// Set DeleteOptions.gracePeriodSeconds (query and body) to this value.
    SetGracePeriod { from: Option<i64>, to: i64 },
    /// Add `limit=N` to a LIST.
    AddLimit { limit: u64 },
}

/// One rule's verdict on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable rule id, e.g. `PG004`.
    pub rule: &'static str,
    pub action: Action,
    /// What was seen and how to comply; shown to the agent in a Warning or a Status.
    pub message: String,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The action actually taken (in `observe` mode always `allow` or `flag`).
    pub action: Action,
    /// The action `enforce` would take, recorded in every mode.
    pub enforce_action: Action,
    pub findings: Vec<Finding>,
    pub rewrites: Vec<Rewrite>,
}

/// The validated policy, frozen after loading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub mode: Mode,
}

/// What the apiserver said about the request's target object, fetched only when a rule
/// needs it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TargetFact {
    /// Not fetched (no rule needed it, or the fetch failed).
    #[default]
    Unknown,
    /// The object does not exist (404).
    Missing,
    /// The object as JSON.
    Present(serde_json::Value),
}

/// Facts from the cluster that rules may need.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Facts {
    pub target: TargetFact,
}

/// Decides what to do with one request. Pure.
pub fn decide(
    info: &RequestInfo,
    analysis: &Analysis,
    facts: &Facts,
    policy: &Policy,
) -> Decision {
    let _ = (info, analysis, facts, policy);
    unimplemented!("policy::decide")
}
