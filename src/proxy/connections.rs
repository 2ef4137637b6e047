//! Client connections, from `accept` to close: admission under the global and per-peer
//! limits, the TLS handshake deadline, the HTTP/1 and HTTP/2 settings (header read
//! timeout, keep-alive PINGs, concurrent streams), the deadline for a connection's first
//! request and for idleness between requests, and the graceful close on drain.
//!
//! What is *not* timed here: a request in flight. A watch, a `logs -f` or an exec stream is
//! a request in flight for as long as it lasts, so it keeps its connection open; only the
//! time before and between requests is bounded (a stalled request body is bounded by the
//! handler, `server.body_read_timeout_seconds`).
//!
//! Owns: [`Admission`], [`serve_connection`], the accept back-off. Does not own: what a
//! request does (`handler`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::{handler, Proxy};
use crate::config::ConnectionSettings;
use crate::metrics::{ConnectionLimit, ConnectionTimeout, Metrics};
use crate::status::Body;

/// How long a connection closed for idleness may take to say goodbye (HTTP/2 GOAWAY)
/// before it is dropped: nothing is in flight on it, so nothing is lost.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Counts open connections, in total and per peer IP address, against the limits.
pub struct Admission {
    max_total: usize,
    max_per_peer: usize,
    open: Mutex<OpenConnections>,
}

#[derive(Default)]
struct OpenConnections {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// One admitted connection; counted out when dropped.
pub struct Admitted {
    admission: Arc<Admission>,
    peer: IpAddr,
}

impl Admission {
    pub fn new(max_total: usize, max_per_peer: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_total,
            max_per_peer,
            open: Mutex::new(OpenConnections::default()),
        })
    }

    /// Admits a connection from `peer`, or says which limit it would break. An IPv4 peer
    /// seen through an IPv6 socket counts as the IPv4 address.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, ConnectionLimit> {
        let peer = peer.to_canonical();
        let mut open = self.open.lock().expect("admission lock is never poisoned");
        if open.total >= self.max_total {
            return Err(ConnectionLimit::Global);
        }
        let from_peer = open.per_peer.entry(peer).or_default();
        if *from_peer >= self.max_per_peer {
            return Err(ConnectionLimit::PerPeer);
        }
        *from_peer += 1;
        open.total += 1;
        Ok(Admitted {
            admission: Arc::clone(self),
            peer,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .expect("admission lock is never poisoned");
        open.total -= 1;
        if let Some(count) = open.per_peer.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.per_peer.remove(&self.peer);
            }
        }
    }
}

/// The HTTP/1 + HTTP/2 server settings of every client connection.
pub fn http_builder(settings: &ConnectionSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.http2_keepalive_interval)
        .keep_alive_timeout(settings.http2_keepalive_timeout)
        .max_concurrent_streams(settings.http2_max_concurrent_streams);
    builder
}

/// Whether an `accept` error means the process is out of a resource (descriptors,
/// buffers, memory): retrying at once would spin until something closes.
fn is_exhaustion(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS | nix::libc::ENOMEM)
    )
}

/// Back-off between failed `accept`s: doubles from 10 ms up to 1 s while the process is
/// out of descriptors, so the loop neither spins nor stops (connections already open keep
/// being served and will free descriptors).
#[derive(Default)]
pub struct AcceptBackoff {
    failures: u64,
}

impl AcceptBackoff {
    /// Counts a failure and says how long to wait before the next `accept`.
    pub fn failed(&mut self, error: &std::io::Error, metrics: &Metrics) -> Duration {
        metrics.accept_errors.inc();
        self.failures += 1;
        if !is_exhaustion(error) {
            // ECONNABORTED and the like: one client's problem, not the listener's.
            tracing::debug!(%error, "accept failed");
            return Duration::ZERO;
        }
        if self.failures == 1 {
            tracing::warn!(%error, "accept failed; backing off until connections close (see server.max_connections)");
        }
        let exponent = (self.failures - 1).min(7) as u32;
        Duration::from_millis(10 * 2u64.pow(exponent)).min(Duration::from_secs(1))
    }

    /// Records a successful `accept`.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accept recovered");
            self.failures = 0;
        }
    }
}

/// Requests of one connection: how many are in flight, how many ever started, and when
/// the last one ended. The request path only counts and stamps; the idle timer reads these
/// when it wakes (see [`idle`]), so no request wakes it.
struct Activity {
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// When the connection became idle last: milliseconds since `opened`.
    idle_since_ms: AtomicU64,
    opened: tokio::time::Instant,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            opened: tokio::time::Instant::now(),
        }
    }

    fn idle_since(&self) -> tokio::time::Instant {
        self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }
}

/// A request in flight, from its headers until its response body is done or dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.started.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        // Stamped before the count drops, so a timer that sees the connection idle also
        // sees when it became so.
        let since = activity.opened.elapsed().as_millis() as u64;
        activity.idle_since_ms.store(since, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
pub struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Resolves when the connection has had no request in flight for too long: before its
/// first request, `header_read_timeout`; between requests, `idle_timeout`, counted from the
/// end of the last one. It wakes at most once per timeout while requests come and go (a
/// busy connection is looked at again a timeout later; an idle one at its deadline), so the
/// request path never has to wake it.
async fn idle(activity: &Activity, settings: &ConnectionSettings) -> ConnectionTimeout {
    // Never sleep past the shorter timeout: a first request may turn the header timeout
    // into the idle one, and a request in flight may end at any time.
    let step = settings.header_read_timeout.min(settings.idle_timeout);
    loop {
        let (limit, kind) = if activity.started.load(Ordering::Relaxed) == 0 {
            (settings.header_read_timeout, ConnectionTimeout::HeaderRead)
        } else {
            (settings.idle_timeout, ConnectionTimeout::Idle)
        };
        if activity.in_flight.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(step).await;
            continue;
        }
        let deadline = activity.idle_since() + limit;
        let now = tokio::time::Instant::now();
        if now >= deadline {
            // Idle throughout, unless a request came and went since the stamp was read.
            if activity.in_flight.load(Ordering::Acquire) == 0
                && activity.idle_since() + limit <= now
            {
                return kind;
            }
            continue;
        }
        tokio::time::sleep_until(deadline.min(now + step)).await;
    }
}

/// What ended a connection with an error, when it was a timeout hyper enforced: an
/// unanswered HTTP/2 PING, or else (hyper's only other timeout on a server connection)
/// the HTTP/1 header read timeout.
fn timeout_of(error: &(dyn std::error::Error + 'static)) -> Option<ConnectionTimeout> {
    let chain = || std::iter::successors(Some(error), |e| e.source());
    // hyper has no predicate for an unanswered PING (its error also reads as a timeout
    // through `is_timeout`); the error says this.
    if chain().any(|e| e.to_string() == "keep-alive timed out") {
        return Some(ConnectionTimeout::Http2Keepalive);
    }
    chain()
        .filter_map(|e| e.downcast_ref::<hyper::Error>())
        .any(hyper::Error::is_timeout)
        .then_some(ConnectionTimeout::HeaderRead)
}

/// Everything one connection needs besides its socket.
pub struct ConnectionContext {
    pub acceptor: TlsAcceptor,
    pub builder: Arc<auto::Builder<TokioExecutor>>,
    pub proxy: Arc<Proxy>,
    pub settings: ConnectionSettings,
}

/// Serves one admitted TCP connection until it closes: TLS handshake (bounded), then
/// HTTP/1 or HTTP/2 with upgrades, closed gracefully when idle for too long or when
/// pathgate drains.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    context: Arc<ConnectionContext>,
) {
    let _admitted = admitted;
    let metrics = &context.proxy.metrics;
    let _open = metrics.open_connection();
    let settings = &context.settings;
    let tls_stream = match tokio::time::timeout(
        settings.tls_handshake_timeout,
        context.acceptor.accept(stream),
    )
    .await
    {
        Ok(Ok(tls_stream)) => tls_stream,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics.connection_timeout(ConnectionTimeout::TlsHandshake);
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let identity = Arc::new(super::connection_identity(&tls_stream, peer));
    let activity = Arc::new(Activity::new());
    let service = {
        let proxy = Arc::clone(&context.proxy);
        let activity = Arc::clone(&activity);
        service_fn(move |request| {
            let in_flight = InFlight::start(&activity);
            let proxy = Arc::clone(&proxy);
            let identity = Arc::clone(&identity);
            async move {
                let response = handler::handle(proxy, identity, request).await;
                Ok::<_, std::convert::Infallible>(response.map(|body| TrackedBody {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let connection = context
        .builder
        .serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
    tokio::pin!(connection);
    let draining = context.proxy.draining.clone();
    let mut closing = false;
    // A timeout of ours is counted once, even if hyper's own timer then ends the
    // connection with an error too.
    let mut counted = false;
    let mut give_up: Option<tokio::time::Instant> = None;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = draining.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            kind = idle(&activity, settings), if !closing => {
                closing = true;
                counted = true;
                metrics.connection_timeout(kind);
                tracing::debug!(%peer, kind = kind.as_str(), "closing an idle connection");
                connection.as_mut().graceful_shutdown();
                give_up = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
            }
            () = tokio::time::sleep_until(give_up.unwrap_or_else(tokio::time::Instant::now)),
                if give_up.is_some() => {
                tracing::debug!(%peer, "dropping an idle connection that did not close");
                return;
            }
        }
    };
    if let Err(error) = result {
        if let Some(kind) = timeout_of(&*error).filter(|_| !counted) {
            metrics.connection_timeout(kind);
        }
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_backs_off_doubling_to_a_second_and_recovers() {
        let metrics = Metrics::new();
        let mut backoff = AcceptBackoff::default();
        let emfile = std::io::Error::from_raw_os_error(nix::libc::EMFILE);
        let waits: Vec<u64> = (0..10)
            .map(|_| backoff.failed(&emfile, &metrics).as_millis() as u64)
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile, &metrics), Duration::from_millis(10));
        // One client's aborted connection is not the listener's problem: no wait.
        let aborted = std::io::Error::from_raw_os_error(nix::libc::ECONNABORTED);
        backoff.succeeded();
        assert_eq!(backoff.failed(&aborted, &metrics), Duration::ZERO);
        assert_eq!(metrics.accept_errors.get(), 12);
    }

    #[test]
    fn admission_counts_each_peer_and_everyone_and_gives_places_back() {
        let admission = Admission::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(mapped).unwrap();
        assert_eq!(admission.admit(a).err(), Some(ConnectionLimit::PerPeer));
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).err(), Some(ConnectionLimit::Global));
        drop(first);
        let _again = admission.admit(a).unwrap();
        let open = admission.open.lock().unwrap();
        assert_eq!(open.total, 3);
        assert_eq!(open.per_peer.len(), 2);
    }
}
