//! The life of one request, as the list of its phases ([`process`]):
//!
//! 1. [`admit`]: refuse new requests while draining.
//! 2. [`read_head`]: the session, the client's identity and the request's classification.
//! 3. [`upstream_credentials`]: what the apiserver will see as `Authorization` (the
//!    client's own, or pathgate's after the client authenticated to pathgate).
//! 4. [`read_body`]: a mutation's body, bounded; reads and upgrades stream.
//! 5. [`gate`]: the policy's decision, and the impersonation guard.
//! 6. [`prepare`]: [`record_intent`], a mutation's intent, durable before it is forwarded
//!    when the ledger requires it; beside it, [`fetch_pre_image`], the target of a patch or
//!    update as the pre-image of its effect, when no rule needed it to decide, and the
//!    target of an imaged mutation ([`images::source`]).
//! 7. [`forward::send`]: the upstream request (header hygiene, credentials, trace stamps),
//!    sent within the response-header timeout, while the pre-image is written
//!    ([`images::start`]).
//! 8. [`respond::answer`]: the upgrade relay, a buffered mutation answer, or a stream.
//!
//! Each phase fills in the request's [`Exchange`]; a phase that fails returns a
//! [`PathError`], which [`respond::refuse`] turns into the client's `Status` and the record.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio::sync::oneshot;

use super::body::{read_bounded, BodyError, StreamEnd};
use super::error::PathError;
use super::exchange::Exchange;
use super::gate::{Fetched, GateOutcome, GateRequest, PreImage};
use super::identity::{bearer_token, token_accepted, ConnectionInfo, Resolved};
use super::respond::{self, ClientLink};
use super::{forward, headers, images, AuthMode, Proxy};
use crate::classify::{self, RequestInfo};
use crate::policy::EffectBasis;
use crate::status::Body;
use crate::trace::{self, TraceId};

/// Serves one request. Never fails: pathgate's own errors become `Status` responses.
///
/// A request that may change something (a method with a body) runs in a task of its own,
/// which the connection's service future only awaits: once a mutation is forwarded, the
/// apiserver acts whatever the client does, so the upstream exchange and its record must
/// not be cancelled with that future when the client goes away. The task is tracked, so a
/// drain waits for it, and holds one of its connection's
/// [`super::identity::REQUESTS_PER_CONNECTION`] permits until it ends: past them, a new
/// request waits (in its service future, which a reset still cancels for free). Reads
/// change nothing: they are served inline and end with their client, which spares them the
/// task's cost (about 1 µs, `cargo bench --bench request_task`).
pub async fn handle(
    proxy: Arc<Proxy>,
    connection: Arc<ConnectionInfo>,
    request: Request<Incoming>,
) -> Response<Body> {
    if !is_body_method(request.method()) {
        return run(&proxy, &connection, request, ClientLink::INLINE).await;
    }
    let Ok(permit) = Arc::clone(&connection.requests).acquire_owned().await else {
        unreachable!("the semaphore is never closed");
    };
    let (reply, answer) = oneshot::channel();
    let tracker = proxy.in_flight.clone();
    tracker.spawn(async move {
        let _permit = permit;
        let response = run(&proxy, &connection, request, ClientLink::waiting(&reply)).await;
        // A client that left takes no answer: dropping it here records a streamed body's end.
        let _ = reply.send(response);
    });
    answer
        .await
        .unwrap_or_else(|_| PathError::TaskLost.status().into_response())
}

/// One request from its head to the answer the client gets, stamped with its trace id.
async fn run(
    proxy: &Proxy,
    connection: &ConnectionInfo,
    request: Request<Incoming>,
    client: ClientLink<'_>,
) -> Response<Body> {
    let trace_id = TraceId::random();
    let clock = Instant::now();
    let mut exchange = Exchange::new(
        trace_id,
        connection.peer,
        proxy.settings.auth,
        request.method(),
        request.uri(),
        request.headers(),
    );
    let result = process(proxy, connection, request, &mut exchange, clock, client).await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => respond::refuse(proxy, exchange, &error, clock, client).await,
    };
    if let Ok(value) = HeaderValue::from_str(&trace_id.to_hex()) {
        response
            .headers_mut()
            .insert(trace::EXECUTION_TRACE_HEADER, value);
    }
    response
}

/// The phases, in order (see the module docs).
async fn process(
    proxy: &Proxy,
    connection: &ConnectionInfo,
    request: Request<Incoming>,
    exchange: &mut Exchange,
    clock: Instant,
    client: ClientLink<'_>,
) -> Result<Response<Body>, PathError> {
    admit(proxy)?;
    let head = read_head(proxy, connection, &request, exchange)?;
    let authorization = upstream_credentials(proxy, connection, request.headers()).await?;
    let (received, client_upgrade) = read_body(proxy, request, &head, exchange).await?;
    let mut outcome = gate(proxy, &head, &received, &authorization, exchange).await?;
    let body = received.body.as_ref();
    let request = (&*head.info, head.query.as_deref(), body);
    let source = prepare(proxy, request, &authorization, &mut outcome, exchange).await?;
    if client.end() == StreamEnd::ClientGone {
        return Ok(respond::not_forwarded(proxy, exchange, clock).await);
    }
    let images = images::start(proxy, source, &head.info);
    let upstream = (received, authorization);
    let response = match forward(proxy, connection, head, upstream, &mut outcome, exchange).await {
        Ok(response) => response,
        Err(error) => {
            // The request may have reached the apiserver: its record names the pre-image.
            images::settle(images, exchange, images::Answered::default()).await;
            return Err(error);
        }
    };
    let before = respond::Before {
        effect: std::mem::take(&mut outcome.effect),
        images,
        rehearsal: outcome
            .dry_run
            .then(|| outcome.target_body.take())
            .flatten(),
    };
    respond::answer(
        proxy,
        response,
        client_upgrade,
        before,
        exchange,
        clock,
        client,
    )
    .await
}

/// Forwards the request as the gate left it (its rewrites applied); a dry run's pre-image
/// is fetched while it is sent (it changes nothing, so the object is the same), and kept
/// in `outcome.target_body` for the same request sent for real.
async fn forward(
    proxy: &Proxy,
    connection: &ConnectionInfo,
    head: Head,
    (received, authorization): (Received, Option<HeaderValue>),
    outcome: &mut GateOutcome,
    exchange: &mut Exchange,
) -> Result<Response<Incoming>, PathError> {
    let Received { parts, body } = received;
    let forwarded = forward::Forwarded {
        path: &head.path,
        query: outcome.query.take().or(head.query),
        body: outcome.body.take().or(body),
        upgrade: head.upgrade,
        authorization,
    };
    if !(outcome.dry_run && outcome.pre_image_path.is_some()) {
        return forward::send(proxy, connection, &head.info, parts, forwarded, exchange).await;
    }
    let (authorization, trace_id) = (forwarded.authorization.clone(), exchange.trace_id);
    let (sent, pre_image) = tokio::join!(
        forward::send(proxy, connection, &head.info, parts, forwarded, exchange),
        fetch_pre_image(proxy, outcome, authorization.as_ref(), trace_id),
    );
    if let Some(body) = apply_pre_image(pre_image, outcome, exchange) {
        outcome.target_body = Some(body);
    }
    sent
}

/// The request as received: its head's parts and a mutation's buffered body.
struct Received {
    parts: http::request::Parts,
    /// `None` for a read or an upgrade (nothing buffered).
    body: Option<Bytes>,
}

/// What the head of a request says, read once.
struct Head {
    /// The path the apiserver sees (the session prefix stripped).
    path: String,
    query: Option<String>,
    info: Arc<RequestInfo>,
    /// The client sent `Impersonate-*` headers (PG017 under pathgate's credentials).
    impersonation: bool,
    /// The client asks to switch protocols (exec, attach, port-forward).
    upgrade: bool,
}

/// Admission: while draining, new requests go to the next instance.
fn admit(proxy: &Proxy) -> Result<(), PathError> {
    if proxy.draining.is_cancelled() {
        return Err(PathError::Draining);
    }
    Ok(())
}

/// Session (path prefix, then header, then the configured default, then the client's
/// identity), identity and classification, recorded in the exchange.
fn read_head(
    proxy: &Proxy,
    connection: &ConnectionInfo,
    request: &Request<Incoming>,
    exchange: &mut Exchange,
) -> Result<Head, PathError> {
    let (prefix_session, path) = crate::session::strip_prefix(request.uri().path())?;
    let header_session = match request.headers().get(crate::session::SESSION_HEADER) {
        Some(value) => {
            let id = value.to_str().unwrap_or("");
            if !crate::session::is_valid_id(id) {
                return Err(crate::session::SessionError::InvalidId(id.to_string()).into());
            }
            Some(id.to_string())
        }
        None => None,
    };
    exchange.path = path.clone();
    let Resolved {
        identity,
        session_name,
    } = connection.resolve(request.headers().get(header::AUTHORIZATION));
    exchange.identity = identity;
    exchange.session = prefix_session
        .or(header_session)
        .or_else(|| proxy.settings.default_session.clone())
        .or(session_name)
        .unwrap_or_else(|| "default".to_string());
    let query = request.uri().query().map(str::to_string);
    let info =
        classify::request_info(request.method(), &path, query.as_deref(), request.headers())?;
    let info = Arc::new(info);
    exchange.info = Some(Arc::clone(&info));
    Ok(Head {
        path,
        query,
        info,
        impersonation: headers::has_impersonation(request.headers()),
        upgrade: headers::is_upgrade(request.headers()),
    })
}

/// The `Authorization` the apiserver will see: the client's own in passthrough mode;
/// otherwise pathgate's, once the client authenticated to pathgate as the mode requires.
async fn upstream_credentials(
    proxy: &Proxy,
    connection: &ConnectionInfo,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, PathError> {
    let settings = &proxy.settings;
    match settings.auth {
        AuthMode::Passthrough => return Ok(headers.get(header::AUTHORIZATION).cloned()),
        AuthMode::Sidecar if !settings.client_tokens.is_empty() => {
            let accepted = connection.certificate.is_some()
                || bearer_token(headers)
                    .is_some_and(|t| token_accepted(t, &settings.client_tokens));
            if !accepted {
                return Err(PathError::ClientNotAuthenticated);
            }
        }
        AuthMode::Impersonate if connection.certificate.is_none() => {
            return Err(PathError::CertificateRequired);
        }
        AuthMode::Sidecar | AuthMode::Impersonate => {}
    }
    let token = proxy
        .upstream
        .own_token()
        .await
        .map_err(PathError::Credentials)?;
    Ok(token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()))
}

/// A mutation's body, buffered up to `server.max_body_bytes` within the body-read timeout;
/// a read or an upgrade has none to buffer (an upgrade's bytes are relayed after the switch).
async fn read_body(
    proxy: &Proxy,
    mut request: Request<Incoming>,
    head: &Head,
    exchange: &mut Exchange,
) -> Result<(Received, Option<OnUpgrade>), PathError> {
    let client_upgrade = head.upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, incoming) = request.into_parts();
    if !is_body_method(&parts.method) || head.upgrade {
        return Ok((Received { parts, body: None }, client_upgrade));
    }
    let settings = &proxy.settings;
    let deadline = settings.connections.body_read_timeout;
    let read = tokio::time::timeout(deadline, read_bounded(incoming, settings.max_body_bytes));
    let body = match read.await {
        Err(_) => {
            proxy
                .metrics
                .connection_timeout(crate::metrics::ConnectionTimeout::BodyRead);
            return Err(PathError::BodyTimeout(deadline));
        }
        Ok(Err(BodyError::TooLarge(limit))) => return Err(PathError::BodyTooLarge(limit)),
        Ok(Err(BodyError::Read(error))) => return Err(PathError::BodyRead(error)),
        Ok(Ok(bytes)) => bytes,
    };
    exchange.bytes_in = body.len() as u64;
    let body = Some(body);
    Ok((Received { parts, body }, client_upgrade))
}

/// The gate's decision, recorded in the exchange, then the impersonation guard: whatever
/// the mode or the rule overrides say, client-sent `Impersonate-*` headers are never
/// forwarded under pathgate's own credentials.
async fn gate(
    proxy: &Proxy,
    head: &Head,
    received: &Received,
    authorization: &Option<HeaderValue>,
    exchange: &mut Exchange,
) -> Result<GateOutcome, PathError> {
    let (parts, empty) = (&received.parts, Bytes::new());
    let mut outcome = proxy
        .gate
        .evaluate(GateRequest {
            trace_id: exchange.trace_id,
            session: &exchange.session,
            identity: &exchange.identity,
            info: &head.info,
            method: &parts.method,
            path: &head.path,
            query: head.query.as_deref(),
            headers: &parts.headers,
            body: received.body.as_ref().unwrap_or(&empty),
            upstream_authorization: authorization.as_ref(),
        })
        .await;
    exchange.analysis = outcome.analysis.take();
    exchange.decision = outcome.decision.take();
    exchange.fingerprint = outcome.fingerprint;
    exchange.target = outcome.target.take();
    exchange.warnings = std::mem::take(&mut outcome.warnings);
    if let Some(refusal) = outcome.deny.take() {
        return Err(refusal);
    }
    if head.impersonation && proxy.settings.auth != AuthMode::Passthrough {
        if let Some(decision) = exchange.decision.as_mut() {
            decision.deny_impersonation();
        }
        return Err(PathError::Impersonation);
    }
    Ok(outcome)
}

/// A mutation's captured body, and its intent made durable before anything is forwarded
/// when the ledger requires it (`ledger.on_failure: fail-closed-mutations`).
async fn record_intent(
    proxy: &Proxy,
    info: &RequestInfo,
    body: Option<&Bytes>,
    exchange: &mut Exchange,
) -> Result<(), PathError> {
    if !info.is_mutation() {
        return Ok(());
    }
    exchange.captured_body = proxy.recorder.capture_body(
        &info.resource,
        exchange.content_type.as_deref(),
        body.map_or(&[][..], |b| &b[..]),
    );
    if let Some(intent) = proxy.recorder.record_intent(exchange) {
        intent.await.map_err(PathError::Intent)?;
    }
    Ok(())
}

/// What must be done before forwarding and depends on nothing but the decision: the
/// intent made durable and, unless the request is a dry run (whose pre-image is fetched
/// while it is sent, and which is not imaged), the pre-image fetched, at the same time.
/// Returns what the stored pre-image is made from.
async fn prepare(
    proxy: &Proxy,
    (info, query, body): (&RequestInfo, Option<&str>, Option<&Bytes>),
    authorization: &Option<HeaderValue>,
    outcome: &mut GateOutcome,
    exchange: &mut Exchange,
) -> Result<Option<images::Source>, PathError> {
    let (trace_id, fingerprint) = (exchange.trace_id, exchange.fingerprint);
    let session = exchange.session.clone();
    let session = session.as_str();
    let plan = match (&proxy.images, outcome.dry_run) {
        (Some(store), false) => {
            let max_list_items = store.limits().map_or(0, |l| l.max_list_items);
            images::plan(info, query, max_list_items)
        }
        _ => None,
    };
    let fetch = async {
        if outcome.dry_run {
            return (None, None);
        }
        let authorization = authorization.as_ref();
        let pre_image = fetch_pre_image(proxy, outcome, authorization, trace_id).await;
        let Some(plan) = plan else {
            return (pre_image, None);
        };
        if let Some(source) = rehearsed(proxy, &plan, outcome, session, fingerprint) {
            return (pre_image, Some(source));
        }
        let known = known_fetch(info, outcome, pre_image.as_ref());
        let known = known.map(|(path, fetched)| (path.into_owned(), fetched));
        let source = images::source(proxy, plan, known, authorization, trace_id).await;
        (pre_image, Some(source))
    };
    let (intent, (pre_image, source)) =
        tokio::join!(record_intent(proxy, info, body, exchange), fetch);
    intent?;
    apply_pre_image(pre_image, outcome, exchange);
    Ok(source)
}

/// The pre-image the session's dry run of this request wrote, when the gate judged the
/// request on that dry run's measured effect and read nothing of the object itself.
fn rehearsed(
    proxy: &Proxy,
    plan: &images::Plan,
    outcome: &GateOutcome,
    session: &str,
    fingerprint: Option<crate::policy::Fingerprint>,
) -> Option<images::Source> {
    let (EffectBasis::Rehearsed(rehearsal), None) = (&outcome.effect, &outcome.target_body) else {
        return None;
    };
    let images::Plan::Object { path } = plan else {
        return None;
    };
    let imaged = proxy
        .rehearsed
        .take(session, fingerprint?, rehearsal, path)?;
    Some(images::Source::rehearsed(plan.clone(), imaged))
}

/// What a GET before forwarding already read of a target, and its path: the effect
/// fetch's answer (whatever it was), or the object the gate read for a rule.
fn known_fetch<'a>(
    info: &RequestInfo,
    outcome: &'a GateOutcome,
    pre_image: Option<&PreImage>,
) -> Option<(Cow<'a, str>, Fetched)> {
    if let (Some(path), Some(pre_image)) = (outcome.pre_image_path.as_deref(), pre_image) {
        let fetched = match (&pre_image.body, &pre_image.target) {
            (Some(body), _) => Fetched::Found(body.clone()),
            (None, Some(target)) if !target.found => Fetched::Absent,
            (None, _) => Fetched::Failed,
        };
        return Some((Cow::Borrowed(path), fetched));
    }
    let body = outcome.target_body.as_ref()?;
    let path = images::object_path(info)?;
    Some((Cow::Owned(path), Fetched::Found(body.clone())))
}

/// A fetched pre-image becomes the effect basis, and the ledger's `target`; returns the
/// object's body.
fn apply_pre_image(
    pre_image: Option<PreImage>,
    outcome: &mut GateOutcome,
    exchange: &mut Exchange,
) -> Option<Bytes> {
    let PreImage {
        effect,
        target,
        body,
    } = pre_image?;
    outcome.effect = effect;
    exchange.target = target;
    body
}

/// The pre-image of effect scope the gate left to fetch (no rule needed it to decide).
async fn fetch_pre_image(
    proxy: &Proxy,
    outcome: &GateOutcome,
    authorization: Option<&HeaderValue>,
    trace_id: TraceId,
) -> Option<PreImage> {
    let path = outcome.pre_image_path.as_deref()?;
    Some(
        proxy
            .gate
            .fetch_pre_image(path, authorization, trace_id)
            .await,
    )
}

fn is_body_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}
