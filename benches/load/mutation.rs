//! Mutations and reads on the real control plane, straight to kube-apiserver and through
//! pathgate (ledger on, so every mutation waits for its fsync as in production): one
//! ConfigMap, read with a GET and changed with a merge PATCH, one request at a time (an
//! agent's pace), in alternating rounds (direct first, then pathgate first, ...) so that
//! both routes see the same machine. Reports p50 and p99 per operation and route.

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
pub const OPERATIONS: [&str; 2] = ["GET", "merge PATCH"];

/// Latencies of one route, per operation, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    pub per_operation: [Vec<i64>; OPERATIONS.len()],
}

/// Both routes' latencies for the same requests.
#[derive(Debug, Clone, Default)]
pub struct MutationLatencies {
    pub direct: Latencies,
    pub through_pathgate: Latencies,
    pub rounds: usize,
}

/// Sends `requests` GET + PATCH cycles per route, split into `rounds` alternating rounds,
/// after `warmup` unmeasured cycles per route.
pub async fn measure(
    direct: Target,
    through_pathgate: Target,
    token: &str,
    rounds: usize,
    requests: usize,
    warmup: usize,
) -> anyhow::Result<MutationLatencies> {
    let namespace = format!("bench-mutation-{}", std::process::id());
    let path = format!("/api/v1/namespaces/{namespace}/configmaps/target");
    send_ok(&direct, token, Method::POST, "/api/v1/namespaces", "application/json",
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
        .await?;
    send_ok(&direct, token, Method::POST, &format!("/api/v1/namespaces/{namespace}/configmaps"), "application/json",
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "target"}, "data": {"counter": "0"}}))
        .await?;
    let mut result = MutationLatencies {
        rounds,
        ..Default::default()
    };
    let mut counter = 0usize;
    for target in [&direct, &through_pathgate] {
        cycles(target, token, &path, warmup, &mut counter, None).await?;
    }
    let per_round = requests.div_ceil(rounds.max(1));
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [(&direct, 0), (&through_pathgate, 1)]
        } else {
            [(&through_pathgate, 1), (&direct, 0)]
        };
        for (target, index) in order {
            let into = if index == 0 {
                &mut result.direct
            } else {
                &mut result.through_pathgate
            };
            cycles(target, token, &path, per_round, &mut counter, Some(into)).await?;
        }
    }
    let _ = send(
        &direct,
        token,
        Method::DELETE,
        &format!("/api/v1/namespaces/{namespace}"),
        "application/json",
        serde_json::json!({}),
    )
    .await;
    Ok(result)
}

/// `count` cycles of one GET and one merge PATCH (each PATCH changes the value, so the
/// apiserver writes every time), timed into `into` when given.
async fn cycles(
    target: &Target,
    token: &str,
    path: &str,
    count: usize,
    counter: &mut usize,
    mut into: Option<&mut Latencies>,
) -> anyhow::Result<()> {
    for _ in 0..count {
        *counter += 1;
        let started = Instant::now();
        let (status, body) = send(
            target,
            token,
            Method::GET,
            path,
            "application/json",
            serde_json::Value::Null,
        )
        .await?;
        let read = started.elapsed();
        check(status, &body, "GET")?;
        let patch = serde_json::json!({"data": {"counter": counter.to_string()}});
        let started = Instant::now();
        let (status, body) = send(
            target,
            token,
            Method::PATCH,
            path,
            "application/merge-patch+json",
            patch,
        )
        .await?;
        let write = started.elapsed();
        check(status, &body, "PATCH")?;
        if let Some(into) = into.as_deref_mut() {
            into.per_operation[0].push(read.as_micros() as i64);
            into.per_operation[1].push(write.as_micros() as i64);
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
    content_type: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let (status, answer) = send(target, token, method.clone(), path, content_type, body).await?;
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
    content_type: &str,
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
    if !bytes.is_empty() {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request
        .body(Full::new(bytes))
        .context("building a request")?;
    client::send(&target.client, request).await
}

impl MutationLatencies {
    /// The Markdown table: p50 and p99 per operation and route, and pathgate over direct.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "## Mutations and reads on the control plane\n\n{} requests per operation and route, one at a time, {} alternating rounds; pathgate with the ledger on (each mutation waits for its fsync).\n\n| operation | direct p50 | pathgate p50 | ratio | direct p99 | pathgate p99 | ratio |\n|---|---|---|---|---|---|---|\n",
            self.direct.per_operation[0].len(),
            self.rounds
        );
        for (index, operation) in OPERATIONS.iter().enumerate() {
            let direct = &self.direct.per_operation[index];
            let pathgate = &self.through_pathgate.per_operation[index];
            let (d50, p50) = (percentile(direct, 50.0), percentile(pathgate, 50.0));
            let (d99, p99) = (percentile(direct, 99.0), percentile(pathgate, 99.0));
            out.push_str(&format!(
                "| {operation} | {:.2} ms | {:.2} ms | {:.2}x | {:.2} ms | {:.2} ms | {:.2}x |\n",
                d50 as f64 / 1000.0,
                p50 as f64 / 1000.0,
                p50 as f64 / d50.max(1) as f64,
                d99 as f64 / 1000.0,
                p99 as f64 / 1000.0,
                p99 as f64 / d99.max(1) as f64,
            ));
        }
        out
    }
}
