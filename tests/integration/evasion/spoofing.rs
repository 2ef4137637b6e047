//! Making the records lie: client-chosen addresses in the apiserver's audit log, trace ids
//! guessed from one observed id, and answers whose record did not say how they ended (cut
//! short by the client, broken off by the upstream, or too large to inspect and turned into
//! a pathgate error). One test injects a fault (an upstream that breaks its answer off) and
//! says so; the others run against the real control plane.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pathgate::ledger::LedgerSettings;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

use crate::gateway::{cluster, namespace, send, Gateway, GatewayBuilder};
use crate::recording::spool_entries;
use crate::support::api::{ApiClient, Identity};
use crate::support::eventually;

/// Every header a proxy chain uses to name a client, each naming a documentation address.
const SPOOFED: [(&str, &str); 9] = [
    ("x-forwarded-for", "203.0.113.7, 198.51.100.1"),
    ("x-real-ip", "198.51.100.9"),
    ("forwarded", "for=192.0.2.1;proto=https"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "http"),
    ("x-client-ip", "192.0.2.2"),
    ("true-client-ip", "192.0.2.3"),
    ("x-cluster-client-ip", "192.0.2.4"),
    ("x-remote-user", "system:admin"),
];

/// The apiserver's audit event with this `auditID`, once it is written.
fn audit_event(audit_log: &Path, audit_id: &str) -> Value {
    eventually(Duration::from_secs(15), "the audit event", || {
        std::fs::read_to_string(audit_log)
            .ok()?
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| event["auditID"] == audit_id && event["stage"] == "ResponseComplete")
    })
}

/// Sends a GET through pathgate from the local address `from`, over `alpn`, with every
/// spoofed header; returns the trace id pathgate answered with.
async fn get_from(gateway: &Gateway, from: Ipv4Addr, alpn: &[u8], token: &str) -> String {
    let config = crate::support::tls::client_config(&gateway.ca, &[alpn]);
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let addr = gateway.running.as_ref().unwrap().addr;
    let tcp = socket.connect(addr).await.expect("pathgate accepts");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
        .await
        .unwrap();
    let mut request = Request::builder()
        .uri(format!(
            "https://{addr}/api/v1/namespaces/default/configmaps?limit=1"
        ))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json");
    for (name, value) in SPOOFED {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    let io = TokioIo::new(tls);
    let response = if alpn == b"h2" {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    assert_eq!(response.status(), 200);
    response.headers()["x-execution-trace"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_forwarded_for_and_real_ip_never_reach_the_audit_log() {
    let cluster = cluster();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .start()
        .await;
    let token = cluster.admin_token().unwrap();
    // The client connects from 127.0.0.2, pathgate to the apiserver from 127.0.0.1.
    let client = Ipv4Addr::new(127, 0, 0, 2);
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let trace_id = get_from(&gateway, client, alpn, &token).await;
        let event = audit_event(&cluster.dir.audit_log(), &trace_id);
        assert_eq!(
            event["sourceIPs"],
            json!(["127.0.0.2", "127.0.0.1"]),
            "the audit log names the client pathgate saw, then pathgate, and nothing the client \
             wrote ({}): {event}",
            String::from_utf8_lossy(alpn)
        );
        assert_eq!(
            event["user"]["username"], "admin",
            "X-Remote-User was not taken"
        );
    }
    gateway.stop().await;
}

/// SplitMix64's output function and its inverse: the generator pathgate's trace ids came
/// from before, whose one output gives its state away.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unmix(mut z: u64) -> u64 {
    let inverse = |c: u64| {
        (0..6).fold(c, |x: u64, _| {
            x.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(x)))
        })
    };
    z ^= (z >> 31) ^ (z >> 62);
    z = z.wrapping_mul(inverse(0x94d0_49bb_1331_11eb));
    z ^= (z >> 27) ^ (z >> 54);
    z = z.wrapping_mul(inverse(0xbf58_476d_1ce4_e5b9));
    z ^ (z >> 30) ^ (z >> 60)
}

/// The first 64 bits of a trace id, as the generator wrote them (little endian).
fn first_word(trace_id: &str) -> u64 {
    let bytes: Vec<u8> = (0..8)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    u64::from_le_bytes(bytes.try_into().unwrap())
}

/// Pairs `(i, j)` where id `j` is among the next 64 SplitMix64 outputs after id `i`'s first
/// word: what an attacker who saw id `i` would have guessed.
fn predicted(ids: &[String]) -> Vec<(usize, usize)> {
    let mut hits = Vec::new();
    for (i, seen) in ids.iter().enumerate() {
        let state = unmix(first_word(seen));
        let guesses: Vec<u64> = (1..=64u64)
            .map(|k| mix(state.wrapping_add(k.wrapping_mul(GAMMA))))
            .collect();
        for (j, later) in ids.iter().enumerate().skip(i + 1) {
            if guesses.contains(&first_word(later)) {
                hits.push((i, j));
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_observed_trace_id_does_not_predict_the_next() {
    // The attack works on the old generator: ids as pathgate drew them (16 bytes of trace
    // id, then 8 of span id, per request) from one SplitMix64 state.
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut draw = || {
        state = state.wrapping_add(GAMMA);
        mix(state)
    };
    let reference: Vec<String> = (0..8)
        .map(|_| {
            let id = format!(
                "{}{}",
                pathgate::trace::hex(&draw().to_le_bytes()),
                pathgate::trace::hex(&draw().to_le_bytes())
            );
            draw(); // the span id
            id
        })
        .collect();
    assert_eq!(
        predicted(&reference).len(),
        8 * 7 / 2,
        "every later id guessed"
    );

    let cluster = cluster();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .start()
        .await;
    let client = gateway.client();
    let token = cluster.admin_token().unwrap();
    let mut ids = Vec::new();
    for _ in 0..40 {
        let request = Request::builder()
            .uri(format!("{}/version", gateway.url))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, headers, _) = send(&client, request).await;
        assert_eq!(status, 200);
        let id = headers["x-execution-trace"].to_str().unwrap().to_string();
        assert!(pathgate::trace::is_valid_audit_id(&id), "{id}");
        ids.push(id);
    }
    assert_eq!(
        predicted(&ids),
        vec![],
        "ids guessed from an earlier one: {ids:?}"
    );
    gateway.stop().await;
}

/// ConfigMaps of about 1 MB each, created straight at the apiserver.
async fn large_configmaps(ns: &str, count: usize) {
    let admin = ApiClient::new(Identity::AdminCertificate);
    let data = "x".repeat(1_000_000);
    for i in 0..count {
        admin
            .post_json(
                &format!("/api/v1/namespaces/{ns}/configmaps"),
                &json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("large-{i}")}, "data": {"d": data}}),
            )
            .await
            .expect_status(http::StatusCode::CREATED);
    }
}

/// The outcome entry with `trace_id`.
fn outcome(spool: &Path, trace_id: &str) -> Value {
    spool_entries(spool)
        .into_iter()
        .find(|e| e["trace_id"] == trace_id && e["phase"] == "outcome")
        .unwrap_or_else(|| panic!("no outcome for {trace_id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletecollection_answer_over_the_inspection_bound_is_relayed_as_the_apiserver_sent_it() {
    let cluster = cluster();
    let ns = namespace(&cluster, "pg-evasion-large-answer").await;
    // 18 × 1 MB: the deleted objects come back in one list, past the 16 MiB bound.
    large_configmaps(&ns, 18).await;
    let spool = tempfile::tempdir().unwrap();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml("mode: observe\n")
        .ledger(LedgerSettings::new(spool.path()))
        .start()
        .await;
    let request = Request::builder()
        .method(Method::DELETE)
        .uri(format!("{}/api/v1/namespaces/{ns}/configmaps", gateway.url))
        .header(
            "authorization",
            format!("Bearer {}", cluster.admin_token().unwrap()),
        )
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body) = send(&gateway.client(), request).await;
    let trace_id = headers["x-execution-trace"].to_str().unwrap().to_string();
    gateway.stop().await;

    assert_eq!(
        status,
        200,
        "{}",
        String::from_utf8_lossy(&body[..200.min(body.len())])
    );
    assert!(body.len() > 16 << 20, "{} bytes", body.len());
    let list: Value = serde_json::from_slice(&body).expect("the whole list, as sent");
    assert_eq!(list["items"].as_array().unwrap().len(), 18);
    let remaining = ApiClient::new(Identity::AdminCertificate)
        .get(&format!("/api/v1/namespaces/{ns}/configmaps"))
        .await
        .json();
    assert_eq!(remaining["items"], json!([]), "the apiserver acted");

    let entry = outcome(spool.path(), &trace_id);
    assert_eq!(entry["request"]["verb"], "deletecollection");
    assert_eq!(
        entry["response"],
        json!({"status_code": 200, "audit_id": trace_id, "origin": "upstream",
               "end": "complete", "body_inspected": false}),
        "{entry}"
    );
    assert_eq!(entry["bytes_out"], json!(body.len()));
    assert!(entry.get("error").is_none(), "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_cut_short_by_the_client_is_recorded_as_client_aborted() {
    let cluster = cluster();
    let ns = namespace(&cluster, "pg-evasion-cut-short").await;
    large_configmaps(&ns, 3).await;
    let spool = tempfile::tempdir().unwrap();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .ledger(LedgerSettings::new(spool.path()))
        .start()
        .await;
    let client = gateway.client();
    let list = || {
        Request::builder()
            .uri(format!("{}/api/v1/namespaces/{ns}/configmaps", gateway.url))
            .header(
                "authorization",
                format!("Bearer {}", cluster.admin_token().unwrap()),
            )
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let response = client.request(list()).await.unwrap();
    let cut_id = response.headers()["x-execution-trace"]
        .to_str()
        .unwrap()
        .to_string();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body); // the client goes away after the first frame
    let (status, headers, whole) = send(&client, list()).await;
    assert_eq!(status, 200);
    let whole_id = headers["x-execution-trace"].to_str().unwrap().to_string();
    drop(client);
    gateway.stop().await;

    let cut = outcome(spool.path(), &cut_id);
    assert_eq!(cut["response"]["end"], "client_aborted", "{cut}");
    let sent = cut["bytes_out"].as_u64().unwrap();
    assert!(sent < whole.len() as u64, "{sent} of {} bytes", whole.len());
    let complete = outcome(spool.path(), &whole_id);
    assert_eq!(complete["response"]["end"], "complete", "{complete}");
    assert_eq!(complete["bytes_out"], json!(whole.len()));
}

/// FAULT INJECTION (the real apiserver never breaks an answer off on purpose): a TLS
/// upstream that answers every request with `201 Created`, a `Content-Length` of 4096 and
/// only the first bytes of the body, then closes. Returns its port.
async fn upstream_breaking_off_its_answers(certs: &pathgate::tls::CertFiles) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config =
        pathgate::tls::server_config(&certs.server_cert, &certs.server_key, None, false).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
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
                let head = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\
                            Content-Length: 4096\r\n\r\n{\"kind\":\"ConfigMap\",";
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_answer_the_apiserver_breaks_off_is_relayed_broken_not_as_a_pathgate_502() {
    let dir = tempfile::tempdir().unwrap();
    let certs = pathgate::tls::init_certs(&dir.path().join("upstream"), &[], false).unwrap();
    let port = upstream_breaking_off_its_answers(&certs).await;
    use base64::Engine;
    let ca =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&certs.ca_cert).unwrap());
    let kubeconfig = dir.path().join("upstream.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    \
             server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\ncontexts:\n- name: fake\n  \
             context:\n    cluster: fake\n    user: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let spool = dir.path().join("spool");
    let gateway = GatewayBuilder::new(&kubeconfig)
        .ledger(LedgerSettings::new(&spool))
        .start()
        .await;
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/api/v1/namespaces/shop/configmaps", gateway.url))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"}}"#,
        )))
        .unwrap();
    // Over HTTP/1.1, where a status already sent stays readable when the body breaks off
    // (an HTTP/2 client sees the stream reset, as it would from the apiserver).
    let tls = crate::support::tls::client_config(&gateway.ca, &[]);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 201, "the apiserver's status, not a 502");
    let trace_id = response.headers()["x-execution-trace"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        response.into_body().collect().await.is_err(),
        "the body breaks off for the client as it did for pathgate"
    );
    gateway.stop().await;

    let entry = outcome(&spool, &trace_id);
    assert_eq!(
        entry["response"],
        json!({"status_code": 201, "origin": "upstream", "end": "upstream_error",
               "body_inspected": false}),
        "{entry}"
    );
    assert_eq!(entry["error"]["side"], "upstream", "{entry}");
    assert_eq!(entry["error"]["kind"], "reset", "{entry}");
    assert_eq!(entry["bytes_out"], json!(r#"{"kind":"ConfigMap","#.len()));
}
