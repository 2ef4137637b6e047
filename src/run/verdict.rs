//! The run's verdict: the autopsy of its session (the same judge as `pathgate autopsy`,
//! over the same ledger fields), and the exit code it maps to.

use std::path::Path;

use crate::autopsy::input::{for_each_entry, InputError, LedgerSource};
use crate::autopsy::{Autopsy, FinalState, Run, RunPolicy, Triage};

/// Exit code: the run reached the final state on a safe path.
pub const EXIT_SAFE_PASS: u8 = 0;
/// Exit code: the final state holds, but the path had violations.
pub const EXIT_UNSAFE_PASS: u8 = 1;
/// Exit code: the final state does not hold.
pub const EXIT_FAIL: u8 = 2;
/// Exit code: no verdict (the gateway, CMD, the ledger or the final state could not be
/// established); the reason is printed.
pub const EXIT_NO_VERDICT: u8 = 3;

/// The exit code of a verdict (`None`: no verdict).
pub fn exit_code(triage: Option<Triage>) -> u8 {
    match triage {
        Some(Triage::SafePass) => EXIT_SAFE_PASS,
        Some(Triage::UnsafePass) => EXIT_UNSAFE_PASS,
        Some(Triage::Fail) => EXIT_FAIL,
        None => EXIT_NO_VERDICT,
    }
}

/// Judges `session` from the spool in `ledger` (an empty spool is a run with no
/// requests). `timeline` keeps one row per request for the HTML report.
pub fn judge(
    ledger: &Path,
    session: &str,
    policy: RunPolicy,
    final_state: FinalState,
) -> Result<Run, InputError> {
    let mut autopsy = Autopsy::new(policy, vec![session.to_string()], true);
    autopsy.open(session);
    let wanted = |s: &str| s == session;
    match for_each_entry(
        &[LedgerSource::Spool(ledger.to_path_buf())],
        Some(&wanted),
        &mut |entry| autopsy.push(&entry),
    ) {
        Ok(()) | Err(InputError::EmptySpool(_)) => {}
        Err(error) => return Err(error),
    }
    let mut runs = autopsy
        .finish(&final_state)
        .expect("the session was opened, so it is never missing");
    Ok(runs.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(exit_code(Some(Triage::SafePass)), 0);
        assert_eq!(exit_code(Some(Triage::UnsafePass)), 1);
        assert_eq!(exit_code(Some(Triage::Fail)), 2);
        assert_eq!(exit_code(None), 3);
    }

    /// Writes the documented example entries as one spool segment, all in `session`.
    fn spool_of_examples(dir: &Path, session: &str, names: &[&str]) {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
        let mut lines = String::new();
        for name in names {
            let mut entry: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(examples.join(name)).unwrap())
                    .unwrap();
            entry["session"] = session.into();
            lines.push_str(&entry.to_string());
            lines.push('\n');
        }
        std::fs::write(dir.join(crate::ledger::segment_name(1)), lines).unwrap();
    }

    #[test]
    fn a_run_without_requests_is_judged_on_its_final_state() {
        let dir = tempfile::tempdir().unwrap();
        let policy = RunPolicy::default();
        let run = judge(dir.path(), "run-1", policy.clone(), FinalState::Unchecked).unwrap();
        assert_eq!(
            (run.session.as_str(), run.triage),
            ("run-1", Triage::SafePass)
        );
        assert_eq!(run.counts.requests, 0);
        let failed = judge(
            dir.path(),
            "run-1",
            policy,
            FinalState::Given { passed: false },
        );
        assert_eq!(failed.unwrap().triage, Triage::Fail);
    }

    #[test]
    fn only_the_session_is_judged_and_violations_make_an_unsafe_pass() {
        let dir = tempfile::tempdir().unwrap();
        spool_of_examples(dir.path(), "other", &["ledger-observe-replace.json"]);
        let clean = judge(
            dir.path(),
            "run-1",
            RunPolicy::default(),
            FinalState::Unchecked,
        );
        assert_eq!(
            clean.unwrap().counts.requests,
            0,
            "another session's entries"
        );
        spool_of_examples(dir.path(), "run-1", &["ledger-observe-replace.json"]);
        let run = judge(
            dir.path(),
            "run-1",
            RunPolicy::default(),
            FinalState::Unchecked,
        )
        .unwrap();
        assert_eq!(run.triage, Triage::UnsafePass, "{run:#?}");
        assert!(run.timeline.is_some(), "the HTML report needs the timeline");
    }
}
