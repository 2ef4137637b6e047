//! The proxy: accept TLS connections, gate each request, forward it, stream the answer.
//!
//! Owns: the server loop ([`serve`]) and graceful drain, client connections'
//! admission, timeouts and limits (`connections`), and the request path:
//!
//! - `handler`: the phases of one request, in order (its module docs are the table of
//!   contents); `error`: every way it ends early, mapped once to a `Status`.
//! - `identity`: who the client is; `exchange`: the record the phases fill in.
//! - `gate`: the [`Gate`] the path asks, and [`PolicyGate`]; `record`: the [`Recorder`]
//!   finished exchanges go to, and the ledger entry they become.
//! - `forward`: the upstream request; `respond`: the answer (upgrade relay, buffered
//!   mutation answer, stream); `body`, `headers`: their mechanics.
//! - `images`: the pre- and post-images of forwarded mutations, written beside the
//!   upstream request and the outcome's fsync.
//! - `admin`: the admin listener.
//!
//! Does not own: what a request means (classify), what is allowed (policy), or how it is
//! stored (ledger).

mod admin;
mod body;
mod connections;
mod error;
mod exchange;
mod forward;
mod gate;
mod handler;
mod headers;
mod identity;
mod images;
mod record;
mod respond;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admin::serve_admin;
pub use body::{StreamEnd, StreamStats};
use connections::{AcceptBackoff, Admission, ConnectionContext};
pub use error::PathError;
pub use exchange::Exchange;
pub use gate::{
    rewrite_delete_body, rewrite_query, AllowAll, Gate, GateOutcome, GateRequest, PolicyGate,
    PreImage, Rehearsed, CONFIRM_HEADER,
};
pub use identity::{ClientIdentity, ConnectionInfo};
pub use images::RehearsedImages;
pub use record::{entry_of, LedgerRecorder, LogRecorder, Recorder, Recording};

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
    /// Client-connection timeouts and limits (`server.*_timeout_seconds`,
    /// `server.max_connections*`).
    pub connections: crate::config::ConnectionSettings,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            auth: AuthMode::Passthrough,
            max_body_bytes: crate::config::defaults::MAX_BODY_BYTES as usize,
            default_session: None,
            response_header_timeout: Duration::from_secs(70),
            client_tokens: Vec::new(),
            connections: crate::config::ConnectionSettings::default(),
        }
    }
}

/// Everything the request path needs, passed as separate handles (no god struct).
#[derive(Clone)]
pub struct Proxy {
    pub settings: Arc<ProxySettings>,
    pub upstream: Arc<Upstream>,
    pub metrics: Metrics,
    pub gate: Arc<dyn Gate>,
    pub recorder: Arc<dyn Recorder>,
    /// Cancelled when pathgate drains: watches end cleanly, new requests are refused.
    pub draining: CancellationToken,
    /// Requests being served, each in a task of its own: they outlive a client that went
    /// away (its mutation is still answered and recorded), and a drain waits for them.
    pub in_flight: TaskTracker,
    /// The pre-image store (`<ledger.dir>/images`); `None` keeps no images.
    pub images: Option<Arc<crate::ledger::images::ImageStore>>,
    /// The pre-images of the sessions' dry runs, for the same requests sent for real.
    pub rehearsed: Arc<RehearsedImages>,
}

/// Serves TLS connections from `listener` until `shutdown` resolves, then drains:
/// in-flight requests may finish within `drain_timeout`, watches are ended cleanly.
/// Connections past `settings.connections`' limits are closed at accept (counted).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    proxy: Proxy,
    shutdown: impl std::future::Future<Output = ()>,
    drain_timeout: Duration,
) {
    let settings = proxy.settings.connections;
    let admission = Admission::new(settings.max_connections, settings.max_connections_per_peer);
    // One allocation shared by every request: cloning `Proxy` itself would bump every
    // metric handle's reference count per request.
    let context = Arc::new(ConnectionContext {
        acceptor: TlsAcceptor::from(tls),
        builder: Arc::new(connections::http_builder(&settings)),
        proxy: Arc::new(proxy),
        settings,
    });
    let metrics = context.proxy.metrics.clone();
    let tracker = TaskTracker::new();
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    backoff.succeeded();
                    pair
                }
                Err(error) => {
                    let wait = backoff.failed(&error, &metrics);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = match admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(limit) => {
                // Closed before the TLS handshake: refusing costs the attacker's
                // connections nothing of ours beyond the accept.
                metrics.connection_refused(limit);
                tracing::debug!(%peer, limit = limit.as_str(), "connection refused by a limit");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(connections::serve_connection(
            stream,
            peer,
            admitted,
            Arc::clone(&context),
        ));
    }
    drop(listener);
    tracing::info!("draining: no new connections; ending watches");
    context.proxy.draining.cancel();
    // Connections first, then the requests whose clients left before their answer.
    let drained = async {
        tracker.close();
        tracker.wait().await;
        context.proxy.in_flight.close();
        context.proxy.in_flight.wait().await;
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
) -> ConnectionInfo {
    let (_, session) = tls_stream.get_ref();
    let certificate = session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(crate::tls::identity_of);
    ConnectionInfo::new(peer, certificate)
}
