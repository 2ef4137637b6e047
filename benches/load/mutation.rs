//! Mutations and reads on the real control plane, straight to kube-apiserver and through
//! pathgate (ledger on, so every mutation waits for its fsync as in production), and through
//! a baseline pathgate build when one is given: one ConfigMap, read with a GET and changed
//! with a merge PATCH, then changed again the careful way (a server dry run of a merge
//! PATCH, then the same PATCH), one request at a time (an agent's pace), in alternating
//! rounds (direct first, then last, ...) so that every route sees the same machine.
//! Reports p50 and p99 per operation and route.

use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::Full;

use crate::client::{self, HttpsClient};
use crate::report::percentile;

/// Where requests go.
pub struct Target {
    pub base_url: String,
    pub client: HttpsClient,
}

/// The operations measured, in the order each request cycle sends them.
pub const OPERATIONS: [&str; 4] = [
    "GET",
    "merge PATCH",
    "dry-run merge PATCH",
    "merge PATCH after its dry run",
];

/// Latencies of one route, per operation, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    pub per_operation: [Vec<i64>; OPERATIONS.len()],
}

/// Every route's latencies for the same requests; the first route is the direct one.
#[derive(Debug, Clone, Default)]
pub struct MutationLatencies {
    pub routes: Vec<(&'static str, Latencies)>,
    pub rounds: usize,
    /// Whether etcd fsyncs its writes (`--durable-etcd`); the report says which.
    pub durable_etcd: bool,
}

/// Sends `requests` request cycles per route, split into `rounds` alternating rounds,
/// after `warmup` unmeasured cycles per route. `routes[0]` is the direct route, which also
/// sets the test object up.
pub async fn measure(
    routes: Vec<(&'static str, Target)>,
    token: &str,
    rounds: usize,
    requests: usize,
    warmup: usize,
) -> anyhow::Result<MutationLatencies> {
    let direct = &routes[0].1;
    let namespace = format!("bench-mutation-{}", std::process::id());
    let path = format!("/api/v1/namespaces/{namespace}/configmaps/target");
    let namespace_object = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    send_ok(
        direct,
        token,
        Method::POST,
        "/api/v1/namespaces",
        namespace_object,
    )
    .await?;
    let configmap = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "target"}, "data": {"counter": "0"}});
    let collection = format!("/api/v1/namespaces/{namespace}/configmaps");
    send_ok(direct, token, Method::POST, &collection, configmap).await?;
    let mut result = MutationLatencies {
        routes: routes
            .iter()
            .map(|(label, _)| (*label, Latencies::default()))
            .collect(),
        rounds,
        durable_etcd: false,
    };
    let mut counter = 0usize;
    for (_, target) in &routes {
        cycles(target, token, &path, warmup, &mut counter, None).await?;
    }
    let per_round = requests.div_ceil(rounds.max(1));
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..routes.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let into = &mut result.routes[index].1;
            cycles(
                &routes[index].1,
                token,
                &path,
                per_round,
                &mut counter,
                Some(into),
            )
            .await?;
        }
    }
    let _ = send(
        direct,
        token,
        Method::DELETE,
        &format!("/api/v1/namespaces/{namespace}"),
        None,
        serde_json::Value::Null,
    )
    .await;
    Ok(result)
}

/// `count` cycles of the [`OPERATIONS`] (each PATCH changes the value, so the apiserver
/// writes every time), timed into `into` when given.
async fn cycles(
    target: &Target,
    token: &str,
    path: &str,
    count: usize,
    counter: &mut usize,
    mut into: Option<&mut Latencies>,
) -> anyhow::Result<()> {
    let dry_run_path = format!("{path}?dryRun=All");
    for _ in 0..count {
        *counter += 2;
        let plain = serde_json::json!({"data": {"counter": counter.to_string()}});
        let careful = serde_json::json!({"data": {"counter": (*counter + 1).to_string()}});
        let requests = [
            (Method::GET, path, serde_json::Value::Null),
            (Method::PATCH, path, plain),
            (Method::PATCH, dry_run_path.as_str(), careful.clone()),
            (Method::PATCH, path, careful),
        ];
        for (index, (method, path, body)) in requests.into_iter().enumerate() {
            let content_type = (!body.is_null()).then_some("application/merge-patch+json");
            let started = Instant::now();
            let (status, answer) =
                send(target, token, method.clone(), path, content_type, body).await?;
            let elapsed = started.elapsed();
            check(status, &answer, OPERATIONS[index])?;
            if let Some(into) = into.as_deref_mut() {
                into.per_operation[index].push(elapsed.as_micros() as i64);
            }
        }
    }
    Ok(())
}

fn check(status: StatusCode, body: &Bytes, what: &str) -> anyhow::Result<()> {
    if status != StatusCode::OK {
        bail!(
            "{what} answered {status}: {}",
            String::from_utf8_lossy(body)
        );
    }
    Ok(())
}

async fn send_ok(
    target: &Target,
    token: &str,
    method: Method,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let json = Some("application/json");
    let (status, answer) = send(target, token, method.clone(), path, json, body).await?;
    if !status.is_success() {
        bail!(
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(())
}

async fn send(
    target: &Target,
    token: &str,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: serde_json::Value,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(serde_json::to_vec(&body)?)
    };
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", target.base_url))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ACCEPT, "application/json");
    if let Some(content_type) = content_type.filter(|_| !bytes.is_empty()) {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request
        .body(Full::new(bytes))
        .context("building a request")?;
    client::send(&target.client, request).await
}

impl MutationLatencies {
    /// The Markdown table: p50 and p99 per operation and route, and each route over direct.
    pub fn markdown(&self) -> String {
        let Some((_, direct)) = self.routes.first() else {
            return String::new();
        };
        let mut out = format!(
            "## Mutations and reads on the control plane\n\n{} requests per operation and route, one at a time, {} alternating rounds; pathgate with the ledger on (each mutation waits for its fsync); {}. Ratios are over direct.\n\n| operation | route | p50 | ratio | p99 | ratio |\n|---|---|---|---|---|---|\n",
            direct.per_operation[0].len(),
            self.rounds,
            if self.durable_etcd {
                "etcd fsyncs its writes (`--durable-etcd`)"
            } else {
                "etcd runs with `--unsafe-no-fsync` (the test cluster's default: a direct write is never durable)"
            }
        );
        for (index, operation) in OPERATIONS.iter().enumerate() {
            let d50 = percentile(&direct.per_operation[index], 50.0).max(1) as f64;
            let d99 = percentile(&direct.per_operation[index], 99.0).max(1) as f64;
            for (label, latencies) in &self.routes {
                let p50 = percentile(&latencies.per_operation[index], 50.0) as f64;
                let p99 = percentile(&latencies.per_operation[index], 99.0) as f64;
                out.push_str(&format!(
                    "| {operation} | {label} | {:.2} ms | {:.2}x | {:.2} ms | {:.2}x |\n",
                    p50 / 1000.0,
                    p50 / d50,
                    p99 / 1000.0,
                    p99 / d99,
                ));
            }
        }
        out
    }
}
