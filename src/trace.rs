//! Execution trace ids and W3C trace context.
//!
//! Owns: the id stamped on every forwarded request as `X-Execution-Trace` and `Audit-ID`
//! (so the ledger joins the apiserver's audit log), and the `traceparent` pathgate sends.
//! Client-sent values for these headers are never adopted as the execution id: a client
//! could otherwise make two requests share one audit record. Ids come from a
//! cryptographically secure generator: one observed id does not predict another.

use std::fmt;

use http::HeaderName;

// `HeaderName`s rather than strings: inserting by a string parses the name again and
// copies it into a fresh allocation on every request.

/// The header pathgate stamps on requests and responses.
pub const EXECUTION_TRACE_HEADER: HeaderName = HeaderName::from_static("x-execution-trace");
/// The header the apiserver adopts as the audit event's `auditID`.
pub const AUDIT_ID_HEADER: HeaderName = HeaderName::from_static("audit-id");
/// W3C trace context.
pub const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static("traceparent");

/// A 128-bit execution id, written as 32 lowercase hex digits.
///
/// 32 hex digits satisfy the apiserver's `Audit-ID` rule (alphanumerics and dashes, not
/// starting or ending with a dash, at most 256 characters) and are a valid W3C trace-id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// A new random id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        fill_random(&mut bytes);
        // An all-zero trace-id is invalid in W3C trace context.
        if bytes == [0; 16] {
            bytes[15] = 1;
        }
        Self(bytes)
    }

    /// The id as 32 hex digits.
    pub fn to_hex(self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// Lowercase hex of `bytes` (on every request, so without a `format!` per byte).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends the lowercase hex of `bytes` to `out`: each byte's two digits are copied from
/// a table into a stack buffer, appended a chunk at a time (trace ids are written out
/// several times per request).
fn push_hex(out: &mut String, bytes: &[u8]) {
    const PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut pairs = [[0u8; 2]; 256];
        let mut byte = 0;
        while byte < 256 {
            pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0x0f]];
            byte += 1;
        }
        pairs
    };
    let mut buffer = [0u8; 64];
    for chunk in bytes.chunks(buffer.len() / 2) {
        let digits = &mut buffer[..chunk.len() * 2];
        for (pair, byte) in digits.chunks_exact_mut(2).zip(chunk) {
            pair.copy_from_slice(&PAIRS[usize::from(*byte)]);
        }
        out.push_str(std::str::from_utf8(digits).expect("hex digits are ASCII"));
    }
}

/// Fills `bytes` from the thread's cryptographically secure generator (`rand`'s
/// `ThreadRng`: ChaCha12 seeded from the operating system and reseeded every 64 KiB), so a
/// request costs no system call and an observed id tells nothing about the next ones. The
/// ids are sent in clear headers and land in the apiserver's audit log: with a predictable
/// generator (the SplitMix64 sequence pathgate used before), one id gave away the state
/// and every later id of that thread.
fn fill_random(bytes: &mut [u8]) {
    use rand::RngCore;
    rand::rng().fill_bytes(bytes);
}

/// The `traceparent` to send upstream.
///
/// A well-formed client `traceparent` keeps its trace-id (so the agent's own tracing
/// continues through pathgate) with a new span id for pathgate's hop; anything else is
/// replaced by one built on the execution id.
pub fn traceparent(client: Option<&str>, execution: TraceId) -> String {
    let mut span = [0u8; 8];
    fill_random(&mut span);
    if span == [0; 8] {
        span[7] = 1;
    }
    // "00-" trace-id "-" span-id "-01": 55 characters.
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    match client.and_then(parse_traceparent) {
        Some(trace_id) => out.push_str(trace_id),
        None => push_hex(&mut out, &execution.0),
    }
    out.push('-');
    push_hex(&mut out, &span);
    out.push_str("-01");
    out
}

/// The trace-id of a valid version-00 `traceparent`.
fn parse_traceparent(value: &str) -> Option<&str> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let [version, trace_id, parent_id, flags] = parts.as_slice() else {
        return None;
    };
    let is_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = *version == "00"
        && is_hex(trace_id, 32)
        && is_hex(parent_id, 16)
        && is_hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.bytes().any(|b| b != b'0');
    valid.then_some(*trace_id)
}

/// Whether the apiserver would adopt `value` as an `Audit-ID`.
pub fn is_valid_audit_id(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() >= 2
        && bytes.len() <= 256
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_are_valid_audit_ids_and_unique() {
        let a = TraceId::random();
        let b = TraceId::random();
        assert_ne!(a, b);
        assert_eq!(a.to_hex().len(), 32);
        assert!(is_valid_audit_id(&a.to_hex()));
    }

    #[test]
    fn hex_matches_the_formatter() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff, 0x10];
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&bytes), expected);
        // Longer than one stack buffer of digits, and not a multiple of it.
        let long: Vec<u8> = (0..=255u8).chain(0..7).collect();
        let expected: String = long.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&long), expected);
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn the_traceparent_sent_is_well_formed_version_00() {
        let execution = TraceId::random();
        for client in [
            None,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ] {
            let sent = traceparent(client, execution);
            assert_eq!(sent.len(), 55, "{sent}");
            assert!(parse_traceparent(&sent).is_some(), "{sent}");
            assert!(sent.ends_with("-01"), "{sent}");
        }
        let sent = traceparent(None, execution);
        assert_eq!(parse_traceparent(&sent), Some(execution.to_hex().as_str()));
    }

    #[test]
    fn ids_do_not_repeat_across_many_draws_and_threads() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(TraceId::random()));
        }
        let other: Vec<TraceId> =
            std::thread::spawn(|| (0..1000).map(|_| TraceId::random()).collect())
                .join()
                .unwrap();
        assert!(
            other.into_iter().all(|id| seen.insert(id)),
            "another thread has its own seed"
        );
    }

    #[test]
    fn audit_id_rule_matches_the_apiserver() {
        assert!(is_valid_audit_id("abc-123"));
        assert!(!is_valid_audit_id("-abc"));
        assert!(!is_valid_audit_id("abc-"));
        assert!(!is_valid_audit_id("a b"));
        assert!(!is_valid_audit_id(&"a".repeat(257)));
    }

    #[test]
    fn valid_client_traceparent_keeps_its_trace_id() {
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sent = traceparent(Some(client), TraceId::random());
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(
            !sent.contains("00f067aa0ba902b7"),
            "pathgate's hop gets its own span id"
        );
    }

    #[test]
    fn malformed_client_traceparent_is_replaced() {
        let execution = TraceId::random();
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            let sent = traceparent(Some(bad), execution);
            assert!(
                sent.starts_with(&format!("00-{execution}-")),
                "{bad} -> {sent}"
            );
        }
    }
}
