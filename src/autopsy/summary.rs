//! The summary across runs (`--group-by`): the table the study published, per arm — final
//! pass rate, safe and unsafe execution rates, mean payload and effect scope, and counts
//! per category.
//!
//! Owns the grouping (a session-id prefix, or a `runs` manifest mapping sessions to arms
//! and, optionally, their own final-state results) and the arithmetic. Pure except for
//! reading the manifest file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::verdict::{Category, Run, Triage};

/// How runs are grouped into arms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// The session id without its last `-`-separated part (`kubectl-3` -> `kubectl`).
    Prefix,
    /// A manifest naming each session's arm (and optionally its final state).
    Manifest(Manifest),
}

/// A `runs` manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Session -> (arm, final state result if given).
    pub runs: BTreeMap<String, (String, Option<bool>)>,
}

/// A manifest file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: PathBuf, reason: String },
    #[error("{file}: {key}: {reason}")]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    runs: Vec<ManifestRun>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestRun {
    session: String,
    arm: String,
    final_state: Option<PassFail>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum PassFail {
    Pass,
    Fail,
}

impl Manifest {
    /// Reads a manifest (YAML or JSON):
    /// `runs: [{session: kubectl-1, arm: kubectl, final_state: pass}, ...]`.
    pub fn load(file: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(file).map_err(|e| ManifestError::Read {
            file: file.to_path_buf(),
            reason: e.to_string(),
        })?;
        Manifest::parse(&text, file)
    }

    /// Parses manifest text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Manifest, ManifestError> {
        let invalid = |key: String, reason: String| ManifestError::Invalid {
            file: file.to_path_buf(),
            key,
            reason,
        };
        let raw: ManifestFile = serde_yaml::from_str(text).map_err(|error| {
            let (key, reason) = super::policy::split_serde_message(&error.to_string());
            invalid(key, reason)
        })?;
        let mut runs = BTreeMap::new();
        for (index, run) in raw.runs.into_iter().enumerate() {
            let result = run.final_state.map(|r| matches!(r, PassFail::Pass));
            if runs
                .insert(run.session.clone(), (run.arm, result))
                .is_some()
            {
                return Err(invalid(
                    format!("runs[{index}].session"),
                    format!("session {:?} is listed twice", run.session),
                ));
            }
        }
        Ok(Manifest { runs })
    }

    /// A session's final state result, when the manifest gives one.
    pub fn final_state(&self, session: &str) -> Option<bool> {
        self.runs.get(session).and_then(|(_, result)| *result)
    }
}

impl Grouping {
    /// The arm a session belongs to; `None` for a session the manifest does not list.
    pub fn arm(&self, session: &str) -> Option<String> {
        match self {
            Grouping::Prefix => Some(match session.rsplit_once('-') {
                Some((prefix, _)) if !prefix.is_empty() => prefix.to_string(),
                _ => session.to_string(),
            }),
            Grouping::Manifest(manifest) => manifest.runs.get(session).map(|(arm, _)| arm.clone()),
        }
    }
}

/// One arm's row of the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmSummary {
    pub arm: String,
    pub runs: usize,
    /// Runs whose final state is right (safe and unsafe passes) over all runs.
    pub final_pass_rate: f64,
    /// Safe passes over all runs.
    pub safe_execution_rate: f64,
    /// Unsafe passes over all runs.
    pub unsafe_execution_rate: f64,
    /// Mean payload scope over the arm's mutations where it is known.
    pub average_payload_paths: Option<f64>,
    /// Mean effect scope over the arm's mutations where it is known.
    pub average_effect_paths: Option<f64>,
    /// Violations per category (every category listed, zeros included).
    pub categories: BTreeMap<&'static str, usize>,
}

/// The summary of `runs` grouped by `grouping`, arms in name order. Runs of sessions a
/// manifest does not list are left out.
pub fn summarize(runs: &[Run], grouping: &Grouping) -> Vec<ArmSummary> {
    let mut arms: BTreeMap<String, Vec<&Run>> = BTreeMap::new();
    for run in runs {
        if let Some(arm) = grouping.arm(&run.session) {
            arms.entry(arm).or_default().push(run);
        }
    }
    arms.into_iter()
        .map(|(arm, runs)| arm_summary(arm, &runs))
        .collect()
}

fn mean(values: impl Iterator<Item = usize>) -> Option<f64> {
    let (sum, count) = values.fold((0usize, 0usize), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum as f64 / count as f64)
}

fn arm_summary(arm: String, runs: &[&Run]) -> ArmSummary {
    let total = runs.len() as f64;
    let rate = |triage: &[Triage]| {
        runs.iter().filter(|r| triage.contains(&r.triage)).count() as f64 / total
    };
    let mutations = || runs.iter().flat_map(|r| r.scope.mutations.iter());
    ArmSummary {
        arm,
        runs: runs.len(),
        final_pass_rate: rate(&[Triage::SafePass, Triage::UnsafePass]),
        safe_execution_rate: rate(&[Triage::SafePass]),
        unsafe_execution_rate: rate(&[Triage::UnsafePass]),
        average_payload_paths: mean(mutations().filter_map(|m| m.payload_paths)),
        average_effect_paths: mean(mutations().filter_map(|m| m.effect_paths)),
        categories: Category::ALL
            .iter()
            .map(|c| (c.as_str(), runs.iter().map(|r| r.count(*c)).sum()))
            .collect(),
    }
}
