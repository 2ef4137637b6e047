//! The pure per-request pipeline the gate runs before forwarding: `request_info` +
//! `analyse` + the request's `Fingerprint` + `SessionStore::decide` (the pure `decide` plus
//! the session-memory lookup), for three requests shaped as kubectl sends them:
//!
//! - `strategic_patch_set_image`: `kubectl set image deployment/web web=nginx:1.27`;
//! - `server_side_apply_30_fields`: `kubectl apply --server-side` of a Deployment manifest
//!   setting 30 leaves (JSON body, `application/apply-patch+yaml`, as kubectl sends it);
//! - `delete_with_body_options`: `kubectl delete pod web-1 --grace-period=0 --force`
//!   (DeleteOptions in a JSON body; decided as a PG005 rewrite).
//!
//! No I/O: facts are "unknown" (no GET), as for a request that needs none. Target: under
//! 10 µs each. Reproduce with:
//!
//! ```sh
//! cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pathgate::classify::{analyse, request_info, Verb};
use pathgate::policy::{Action, Facts, Fingerprint, Policy, RequestContext, SessionStore};

/// One request as it reaches the gate.
struct Case {
    name: &'static str,
    method: http::Method,
    path: &'static str,
    query: Option<&'static str>,
    content_type: &'static str,
    body: Vec<u8>,
}

const SET_IMAGE: &str =
    r#"{"spec":{"template":{"spec":{"containers":[{"image":"nginx:1.27","name":"web"}]}}}}"#;

/// A Deployment manifest setting 30 leaves outside identity metadata (merge keys such as
/// a container's `name` identify list elements and are not counted).
const APPLY_30: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","labels":{"app":"web","tier":"frontend","team":"shop"},"annotations":{"owner":"shop-team"}},"spec":{"replicas":3,"paused":false,"revisionHistoryLimit":5,"minReadySeconds":10,"progressDeadlineSeconds":600,"selector":{"matchLabels":{"app":"web"}},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1,"maxUnavailable":0}},"template":{"metadata":{"labels":{"app":"web","tier":"frontend"}},"spec":{"terminationGracePeriodSeconds":30,"serviceAccountName":"web","restartPolicy":"Always","dnsPolicy":"ClusterFirst","containers":[{"name":"web","image":"nginx:1.27","imagePullPolicy":"IfNotPresent","ports":[{"name":"http","containerPort":80,"protocol":"TCP"}],"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"cpu":"500m","memory":"256Mi"}},"readinessProbe":{"httpGet":{"path":"/healthz","port":80},"periodSeconds":5}}]}}}}"#;

const FORCE_DELETE: &str = r#"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0,"propagationPolicy":"Background"}"#;

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "strategic_patch_set_image",
            method: http::Method::PATCH,
            path: "/apis/apps/v1/namespaces/shop/deployments/web",
            query: Some("fieldManager=kubectl-set"),
            content_type: "application/strategic-merge-patch+json",
            body: SET_IMAGE.as_bytes().to_vec(),
        },
        Case {
            name: "server_side_apply_30_fields",
            method: http::Method::PATCH,
            path: "/apis/apps/v1/namespaces/shop/deployments/web",
            query: Some("fieldManager=kubectl&fieldValidation=Strict&force=false"),
            content_type: "application/apply-patch+yaml",
            body: APPLY_30.as_bytes().to_vec(),
        },
        Case {
            name: "delete_with_body_options",
            method: http::Method::DELETE,
            path: "/api/v1/namespaces/shop/pods/web-1",
            query: None,
            content_type: "application/json",
            body: FORCE_DELETE.as_bytes().to_vec(),
        },
    ]
}

/// The pipeline for one request; returns the action so nothing is optimised away.
fn run(case: &Case, policy: &Policy, store: &SessionStore, headers: &http::HeaderMap) -> Action {
    let info = request_info(&case.method, case.path, case.query, headers)
        .expect("the benchmark's requests classify");
    let analysis = analyse(&info, case.query, Some(case.content_type), &case.body);
    let fingerprint = Fingerprint::of(&info, &analysis, case.query, headers, &case.body);
    let ctx = RequestContext {
        session: "bench".to_string(),
        fingerprint,
        impersonation_headers: false,
        pathgate_credentials: false,
        confirm_token: None,
    };
    let decision = store.decide(
        policy,
        &info,
        &analysis,
        &Facts::default(),
        &ctx,
        Instant::now(),
    );
    decision.action
}

/// Checks that each case is what its name says before timing it: a benchmark of a request
/// that classifies differently would measure something else.
fn check(case: &Case, policy: &Policy, store: &SessionStore, headers: &http::HeaderMap) {
    let info = request_info(&case.method, case.path, case.query, headers).unwrap();
    let analysis = analyse(&info, case.query, Some(case.content_type), &case.body);
    assert_eq!(analysis.opaque_reason, None, "{}", case.name);
    match case.name {
        "strategic_patch_set_image" => {
            assert_eq!(info.verb, Verb::Patch);
            assert_eq!(
                analysis.touched_paths.len(),
                1,
                "{:?}",
                analysis.touched_paths
            );
            assert_eq!(run(case, policy, store, headers), Action::Allow);
        }
        "server_side_apply_30_fields" => {
            assert_eq!(analysis.payload_leaves, 30, "{:?}", analysis.touched_paths);
            assert!(analysis.whole_object.is_some());
            assert_eq!(run(case, policy, store, headers), Action::Flag);
        }
        _ => {
            assert_eq!(info.verb, Verb::Delete);
            let options = analysis.delete_options.as_ref().unwrap();
            assert_eq!(options.grace_period_seconds, Some(0));
            assert_eq!(run(case, policy, store, headers), Action::Rewrite);
        }
    }
}

fn pipeline(c: &mut Criterion) {
    // The template policy (dry runs required). Each request's dry run was seen earlier in
    // the session, so the decision takes the path of a request the agent did right.
    let policy = Policy::default();
    let store = SessionStore::default();
    let headers = http::HeaderMap::new();
    let mut group = c.benchmark_group("pipeline");
    for case in cases() {
        let info = request_info(&case.method, case.path, case.query, &headers).unwrap();
        let analysis = analyse(&info, case.query, Some(case.content_type), &case.body);
        let fingerprint = Fingerprint::of(&info, &analysis, case.query, &headers, &case.body);
        store.record_outcome(
            "bench",
            &fingerprint,
            200,
            true,
            Duration::from_secs(300),
            Instant::now(),
        );
        check(&case, &policy, &store, &headers);
        group.bench_function(case.name, |b| {
            b.iter(|| run(black_box(&case), &policy, &store, &headers))
        });
    }
    group.finish();

    // Where the time of the largest case goes, stage by stage.
    let case = cases()
        .into_iter()
        .find(|c| c.name == "server_side_apply_30_fields")
        .unwrap();
    let info = request_info(&case.method, case.path, case.query, &headers).unwrap();
    let analysis = analyse(&info, case.query, Some(case.content_type), &case.body);
    let ctx = RequestContext {
        session: "bench".to_string(),
        fingerprint: Fingerprint::of(&info, &analysis, case.query, &headers, &case.body),
        impersonation_headers: false,
        pathgate_credentials: false,
        confirm_token: None,
    };
    let mut stages = c.benchmark_group("stages_server_side_apply_30_fields");
    stages.bench_function("request_info", |b| {
        b.iter(|| request_info(&case.method, black_box(case.path), case.query, &headers))
    });
    stages.bench_function("analyse", |b| {
        b.iter(|| {
            analyse(
                &info,
                case.query,
                Some(case.content_type),
                black_box(&case.body),
            )
        })
    });
    stages.bench_function("fingerprint", |b| {
        b.iter(|| {
            Fingerprint::of(
                &info,
                &analysis,
                case.query,
                &headers,
                black_box(&case.body),
            )
        })
    });
    stages.bench_function("session_decide", |b| {
        b.iter(|| {
            store.decide(
                &policy,
                &info,
                black_box(&analysis),
                &Facts::default(),
                &ctx,
                Instant::now(),
            )
        })
    });
    // The reference to compare stages with, measured in the same run: parsing the body
    // into a `serde_json::Value` once.
    stages.bench_function("reference_serde_json_value_parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&case.body)).unwrap())
    });
    stages.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
