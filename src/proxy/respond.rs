//! Answering the client: the apiserver's answer relayed (an upgrade's two directions, a
//! mutation's answer read whole and recorded durably before the client sees it, a read or
//! a watch streamed frame by frame), or pathgate's own `Status` ([`refuse`]).
//!
//! Owns: when each answer is recorded, and what the record says about how it ended. Does
//! not own: the upstream request (`forward`) or the ledger schema (`record`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::body::{read_answer, Answer, OnEnd, Prefixed, Relay, StreamEnd, StreamStats, Tail};
use super::error::PathError;
use super::exchange::Exchange;
use super::{headers, images, Proxy};
use crate::classify::Verb;
use crate::policy::EffectBasis;
use crate::status::{full_body, Body, ErrorKind, Side};

/// Whether the client still waits for the answer. hyper drops a request's service future
/// when the client resets its connection or HTTP/2 stream; a request with a body runs in a
/// task of its own (see `handler::handle`), which learns of it here. A request served
/// inline ends with its client.
#[derive(Clone, Copy)]
pub(super) struct ClientLink<'a>(Option<&'a oneshot::Sender<Response<Body>>>);

impl<'a> ClientLink<'a> {
    /// A request served inline, in the client's own service future.
    pub const INLINE: ClientLink<'static> = ClientLink(None);

    /// A request served in a task of its own, answering through `reply`.
    pub fn waiting(reply: &'a oneshot::Sender<Response<Body>>) -> Self {
        ClientLink(Some(reply))
    }

    /// How an answer handed over now ends: complete, unless the client already left.
    pub fn end(self) -> StreamEnd {
        if self.0.is_some_and(oneshot::Sender::is_closed) {
            StreamEnd::ClientGone
        } else {
            StreamEnd::Complete
        }
    }
}

/// `error.message` of a request whose client left before it was forwarded.
const NOT_FORWARDED: &str = "the client went away before the request was forwarded; it was not";

/// The most of an answer pathgate reads to inspect it (a mutation's object, a `Status`);
/// a larger answer is relayed unread. At least `max_body_bytes`.
const ANSWER_INSPECTION_BYTES: usize = 16 * 1024 * 1024;

/// pathgate answers itself with the error's `Status`, and records it (durably for a
/// mutation: a refused mutation is part of the path an autopsy reads).
pub(super) async fn refuse(
    proxy: &Proxy,
    mut exchange: Exchange,
    error: &PathError,
    clock: Instant,
    client: ClientLink<'_>,
) -> Response<Body> {
    let status = error.status();
    // Flags of other rules still reach the agent on a refusal.
    let warnings = exchange.warnings.clone();
    exchange.answered_by_pathgate = true;
    exchange.status_code = status.code.as_u16();
    exchange.status_reason = Some(status.reason.to_string());
    exchange.error = Some((status.side, status.kind, status.message.clone()));
    exchange.stream_end = Some(client.end());
    exchange.duration = clock.elapsed();
    let is_mutation = exchange.info.as_ref().is_some_and(|i| i.is_mutation());
    if is_mutation {
        if let Err(error) = proxy.recorder.record_durable(exchange).await {
            tracing::error!(%error, "could not record a refused mutation durably");
        }
    } else {
        proxy.recorder.record(exchange);
    }
    let mut response = status.into_response();
    append_warnings(response.headers_mut(), &warnings);
    response
}

/// A request whose client left before it was forwarded is not (past this point it is
/// carried through); nothing has happened, and the record says so.
pub(super) async fn not_forwarded(
    proxy: &Proxy,
    exchange: &mut Exchange,
    clock: Instant,
) -> Response<Body> {
    exchange.error = Some((Side::Client, ErrorKind::Reset, NOT_FORWARDED.to_string()));
    exchange.duration = clock.elapsed();
    let is_mutation = exchange.info.as_ref().is_some_and(|i| i.is_mutation());
    record_answer(proxy, exchange, is_mutation, &mut HeaderMap::new()).await;
    Response::new(full_body(Bytes::new()))
}

/// What a mutation's answer is measured and imaged against, known before it arrived.
pub(super) struct Before {
    /// What a patch's or update's effect is measured against.
    pub effect: EffectBasis,
    /// The pre-image being written, and the store the post-image goes to.
    pub images: Option<images::Pending>,
    /// A dry run's pre-image (the object its effect is measured against), to be kept for
    /// the same request sent for real.
    pub rehearsal: Option<Bytes>,
}

/// The apiserver's answer, as the gate learns it and the client receives it.
pub(super) async fn answer(
    proxy: &Proxy,
    mut upstream: Response<Incoming>,
    client_upgrade: Option<OnUpgrade>,
    before: Before,
    exchange: &mut Exchange,
    clock: Instant,
    client: ClientLink<'_>,
) -> Result<Response<Body>, PathError> {
    let late_warnings = proxy.gate.observe_response(exchange);
    exchange.warnings.extend(late_warnings);
    if upstream.status() == StatusCode::SWITCHING_PROTOCOLS {
        let client_upgrade = client_upgrade.ok_or(PathError::UnrequestedUpgrade)?;
        let upstream_upgrade = hyper::upgrade::on(&mut upstream);
        return Ok(relay_upgrade(
            proxy,
            upstream,
            client_upgrade,
            upstream_upgrade,
            exchange,
            clock,
        ));
    }
    let (mut parts, body) = upstream.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    append_warnings(&mut parts.headers, &exchange.warnings);
    let info = exchange
        .info
        .as_ref()
        .expect("a forwarded request was classified");
    let is_mutation = info.is_mutation();
    let is_watch = info.verb == Verb::Watch;
    if is_mutation || parts.status.is_client_error() && !is_watch {
        let read = Read {
            is_mutation,
            before,
            clock,
            client,
        };
        return Ok(buffered(proxy, parts, body, read, exchange).await);
    }
    // Reads and watches stream, frame by frame.
    let body = Prefixed::new(Bytes::new(), Tail::Rest(body));
    Ok(stream_answer(
        proxy, exchange, parts, body, is_watch, false, clock,
    ))
}

/// Relays both directions once both sides have switched protocols; recorded when the
/// relay ends.
fn relay_upgrade(
    proxy: &Proxy,
    upstream: Response<Incoming>,
    client_upgrade: OnUpgrade,
    upstream_upgrade: OnUpgrade,
    exchange: &mut Exchange,
    clock: Instant,
) -> Response<Body> {
    exchange.upgraded = true;
    exchange.duration = clock.elapsed();
    let recorder = Arc::clone(&proxy.recorder);
    let mut record = exchange.clone();
    let open = proxy.metrics.open_upgrade();
    tokio::spawn(async move {
        let _open = open;
        let relay = async {
            let (client_io, upstream_io) =
                tokio::try_join!(client_upgrade, upstream_upgrade).map_err(|e| e.to_string())?;
            Ok::<_, String>(
                super::body::relay_upgraded(TokioIo::new(client_io), TokioIo::new(upstream_io))
                    .await,
            )
        };
        match relay.await {
            Ok(relayed) => {
                record.bytes_in += relayed.to_upstream;
                record.bytes_out = relayed.to_client;
                record.stream_end = Some(relayed.end);
                record.error = relayed.error.map(|e| (Side::Upstream, ErrorKind::Reset, e));
            }
            Err(error) => {
                record.error = Some((Side::Upstream, ErrorKind::Reset, error));
                record.stream_end = Some(StreamEnd::UpstreamError);
            }
        }
        recorder.record(record);
    });
    let mut response = Response::new(full_body(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let mut response_headers = upstream.headers().clone();
    let protocol = headers::strip_hop_by_hop(&mut response_headers);
    *response.headers_mut() = response_headers;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Some(protocol) = protocol {
        response.headers_mut().insert(header::UPGRADE, protocol);
    }
    response
}

/// What reading an answer whole needs to know besides the answer.
struct Read<'a> {
    is_mutation: bool,
    before: Before,
    clock: Instant,
    client: ClientLink<'a>,
}

/// Mutation answers are single objects or Status bodies: read them (bounded) to learn
/// uid, resourceVersion and the Status reason, then make the record durable before the
/// client sees the answer. The bound limits what is inspected, never what is relayed: the
/// apiserver's answer reaches the client as it was sent.
async fn buffered(
    proxy: &Proxy,
    mut parts: http::response::Parts,
    body: Incoming,
    read: Read<'_>,
    exchange: &mut Exchange,
) -> Response<Body> {
    let bound = proxy.settings.max_body_bytes.max(ANSWER_INSPECTION_BYTES);
    match read_answer(body, bound).await {
        Answer::Whole(bytes) => {
            let post_image = inspect_object(&bytes, &parts.headers, exchange);
            let answered_object = post_image.is_some() && parts.status.is_success();
            let mut answered = images::Answered::default();
            let mut rehearsing = None;
            if let Some(after) = post_image.filter(|_| parts.status.is_success()) {
                let rehearsed = matches!(read.before.effect, EffectBasis::Rehearsed(_));
                exchange.effect_paths = read.before.effect.measure(&after);
                answered.confirms_rehearsal = rehearsed && exchange.effect_paths.is_some();
                if let Some(learned) = proxy.gate.observe_effect(exchange, &after) {
                    append_warnings(&mut parts.headers, std::slice::from_ref(&learned.warning));
                    let post_image = learned.post_image;
                    rehearsing = keep_rehearsal(proxy, exchange, read.before.rehearsal, post_image);
                }
            }
            let end = read.client.end();
            exchange.body_inspected = Some(true);
            exchange.stream_end = Some(end);
            // A client that left before the answer was ready received none of it.
            exchange.bytes_out = match end {
                StreamEnd::ClientGone => 0,
                _ => bytes.len() as u64,
            };
            exchange.duration = read.clock.elapsed();
            answered.object = answered_object.then(|| bytes.clone());
            let write = images::settle(read.before.images, exchange, answered).await;
            let recording = record_answer(proxy, exchange, read.is_mutation, &mut parts.headers);
            let recording = images::beside(recording, rehearsing);
            images::beside(recording, write).await;
            let mut response = Response::from_parts(parts, full_body(bytes));
            response.headers_mut().remove(header::CONTENT_LENGTH);
            response
        }
        Answer::Broken { read: got, error } => {
            exchange.body_inspected = Some(false);
            exchange.stream_end = Some(StreamEnd::UpstreamError);
            exchange.bytes_out = got.len() as u64;
            let message = format!(
                "the apiserver's answer broke off after {} bytes: {error}",
                got.len()
            );
            exchange.error = Some((Side::Upstream, ErrorKind::Reset, message));
            exchange.duration = read.clock.elapsed();
            images::settle(read.before.images, exchange, images::Answered::default()).await;
            record_answer(proxy, exchange, read.is_mutation, &mut parts.headers).await;
            let body = Prefixed::new(got, Tail::<Incoming>::Broken(Some(error)));
            Response::from_parts(parts, body.boxed())
        }
        Answer::Over { read: got, rest } => {
            exchange.body_inspected = Some(false);
            images::settle(read.before.images, exchange, images::Answered::default()).await;
            let body = Prefixed::new(got, Tail::Rest(rest));
            stream_answer(
                proxy,
                exchange,
                parts,
                body,
                false,
                read.is_mutation,
                read.clock,
            )
        }
    }
}

/// Writes a dry run's pre-image for the same request sent for real; without one (no
/// store, no object read) the session's older one for that request is forgotten, so
/// the real request reads the object itself.
fn keep_rehearsal(
    proxy: &Proxy,
    exchange: &Exchange,
    pre_image: Option<Bytes>,
    post_image: [u8; 32],
) -> Option<tokio::task::JoinHandle<()>> {
    let written = pre_image.and_then(|body| images::rehearse(proxy, exchange, body, post_image));
    if written.is_none() && proxy.images.is_some() {
        if let Some(fingerprint) = exchange.fingerprint {
            proxy.rehearsed.forget(&exchange.session, fingerprint);
        }
    }
    written
}

/// Records an answer pathgate read whole, before the client sees it: durably for a
/// mutation. The apiserver has acted: its answer goes back whatever the ledger says (a 503
/// here would invite a retry of a mutation that happened); a failure is logged, counted by
/// the ledger, and told to the agent in a `Warning`.
async fn record_answer(
    proxy: &Proxy,
    exchange: &mut Exchange,
    is_mutation: bool,
    headers: &mut HeaderMap,
) {
    let finished = exchange.take();
    if !is_mutation {
        proxy.gate.observe_end(&finished);
        proxy.recorder.record(finished);
        return;
    }
    let trace_id = finished.trace_id;
    if let Err(error) = proxy.recorder.record_durable(finished).await {
        tracing::error!(%trace_id, %error, "the outcome of a mutation could not be recorded durably");
        let warning = format!(
            "299 pathgate \"pathgate: the ledger could not record this mutation's outcome durably ({})\"",
            error.to_string().replace(['"', '\\'], "'")
        );
        if let Ok(value) = HeaderValue::from_str(&warning) {
            headers.append(header::WARNING, value);
        }
    }
}

/// Relays an answer frame by frame, recording it when the stream ends. With `durable` (a
/// mutation's answer too large to inspect) the record is made durable before the client
/// sees the body's end.
fn stream_answer(
    proxy: &Proxy,
    exchange: &mut Exchange,
    parts: http::response::Parts,
    body: Prefixed<Incoming>,
    is_watch: bool,
    durable: bool,
    clock: Instant,
) -> Response<Body> {
    use std::sync::atomic::Ordering;
    let stats = Arc::new(StreamStats::default());
    let recorder = Arc::clone(&proxy.recorder);
    let gate = Arc::clone(&proxy.gate);
    let in_flight = proxy.in_flight.clone();
    let mut record = exchange.take();
    let end_stats = stats.clone();
    let open = is_watch.then(|| proxy.metrics.open_watch());
    let on_end: OnEnd = Box::new(move |end: StreamEnd| {
        drop(open);
        record.bytes_out = end_stats.bytes.load(Ordering::Relaxed);
        if is_watch {
            record.watch_events = Some(end_stats.events.load(Ordering::Relaxed));
        }
        record.stream_end = Some(end);
        record.duration = clock.elapsed();
        gate.observe_end(&record);
        if !durable {
            recorder.record(record);
            return None;
        }
        let trace_id = record.trace_id;
        let recording = recorder.record_durable(record);
        // Also called from a drop (the client left), so the wait is a task of its own.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(in_flight.spawn_on(
            async move {
                if let Err(error) = recording.await {
                    tracing::error!(%trace_id, %error, "the outcome of a mutation could not be recorded durably");
                }
            },
            &runtime,
        ))
    });
    let drain = is_watch.then(|| proxy.draining.clone());
    let relay = Relay::new(body, stats, is_watch, drain, on_end);
    Response::from_parts(parts, relay.boxed())
}

/// Reads uid, resourceVersion, generation and a Status reason from a JSON answer;
/// returns the object (not a Status) for effect scope.
fn inspect_object(
    bytes: &Bytes,
    headers: &HeaderMap,
    exchange: &mut Exchange,
) -> Option<serde_json::Value> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !content_type.is_some_and(|ct| ct.starts_with("application/json")) {
        // A typed client's protobuf answer: its identity and version, no post-image.
        if let Some(meta) = crate::classify::AnswerMeta::of_protobuf(content_type, bytes) {
            note_answer(exchange, meta);
        }
        return None;
    }
    let value = serde_json::from_slice::<serde_json::Value>(bytes).ok()?;
    if value["kind"] == "Status" {
        exchange.status_reason = value["reason"].as_str().map(str::to_string);
        return None;
    }
    let metadata = &value["metadata"];
    exchange.object_uid = metadata["uid"].as_str().map(str::to_string);
    exchange.object_resource_version = metadata["resourceVersion"].as_str().map(str::to_string);
    exchange.object_generation = metadata["generation"].as_i64();
    exchange.object_name = metadata["name"].as_str().map(str::to_string);
    exchange.object_namespace = metadata["namespace"].as_str().map(str::to_string);
    Some(value)
}

/// What the record keeps of an answer pathgate did not read as JSON.
fn note_answer(exchange: &mut Exchange, meta: crate::classify::AnswerMeta) {
    if meta.kind.as_deref() == Some("Status") {
        exchange.status_reason = meta.status_reason;
        return;
    }
    exchange.object_uid = meta.uid;
    exchange.object_resource_version = meta.resource_version;
    exchange.object_generation = meta.generation;
    exchange.object_name = meta.name;
    exchange.object_namespace = meta.namespace;
}

/// Appends pathgate's `Warning` values (kubectl prints each on stderr).
fn append_warnings(headers: &mut HeaderMap, warnings: &[String]) {
    for warning in warnings {
        if let Ok(value) = HeaderValue::from_str(warning) {
            headers.append(header::WARNING, value);
        }
    }
}
