//! Forwarding: the upstream request built from the client's (hop-by-hop and spoofable
//! headers stripped, credentials of the auth mode, impersonation of a verified certificate,
//! trace stamps, HPACK sensitivity), sent within the response-header timeout.
//!
//! Owns: what the apiserver receives. Does not own: whether it is sent (the gate) or what
//! happens to the answer (`respond`).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;

use super::error::PathError;
use super::exchange::Exchange;
use super::identity::ConnectionInfo;
use super::{headers, AuthMode, Proxy};
use crate::classify::RequestInfo;
use crate::status::full_body;
use crate::trace::{self, TraceId};

/// What is forwarded, after the gate's rewrites.
pub(super) struct Forwarded<'a> {
    /// The path the apiserver sees (the session prefix stripped).
    pub path: &'a str,
    /// The query as forwarded (the client's, or the gate's rewrite of it).
    pub query: Option<String>,
    /// The body as forwarded (the client's, or the gate's rewrite of it); `None` streams
    /// nothing.
    pub body: Option<Bytes>,
    /// The client asked to switch protocols: forwarded over HTTP/1.1 with its `Upgrade`.
    pub upgrade: bool,
    /// The `Authorization` of the auth mode (see `handler::upstream_credentials`).
    pub authorization: Option<HeaderValue>,
}

/// Sends the request upstream and returns the apiserver's response head, recording the
/// forwarded query, the status code and the apiserver's `Audit-Id`.
pub(super) async fn send(
    proxy: &Proxy,
    connection: &ConnectionInfo,
    info: &RequestInfo,
    parts: http::request::Parts,
    forwarded: Forwarded<'_>,
    exchange: &mut Exchange,
) -> Result<Response<Incoming>, PathError> {
    // Judged on the query as forwarded: what the apiserver will serve.
    let lifetime =
        crate::upstream::Lifetime::of(info, forwarded.query.as_deref(), forwarded.upgrade);
    exchange.forwarded_query = forwarded.query.clone();
    let request = upstream_request(proxy, connection, parts, forwarded, exchange.trace_id)?;
    let timeout = proxy.settings.response_header_timeout;
    let (sending, slot) = proxy
        .upstream
        .request(lifetime, request)
        .map_err(|limit| PathError::UpstreamUnreachable(limit.to_string()))?;
    // Held with the record until the answer's stream ends.
    exchange.upstream_stream = slot;
    let sent = tokio::time::timeout(timeout, sending).await;
    let response = match sent {
        Err(_) => return Err(PathError::UpstreamTimeout(timeout)),
        Ok(Err(error)) => return Err(PathError::upstream(&error)),
        Ok(Ok(response)) => response,
    };
    exchange.status_code = response.status().as_u16();
    exchange.audit_id = response
        .headers()
        .get(trace::AUDIT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(response)
}

/// The request the apiserver receives.
fn upstream_request(
    proxy: &Proxy,
    connection: &ConnectionInfo,
    parts: http::request::Parts,
    forwarded: Forwarded<'_>,
    trace_id: TraceId,
) -> Result<Request<crate::status::Body>, PathError> {
    let mut headers = parts.headers;
    let upgrade_protocol = headers::strip_hop_by_hop(&mut headers);
    let client_traceparent = headers
        .get(trace::TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    headers::remove_spoofable(&mut headers);
    headers.insert(headers::FORWARDED_FOR, connection.forwarded_for.clone());
    headers.remove(header::HOST);
    credentials(proxy.settings.auth, connection, &forwarded, &mut headers)?;
    stamp(&mut headers, trace_id, client_traceparent.as_deref());
    if let Some(body) = &forwarded.body {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let path_and_query = match &forwarded.query {
        Some(q) if !q.is_empty() => format!("{}?{q}", forwarded.path),
        _ => forwarded.path.to_string(),
    };
    let mut builder = Request::builder()
        .method(parts.method)
        .uri(proxy.upstream.uri_for(&path_and_query));
    if forwarded.upgrade {
        builder = builder.version(http::Version::HTTP_11);
    }
    let mut request = builder
        .body(full_body(forwarded.body.unwrap_or_default()))
        .map_err(PathError::UpstreamRequest)?;
    *request.headers_mut() = headers;
    if let Some(protocol) = upgrade_protocol.filter(|_| forwarded.upgrade) {
        let headers = request.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    Ok(request)
}

/// The auth mode's credentials: the client's own `Authorization` in passthrough mode;
/// otherwise pathgate's, with the client's `Impersonate-*` removed, and in impersonate
/// mode the verified certificate's user and groups.
fn credentials(
    auth: AuthMode,
    connection: &ConnectionInfo,
    forwarded: &Forwarded<'_>,
    headers: &mut HeaderMap,
) -> Result<(), PathError> {
    if auth != AuthMode::Passthrough {
        headers.remove(header::AUTHORIZATION);
        headers::remove_impersonation(headers);
        if let Some(value) = &forwarded.authorization {
            headers.insert(header::AUTHORIZATION, value.clone());
        }
    }
    if auth == AuthMode::Impersonate {
        let (user, groups) = connection
            .certificate
            .as_ref()
            .expect("impersonate mode checked the certificate before");
        let value = HeaderValue::from_str(user).map_err(|_| PathError::CertificateName)?;
        headers.insert("impersonate-user", value);
        for group in groups {
            if let Ok(value) = HeaderValue::from_str(group) {
                headers.append("impersonate-group", value);
            }
        }
    }
    // Over HTTP/2, HPACK would add every header to the connection's shared compression
    // table. Credentials must never be (RFC 7541 §7.1.3: many clients share the upstream
    // connection in passthrough mode).
    if let Some(value) = headers.get_mut(header::AUTHORIZATION) {
        value.set_sensitive(true);
    }
    Ok(())
}

/// The trace stamps: `X-Execution-Trace`, `Audit-ID` and a `traceparent` continuing the
/// client's. They are never sent twice, so HPACK indexing them would only evict entries
/// that would have been reused.
fn stamp(headers: &mut HeaderMap, trace_id: TraceId, client_traceparent: Option<&str>) {
    let trace_hex = trace_id.to_hex();
    let mut trace_value = HeaderValue::from_str(&trace_hex).expect("hex is a header value");
    trace_value.set_sensitive(true);
    headers.insert(trace::EXECUTION_TRACE_HEADER, trace_value.clone());
    headers.insert(trace::AUDIT_ID_HEADER, trace_value);
    if let Ok(mut value) = HeaderValue::from_str(&trace::traceparent(client_traceparent, trace_id))
    {
        value.set_sensitive(true);
        headers.insert(trace::TRACEPARENT_HEADER, value);
    }
}
