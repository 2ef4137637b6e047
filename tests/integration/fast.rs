//! Pure HTTP behaviour of the request path, against the fake upstream
//! (`support::fake_apiserver`): what pathgate removes, adds, refuses and maps on the way
//! between a client and an apiserver. No Kubernetes semantics are involved, so these need
//! no control plane and run in seconds; the same behaviours against the real apiserver are
//! in `proxy` and `evasion`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use pathgate::proxy::AuthMode;

use crate::gateway::{https_client_http1, send, Gateway, GatewayBuilder};
use crate::support::fake_apiserver::{Canned, FakeApiserver, UPSTREAM_TOKEN};

const PATH: &str = "/api/v1/namespaces/default/configmaps/c";

fn get(gateway: &Gateway) -> http::request::Builder {
    http::Request::get(format!("{}{PATH}", gateway.url))
}

/// A body-less GET of [`PATH`] with the client's own token, as most cases send it.
fn client_get(gateway: &Gateway) -> http::Request<Full<Bytes>> {
    get(gateway)
        .header("authorization", "Bearer client-token")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The one request the fake received.
fn only_request(fake: &FakeApiserver) -> crate::support::fake_apiserver::Received {
    let received = fake.received();
    assert_eq!(received.len(), 1, "{received:?}");
    received.into_iter().next().unwrap()
}

#[tokio::test]
async fn hop_by_hop_and_client_address_headers_never_reach_the_apiserver() {
    let fake = FakeApiserver::start().await;
    let gateway = GatewayBuilder::new(fake.kubeconfig()).start().await;
    let request = get(&gateway)
        .header("authorization", "Bearer client-token")
        .header("connection", "keep-alive, x-named-by-connection")
        .header("x-named-by-connection", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("proxy-connection", "keep-alive")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .header("x-kept", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, _) = send(&https_client_http1(&gateway.ca), request).await;
    assert_eq!(status, 200);
    let headers = only_request(&fake).headers;
    for gone in [
        "connection",
        "x-named-by-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "x-real-ip",
        "forwarded",
    ] {
        assert!(
            !headers.contains_key(gone),
            "{gone} was forwarded: {headers:?}"
        );
    }
    assert_eq!(
        headers["x-forwarded-for"], "127.0.0.1",
        "the peer pathgate saw"
    );
    assert_eq!(headers["x-kept"], "kept", "an ordinary header is forwarded");
    gateway.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_of_the_apiservers_answer_never_reach_the_client() {
    let fake = FakeApiserver::answering(|_| {
        let mut answer = Canned::json(200, serde_json::json!({"kind": "ConfigMap"}));
        answer.headers.extend([
            ("connection", "x-named-by-connection".to_string()),
            ("x-named-by-connection", "1".to_string()),
            ("keep-alive", "timeout=5".to_string()),
            ("proxy-authenticate", "Basic realm=upstream".to_string()),
            ("x-kept", "kept".to_string()),
        ]);
        answer
    })
    .await;
    let gateway = GatewayBuilder::new(fake.kubeconfig()).start().await;
    let request = client_get(&gateway);
    let (status, headers, _) = send(&https_client_http1(&gateway.ca), request).await;
    assert_eq!(status, 200);
    for gone in ["x-named-by-connection", "keep-alive", "proxy-authenticate"] {
        assert!(
            !headers.contains_key(gone),
            "{gone} was relayed: {headers:?}"
        );
    }
    assert_eq!(headers["x-kept"], "kept", "an ordinary header is relayed");
    gateway.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_status_and_is_never_forwarded() {
    let fake = FakeApiserver::start().await;
    let mut builder = GatewayBuilder::new(fake.kubeconfig());
    builder.settings.max_body_bytes = 1024;
    let gateway = builder.start().await;
    let client = https_client_http1(&gateway.ca);
    let post = |size: usize| {
        http::Request::post(format!(
            "{}/api/v1/namespaces/default/configmaps",
            gateway.url
        ))
        .header("authorization", "Bearer client-token")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(vec![b' '; size])))
        .unwrap()
    };
    let (status, headers, body) = send(&client, post(1025)).await;
    assert_eq!(status, 413);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["kind"], "Status");
    assert_eq!(answer["reason"], "RequestEntityTooLarge");
    assert_eq!(answer["code"], 413);
    assert!(headers.contains_key("x-execution-trace"));
    assert!(
        fake.received().is_empty(),
        "an oversize body reached the apiserver"
    );

    let (status, _, _) = send(&client, post(1024)).await;
    assert_eq!(status, 200, "a body at the limit is forwarded");
    assert_eq!(only_request(&fake).body.len(), 1024, "whole");
    gateway.stop().await;
}

#[tokio::test]
async fn each_request_gets_a_fresh_trace_id_that_the_apiserver_receives_as_its_audit_id() {
    let fake = FakeApiserver::start().await;
    let gateway = GatewayBuilder::new(fake.kubeconfig()).start().await;
    let client = https_client_http1(&gateway.ca);
    let mut traces = Vec::new();
    for _ in 0..2 {
        let request = get(&gateway)
            .header("authorization", "Bearer client-token")
            .header("audit-id", "spoofed-by-client")
            .header("x-execution-trace", "spoofed-by-client")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, headers, _) = send(&client, request).await;
        assert_eq!(status, 200);
        traces.push(headers["x-execution-trace"].to_str().unwrap().to_string());
    }
    assert_ne!(traces[0], traces[1], "a trace id per request");
    let received = fake.received();
    assert_eq!(received.len(), 2);
    let recorded = gateway.collected.all();
    for ((trace, request), exchange) in traces.iter().zip(&received).zip(&recorded) {
        assert_eq!(trace.len(), 32, "{trace}");
        assert!(trace.bytes().all(|b| b.is_ascii_hexdigit()), "{trace}");
        assert_eq!(request.headers["audit-id"], trace.as_str());
        assert_eq!(
            request.headers["x-execution-trace"],
            trace.as_str(),
            "the client's value replaced"
        );
        let traceparent = request.headers["traceparent"].to_str().unwrap();
        assert!(
            traceparent.starts_with(&format!("00-{trace}-")),
            "{traceparent} carries the execution id"
        );
        assert_eq!(
            &exchange.trace_id.to_hex(),
            trace,
            "the record has the same id"
        );
    }
    gateway.stop().await;
}

#[tokio::test]
async fn passthrough_forwards_the_clients_token_and_sidecar_replaces_it_with_its_own() {
    for (auth, expected) in [
        (AuthMode::Passthrough, "Bearer client-token".to_string()),
        (AuthMode::Sidecar, format!("Bearer {UPSTREAM_TOKEN}")),
    ] {
        let fake = FakeApiserver::start().await;
        let gateway = GatewayBuilder::new(fake.kubeconfig())
            .auth(auth)
            .start()
            .await;
        let request = client_get(&gateway);
        let (status, _, _) = send(&https_client_http1(&gateway.ca), request).await;
        assert_eq!(status, 200, "{auth:?}");
        assert_eq!(
            only_request(&fake).headers["authorization"],
            expected.as_str(),
            "{auth:?}"
        );
        gateway.stop().await;
    }
}

/// Impersonate mode: pathgate's own credentials plus the identity of the verified client
/// certificate; a client without one is refused with a 401 `Status`, nothing forwarded.
#[tokio::test]
async fn impersonate_sends_its_own_token_and_the_certificates_identity() {
    let fake = FakeApiserver::start().await;
    let gateway = GatewayBuilder::new(fake.kubeconfig())
        .auth(AuthMode::Impersonate)
        .start()
        .await;
    let request = || client_get(&gateway);
    let (status, _, body) = send(&https_client_http1(&gateway.ca), request()).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert!(
        fake.received().is_empty(),
        "a client without a certificate was forwarded"
    );

    let client = gateway.client_with_cert("alice", Some("team-a"));
    let (status, _, _) = send(&client, request()).await;
    assert_eq!(status, 200);
    let headers = only_request(&fake).headers;
    assert_eq!(
        headers["authorization"],
        format!("Bearer {UPSTREAM_TOKEN}").as_str()
    );
    assert_eq!(headers["impersonate-user"], "alice");
    let groups: Vec<_> = headers.get_all("impersonate-group").iter().collect();
    assert_eq!(groups, ["team-a"]);
    gateway.stop().await;
}

/// `--client-token-file` end to end: trimmed lines, comments and blank lines skipped; a
/// token not in the file is refused with a 401 `Status` and never forwarded.
#[tokio::test]
async fn sidecar_admits_exactly_the_tokens_of_its_client_token_file() {
    let fake = FakeApiserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client-tokens");
    std::fs::write(
        &file,
        "# team a\n  agent-a  \n\n# agent-commented\nagent-b\r\n",
    )
    .unwrap();
    let mut builder = GatewayBuilder::new(fake.kubeconfig()).auth(AuthMode::Sidecar);
    builder.client_token_file = Some(file);
    let gateway = builder.start().await;
    let client = https_client_http1(&gateway.ca);
    let with_token = |token: &str| {
        get(&gateway)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    for admitted in ["agent-a", "agent-b"] {
        let (status, _, _) = send(&client, with_token(admitted)).await;
        assert_eq!(status, 200, "{admitted}");
    }
    for refused in ["agent-commented", "# team a", "agent-", "agent-c"] {
        let (status, _, body) = send(&client, with_token(refused)).await;
        assert_eq!(status, 401, "{refused:?}");
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["kind"], "Status");
        assert_eq!(answer["reason"], "Unauthorized");
    }
    let received = fake.received();
    assert_eq!(
        received.len(),
        2,
        "only the admitted requests were forwarded"
    );
    assert!(received
        .iter()
        .all(|r| r.headers["authorization"] == format!("Bearer {UPSTREAM_TOKEN}").as_str()));
    gateway.stop().await;
}

#[tokio::test]
async fn an_apiserver_error_is_relayed_unchanged() {
    let status_body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "InternalError", "code": 500, "message": "etcd is sad"});
    let answer = status_body.clone();
    let fake = FakeApiserver::answering(move |_| Canned::json(500, answer.clone())).await;
    let gateway = GatewayBuilder::new(fake.kubeconfig()).start().await;
    let request = client_get(&gateway);
    let (status, _, body) = send(&https_client_http1(&gateway.ca), request).await;
    assert_eq!(status, 500);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        status_body
    );
    gateway.stop().await;
}

#[tokio::test]
async fn an_apiserver_slower_than_the_response_header_timeout_is_a_504_status() {
    let fake = FakeApiserver::answering(|_| {
        Canned::json(200, serde_json::json!({"kind": "ConfigMap"})).after(Duration::from_secs(5))
    })
    .await;
    let mut builder = GatewayBuilder::new(fake.kubeconfig());
    builder.settings.response_header_timeout = Duration::from_millis(300);
    let gateway = builder.start().await;
    let request = client_get(&gateway);
    let (status, _, body) = send(&https_client_http1(&gateway.ca), request).await;
    assert_eq!(status, 504);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["kind"], "Status");
    assert_eq!(answer["reason"], "Timeout");
    assert_eq!(fake.received().len(), 1, "the request was forwarded once");
    let exchange = &gateway.collected.all()[0];
    assert_eq!(
        exchange.status_code, 504,
        "recorded as answered by pathgate"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn an_unreachable_apiserver_is_a_503_status() {
    let fake = FakeApiserver::start().await;
    fake.stop_listening().await;
    let gateway = GatewayBuilder::new(fake.kubeconfig()).start().await;
    let request = client_get(&gateway);
    let (status, _, body) = send(&https_client_http1(&gateway.ca), request).await;
    assert_eq!(status, 503);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["kind"], "Status");
    assert_eq!(answer["reason"], "ServiceUnavailable");
    assert!(
        answer["message"].as_str().unwrap().contains("apiserver"),
        "{answer}"
    );
    gateway.stop().await;
}
