//! The undo's report: `pathgate.undo/v1` JSON (docs/undo.schema.json) and its text
//! rendering, the outcome and the exit code.

use serde::Serialize;

use super::execute::{Mode, StepReport, StepResult};
use super::inverse::Op;
use super::plan::{Action, NotUndoable};

/// The schema identifier of the JSON report.
pub const SCHEMA: &str = "pathgate.undo/v1";

/// The exit codes, shown in `pathgate undo --help` and docs/undo.md.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  every step was verified (--dry-run) or applied (--apply), and nothing the run did
     is beyond undo
  1  no plan: the ledger, the images, the key or the gateway could not be used
  2  usage error
  3  a conflict: a step's object changed since the run; it was skipped (nothing failed)
  4  a step failed (the apiserver refused its dry run or its application); under
     --apply the steps after it were not sent
  5  every step went through, but some of what the run did cannot be undone (listed)";

/// How the undo ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Verified,
    Applied,
    Conflict,
    Failed,
    Incomplete,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Verified | Outcome::Applied => 0,
            Outcome::Conflict => 3,
            Outcome::Failed => 4,
            Outcome::Incomplete => 5,
        }
    }
}

/// The window of the session that was undone.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    pub since: Option<String>,
    pub until: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    /// The session undone.
    pub session: String,
    /// The session the undo's requests went through pathgate in.
    pub undo_session: String,
    pub mode: Mode,
    pub force_conflicts: bool,
    pub window: Window,
    /// The gateway the steps went through.
    pub gateway: String,
    /// The spool of the gateway the undo started for itself (absent with --gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<String>,
    /// Newest first.
    pub steps: Vec<StepReport>,
    pub not_undoable: Vec<NotUndoable>,
    pub outcome: Outcome,
    pub exit_code: u8,
    pub message: String,
}

/// The outcome of the steps and what cannot be undone, and its one-line explanation.
pub fn outcome(
    mode: Mode,
    steps: &[StepReport],
    not_undoable: &[NotUndoable],
) -> (Outcome, String) {
    let count = |f: fn(&StepResult) -> bool| steps.iter().filter(|s| f(&s.result)).count();
    let failed = count(|r| matches!(r, StepResult::Failed { .. }));
    let conflicts = count(|r| matches!(r, StepResult::Conflict { .. }));
    let not_sent = count(|r| matches!(r, StepResult::NotSent));
    let done = match mode {
        Mode::DryRun => count(|r| matches!(r, StepResult::Verified { .. })),
        Mode::Apply => count(|r| matches!(r, StepResult::Applied { .. })),
    };
    let verb = match mode {
        Mode::DryRun => "verified",
        Mode::Apply => "applied",
    };
    if failed > 0 {
        return (
            Outcome::Failed,
            format!("{failed} step(s) failed; {done} {verb}, {not_sent} not sent, {conflicts} skipped for a conflict"),
        );
    }
    if conflicts > 0 {
        return (
            Outcome::Conflict,
            format!("{conflicts} step(s) skipped: their object changed since the run (--force-conflicts restores the run's fields anyway); {done} {verb}"),
        );
    }
    if !not_undoable.is_empty() {
        return (
            Outcome::Incomplete,
            format!(
                "{done} step(s) {verb}; {} mutation(s) cannot be undone",
                not_undoable.len()
            ),
        );
    }
    let outcome = match mode {
        Mode::DryRun => Outcome::Verified,
        Mode::Apply => Outcome::Applied,
    };
    (outcome, format!("{done} step(s) {verb}"))
}

impl Report {
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes") + "\n"
    }

    /// The readable plan.
    pub fn text(&self) -> String {
        let mode = match self.mode {
            Mode::DryRun => "dry run",
            Mode::Apply => "apply",
        };
        let mut out = format!(
            "pathgate undo {} ({mode} through {} as session {}): {} step(s), {} beyond undo\n",
            self.session,
            self.gateway,
            self.undo_session,
            self.steps.len(),
            self.not_undoable.len()
        );
        for (index, step) in self.steps.iter().enumerate() {
            out.push_str(&step_text(index + 1, step));
        }
        if !self.not_undoable.is_empty() {
            out.push_str("cannot be undone:\n");
            for item in &self.not_undoable {
                out.push_str(&format!(
                    "  - {} {} ({}): {}\n",
                    item.verb,
                    item.object.display(),
                    item.traces.join(", "),
                    item.message
                ));
            }
        }
        if let Some(ledger) = &self.ledger {
            out.push_str(&format!("the undo's ledger: {ledger}\n"));
        }
        out.push_str(&format!(
            "result: {} (exit {}): {}\n",
            serde_json::to_value(self.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            self.exit_code,
            self.message
        ));
        out
    }
}

fn step_text(number: usize, report: &StepReport) -> String {
    let step = &report.step;
    let object = step.object.display();
    let traces = step.traces.join(", ");
    let (what, details) = match &step.action {
        Action::Delete {
            uid,
            resource_version,
        } => (
            format!(
                "delete {object} ({traces}) if uid {uid} at resourceVersion {resource_version}"
            ),
            Vec::new(),
        ),
        Action::Patch {
            view,
            resource_version,
            ops,
        } => {
            let target = match view.subresource() {
                "" => object,
                sub => format!("{object} {sub}"),
            };
            let mut lines = vec![format!(
                "test /metadata/resourceVersion == {resource_version:?}"
            )];
            lines.extend(ops.iter().map(op_text));
            (format!("patch {target} ({traces})"), lines)
        }
        Action::DeleteCreatedBetween { from, to } => (
            format!("delete {object} ({traces}) if created between {from} and {to}"),
            Vec::new(),
        ),
        Action::Create { .. } => (
            format!("re-create {object} ({traces}) if absent"),
            Vec::new(),
        ),
        Action::LeftToController { controller } => (
            format!(
                "{object} ({traces}): not re-created, its controller {controller} re-creates it"
            ),
            Vec::new(),
        ),
        Action::NoNetChange => (
            format!("{object} ({traces}): nothing to do, the run left it as it found it"),
            Vec::new(),
        ),
    };
    let mut out = format!("  {number}. {what}: {}\n", result_text(report));
    for line in details {
        out.push_str(&format!("       {line}\n"));
    }
    if let StepResult::Conflict { fields, .. } = &report.result {
        for field in fields {
            out.push_str(&format!(
                "       {}: the run left {}, now {}\n",
                field.path,
                value_text(&field.run_left),
                value_text(&field.current)
            ));
        }
    }
    out
}

fn result_text(report: &StepReport) -> String {
    let forced = if report.forced {
        " (forced through a conflict)"
    } else {
        ""
    };
    match &report.result {
        StepResult::NothingToSend => "nothing sent".into(),
        StepResult::Verified { status_code } => format!("verified ({status_code}){forced}"),
        StepResult::Applied { status_code } => format!("applied ({status_code}){forced}"),
        StepResult::AlreadyReverted { message } => format!("already reverted: {message}"),
        StepResult::Conflict { message, .. } => format!("CONFLICT, skipped: {message}"),
        StepResult::Failed {
            phase,
            status_code,
            message,
        } => {
            let phase = serde_json::to_value(phase)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let code = status_code.map(|c| format!(" {c}")).unwrap_or_default();
            format!("FAILED at {phase}{code}: {message}")
        }
        StepResult::NotSent => "not sent (an earlier step failed)".into(),
    }
}

fn op_text(op: &Op) -> String {
    match op {
        Op::Test { path, value } => format!("test {path} == {value}"),
        Op::Add { path, value } => format!("add {path}: {value}"),
        Op::Remove { path } => format!("remove {path}"),
        Op::Replace { path, value } => format!("replace {path}: {value}"),
    }
}

fn value_text(value: &Option<serde_json::Value>) -> String {
    value
        .as_ref()
        .map_or_else(|| "(absent)".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::undo::execute::Phase;
    use crate::undo::history::ObjectRef;
    use crate::undo::inverse::{FieldDiff, View};
    use crate::undo::plan::{Reason, Step};
    use crate::undo::precondition::{Check, ConflictKind};

    fn object(resource: &str, name: &str) -> ObjectRef {
        ObjectRef {
            api_group: if resource == "deployments" {
                "apps"
            } else {
                ""
            }
            .into(),
            api_version: "v1".into(),
            resource: resource.into(),
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    fn report_of(action: Action, result: StepResult, forced: bool) -> StepReport {
        let step = Step {
            object: object("deployments", "web"),
            traces: vec!["t-1".into(), "t-2".into()],
            action,
            left: None,
        };
        StepReport {
            path: step.path(),
            step,
            forced,
            result,
            overridden: forced.then(|| Check::Conflict {
                kind: ConflictKind::Changed,
                message: "changed since the run".into(),
                fields: vec![],
            }),
        }
    }

    /// A report with every kind of step and result.
    fn report() -> Report {
        let patch = Action::Patch {
            view: View::Object,
            resource_version: "12".into(),
            ops: vec![Op::Replace {
                path: "/spec/replicas".into(),
                value: json!(2),
            }],
        };
        let steps = vec![
            report_of(patch.clone(), StepResult::Applied { status_code: 200 }, true),
            report_of(
                patch,
                StepResult::Conflict {
                    kind: ConflictKind::Changed,
                    message: "changed since the run (resourceVersion 15, the run left 12), in fields this step restores".into(),
                    fields: vec![FieldDiff {
                        path: "/spec/replicas".into(),
                        run_left: Some(json!(5)),
                        current: Some(json!(7)),
                    }],
                },
                false,
            ),
            report_of(
                Action::Delete {
                    uid: "u-1".into(),
                    resource_version: "40".into(),
                },
                StepResult::Failed {
                    phase: Phase::DryRun,
                    status_code: Some(409),
                    message: "Precondition failed".into(),
                },
                false,
            ),
            report_of(
                Action::Create {
                    body: json!({"metadata": {"name": "settings"}}),
                },
                StepResult::NotSent,
                false,
            ),
            report_of(
                Action::DeleteCreatedBetween {
                    from: "2026-12-02T02:15:31.2Z".into(),
                    to: "2026-12-02T02:15:31.3Z".into(),
                },
                StepResult::NotSent,
                false,
            ),
            report_of(
                Action::LeftToController {
                    controller: "ReplicaSet web-1".into(),
                },
                StepResult::NothingToSend,
                false,
            ),
            report_of(
                Action::NoNetChange,
                StepResult::AlreadyReverted {
                    message: "already absent".into(),
                },
                false,
            ),
            report_of(
                Action::NoNetChange,
                StepResult::Verified { status_code: 201 },
                false,
            ),
        ];
        let not_undoable = vec![
            NotUndoable {
                traces: vec!["t-9".into()],
                verb: "connect".into(),
                object: object("pods", "web-1"),
                message: Reason::InsideContainer.message(),
                reason: Reason::InsideContainer,
            },
            NotUndoable {
                traces: vec!["t-10".into()],
                verb: "delete".into(),
                object: object("secrets", "token"),
                message: Reason::ImageWithheld("secret".into()).message(),
                reason: Reason::ImageWithheld("secret".into()),
            },
        ];
        let (outcome, message) = outcome(Mode::Apply, &steps, &not_undoable);
        Report {
            schema: SCHEMA,
            session: "run-1".into(),
            undo_session: "undo.run-1".into(),
            mode: Mode::Apply,
            force_conflicts: true,
            window: Window::default(),
            gateway: "https://127.0.0.1:40000".into(),
            ledger: Some("/tmp/undo-ledger".into()),
            steps,
            not_undoable,
            outcome,
            exit_code: outcome.exit_code(),
            message,
        }
    }

    #[test]
    fn the_json_report_matches_the_published_schema_and_the_schema_catches_drift() {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/undo.schema.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let document: Value = serde_json::from_str(&report().json()).unwrap();
        let mut errors = Vec::new();
        crate::ledger::schema_tests::validate(&schema, &schema, &document, "", &mut errors);
        assert!(errors.is_empty(), "{errors:#?}\n{document:#}");
        let mut broken = document.clone();
        broken["steps"][0]["surprise"] = true.into();
        broken["not_undoable"][0]["reason"] = "bad_luck".into();
        let mut errors = Vec::new();
        crate::ledger::schema_tests::validate(&schema, &schema, &broken, "", &mut errors);
        assert_eq!(errors.len(), 2, "{errors:#?}");
    }

    #[test]
    fn a_failure_outranks_a_conflict_which_outranks_what_cannot_be_undone() {
        let report = report();
        assert_eq!((report.outcome, report.exit_code), (Outcome::Failed, 4));
        let conflict = report_of(
            Action::NoNetChange,
            StepResult::Conflict {
                kind: ConflictKind::Deleted,
                message: String::new(),
                fields: vec![],
            },
            false,
        );
        let verified = report_of(
            Action::NoNetChange,
            StepResult::Verified { status_code: 200 },
            false,
        );
        let cases = [
            (
                vec![conflict.clone(), verified.clone()],
                true,
                Outcome::Conflict,
            ),
            (vec![verified.clone()], true, Outcome::Incomplete),
            (vec![verified.clone()], false, Outcome::Verified),
            (vec![], false, Outcome::Verified),
        ];
        for (steps, some_not_undoable, expected) in cases {
            let not_undoable = if some_not_undoable {
                report.not_undoable.clone()
            } else {
                vec![]
            };
            assert_eq!(outcome(Mode::DryRun, &steps, &not_undoable).0, expected);
        }
        assert_eq!(
            [
                Outcome::Verified,
                Outcome::Applied,
                Outcome::Conflict,
                Outcome::Failed,
                Outcome::Incomplete
            ]
            .map(Outcome::exit_code),
            [0, 0, 3, 4, 5]
        );
    }

    #[test]
    fn the_text_plan_shows_each_step_its_guard_its_answer_and_what_cannot_be_undone() {
        let text = report().text();
        for line in [
            "pathgate undo run-1 (apply through https://127.0.0.1:40000 as session undo.run-1): 8 step(s), 2 beyond undo",
            "  1. patch deployments.apps shop/web (t-1, t-2): applied (200) (forced through a conflict)",
            "       test /metadata/resourceVersion == \"12\"",
            "       replace /spec/replicas: 2",
            "  2. patch deployments.apps shop/web (t-1, t-2): CONFLICT, skipped: changed since the run",
            "       /spec/replicas: the run left 5, now 7",
            "  3. delete deployments.apps shop/web (t-1, t-2) if uid u-1 at resourceVersion 40: FAILED at dry_run 409: Precondition failed",
            "  4. re-create deployments.apps shop/web (t-1, t-2) if absent: not sent (an earlier step failed)",
            "  5. delete deployments.apps shop/web (t-1, t-2) if created between 2026-12-02T02:15:31.2Z and 2026-12-02T02:15:31.3Z: not sent (an earlier step failed)",
            "  6. deployments.apps shop/web (t-1, t-2): not re-created, its controller ReplicaSet web-1 re-creates it: nothing sent",
            "  - connect pods shop/web-1 (t-9): what ran inside the container",
            "  - delete secrets shop/token (t-10): the image of a Secret was not kept",
            "the undo's ledger: /tmp/undo-ledger",
            "result: failed (exit 4): 1 step(s) failed; 1 applied, 2 not sent, 1 skipped for a conflict",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }
}
