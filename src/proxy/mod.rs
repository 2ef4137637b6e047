//! The proxy: accept TLS connections, gate each request, forward it, stream the answer.
//!
//! Owns: the server loop ([`serve`]) and graceful drain, the per-request pipeline in
//! `handler` (session, classification, auth mode, bounded body, gate, stamping,
//! forwarding, upgrades), header hygiene, and the admin listener. Does not own: what a
//! request means (classify), what is allowed (policy), or how it is recorded (ledger).

mod admin;
mod body;
mod gate;
mod handler;
mod headers;
mod record;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admin::serve_admin;
pub use body::{StreamEnd, StreamStats};
pub use gate::{rewrite_delete_body, rewrite_query, AllowAll, PolicyGate, CONFIRM_HEADER};
pub use handler::{
    ClientIdentity, ConnectionInfo, Exchange, Gate, GateOutcome, GateRequest, Recorder,
};
pub use record::{entry_of, LedgerRecorder, LogRecorder};

use crate::metrics::Metrics;
use crate::upstream::Upstream;

/// How pathgate authenticates upstream (see DESIGN.md, "Auth modes"); the same type as
/// the config file's `server.auth`.
pub use crate::config::AuthMode;

impl std::str::FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "passthrough" => Ok(Self::Passthrough),
            "sidecar" => Ok(Self::Sidecar),
            "impersonate" => Ok(Self::Impersonate),
            other => Err(format!(
                "unknown auth mode {other:?}: use passthrough, sidecar or impersonate"
            )),
        }
    }
}

/// Settings of the request path, frozen at start.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub auth: AuthMode,
    /// Largest mutation body buffered (the apiserver's own limit is 3 MiB).
    pub max_body_bytes: usize,
    /// Session of requests that carry neither a `/s/<id>` prefix nor the header.
    pub default_session: Option<String>,
    /// How long to wait for the apiserver's response headers.
    pub response_header_timeout: Duration,
    /// Bearer tokens accepted from clients in sidecar mode (empty: none configured).
    pub client_tokens: Vec<String>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            auth: AuthMode::Passthrough,
            max_body_bytes: 3 * 1024 * 1024,
            default_session: None,
            response_header_timeout: Duration::from_secs(70),
            client_tokens: Vec::new(),
        }
    }
}

/// Everything the request path needs, passed as separate handles (no god struct).
#[derive(Clone)]
pub struct Proxy {
    pub settings: Arc<ProxySettings>,
    pub upstream: Arc<Upstream>,
    pub metrics: Metrics,
    pub gate: Arc<dyn handler::Gate>,
    pub recorder: Arc<dyn Recorder>,
    /// Cancelled when pathgate drains: watches end cleanly, new requests are refused.
    pub draining: CancellationToken,
    /// Requests being served, each in a task of its own: they outlive a client that went
    /// away (its mutation is still answered and recorded), and a drain waits for them.
    pub in_flight: TaskTracker,
}

/// Serves TLS connections from `listener` until `shutdown` resolves, then drains:
/// in-flight requests may finish within `drain_timeout`, watches are ended cleanly.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    proxy: Proxy,
    shutdown: impl std::future::Future<Output = ()>,
    drain_timeout: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    // One allocation shared by every request: cloning `Proxy` itself would bump every
    // metric handle's reference count per request.
    let proxy = Arc::new(proxy);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let proxy = Arc::clone(&proxy);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls_stream = match tokio::time::timeout(
                Duration::from_secs(10),
                acceptor.accept(stream),
            )
            .await
            {
                Ok(Ok(tls_stream)) => tls_stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let identity = connection_identity(&tls_stream, peer);
            let identity = Arc::new(identity);
            let service = service_fn(move |request| {
                let proxy = Arc::clone(&proxy);
                let identity = identity.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        handler::handle(proxy, identity, request).await,
                    )
                }
            });
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(tls_stream), service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("draining: no new connections; ending watches");
    proxy.draining.cancel();
    // Connections first, then the requests whose clients left before their answer.
    let drained = async {
        graceful.shutdown().await;
        proxy.in_flight.close();
        proxy.in_flight.wait().await;
    };
    match tokio::time::timeout(drain_timeout, drained).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            seconds = drain_timeout.as_secs(),
            "drain timeout reached; closing remaining connections"
        ),
    }
}

fn connection_identity(
    tls_stream: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
) -> handler::ConnectionInfo {
    let (_, session) = tls_stream.get_ref();
    let certificate = session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(crate::tls::identity_of);
    handler::ConnectionInfo::new(peer, certificate)
}
