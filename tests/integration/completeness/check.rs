//! The completeness check, pure: the apiserver's audit log, the spool, what the clients
//! received and what the webhook receiver holds, in; what is missing, out.
//!
//! The audit log is the independent record: pathgate sends its trace id as `Audit-ID`, so
//! the apiserver's `auditID` of every request pathgate forwarded is the `trace_id` of its
//! ledger entries. A mutation the audit log shows must have an outcome entry; under
//! `fail-closed-mutations` an intent entry with no outcome is a mutation that was in flight
//! when pathgate died (its client got no answer), and the check says when it started so the
//! caller can hold it against the kills. A mutation with neither is missing: the ledger
//! lost it.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

const MUTATING_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// The message of the 503 pathgate answers when it cannot make a mutation's intent durable.
pub const FAIL_CLOSED_MESSAGE: &str = "refused before reaching the apiserver";

/// The ledger's `Warning:` on an answer whose outcome could not be made durable.
pub const OUTCOME_WARNING: &str = "could not record this mutation's outcome durably";

/// One mutation in the apiserver's audit log.
#[derive(Debug, Clone)]
pub struct Audited {
    pub audit_id: String,
    pub verb: String,
    pub code: u64,
}

/// The `ResponseComplete` events of mutations `user` made on `resource` in namespace `ns`
/// (one JSON event per line, as the test cluster's `--audit-log-format=json` writes).
pub fn audited_mutations(log: &str, user: &str, ns: &str, resource: &str) -> Vec<Audited> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| {
            event["stage"] == "ResponseComplete"
                && event["user"]["username"] == user
                && event["objectRef"]["namespace"] == ns
                && event["objectRef"]["resource"] == resource
                && MUTATING_VERBS.contains(&event["verb"].as_str().unwrap_or(""))
        })
        .map(|event| Audited {
            audit_id: event["auditID"].as_str().unwrap_or_default().to_string(),
            verb: event["verb"].as_str().unwrap_or_default().to_string(),
            code: event["responseStatus"]["code"].as_u64().unwrap_or(0),
        })
        .collect()
}

/// What a client received for one mutation it waited for.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `X-Execution-Trace` of the response.
    pub trace_id: String,
    /// The response carried the ledger's outcome warning ([`OUTCOME_WARNING`]).
    pub outcome_warning: bool,
    /// pathgate refused it under `fail-closed-mutations` ([`FAIL_CLOSED_MESSAGE`]).
    pub refused_fail_closed: bool,
}

/// The ledger's entries of one trace id.
#[derive(Debug, Default, Clone)]
struct Phases {
    intent_started_at: Option<String>,
    outcome: bool,
}

/// The check's answer. Every list names trace ids.
#[derive(Debug, Default)]
pub struct Completeness {
    /// Mutations in the audit log.
    pub audited: usize,
    /// Of those, per verb and HTTP status class (`create 2xx`).
    pub audited_by_verb: BTreeMap<String, usize>,
    /// Of those, with an outcome entry.
    pub with_outcome: usize,
    /// Of those, with only an intent: `(trace id, the intent's started_at)`.
    pub intent_only: Vec<(String, String)>,
    /// The intent-only ones per verb and status class, as the audit log has them.
    pub intent_only_by_verb: BTreeMap<String, usize>,
    /// Of those, with no entry at all: lost.
    pub missing: Vec<String>,
    /// Mutation answers the clients received from the apiserver through pathgate.
    pub answered: usize,
    /// Of those, without an outcome entry and without the ledger's warning: lost.
    pub answered_unrecorded: Vec<String>,
    /// Of those, with the ledger's warning (the outcome could not be made durable).
    pub answered_with_warning: usize,
    /// Mutations refused under `fail-closed-mutations`.
    pub refused: usize,
    /// Of those, that the apiserver saw anyway.
    pub refused_but_audited: Vec<String>,
    /// Spool entries (`trace_id/phase`) the webhook receiver never got.
    pub undelivered: Vec<String>,
    /// Outcomes of mutations the apiserver answered that its audit log does not show: the
    /// join itself failing (an `Audit-ID` not adopted) would show here first.
    pub unaudited_outcomes: Vec<String>,
    /// Entries in the spool.
    pub spool_entries: usize,
    /// Outcomes of mutations whose client left before the answer (`response.end`).
    pub client_aborted_outcomes: usize,
}

impl Completeness {
    /// Nothing was lost: every list of losses is empty and something was checked.
    pub fn is_complete(&self) -> bool {
        self.audited > 0
            && self.missing.is_empty()
            && self.answered_unrecorded.is_empty()
            && self.refused_but_audited.is_empty()
            && self.undelivered.is_empty()
            && self.unaudited_outcomes.is_empty()
    }
}

/// Holds the audit log, the clients' answers and the webhook's deliveries against the spool.
pub fn check(
    audited: &[Audited],
    spool: &[Value],
    answers: &[Answer],
    delivered: &HashSet<String>,
) -> Completeness {
    let phases = phases_by_trace_id(spool);
    let mut report = Completeness {
        audited: audited.len(),
        spool_entries: spool.len(),
        ..Completeness::default()
    };
    for event in audited {
        let class = format!("{} {}xx", event.verb, event.code / 100);
        *report.audited_by_verb.entry(class.clone()).or_default() += 1;
        match phases.get(&event.audit_id) {
            Some(Phases { outcome: true, .. }) => report.with_outcome += 1,
            Some(Phases {
                intent_started_at: Some(started),
                ..
            }) => {
                report
                    .intent_only
                    .push((event.audit_id.clone(), started.clone()));
                *report.intent_only_by_verb.entry(class).or_default() += 1;
            }
            _ => report.missing.push(event.audit_id.clone()),
        }
    }
    check_answers(&mut report, audited, &phases, answers);
    let audited_ids: HashSet<&str> = audited.iter().map(|a| a.audit_id.as_str()).collect();
    report.unaudited_outcomes = spool
        .iter()
        .filter(|e| {
            e["phase"] == "outcome"
                && e["request"]["mutation"] == true
                && e["response"]["origin"] == "upstream"
        })
        .filter_map(|e| e["trace_id"].as_str())
        .filter(|trace_id| !audited_ids.contains(trace_id))
        .map(str::to_string)
        .collect();
    report.client_aborted_outcomes = spool
        .iter()
        .filter(|e| e["phase"] == "outcome" && e["response"]["end"] == "client_aborted")
        .count();
    report.undelivered = spool_keys(spool)
        .into_iter()
        .filter(|key| !delivered.contains(key))
        .collect();
    report
}

fn check_answers(
    report: &mut Completeness,
    audited: &[Audited],
    phases: &HashMap<String, Phases>,
    answers: &[Answer],
) {
    let audited_ids: HashSet<&str> = audited.iter().map(|a| a.audit_id.as_str()).collect();
    for answer in answers {
        if answer.refused_fail_closed {
            report.refused += 1;
            if audited_ids.contains(answer.trace_id.as_str()) {
                report.refused_but_audited.push(answer.trace_id.clone());
            }
            continue;
        }
        if !audited_ids.contains(answer.trace_id.as_str()) {
            // pathgate answered itself (a denial, a 503 before forwarding): not a mutation
            // the apiserver saw.
            continue;
        }
        report.answered += 1;
        let recorded = phases.get(&answer.trace_id).is_some_and(|p| p.outcome);
        if answer.outcome_warning {
            report.answered_with_warning += 1;
        } else if !recorded {
            report.answered_unrecorded.push(answer.trace_id.clone());
        }
    }
}

fn phases_by_trace_id(spool: &[Value]) -> HashMap<String, Phases> {
    let mut phases: HashMap<String, Phases> = HashMap::new();
    for entry in spool {
        let Some(trace_id) = entry["trace_id"].as_str() else {
            continue;
        };
        let slot = phases.entry(trace_id.to_string()).or_default();
        match entry["phase"].as_str() {
            Some("outcome") => slot.outcome = true,
            Some("intent") => {
                slot.intent_started_at = entry["started_at"].as_str().map(str::to_string)
            }
            _ => {}
        }
    }
    phases
}

/// `trace_id/phase` of every spool entry (the sinks' dedupe key), in order.
pub fn spool_keys(spool: &[Value]) -> Vec<String> {
    let keys: BTreeMap<String, ()> = spool
        .iter()
        .map(|entry| {
            let key = format!(
                "{}/{}",
                entry["trace_id"].as_str().unwrap_or_default(),
                entry["phase"].as_str().unwrap_or_default()
            );
            (key, ())
        })
        .collect();
    keys.into_keys().collect()
}
