//! Requests that carry `dryRun=All` on endpoints that ignore it, and "same request" tricks
//! against PG010's memory of dry runs.
//!
//! The probe: `POST /api/v1/namespaces/kube-system/serviceaccounts/<sa>/token?dryRun=All`
//! (a TokenRequest) returned a real, working token in a namespace the policy put out of
//! scope, because every `dryRun=All` was taken as side-effect free and deny rules only
//! flagged it. `TokenREST.Create` never reads `options.DryRun`; pathgate now trusts a dry
//! run only on the endpoints docs/rules.md lists. Each test reads the apiserver's own
//! record (its answer, the audit log, the objects) besides pathgate's decision.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use super::scope::{rules, Rig};
use crate::gateway::{failed, ok};
use crate::support::api::{ApiClient, Identity};

const TOKEN_REQUEST: &str = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":600}}"#;

fn token_path(ns: &str, sa: &str, query: &str) -> String {
    format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token{query}")
}

/// The audit events of `serviceaccounts/token` requests in `ns`.
fn token_events(ns: &str) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(crate::support::cluster().dir.audit_log())
        .expect("the apiserver writes its audit log");
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["objectRef"]["namespace"] == ns
                && event["objectRef"]["resource"] == "serviceaccounts"
                && event["objectRef"]["subresource"] == "token"
                && event["stage"] == "ResponseComplete"
        })
        .collect()
}

/// Waits until the audit log holds `count` token events for `ns` (the log is written as
/// requests complete), then returns them.
async fn wait_token_events(ns: &str, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = token_events(ns);
        if events.len() >= count || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_request_dry_run_out_of_scope_returns_no_token() {
    // Scope: only the rig's namespace. The out-of-scope namespace stands for kube-system.
    let rig = Rig::start("fdr-in", |ns| {
        format!("mode: enforce\nmutation_namespaces: [\"{ns}\"]\n")
    })
    .await;
    let out = crate::gateway::namespace(&rig.cluster, "fdr-out").await;
    ok(&rig
        .admin(&["-n", &out, "create", "serviceaccount", "admin"])
        .await);

    // Straight to the apiserver, a TokenRequest "dry run" issues a real token: the reason
    // pathgate may not trust this dryRun.
    let direct = ApiClient::new(Identity::AdminToken)
        .request(
            Method::POST,
            &token_path(&out, "admin", "?dryRun=All"),
            Some("application/json"),
            Bytes::from(TOKEN_REQUEST),
            &[],
        )
        .await;
    assert_eq!(
        direct.status,
        201,
        "{}",
        String::from_utf8_lossy(&direct.body)
    );
    assert!(
        direct.json()["status"]["token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "the apiserver ignores dryRun on TokenRequest"
    );
    assert_eq!(wait_token_events(&out, 1).await.len(), 1);

    // Through pathgate: denied, no token, nothing reaches the apiserver.
    let (status, _, body) = rig
        .raw(
            "POST",
            &token_path(&out, "admin", "?dryRun=All"),
            &[("content-type", "application/json")],
            TOKEN_REQUEST,
        )
        .await;
    let message = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{message}");
    assert!(!message.contains("\"token\""), "{message}");
    assert!(
        message.contains("PG014 out-of-scope-mutation")
            && message.contains("POST serviceaccounts/<name>/token ignores dryRun"),
        "{message}"
    );
    let exchange = rig.last("POST", "/token").await;
    assert_eq!(rules(&exchange), ["PG010", "PG014"]);
    let analysis = exchange.analysis.as_ref().unwrap();
    assert!(!analysis.dry_run && analysis.dry_run_ignored);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        token_events(&out).len(),
        1,
        "the apiserver saw only the direct request"
    );

    // In scope, with dry runs required: the "dry run" cannot stand in for one, so the
    // TokenRequest is judged as the credential it issues.
    ok(&rig
        .admin(&["-n", &rig.ns, "create", "serviceaccount", "builder"])
        .await);
    let (status, _, body) = rig
        .raw(
            "POST",
            &token_path(&rig.ns, "builder", "?dryRun=All"),
            &[("content-type", "application/json")],
            TOKEN_REQUEST,
        )
        .await;
    let message = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("PG010 missing-dry-run") && message.contains("ignores dryRun"));
    let out_kubectl = rig
        .kubectl(&["-n", &rig.ns, "create", "token", "builder"])
        .await;
    assert!(failed(&out_kubectl).contains("PG010"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        token_events(&rig.ns).is_empty(),
        "no token was issued in scope either"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_request_is_a_mutation_in_rehearse_mode_and_with_pg010_flagging() {
    // Rehearse mode promises that nothing changes: a TokenRequest cannot be rehearsed.
    let rig = Rig::start("fdr-rehearse", |_| "mode: rehearse\n".to_string()).await;
    ok(&rig
        .admin(&["-n", &rig.ns, "create", "serviceaccount", "builder"])
        .await);
    let (status, _, body) = rig
        .raw(
            "POST",
            &token_path(&rig.ns, "builder", ""),
            &[("content-type", "application/json")],
            TOKEN_REQUEST,
        )
        .await;
    let message = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("cannot be rehearsed"), "{message}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(token_events(&rig.ns).is_empty());
    rig.stop().await;

    // With PG010 only flagging, the request passes as the mutation it is: a token comes
    // back, and pathgate recorded no dry run.
    let spool = tempfile::tempdir().unwrap();
    let rig = Rig::start_with(
        "fdr-flag",
        |_| "mode: enforce\nrules:\n  PG010: flag\n".to_string(),
        |builder| builder.ledger(pathgate::ledger::LedgerSettings::new(spool.path())),
    )
    .await;
    ok(&rig
        .admin(&["-n", &rig.ns, "create", "serviceaccount", "builder"])
        .await);
    let (status, headers, body) = rig
        .raw(
            "POST",
            &token_path(&rig.ns, "builder", "?dryRun=All"),
            &[("content-type", "application/json")],
            TOKEN_REQUEST,
        )
        .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert!(headers
        .get_all("warning")
        .iter()
        .any(|w| w.to_str().unwrap().contains("ignores dryRun")));
    assert_eq!(wait_token_events(&rig.ns, 1).await.len(), 1);
    let trace_id = headers
        .get(pathgate::trace::EXECUTION_TRACE_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let ns = rig.ns.clone();
    rig.stop().await;
    // The ledger does not call it a dry run: the apiserver acted.
    let entries = crate::recording::spool_entries(spool.path());
    let entry = entries
        .iter()
        .rfind(|e| e["trace_id"] == trace_id.as_str() && e["phase"] == "outcome")
        .expect("an outcome entry");
    assert_eq!(
        entry["dry_run"],
        serde_json::json!({"sent": false, "forwarded": false})
    );
    assert_eq!(entry["request"]["subresource"], "token");
    // The audit event is this request (its auditID is pathgate's trace id).
    assert_eq!(token_events(&ns)[0]["auditID"], trace_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategic_dry_run_then_merge_patch_of_the_same_body_needs_its_own_dry_run() {
    let rig = Rig::start("fdr-media", |_| "mode: enforce\n".to_string()).await;
    let ns = rig.ns.clone();
    rig.admin_apply(
        r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
            "spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},
            "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[
              {"name":"web","image":"nginx:1.27"},{"name":"sidecar","image":"busybox"}]}}}}"#,
    )
    .await;
    let ns_arg = ["-n", ns.as_str()];
    let containers = || async {
        let live = rig.object(&["-n", &ns, "deployment", "web"]).await.unwrap();
        live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c["name"].as_str().unwrap(),
                    c["image"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    let patch =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}"#;
    let patch_args = |kind: &'static str, dry: bool| {
        let mut args: Vec<&str> = ns_arg.to_vec();
        args.extend(["patch", "deployment", "web", "--type", kind, "-p", patch]);
        if dry {
            args.push("--dry-run=server");
        }
        args
    };

    ok(&rig.kubectl(&patch_args("strategic", true)).await);
    // The same bytes as a merge patch would drop the sidecar: not the request dry-run.
    let err = failed(&rig.kubectl(&patch_args("merge", false)).await);
    assert!(err.contains("PG010 missing-dry-run"), "{err}");
    assert_eq!(containers().await, ["web=nginx:1.27", "sidecar=busybox"]);
    // Raw, with the strategic dry run's exact query: still another request.
    let (status, _, _) = rig
        .raw(
            "PATCH",
            &format!("/apis/apps/v1/namespaces/{ns}/deployments/web?fieldManager=kubectl-patch"),
            &[("content-type", "application/merge-patch+json")],
            patch,
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(containers().await, ["web=nginx:1.27", "sidecar=busybox"]);

    // The strategic patch that was dry-run passes, and merges by name as its dry run did.
    ok(&rig.kubectl(&patch_args("strategic", false)).await);
    assert_eq!(containers().await, ["web=nginx:1.28", "sidecar=busybox"]);
    rig.stop().await;
}

/// A protobuf DeleteOptions (`k8s\0` envelope) as client-go configured for protobuf sends
/// it: `gracePeriodSeconds`, `propagationPolicy: Background`, and `dryRun: ["All"]` for a
/// dry run.
fn protobuf_delete_options(grace: u8, dry_run: bool) -> Vec<u8> {
    fn field(number: u8, bytes: &[u8], out: &mut Vec<u8>) {
        out.push(number << 3 | 2);
        out.push(u8::try_from(bytes.len()).unwrap());
        out.extend_from_slice(bytes);
    }
    let mut options = vec![1 << 3, grace];
    field(4, b"Background", &mut options);
    if dry_run {
        field(5, b"All", &mut options);
    }
    let mut type_meta = Vec::new();
    field(1, b"meta.k8s.io/v1", &mut type_meta);
    field(2, b"DeleteOptions", &mut type_meta);
    let mut body = b"k8s\x00".to_vec();
    field(1, &type_meta, &mut body);
    field(2, &options, &mut body);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_delete_with_a_legal_grace_period_passes_after_its_protobuf_dry_run() {
    let rig = Rig::start("fdr-pb", |_| "mode: enforce\n".to_string()).await;
    let ns = rig.ns.clone();
    ok(&rig.admin(&["-n", &ns, "create", "configmap", "keep"]).await);
    let path = format!("/api/v1/namespaces/{ns}/configmaps/keep");
    let protobuf = [
        ("content-type", "application/vnd.kubernetes.protobuf"),
        ("accept", "application/json"),
    ];

    // dryRun only in the query of a DELETE with a body is no dry run (the apiserver reads
    // the body's options alone): PG010 denies it, and the object stays.
    let (status, _, body) = rig
        .raw(
            "DELETE",
            &format!("{path}?dryRun=All"),
            &protobuf,
            protobuf_delete_options(30, false),
        )
        .await;
    let message = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{message}");
    assert!(
        message.contains("ignores the options in its query") && message.contains("into the body"),
        "{message}"
    );
    assert!(rig
        .object(&["-n", &ns, "configmap", "keep"])
        .await
        .is_some());

    // The dry run in the protobuf body, as client-go sends it: forwarded, nothing deleted.
    let (status, _, body) = rig
        .raw(
            "DELETE",
            &path,
            &protobuf,
            protobuf_delete_options(30, true),
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(rig
        .object(&["-n", &ns, "configmap", "keep"])
        .await
        .is_some());
    let dry = rig.last("DELETE", "/configmaps/keep").await;
    assert!(dry.analysis.as_ref().unwrap().dry_run);

    // Another grace period is another delete.
    let (status, _, _) = rig
        .raw(
            "DELETE",
            &path,
            &protobuf,
            protobuf_delete_options(60, false),
        )
        .await;
    assert_eq!(status, 403);

    // The real request, the same options without dryRun: passes PG010 and deletes.
    let (status, _, body) = rig
        .raw(
            "DELETE",
            &path,
            &protobuf,
            protobuf_delete_options(30, false),
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let real = rig.last("DELETE", "/configmaps/keep").await;
    assert_eq!(real.fingerprint, dry.fingerprint);
    assert!(rules(&real).is_empty(), "{:?}", real.decision);
    assert!(rig
        .object(&["-n", &ns, "configmap", "keep"])
        .await
        .is_none());
    rig.stop().await;
}
