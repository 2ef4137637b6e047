//! Clients that abort a mutation after sending it: a TCP reset over HTTP/1.1 (`SO_LINGER`
//! 0, then close) and an HTTP/2 `RST_STREAM` (the request's future dropped on a connection
//! that stays open), at several delays after the request left the client. The apiserver acts
//! on what was forwarded whatever the client does next, so the ledger must hold an outcome
//! for every mutation the apiserver's audit log shows, joined by trace id (= `auditID`).
//!
//! pathgate writes a real ledger (spool directory); the control plane's audit log is at
//! `Metadata` level, one event per request. Every mutation of the test's namespace goes
//! through pathgate (the namespace itself is created through it), so every audit event of
//! the namespace must be in the ledger.
//!
//! Requests that run on after their client left must stay bounded: the last test resets
//! HTTP/2 streams as fast as it sends them against an upstream that never answers (fault
//! injection, said there).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pathgate::ledger::{LedgerSettings, OnFailure};
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::gateway::{cluster, kubectl, ok, unique, Gateway, GatewayBuilder};
use crate::recording::spool_entries;

const ENFORCE: &str = "mode: enforce\nsafety_gates:\n  dry_run_default: false\n";

/// Delays between the request leaving the client and its reset: the apiserver answers a
/// ConfigMap create in a few milliseconds, so these straddle the moment it acts (the last
/// one lets most answers arrive first).
const DELAYS_MS: [u64; 8] = [0, 1, 2, 3, 5, 8, 13, 60];

const MUTATING_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// A TLS connection to pathgate offering exactly `alpn`.
async fn connect(gateway: &Gateway, alpn: &[u8]) -> TlsStream<TcpStream> {
    let config = crate::support::tls::client_config(&gateway.ca, &[alpn]);
    let addr = gateway.running.as_ref().unwrap().addr;
    let tcp = TcpStream::connect(addr).await.expect("pathgate accepts");
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
        .await
        .expect("TLS with pathgate")
}

/// One mutation an aborting client sends.
struct Mutation {
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: String,
}

/// A create, a merge patch of `base` and a delete of the created object, for one attempt.
fn mutations(ns: &str, attempt: &str) -> [Mutation; 3] {
    let configmaps = format!("/api/v1/namespaces/{ns}/configmaps");
    [
        Mutation {
            method: "POST",
            path: configmaps.clone(),
            content_type: "application/json",
            body: json!({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": attempt}, "data": {"a": "1"}})
            .to_string(),
        },
        Mutation {
            method: "PATCH",
            path: format!("{configmaps}/base"),
            content_type: "application/merge-patch+json",
            body: json!({"data": {"attempt": attempt}}).to_string(),
        },
        Mutation {
            method: "DELETE",
            path: format!("{configmaps}/{attempt}"),
            content_type: "application/json",
            body: json!({"kind": "DeleteOptions", "apiVersion": "v1"}).to_string(),
        },
    ]
}

/// Sends `mutation` over HTTP/1.1, waits `delay`, then resets the TCP connection.
async fn reset_http1(gateway: &Gateway, token: &str, mutation: &Mutation, delay: Duration) {
    let mut tls = connect(gateway, b"http/1.1").await;
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {}\r\nAccept: application/json\r\nUser-Agent: pathgate-evasion-aborts\r\n\
         Content-Length: {}\r\n\r\n",
        mutation.method,
        mutation.path,
        mutation.content_type,
        mutation.body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(mutation.body.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(delay).await;
    let (tcp, _) = tls.get_ref();
    tcp.set_zero_linger().expect("SO_LINGER 0");
    drop(tls); // closing with a zero linger sends RST, not FIN
}

/// Sends each mutation as a stream of one HTTP/2 connection and resets the stream after
/// `delay` (dropping the response future: hyper sends `RST_STREAM(CANCEL)`). Returns how
/// many answers arrived before their reset.
async fn reset_http2_streams(
    gateway: &Gateway,
    token: &str,
    batch: &[(Mutation, Duration)],
) -> usize {
    let tls = connect(gateway, b"h2").await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 with pathgate");
    let connection = tokio::spawn(connection);
    let authority = gateway.running.as_ref().unwrap().addr;
    let mut answered = 0;
    for (mutation, delay) in batch {
        let request = Request::builder()
            .method(mutation.method)
            .uri(format!("https://{authority}{}", mutation.path))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", mutation.content_type)
            .header("accept", "application/json")
            .header("user-agent", "pathgate-evasion-aborts")
            .body(Full::new(Bytes::from(mutation.body.clone())))
            .unwrap();
        sender.ready().await.expect("the connection stays open");
        let response = sender.send_request(request);
        tokio::select! {
            answer = response => { answer.expect("an answer"); answered += 1; }
            () = tokio::time::sleep(*delay) => {} // the future is dropped: RST_STREAM
        }
    }
    assert!(
        !connection.is_finished(),
        "stream resets must not have closed the connection"
    );
    answered
}

/// The audit events of every mutation made in (or of) namespace `ns`, by `auditID`.
fn audited_mutations(audit_log: &Path, ns: &str) -> HashMap<String, Value> {
    std::fs::read_to_string(audit_log)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| {
            let object = &event["objectRef"];
            let in_namespace = object["namespace"] == ns
                || object["resource"] == "namespaces" && object["name"] == ns;
            in_namespace
                && event["stage"] == "ResponseComplete"
                && MUTATING_VERBS.contains(&event["verb"].as_str().unwrap_or(""))
        })
        .map(|event| (event["auditID"].as_str().unwrap().to_string(), event))
        .collect()
}

/// Aborts mutations over both protocols at every delay; stops pathgate (a drain waits for
/// requests whose client left); then holds the audit log against the ledger.
async fn every_audited_mutation_has_an_outcome(on_failure: OnFailure) {
    let cluster = cluster();
    let spool = tempfile::tempdir().unwrap();
    let mut ledger = LedgerSettings::new(spool.path());
    ledger.on_failure = on_failure;
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml(ENFORCE)
        .ledger(ledger)
        .start()
        .await;
    let token = cluster.admin_token().unwrap();
    let kc = gateway.kubeconfig_with_token("admin", Some(&token), Some("aborts"));
    let ns = unique("pg-evasion-aborts");
    ok(&kubectl(&cluster, &kc, &["create", "namespace", &ns]).await);
    ok(&kubectl(
        &cluster,
        &kc,
        &[
            "-n",
            &ns,
            "create",
            "configmap",
            "base",
            "--from-literal=a=0",
        ],
    )
    .await);

    for delay in DELAYS_MS.map(Duration::from_millis) {
        for mutation in mutations(&ns, &format!("h1-{}", delay.as_millis())) {
            reset_http1(&gateway, &token, &mutation, delay).await;
        }
    }
    let batch: Vec<(Mutation, Duration)> = DELAYS_MS
        .iter()
        .flat_map(|&ms| {
            mutations(&ns, &format!("h2-{ms}"))
                .into_iter()
                .map(move |m| (m, Duration::from_millis(ms)))
        })
        .collect();
    let answered_h2 = reset_http2_streams(&gateway, &token, &batch).await;
    gateway.stop().await;

    let entries = spool_entries(spool.path());
    let phase_of = |phase: &str| -> HashMap<String, Value> {
        entries
            .iter()
            .filter(|e| e["phase"] == phase)
            .map(|e| (e["trace_id"].as_str().unwrap().to_string(), e.clone()))
            .collect()
    };
    let (outcomes, intents) = (phase_of("outcome"), phase_of("intent"));
    let audited = audited_mutations(&cluster.dir.audit_log(), &ns);
    assert!(
        audited.len() >= 2,
        "the namespace and its base ConfigMap were created through pathgate: {audited:?}"
    );
    let mut aborted = 0;
    for (audit_id, event) in &audited {
        let outcome = outcomes.get(audit_id).unwrap_or_else(|| {
            panic!("the apiserver did {event} but the ledger has no outcome for it")
        });
        let response = &outcome["response"];
        assert_eq!(
            response["status_code"], event["responseStatus"]["code"],
            "the ledger records the apiserver's answer: {outcome}"
        );
        assert_eq!(response["origin"], "upstream", "{outcome}");
        assert_eq!(response["audit_id"], json!(audit_id), "{outcome}");
        if on_failure == OnFailure::FailClosedMutations {
            assert!(intents.contains_key(audit_id), "no intent for {outcome}");
        }
        if response["end"] == "client_aborted" {
            assert_eq!(outcome["bytes_out"], 0, "{outcome}");
            assert_eq!(event["userAgent"], "pathgate-evasion-aborts", "{outcome}");
            aborted += 1;
        } else {
            assert_eq!(response["end"], "complete", "{outcome}");
        }
    }
    for (trace_id, outcome) in &outcomes {
        if outcome["error"]["side"] == "client" && outcome.get("response").is_none() {
            // Its client left before pathgate forwarded it: the apiserver never saw it.
            assert!(!audited.contains_key(trace_id), "{outcome}");
        }
    }
    for intent in intents.keys() {
        assert!(
            outcomes.contains_key(intent),
            "every intent has its outcome: {}",
            intents[intent]
        );
    }
    assert!(
        aborted > 0,
        "some mutations were answered only after their client had gone (else this test proves \
         nothing); HTTP/2 answers before the reset: {answered_h2}"
    );
    eprintln!(
        "{} audited mutations, {aborted} answered after their client left, {} HTTP/2 answers \
         before the reset",
        audited.len(),
        answered_h2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_reset_after_sending_over_http1_and_http2_all_reach_the_ledger() {
    every_audited_mutation_has_an_outcome(OnFailure::FailOpen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_reset_after_sending_under_fail_closed_have_an_intent_and_an_outcome() {
    every_audited_mutation_has_an_outcome(OnFailure::FailClosedMutations).await;
}

/// FAULT INJECTION (the real apiserver answers too fast to keep requests pending): a TLS
/// upstream that reads each request head and never answers; counts the heads it read.
async fn upstream_never_answering(
    certs: &pathgate::tls::CertFiles,
) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let mut config =
        pathgate::tls::server_config(&certs.server_cert, &certs.server_key, None, false).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = heads.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n @ 1..) = tls.read(&mut buffer).await else {
                        return;
                    };
                    request.extend_from_slice(&buffer[..n]);
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = tls.read(&mut buffer).await; // holds the request until pathgate gives up
            });
        }
    });
    (port, heads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_stream_resets_leave_at_most_one_connections_worth_of_requests_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let certs = pathgate::tls::init_certs(&dir.path().join("upstream"), &[], false).unwrap();
    let (port, heads) = upstream_never_answering(&certs).await;
    use base64::Engine;
    let ca =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&certs.ca_cert).unwrap());
    let kubeconfig = dir.path().join("upstream.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: f\nclusters:\n- name: f\n  cluster:\n    \
             server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\ncontexts:\n- \
             name: f\n  context:\n    cluster: f\n    user: f\nusers:\n- name: f\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let mut builder = GatewayBuilder::new(&kubeconfig);
    // Longer than the test: no request ends upstream (and frees its permit) on its own.
    builder.settings.response_header_timeout = Duration::from_secs(30);
    let gateway = builder.start().await;

    // 260 deletes on one connection, each reset once pathgate had time to forward it.
    let tls = connect(&gateway, b"h2").await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let authority = gateway.running.as_ref().unwrap().addr;
    for i in 0..260 {
        let request = Request::delete(format!(
            "https://{authority}/api/v1/namespaces/default/configmaps/reset-{i}"
        ))
        .body(Full::new(Bytes::new()))
        .unwrap();
        sender.ready().await.expect("the connection stays open");
        let response = sender.send_request(request);
        let _ = tokio::time::timeout(Duration::from_millis(10), response).await;
    }
    crate::support::eventually(Duration::from_secs(3), "200 requests upstream", || {
        (heads.load(std::sync::atomic::Ordering::SeqCst) >= 200).then_some(())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        heads.load(std::sync::atomic::Ordering::SeqCst),
        200,
        "requests whose client left run on, at most 200 per connection"
    );
    drop(sender);
    gateway.stop().await; // the drain waits for the 200 (until its timeout)
    assert_eq!(
        heads.load(std::sync::atomic::Ordering::SeqCst),
        200,
        "the 60 reset while waiting for a permit never reached the upstream"
    );
}
