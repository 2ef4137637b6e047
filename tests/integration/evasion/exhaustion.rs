//! Connection exhaustion (issue 17, items 6 and 7): clients that hold connections open
//! without using them (no handshake, no request, no body), clients that open too many, and
//! long-lived watches that starved everyone's short requests upstream.
//!
//! Each test starts pathgate in-process in front of the real control plane with short
//! timeouts and small limits set through the configuration file's `server:` keys, attacks
//! it the way the probe did (raw TLS and HTTP/2 where kubectl cannot be made to misbehave),
//! and checks both what the attacker saw and that an honest client is still served. Source
//! addresses other than 127.0.0.1 (127.0.0.2, 127.0.0.3: all of 127.0.0.0/8 is loopback)
//! stand for other peers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::gateway::{cluster, kubectl, namespace, ok, send, Gateway, GatewayBuilder};

/// pathgate in passthrough mode with the connection keys of `server_yaml` (a `server:`
/// mapping as in a configuration file).
async fn gateway_with(server_yaml: &str) -> Gateway {
    let config = pathgate::config::Config::from_yaml(
        &format!("server: {server_yaml}"),
        std::path::Path::new("exhaustion.yaml"),
    )
    .expect("the test's server keys are valid");
    let mut builder = GatewayBuilder::new(cluster().dir.admin_kubeconfig());
    builder.settings.connections = config.server.connections.settings();
    builder.start().await
}

fn addr_of(gateway: &Gateway) -> SocketAddr {
    gateway.running.as_ref().unwrap().addr
}

fn timeouts(gateway: &Gateway, kind: &str) -> u64 {
    let metrics = &gateway.running.as_ref().unwrap().metrics;
    metrics.connection_timeouts.with_label_values(&[kind]).get()
}

fn refusals(gateway: &Gateway, limit: &str) -> u64 {
    let metrics = &gateway.running.as_ref().unwrap().metrics;
    metrics
        .connections_refused
        .with_label_values(&[limit])
        .get()
}

/// A TCP connection to pathgate from `source` (another loopback address is another peer).
async fn tcp_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(to).await.expect("TCP connect to pathgate")
}

fn tls_connector(gateway: &Gateway, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let config = crate::support::tls::client_config(&gateway.ca, alpn);
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS connection to pathgate from `source`, negotiating `alpn`; `Err` when pathgate
/// closed it before or during the handshake.
async fn tls_from(
    gateway: &Gateway,
    source: IpAddr,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(source, addr_of(gateway)).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        tls_connector(gateway, alpn).connect(name, tcp),
    )
    .await
    .expect("the handshake ends (done or refused) within 10 s")
}

const H1: &[&[u8]] = &[b"http/1.1"];
const H2: &[&[u8]] = &[b"h2"];

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Reads until pathgate closes the stream; returns how long that took (panics after
/// `limit`).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("pathgate kept the connection open for {limit:?}"));
    start.elapsed()
}

/// One GET over a fresh HTTP/1.1 TLS connection from `source`.
async fn get_from(gateway: &Gateway, source: IpAddr, path: &str) -> StatusCode {
    let tls = tls_from(gateway, source, H1)
        .await
        .expect("an honest client's handshake succeeds");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "localhost")
        .header(
            "authorization",
            format!("Bearer {}", cluster().admin_token().unwrap()),
        )
        .body(Empty::<Bytes>::new())
        .unwrap();
    sender.send_request(request).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_the_tls_handshake_is_closed_after_the_handshake_timeout() {
    let gateway = gateway_with("{tls_handshake_timeout_seconds: 1}").await;
    let mut tcp = tcp_from(loopback(1), addr_of(&gateway)).await;
    let took = closed_within(&mut tcp, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert_eq!(timeouts(&gateway, "tls_handshake"), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls_connection_that_never_sends_a_request_is_closed_after_the_header_timeout() {
    let gateway = gateway_with("{header_read_timeout_seconds: 2, idle_timeout_seconds: 600}").await;
    let mut tls = tls_from(&gateway, loopback(1), H1).await.unwrap();
    let took = closed_within(&mut tls, Duration::from_secs(15)).await;
    assert!(took >= Duration::from_millis(1900), "closed after {took:?}");
    assert_eq!(timeouts(&gateway, "header_read"), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_never_sends_its_preface_is_closed_after_the_header_timeout() {
    let gateway = gateway_with("{header_read_timeout_seconds: 2, idle_timeout_seconds: 600}").await;
    let mut tls = tls_from(&gateway, loopback(1), H2).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let took = closed_within(&mut tls, Duration::from_secs(15)).await;
    assert!(took >= Duration::from_millis(1900), "closed after {took:?}");
    assert_eq!(timeouts(&gateway, "header_read"), 1);

    // The preface and nothing else: no request within the bound either.
    let mut tls = tls_from(&gateway, loopback(1), H2).await.unwrap();
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    closed_within(&mut tls, Duration::from_secs(15)).await;
    assert_eq!(timeouts(&gateway, "header_read"), 2);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_http11_header_is_closed_after_the_header_timeout() {
    let gateway = gateway_with("{header_read_timeout_seconds: 2, idle_timeout_seconds: 600}").await;
    let mut tls = tls_from(&gateway, loopback(1), H1).await.unwrap();
    let start = Instant::now();
    // One header line a second, never the blank line that ends them (slowloris).
    let dripping = async {
        tls.write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\n")
            .await?;
        for i in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tls.write_all(format!("X-Drip-{i}: 1\r\n").as_bytes())
                .await?;
            tls.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(15), dripping)
        .await
        .expect("pathgate ended the dripping connection within 15 s");
    let took = start.elapsed();
    assert!(outcome.is_err(), "every header line was accepted");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(timeouts(&gateway, "header_read"), 1);
    gateway.stop().await;
}

/// An HTTP/2 connection to pathgate (hyper's client), its driver's task, and its sender.
async fn h2_connection(
    gateway: &Gateway,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<Instant>,
) {
    let tls = tls_from(gateway, loopback(1), H2).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
        Instant::now()
    });
    (sender, driver)
}

/// A GET of `url` with the admin's bearer token.
fn admin_get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header(
            "authorization",
            format!("Bearer {}", cluster().admin_token().unwrap()),
        )
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_idle_after_its_requests_is_closed_after_the_idle_timeout() {
    let gateway = gateway_with("{header_read_timeout_seconds: 30, idle_timeout_seconds: 2}").await;
    let (mut sender, driver) = h2_connection(&gateway).await;
    let response = sender
        .send_request(admin_get("https://localhost/version"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    let answered = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(15), driver)
        .await
        .expect("pathgate closed the idle HTTP/2 connection within 15 s")
        .unwrap();
    let idle = closed - answered;
    assert!(idle >= Duration::from_millis(1900), "closed after {idle:?}");
    assert_eq!(timeouts(&gateway, "idle"), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_outlives_the_idle_timeout_and_still_gets_its_events() {
    let cluster = cluster();
    let gateway = gateway_with("{header_read_timeout_seconds: 1, idle_timeout_seconds: 1}").await;
    let ns = namespace(&cluster, "pg-idle-watch").await;
    let (mut sender, driver) = h2_connection(&gateway).await;
    let response = sender
        .send_request(admin_get(&format!(
            "https://localhost/api/v1/namespaces/{ns}/configmaps?watch=1"
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    // Four idle timeouts with the watch open and silent.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !driver.is_finished(),
        "the connection of an open watch was closed"
    );
    ok(&kubectl(
        &cluster,
        &cluster.dir.admin_kubeconfig(),
        &["-n", &ns, "create", "configmap", "after-idle"],
    )
    .await);
    let event = tokio::time::timeout(Duration::from_secs(20), body.frame())
        .await
        .expect("the event arrived within 20 s")
        .expect("the watch is still open")
        .unwrap()
        .into_data()
        .unwrap();
    let event = String::from_utf8_lossy(&event);
    assert!(
        event.contains("after-idle") && event.contains("ADDED"),
        "{event}"
    );
    assert_eq!(timeouts(&gateway, "idle"), 0);
    drop(body);
    gateway.stop().await;
}

/// A stream that stops moving bytes either way once frozen, without closing: a peer that
/// died (or a network that dropped it) as pathgate sees it.
struct Freezable<T> {
    inner: T,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

impl<T> Freezable<T> {
    fn is_frozen(&self) -> bool {
        self.frozen.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Freezable<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.is_frozen() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Freezable<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.is_frozen() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.is_frozen() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.is_frozen() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_http2_peer_with_a_watch_open_is_closed_by_unanswered_pings() {
    let cluster = cluster();
    let gateway = gateway_with(
        "{http2_keepalive_interval_seconds: 2, http2_keepalive_timeout_seconds: 1, \
          idle_timeout_seconds: 600}",
    )
    .await;
    let ns = namespace(&cluster, "pg-dead-peer").await;
    let tls = tls_from(&gateway, loopback(1), H2).await.unwrap();
    let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let io = Freezable {
        inner: tls,
        frozen: Arc::clone(&dead),
    };
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(admin_get(&format!(
            "https://localhost/api/v1/namespaces/{ns}/configmaps?watch=1"
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The peer dies without closing its socket: nothing is read or written any more, so
    // nobody answers pathgate's PINGs.
    dead.store(true, std::sync::atomic::Ordering::SeqCst);
    let metrics = gateway.running.as_ref().unwrap().metrics.clone();
    until(
        Duration::from_secs(20),
        "the dead peer's connection closed",
        || metrics.open_connections.get() == 0,
    )
    .await;
    assert_eq!(timeouts(&gateway, "http2_keepalive"), 1);
    assert_eq!(timeouts(&gateway, "idle"), 0);
    assert_eq!(
        metrics.open_watches.get(),
        0,
        "the dead peer's watch is still streamed"
    );
    drop(response);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_mutation_body_gets_a_timeout_status_is_recorded_and_never_forwarded() {
    let cluster = cluster();
    let gateway = gateway_with("{body_read_timeout_seconds: 2}").await;
    let ns = namespace(&cluster, "pg-stalled-body").await;
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"stalled","namespace":"{ns}"}}}}"#
    );
    let mut tls = tls_from(&gateway, loopback(1), H1).await.unwrap();
    // Headers and half the body, then nothing: the probe's connection was still open
    // after 150 s.
    let head = format!(
        "POST /api/v1/namespaces/{ns}/configmaps HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        cluster.admin_token().unwrap(),
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), async {
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains(r#""code":408"#) {
            match tls.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .expect("pathgate answered within 15 s");
    let took = start.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""reason":"Timeout""#), "{answer}");
    assert!(
        answer.contains("server.body_read_timeout_seconds"),
        "{answer}"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(timeouts(&gateway, "body_read"), 1);

    let recorded = gateway.collected.all();
    let entry = recorded
        .iter()
        .find(|e| e.status_code == 408)
        .unwrap_or_else(|| panic!("no 408 recorded among {} exchanges", recorded.len()));
    assert!(entry.answered_by_pathgate);
    assert_eq!(
        entry.info.as_ref().unwrap().verb,
        pathgate::classify::Verb::Create
    );
    let listed = crate::support::admin_json(&["-n", &ns, "get", "configmaps", "-o", "json"]);
    assert!(
        !listed.to_string().contains("\"stalled\""),
        "the half-sent object reached the apiserver: {listed}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_past_its_connection_limit_is_refused_while_another_peer_connects() {
    let gateway = gateway_with(
        "{max_connections: 64, max_connections_per_peer: 4, header_read_timeout_seconds: 60}",
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tls_from(&gateway, loopback(1), H1)
                .await
                .expect("within the limit"),
        );
    }
    let refused = tls_from(&gateway, loopback(1), H1).await;
    assert!(
        refused.is_err(),
        "the fifth connection of one peer was admitted"
    );
    assert_eq!(refusals(&gateway, "per_peer"), 1);
    assert_eq!(
        get_from(&gateway, loopback(2), "/version").await,
        StatusCode::OK
    );

    // A connection that closes gives its place back.
    held.pop();
    let mut admitted = false;
    for _ in 0..50 {
        if tls_from(&gateway, loopback(1), H1).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "the freed place was never given back");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_from_many_peers_stops_at_the_global_limit() {
    let gateway = gateway_with(
        "{max_connections: 40, max_connections_per_peer: 20, tls_handshake_timeout_seconds: 60}",
    )
    .await;
    // 150 connections from three peers that never send a byte.
    let mut flood = Vec::new();
    for i in 0..150u8 {
        flood.push(tcp_from(loopback(10 + i % 3), addr_of(&gateway)).await);
    }
    let metrics = &gateway.running.as_ref().unwrap().metrics;
    until(Duration::from_secs(10), "110 of 150 refused", || {
        refusals(&gateway, "per_peer") + refusals(&gateway, "global") == 110
    })
    .await;
    assert_eq!(metrics.open_connections.get(), 40);
    assert!(
        refusals(&gateway, "global") >= 1,
        "no connection was refused by the global limit"
    );
    drop(flood);
    // Once the flood is gone, everyone is served again.
    until(Duration::from_secs(10), "the flood's places freed", || {
        metrics.open_connections.get() == 0
    })
    .await;
    assert_eq!(
        get_from(&gateway, loopback(1), "/version").await,
        StatusCode::OK
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_tls_connections_from_one_client_leaves_kubectl_served() {
    let cluster = cluster();
    let gateway = gateway_with(
        "{max_connections: 400, max_connections_per_peer: 100, header_read_timeout_seconds: 60}",
    )
    .await;
    // The probe's attack at a modest scale: 300 idle TLS connections from one peer.
    let mut flood = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        match tls_from(&gateway, loopback(7), H1).await {
            Ok(tls) => flood.push(tls),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(flood.len(), 100);
    assert_eq!(refused, 200);
    let kubeconfig =
        gateway.kubeconfig_with_token("admin", Some(&cluster.admin_token().unwrap()), None);
    let start = Instant::now();
    let out = ok(&kubectl(&cluster, &kubeconfig, &["get", "namespaces", "-o", "name"]).await);
    assert!(out.contains("namespace/default"), "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    drop(flood);
    gateway.stop().await;
}

/// Waits (without blocking the runtime pathgate runs on) until `check` holds.
async fn until(limit: Duration, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `count` watches through pathgate over one HTTP/2 connection, as an informer-heavy
/// client does; returns the tasks holding them.
async fn open_watches(
    gateway: &Gateway,
    ns: &str,
    count: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let client = gateway.client();
    let mut tasks = Vec::new();
    for i in 0..count {
        let client = client.clone();
        let request = admin_get(&format!(
            "{}/api/v1/namespaces/{ns}/configmaps?watch=1&labelSelector=watch%3D{i}",
            gateway.url
        ));
        tasks.push(tokio::spawn(async move {
            let response = client.request(request).await.expect("watch sent");
            let mut body = response.into_body();
            while let Some(Ok(_)) = body.frame().await {}
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_and_fifty_watches_do_not_starve_another_clients_get() {
    let cluster = cluster();
    let gateway = gateway_with("{}").await;
    let ns = namespace(&cluster, "pg-watch-hol").await;
    let metrics = gateway.running.as_ref().unwrap().metrics.clone();
    let watches = open_watches(&gateway, &ns, 150).await;
    // Wait (bounded) until the apiserver has answered every watch.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metrics.open_watches.get() < 150 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open = metrics.open_watches.get();

    let other = crate::gateway::https_client(&gateway.ca);
    let start = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        send(
            &other,
            admin_get(&format!(
                "{}/api/v1/namespaces/{ns}/configmaps",
                gateway.url
            )),
        ),
    )
    .await;
    let waited = start.elapsed();
    eprintln!("150 watches: {open} open upstream; another client's GET took {waited:?}");
    let (status, _, _) =
        answer.unwrap_or_else(|_| panic!("the GET waited over 60 s ({open} watches open)"));
    assert_eq!(status, StatusCode::OK);
    assert!(waited < Duration::from_secs(5), "the GET waited {waited:?}");
    assert_eq!(open, 150, "watches starved each other");
    // They share HTTP/2 lanes of their own, 64 streams each: 3 upstream connections, not 150.
    let upstream = &gateway.running.as_ref().unwrap().upstream;
    assert_eq!(upstream.lane_counts(), (150, 3));
    for watch in watches {
        watch.abort();
    }
    gateway.stop().await;
}

#[test]
fn a_limit_that_would_lock_everyone_out_is_refused_at_start_naming_the_file_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pathgate.yaml");
    std::fs::write(&config, "server:\n  max_connections_per_peer: 0\n").unwrap();
    let kubeconfig = cluster().dir.admin_kubeconfig();
    let serve = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pathgate"))
            .arg("serve")
            .arg("--upstream-kubeconfig")
            .arg(&kubeconfig)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "pathgate started with {args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = serve(&["--config", config.to_str().unwrap()]);
    assert!(
        stderr.contains(
            "pathgate.yaml: server.max_connections_per_peer: 0 is out of range; use 1 to 1000000"
        ),
        "{stderr}"
    );
    let stderr = serve(&["--idle-timeout-seconds", "0"]);
    assert!(
        stderr.contains("--idle-timeout-seconds: 0 is out of range; use 1 to 86400"),
        "{stderr}"
    );
    let stderr = serve(&["--http2-max-concurrent-streams", "4"]);
    assert!(
        stderr.contains("--http2-max-concurrent-streams: 4 is out of range; use 16 to 10000"),
        "{stderr}"
    );
}
