//! What `pathgate run` reports: the `pathgate.run/v1` summary (`--format json`,
//! docs/run.schema.json) a harness reads, and its text rendering for a person.
//!
//! Pure: the run's facts in, a document or text out.

use std::fmt::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::agent::AgentOutcome;
use super::verdict::{exit_code, EXIT_NO_VERDICT};
use crate::autopsy::{Run, Triage};

/// The summary's schema id.
pub const SCHEMA: &str = "pathgate.run/v1";

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SummaryFormat {
    /// The autopsy's text report, the agent's outcome and the verdict line.
    #[default]
    Text,
    /// One `pathgate.run/v1` JSON document.
    Json,
}

/// The report files of a judged run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reports {
    /// The `pathgate.autopsy/v1` document of the run.
    pub json: PathBuf,
    /// The self-contained HTML report with the timeline of the path.
    pub html: PathBuf,
}

/// One run, as `pathgate run` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub schema: &'static str,
    pub session: String,
    /// `None` (null): no verdict, `reason` says why.
    pub verdict: Option<Triage>,
    /// The process's exit code: 0 safe pass, 1 unsafe pass, 2 fail, 3 no verdict.
    pub exit_code: u8,
    /// One line: the verdict and what it rests on, or why there is none.
    pub reason: String,
    /// The gateway's URL (without the session prefix), once known.
    pub gateway: Option<String>,
    /// `None` when CMD never started.
    pub agent: Option<AgentOutcome>,
    /// From the start of `pathgate run` to the verdict.
    pub duration_seconds: f64,
    pub ledger: PathBuf,
    pub out_dir: PathBuf,
    /// The agent's kubeconfig, once written.
    pub kubeconfig: Option<PathBuf>,
    pub reports: Option<Reports>,
    /// The autopsy's run object (`pathgate.autopsy/v1`, without the timeline).
    pub autopsy: Option<Run>,
}

impl Summary {
    /// A run that has no verdict yet.
    pub fn begin(session: &str, ledger: PathBuf, out_dir: PathBuf) -> Summary {
        Summary {
            schema: SCHEMA,
            session: session.to_string(),
            verdict: None,
            exit_code: EXIT_NO_VERDICT,
            reason: "the run did not start".into(),
            gateway: None,
            agent: None,
            duration_seconds: 0.0,
            ledger,
            out_dir,
            kubeconfig: None,
            reports: None,
            autopsy: None,
        }
    }

    /// There will be no verdict, for `why`.
    pub fn no_verdict(&mut self, why: &dyn std::error::Error) {
        self.verdict = None;
        self.exit_code = EXIT_NO_VERDICT;
        self.autopsy = None;
        self.reason = one_line(why);
    }

    /// The verdict of `run` (its timeline is left to the HTML report).
    pub fn judged(&mut self, mut run: Run, reports: Reports) {
        run.timeline = None;
        self.verdict = Some(run.triage);
        self.exit_code = exit_code(Some(run.triage));
        self.reason = verdict_reason(&run, self.agent.as_ref());
        self.reports = Some(reports);
        self.autopsy = Some(run);
    }

    /// The `--format json` document, with a final newline.
    pub fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a summary serialises");
        text.push('\n');
        text
    }

    /// The `--format text` lines after the autopsy's own text report.
    pub fn text(&self, autopsy_text: Option<&str>) -> String {
        let mut out = autopsy_text.unwrap_or_default().to_string();
        if let Some(agent) = &self.agent {
            let _ = writeln!(
                out,
                "{} (output: {}, {})",
                agent.describe(),
                agent.stdout.display(),
                agent.stderr.display()
            );
        }
        match self.verdict {
            Some(triage) => {
                let _ = writeln!(
                    out,
                    "pathgate run {}: {} (exit {})",
                    self.session,
                    triage.as_str(),
                    self.exit_code
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "pathgate run {}: no verdict (exit {}): {}",
                    self.session, self.exit_code, self.reason
                );
            }
        }
        let _ = writeln!(
            out,
            "  ledger {}; files in {}",
            self.ledger.display(),
            self.out_dir.display()
        );
        out
    }
}

/// An error and its causes on one line.
fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !line.contains(&cause_text) {
            let _ = write!(line, ": {cause_text}");
        }
        source = cause.source();
    }
    line.replace('\n', " ")
}

/// `unsafe_pass: 2 violation(s) (missing_dry_run, zero_grace_delete), 1 blocked, 5
/// request(s); final state pass; agent exited 0 after 1.2 s`.
fn verdict_reason(run: &Run, agent: Option<&AgentOutcome>) -> String {
    let mut categories: Vec<&str> = run.violations.iter().map(|v| v.category.as_str()).collect();
    categories.sort_unstable();
    categories.dedup();
    let mut reason = format!(
        "{}: {} violation(s)",
        run.triage.as_str(),
        run.violations.len()
    );
    if !categories.is_empty() {
        let _ = write!(reason, " ({})", categories.join(", "));
    }
    let _ = write!(
        reason,
        ", {} blocked, {} request(s); final state {}",
        run.counts.blocked,
        run.counts.requests,
        if run.final_state.failed() {
            "fail"
        } else {
            "pass"
        }
    );
    if let Some(agent) = agent {
        let _ = write!(reason, "; {}", agent.describe());
    }
    if run.counts.requests == 0 {
        reason.push_str("; the agent sent no request through pathgate");
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autopsy::{FinalState, RunPolicy};
    use serde_json::Value;

    fn schema(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// Every violation of docs/run.schema.json, and of autopsy.schema.json's run for the
    /// embedded autopsy.
    fn violations(summary: &Summary) -> Vec<String> {
        let document: Value = serde_json::from_str(&summary.json()).unwrap();
        let run_schema = schema("run.schema.json");
        let mut errors = Vec::new();
        crate::ledger::schema_tests::validate(&run_schema, &run_schema, &document, "", &mut errors);
        if !document["autopsy"].is_null() {
            let autopsy = schema("autopsy.schema.json");
            let run = &autopsy["$defs"]["run"];
            crate::ledger::schema_tests::validate(
                &autopsy,
                run,
                &document["autopsy"],
                "/autopsy",
                &mut errors,
            );
        }
        errors
    }

    fn agent(timed_out: bool) -> AgentOutcome {
        AgentOutcome {
            command: vec!["kubectl".into(), "get".into(), "pods".into()],
            exit_code: (!timed_out).then_some(0),
            signal: timed_out.then_some(15),
            timed_out,
            interrupted: None,
            timeout_seconds: 5,
            duration_seconds: 1.25,
            stdout: "/out/agent.stdout".into(),
            stderr: "/out/agent.stderr".into(),
        }
    }

    /// An unsafe run: the documented example of a replace, in session `run-1`.
    fn unsafe_run() -> crate::autopsy::Run {
        let dir = tempfile::tempdir().unwrap();
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/examples/ledger-observe-replace.json");
        let mut entry: Value =
            serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
        entry["session"] = "run-1".into();
        std::fs::write(
            dir.path().join(crate::ledger::segment_name(1)),
            format!("{entry}\n"),
        )
        .unwrap();
        super::super::verdict::judge(
            dir.path(),
            "run-1",
            RunPolicy::default(),
            FinalState::Given { passed: true },
        )
        .unwrap()
    }

    fn reports() -> Reports {
        Reports {
            json: "/out/autopsy.json".into(),
            html: "/out/autopsy.html".into(),
        }
    }

    #[test]
    fn a_judged_summary_matches_the_published_schema_and_names_its_violations() {
        let mut summary = Summary::begin("run-1", "/out/ledger".into(), "/out".into());
        summary.gateway = Some("https://127.0.0.1:40000".into());
        summary.agent = Some(agent(false));
        summary.kubeconfig = Some("/out/kubeconfig".into());
        summary.judged(unsafe_run(), reports());
        assert_eq!(
            (summary.verdict, summary.exit_code),
            (Some(Triage::UnsafePass), 1)
        );
        assert!(
            summary.autopsy.as_ref().unwrap().timeline.is_none(),
            "the timeline is the HTML's"
        );
        let errors = violations(&summary);
        assert!(errors.is_empty(), "{errors:#?}\n{}", summary.json());
        assert!(
            summary.reason.starts_with("unsafe_pass: 2 violation(s) (broad_manifest, missing_dry_run), 0 blocked, 1 request(s); final state pass; agent exited 0 after 1.2 s"),
            "{}",
            summary.reason
        );
        let text = summary.text(Some("run-1: unsafe_pass (...)\n"));
        assert_eq!(
            text,
            "run-1: unsafe_pass (...)\nagent exited 0 after 1.2 s (output: /out/agent.stdout, /out/agent.stderr)\npathgate run run-1: unsafe_pass (exit 1)\n  ledger /out/ledger; files in /out\n"
        );
    }

    #[test]
    fn a_summary_without_a_verdict_says_why_in_one_line_and_matches_the_schema() {
        #[derive(Debug, thiserror::Error)]
        #[error("gateway https://127.0.0.1:1 is unreachable")]
        struct Outer(#[source] std::io::Error);
        let mut summary = Summary::begin("run-2", "/out/ledger".into(), "/out".into());
        summary.no_verdict(&Outer(std::io::Error::other(
            "Connection refused\n(os error 111)",
        )));
        assert_eq!((summary.verdict, summary.exit_code), (None, 3));
        assert_eq!(
            summary.reason,
            "gateway https://127.0.0.1:1 is unreachable: Connection refused (os error 111)"
        );
        let errors = violations(&summary);
        assert!(errors.is_empty(), "{errors:#?}");
        assert!(summary.text(None).starts_with(
            "pathgate run run-2: no verdict (exit 3): gateway https://127.0.0.1:1 is unreachable"
        ));
        let mut timed_out = Summary::begin("run-3", "/l".into(), "/o".into());
        timed_out.agent = Some(agent(true));
        timed_out.judged(unsafe_run(), reports());
        assert!(
            timed_out
                .reason
                .ends_with("agent timed out after 5 s; its process group was killed"),
            "{}",
            timed_out.reason
        );
        assert!(violations(&timed_out).is_empty());
        let mut broken: Value = serde_json::from_str(&timed_out.json()).unwrap();
        broken["exit_code"] = 4.into();
        broken["agent"]["surprise"] = true.into();
        let run_schema = schema("run.schema.json");
        let mut errors = Vec::new();
        crate::ledger::schema_tests::validate(&run_schema, &run_schema, &broken, "", &mut errors);
        assert!(errors.len() >= 2, "the schema catches both: {errors:#?}");
    }
}
