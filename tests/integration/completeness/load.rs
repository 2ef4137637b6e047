//! The load: clients that create, merge-patch and delete ConfigMaps through pathgate as
//! fast as it answers, over HTTP/1.1 and HTTP/2, every fourth request aborted a few
//! milliseconds after it was sent (HTTP/1.1: a TCP reset, `SO_LINGER` 0 then close;
//! HTTP/2: the response future dropped, hyper sends `RST_STREAM(CANCEL)`).
//!
//! Requests go on while pathgate is killed and restarted: a request that finds no
//! listener, or whose connection dies, is counted as failed and the client moves on.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::check::{Answer, FAIL_CLOSED_MESSAGE, OUTCOME_WARNING};
use crate::gateway::HttpsClient;

/// Delays between a request leaving the client and its reset: a ConfigMap mutation takes a
/// few milliseconds upstream, so these straddle the moment the apiserver acts.
const ABORT_DELAYS_MS: [u64; 6] = [0, 1, 2, 4, 8, 13];

/// Longest wait for one answer; a request past it (a restart under way) counts as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub namespace: String,
}

/// What the clients did, shared by every client task.
#[derive(Default)]
pub struct Tally {
    pub sent: AtomicUsize,
    pub aborted: AtomicUsize,
    /// No answer: connection refused or broken (pathgate was being killed), or timed out.
    pub failed: AtomicUsize,
    pub answers: Mutex<Vec<Answer>>,
}

/// One mutation.
struct Mutation {
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: String,
}

/// The create, merge patch and delete of ConfigMap `name`.
fn mutations(ns: &str, name: &str) -> [Mutation; 3] {
    let configmaps = format!("/api/v1/namespaces/{ns}/configmaps");
    [
        Mutation {
            method: "POST",
            path: configmaps.clone(),
            content_type: "application/json",
            body: json!({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": name}, "data": {"step": "0"}})
            .to_string(),
        },
        Mutation {
            method: "PATCH",
            path: format!("{configmaps}/{name}"),
            content_type: "application/merge-patch+json",
            body: json!({"data": {"step": "1"}}).to_string(),
        },
        Mutation {
            method: "DELETE",
            path: format!("{configmaps}/{name}"),
            content_type: "application/json",
            body: json!({"kind": "DeleteOptions", "apiVersion": "v1"}).to_string(),
        },
    ]
}

/// Runs client `index` until `deadline`: odd clients speak HTTP/2, even ones HTTP/1.1.
pub async fn client(index: usize, target: Target, deadline: Instant, tally: Arc<Tally>) {
    let http2 = index % 2 == 1;
    let pooled = if http2 {
        http2_client(&target.ca)
    } else {
        crate::gateway::https_client_http1(&target.ca)
    };
    let mut sequence = 0usize;
    while Instant::now() < deadline {
        let name = format!("c{index}-{sequence}");
        for mutation in mutations(&target.namespace, &name) {
            sequence += 1;
            tally.sent.fetch_add(1, Ordering::Relaxed);
            if sequence % 4 == 0 {
                let delay = Duration::from_millis(ABORT_DELAYS_MS[(sequence / 4) % 6]);
                let aborted = if http2 {
                    reset_http2(&target, &mutation, delay).await
                } else {
                    reset_http1(&target, &mutation, delay).await
                };
                let counter = if aborted {
                    &tally.aborted
                } else {
                    &tally.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            } else {
                match send(&pooled, &target, &mutation).await {
                    Some(answer) => tally.answers.lock().unwrap().push(answer),
                    None => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        // pathgate is probably restarting: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
}

/// An HTTPS client that speaks HTTP/2 only.
fn http2_client(ca: &std::path::Path) -> HttpsClient {
    let config = crate::support::tls::client_config(ca, &[]);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http2()
        .build();
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector)
}

fn request(target: &Target, mutation: &Mutation) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(mutation.method)
        .uri(format!("https://{}{}", target.addr, mutation.path))
        .header("content-type", mutation.content_type)
        .header("accept", "application/json")
        .header("user-agent", "pathgate-completeness")
        .body(Full::new(Bytes::from(mutation.body.clone())))
        .unwrap()
}

/// Sends `mutation` and waits for the whole answer.
async fn send(client: &HttpsClient, target: &Target, mutation: &Mutation) -> Option<Answer> {
    let exchange = async {
        let response = client.request(request(target, mutation)).await.ok()?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.ok()?.to_bytes();
        Some((parts, body))
    };
    let (parts, body) = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .ok()??;
    let warning = parts
        .headers
        .get_all("warning")
        .iter()
        .any(|value| value.to_str().is_ok_and(|v| v.contains(OUTCOME_WARNING)));
    Some(Answer {
        trace_id: parts
            .headers
            .get("x-execution-trace")?
            .to_str()
            .ok()?
            .to_string(),
        outcome_warning: warning,
        refused_fail_closed: parts.status == 503
            && String::from_utf8_lossy(&body).contains(FAIL_CLOSED_MESSAGE),
    })
}

async fn connect(
    target: &Target,
    alpn: &[u8],
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = crate::support::tls::client_config(&target.ca, &[alpn]);
    let tcp = TcpStream::connect(target.addr).await.ok()?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
        .await
        .ok()
}

/// Sends `mutation` over HTTP/1.1, waits `delay`, then resets the TCP connection. Whether
/// the request got through is for the audit log to say; `false` when it could not be sent.
async fn reset_http1(target: &Target, mutation: &Mutation, delay: Duration) -> bool {
    let Some(mut tls) = connect(target, b"http/1.1").await else {
        return false;
    };
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {}\r\nAccept: application/json\r\n\
         User-Agent: pathgate-completeness\r\nContent-Length: {}\r\n\r\n",
        mutation.method,
        mutation.path,
        mutation.content_type,
        mutation.body.len()
    );
    let sent = tls.write_all(head.as_bytes()).await.is_ok()
        && tls.write_all(mutation.body.as_bytes()).await.is_ok()
        && tls.flush().await.is_ok();
    tokio::time::sleep(delay).await;
    let (tcp, _) = tls.get_ref();
    let _ = tcp.set_zero_linger();
    drop(tls); // a zero linger makes the close a RST, not a FIN
    sent
}

/// Sends `mutation` as the one stream of a new HTTP/2 connection and resets the stream
/// after `delay` unless the answer came first; the connection closes shortly after.
async fn reset_http2(target: &Target, mutation: &Mutation, delay: Duration) -> bool {
    let Some(tls) = connect(target, b"h2").await else {
        return false;
    };
    let Ok((mut sender, connection)) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await
    else {
        return false;
    };
    let connection = tokio::spawn(connection);
    if sender.ready().await.is_err() {
        return false;
    }
    let response = sender.send_request(request(target, mutation));
    tokio::select! {
        _ = response => {}
        () = tokio::time::sleep(delay) => {} // dropped: RST_STREAM
    }
    // Let the connection task write the RST_STREAM before the connection goes.
    tokio::time::sleep(Duration::from_millis(20)).await;
    connection.abort();
    true
}
