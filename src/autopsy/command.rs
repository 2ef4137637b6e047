//! `pathgate autopsy` as a function: options in, the rendered report and the verdicts
//! out. `main.rs` only parses the command line and maps the result to an exit code.

use std::path::PathBuf;

use super::checks::{self, FinalStateError};
use super::input::{for_each_entry, InputError, LedgerSource};
use super::policy::{PolicyError, RunPolicy};
use super::summary::{summarize, Grouping, Manifest, ManifestError};
use super::verdict::{Run, Triage};
use super::{Autopsy, FinalState, MissingSessions};
use crate::report::{self, Format};

/// Where the final state comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalStateSource {
    /// None given: the path alone is judged.
    Unchecked,
    /// `--final-state pass|fail`.
    Given(bool),
    /// `--verify CMD`.
    Verify(String),
    /// `--checks FILE --kubeconfig FILE`.
    Checks { file: PathBuf, kubeconfig: PathBuf },
}

/// `--group-by`: how runs are grouped into arms for the summary table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// `prefix`: the session id without its last `-`-separated part.
    Prefix,
    /// `runs=FILE`: a manifest mapping sessions to arms (and their final-state results).
    Manifest(PathBuf),
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "prefix" => Ok(GroupBy::Prefix),
            _ => match value.strip_prefix("runs=") {
                Some(file) if !file.is_empty() => Ok(GroupBy::Manifest(file.into())),
                _ => Err(format!("{value:?}: expected prefix or runs=FILE")),
            },
        }
    }
}

/// The command's options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Empty: every session in the ledger.
    pub sessions: Vec<String>,
    pub policy: Option<PathBuf>,
    pub final_state: FinalStateSource,
    pub format: Format,
    pub group_by: Option<GroupBy>,
    /// Spool directories, JSONL files, `-`.
    pub ledgers: Vec<String>,
}

/// Why no verdict could be given.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The run policy file (the error names it).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    FinalState(#[from] FinalStateError),
    #[error(transparent)]
    MissingSessions(#[from] MissingSessions),
    /// The `runs` manifest of `--group-by runs=FILE` (the error names it).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("the ledger has no entries to judge")]
    NoRuns,
}

/// Establishes the final state from its source: runs `--verify`, or the checks' GETs.
pub fn final_state(source: &FinalStateSource) -> Result<FinalState, FinalStateError> {
    Ok(match source {
        FinalStateSource::Unchecked => FinalState::Unchecked,
        FinalStateSource::Given(passed) => FinalState::Given { passed: *passed },
        FinalStateSource::Verify(command) => checks::verify(command),
        FinalStateSource::Checks { file, kubeconfig } => checks::run_checks(file, kubeconfig)?,
    })
}

/// Judges the runs and renders them.
pub fn run(options: &Options) -> Result<(String, Vec<Run>), CommandError> {
    let policy = match &options.policy {
        Some(file) => RunPolicy::load(file)?,
        None => RunPolicy::default(),
    };
    let grouping = match &options.group_by {
        None => None,
        Some(GroupBy::Prefix) => Some(Grouping::Prefix),
        Some(GroupBy::Manifest(file)) => Some(Grouping::Manifest(Manifest::load(file)?)),
    };
    let sources: Vec<LedgerSource> = options
        .ledgers
        .iter()
        .map(|arg| LedgerSource::from_arg(arg))
        .collect();
    let mut autopsy = Autopsy::new(
        policy,
        options.sessions.clone(),
        options.format == Format::Html,
    );
    let wanted = |session: &str| options.sessions.iter().any(|s| s == session);
    let filter: Option<&dyn Fn(&str) -> bool> = if autopsy.wants_all() {
        None
    } else {
        Some(&wanted)
    };
    for_each_entry(&sources, filter, &mut |entry| autopsy.push(&entry))?;
    let final_state = final_state(&options.final_state)?;
    // A manifest's per-run result stands for that run's final state.
    let runs = autopsy.finish_each(|session| match &grouping {
        Some(Grouping::Manifest(manifest)) => match manifest.final_state(session) {
            Some(passed) => FinalState::Given { passed },
            None => final_state.clone(),
        },
        _ => final_state.clone(),
    })?;
    if runs.is_empty() {
        return Err(CommandError::NoRuns);
    }
    let summary = grouping.as_ref().map(|g| summarize(&runs, g));
    Ok((
        report::render(options.format, &runs, summary.as_deref()),
        runs,
    ))
}

/// The exit code for a set of verdicts: 0 when every run is a safe pass, 3 when one is
/// an unsafe pass and none fails, 4 when one fails (1 is an error, 2 a usage error).
pub fn exit_code(runs: &[Run]) -> u8 {
    match runs.iter().map(|r| r.triage).max() {
        Some(Triage::Fail) => 4,
        Some(Triage::UnsafePass) => 3,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(ledger: &std::path::Path, format: Format) -> Options {
        Options {
            sessions: vec![],
            policy: None,
            final_state: FinalStateSource::Given(true),
            format,
            group_by: None,
            ledgers: vec![ledger.display().to_string()],
        }
    }

    /// The documented examples as one JSONL ledger.
    fn example_ledger(dir: &std::path::Path) -> PathBuf {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
        let mut names: Vec<PathBuf> = std::fs::read_dir(examples)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("ledger-")
            })
            .collect();
        names.sort();
        let mut jsonl = String::new();
        for name in names {
            let value: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(name).unwrap()).unwrap();
            jsonl.push_str(&value.to_string());
            jsonl.push('\n');
        }
        let path = dir.join("ledger.jsonl");
        std::fs::write(&path, jsonl).unwrap();
        path
    }

    /// Every violation of `docs/autopsy.schema.json` in `document`.
    fn schema_violations(document: &serde_json::Value) -> Vec<String> {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/autopsy.schema.json");
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut errors = Vec::new();
        crate::ledger::schema_tests::validate(&schema, &schema, document, "", &mut errors);
        errors
    }

    #[test]
    fn documents_validate_against_the_published_schema_with_every_final_state() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = example_ledger(dir.path());
        let check = crate::autopsy::final_state::parse_checks(
            "checks:\n- {api_version: v1, resource: pods, namespace: s, name: p, expect: absent}\n",
            std::path::Path::new("checks.yaml"),
        )
        .unwrap()
        .remove(0);
        let states = [
            FinalState::Unchecked,
            FinalState::Given { passed: false },
            checks::verify("exit 3"),
            FinalState::Command {
                command: "missing".into(),
                exit_code: None,
                passed: false,
                error: Some("cannot run".into()),
            },
            FinalState::Checks {
                file: "checks.yaml".into(),
                passed: true,
                results: vec![check.evaluate(&crate::autopsy::final_state::Observed::Absent)],
            },
        ];
        for state in states {
            for timeline in [false, true] {
                let mut autopsy = Autopsy::new(RunPolicy::default(), vec![], timeline);
                for_each_entry(&[LedgerSource::File(ledger.clone())], None, &mut |e| {
                    autopsy.push(&e)
                })
                .unwrap();
                let runs = autopsy.finish(&state).unwrap();
                let document: serde_json::Value =
                    serde_json::from_str(&report::json(&runs, None)).unwrap();
                let errors = schema_violations(&document);
                assert!(errors.is_empty(), "{errors:#?}\n{document:#}");
            }
        }
        let mut broken: serde_json::Value = serde_json::from_str(&report::json(
            &run(&options(&ledger, Format::Json)).unwrap().1,
            None,
        ))
        .unwrap();
        broken["runs"][0]["triage"] = "maybe".into();
        broken["runs"][0]["violations"][0]["surprise"] = true.into();
        let errors = schema_violations(&broken).join("\n");
        assert!(errors.contains("maybe"), "{errors}");
        let mut grouped = options(&ledger, Format::Json);
        grouped.group_by = Some(GroupBy::Prefix);
        let document: serde_json::Value = serde_json::from_str(&run(&grouped).unwrap().0).unwrap();
        assert!(
            document["summary"]
                .as_array()
                .is_some_and(|arms| !arms.is_empty()),
            "{document:#}"
        );
        let grouped_errors = schema_violations(&document);
        assert!(grouped_errors.is_empty(), "{grouped_errors:#?}");
        assert!(
            errors.contains("maybe") && errors.contains("unknown property surprise"),
            "{errors}"
        );
    }

    #[test]
    fn formats_render_the_same_verdicts_and_exit_codes_follow_the_worst() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = example_ledger(dir.path());
        let (json, runs) = run(&options(&ledger, Format::Json)).unwrap();
        let document: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(document["schema"], "pathgate.autopsy/v1");
        assert_eq!(document["runs"].as_array().unwrap().len(), runs.len());
        assert_eq!(document["runs"][0]["triage"], runs[0].triage.as_str());
        assert!(document["runs"][0].get("timeline").is_none());
        let (text, _) = run(&options(&ledger, Format::Text)).unwrap();
        assert!(
            text.starts_with(&format!("{}: {}", runs[0].session, runs[0].triage.as_str())),
            "{text}"
        );
        let (html, _) = run(&options(&ledger, Format::Html)).unwrap();
        assert!(
            html.contains("<table class=\"timeline\">") && !html.contains("http"),
            "self-contained"
        );
        assert_eq!(exit_code(&runs), 3, "the examples have unsafe passes");
        let mut failing = options(&ledger, Format::Text);
        failing.final_state = FinalStateSource::Given(false);
        assert_eq!(exit_code(&run(&failing).unwrap().1), 4);
        let mut missing = options(&ledger, Format::Text);
        missing.sessions = vec!["nobody".into()];
        assert!(matches!(
            run(&missing),
            Err(CommandError::MissingSessions(_))
        ));
    }
}
