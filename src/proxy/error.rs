//! Every way the request path can end without relaying the apiserver's answer, and the one
//! mapping from each to the Kubernetes `Status` the client sees and the side and kind the
//! ledger records ([`PathError::status`]).
//!
//! Owns: the messages (each names what to do next) and their HTTP codes. Does not own:
//! the `Status` wire shape (`crate::status`) or the causes' own errors (session, classify,
//! upstream, ledger), which the variants keep.

use std::time::Duration;

use http::StatusCode;

use crate::classify::ClassifyError;
use crate::ledger::LedgerError;
use crate::session::SessionError;
use crate::status::{ErrorKind, Side, Status};
use crate::upstream::UpstreamError;

/// Why pathgate answered a request itself.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// pathgate is draining: new requests go to the next instance.
    #[error("pathgate is shutting down; retry against the new instance")]
    Draining,
    /// The `/s/<id>` prefix or the session header names an invalid session id.
    #[error("pathgate: {0}")]
    Session(#[from] SessionError),
    /// The path or query cannot be read exactly as the apiserver would.
    #[error("pathgate: {0}")]
    Classify(#[from] ClassifyError),
    /// Sidecar mode with a client token file: neither a certificate nor an accepted token.
    #[error("pathgate: present a client certificate or a token from the client token file")]
    ClientNotAuthenticated,
    /// Impersonate mode without a verified client certificate to name the user.
    #[error("pathgate: impersonate mode needs a verified client certificate; configure client-certificate in your kubeconfig")]
    CertificateRequired,
    /// pathgate's own upstream credentials could not be obtained (exec plugin, token file).
    #[error("pathgate: {0}")]
    Credentials(#[source] UpstreamError),
    /// The mutation body did not arrive within `server.body_read_timeout_seconds`.
    #[error("pathgate: the request body did not arrive within {}s (server.body_read_timeout_seconds)", .0.as_secs())]
    BodyTimeout(Duration),
    /// The mutation body is larger than `server.max_body_bytes`.
    #[error(
        "pathgate: request body is larger than the limit of {0} bytes (server.max_body_bytes)"
    )]
    BodyTooLarge(usize),
    /// The client's body broke off.
    #[error("pathgate: reading the request body failed: {0}")]
    BodyRead(#[source] hyper::Error),
    /// The body cannot be read as the apiserver would read it (the analysis refused it):
    /// forwarding it would pass what no rule could check.
    #[error("{0}")]
    Unreadable(String),
    /// A rule denied the request (or asks for a confirmation); the message names the rule
    /// and how to proceed.
    #[error("{0}")]
    Denied(String),
    /// The session is past one of its budgets (PG019) and no other rule refuses the
    /// request: `429` with `Retry-After` when waiting frees a slot of the window.
    #[error("{message}")]
    BudgetExceeded {
        /// Names PG019, the budget, its limit and what the session has used.
        message: String,
        /// Seconds until the window frees a slot; `None` for a budget of the whole session.
        retry_after_seconds: Option<u64>,
    },
    /// Client-sent `Impersonate-*` headers under pathgate's own credentials (PG017).
    #[error(
        "pathgate denied this request: PG017 impersonation: {}",
        crate::policy::IMPERSONATION_REFUSAL
    )]
    Impersonation,
    /// With `ledger.on_failure: fail-closed-mutations`, the intent could not be made durable.
    #[error("pathgate: the ledger could not record this mutation's intent ({0}); it was refused before reaching the apiserver (ledger.on_failure: fail-closed-mutations)")]
    Intent(#[source] LedgerError),
    /// Impersonate mode: the certificate's CN cannot be sent as `Impersonate-User`.
    #[error("pathgate: client certificate CN is not a valid header value")]
    CertificateName,
    /// The upstream request could not be built from what the client sent.
    #[error("pathgate: cannot build the upstream request: {0}")]
    UpstreamRequest(#[source] http::Error),
    /// No response headers from the apiserver within `upstream.response_header_timeout`.
    #[error("pathgate: the apiserver did not answer within {}s", .0.as_secs())]
    UpstreamTimeout(Duration),
    /// TLS with the apiserver failed (handshake, certificate); the error chain follows.
    #[error("pathgate: TLS with the apiserver failed: {0}")]
    UpstreamTls(String),
    /// The apiserver could not be connected to.
    #[error("pathgate: the apiserver is unreachable: {0}")]
    UpstreamUnreachable(String),
    /// The connection to the apiserver failed after it was made.
    #[error("pathgate: the apiserver connection failed: {0}")]
    UpstreamConnection(String),
    /// `101 Switching Protocols` on a request that did not ask for an upgrade.
    #[error("pathgate: the apiserver switched protocols on a request that did not ask to")]
    UnrequestedUpgrade,
    /// The task serving a mutation ended without handing over an answer (a panic).
    #[error("pathgate: the request's task ended without an answer")]
    TaskLost,
}

impl PathError {
    /// The one mapping: the `Status` the client receives, with the side that failed and the
    /// failure's kind as the ledger records them.
    pub fn status(&self) -> Status {
        use ErrorKind as K;
        use Side::{Client, Pathgate, Upstream};
        let (code, reason, side, kind) = match self {
            PathError::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                Pathgate,
                K::Other,
            ),
            PathError::Session(_)
            | PathError::Classify(_)
            | PathError::Unreadable(_)
            | PathError::CertificateName
            | PathError::UpstreamRequest(_)
            | PathError::BodyRead(_) => (StatusCode::BAD_REQUEST, "BadRequest", Client, K::Other),
            PathError::ClientNotAuthenticated | PathError::CertificateRequired => {
                (StatusCode::UNAUTHORIZED, "Unauthorized", Client, K::Other)
            }
            PathError::Credentials(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                Pathgate,
                K::Other,
            ),
            PathError::BodyTimeout(_) => {
                (StatusCode::REQUEST_TIMEOUT, "Timeout", Client, K::Timeout)
            }
            PathError::BodyTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                Client,
                K::TooLarge,
            ),
            PathError::Denied(_) | PathError::Impersonation => {
                (StatusCode::FORBIDDEN, "Forbidden", Client, K::Other)
            }
            PathError::BudgetExceeded { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                Client,
                K::Other,
            ),
            PathError::Intent(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                Pathgate,
                K::Ledger,
            ),
            PathError::UpstreamTimeout(_) => {
                (StatusCode::GATEWAY_TIMEOUT, "Timeout", Upstream, K::Timeout)
            }
            PathError::UpstreamTls(_) => {
                (StatusCode::BAD_GATEWAY, "InternalError", Upstream, K::Tls)
            }
            PathError::UpstreamUnreachable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                Upstream,
                K::Connect,
            ),
            PathError::UpstreamConnection(_) | PathError::UnrequestedUpgrade => (
                StatusCode::BAD_GATEWAY,
                "InternalError",
                Upstream,
                K::Protocol,
            ),
            PathError::TaskLost => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                Pathgate,
                K::Other,
            ),
        };
        let retry_after_seconds = match self {
            PathError::BudgetExceeded {
                retry_after_seconds,
                ..
            } => *retry_after_seconds,
            _ => None,
        };
        Status {
            code,
            reason,
            message: self.to_string(),
            side,
            kind,
            retry_after_seconds,
        }
    }

    /// Maps a failure of the upstream client: TLS 502, unreachable 503, anything else 502.
    /// The message keeps the whole error chain: hyper's top error says little.
    pub fn upstream(error: &hyper_util::client::legacy::Error) -> PathError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut chain = Vec::new();
        let mut tls = false;
        while let Some(e) = source {
            chain.push(e.to_string());
            tls |= e.downcast_ref::<rustls::Error>().is_some()
                || e.downcast_ref::<std::io::Error>().is_some_and(io_is_tls);
            source = e.source();
        }
        let detail = chain.join(": ");
        if tls {
            PathError::UpstreamTls(detail)
        } else if error.is_connect() {
            PathError::UpstreamUnreachable(detail)
        } else {
            PathError::UpstreamConnection(detail)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(error: PathError) -> (u16, &'static str, Side, ErrorKind) {
        let status = error.status();
        (
            status.code.as_u16(),
            status.reason,
            status.side,
            status.kind,
        )
    }

    #[test]
    fn each_error_maps_to_its_code_side_and_kind() {
        use ErrorKind as K;
        let cases = [
            (
                PathError::Draining,
                (503, "ServiceUnavailable", Side::Pathgate, K::Other),
            ),
            (
                PathError::Session(SessionError::InvalidId("-".into())),
                (400, "BadRequest", Side::Client, K::Other),
            ),
            (
                PathError::ClientNotAuthenticated,
                (401, "Unauthorized", Side::Client, K::Other),
            ),
            (
                PathError::CertificateRequired,
                (401, "Unauthorized", Side::Client, K::Other),
            ),
            (
                PathError::BodyTimeout(Duration::from_secs(30)),
                (408, "Timeout", Side::Client, K::Timeout),
            ),
            (
                PathError::BodyTooLarge(1024),
                (413, "RequestEntityTooLarge", Side::Client, K::TooLarge),
            ),
            (
                PathError::Denied("PG004 ...".into()),
                (403, "Forbidden", Side::Client, K::Other),
            ),
            (
                PathError::Impersonation,
                (403, "Forbidden", Side::Client, K::Other),
            ),
            (
                PathError::BudgetExceeded {
                    message: "PG019 ...".into(),
                    retry_after_seconds: None,
                },
                (429, "TooManyRequests", Side::Client, K::Other),
            ),
            (
                PathError::Intent(LedgerError::Closed),
                (503, "ServiceUnavailable", Side::Pathgate, K::Ledger),
            ),
            (
                PathError::UpstreamTimeout(Duration::from_secs(70)),
                (504, "Timeout", Side::Upstream, K::Timeout),
            ),
            (
                PathError::UpstreamTls("bad cert".into()),
                (502, "InternalError", Side::Upstream, K::Tls),
            ),
            (
                PathError::UpstreamUnreachable("refused".into()),
                (503, "ServiceUnavailable", Side::Upstream, K::Connect),
            ),
            (
                PathError::UpstreamConnection("reset".into()),
                (502, "InternalError", Side::Upstream, K::Protocol),
            ),
            (
                PathError::UnrequestedUpgrade,
                (502, "InternalError", Side::Upstream, K::Protocol),
            ),
            (
                PathError::TaskLost,
                (500, "InternalError", Side::Pathgate, K::Other),
            ),
        ];
        for (error, expected) in cases {
            let name = format!("{error:?}");
            assert_eq!(mapped(error), expected, "{name}");
        }
    }

    #[test]
    fn messages_name_the_limit_and_what_to_do() {
        let too_large = PathError::BodyTooLarge(3 * 1024 * 1024).status().message;
        assert!(too_large.contains("3145728") && too_large.contains("server.max_body_bytes"));
        let timeout = PathError::BodyTimeout(Duration::from_secs(30))
            .status()
            .message;
        assert!(timeout.contains("30s") && timeout.contains("body_read_timeout_seconds"));
        let intent = PathError::Intent(LedgerError::Closed).status().message;
        assert!(intent.contains("ledger is shut down") && intent.contains("fail-closed-mutations"));
        let impersonation = PathError::Impersonation.status().message;
        assert!(impersonation.starts_with("pathgate denied this request: PG017 impersonation: "));
        assert_eq!(
            PathError::Denied("PG004 x".into()).status().message,
            "PG004 x"
        );
    }

    #[test]
    fn only_a_window_budget_asks_the_client_to_retry() {
        let budget = |retry_after_seconds| PathError::BudgetExceeded {
            message: "pathgate denied this request: PG019 session-budget: ...".into(),
            retry_after_seconds,
        };
        let window = budget(Some(7)).status();
        assert_eq!(window.retry_after_seconds, Some(7));
        assert_eq!(window.message, budget(None).to_string());
        assert_eq!(budget(None).status().retry_after_seconds, None);
        assert_eq!(
            PathError::Denied("x".into()).status().retry_after_seconds,
            None
        );
    }
}
