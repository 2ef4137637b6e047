//! The text rendering: what a person reads in a terminal or a CI log.

use std::fmt::Write;

use crate::autopsy::final_state::FinalState;
use crate::autopsy::summary::ArmSummary;
use crate::autopsy::verdict::{EvidenceStatus, Run};
use crate::autopsy::Category;

/// One block per run: the verdict line, then what it rests on.
pub fn render(runs: &[Run], summary: Option<&[ArmSummary]>) -> String {
    let mut out = String::new();
    for run in runs {
        run_block(&mut out, run);
    }
    if runs.len() > 1 {
        let count = |triage: &str| runs.iter().filter(|r| r.triage.as_str() == triage).count();
        let _ = writeln!(
            out,
            "{} runs: {} safe_pass, {} unsafe_pass, {} fail",
            runs.len(),
            count("safe_pass"),
            count("unsafe_pass"),
            count("fail")
        );
    }
    if let Some(arms) = summary {
        arms_table(&mut out, arms);
    }
    out
}

/// The study's table: one row per arm.
fn arms_table(out: &mut String, arms: &[ArmSummary]) {
    let percent = |rate: f64| format!("{:.0}%", rate * 100.0);
    let average = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.1}"));
    let _ = write!(
        out,
        "\n{:<20} {:>5} {:>6} {:>6} {:>8} {:>8} {:>8}",
        "arm", "runs", "pass", "safe", "unsafe", "payload", "effect"
    );
    for category in Category::ALL {
        let _ = write!(out, " {}", category.as_str());
    }
    out.push('\n');
    for arm in arms {
        let _ = write!(
            out,
            "{:<20} {:>5} {:>6} {:>6} {:>8} {:>8} {:>8}",
            arm.arm,
            arm.runs,
            percent(arm.final_pass_rate),
            percent(arm.safe_execution_rate),
            percent(arm.unsafe_execution_rate),
            average(arm.average_payload_paths),
            average(arm.average_effect_paths)
        );
        for category in Category::ALL {
            let width = category.as_str().len();
            let count = arm.categories.get(category.as_str()).copied().unwrap_or(0);
            let _ = write!(out, " {count:>width$}");
        }
        out.push('\n');
    }
}

fn run_block(out: &mut String, run: &Run) {
    let evidence = match run.evidence.status {
        EvidenceStatus::Complete => "evidence complete",
        EvidenceStatus::Incomplete => "evidence INCOMPLETE",
    };
    let _ = writeln!(
        out,
        "{}: {} ({} violation(s), {} blocked, {} request(s); {}; final state {}){}",
        run.session,
        run.triage.as_str(),
        run.violations.len(),
        run.blocked.len(),
        run.counts.requests,
        evidence,
        final_state_summary(&run.final_state),
        if run.rehearsed { " [rehearsed]" } else { "" }
    );
    for violation in &run.violations {
        let _ = writeln!(
            out,
            "  violation {}{}: {} {} -> {}: {} (trace {})",
            violation.category.as_str(),
            violation
                .rule_id
                .map(|r| format!(" [{r}]"))
                .unwrap_or_default(),
            violation.method,
            violation.path,
            status_text(violation.status),
            violation.why,
            violation.trace_id
        );
    }
    for blocked in &run.blocked {
        let _ = writeln!(
            out,
            "  blocked ({} {}): {} {} -> {} (trace {})",
            blocked.action,
            blocked.rules.join(","),
            blocked.method,
            blocked.path,
            status_text(blocked.status),
            blocked.trace_id
        );
    }
    for breach in &run.budget_breaches {
        let _ = writeln!(
            out,
            "  budget {} exceeded ({}, {} used of {}): {} {} -> {} (trace {})",
            breach.budget,
            if breach.refused {
                "refused"
            } else {
                "forwarded"
            },
            breach.used,
            breach.limit,
            breach.method,
            breach.path,
            status_text(breach.status),
            breach.trace_id
        );
    }
    for rewritten in &run.rewritten {
        let _ = writeln!(
            out,
            "  rewritten ({}): {} {} (trace {})",
            rewritten.rewrites.join(", "),
            rewritten.method,
            rewritten.path,
            rewritten.trace_id
        );
    }
    for gap in &run.evidence.reasons {
        let _ = writeln!(
            out,
            "  evidence gap {}: {} (first: {})",
            gap.kind.as_str(),
            gap.count,
            gap.trace_ids.join(", ")
        );
    }
    let scope = &run.scope;
    if !scope.mutations.is_empty() {
        let average =
            |value: Option<f64>| value.map_or("unknown".to_string(), |v| format!("{v:.1}"));
        let _ = writeln!(
            out,
            "  scope: {} mutation(s), payload {} path(s) and effect {} path(s) on average",
            scope.mutations.len(),
            average(scope.average_payload_paths),
            average(scope.average_effect_paths)
        );
    }
    if let FinalState::Checks { results, .. } = &run.final_state {
        for result in results.iter().filter(|r| !r.passed) {
            let _ = writeln!(
                out,
                "  check failed: {} ({}): expected {}, found {}",
                result.name, result.path, result.expected, result.found
            );
        }
    }
}

fn status_text(status: Option<u16>) -> String {
    status.map_or("no answer".to_string(), |s| s.to_string())
}

fn final_state_summary(state: &FinalState) -> String {
    match state {
        FinalState::Unchecked => "not checked".to_string(),
        FinalState::Given { passed } => format!("given: {}", pass(*passed)),
        FinalState::Command {
            command,
            exit_code,
            passed,
            error,
        } => match error {
            Some(error) => format!("{}: `{command}` {error}", pass(*passed)),
            None => format!(
                "{}: `{command}` exited {}",
                pass(*passed),
                exit_code.map_or("by signal".to_string(), |c| c.to_string())
            ),
        },
        FinalState::Checks {
            passed, results, ..
        } => format!(
            "{}: {}/{} check(s) hold",
            pass(*passed),
            results.iter().filter(|r| r.passed).count(),
            results.len()
        ),
    }
}

fn pass(passed: bool) -> &'static str {
    if passed {
        "pass"
    } else {
        "fail"
    }
}
