//! Watches and followed logs upstream: HTTP/2 streams on connections of their own
//! ([`Lanes`]), a bounded number of streams on each.
//!
//! Why: a watch held its own HTTP/1.1 connection to the apiserver, so 10,000 watches
//! through one pathgate were 10,000 upstream TLS connections (57 KiB and one descriptor
//! each: the descriptor budget of `server.max_connections` ran out before the
//! 10,000th). A watch is a plain streaming GET, so it can share an HTTP/2 connection with
//! other watches, never with short requests (whose streams it would hold: see
//! [`super::streams`]). Each lane is one HTTP/2 connection carrying at most
//! [`STREAMS_PER_LANE`] streams, below the 100 the apiserver allows per connection, so
//! a new stream never queues behind the apiserver's limit: past it, a new lane opens.
//!
//! Opening: the first stream of a lane opens its connection alone, the lane's other
//! streams wait for its answer and then share the connection. Otherwise a burst of
//! watches on a lane not yet connected would each open a connection (the pool knows a
//! connection is HTTP/2 only once it is negotiated), leaving the apiserver waiting for
//! prefaces that never come.
//!
//! Flow control: a watch whose client reads slowly keeps its data in its stream's
//! receive window. Each lane's connection window holds every stream's full window, so
//! stalled streams never exhaust it and never stall their lane's other watches.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::streams::LongLivedLimit;
use crate::status::Body;

/// Streams one lane carries at most: below the apiserver's 100 per connection.
pub const STREAMS_PER_LANE: usize = 64;

/// A stream's receive window (per watch): enough for a burst of events.
const STREAM_WINDOW: u32 = 1 << 20;

type LaneClient = Client<HttpsConnector<HttpConnector>, Body>;

/// One HTTP/2 connection (a client with a pool of its own) and its open streams.
struct Lane {
    client: LaneClient,
    open: Arc<AtomicUsize>,
    /// The lane's connection answered a request (later streams share it at once).
    connected: AtomicBool,
    /// Held by the stream that opens the lane's connection.
    opening: tokio::sync::Mutex<()>,
}

/// A request sent on a lane: the apiserver's answer head.
pub type UpstreamAnswer = Pin<
    Box<
        dyn Future<Output = Result<http::Response<Incoming>, hyper_util::client::legacy::Error>>
            + Send,
    >,
>;

/// The lanes, opened as streams need them, at most `max_streams` streams in all.
pub struct Lanes {
    connector: HttpsConnector<HttpConnector>,
    lanes: Mutex<Vec<Arc<Lane>>>,
    max_streams: usize,
}

/// A stream's place on its lane, held until the stream ends (dropped with the request's
/// record, when the relay of its answer ends).
#[derive(Debug, Clone)]
pub struct StreamSlot(#[allow(dead_code)] Arc<SlotGuard>);

#[derive(Debug)]
struct SlotGuard(Arc<AtomicUsize>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lanes {
    /// Lanes over `connector` (HTTP/2 by ALPN), for at most `max_streams` open streams.
    pub fn new(connector: HttpsConnector<HttpConnector>, max_streams: usize) -> Self {
        Lanes {
            connector,
            lanes: Mutex::new(Vec::new()),
            max_streams,
        }
    }

    /// Sends `request` on a lane with room for one more stream; returns the answer and
    /// the slot the stream holds until it ends.
    pub fn send(
        &self,
        request: http::Request<Body>,
    ) -> Result<(UpstreamAnswer, StreamSlot), LongLivedLimit> {
        let (lane, slot) = self.acquire()?;
        let sending = async move {
            if !lane.connected.load(Ordering::Acquire) {
                let _opening = lane.opening.lock().await;
                if !lane.connected.load(Ordering::Acquire) {
                    let answer = lane.client.request(request).await;
                    lane.connected.store(answer.is_ok(), Ordering::Release);
                    return answer;
                }
            }
            lane.client.request(request).await
        };
        Ok((Box::pin(sending), slot))
    }

    /// A lane with room for one more stream, and the slot the stream holds: the first
    /// lane with room, or a new one.
    fn acquire(&self) -> Result<(Arc<Lane>, StreamSlot), LongLivedLimit> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let open: usize = lanes.iter().map(|l| l.open.load(Ordering::Acquire)).sum();
        if open >= self.max_streams {
            return Err(LongLivedLimit(self.max_streams));
        }
        let index = match lanes
            .iter()
            .position(|l| l.open.load(Ordering::Acquire) < STREAMS_PER_LANE)
        {
            Some(index) => index,
            None => {
                lanes.push(Arc::new(Lane {
                    client: lane_client(self.connector.clone()),
                    open: Arc::new(AtomicUsize::new(0)),
                    connected: AtomicBool::new(false),
                    opening: tokio::sync::Mutex::new(()),
                }));
                lanes.len() - 1
            }
        };
        let lane = Arc::clone(&lanes[index]);
        lane.open.fetch_add(1, Ordering::AcqRel);
        let slot = StreamSlot(Arc::new(SlotGuard(Arc::clone(&lane.open))));
        Ok((lane, slot))
    }

    /// Streams open on every lane, and the lanes.
    pub fn counts(&self) -> (usize, usize) {
        let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let open = lanes.iter().map(|l| l.open.load(Ordering::Acquire)).sum();
        (open, lanes.len())
    }
}

/// One lane's client: its own pool, so its own connection; HTTP/2 only once negotiated,
/// with a connection window that holds every stream's full window.
fn lane_client(connector: HttpsConnector<HttpConnector>) -> LaneClient {
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(STREAM_WINDOW * STREAMS_PER_LANE as u32)
        .http2_keep_alive_interval(Some(Duration::from_secs(30)))
        .http2_keep_alive_while_idle(true)
        .build(connector)
}
