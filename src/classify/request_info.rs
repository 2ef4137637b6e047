//! Request info: the apiserver's reading of method + path + query.
//!
//! The rules are those of the apiserver's `RequestInfoFactory`
//! (`k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`), re-derived here:
//!
//! - Paths with fewer than three segments, or not under `/api` or `/apis`, are non-resource
//!   requests. Under `/apis` a group is required, so `/apis/<group>/<version>` is also
//!   non-resource (it is discovery).
//! - After the version, a legacy verb prefix `watch/` or `proxy/` sets the verb from the path;
//!   otherwise it comes from the method: POST create, GET/HEAD get, PUT update, PATCH patch,
//!   DELETE delete.
//! - `namespaces/<ns>/<resource>...` sets the namespace and moves on to the resource, except
//!   when the segment after the namespace is `status` or `finalize`: then the request is
//!   about the namespace object itself (`/api/v1/namespaces/foo/status` is resource
//!   `namespaces`, name `foo`, subresource `status`, and the namespace is `foo` too).
//! - The remaining segments are resource / name / subresource (the legacy `proxy/` verb takes
//!   no subresource: everything after the name is the proxied path).
//! - A GET without a name is a list, or a watch when the first `watch` query value is anything
//!   but `0` or `false` (even empty); `fieldSelector=metadata.name=<n>` then names the object,
//!   provided the whole list query decodes. A DELETE without a name is a deletecollection.
//!
//! pathgate's own additions: [`Verb::Connect`] for the `exec`, `attach`, `portforward` and
//! `proxy` subresources and the legacy `proxy/` verb, whatever the method (a WebSocket exec is
//! a GET); [`RequestInfo::is_discovery`]; and refusal of every path or query the apiserver
//! could read differently from a byte-level reading (see [`ClassifyError`]).
//!
//! The path given to [`request_info`] is the *wire* path (still percent-encoded, as
//! `http::Uri::path` returns it); [`RequestInfo::path`] is the decoded path the apiserver
//! sees in Go's `URL.Path`. A single trailing slash is accepted: the apiserver trims it
//! before splitting (so `/api/v1/pods/` is a list of pods to its authorizer as well), and
//! nothing else can read it differently. Two or more, or any empty segment, is refused.

use serde::Serialize;

use super::field_selector;
use super::query::{decode_hex_pair, Query};

#[path = "request_info_builtins.rs"]
mod builtins;
pub use builtins::Scope;

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

impl Verb {
    /// Whether the apiserver honours `dryRun` for this verb: the writes (create, update,
    /// patch, delete, deletecollection); reads, watches and connects take none.
    pub fn takes_dry_run(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete | Verb::DeleteCollection
        )
    }

    /// Every verb, in the order the apiserver documents them.
    pub const ALL: [Verb; 10] = [
        Verb::Get,
        Verb::List,
        Verb::Watch,
        Verb::Create,
        Verb::Update,
        Verb::Patch,
        Verb::Delete,
        Verb::DeleteCollection,
        Verb::Connect,
        Verb::NonResource,
    ];

    /// The lowercase Kubernetes spelling (`deletecollection`, `nonresource`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Connect => "connect",
            Verb::NonResource => "nonresource",
        }
    }
}

/// What the apiserver would make of a request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestInfo {
    /// `true` for `/api/...` and `/apis/...` resource requests.
    pub is_resource_request: bool,
    pub verb: Verb,
    /// The verb exactly as the apiserver's request-info factory spells it, which is what its
    /// authorizer (RBAC) and audit log see: `create` for a POST to `pods/exec`, `get` for a
    /// WebSocket exec, `proxy` for the legacy `proxy/` prefix, the lowercase method for
    /// non-resource requests. [`RequestInfo::verb`] is pathgate's reading.
    pub apiserver_verb: String,
    /// The HTTP method, uppercase.
    pub method: String,
    /// The path as the apiserver sees it (session prefix already removed, percent-escapes
    /// decoded as Go decodes `URL.Path`).
    pub path: String,
    /// `api` or `apis` for resource requests.
    pub api_prefix: String,
    /// Empty for the core group.
    pub api_group: String,
    pub api_version: String,
    /// For a namespace object (`/api/v1/namespaces/foo`), the namespace's own name, as in
    /// the apiserver.
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    /// From the path, or from `fieldSelector=metadata.name=<name>` on a list or watch.
    pub name: String,
    /// `true` for a discovery or OpenAPI request (`/api`, `/apis`, `/apis/<g>/<v>`,
    /// `/openapi/*`, `/version`): polled heavily, never a finding.
    pub is_discovery: bool,
    /// The lowercase `Upgrade` header when the client asks for a protocol switch
    /// (`websocket`, `spdy/3.1`): exec, attach, port-forward and proxy streams.
    pub upgrade: Option<String>,
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
    /// The apiserver itself derives no verb or resource from the request (a method other
    /// than GET, HEAD, POST, PUT, PATCH or DELETE on a resource path, or a bare `watch/` or
    /// `proxy/` prefix), so there is nothing sound to classify.
    #[error("{method} {path} is not a request the apiserver can classify: {reason}")]
    Unclassifiable {
        method: String,
        path: String,
        reason: String,
    },
}

/// Subresources that open a stream to a container, node or service (rule PG013).
const CONNECT_SUBRESOURCES: [&str; 4] = ["exec", "attach", "portforward", "proxy"];

/// `(group, resource)` pairs whose POSTs ask the apiserver a question and change nothing.
const REVIEW_RESOURCES: [(&str, &str); 6] = [
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("authorization.k8s.io", "localsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authentication.k8s.io", "tokenreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
];

/// Derives request info from the method, path (without the session prefix) and query.
///
/// `path` is the wire path, still percent-encoded; `query` the raw query without `?`.
pub fn request_info(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
    headers: &http::HeaderMap,
) -> Result<RequestInfo, ClassifyError> {
    let decoded_path = decode_path(path)?;
    let segments = split_segments(path, &decoded_path)?;
    let query = Query::parse(query)?;
    let method_str = method.as_str();

    let upgrade = headers
        .get(http::header::UPGRADE)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty());

    let mut info = RequestInfo {
        is_resource_request: false,
        verb: Verb::NonResource,
        apiserver_verb: method_str.to_ascii_lowercase(),
        method: method_str.to_owned(),
        path: String::new(),
        api_prefix: String::new(),
        api_group: String::new(),
        api_version: String::new(),
        namespace: String::new(),
        resource: String::new(),
        subresource: String::new(),
        name: String::new(),
        is_discovery: false,
        upgrade,
    };

    let mut parts: &[&str] = &segments;
    let resource_start = match parts {
        ["api", _, _, ..] => Some(1),
        ["apis", _, _, _, ..] => Some(2),
        _ => None,
    };
    let Some(resource_start) = resource_start else {
        info.is_discovery = matches!(method_str, "GET" | "HEAD") && is_discovery_path(&segments);
        info.path = decoded_path;
        return Ok(info);
    };

    info.is_resource_request = true;
    info.api_prefix = segments[0].to_owned();
    if resource_start == 2 {
        info.api_group = segments[1].to_owned();
    }
    info.api_version = segments[resource_start].to_owned();
    parts = &parts[resource_start + 1..];

    // Legacy verb prefixes: /api/v1/watch/pods, /api/v1/proxy/namespaces/x/pods/y/path.
    let verb_via_path = parts[0] == "watch" || parts[0] == "proxy";
    if verb_via_path {
        if parts.len() < 2 {
            return Err(ClassifyError::Unclassifiable {
                method: method_str.to_owned(),
                path: decoded_path.clone(),
                reason: format!(
                    "the apiserver cannot determine kind and namespace after `{}/`",
                    parts[0]
                ),
            });
        }
        info.apiserver_verb = parts[0].to_owned();
        parts = &parts[1..];
    } else {
        info.apiserver_verb = match method_str {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => {
                return Err(ClassifyError::Unclassifiable {
                    method: method_str.to_owned(),
                    path: decoded_path.clone(),
                    reason: "the apiserver maps only GET, HEAD, POST, PUT, PATCH and DELETE \
                             to a verb on resource paths"
                        .to_owned(),
                })
            }
        }
        .to_owned();
    }

    if parts[0] == "namespaces" {
        if let Some(namespace) = parts.get(1) {
            info.namespace = (*namespace).to_owned();
            if parts.len() > 2 && parts[2] != "status" && parts[2] != "finalize" {
                parts = &parts[2..];
            }
        }
    }

    info.resource = parts[0].to_owned();
    if let Some(name) = parts.get(1) {
        info.name = (*name).to_owned();
    }
    if info.apiserver_verb != "proxy" {
        if let Some(subresource) = parts.get(2) {
            info.subresource = (*subresource).to_owned();
        }
    }

    if info.name.is_empty() && info.apiserver_verb == "get" {
        let watch = query.go_bool("watch").unwrap_or(false);
        info.apiserver_verb = if watch { "watch" } else { "list" }.to_owned();
        if list_options_decode(&query) {
            if let Some(name) = query
                .first("fieldSelector")
                .and_then(field_selector::required_name)
                .filter(|name| field_selector::is_valid_path_segment_name(name))
            {
                info.name = name;
            }
        }
    }
    if info.name.is_empty() && info.apiserver_verb == "delete" {
        info.apiserver_verb = "deletecollection".to_owned();
    }

    info.verb = if info.apiserver_verb == "proxy"
        || CONNECT_SUBRESOURCES.contains(&info.subresource.as_str())
    {
        Verb::Connect
    } else {
        match info.apiserver_verb.as_str() {
            "get" => Verb::Get,
            "list" => Verb::List,
            "watch" => Verb::Watch,
            "create" => Verb::Create,
            "update" => Verb::Update,
            "patch" => Verb::Patch,
            "delete" => Verb::Delete,
            "deletecollection" => Verb::DeleteCollection,
            // Every other spelling was returned as an error above.
            other => unreachable!("verb {other:?} has no mapping"),
        }
    };
    info.path = decoded_path;
    Ok(info)
}

impl RequestInfo {
    /// A request that can change cluster state (create, update, patch, delete,
    /// deletecollection). Access reviews and token reviews are questions, not mutations.
    pub fn is_mutation(&self) -> bool {
        match self.verb {
            Verb::Create => !self.is_review(),
            Verb::Update | Verb::Patch | Verb::Delete | Verb::DeleteCollection => true,
            Verb::Get | Verb::List | Verb::Watch | Verb::Connect | Verb::NonResource => false,
        }
    }

    /// A POST that asks the apiserver a question (`kubectl auth can-i`, `kubectl auth whoami`,
    /// webhook token checks) rather than storing anything.
    pub fn is_review(&self) -> bool {
        self.verb == Verb::Create
            && self.subresource.is_empty()
            && REVIEW_RESOURCES
                .iter()
                .any(|(group, resource)| self.api_group == *group && self.resource == *resource)
    }

    /// A watch (`?watch=true` or the legacy `watch/` prefix): a long-lived stream.
    pub fn is_watch(&self) -> bool {
        self.verb == Verb::Watch
    }

    /// A read: get, list, watch, or a non-resource GET/HEAD (discovery, `/version`, health).
    pub fn is_read(&self) -> bool {
        match self.verb {
            Verb::Get | Verb::List | Verb::Watch => true,
            Verb::NonResource => matches!(self.method.as_str(), "GET" | "HEAD"),
            _ => false,
        }
    }

    /// Exec, attach, port-forward or proxy (rule PG013).
    pub fn is_connect(&self) -> bool {
        self.verb == Verb::Connect
    }
}

/// Whether the apiserver's list-options decoding of this query succeeds: it names the object
/// of a list from its field selector only then. `limit` and `timeoutSeconds` must be integers
/// and the field selector must parse (checked by the caller through `required_name`).
/// Label-selector syntax is not checked: a list with a bad label selector is refused by the
/// apiserver with a 400 whatever name its request info carried.
fn list_options_decode(query: &Query) -> bool {
    ["limit", "timeoutSeconds"]
        .iter()
        .all(|key| query.first(key).is_none_or(|v| v.parse::<i64>().is_ok()))
}

/// `/api`, `/api/<v>`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>`, `/openapi/...`, `/version`,
/// `/.well-known/...`.
fn is_discovery_path(segments: &[&str]) -> bool {
    match segments.first().copied() {
        Some("api") => segments.len() <= 2,
        Some("apis") => segments.len() <= 3,
        Some("openapi") | Some(".well-known") => true,
        Some("version") => segments.len() == 1,
        _ => false,
    }
}

/// Decodes the wire path the way Go fills `URL.Path`, refusing everything that would make
/// Go's reading and pathgate's differ or that a well-behaved client never sends; its
/// segments are checked by [`split_segments`].
fn decode_path(raw: &str) -> Result<String, ClassifyError> {
    if !raw.starts_with('/') {
        return Err(ambiguous(raw, "it does not start with '/'"));
    }
    // Most paths have no escape: checked byte by byte, then copied whole.
    if !raw.contains('%') {
        return match raw.bytes().find_map(unescaped_byte_refusal) {
            Some(reason) => Err(ambiguous(raw, reason)),
            None => Ok(raw.to_owned()),
        };
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            if let Some(reason) = unescaped_byte_refusal(b) {
                return Err(ambiguous(raw, reason));
            }
            decoded.push(b);
            i += 1;
            continue;
        }
        let byte = bytes
            .get(i + 1..i + 3)
            .and_then(decode_hex_pair)
            .ok_or_else(|| ambiguous(raw, "it has an invalid percent escape"))?;
        let refusal = match byte {
            b'/' => Some("it has a percent-encoded '/'"),
            b'.' => Some("it has a percent-encoded '.'"),
            b'%' => Some("it has a percent-encoded '%'"),
            b'\\' => Some("it has a percent-encoded '\\'"),
            0x00..=0x1f | 0x7f => Some("it has a percent-encoded control character"),
            _ => None,
        };
        if let Some(reason) = refusal {
            return Err(ambiguous(raw, reason));
        }
        decoded.push(byte);
        i += 3;
    }
    String::from_utf8(decoded)
        .map_err(|_| ambiguous(raw, "its percent escapes do not decode to UTF-8"))
}

/// Why a byte sent as itself (not percent-encoded) makes a path ambiguous.
fn unescaped_byte_refusal(b: u8) -> Option<&'static str> {
    match b {
        0x00..=0x1f | 0x7f => Some("it has a control character"),
        b'\\' => Some("it has a '\\', which some servers read as '/'"),
        b'?' | b'#' => Some("it has a '?' or '#' inside the path"),
        _ => None,
    }
}

fn ambiguous(raw: &str, reason: &str) -> ClassifyError {
    ClassifyError::AmbiguousPath {
        path: raw.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The segments of a path [`decode_path`] accepted, split the way the apiserver does (one
/// leading slash and one trailing slash trimmed); an empty, `.` or `..` segment is refused.
fn split_segments<'a>(raw: &str, decoded: &'a str) -> Result<Vec<&'a str>, ClassifyError> {
    if decoded == "/" {
        return Ok(Vec::new());
    }
    let trimmed = &decoded[1..];
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    // By hand rather than with `str::split`: its searcher costs more than the few short
    // segments of a path (every request is classified).
    let mut segments = Vec::with_capacity(8);
    let mut start = 0;
    for (i, b) in trimmed.bytes().enumerate() {
        if b == b'/' {
            segments.push(&trimmed[start..i]);
            start = i + 1;
        }
    }
    segments.push(&trimmed[start..]);
    for segment in &segments {
        match *segment {
            "" => return Err(ambiguous(raw, "it has an empty segment ('//')")),
            "." | ".." => return Err(ambiguous(raw, "it has a '.' or '..' segment")),
            _ => {}
        }
    }
    Ok(segments)
}

#[cfg(test)]
#[path = "request_info_tests.rs"]
mod tests;
