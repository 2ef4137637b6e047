//! The HTML rendering: one self-contained file (inline CSS, no script, no network) with a
//! verdict banner per run, the timeline of its path (every request in order; reads, dry
//! runs, mutations and denials told apart by colour and label; violations marked and
//! linked to their request), mutation scope, and a summary table when several runs are
//! judged.

use std::fmt::Write;

use crate::autopsy::summary::ArmSummary;
use crate::autopsy::verdict::{EvidenceStatus, RequestKind, Run, TimelineRow};
use crate::autopsy::Category;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.4em}table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}\
.banner{padding:.6em 1em;border-radius:4px;font-weight:bold;margin-top:1.5em}\
.safe_pass{background:#d9f2dc}.unsafe_pass{background:#fde9c8}.fail{background:#f8d0d0}\
tr.read td.kind{color:#555}tr.dry_run td.kind{color:#1a6fb0}tr.mutation td.kind{color:#8a4b00;font-weight:bold}\
tr.blocked td.kind{color:#b00020;font-weight:bold}tr.violating{background:#fff3f3}\
td.path{font-family:monospace;word-break:break-all}.violation{color:#b00020}";

/// The whole document.
pub fn render(runs: &[Run], arms: Option<&[ArmSummary]>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<title>pathgate autopsy</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body>\n<h1>pathgate autopsy</h1>\n");
    if let Some(arms) = arms {
        arms_table(&mut out, arms);
    }
    if runs.len() > 1 {
        summary(&mut out, runs);
    }
    for (index, run) in runs.iter().enumerate() {
        run_section(&mut out, index, run);
    }
    out.push_str("</body></html>\n");
    out
}

fn summary(out: &mut String, runs: &[Run]) {
    out.push_str("<table id=\"summary\"><tr><th>session</th><th>triage</th><th>violations</th><th>blocked</th><th>evidence</th></tr>\n");
    for (index, run) in runs.iter().enumerate() {
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#run-{index}\">{}</a></td><td class=\"{t}\">{t}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&run.session),
            run.violations.len(),
            run.blocked.len(),
            evidence(run),
            t = run.triage.as_str(),
        );
    }
    out.push_str("</table>\n");
}

fn arms_table(out: &mut String, arms: &[ArmSummary]) {
    out.push_str("<table id=\"arms\"><tr><th>arm</th><th>runs</th><th>final pass</th><th>safe</th><th>unsafe</th><th>payload</th><th>effect</th>");
    for category in Category::ALL {
        let _ = write!(out, "<th>{}</th>", category.as_str());
    }
    out.push_str("</tr>\n");
    let average = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.1}"));
    for arm in arms {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:.0}%</td><td>{:.0}%</td><td>{:.0}%</td><td>{}</td><td>{}</td>",
            escape(&arm.arm),
            arm.runs,
            arm.final_pass_rate * 100.0,
            arm.safe_execution_rate * 100.0,
            arm.unsafe_execution_rate * 100.0,
            average(arm.average_payload_paths),
            average(arm.average_effect_paths),
        );
        for category in Category::ALL {
            let _ = write!(
                out,
                "<td>{}</td>",
                arm.categories.get(category.as_str()).copied().unwrap_or(0)
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn evidence(run: &Run) -> &'static str {
    match run.evidence.status {
        EvidenceStatus::Complete => "complete",
        EvidenceStatus::Incomplete => "incomplete",
    }
}

fn run_section(out: &mut String, index: usize, run: &Run) {
    let _ = writeln!(
        out,
        "<section id=\"run-{index}\" data-session=\"{s}\" data-triage=\"{t}\">\n<div class=\"banner {t}\">{s}: {t}</div>",
        s = escape(&run.session),
        t = run.triage.as_str(),
    );
    let _ = writeln!(
        out,
        "<p>{} request(s), {} mutation(s), {} dry run(s), {} blocked; evidence {}{}</p>",
        run.counts.requests,
        run.counts.mutations,
        run.counts.dry_runs,
        run.counts.blocked,
        evidence(run),
        if run.rehearsed { "; rehearsed" } else { "" }
    );
    if !run.violations.is_empty() {
        out.push_str("<table class=\"violations\"><tr><th>category</th><th>rule</th><th>request</th><th>why</th></tr>\n");
        for violation in &run.violations {
            let _ = writeln!(
                out,
                "<tr class=\"violation\"><td>{}</td><td>{}</td><td><a href=\"#r-{index}-{}\">{} {}</a></td><td>{}</td></tr>",
                violation.category.as_str(),
                violation.rule_id.unwrap_or(""),
                escape(&violation.trace_id),
                escape(&violation.method),
                escape(&violation.path),
                escape(&violation.why),
            );
        }
        out.push_str("</table>\n");
    }
    if let Some(timeline) = &run.timeline {
        out.push_str("<table class=\"timeline\"><tr><th>#</th><th>started</th><th>kind</th><th>request</th><th>status</th><th>scope (payload/effect)</th><th>violations</th></tr>\n");
        for (number, row) in timeline.iter().enumerate() {
            timeline_row(out, index, number + 1, row);
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
}

fn kind_name(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Read => "read",
        RequestKind::DryRun => "dry_run",
        RequestKind::Mutation => "mutation",
        RequestKind::Blocked => "blocked",
        RequestKind::NotForwarded => "not_forwarded",
        RequestKind::Ignored => "ignored",
        RequestKind::Connect => "connect",
        RequestKind::Unclassified => "unclassified",
    }
}

fn timeline_row(out: &mut String, run: usize, number: usize, row: &TimelineRow) {
    let kind = kind_name(row.kind);
    let violating = if row.violations.is_empty() {
        ""
    } else {
        " violating"
    };
    let scope = match (row.payload_paths, row.effect_paths) {
        (None, None) => String::new(),
        (payload, effect) => format!(
            "{}/{}",
            payload.map_or("?".into(), |p| p.to_string()),
            effect.map_or("?".into(), |e| e.to_string())
        ),
    };
    let violations: Vec<&str> = row.violations.iter().map(|c| c.as_str()).collect();
    let _ = writeln!(
        out,
        "<tr id=\"r-{run}-{}\" class=\"{kind}{violating}\" data-kind=\"{kind}\"><td>{number}</td><td>{}</td><td class=\"kind\">{kind}</td><td class=\"path\">{} {}</td><td>{}</td><td>{scope}</td><td class=\"violation\">{}</td></tr>",
        escape(&row.trace_id),
        escape(&row.started_at),
        escape(&row.method),
        escape(&row.path),
        row.status.map_or(String::new(), |s| s.to_string()),
        violations.join(" "),
    );
}

/// Escapes text for HTML content and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_in_ledger_strings_is_escaped() {
        assert_eq!(
            escape("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
