//! Kubernetes `Status` bodies for every error and denial pathgate itself returns.
//!
//! Owns: the JSON shape kubectl and client-go decode (`kind: Status`, `reason`, `code`,
//! `message`), the mapping from pathgate's own errors to HTTP codes, which side of the proxy
//! failed, and each failure's kind as the ledger records it. Does not own: the errors'
//! causes (each module has its own error enum).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use serde::Serialize;

pub use crate::ledger::ErrorKind;

/// Which side of the proxy a failure belongs to; recorded in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The request was malformed or not allowed.
    Client,
    /// The apiserver could not be reached or failed mid-response.
    Upstream,
    /// pathgate itself (its ledger, its configuration).
    Pathgate,
}

/// A Kubernetes `metav1.Status` failure as pathgate sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: StatusCode,
    /// The `StatusReason` (`Forbidden`, `BadRequest`, `RequestEntityTooLarge`,
    /// `ServiceUnavailable`, `Timeout`, `InternalError`).
    pub reason: &'static str,
    pub message: String,
    pub side: Side,
    /// What kind of failure this is, as the ledger records it (`error.kind`).
    pub kind: ErrorKind,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: serde_json::Map<String, serde_json::Value>,
    status: &'static str,
    message: &'a str,
    reason: &'static str,
    code: u16,
}

/// The response body type of every response pathgate sends.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A body holding the given bytes.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

impl Status {
    fn new(code: StatusCode, reason: &'static str, side: Side, message: String) -> Self {
        let kind = match (code, side) {
            (StatusCode::PAYLOAD_TOO_LARGE, _) => ErrorKind::TooLarge,
            (StatusCode::GATEWAY_TIMEOUT, _) => ErrorKind::Timeout,
            (StatusCode::BAD_GATEWAY, _) => ErrorKind::Protocol,
            (StatusCode::SERVICE_UNAVAILABLE, Side::Upstream) => ErrorKind::Connect,
            _ => ErrorKind::Other,
        };
        Self {
            code,
            reason,
            message,
            side,
            kind,
        }
    }

    /// The same Status with a more precise failure kind (a TLS failure, a ledger failure).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// 400: a request pathgate cannot read exactly as the apiserver would.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            Side::Client,
            message.into(),
        )
    }

    /// 401: the client did not authenticate to pathgate as its auth mode requires.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            Side::Client,
            message.into(),
        )
    }

    /// 403: a denial by a rule or by the auth mode.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            Side::Client,
            message.into(),
        )
    }

    /// 413: a mutation body larger than the configured limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            Side::Client,
            format!(
                "pathgate: request body is larger than the limit of {limit} bytes (server.max_body_bytes)"
            ),
        )
    }

    /// 502: the apiserver answered with something pathgate cannot relay (TLS failure,
    /// protocol error).
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "InternalError",
            Side::Upstream,
            message.into(),
        )
    }

    /// 503: the apiserver cannot be reached, or pathgate cannot record the request.
    pub fn unavailable(side: Side, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            side,
            message.into(),
        )
    }

    /// 408: the client did not send its request body in time (`Timeout`, so client-go's
    /// `IsTimeout` recognises it).
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "Timeout",
            Side::Client,
            message.into(),
        )
        .with_kind(ErrorKind::Timeout)
    }

    /// 504: the apiserver did not answer in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            Side::Upstream,
            message.into(),
        )
    }

    /// The JSON body, as the apiserver would write it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: serde_json::Map::new(),
            status: "Failure",
            message: &self.message,
            reason: self.reason,
            code: self.code.as_u16(),
        })
        .expect("Status serialises")
    }

    /// A complete response carrying this Status.
    pub fn into_response(self) -> Response<Body> {
        let mut response = Response::new(full_body(self.to_json()));
        *response.status_mut() = self.code;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_carries_the_kind_the_ledger_records() {
        assert_eq!(Status::too_large(10).kind, ErrorKind::TooLarge);
        assert_eq!(Status::timeout("t").kind, ErrorKind::Timeout);
        assert_eq!(Status::bad_gateway("b").kind, ErrorKind::Protocol);
        assert_eq!(
            Status::unavailable(Side::Upstream, "u").kind,
            ErrorKind::Connect
        );
        assert_eq!(
            Status::unavailable(Side::Pathgate, "draining").kind,
            ErrorKind::Other
        );
        assert_eq!(Status::forbidden("f").kind, ErrorKind::Other);
        assert_eq!(
            Status::bad_gateway("b").with_kind(ErrorKind::Tls).kind,
            ErrorKind::Tls
        );
    }

    #[test]
    fn status_json_is_what_kubectl_decodes() {
        let status = Status::forbidden("PG004: no");
        let value: serde_json::Value = serde_json::from_slice(&status.to_json()).unwrap();
        assert_eq!(value["kind"], "Status");
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["status"], "Failure");
        assert_eq!(value["reason"], "Forbidden");
        assert_eq!(value["code"], 403);
        assert_eq!(value["message"], "PG004: no");
    }

    #[test]
    fn each_constructor_maps_to_its_code() {
        assert_eq!(Status::bad_request("x").code, 400);
        assert_eq!(Status::too_large(10).code, 413);
        assert_eq!(Status::bad_gateway("x").code, 502);
        assert_eq!(Status::unavailable(Side::Upstream, "x").code, 503);
        assert_eq!(Status::timeout("x").code, 504);
        assert!(Status::too_large(3 * 1024 * 1024)
            .message
            .contains("3145728"));
    }
}
