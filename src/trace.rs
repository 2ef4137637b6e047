//! Execution trace ids and W3C trace context.
//!
//! Owns: the id stamped on every forwarded request as `X-Execution-Trace` and `Audit-ID`
//! (so the ledger joins the apiserver's audit log), and the `traceparent` pathgate sends.
//! Client-sent values for these headers are never adopted as the execution id: a client
//! could otherwise make two requests share one audit record. Ids come from a
//! cryptographically secure generator: one observed id does not predict another.

use std::fmt;

/// The header pathgate stamps on requests and responses.
pub const EXECUTION_TRACE_HEADER: &str = "x-execution-trace";
/// The header the apiserver adopts as the audit event's `auditID`.
pub const AUDIT_ID_HEADER: &str = "audit-id";
/// W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

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
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
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
    let trace_id = client
        .and_then(parse_traceparent)
        .unwrap_or_else(|| execution.to_hex());
    format!("00-{trace_id}-{}-01", hex(&span))
}

/// The trace-id of a valid version-00 `traceparent`.
fn parse_traceparent(value: &str) -> Option<String> {
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
    valid.then(|| trace_id.to_string())
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
