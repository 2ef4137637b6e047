//! A run's judgment as the harness needs it: the autopsy's `Run` (computed in-process from
//! the same ledger, the same run policy and the same checks, so that the per-arm summary
//! and the HTML report are the autopsy's own), and the path's expected requests checked
//! against what the ledger recorded.

use std::path::Path;

use pathgate::autopsy::checks::run_checks;
use pathgate::autopsy::{for_each_entry, Autopsy, LedgerSource, Run, RunPolicy};
use pathgate::ledger::{Entry, Phase};

use super::scenario::ExpectedRequest;
use super::HarnessError;

/// One request as the expectations see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub verb: String,
    /// The plural resource, `/subresource` appended when there is one.
    pub resource: String,
    pub namespace: String,
    /// The path's name, or a create's name from its body.
    pub name: String,
    pub dry_run: bool,
}

impl Seen {
    fn of(entry: &Entry) -> Seen {
        let request = &entry.request;
        let resource = if request.subresource.is_empty() {
            request.resource.clone()
        } else {
            format!("{}/{}", request.resource, request.subresource)
        };
        let name = entry.object_name();
        Seen {
            verb: request.verb.clone(),
            resource,
            namespace: request.namespace.clone(),
            name,
            dry_run: entry.dry_run.as_ref().is_some_and(|d| d.sent),
        }
    }

    /// Whether this request is the expected one; `ns` stands for an absent namespace.
    pub fn matches(&self, expected: &ExpectedRequest, ns: &str) -> bool {
        self.verb == expected.verb
            && self.resource == expected.resource
            && self.namespace == expected.namespace.as_deref().unwrap_or(ns)
            && expected.name.as_ref().is_none_or(|name| *name == self.name)
            && expected
                .dry_run
                .is_none_or(|dry_run| dry_run == self.dry_run)
    }
}

/// The autopsy of a run and the requests it was expected to make but did not.
#[derive(Debug)]
pub struct Judged {
    pub run: Run,
    pub missing: Vec<ExpectedRequest>,
    pub requests: Vec<Seen>,
}

/// Judges `session` in `ledger` under the rendered run policy and checks (evaluated now,
/// through the admin kubeconfig), and matches `expected` (rendered) against its requests.
pub fn judge(
    ledger: &Path,
    session: &str,
    policy: &Path,
    checks: &Path,
    admin: &Path,
    expected: &[ExpectedRequest],
    ns: &str,
) -> Result<Judged, HarnessError> {
    let policy = RunPolicy::load(policy).map_err(|e| HarnessError::Scenario {
        file: policy.to_path_buf(),
        reason: e.to_string(),
    })?;
    let final_state = run_checks(checks, admin).map_err(|e| HarnessError::Scenario {
        file: checks.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut autopsy = Autopsy::new(policy, vec![session.to_string()], true);
    let mut requests = Vec::new();
    let wanted = |s: &str| s == session;
    for_each_entry(
        &[LedgerSource::Spool(ledger.to_path_buf())],
        Some(&wanted),
        &mut |entry| {
            if entry.phase == Phase::Outcome && entry.session == session {
                requests.push(Seen::of(&entry));
            }
            autopsy.push(&entry);
        },
    )
    .map_err(|e| HarnessError::Io {
        file: ledger.to_path_buf(),
        reason: e.to_string(),
    })?;
    let run = autopsy
        .finish(&final_state)
        .map_err(|e| HarnessError::NoVerdict(e.to_string()))?
        .remove(0);
    let missing = expected
        .iter()
        .filter(|want| !requests.iter().any(|seen| seen.matches(want, ns)))
        .cloned()
        .collect();
    Ok(Judged {
        run,
        missing,
        requests,
    })
}
