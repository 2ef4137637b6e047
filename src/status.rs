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
    fn status_json_is_what_kubectl_decodes() {
        let status = Status {
            code: StatusCode::FORBIDDEN,
            reason: "Forbidden",
            message: "PG004: no".into(),
            side: Side::Client,
            kind: ErrorKind::Other,
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
    }
}
