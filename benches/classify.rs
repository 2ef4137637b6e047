//! Classification cost per request: `request_info` + `analyse` for the three shapes the
//! product issue names, plus a reference measured in the same run (parsing the same SSA body
//! with `serde_json` alone) so results can be read as ratios on any machine.
//!
//! Reproduce: `CARGO_TARGET_DIR=/work/target-shared cargo bench --bench classify`
//!
//! Wall-clock figures move with the machine's load. For steady numbers, count instructions:
//! `valgrind --tool=callgrind <bench binary> --bench --profile-time 1 <name>`, then divide
//! the inclusive cost of `classify::classify` by its call count (`callgrind_annotate
//! --inclusive=yes --tree=calling`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pathgate::classify::{analyse, request_info, Analysis};

struct Case {
    method: http::Method,
    path: &'static str,
    query: Option<&'static str>,
    content_type: &'static str,
    body: Vec<u8>,
}

fn classify(case: &Case, headers: &http::HeaderMap) -> Analysis {
    let info = request_info(&case.method, case.path, case.query, headers).expect("classifiable");
    analyse(&info, case.query, Some(case.content_type), &case.body)
}

/// `kubectl set image deployment/web web=nginx:1.26`.
fn strategic_patch() -> Case {
    Case {
        method: http::Method::PATCH,
        path: "/apis/apps/v1/namespaces/default/deployments/web",
        query: Some("fieldManager=kubectl-set"),
        content_type: "application/strategic-merge-patch+json",
        body: br#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"image":"nginx:1.26","name":"web"}]}}}}"#.to_vec(),
    }
}

/// A Deployment manifest setting 30 leaves, as `kubectl apply --server-side` sends it (JSON
/// in an apply-patch+yaml body).
fn ssa_body() -> Vec<u8> {
    let labels: Vec<String> = (0..6).map(|i| format!(r#""label-{i}":"v{i}""#)).collect();
    let env: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"name":"ENV_{i}","value":"value-{i}"}}"#))
        .collect();
    let body = format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"web","namespace":"default","labels":{{{labels}}}}},"spec":{{"replicas":3,"revisionHistoryLimit":5,"minReadySeconds":5,"progressDeadlineSeconds":600,"selector":{{"matchLabels":{{"app":"web"}}}},"strategy":{{"type":"RollingUpdate","rollingUpdate":{{"maxSurge":1,"maxUnavailable":0}}}},"template":{{"metadata":{{"labels":{{"app":"web"}}}},"spec":{{"terminationGracePeriodSeconds":30,"containers":[{{"name":"web","image":"nginx:1.26","imagePullPolicy":"IfNotPresent","ports":[{{"containerPort":80,"protocol":"TCP"}}],"env":[{env}],"resources":{{"limits":{{"memory":"128Mi","cpu":"500m"}},"requests":{{"memory":"64Mi"}}}}}}]}}}}}}}}"#,
        labels = labels.join(","),
        env = env.join(","),
    );
    body.into_bytes()
}

fn server_side_apply() -> Case {
    Case {
        method: http::Method::PATCH,
        path: "/apis/apps/v1/namespaces/default/deployments/web",
        query: Some("fieldManager=kubectl&fieldValidation=Strict&force=false"),
        content_type: "application/apply-patch+yaml",
        body: ssa_body(),
    }
}

/// `kubectl delete pod web --force --grace-period=0`.
fn delete_with_options() -> Case {
    Case {
        method: http::Method::DELETE,
        path: "/api/v1/namespaces/default/pods/web",
        query: None,
        content_type: "application/json",
        body: br#"{"gracePeriodSeconds":0,"propagationPolicy":"Background"}"#.to_vec(),
    }
}

fn bench(c: &mut Criterion) {
    let headers = http::HeaderMap::new();
    let ssa = server_side_apply();
    // The body really is the 30-leaf manifest the case names.
    assert_eq!(classify(&ssa, &headers).payload_leaves, 30);

    let mut group = c.benchmark_group("classify");
    for (name, case) in [
        ("strategic_patch_set_image", strategic_patch()),
        ("ssa_30_fields", ssa),
        ("delete_with_body_options", delete_with_options()),
    ] {
        group.bench_function(name, |b| b.iter(|| classify(black_box(&case), &headers)));
    }
    // Where the SSA time goes: the request line, then the body.
    let ssa = server_side_apply();
    group.bench_function("ssa_30_fields_request_info_only", |b| {
        b.iter(|| request_info(&ssa.method, black_box(ssa.path), ssa.query, &headers))
    });
    let info = request_info(&ssa.method, ssa.path, ssa.query, &headers).unwrap();
    group.bench_function("ssa_30_fields_analyse_only", |b| {
        b.iter(|| {
            analyse(
                &info,
                ssa.query,
                Some(ssa.content_type),
                black_box(&ssa.body),
            )
        })
    });
    let ssa_body = ssa_body();
    group.bench_function("reference_serde_json_parse_ssa_body", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&ssa_body)).unwrap())
    });
    group.finish();
}

/// The cost of reading YAML bodies, against `serde_yaml` (libyaml) on the same bytes: the
/// probe's 140 KB of nested `[` (refused at the nesting bound), a block-style manifest, and
/// 100 KB of flow-style YAML (the slowest per byte).
fn yaml_bodies(c: &mut Criterion) {
    let headers = http::HeaderMap::new();
    let apply = |body: Vec<u8>| Case {
        method: http::Method::PATCH,
        path: "/api/v1/namespaces/default/configmaps/c",
        query: Some("fieldManager=test"),
        content_type: "application/apply-patch+yaml",
        body,
    };
    let nested = ["[".repeat(70_000), "]".repeat(70_000)]
        .concat()
        .into_bytes();
    let manifest = (0..8)
        .map(|i| format!("  key-{i}: value-{i}\n"))
        .fold(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels:\n    app: web\ndata:\n"
                .to_owned(),
            |body, line| body + &line,
        )
        .into_bytes();
    let entries: Vec<String> = (0..10_000).map(|i| format!("k{i}: v")).collect();
    let flow = format!("kind: ConfigMap\ndata: {{{}}}\n", entries.join(", ")).into_bytes();
    assert!(classify(&apply(nested.clone()), &headers).refusal.is_some());
    assert_eq!(
        classify(&apply(flow.clone()), &headers).payload_leaves,
        10_000
    );

    let mut group = c.benchmark_group("yaml");
    group.sample_size(10);
    for (name, body) in [
        ("nested_140k", nested),
        ("manifest", manifest),
        ("flow_100k", flow),
    ] {
        let case = apply(body);
        group.bench_function(format!("{name}_analyse"), |b| {
            b.iter(|| classify(black_box(&case), &headers))
        });
        group.bench_function(format!("{name}_reference_serde_yaml"), |b| {
            b.iter(|| serde_yaml::from_slice::<serde_yaml::Value>(black_box(&case.body)).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, bench, yaml_bodies);
criterion_main!(benches);
