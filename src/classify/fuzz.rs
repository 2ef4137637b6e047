//! Fuzz targets: one function per parser a client's bytes reach, each taking arbitrary bytes.
//!
//! Owns: how raw fuzz input becomes a call into the classifier (method + path + query,
//! query strings, DeleteOptions bodies in JSON / YAML / protobuf, patches of each type, the
//! protobuf envelope, apply YAML), and the invariants checked on every answer. A target
//! panics only when the classifier panics or breaks an invariant; a refusal or an opaque
//! body is a correct answer.
//!
//! Does not own: generating or mutating inputs, timing them, or the corpus (the
//! `pathgate-fuzz` crate in `fuzz/`, docs/reliability.md).
//!
//! Inputs are text-framed so that corpus files stay readable: a target that needs more than
//! a body reads its first line as the request's framing (see each [`Target`] variant).

use http::{HeaderMap, HeaderValue, Method};

use super::media_type::BodyFormat;
use super::{analyse, protobuf, query, request_info, Analysis, RequestInfo, MAX_TOUCHED_PATHS};

/// One fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `METHOD PATH[?QUERY]` on the first line, an `Upgrade` header value on the second.
    RequestInfo,
    /// A raw query string, read for a pod DELETE (DeleteOptions from the query, `dryRun`).
    Query,
    /// A pod DELETE's JSON body.
    DeleteOptionsJson,
    /// A pod DELETE's YAML body.
    DeleteOptionsYaml,
    /// A pod DELETE's protobuf body (`k8s\0` envelope around `DeleteOptions`).
    DeleteOptionsProtobuf,
    /// `Content-Type` on the first line, a pod PATCH's body after it (every patch type).
    Patch,
    /// Bytes read as the `k8s\0` envelope, then as an object, an `Eviction` and
    /// `DeleteOptions`.
    ProtobufEnvelope,
    /// A server-side apply body (`application/apply-patch+yaml`) for a ConfigMap.
    ApplyYaml,
}

impl Target {
    /// Every target, in the order the runner and the corpus replay take them.
    pub const ALL: [Target; 8] = [
        Target::RequestInfo,
        Target::Query,
        Target::DeleteOptionsJson,
        Target::DeleteOptionsYaml,
        Target::DeleteOptionsProtobuf,
        Target::Patch,
        Target::ProtobufEnvelope,
        Target::ApplyYaml,
    ];

    /// The target's name: its corpus directory under `fuzz/corpus/`.
    pub fn name(self) -> &'static str {
        match self {
            Target::RequestInfo => "request_info",
            Target::Query => "query",
            Target::DeleteOptionsJson => "delete_options_json",
            Target::DeleteOptionsYaml => "delete_options_yaml",
            Target::DeleteOptionsProtobuf => "delete_options_protobuf",
            Target::Patch => "patch",
            Target::ProtobufEnvelope => "protobuf_envelope",
            Target::ApplyYaml => "apply_yaml",
        }
    }

    /// The target named `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Feeds `input` to the target's parser and checks the answer's invariants.
    ///
    /// # Panics
    /// When the parser panics or an invariant does not hold: that is a finding.
    pub fn run(self, input: &[u8]) {
        match self {
            Target::RequestInfo => run_request_info(input),
            Target::Query => run_query(input),
            Target::DeleteOptionsJson => run_delete(input, "application/json"),
            Target::DeleteOptionsYaml => run_delete(input, "application/yaml"),
            Target::DeleteOptionsProtobuf => {
                run_delete(input, "application/vnd.kubernetes.protobuf")
            }
            Target::Patch => run_patch(input),
            Target::ProtobufEnvelope => run_protobuf_envelope(input),
            Target::ApplyYaml => run_apply_yaml(input),
        }
    }
}

const POD: &str = "/api/v1/namespaces/default/pods/fuzz";
const CONFIG_MAP: &str = "/api/v1/namespaces/default/configmaps/fuzz";

/// Splits off the first line (without its `\n`).
fn first_line(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == b'\n') {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[]),
    }
}

fn run_request_info(input: &[u8]) {
    let (line, rest) = first_line(input);
    let line = String::from_utf8_lossy(line);
    let (method, target) = line.split_once(' ').unwrap_or(("GET", &line));
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let mut headers = HeaderMap::new();
    if let Ok(upgrade) = HeaderValue::from_bytes(first_line(rest).0) {
        headers.insert(http::header::UPGRADE, upgrade);
    }
    if let Ok(info) = request_info(&method, path, query, &headers) {
        check_request_info(&info);
        // The body-less analysis reads the same query a second time.
        check_analysis(&analyse(&info, query, None, &[]));
    }
}

fn check_request_info(info: &RequestInfo) {
    if info.is_resource_request {
        assert!(
            !info.resource.is_empty(),
            "a resource request names its resource: {info:?}"
        );
    }
    assert!(
        info.subresource.is_empty() || !info.resource.is_empty(),
        "a subresource belongs to a resource: {info:?}"
    );
}

fn run_query(input: &[u8]) {
    let raw = String::from_utf8_lossy(input);
    // The parser itself, then every reader of its answer.
    if let Ok(parsed) = query::Query::parse(Some(&raw)) {
        let _ = query::dry_run_values(parsed.all("dryRun"));
        let _ = parsed.go_bool("force");
        let _ = super::delete_options::from_query(&parsed);
    }
    let info = info_for(Method::DELETE, POD, Some(&raw));
    if let Some(info) = info {
        check_analysis(&analyse(&info, Some(&raw), None, &[]));
    }
}

fn run_delete(body: &[u8], content_type: &str) {
    let info = info_for(Method::DELETE, POD, None).expect("a pod DELETE is classified");
    let analysis = analyse(&info, None, Some(content_type), body);
    check_analysis(&analysis);
    // An empty body is no body: the options come from the query.
    let expected = if body.is_empty() {
        BodyFormat::None
    } else {
        BodyFormat::from_content_type(Some(content_type))
    };
    assert_eq!(
        analysis.body_format, expected,
        "a DELETE body is read as its Content-Type says"
    );
}

fn run_patch(input: &[u8]) {
    let (content_type, body) = first_line(input);
    let content_type = String::from_utf8_lossy(content_type);
    let info = info_for(Method::PATCH, POD, None).expect("a pod PATCH is classified");
    check_analysis(&analyse(&info, None, Some(&content_type), body));
}

fn run_apply_yaml(body: &[u8]) {
    let info = info_for(
        Method::PATCH,
        CONFIG_MAP,
        Some("fieldManager=fuzz&force=true"),
    )
    .expect("a ConfigMap apply is classified");
    let analysis = analyse(
        &info,
        Some("fieldManager=fuzz&force=true"),
        Some("application/apply-patch+yaml"),
        body,
    );
    check_analysis(&analysis);
}

fn run_protobuf_envelope(input: &[u8]) {
    let Ok(envelope) = protobuf::envelope(input) else {
        return;
    };
    let _ = protobuf::object_identity(&envelope);
    let _ = protobuf::eviction(&envelope);
    let _ = protobuf::delete_options(envelope.raw);
}

fn info_for(method: Method, path: &str, query: Option<&str>) -> Option<RequestInfo> {
    request_info(&method, path, query, &HeaderMap::new()).ok()
}

/// What every analysis must satisfy, whatever the body.
fn check_analysis(analysis: &Analysis) {
    assert!(
        analysis.touched_paths.len() <= MAX_TOUCHED_PATHS,
        "touched paths are bounded: {}",
        analysis.touched_paths.len()
    );
    if analysis.refusal.is_some() {
        assert!(
            analysis.opaque_reason.is_some(),
            "a refused body is also opaque: {analysis:?}"
        );
    }
    if analysis.opaque_reason.is_some() && analysis.refusal.is_none() {
        assert!(
            analysis.touched_paths.is_empty(),
            "an opaque body names no paths it could not read: {analysis:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_is_found_by_its_name() {
        for target in Target::ALL {
            assert_eq!(Target::from_name(target.name()), Some(target));
        }
        assert_eq!(Target::from_name("nothing"), None);
    }

    #[test]
    fn the_first_line_frames_the_request_and_the_rest_is_the_body() {
        assert_eq!(
            first_line(b"application/json-patch+json\n[{}]\n"),
            (&b"application/json-patch+json"[..], &b"[{}]\n"[..])
        );
        assert_eq!(first_line(b"no newline"), (&b"no newline"[..], &b""[..]));
    }

    #[test]
    fn hostile_framing_is_an_answer_not_a_panic() {
        Target::RequestInfo
            .run(b"DELETE /api/v1/namespaces/a/pods/b?gracePeriodSeconds=0\nwebsocket");
        Target::RequestInfo.run(b"\xff\xfe /%zz?%");
        Target::Patch.run(b"");
        Target::ProtobufEnvelope.run(b"k8s\0\x0a\xff\xff\xff\xff\x0f");
    }
}
