//! A kubectl session through pathgate reaches both remote sinks — a webhook receiver and a
//! real OTLP receiver (Jaeger v2, see `ledger.rs`) — although each was down for part of
//! the session: the spool is the source of truth and each sink catches up from its cursor.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pathgate::ledger::{LedgerSettings, OtlpSettings, RetrySettings, WebhookSettings};
use serde_json::Value;

use crate::gateway::{cluster, kubectl, namespace, ok, GatewayBuilder};
use crate::ledger::Jaeger;

/// Entries received by the webhook, counted per `trace_id/phase`.
type Received = Arc<Mutex<HashMap<String, u32>>>;

/// Starts the webhook receiver on `listener`.
fn serve_webhook(
    listener: tokio::net::TcpListener,
    received: Received,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let received = received.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let received = received.clone();
                    async move {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let entries: Vec<Value> = serde_json::from_slice(&body).unwrap();
                        let mut seen = received.lock().unwrap();
                        for entry in entries {
                            let key = format!(
                                "{}/{}",
                                entry["trace_id"].as_str().unwrap(),
                                entry["phase"].as_str().unwrap()
                            );
                            *seen.entry(key).or_default() += 1;
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn fast_retry() -> RetrySettings {
    RetrySettings {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(800),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reaches_webhook_and_otlp_receivers_that_were_down_for_part_of_it() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let mut jaeger = Jaeger::new(dir.path());
    // The webhook's port is reserved now but nothing listens on it yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let webhook_port = reserved.local_addr().unwrap().port();
    drop(reserved);

    let mut settings = LedgerSettings::new(dir.path().join("spool"));
    let mut webhook = WebhookSettings::new(
        format!("http://127.0.0.1:{webhook_port}/ledger")
            .parse()
            .unwrap(),
    );
    webhook.retry = fast_retry();
    settings.webhook = Some(webhook);
    let mut otlp = OtlpSettings::new(
        format!("http://127.0.0.1:{}", jaeger.otlp_http)
            .parse()
            .unwrap(),
    );
    otlp.retry = fast_retry();
    otlp.timeout = Duration::from_secs(5);
    settings.otlp = Some(otlp);
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml("mode: observe\n")
        .ledger(settings)
        .start()
        .await;
    let kc = gateway.kubeconfig_with_token(
        "admin",
        Some(&cluster.admin_token().unwrap()),
        Some("sinks-run"),
    );
    let ns = namespace(&cluster, "pg-sinks").await;

    // Both receivers down.
    ok(&kubectl(&cluster, &kc, &["-n", &ns, "create", "configmap", "one"]).await);
    ok(&kubectl(&cluster, &kc, &["-n", &ns, "get", "configmaps"]).await);
    // The webhook comes up.
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", webhook_port))
        .await
        .unwrap();
    let receiver = serve_webhook(listener, received.clone());
    ok(&kubectl(&cluster, &kc, &["-n", &ns, "create", "configmap", "two"]).await);
    // Jaeger comes up.
    jaeger.start().await;
    ok(&kubectl(&cluster, &kc, &["-n", &ns, "delete", "configmap", "one"]).await);
    // The four requests above reach the spool (reads within the writer's tick); discovery
    // requests may or may not appear, depending on kubectl's own cache.
    let spool = session_spool(&dir.path().join("spool"), "sinks-run", |entries| {
        let count = |verb: &str| {
            entries
                .iter()
                .filter(|e| {
                    e["request"]["verb"] == verb && e["request"]["resource"] == "configmaps"
                })
                .count()
        };
        count("create") >= 2 && count("list") >= 1 && count("delete") >= 1
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for entry in &spool {
        let trace_id = entry["trace_id"].as_str().unwrap();
        let key = format!("{trace_id}/{}", entry["phase"].as_str().unwrap());
        loop {
            let webhook_count = received.lock().unwrap().get(&key).copied().unwrap_or(0);
            let spans = jaeger.spans(trace_id).await;
            if webhook_count >= 1 && !spans.is_empty() {
                assert_eq!(
                    webhook_count, 1,
                    "{key} delivered to the webhook exactly once"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key}: webhook {webhook_count}, spans {}",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    gateway.stop().await;
    receiver.abort();
    jaeger.stop();
}

/// The spool's entries of `session`, once `complete` holds for them (at most 10 s).
async fn session_spool(
    spool: &std::path::Path,
    session: &str,
    complete: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = crate::recording::spool_entries(spool)
            .into_iter()
            .filter(|entry| entry["session"] == session)
            .collect::<Vec<_>>();
        if complete(&entries) {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "the spool holds {} entries of session {session}, not yet every request made: {entries:#?}",
            entries.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
