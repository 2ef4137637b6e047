//! Upgrades (exec, attach, port-forward) through pathgate.
//!
//! FAKE UPSTREAM: the node-less control plane cannot exec (there is no kubelet), so these
//! tests put pathgate in front of an in-process TLS server that answers the exec request
//! with `101 Switching Protocols` and then echoes every byte, as a kubelet stream would.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::gateway::GatewayBuilder;

/// Starts the fake upstream; returns its kubeconfig (and keeps its tempdir alive).
async fn fake_exec_upstream() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let certs = pathgate::tls::init_certs(&dir.path().join("pki"), &[], false).unwrap();
    let tls =
        pathgate::tls::server_config(&certs.server_cert, &certs.server_key, None, false).unwrap();
    let mut tls = tls;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(
                    |mut request: http::Request<hyper::body::Incoming>| async move {
                        let wants = request
                            .headers()
                            .get("upgrade")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let is_exec = request.uri().path().ends_with("/exec");
                        if let (Some(protocol), true) = (wants, is_exec) {
                            let upgrade = hyper::upgrade::on(&mut request);
                            tokio::spawn(async move {
                                let upgraded = upgrade.await.unwrap();
                                let mut io = TokioIo::new(upgraded);
                                let mut buffer = [0u8; 1024];
                                loop {
                                    let n = io.read(&mut buffer).await.unwrap_or(0);
                                    if n == 0 {
                                        break;
                                    }
                                    io.write_all(&buffer[..n]).await.unwrap();
                                }
                            });
                            let response = http::Response::builder()
                                .status(101)
                                .header("connection", "Upgrade")
                                .header("upgrade", protocol)
                                .header("x-stream-protocol-version", "v5.channel.k8s.io")
                                .body(Empty::<Bytes>::new())
                                .unwrap();
                            return Ok::<_, std::convert::Infallible>(response);
                        }
                        Ok(http::Response::builder()
                            .status(404)
                            .body(Empty::new())
                            .unwrap())
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    let ca = std::fs::read_to_string(&certs.ca_cert).unwrap();
    use base64::Engine;
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: u}}\nusers:\n- name: u\n  user: {{token: fake-token}}\n",
        base64::engine::general_purpose::STANDARD.encode(ca)
    );
    let path = dir.path().join("fake.kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_exec_upgrade_is_carried_both_ways() {
    let (_upstream_dir, kubeconfig) = fake_exec_upstream().await;
    let gateway = GatewayBuilder::new(&kubeconfig).start().await;

    // A raw HTTP/1.1 client over TLS, as kubectl's WebSocket executor.
    let config = crate::support::tls::client_config(&gateway.ca, &[b"http/1.1"]);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = gateway.running.as_ref().unwrap().addr;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection.with_upgrades());
    let request = http::Request::get(
        "/s/exec-run/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true&stdout=true",
    )
    .header("host", "localhost")
    .header("connection", "Upgrade")
    .header("upgrade", "websocket")
    .header("sec-websocket-version", "13")
    .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    .header("sec-websocket-protocol", "v5.channel.k8s.io")
    .header("authorization", "Bearer client-token")
    .body(Empty::<Bytes>::new())
    .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["upgrade"], "websocket");
    assert_eq!(
        response.headers()["x-stream-protocol-version"],
        "v5.channel.k8s.io"
    );
    assert!(response.headers().contains_key("x-execution-trace"));
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let mut io = TokioIo::new(upgraded);
    for message in [&b"hello from the client"[..], b"second frame"] {
        io.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        io.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message);
    }
    io.shutdown().await.unwrap();
    drop(io);
    // The exchange is recorded once the stream closes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let records = gateway.collected.all();
        if let Some(record) = records.iter().find(|r| r.upgraded) {
            assert_eq!(record.session, "exec-run");
            assert_eq!(record.status_code, 101);
            assert_eq!(record.bytes_out, 33, "{record:?}");
            assert_eq!(record.bytes_in, 33, "{record:?}");
            assert_eq!(record.error, None, "{record:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no upgraded exchange recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    gateway.stop().await;
}
