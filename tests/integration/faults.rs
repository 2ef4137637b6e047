//! pathgate's own errors are Kubernetes `Status` objects with the right code.
//!
//! FAULT INJECTION: a TLS failure is made by giving pathgate the wrong CA for the real
//! apiserver; a timeout by an upstream (a bare TCP listener in this test) that accepts
//! connections and never answers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::gateway::{cluster, send, GatewayBuilder};

fn status_of(body: &[u8]) -> serde_json::Value {
    let value: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not a Status: {}", String::from_utf8_lossy(body)));
    assert_eq!(value["kind"], "Status");
    assert_eq!(value["status"], "Failure");
    value
}

/// The admin kubeconfig with another server and/or CA.
fn kubeconfig_variant(from: &str, to: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(cluster().dir.admin_kubeconfig()).unwrap();
    assert!(text.contains(from), "{from} not in the admin kubeconfig");
    let path = dir.join("variant.kubeconfig");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_apiserver_certificate_is_a_502_status() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let other = pathgate::tls::init_certs(&dir.path().join("other"), &[], false).unwrap();
    use base64::Engine;
    let real_ca = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(cluster.dir.ca_cert()).unwrap());
    let wrong_ca =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&other.ca_cert).unwrap());
    let kubeconfig = kubeconfig_variant(&real_ca, &wrong_ca, dir.path());
    let spool = dir.path().join("spool");
    let gateway = GatewayBuilder::new(&kubeconfig)
        .ledger(pathgate::ledger::LedgerSettings::new(&spool))
        .start()
        .await;
    let (status, _, body) = send(
        &gateway.client(),
        http::Request::get(format!("{}/api/v1/namespaces", gateway.url))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    let value = status_of(&body);
    assert!(
        value["message"].as_str().unwrap().contains("TLS"),
        "{value}"
    );
    gateway.stop().await;
    let entries = crate::recording::spool_entries(&spool);
    let [entry] = entries.as_slice() else {
        panic!("one ledger entry: {entries:#?}");
    };
    assert_eq!(entry["error"]["side"], "upstream", "{entry}");
    assert_eq!(entry["error"]["kind"], "tls", "{entry}");
    assert_eq!(entry["response"]["origin"], "pathgate", "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apiserver_that_never_answers_is_a_504_status() {
    let cluster = cluster();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_variant(
        &format!("127.0.0.1:{}", cluster.port),
        &format!("127.0.0.1:{port}"),
        dir.path(),
    );
    let mut builder = GatewayBuilder::new(&kubeconfig);
    builder.settings.response_header_timeout = Duration::from_secs(1);
    let gateway = builder.start().await;
    let (status, _, body) = send(
        &gateway.client(),
        http::Request::get(format!("{}/api/v1/namespaces", gateway.url))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 504);
    assert_eq!(status_of(&body)["reason"], "Timeout");
    hold.abort();
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_the_apiserver_could_read_differently_are_a_400_status() {
    let cluster = cluster();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .start()
        .await;
    let client = gateway.client();
    for path in [
        "/api/v1/namespaces/default/../kube-system/secrets",
        "/api/v1/namespaces/default/configmaps/%2e%2e",
        "/api/v1//namespaces/default/pods",
        "/s/bad%20id/api/v1/pods",
    ] {
        let (status, _, body) = send(
            &client,
            http::Request::get(format!("{}{path}", gateway.url))
                .header(
                    "authorization",
                    format!("Bearer {}", cluster.admin_token().unwrap()),
                )
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(status_of(&body)["reason"], "BadRequest", "{path}");
    }
    gateway.stop().await;
}
