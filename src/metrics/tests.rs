use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::*;

#[test]
fn gauge_guards_count_what_is_open() {
    let metrics = Metrics::new();
    let watch = metrics.open_watch();
    let upgrade = metrics.open_upgrade();
    let second = metrics.open_watch();
    assert_eq!(metrics.open_watches.get(), 2);
    assert_eq!(metrics.open_upgrades.get(), 1);
    drop((watch, upgrade, second));
    assert_eq!(metrics.open_watches.get(), 0);
    assert_eq!(metrics.open_upgrades.get(), 0);
}

#[test]
fn every_required_family_is_exported_with_its_labels() {
    let text = Metrics::new().render();
    for (family, kind) in [
        ("pathgate_requests_total", "counter"),
        ("pathgate_unsafe_mutations_total", "counter"),
        ("pathgate_decisions_total", "counter"),
        ("pathgate_request_duration_seconds", "histogram"),
        ("pathgate_upstream_errors_total", "counter"),
        ("pathgate_open_watches", "gauge"),
        ("pathgate_open_upgrades", "gauge"),
        ("pathgate_ledger_queue_depth", "gauge"),
        ("pathgate_ledger_spool_bytes", "gauge"),
        ("pathgate_ledger_entries_total", "counter"),
        ("pathgate_policy_reloads_total", "counter"),
        ("pathgate_open_connections", "gauge"),
        ("pathgate_connections_refused_total", "counter"),
        ("pathgate_connection_timeouts_total", "counter"),
        ("pathgate_accept_errors_total", "counter"),
        ("pathgate_responses_cut_short_total", "counter"),
        ("pathgate_pre_images_total", "counter"),
        ("pathgate_pre_image_bytes", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} {kind} missing"
        );
    }
    assert!(text.contains("pathgate_unsafe_mutations_total{rule=\"PG017\"} 0"));
    assert!(text.contains("pathgate_unsafe_mutations_total{rule=\"PG018\"} 0"));
    assert!(text.contains("pathgate_ledger_entries_total{outcome=\"dropped\",sink=\"webhook\"} 0"));
    assert!(text.contains("pathgate_request_duration_seconds_bucket{verb=\"get\",le=\"0.005\"} 0"));
    assert!(text.contains("pathgate_request_duration_seconds_bucket{verb=\"get\",le=\"60\"} 0"));
    assert!(text.contains("pathgate_connections_refused_total{limit=\"per_peer\"} 0"));
    assert!(text.contains("pathgate_connection_timeouts_total{kind=\"body_read\"} 0"));
    assert!(text.contains("pathgate_pre_images_total{outcome=\"evicted\"} 0"));
}

/// Every `pathgate_*` metric an expression uses, with the `label="value"` matchers it
/// applies to it.
fn metric_references(expression: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut references = Vec::new();
    let bytes = expression.as_bytes();
    let mut index = 0;
    while let Some(found) = expression[index..].find("pathgate_") {
        let start = index + found;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        index = end;
        if !boundary {
            continue;
        }
        let name = expression[start..end].to_owned();
        let mut matchers = Vec::new();
        if bytes.get(end) == Some(&b'{') {
            let close = end + expression[end..].find('}').expect("closed selector");
            for matcher in expression[end + 1..close].split(',') {
                if let Some((label, value)) = matcher.split_once('=') {
                    let label = label.trim();
                    // Only exact matchers name a value that must exist; skip =~, != and
                    // dashboard variables.
                    if label.ends_with('!') || value.starts_with('~') || value.contains('$') {
                        continue;
                    }
                    matchers.push((label.to_owned(), value.trim().trim_matches('"').to_owned()));
                }
            }
            index = close;
        }
        references.push((name, matchers));
    }
    references
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("expr" | "query", Value::String(text)) => out.push(text.clone()),
                    _ => collect_exprs(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, out)),
        _ => {}
    }
}

#[test]
fn every_metric_the_dashboard_and_alert_rules_use_is_exported() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana/pathgate-dashboard.json")).unwrap(),
    )
    .unwrap();
    let rules: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("prometheus/pathgate-rules.yaml")).unwrap(),
    )
    .unwrap();
    let mut expressions = Vec::new();
    collect_exprs(&dashboard, &mut expressions);
    let dashboard_count = expressions.len();
    collect_exprs(&rules, &mut expressions);
    assert!(dashboard_count >= 10 && expressions.len() > dashboard_count + 5);

    let text = Metrics::new().render();
    // Series names (histograms expand to _bucket/_sum/_count) mapped to their label pairs.
    let mut series: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (name, rest) = line.split_once(['{', ' ']).unwrap();
        let labels = series.entry(name.to_owned()).or_default();
        if let Some(inside) = rest.split_once('}').map(|(inside, _)| inside) {
            for pair in inside.split(',') {
                let (label, value) = pair.split_once('=').unwrap();
                labels.insert((label.to_owned(), value.trim_matches('"').to_owned()));
            }
        }
    }

    let mut used = BTreeSet::new();
    for expression in &expressions {
        for (name, matchers) in metric_references(expression) {
            let labels = series
                .get(&name)
                .unwrap_or_else(|| panic!("{name} (in `{expression}`) is not exported"));
            for matcher in matchers {
                assert!(
                    labels.contains(&matcher),
                    "{name}{{{}=\"{}\"}} (in `{expression}`) matches no exported series",
                    matcher.0,
                    matcher.1
                );
            }
            used.insert(name);
        }
    }
    // The headline metrics are on the dashboard.
    for name in [
        "pathgate_unsafe_mutations_total",
        "pathgate_decisions_total",
        "pathgate_request_duration_seconds_bucket",
        "pathgate_ledger_entries_total",
    ] {
        assert!(used.contains(name), "{name} is used by no panel or rule");
    }
}

#[test]
fn the_reference_scanner_finds_names_and_exact_matchers() {
    let references = metric_references(
        r#"sum(rate(pathgate_a_total{job=~"$job", outcome="dropped", x!="y"}[5m])) / my_pathgate_b + pathgate_c"#,
    );
    assert_eq!(
        references,
        vec![
            (
                "pathgate_a_total".to_owned(),
                vec![("outcome".to_owned(), "dropped".to_owned())]
            ),
            ("pathgate_c".to_owned(), vec![]),
        ]
    );
}
