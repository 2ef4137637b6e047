//! Entries for tests: a mutation with findings and a plain read.

use time::macros::datetime;

use super::*;

/// A `DELETE` of a controller-owned pod, denied by PG004, as the proxy would record it.
pub(crate) fn mutation(trace_id: &str) -> Entry {
    let mut entry = Entry::new(
        trace_id,
        "agent-run-7",
        Client {
            user: Some("agent".into()),
            groups: vec!["system:authenticated".into()],
            token_fingerprint: Some(token_fingerprint("token")),
            auth_mode: AuthMode::Passthrough,
            remote_addr: Some("127.0.0.1:50312".into()),
        },
        datetime!(2026-11-25 13:00:00.250 UTC),
        Request {
            method: "DELETE".into(),
            path: "/api/v1/namespaces/shop/pods/web-5d9c7-abcde".into(),
            query: None,
            verb: "delete".into(),
            mutation: true,
            api_group: String::new(),
            api_version: "v1".into(),
            resource: "pods".into(),
            subresource: String::new(),
            namespace: "shop".into(),
            name: "web-5d9c7-abcde".into(),
            content_type: Some("application/json".into()),
            scope: Some("namespaced".into()),
            effect_verb: None,
        },
    );
    entry.decision = Some(DecisionRecord {
        mode: Mode::Enforce,
        action: Action::Deny,
        enforce_action: Action::Deny,
        findings: vec![FindingRecord {
            rule: "PG004".into(),
            action: Action::Deny,
            message: "pod is owned by ReplicaSet web-5d9c7".into(),
        }],
        rewrites: vec![],
        confirmed: false,
        budget: None,
    });
    entry.response = Some(ResponseRecord {
        status_code: 403,
        reason: Some("Forbidden".into()),
        audit_id: None,
        origin: Origin::Pathgate,
        end: Some(ResponseEnd::Complete),
        body_inspected: None,
    });
    entry.bytes_in = 54;
    entry.bytes_out = 310;
    entry.finish(datetime!(2026-11-25 13:00:00.2512 UTC));
    entry
}

/// A `GET` of a pod, allowed.
pub(crate) fn read(trace_id: &str) -> Entry {
    let mut entry = mutation(trace_id);
    entry.request.method = "GET".into();
    entry.request.verb = "get".into();
    entry.request.mutation = false;
    entry.request.content_type = None;
    entry.decision = Some(DecisionRecord {
        mode: Mode::Enforce,
        action: Action::Allow,
        enforce_action: Action::Allow,
        findings: vec![],
        rewrites: vec![],
        confirmed: false,
        budget: None,
    });
    entry.response = Some(ResponseRecord {
        status_code: 200,
        reason: None,
        audit_id: Some(trace_id.into()),
        origin: Origin::Upstream,
        end: Some(ResponseEnd::Complete),
        body_inspected: None,
    });
    entry.bytes_in = 0;
    entry
}
