//! Kubernetes `Status` bodies for every error and denial pathgate itself returns.
//!
//! Owns: the JSON shape kubectl and client-go decode (`kind: Status`, `reason`, `code`,
//! `message`), carrying which side of the proxy failed and the failure's kind as the ledger
//! records them. Does not own: which error gets which code (the request path's one mapping,
//! `proxy::PathError::status`) or the errors' causes (each module has its own error enum).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use serde::Serialize;

pub use crate::failure::{ErrorKind, Side};

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
    /// Sent as `Retry-After` and `details.retryAfterSeconds`, as the apiserver's own 429s
    /// carry it. client-go waits that long and retries (up to 10 times by default); without
    /// it, it does not retry a 429 at all.
    pub retry_after_seconds: Option<u64>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<StatusDetails>,
    code: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusDetails {
    retry_after_seconds: u64,
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
    /// The JSON body, as the apiserver would write it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: serde_json::Map::new(),
            status: "Failure",
            message: &self.message,
            reason: self.reason,
            details: self
                .retry_after_seconds
                .map(|retry_after_seconds| StatusDetails {
                    retry_after_seconds,
                }),
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
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_is_what_kubectl_decodes() {
        let status = Status {
            code: StatusCode::FORBIDDEN,
            reason: "Forbidden",
            message: "PG004: no".into(),
            side: Side::Client,
            kind: ErrorKind::Other,
            retry_after_seconds: None,
        };
        let response = status.clone().into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let value: serde_json::Value = serde_json::from_slice(&status.to_json()).unwrap();
        assert_eq!(value["kind"], "Status");
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["status"], "Failure");
        assert_eq!(value["reason"], "Forbidden");
        assert_eq!(value["code"], 403);
        assert_eq!(value["message"], "PG004: no");
        assert!(value.get("details").is_none());
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn a_retry_after_travels_in_the_header_and_the_details() {
        let status = Status {
            code: StatusCode::TOO_MANY_REQUESTS,
            reason: "TooManyRequests",
            message: "PG019 session-budget: ...".into(),
            side: Side::Client,
            kind: ErrorKind::Other,
            retry_after_seconds: Some(12),
        };
        let value: serde_json::Value = serde_json::from_slice(&status.to_json()).unwrap();
        assert_eq!(value["details"]["retryAfterSeconds"], 12);
        assert_eq!(value["code"], 429);
        let response = status.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "12");
    }
}
