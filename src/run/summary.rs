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
