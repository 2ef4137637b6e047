//! The study's table from a suite's results: per arm the final pass rate, safe and
//! unsafe execution rates and mean payload and effect scope (the autopsy's summary), the
//! violations per category, the verdicts per scenario, one row per run, and the enforce pass: how many of the unsafe
//! paths' actions pathgate blocked and what the agent was told.
//!
//! Pure: results in, Markdown, JSON and HTML out. The numbers are the autopsy's
//! ([`pathgate::autopsy::summary`]); this module only lays them out.

use std::collections::BTreeMap;
use std::fmt::Write;

use pathgate::autopsy::summary::{summarize, ArmSummary, Grouping, Manifest};
use pathgate::autopsy::{Category, Run, Triage};
use serde_json::json;

use super::suite::RunResult;

/// The per-arm summary of the judged runs among `results`.
pub fn arm_summaries(results: &[RunResult]) -> Vec<ArmSummary> {
    let (runs, grouping) = runs_and_grouping(results);
    summarize(&runs, &grouping)
}

fn runs_and_grouping(results: &[RunResult]) -> (Vec<Run>, Grouping) {
    let mut manifest = Manifest::default();
    let mut runs = Vec::new();
    for result in results {
        if let Ok(judged) = &result.outcome {
            manifest.runs.insert(
                result.session.clone(),
                (result.job.arm().as_str().to_string(), None),
            );
            runs.push(judged.run.clone());
        }
    }
    (runs, Grouping::Manifest(manifest))
}

fn percent(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

fn mean(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1}"))
}

/// The Markdown report: the observe table, categories, per-run rows, the enforce pass and
/// any harness errors.
pub fn markdown(observe: &[RunResult], enforce: &[RunResult]) -> String {
    let mut out = String::new();
    let summaries = arm_summaries(observe);
    let judged = observe.iter().filter(|r| r.outcome.is_ok()).count();
    let _ = writeln!(out, "## Per arm (observe mode, {judged} judged runs)\n");
    let _ = writeln!(out, "| arm | runs | final pass rate | safe execution rate | unsafe execution rate | mean payload scope | mean effect scope |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for arm in &summaries {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            arm.arm,
            arm.runs,
            percent(arm.final_pass_rate),
            percent(arm.safe_execution_rate),
            percent(arm.unsafe_execution_rate),
            mean(arm.average_payload_paths),
            mean(arm.average_effect_paths)
        );
    }
    categories(&mut out, &summaries);
    per_scenario(&mut out, observe);
    rows(&mut out, observe);
    if !enforce.is_empty() {
        enforce_pass(&mut out, observe, enforce);
    }
    errors(&mut out, observe.iter().chain(enforce));
    out
}

fn categories(out: &mut String, summaries: &[ArmSummary]) {
    let _ = writeln!(out, "\n## Violations per category (observe mode)\n");
    let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    let _ = writeln!(out, "| arm | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(names.len()));
    for arm in summaries {
        let counts: Vec<String> = names
            .iter()
            .map(|n| arm.categories.get(n).copied().unwrap_or(0).to_string())
            .collect();
        let _ = writeln!(out, "| {} | {} |", arm.arm, counts.join(" | "));
    }
}

/// Verdict counts per scenario and arm: where each arm's paths landed.
fn per_scenario(out: &mut String, results: &[RunResult]) {
    let mut cells: BTreeMap<(&str, &str), [usize; 3]> = BTreeMap::new();
    let mut arms: Vec<&str> = Vec::new();
    for result in results {
        let Ok(judged) = &result.outcome else {
            continue;
        };
        let arm = result.job.arm().as_str();
        if !arms.contains(&arm) {
            arms.push(arm);
        }
        let cell = cells
            .entry((result.job.scenario.name.as_str(), arm))
            .or_default();
        let column = match judged.run.triage {
            Triage::SafePass => 0,
            Triage::UnsafePass => 1,
            Triage::Fail => 2,
        };
        cell[column] += 1;
    }
    let _ = writeln!(
        out,
        "\n## Verdicts per scenario (observe mode: safe / unsafe / fail)\n"
    );
    let _ = writeln!(out, "| scenario | {} |", arms.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(arms.len()));
    let mut scenarios: Vec<&str> = cells.keys().map(|(s, _)| *s).collect();
    scenarios.dedup();
    for scenario in scenarios {
        let row: Vec<String> = arms
            .iter()
            .map(|arm| match cells.get(&(scenario, *arm)) {
                Some([safe, unsafe_, fail]) => format!("{safe} / {unsafe_} / {fail}"),
                None => "-".into(),
            })
            .collect();
        let _ = writeln!(out, "| {scenario} | {} |", row.join(" | "));
    }
}

fn violation_list(run: &Run) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for violation in &run.violations {
        *counts.entry(violation.category.as_str()).or_default() += 1;
    }
    if counts.is_empty() {
        return "-".into();
    }
    counts
        .iter()
        .map(|(c, n)| {
            if *n > 1 {
                format!("{c} x{n}")
            } else {
                c.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn rows(out: &mut String, results: &[RunResult]) {
    let _ = writeln!(out, "\n## Per run (observe mode)\n");
    let _ = writeln!(out, "| scenario | arm | path | expected | verdict | violations | requests | mutations | payload | effect |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---:|---:|---:|---:|");
    for result in results {
        let Ok(judged) = &result.outcome else {
            continue;
        };
        let run = &judged.run;
        let verdict = match result.as_expected() {
            Some(false) => format!("**{}** (mismatch)", run.triage.as_str()),
            _ => run.triage.as_str().to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            result.job.scenario.name,
            result.job.arm().as_str(),
            result.job.path_name(),
            result.job.expect().map_or("-", |e| e.as_str()),
            verdict,
            violation_list(run),
            judged.requests,
            run.scope.mutations.len(),
            mean(run.scope.average_payload_paths),
            mean(run.scope.average_effect_paths)
        );
    }
}

/// The observe run of the same scenario, arm and path.
fn observed<'a>(observe: &'a [RunResult], result: &RunResult) -> Option<&'a Run> {
    observe
        .iter()
        .find(|o| {
            o.job.scenario.name == result.job.scenario.name
                && o.job.arm() == result.job.arm()
                && o.job.path_name() == result.job.path_name()
        })
        .and_then(|o| o.outcome.as_ref().ok())
        .map(|j| &j.run)
}

fn enforce_pass(out: &mut String, observe: &[RunResult], enforce: &[RunResult]) {
    let _ = writeln!(
        out,
        "\n## Enforce mode: the unsafe and failing paths again, pathgate enforcing\n"
    );
    let _ = writeln!(out, "| arm | runs | violations in observe | blocked in enforce | violations left | final pass |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let mut arms: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    for result in enforce {
        let Ok(judged) = &result.outcome else {
            continue;
        };
        let row = arms.entry(result.job.arm().as_str()).or_default();
        row[0] += 1;
        row[1] += observed(observe, result).map_or(0, |r| r.violations.len());
        row[2] += judged.run.blocked.len();
        row[3] += judged.run.violations.len();
        row[4] += usize::from(judged.run.triage != Triage::Fail);
    }
    for (arm, [runs, before, blocked, left, passed]) in &arms {
        let _ = writeln!(
            out,
            "| {arm} | {runs} | {before} | {blocked} | {left} | {passed}/{runs} |"
        );
    }
    let _ = writeln!(out, "\n### What the agent saw (enforce mode)\n");
    let _ = writeln!(
        out,
        "| scenario | arm | path | verdict | blocked | what the agent saw |"
    );
    let _ = writeln!(out, "|---|---|---|---|---:|---|");
    for result in enforce {
        let Ok(judged) = &result.outcome else {
            continue;
        };
        let saw = if judged.agent_saw.is_empty() {
            "-".to_string()
        } else {
            judged
                .agent_saw
                .iter()
                .map(|l| format!("`{}`", l.replace('|', "\\|").replace('`', "'")))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            result.job.scenario.name,
            result.job.arm().as_str(),
            result.job.path_name(),
            judged.run.triage.as_str(),
            judged.run.blocked.len(),
            saw
        );
    }
}

fn errors<'a>(out: &mut String, results: impl Iterator<Item = &'a RunResult>) {
    let failed: Vec<&RunResult> = results.filter(|r| r.outcome.is_err()).collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## Harness errors (no verdict counted)\n");
    for result in failed {
        if let Err(error) = &result.outcome {
            let _ = writeln!(
                out,
                "- {} ({}): {error}",
                result.session,
                result.dir.display()
            );
        }
    }
}

/// One JSON document: every run's row, and the per-arm summaries of each pass.
pub fn json(observe: &[RunResult], enforce: &[RunResult]) -> serde_json::Value {
    let row = |result: &RunResult| {
        let base = json!({
            "session": result.session,
            "scenario": result.job.scenario.name,
            "category": result.job.scenario.category,
            "arm": result.job.arm().as_str(),
            "path": result.job.path_name(),
            "mode": result.job.mode.as_str(),
            "namespace": result.namespace,
            "expected": result.job.expect().map(|e| e.as_str()),
            "dir": result.dir,
        });
        let mut base = base;
        match &result.outcome {
            Ok(judged) => {
                base["verdict"] = json!(judged.run.triage.as_str());
                base["as_expected"] = json!(result.as_expected());
                base["violations"] = json!(judged
                    .run
                    .violations
                    .iter()
                    .map(|v| v.category.as_str())
                    .collect::<Vec<_>>());
                base["blocked"] = json!(judged.run.blocked.len());
                base["requests"] = json!(judged.requests);
                base["average_payload_paths"] = json!(judged.run.scope.average_payload_paths);
                base["average_effect_paths"] = json!(judged.run.scope.average_effect_paths);
                base["agent_exit"] = json!(judged.summary.agent_exit);
                base["duration_seconds"] = json!(judged.summary.duration.as_secs_f64());
                base["agent_saw"] = json!(judged.agent_saw);
            }
            Err(error) => base["harness_error"] = json!(error.to_string()),
        }
        base
    };
    json!({
        "schema": "pathgate.scenarios/v1",
        "summary": {"observe": arm_summaries(observe), "enforce": arm_summaries(enforce)},
        "runs": observe.iter().chain(enforce).map(row).collect::<Vec<_>>(),
    })
}

/// The autopsy's HTML report of every judged run, with the per-arm summary above them.
pub fn html(results: &[RunResult]) -> String {
    let (runs, grouping) = runs_and_grouping(results);
    let summary = summarize(&runs, &grouping);
    pathgate::report::render(pathgate::report::Format::Html, &runs, Some(&summary))
}
