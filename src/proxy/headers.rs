//! Header hygiene: hop-by-hop headers (RFC 9110 §7.6.1), headers a client must not set,
//! and the client address pathgate passes on (`X-Forwarded-For`).

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
    // Most requests carry none of them: one look at each name present costs less than a
    // removal (a hash and a probe) of each name that might be. Every name `Connection`
    // lists is removed only with `Connection`, itself hop-by-hop.
    let carries_any = headers
        .keys()
        .any(|name| name == header::UPGRADE || HOP_BY_HOP.contains(name));
    if !carries_any {
        return None;
    }
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

/// Headers that name the client's address to whoever reads them after a proxy. The
/// apiserver puts every address of `X-Forwarded-For`, then `X-Real-Ip`, before the
/// connection's own in an audit event's `sourceIPs`, from any client (apimachinery's
/// `utilnet.SourceIPs`: there is no list of trusted proxies), and its proxy subresources pass
/// them on to pods and services. The others are spellings other proxies read.
const CLIENT_ADDRESS: [&str; 8] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
];

/// Whether a client-sent header is one pathgate must not pass on: headers pathgate sets
/// itself (execution trace, `Audit-ID`, W3C trace context, its own control headers), every
/// `X-Forwarded-*` and client-address header ([`CLIENT_ADDRESS`]), and the apiserver's
/// default request-header authentication headers (`X-Remote-User`, `X-Remote-Group`,
/// `X-Remote-Extra-*`), which it trusts from a front proxy's client certificate, an
/// identity pathgate may hold in sidecar mode.
fn is_spoofable(name: &str) -> bool {
    name.starts_with("x-pathgate-")
        || name.starts_with("x-forwarded-")
        || name.starts_with("x-remote-")
        || name == crate::trace::EXECUTION_TRACE_HEADER.as_str()
        || name == crate::trace::AUDIT_ID_HEADER.as_str()
        || name == "traceparent"
        || name == "tracestate"
        || CLIENT_ADDRESS.contains(&name)
}

/// Removes every header a client could spoof (see [`is_spoofable`]).
pub fn remove_spoofable(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_spoofable(name.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// The header that carries the client's address ([`forwarded_for`]).
pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The `X-Forwarded-For` pathgate sends: the client's address, the one it saw on the
/// connection. The apiserver's audit `sourceIPs` then reads `[client, pathgate]`.
pub fn forwarded_for(peer: std::net::SocketAddr) -> http::HeaderValue {
    http::HeaderValue::from_str(&peer.ip().to_canonical().to_string())
        .expect("an IP address is a header value")
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
    fn each_hop_by_hop_header_alone_is_removed_and_others_are_kept() {
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static("x"));
            headers.insert("accept", HeaderValue::from_static("application/json"));
            headers.append("accept", HeaderValue::from_static("*/*"));
            let upgrade = strip_hop_by_hop(&mut headers);
            assert_eq!(upgrade.is_some(), name == header::UPGRADE, "{name}");
            assert!(!headers.contains_key(name), "{name}");
            assert_eq!(headers.get_all("accept").iter().count(), 2, "{name}");
        }
        let mut plain = HeaderMap::new();
        plain.insert("authorization", HeaderValue::from_static("Bearer t"));
        plain.insert("user-agent", HeaderValue::from_static("kubectl/v1.32"));
        let before = plain.clone();
        assert!(strip_hop_by_hop(&mut plain).is_none());
        assert_eq!(plain, before);
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

    #[test]
    fn every_spelling_of_a_client_address_is_removed() {
        let spoofed = [
            "X-Forwarded-For",
            "x-forwarded-host",
            "X-Forwarded-Proto",
            "X-Forwarded-Port",
            "X-Forwarded-Prefix",
            "X-Forwarded-Server",
            "X-Real-IP",
            "Forwarded",
            "X-Client-IP",
            "True-Client-IP",
            "X-Cluster-Client-IP",
            "CF-Connecting-IP",
            "Fastly-Client-IP",
            "X-Original-Forwarded-For",
            "X-Remote-User",
            "X-Remote-Group",
            "X-Remote-Extra-Scopes",
        ];
        let mut headers = HeaderMap::new();
        for name in spoofed {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("203.0.113.7"),
            );
        }
        headers.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("198.51.100.2"));
        headers.insert("user-agent", HeaderValue::from_static("kubectl/v1.32"));
        headers.insert("x-request-id", HeaderValue::from_static("kept"));
        remove_spoofable(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["user-agent", "x-request-id"]);
    }

    #[test]
    fn the_forwarded_for_pathgate_sends_is_the_peer_address() {
        assert_eq!(forwarded_for("10.1.2.3:5555".parse().unwrap()), "10.1.2.3");
        assert_eq!(
            forwarded_for("[2001:db8::1]:443".parse().unwrap()),
            "2001:db8::1"
        );
        assert_eq!(
            forwarded_for("[::ffff:10.1.2.3]:443".parse().unwrap()),
            "10.1.2.3",
            "an IPv4 client on a dual-stack socket is named as the apiserver parses it"
        );
    }
}
