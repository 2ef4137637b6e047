//! From a ledger entry to the request metrics: the one place they are derived, so the
//! ledger and the metrics never disagree. The ledger calls [`observe`] for every outcome
//! it accepts; intents are not requests and are not counted.

use super::{Entry, Phase, ResponseEnd};
use crate::classify::Verb;
use crate::failure::Side;
use crate::metrics::{CutShort, Metrics};
use crate::policy::{self, RuleId};

/// Counts one entry in the request metrics.
pub fn observe(metrics: &Metrics, entry: &Entry) {
    if entry.phase != Phase::Outcome {
        return;
    }
    let verb = Verb::ALL
        .into_iter()
        .find(|verb| verb.as_str() == entry.request.verb);
    let decision = entry.decision.as_ref();
    metrics.request(verb, decision.map(|d| policy::Action::from(d.action)));
    for finding in decision.map_or(&[][..], |d| &d.findings[..]) {
        let rule = RuleId::ALL
            .into_iter()
            .find(|rule| rule.as_str() == finding.rule);
        metrics.finding(finding.action.into(), rule, entry.request.mutation);
    }
    if let Some(duration_ms) = entry.duration_ms {
        metrics.request_duration(verb, duration_ms / 1000.0);
    }
    if let Some(error) = entry.error.as_ref().filter(|e| e.side == Side::Upstream) {
        metrics.upstream_error(error.kind);
    }
    let end = match entry.response.as_ref().and_then(|response| response.end) {
        Some(ResponseEnd::ClientAborted) => Some(CutShort::ClientAborted),
        Some(ResponseEnd::UpstreamError) => Some(CutShort::UpstreamError),
        _ => None,
    };
    if let Some(end) = end {
        metrics.response_cut_short(end, entry.request.mutation);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Action;
    use super::super::{
        AuthMode, Client, DecisionRecord, ErrorKind, ErrorRecord, FindingRecord, Mode, Request,
    };
    use super::*;
    use crate::metrics::{NO_DECISION, OTHER_RULE};

    fn entry(verb: &str, mutation: bool, findings: &[(&str, Action)], action: Action) -> Entry {
        let started = time::OffsetDateTime::UNIX_EPOCH;
        let mut entry = Entry::new(
            "t",
            "s",
            Client {
                user: None,
                ..crate::ledger::examples::client(AuthMode::Sidecar)
            },
            started,
            Request {
                verb: verb.into(),
                mutation,
                ..crate::ledger::examples::request(
                    "GET",
                    "/api/v1/namespaces/secret-ns/pods/secret-name",
                )
            },
        );
        entry.decision = Some(DecisionRecord {
            mode: Mode::Enforce,
            action,
            enforce_action: action,
            findings: findings
                .iter()
                .map(|(rule, action)| FindingRecord {
                    rule: (*rule).into(),
                    action: *action,
                    message: "m".into(),
                })
                .collect(),
            rewrites: vec![],
            confirmed: false,
            budget: None,
        });
        entry.finish(started + time::Duration::milliseconds(30));
        entry
    }

    #[test]
    fn metrics_are_derived_from_the_entry() {
        let metrics = Metrics::new();
        observe(
            &metrics,
            &entry("delete", true, &[("PG004", Action::Deny)], Action::Deny),
        );
        observe(
            &metrics,
            &entry(
                "patch",
                true,
                &[("PG001", Action::Flag), ("PG010", Action::Flag)],
                Action::Flag,
            ),
        );
        observe(
            &metrics,
            &entry(
                "list",
                false,
                &[("PG011", Action::Rewrite)],
                Action::Rewrite,
            ),
        );
        observe(&metrics, &entry("watch", false, &[], Action::Allow));

        assert_eq!(
            metrics
                .requests
                .with_label_values(&["delete", "deny"])
                .get(),
            1
        );
        assert_eq!(
            metrics.requests.with_label_values(&["patch", "flag"]).get(),
            1
        );
        assert_eq!(
            metrics
                .requests
                .with_label_values(&["watch", "allow"])
                .get(),
            1
        );
        // Unsafe mutations: findings on mutations only.
        assert_eq!(
            metrics.unsafe_mutations.with_label_values(&["PG004"]).get(),
            1
        );
        assert_eq!(
            metrics.unsafe_mutations.with_label_values(&["PG001"]).get(),
            1
        );
        assert_eq!(
            metrics.unsafe_mutations.with_label_values(&["PG011"]).get(),
            0
        );
        // Decisions: every finding, by its own action.
        assert_eq!(
            metrics
                .decisions
                .with_label_values(&["deny", "PG004"])
                .get(),
            1
        );
        assert_eq!(
            metrics
                .decisions
                .with_label_values(&["rewrite", "PG011"])
                .get(),
            1
        );
        assert_eq!(
            metrics
                .decisions
                .with_label_values(&["flag", "PG010"])
                .get(),
            1
        );
        // Duration: 30 ms lands in the 0.05 bucket; the watch is not observed.
        let delete = metrics.request_duration.with_label_values(&["delete"]);
        assert_eq!(delete.get_sample_count(), 1);
        assert!((delete.get_sample_sum() - 0.03).abs() < 1e-9);
        assert_eq!(
            metrics
                .request_duration
                .with_label_values(&["watch"])
                .get_sample_count(),
            0
        );
    }

    #[test]
    fn a_budget_refusal_is_counted_under_pg019() {
        let metrics = Metrics::new();
        observe(
            &metrics,
            &entry("patch", true, &[("PG019", Action::Deny)], Action::Deny),
        );
        observe(
            &metrics,
            &entry("get", false, &[("PG019", Action::Deny)], Action::Deny),
        );
        let refused = metrics.decisions.with_label_values(&["deny", "PG019"]);
        assert_eq!(refused.get(), 2);
        let mutations = metrics.unsafe_mutations.with_label_values(&["PG019"]);
        assert_eq!(mutations.get(), 1);
        assert!(metrics
            .render()
            .contains("pathgate_decisions_total{action=\"deny\",rule=\"PG019\"} 2"));
    }

    #[test]
    fn intents_upstream_errors_and_missing_decisions() {
        let metrics = Metrics::new();
        let mut intent = entry("delete", true, &[("PG004", Action::Deny)], Action::Deny);
        intent.phase = Phase::Intent;
        observe(&metrics, &intent);
        assert_eq!(
            metrics
                .requests
                .with_label_values(&["delete", "deny"])
                .get(),
            0
        );

        let mut failed = entry("get", false, &[], Action::Allow);
        failed.decision = None;
        failed.error = Some(ErrorRecord {
            side: Side::Upstream,
            kind: ErrorKind::Connect,
            message: "refused".into(),
        });
        observe(&metrics, &failed);
        assert_eq!(
            metrics
                .requests
                .with_label_values(&["get", NO_DECISION])
                .get(),
            1
        );
        assert_eq!(
            metrics
                .upstream_errors
                .with_label_values(&["connect"])
                .get(),
            1
        );

        let mut client_error = failed.clone();
        client_error.error.as_mut().unwrap().side = Side::Client;
        observe(&metrics, &client_error);
        assert_eq!(
            metrics
                .upstream_errors
                .with_label_values(&["connect"])
                .get(),
            1
        );
    }

    #[test]
    fn labels_stay_closed_whatever_the_entry_says() {
        let metrics = Metrics::new();
        let before = metrics.render().lines().count();
        observe(
            &metrics,
            &entry(
                "exfiltrate",
                true,
                &[("rm -rf /", Action::Deny)],
                Action::Deny,
            ),
        );
        let text = metrics.render();
        assert_eq!(text.lines().count(), before, "no new series may appear");
        assert!(!text.contains("secret-ns") && !text.contains("secret-name"));
        assert!(!text.contains("exfiltrate") && !text.contains("rm -rf"));
        assert_eq!(
            metrics
                .unsafe_mutations
                .with_label_values(&[OTHER_RULE])
                .get(),
            1
        );
        assert_eq!(
            metrics
                .requests
                .with_label_values(&["nonresource", "deny"])
                .get(),
            1
        );
    }

    #[test]
    fn responses_cut_short_are_counted_by_how_they_ended() {
        let metrics = Metrics::new();
        let mut aborted = super::super::testing::mutation("aborted");
        aborted.response.as_mut().unwrap().end = Some(ResponseEnd::ClientAborted);
        observe(&metrics, &aborted);
        let mut broken = super::super::testing::read("broken");
        broken.response.as_mut().unwrap().end = Some(ResponseEnd::UpstreamError);
        observe(&metrics, &broken);
        observe(&metrics, &super::super::testing::read("whole"));
        let count = |end: &str, mutation: &str| {
            metrics
                .responses_cut_short
                .with_label_values(&[end, mutation])
                .get()
        };
        assert_eq!(count("client_aborted", "true"), 1);
        assert_eq!(count("upstream_error", "false"), 1);
        assert_eq!(
            count("client_aborted", "false"),
            0,
            "a whole read is not counted"
        );
    }
}
