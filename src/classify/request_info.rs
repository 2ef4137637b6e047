//! Request info: the apiserver's reading of method + path + query.

use serde::Serialize;

/// The Kubernetes verb of a request, as the apiserver's request-info factory derives it,
/// plus `connect` for exec/attach/portforward/proxy subresources (whatever the method).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    #[serde(rename = "deletecollection")]
    DeleteCollection,
    Connect,
    /// A non-resource URL (`/version`, `/healthz`, discovery roots): the verb is the
    /// lowercase method, kept in [`RequestInfo::method`].
    #[serde(rename = "nonresource")]
    NonResource,
}

/// What the apiserver would make of a request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestInfo {
    /// `true` for `/api/...` and `/apis/...` resource requests.
    pub is_resource_request: bool,
    pub verb: Verb,
    /// The HTTP method, uppercase.
    pub method: String,
    /// The path as the apiserver sees it (session prefix already removed).
    pub path: String,
    /// `api` or `apis` for resource requests.
    pub api_prefix: String,
    /// Empty for the core group.
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// `true` for a discovery or OpenAPI request (`/api`, `/apis`, `/apis/<g>/<v>`,
    /// `/openapi/*`, `/version`): polled heavily, never a finding.
    pub is_discovery: bool,
}

/// Why a request cannot be classified. The proxy answers each with a 400 `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// The path contains a segment the apiserver could read differently (dot segments,
    /// empty segments from doubled slashes, percent-encoded slashes or dots).
    #[error("path {path:?} is ambiguous: {reason}; send a normalised path")]
    AmbiguousPath { path: String, reason: String },
    /// The query string could not be decoded.
    #[error("query string is malformed: {0}")]
    BadQuery(String),
}

/// Derives request info from the method, path (without the session prefix) and query.
pub fn request_info(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
    headers: &http::HeaderMap,
) -> Result<RequestInfo, ClassifyError> {
    let _ = (method, path, query, headers);
    unimplemented!("classify::request_info")
}

impl RequestInfo {
    /// A request that can change cluster state (create, update, patch, delete,
    /// deletecollection). Access reviews and token reviews are questions, not mutations.
    pub fn is_mutation(&self) -> bool {
        unimplemented!("RequestInfo::is_mutation")
    }
}
