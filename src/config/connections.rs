//! The client-connection keys of `server:`: timeouts and connection limits, their bounds and
//! defaults, and the frozen [`ConnectionSettings`] the listener runs with.
//!
//! Owns: what each key means, the range it accepts and why, the defaults (chosen to protect
//! a laptop or a sidecar from one client holding every file descriptor, without closing
//! anything kubectl or client-go keep open on purpose), and the cross-key check. Does not
//! own: enforcing them (`proxy::connections` does) nor the command-line flags (their
//! values reach the keys through [`super::Overrides`] before validation).

use std::time::Duration;

use super::file::ServerFile;
use super::validate::ValidationError;

/// One key: its name in `server:`, the flag that overrides it, its range and default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The key under `server:`.
    pub key: &'static str,
    /// The `pathgate serve` flag that overrides it.
    pub flag: &'static str,
    pub min: u64,
    pub max: u64,
    pub default: u64,
}

/// TLS handshake: a client that connects and never finishes the handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Bound = Bound {
    key: "tls_handshake_timeout_seconds",
    flag: "--tls-handshake-timeout-seconds",
    min: 1,
    max: 300,
    default: 10,
};
/// From the handshake to the first request's headers, and (HTTP/1) for each request's
/// headers: an idle or slow-header client.
pub const HEADER_READ_TIMEOUT: Bound = Bound {
    key: "header_read_timeout_seconds",
    flag: "--header-read-timeout-seconds",
    min: 1,
    max: 600,
    default: 30,
};
/// A connection with no request in flight (keep-alive between requests, HTTP/1 and HTTP/2).
/// Above client-go's own 90 s idle timeout, so the client usually closes first.
pub const IDLE_TIMEOUT: Bound = Bound {
    key: "idle_timeout_seconds",
    flag: "--idle-timeout-seconds",
    min: 1,
    max: 86_400,
    default: 120,
};
/// Reading a mutation's body (which pathgate buffers before deciding): a stalled body.
pub const BODY_READ_TIMEOUT: Bound = Bound {
    key: "body_read_timeout_seconds",
    flag: "--body-read-timeout-seconds",
    min: 1,
    max: 3_600,
    default: 60,
};
/// HTTP/2 PING interval: finds dead peers, also under long watches. At least 2: the
/// timeout (at least 1) must be below it.
pub const HTTP2_KEEPALIVE_INTERVAL: Bound = Bound {
    key: "http2_keepalive_interval_seconds",
    flag: "--http2-keepalive-interval-seconds",
    min: 2,
    max: 3_600,
    default: 30,
};
/// How long a PING may go unanswered before the connection is closed.
pub const HTTP2_KEEPALIVE_TIMEOUT: Bound = Bound {
    key: "http2_keepalive_timeout_seconds",
    flag: "--http2-keepalive-timeout-seconds",
    min: 1,
    max: 600,
    default: 20,
};
/// Streams one HTTP/2 connection may have open. 250 is Go's (and so the apiserver's)
/// default; fewer than 16 would serialise an ordinary kubectl or informer client.
pub const HTTP2_MAX_CONCURRENT_STREAMS: Bound = Bound {
    key: "http2_max_concurrent_streams",
    flag: "--http2-max-concurrent-streams",
    min: 16,
    max: 10_000,
    default: 250,
};
/// Client connections open at once, from everyone.
pub const MAX_CONNECTIONS: Bound = Bound {
    key: "max_connections",
    flag: "--max-connections",
    min: 1,
    max: 1_000_000,
    default: 1024,
};
/// Client connections open at once from one IP address.
pub const MAX_CONNECTIONS_PER_PEER: Bound = Bound {
    key: "max_connections_per_peer",
    flag: "--max-connections-per-peer",
    min: 1,
    max: 1_000_000,
    default: 256,
};

/// Every key of this module, in the order of `docs/config.md`.
pub const BOUNDS: [Bound; 9] = [
    TLS_HANDSHAKE_TIMEOUT,
    HEADER_READ_TIMEOUT,
    IDLE_TIMEOUT,
    BODY_READ_TIMEOUT,
    HTTP2_KEEPALIVE_INTERVAL,
    HTTP2_KEEPALIVE_TIMEOUT,
    HTTP2_MAX_CONCURRENT_STREAMS,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_PEER,
];

/// Checks one value against its bound; `name` is how the error names it (`server.<key>`
/// for the file, the flag for the command line).
pub fn check_value(bound: &Bound, name: &str, value: u64) -> Result<u64, ValidationError> {
    if value < bound.min || value > bound.max {
        let why = if value == 0 {
            " (0 would not turn the limit off: it would refuse or close everything)"
        } else {
            ""
        };
        return Err(ValidationError {
            key: name.to_string(),
            reason: format!(
                "{value} is out of range; use {} to {}{why}",
                bound.min, bound.max
            ),
        });
    }
    Ok(value)
}

impl ServerFile {
    /// The connection keys of the section in [`BOUNDS`] order, mutably (for overrides).
    pub(super) fn connection_slots(&mut self) -> [&mut Option<u64>; 9] {
        [
            &mut self.tls_handshake_timeout_seconds,
            &mut self.header_read_timeout_seconds,
            &mut self.idle_timeout_seconds,
            &mut self.body_read_timeout_seconds,
            &mut self.http2_keepalive_interval_seconds,
            &mut self.http2_keepalive_timeout_seconds,
            &mut self.http2_max_concurrent_streams,
            &mut self.max_connections,
            &mut self.max_connections_per_peer,
        ]
    }
}

/// The connection keys as written (file, then flags over it); `None` is the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionKeys {
    pub tls_handshake_timeout_seconds: Option<u64>,
    pub header_read_timeout_seconds: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    pub body_read_timeout_seconds: Option<u64>,
    pub http2_keepalive_interval_seconds: Option<u64>,
    pub http2_keepalive_timeout_seconds: Option<u64>,
    pub http2_max_concurrent_streams: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_connections_per_peer: Option<u64>,
}

impl ConnectionKeys {
    /// The values in [`BOUNDS`] order, mutably (for the flag merge).
    pub fn slots(&mut self) -> [(&'static Bound, &mut Option<u64>); 9] {
        [
            (
                &TLS_HANDSHAKE_TIMEOUT,
                &mut self.tls_handshake_timeout_seconds,
            ),
            (&HEADER_READ_TIMEOUT, &mut self.header_read_timeout_seconds),
            (&IDLE_TIMEOUT, &mut self.idle_timeout_seconds),
            (&BODY_READ_TIMEOUT, &mut self.body_read_timeout_seconds),
            (
                &HTTP2_KEEPALIVE_INTERVAL,
                &mut self.http2_keepalive_interval_seconds,
            ),
            (
                &HTTP2_KEEPALIVE_TIMEOUT,
                &mut self.http2_keepalive_timeout_seconds,
            ),
            (
                &HTTP2_MAX_CONCURRENT_STREAMS,
                &mut self.http2_max_concurrent_streams,
            ),
            (&MAX_CONNECTIONS, &mut self.max_connections),
            (
                &MAX_CONNECTIONS_PER_PEER,
                &mut self.max_connections_per_peer,
            ),
        ]
    }

    /// Reads and range-checks the keys of a `server:` section.
    pub(super) fn from_file(file: &ServerFile) -> Result<Self, ValidationError> {
        let mut keys = ConnectionKeys {
            tls_handshake_timeout_seconds: file.tls_handshake_timeout_seconds,
            header_read_timeout_seconds: file.header_read_timeout_seconds,
            idle_timeout_seconds: file.idle_timeout_seconds,
            body_read_timeout_seconds: file.body_read_timeout_seconds,
            http2_keepalive_interval_seconds: file.http2_keepalive_interval_seconds,
            http2_keepalive_timeout_seconds: file.http2_keepalive_timeout_seconds,
            http2_max_concurrent_streams: file.http2_max_concurrent_streams,
            max_connections: file.max_connections,
            max_connections_per_peer: file.max_connections_per_peer,
        };
        for (bound, value) in keys.slots() {
            if let Some(value) = value {
                check_value(bound, &format!("server.{}", bound.key), *value)?;
            }
        }
        Ok(keys)
    }

    /// Writes the keys back into a `server:` section (effective configuration).
    pub(super) fn to_file(self, file: &mut ServerFile) {
        file.tls_handshake_timeout_seconds = self.tls_handshake_timeout_seconds;
        file.header_read_timeout_seconds = self.header_read_timeout_seconds;
        file.idle_timeout_seconds = self.idle_timeout_seconds;
        file.body_read_timeout_seconds = self.body_read_timeout_seconds;
        file.http2_keepalive_interval_seconds = self.http2_keepalive_interval_seconds;
        file.http2_keepalive_timeout_seconds = self.http2_keepalive_timeout_seconds;
        file.http2_max_concurrent_streams = self.http2_max_concurrent_streams;
        file.max_connections = self.max_connections;
        file.max_connections_per_peer = self.max_connections_per_peer;
    }

    /// Cross-key checks, run again after the flags are merged. A per-peer limit left at
    /// its default follows a lower global limit instead of being refused.
    pub fn check(&self) -> Result<(), ValidationError> {
        let settings = self.settings();
        if self.max_connections_per_peer.is_some()
            && settings.max_connections_per_peer > settings.max_connections
        {
            return Err(ValidationError {
                key: "server.max_connections_per_peer".into(),
                reason: format!(
                    "{} is above max_connections ({}): one peer could take every connection",
                    settings.max_connections_per_peer, settings.max_connections
                ),
            });
        }
        if settings.http2_keepalive_timeout >= settings.http2_keepalive_interval {
            let default = if self.http2_keepalive_timeout_seconds.is_none() {
                " (the default)"
            } else {
                ""
            };
            return Err(ValidationError {
                key: "server.http2_keepalive_timeout_seconds".into(),
                reason: format!(
                    "{}s{default} is not below http2_keepalive_interval_seconds ({}s): a PING \
                     must be answered before the next one is due",
                    settings.http2_keepalive_timeout.as_secs(),
                    settings.http2_keepalive_interval.as_secs()
                ),
            });
        }
        Ok(())
    }

    /// The settings with defaults filled in.
    pub fn settings(&self) -> ConnectionSettings {
        let seconds =
            |value: Option<u64>, bound: Bound| Duration::from_secs(value.unwrap_or(bound.default));
        let max_connections = self.max_connections.unwrap_or(MAX_CONNECTIONS.default) as usize;
        ConnectionSettings {
            tls_handshake_timeout: seconds(
                self.tls_handshake_timeout_seconds,
                TLS_HANDSHAKE_TIMEOUT,
            ),
            header_read_timeout: seconds(self.header_read_timeout_seconds, HEADER_READ_TIMEOUT),
            idle_timeout: seconds(self.idle_timeout_seconds, IDLE_TIMEOUT),
            body_read_timeout: seconds(self.body_read_timeout_seconds, BODY_READ_TIMEOUT),
            http2_keepalive_interval: seconds(
                self.http2_keepalive_interval_seconds,
                HTTP2_KEEPALIVE_INTERVAL,
            ),
            http2_keepalive_timeout: seconds(
                self.http2_keepalive_timeout_seconds,
                HTTP2_KEEPALIVE_TIMEOUT,
            ),
            http2_max_concurrent_streams: self
                .http2_max_concurrent_streams
                .unwrap_or(HTTP2_MAX_CONCURRENT_STREAMS.default)
                as u32,
            max_connections,
            max_connections_per_peer: match self.max_connections_per_peer {
                Some(limit) => limit as usize,
                None => (MAX_CONNECTIONS_PER_PEER.default as usize).min(max_connections),
            },
        }
    }
}

/// Client-connection timeouts and limits, frozen at start (see [`BOUNDS`] for each one's
/// meaning and default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionKeys::default().settings()
    }
}
