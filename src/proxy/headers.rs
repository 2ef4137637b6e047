//! Header hygiene: hop-by-hop headers (RFC 9110 §7.6.1) and headers a client must not set.

use http::header::{self, HeaderMap, HeaderName};

/// Hop-by-hop headers, always removed before forwarding in either direction (except the
/// upgrade pair on an upgrade, which the proxy re-adds itself). `HeaderName`s rather than
/// strings: removing by a string parses and validates the name again on every request.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including every header named in `Connection`, and
/// `Upgrade` (returned, so an upgrade can be carried on explicitly).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<http::HeaderValue> {
    let upgrade = headers.remove(header::UPGRADE);
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    upgrade
}

/// Whether the request asks for a protocol upgrade (SPDY or WebSocket).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Whether the client sent any `Impersonate-*` header.
pub fn has_impersonation(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name.as_str().starts_with("impersonate-"))
}

/// Removes every `Impersonate-*` header.
pub fn remove_impersonation(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Removes headers pathgate sets itself, so a client cannot spoof them: the execution
/// trace, `Audit-ID`, W3C trace context, and pathgate's own control headers.
pub fn remove_spoofable(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with("x-pathgate-")
                || name == crate::trace::EXECUTION_TRACE_HEADER
                || name == crate::trace::AUDIT_ID_HEADER
                || name == "traceparent"
                || name == "tracestate"
        })
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("accept", HeaderValue::from_static("application/json"));
        headers.insert("accept-encoding", HeaderValue::from_static("gzip"));
        assert!(strip_hop_by_hop(&mut headers).is_none());
        assert_eq!(headers.len(), 2);
        assert!(headers.contains_key("accept"));
        assert!(
            headers.contains_key("accept-encoding"),
            "compression passes through"
        );
    }

    #[test]
    fn upgrade_is_detected_and_returned() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("Upgrade"));
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&headers));
        assert_eq!(strip_hop_by_hop(&mut headers).unwrap(), "websocket");
        assert!(!is_upgrade(&headers));
    }

    #[test]
    fn impersonation_and_spoofable_headers_are_found_and_removed() {
        let mut headers = HeaderMap::new();
        headers.insert("impersonate-user", HeaderValue::from_static("admin"));
        headers.insert("impersonate-extra-scopes", HeaderValue::from_static("x"));
        headers.insert("audit-id", HeaderValue::from_static("spoofed"));
        headers.insert("x-execution-trace", HeaderValue::from_static("spoofed"));
        headers.insert("x-pathgate-confirm", HeaderValue::from_static("t"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        assert!(has_impersonation(&headers));
        remove_impersonation(&mut headers);
        remove_spoofable(&mut headers);
        assert!(!has_impersonation(&headers));
        assert_eq!(headers.len(), 1);
    }
}
