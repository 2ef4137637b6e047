//! The vocabulary of failures: which side of the proxy failed ([`Side`]) and what kind of
//! failure it was ([`ErrorKind`]).
//!
//! Owns: the closed sets and their names, as the ledger schema (`error.side`,
//! `error.kind`), the Kubernetes `Status` pathgate sends (`crate::status`) and the
//! metrics' `kind` label spell them. Pure: used by those three, depends on none of them.

use serde::{Deserialize, Serialize};

/// Which side of the proxy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The client sent something unusable or went away.
    Client,
    /// The apiserver could not be reached or broke the exchange.
    Upstream,
    /// pathgate itself failed (including the ledger refusing an intent).
    Pathgate,
}

impl Side {
    /// The lowercase name used in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Pathgate => "pathgate",
        }
    }
}

/// A closed set of failure kinds (also the `kind` label of upstream error metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// TCP connect failed or was refused.
    Connect,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// A deadline passed.
    Timeout,
    /// The connection was reset or closed mid-exchange.
    Reset,
    /// An HTTP protocol error.
    Protocol,
    /// A body exceeded its limit.
    TooLarge,
    /// The ledger could not make an intent durable.
    Ledger,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind: the closed label set of `pathgate_upstream_errors_total`.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Protocol,
        ErrorKind::TooLarge,
        ErrorKind::Ledger,
        ErrorKind::Other,
    ];

    /// The snake_case name used in the schema and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Ledger => "ledger",
            ErrorKind::Other => "other",
        }
    }
}
