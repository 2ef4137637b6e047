//! One request through the proxy: session, classification, auth mode, bounded body, gate,
//! stamping, forwarding (or upgrade), streaming back, and the record of it all.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

use super::body::{read_bounded, BodyError, Relay, StreamEnd, StreamStats};
use super::headers;
use super::{AuthMode, Proxy};
use crate::classify::{self, Analysis, RequestInfo};
use crate::policy::Decision;
use crate::status::{full_body, Body, Side, Status};
use crate::trace::{self, TraceId};

/// What the TLS layer knows about a connection.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// User (CN) and groups (O) of a verified client certificate.
    pub certificate: Option<(String, Vec<String>)>,
    /// The identity resolved for the last `Authorization` value seen on this connection: a
    /// client sends the same token on every request of a connection, so its SHA-256 and
    /// the default session name are computed once per token, not once per request.
    resolved: std::sync::Mutex<Option<(Option<HeaderValue>, Resolved)>>,
}

/// A client's identity and the session name it defaults to.
#[derive(Debug, Clone)]
struct Resolved {
    identity: Arc<ClientIdentity>,
    session_name: Option<String>,
}

impl ConnectionInfo {
    pub fn new(peer: SocketAddr, certificate: Option<(String, Vec<String>)>) -> Self {
        Self {
            peer,
            certificate,
            resolved: std::sync::Mutex::new(None),
        }
    }

    /// Who sends `authorization` on this connection, from the cache when it is unchanged.
    fn resolve(&self, authorization: Option<&HeaderValue>) -> Resolved {
        let mut cached = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((value, resolved)) = &*cached {
            if value.as_ref() == authorization {
                return resolved.clone();
            }
        }
        let mut identity = ClientIdentity::default();
        if let Some((user, groups)) = &self.certificate {
            identity.user = Some(user.clone());
            identity.groups = groups.clone();
        }
        identity.token_fingerprint = authorization.and_then(token_fingerprint);
        let resolved = Resolved {
            session_name: identity.session_name(),
            identity: Arc::new(identity),
        };
        *cached = Some((authorization.cloned(), resolved.clone()));
        resolved
    }
}

/// Who the client is, as far as pathgate knows. Never holds a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientIdentity {
    pub user: Option<String>,
    pub groups: Vec<String>,
    /// First 16 hex digits of the SHA-256 of the client's bearer token.
    pub token_fingerprint: Option<String>,
}

impl ClientIdentity {
    /// A name for the default session: the user, else the token fingerprint.
    fn session_name(&self) -> Option<String> {
        self.user
            .clone()
            .or_else(|| {
                self.token_fingerprint
                    .as_ref()
                    .map(|f| format!("token-{f}"))
            })
            .map(|name| {
                name.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect::<String>()
            })
            .filter(|name| crate::session::is_valid_id(name))
    }
}

/// What the gate is asked about one request.
pub struct GateRequest<'a> {
    pub trace_id: TraceId,
    pub session: &'a str,
    pub identity: &'a ClientIdentity,
    pub info: &'a RequestInfo,
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    /// The `Authorization` value the upstream will see (passthrough: the client's own),
    /// used when the gate fetches facts.
    pub upstream_authorization: Option<&'a HeaderValue>,
}

/// The gate's answer: deny, or forward (possibly rewritten) with warnings.
#[derive(Debug, Default)]
pub struct GateOutcome {
    pub analysis: Option<Analysis>,
    pub decision: Option<Decision>,
    /// `Some`: answer with this Status instead of forwarding.
    pub deny: Option<Status>,
    /// `Warning` header values (`299 pathgate "..."`).
    pub warnings: Vec<String>,
    /// A rewritten query string to forward instead of the client's.
    pub query: Option<String>,
    /// A rewritten body to forward instead of the client's.
    pub body: Option<Bytes>,
    /// The request's session-memory key, kept for [`Gate::observe_response`].
    pub fingerprint: Option<crate::policy::Fingerprint>,
    /// The target object before the mutation (patches and updates), for effect scope.
    pub pre_image: Option<serde_json::Value>,
}

/// Classification and policy, as seen by the request path.
pub trait Gate: Send + Sync {
    /// Decides what to do with one request.
    fn evaluate<'a>(
        &'a self,
        request: GateRequest<'a>,
    ) -> Pin<Box<dyn std::future::Future<Output = GateOutcome> + Send + 'a>>;

    /// Learns the apiserver's answer to a forwarded request (dry-run successes, failures
    /// for retry loops, 409 on create); returns extra `Warning` values for the response.
    fn observe_response(&self, _exchange: &mut Exchange) -> Vec<String> {
        Vec::new()
    }
}

/// The complete record of one request, handed to the [`Recorder`] when it ends.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub trace_id: TraceId,
    /// The client's address.
    pub peer: SocketAddr,
    pub session: String,
    pub identity: Arc<ClientIdentity>,
    pub auth_mode: AuthMode,
    pub started_at: SystemTime,
    pub duration: std::time::Duration,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub forwarded_query: Option<String>,
    pub info: Option<Arc<RequestInfo>>,
    pub analysis: Option<Analysis>,
    pub decision: Option<Decision>,
    pub status_code: u16,
    /// The `reason` of a `Status` response body, where one was seen.
    pub status_reason: Option<String>,
    /// The `Audit-Id` the apiserver answered with.
    pub audit_id: Option<String>,
    pub object_uid: Option<String>,
    pub object_resource_version: Option<String>,
    pub object_generation: Option<i64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub watch_events: Option<u64>,
    pub stream_end: Option<StreamEnd>,
    /// Which side failed and why, for pathgate's own errors.
    pub error: Option<(Side, crate::ledger::ErrorKind, String)>,
    /// The response was an upgrade (exec, attach, port-forward).
    pub upgraded: bool,
    /// The gate's session-memory key for this request.
    pub fingerprint: Option<crate::policy::Fingerprint>,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// pathgate answered itself (a denial, 413, 503...) instead of relaying the apiserver.
    pub answered_by_pathgate: bool,
    /// Effect scope: leaf paths that changed, when measured.
    pub effect_paths: Option<Vec<String>>,
    /// A redacted copy of the mutation body (body capture on).
    pub captured_body: Option<crate::ledger::CapturedBody>,
    /// `Warning` values pathgate added to the response.
    pub warnings: Vec<String>,
}

impl Exchange {
    /// The record of a request that has just arrived.
    fn new(
        trace_id: TraceId,
        peer: SocketAddr,
        auth_mode: AuthMode,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) -> Exchange {
        Exchange {
            trace_id,
            peer,
            session: String::new(),
            identity: Arc::default(),
            auth_mode,
            started_at: SystemTime::now(),
            duration: Default::default(),
            method: method.as_str().to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            forwarded_query: None,
            info: None,
            analysis: None,
            decision: None,
            status_code: 0,
            status_reason: None,
            audit_id: None,
            object_uid: None,
            object_resource_version: None,
            object_generation: None,
            bytes_in: 0,
            bytes_out: 0,
            watch_events: None,
            stream_end: None,
            error: None,
            upgraded: false,
            fingerprint: None,
            warnings: Vec::new(),
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            answered_by_pathgate: false,
            effect_paths: None,
            captured_body: None,
        }
    }

    /// Moves the record out (to whoever finishes it, e.g. a streamed body's end), leaving
    /// an empty one with the same trace id behind.
    fn take(&mut self) -> Exchange {
        let empty = Exchange::new(
            self.trace_id,
            self.peer,
            self.auth_mode,
            &Method::GET,
            &http::Uri::from_static("/"),
            &HeaderMap::new(),
        );
        std::mem::replace(self, empty)
    }
}

/// Where finished exchanges go (the ledger, metrics).
pub trait Recorder: Send + Sync {
    /// Records without waiting (reads, watches).
    fn record(&self, exchange: Exchange);

    /// Records and resolves once the record is durable (mutations, before the client
    /// receives the response). An error means the record could not be made durable.
    fn record_durable(
        &self,
        exchange: Exchange,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> {
        self.record(exchange);
        Box::pin(async { Ok(()) })
    }

    /// With `on_failure: fail-closed-mutations`: makes the intent of a mutation durable
    /// before it is forwarded; `None` when the recorder does not require it.
    #[allow(clippy::type_complexity)]
    fn record_intent(
        &self,
        _exchange: &Exchange,
    ) -> Option<Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>> {
        None
    }

    /// A redacted copy of a mutation body, when body capture is on.
    fn capture_body(
        &self,
        _resource: &str,
        _content_type: Option<&str>,
        _body: &[u8],
    ) -> Option<crate::ledger::CapturedBody> {
        None
    }
}

fn token_fingerprint(authorization: &HeaderValue) -> Option<String> {
    let value = authorization.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(crate::ledger::token_fingerprint(token.trim()))
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// Constant-time comparison of a presented token against the accepted ones.
fn token_accepted(presented: &str, accepted: &[String]) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let mut found = false;
    for token in accepted {
        let candidate = Sha256::digest(token.as_bytes());
        let differ = presented
            .iter()
            .zip(candidate.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        found |= differ == 0;
    }
    found
}

fn is_body_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Hands the exchange to the recorder (which also counts it in the metrics).
fn record(proxy: &Proxy, exchange: Exchange) {
    proxy.recorder.record(exchange);
}

/// As [`record`], resolving once the recorder made the exchange durable.
async fn record_durable(proxy: &Proxy, exchange: Exchange) -> Result<(), String> {
    proxy.recorder.record_durable(exchange).await
}

/// Serves one request. Never fails: pathgate's own errors become `Status` responses.
pub async fn handle(
    proxy: Arc<Proxy>,
    connection: Arc<ConnectionInfo>,
    request: Request<Incoming>,
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
    let result = process(&proxy, &connection, request, &mut exchange, clock).await;
    let mut response = match result {
        Ok(response) => response,
        Err(status) => {
            // Flags of other rules still reach the agent on a refusal.
            let warnings_on_refusal = exchange.warnings.clone();
            exchange.answered_by_pathgate = true;
            exchange.status_code = status.code.as_u16();
            exchange.status_reason = Some(status.reason.to_string());
            exchange.error = Some((status.side, status.kind, status.message.clone()));
            exchange.duration = clock.elapsed();
            let is_mutation = exchange.info.as_ref().is_some_and(|i| i.is_mutation());
            if is_mutation {
                // A refused mutation is part of the path an autopsy reads: make it durable.
                if let Err(error) = record_durable(&proxy, exchange).await {
                    tracing::error!(%error, "could not record a refused mutation durably");
                }
            } else {
                record(&proxy, exchange);
            }
            let warnings = warnings_on_refusal;
            let mut response = status.into_response();
            for warning in warnings {
                if let Ok(value) = HeaderValue::from_str(&warning) {
                    response.headers_mut().append(header::WARNING, value);
                }
            }
            response
        }
    };
    if let Ok(value) = HeaderValue::from_str(&trace_id.to_hex()) {
        response
            .headers_mut()
            .insert(trace::EXECUTION_TRACE_HEADER, value);
    }
    response
}

async fn process(
    proxy: &Proxy,
    connection: &ConnectionInfo,
    mut request: Request<Incoming>,
    exchange: &mut Exchange,
    clock: Instant,
) -> Result<Response<Body>, Status> {
    if proxy.draining.is_cancelled() {
        return Err(Status::unavailable(
            Side::Pathgate,
            "pathgate is shutting down; retry against the new instance",
        ));
    }

    // Session: path prefix, then header, then the default.
    let (prefix_session, path) = crate::session::strip_prefix(request.uri().path())
        .map_err(|e| Status::bad_request(format!("pathgate: {e}")))?;
    let header_session = match request.headers().get(crate::session::SESSION_HEADER) {
        Some(value) => {
            let id = value.to_str().unwrap_or("");
            if !crate::session::is_valid_id(id) {
                return Err(Status::bad_request(format!(
                    "pathgate: {}",
                    crate::session::SessionError::InvalidId(id.to_string())
                )));
            }
            Some(id.to_string())
        }
        None => None,
    };
    exchange.path = path.clone();
    let query = request.uri().query().map(str::to_string);

    // Identity and auth mode.
    let settings = &proxy.settings;
    let has_impersonation = headers::has_impersonation(request.headers());
    let Resolved {
        identity,
        session_name,
    } = connection.resolve(request.headers().get(header::AUTHORIZATION));
    exchange.identity = Arc::clone(&identity);
    exchange.session = prefix_session
        .or(header_session)
        .or_else(|| settings.default_session.clone())
        .or(session_name)
        .unwrap_or_else(|| "default".to_string());

    let info = classify::request_info(request.method(), &path, query.as_deref(), request.headers())
        .map_err(|e| Status::bad_request(format!("pathgate: {e}")))?;
    let info = Arc::new(info);
    exchange.info = Some(Arc::clone(&info));

    let upstream_authorization: Option<HeaderValue> = match settings.auth {
        AuthMode::Passthrough => request.headers().get(header::AUTHORIZATION).cloned(),
        AuthMode::Sidecar | AuthMode::Impersonate => {
            if settings.auth == AuthMode::Sidecar && !settings.client_tokens.is_empty() {
                let accepted = connection.certificate.is_some()
                    || bearer_token(request.headers())
                        .is_some_and(|t| token_accepted(t, &settings.client_tokens));
                if !accepted {
                    return Err(Status::unauthorized(
                        "pathgate: present a client certificate or a token from the client token file",
                    ));
                }
            }
            if settings.auth == AuthMode::Impersonate && connection.certificate.is_none() {
                return Err(Status::unauthorized(
                    "pathgate: impersonate mode needs a verified client certificate; configure client-certificate in your kubeconfig",
                ));
            }
            let token = proxy
                .upstream
                .own_token()
                .await
                .map_err(|e| Status::unavailable(Side::Pathgate, format!("pathgate: {e}")))?;
            token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
        }
    };

    let is_upgrade = headers::is_upgrade(request.headers());
    let client_upgrade = is_upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, incoming) = request.into_parts();

    // Mutation bodies are buffered (bounded); reads and upgrades stream.
    let body = if is_body_method(&parts.method) && !is_upgrade {
        let deadline = settings.connections.body_read_timeout;
        let read = tokio::time::timeout(deadline, read_bounded(incoming, settings.max_body_bytes));
        match read.await {
            Err(_) => {
                proxy
                    .metrics
                    .connection_timeout(crate::metrics::ConnectionTimeout::BodyRead);
                return Err(Status::request_timeout(format!(
                    "pathgate: the request body did not arrive within {}s (server.body_read_timeout_seconds)",
                    deadline.as_secs()
                )));
            }
            Ok(Ok(bytes)) => Some(bytes),
            Ok(Err(BodyError::TooLarge(limit))) => return Err(Status::too_large(limit)),
            Ok(Err(BodyError::Read(e))) => {
                return Err(Status::bad_request(format!(
                    "pathgate: reading the request body failed: {e}"
                )))
            }
        }
    } else {
        drop(incoming);
        None
    };
    let body_bytes = body.clone().unwrap_or_default();
    exchange.bytes_in = body_bytes.len() as u64;

    let mut outcome = proxy
        .gate
        .evaluate(GateRequest {
            trace_id: exchange.trace_id,
            session: &exchange.session,
            identity: &identity,
            info: &info,
            method: &parts.method,
            path: &path,
            query: query.as_deref(),
            headers: &parts.headers,
            body: &body_bytes,
            upstream_authorization: upstream_authorization.as_ref(),
        })
        .await;
    exchange.analysis = outcome.analysis.take();
    exchange.decision = outcome.decision.take();
    exchange.fingerprint = outcome.fingerprint;
    exchange.warnings = std::mem::take(&mut outcome.warnings);
    if let Some(status) = outcome.deny {
        return Err(status);
    }
    if has_impersonation && settings.auth != AuthMode::Passthrough {
        // Whatever the mode or rule overrides say: forwarding these headers would lend
        // pathgate's identity to whoever the client names.
        let message = format!(
            "PG017 impersonation: {}",
            crate::policy::IMPERSONATION_REFUSAL
        );
        if let Some(decision) = exchange.decision.as_mut() {
            decision.action = crate::policy::Action::Deny;
            decision.enforce_action = crate::policy::Action::Deny;
            if !decision.findings.iter().any(|f| f.rule == "PG017") {
                decision.findings.push(crate::policy::Finding {
                    rule: "PG017",
                    action: crate::policy::Action::Deny,
                    message: message.clone(),
                });
            }
        }
        return Err(Status::forbidden(format!(
            "pathgate denied this request: {message}"
        )));
    }
    if info.is_mutation() {
        exchange.captured_body = proxy.recorder.capture_body(
            &info.resource,
            exchange.content_type.as_deref(),
            &body_bytes,
        );
        if let Some(intent) = proxy.recorder.record_intent(exchange) {
            if let Err(error) = intent.await {
                return Err(Status::unavailable(
                    Side::Pathgate,
                    format!(
                        "pathgate: the ledger could not record this mutation's intent ({error}); it was refused before reaching the apiserver (ledger.on_failure: fail-closed-mutations)"
                    ),
                )
                .with_kind(crate::ledger::ErrorKind::Ledger));
            }
        }
    }
    let forwarded_query = outcome.query.take().or(query);
    exchange.forwarded_query = forwarded_query.clone();
    let forwarded_body = outcome.body.take().or(body);

    // The upstream request.
    let mut headers = parts.headers;
    let upgrade_protocol = headers::strip_hop_by_hop(&mut headers);
    let client_traceparent = headers
        .get(trace::TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    headers::remove_spoofable(&mut headers);
    headers.remove(header::HOST);
    match settings.auth {
        AuthMode::Passthrough => {}
        AuthMode::Sidecar | AuthMode::Impersonate => {
            headers.remove(header::AUTHORIZATION);
            headers::remove_impersonation(&mut headers);
            if let Some(value) = &upstream_authorization {
                headers.insert(header::AUTHORIZATION, value.clone());
            }
        }
    }
    if settings.auth == AuthMode::Impersonate {
        let (user, groups) = connection
            .certificate
            .as_ref()
            .expect("impersonate mode checked the certificate above");
        let value = HeaderValue::from_str(user).map_err(|_| {
            Status::bad_request("pathgate: client certificate CN is not a valid header value")
        })?;
        headers.insert("impersonate-user", value);
        for group in groups {
            if let Ok(value) = HeaderValue::from_str(group) {
                headers.append("impersonate-group", value);
            }
        }
    }
    // Over HTTP/2, HPACK would add every header to the connection's shared compression
    // table. Credentials must never be (RFC 7541 §7.1.3: many clients share the upstream
    // connection in passthrough mode), and the per-request trace headers are never sent
    // twice, so indexing them only evicts entries that would have been reused.
    if let Some(value) = headers.get_mut(header::AUTHORIZATION) {
        value.set_sensitive(true);
    }
    let trace_hex = exchange.trace_id.to_hex();
    let mut trace_value = HeaderValue::from_str(&trace_hex).expect("hex is a header value");
    trace_value.set_sensitive(true);
    headers.insert(trace::EXECUTION_TRACE_HEADER, trace_value.clone());
    headers.insert(trace::AUDIT_ID_HEADER, trace_value);
    if let Ok(mut value) = HeaderValue::from_str(&trace::traceparent(
        client_traceparent.as_deref(),
        exchange.trace_id,
    )) {
        value.set_sensitive(true);
        headers.insert(trace::TRACEPARENT_HEADER, value);
    }
    if let Some(body) = &forwarded_body {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }

    let path_and_query = match &forwarded_query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.clone(),
    };
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(proxy.upstream.uri_for(&path_and_query));
    if is_upgrade {
        builder = builder.version(http::Version::HTTP_11);
    }
    let mut upstream_request = builder
        .body(match forwarded_body {
            Some(bytes) => full_body(bytes),
            None => full_body(Bytes::new()),
        })
        .map_err(|e| {
            Status::bad_request(format!("pathgate: cannot build the upstream request: {e}"))
        })?;
    *upstream_request.headers_mut() = headers;
    if let Some(protocol) = upgrade_protocol.filter(|_| is_upgrade) {
        upstream_request
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        upstream_request
            .headers_mut()
            .insert(header::UPGRADE, protocol);
    }

    // Judged on the query as forwarded: what the apiserver will serve.
    let lifetime = crate::upstream::Lifetime::of(&info, forwarded_query.as_deref(), is_upgrade);
    let sent = tokio::time::timeout(
        settings.response_header_timeout,
        proxy.upstream.request(lifetime, upstream_request),
    )
    .await;
    let mut upstream_response = match sent {
        Err(_) => {
            return Err(Status::timeout(format!(
                "pathgate: the apiserver did not answer within {}s",
                settings.response_header_timeout.as_secs()
            )))
        }
        Ok(Err(error)) => return Err(upstream_error(&error)),
        Ok(Ok(response)) => response,
    };

    exchange.status_code = upstream_response.status().as_u16();
    exchange.audit_id = upstream_response
        .headers()
        .get(trace::AUDIT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let late_warnings = proxy.gate.observe_response(exchange);
    exchange.warnings.extend(late_warnings);

    // Upgrades: relay both directions once both sides have switched protocols.
    if upstream_response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(Status::bad_gateway(
                "pathgate: the apiserver switched protocols on a request that did not ask to",
            ));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut upstream_response);
        exchange.upgraded = true;
        exchange.duration = clock.elapsed();
        let recorder = Arc::clone(&proxy.recorder);
        let mut record = exchange.clone();
        let open = proxy.metrics.open_upgrade();
        tokio::spawn(async move {
            let _open = open;
            let relay = async {
                let (client_io, upstream_io) = tokio::try_join!(client_upgrade, upstream_upgrade)
                    .map_err(|e| e.to_string())?;
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
                    record.error = relayed
                        .error
                        .map(|e| (Side::Upstream, crate::ledger::ErrorKind::Reset, e));
                }
                Err(error) => {
                    record.error = Some((Side::Upstream, crate::ledger::ErrorKind::Reset, error));
                    record.stream_end = Some(StreamEnd::UpstreamError);
                }
            }
            recorder.record(record);
        });
        let mut response = Response::new(full_body(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let mut response_headers = upstream_response.headers().clone();
        let protocol = headers::strip_hop_by_hop(&mut response_headers);
        *response.headers_mut() = response_headers;
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Some(protocol) = protocol {
            response.headers_mut().insert(header::UPGRADE, protocol);
        }
        return Ok(response);
    }

    let (mut response_parts, upstream_body) = upstream_response.into_parts();
    headers::strip_hop_by_hop(&mut response_parts.headers);
    for warning in &exchange.warnings {
        if let Ok(value) = HeaderValue::from_str(warning) {
            response_parts.headers.append(header::WARNING, value);
        }
    }

    if info.is_mutation()
        || response_parts.status.is_client_error() && info.verb != classify::Verb::Watch
    {
        // Mutation answers are single objects or Status bodies: read them (bounded) to
        // learn uid, resourceVersion and the Status reason, then make the record durable
        // before the client sees the answer.
        let bytes = read_bounded(upstream_body, settings.max_body_bytes.max(16 * 1024 * 1024))
            .await
            .map_err(|e| {
                Status::bad_gateway(format!("pathgate: reading the apiserver's answer: {e}"))
            })?;
        exchange.bytes_out = bytes.len() as u64;
        let post_image = inspect_object(&bytes, &response_parts.headers, exchange);
        if let (Some(before), Some(after)) = (&outcome.pre_image, &post_image) {
            if response_parts.status.is_success() {
                exchange.effect_paths = Some(crate::policy::effect_paths(before, after));
            }
        }
        exchange.duration = clock.elapsed();
        let finished = exchange.clone();
        if info.is_mutation() {
            // The apiserver has acted: its answer goes back whatever the ledger says (a
            // 503 here would invite a retry of a mutation that happened). The failure is
            // logged, counted by the ledger, and told to the agent.
            if let Err(error) = record_durable(proxy, finished).await {
                tracing::error!(trace_id = %exchange.trace_id, %error, "the outcome of a mutation could not be recorded durably");
                let warning = format!(
                    "299 pathgate \"pathgate: the ledger could not record this mutation's outcome durably ({})\"",
                    error.replace(['"', '\\'], "'")
                );
                if let Ok(value) = HeaderValue::from_str(&warning) {
                    response_parts.headers.append(header::WARNING, value);
                }
            }
        } else {
            record(proxy, finished);
        }
        let mut response = Response::from_parts(response_parts, full_body(bytes));
        response.headers_mut().remove(header::CONTENT_LENGTH);
        return Ok(response);
    }

    // Reads and watches stream, frame by frame.
    let stats = Arc::new(StreamStats::default());
    let is_watch = info.verb == classify::Verb::Watch;
    let recorder = Arc::clone(&proxy.recorder);
    let mut record = exchange.take();
    let end_stats = stats.clone();
    let open = is_watch.then(|| proxy.metrics.open_watch());
    let on_end = Box::new(move |end: StreamEnd| {
        drop(open);
        use std::sync::atomic::Ordering;
        record.bytes_out = end_stats.bytes.load(Ordering::Relaxed);
        if is_watch {
            record.watch_events = Some(end_stats.events.load(Ordering::Relaxed));
        }
        record.stream_end = Some(end);
        record.duration = clock.elapsed();
        recorder.record(record);
    });
    let relay = Relay::new(
        upstream_body,
        stats,
        is_watch,
        is_watch.then(|| proxy.draining.clone()),
        on_end,
    );
    Ok(Response::from_parts(response_parts, relay.boxed()))
}

/// Reads uid, resourceVersion, generation and a Status reason from a JSON answer;
/// returns the object (not a Status) for effect scope.
fn inspect_object(
    bytes: &Bytes,
    headers: &HeaderMap,
    exchange: &mut Exchange,
) -> Option<serde_json::Value> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
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
    Some(value)
}

/// tokio-rustls reports handshake and certificate failures as `InvalidData` carrying the
/// rustls error, which connectors may wrap in further `io::Error`s.
fn io_is_tls(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::InvalidData
        || io.get_ref().is_some_and(|inner| {
            inner.downcast_ref::<rustls::Error>().is_some()
                || inner
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(io_is_tls)
        })
}

/// Maps a client error to the Status the agent sees: unreachable 503, TLS 502.
fn upstream_error(error: &hyper_util::client::legacy::Error) -> Status {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut chain = Vec::new();
    let mut tls = false;
    while let Some(e) = source {
        chain.push(e.to_string());
        if e.downcast_ref::<rustls::Error>().is_some() {
            tls = true;
        }
        if e.downcast_ref::<std::io::Error>().is_some_and(io_is_tls) {
            tls = true;
        }
        source = e.source();
    }
    let detail = chain.join(": ");
    if tls {
        Status::bad_gateway(format!("pathgate: TLS with the apiserver failed: {detail}"))
            .with_kind(crate::ledger::ErrorKind::Tls)
    } else if error.is_connect() {
        Status::unavailable(
            Side::Upstream,
            format!("pathgate: the apiserver is unreachable: {detail}"),
        )
    } else {
        Status::bad_gateway(format!(
            "pathgate: the apiserver connection failed: {detail}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_fingerprints_never_contain_the_token() {
        let fp = token_fingerprint(&HeaderValue::from_static("Bearer s3cret-token")).unwrap();
        assert_eq!(fp.len(), "sha256:".len() + 16);
        assert!(!fp.contains("s3cret"));
        assert_ne!(
            fp,
            token_fingerprint(&HeaderValue::from_static("Bearer other")).unwrap()
        );
        assert!(token_fingerprint(&HeaderValue::from_static("Basic abc")).is_none());
    }

    #[test]
    fn a_connection_resolves_each_token_it_carries_not_only_the_first() {
        let connection = ConnectionInfo::new("127.0.0.1:1".parse().unwrap(), None);
        let alice = HeaderValue::from_static("Bearer alice-token");
        let bob = HeaderValue::from_static("Bearer bob-token");
        let first = connection.resolve(Some(&alice));
        assert_eq!(
            first.identity.token_fingerprint,
            token_fingerprint(&alice),
            "computed from the token"
        );
        assert_eq!(
            connection.resolve(Some(&alice)).identity,
            first.identity,
            "reused while the token is unchanged"
        );
        let second = connection.resolve(Some(&bob));
        assert_eq!(second.identity.token_fingerprint, token_fingerprint(&bob));
        assert_ne!(second.session_name, first.session_name);
        let anonymous = connection.resolve(None);
        assert_eq!(anonymous.identity.token_fingerprint, None);
        assert_eq!(anonymous.session_name, None);
    }

    #[test]
    fn client_tokens_are_compared_exactly() {
        let accepted = vec!["alpha".to_string(), "beta".to_string()];
        assert!(token_accepted("beta", &accepted));
        assert!(!token_accepted("bet", &accepted));
        assert!(!token_accepted("", &accepted));
    }

    #[test]
    fn default_session_names_are_valid_ids() {
        let identity = ClientIdentity {
            user: Some("system:serviceaccount:ns:agent".into()),
            ..Default::default()
        };
        let name = identity.session_name().unwrap();
        assert!(crate::session::is_valid_id(&name), "{name}");
    }
}
