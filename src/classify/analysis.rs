//! Mutation analysis: what a create, update, patch or delete body would change.
//!
//! [`analyse`] reads the body the way the apiserver's handler for the request's verb reads it:
//!
//! - **PATCH**: the patch type is the `Content-Type` up to its first `;`, compared exactly
//!   (the apiserver does not trim or lowercase it; anything else is a 415). json-patch,
//!   merge-patch and strategic-merge-patch bodies are JSON; apply-patch+yaml is YAML (or
//!   JSON); apply-patch+cbor is CBOR.
//! - **POST / PUT**: JSON (also when no `Content-Type` is sent, the apiserver's default),
//!   YAML, protobuf (`application/vnd.kubernetes.protobuf`) or CBOR (`application/cbor`);
//!   media-type parameters are ignored.
//! - **DELETE / deletecollection**: DeleteOptions from the body, or from the query when there
//!   is no body; never both (see `delete_options`).
//! - **Evictions** (POST `pods/<name>/eviction`): the eviction's `deleteOptions`; a dry run
//!   when either the query or those options ask for one.
//!
//! Touched paths are described in `paths`. Protobuf objects are read through their envelope
//! for identity and metadata only: [`Analysis::paths_known`] is false for them, and they are
//! not opaque. CBOR bodies, undecodable JSON/YAML/protobuf, empty mutation bodies and unknown
//! media types are opaque ([`Analysis::opaque_reason`], rule PG016): never harmless.
//!
//! # Whole-object payloads (payload scope)
//!
//! - [`WholeObject::Replace`]: a PUT of a resource, not of a subresource (`/scale`, `/status`).
//! - [`WholeObject::ServerSideApply`]: an apply patch that restates the object rather than
//!   one field. The criterion: the applied configuration carries `spec.selector` (a
//!   creation-time field, immutable for workloads, that no targeted apply needs: its
//!   presence is the telltale of a full manifest such as `kubectl apply --server-side -f
//!   deploy.yaml`), **or** it sets at least [`SSA_WHOLE_OBJECT_MIN_LEAVES`] leaves outside
//!   identity metadata. A targeted apply (`spec.replicas`, or one container's image under
//!   `spec.template`) is neither. (A Service's `spec.selector` is mutable; an apply that
//!   restates it is still reported: rewriting which pods a Service routes to is not narrow.) [`Analysis::payload_leaves`] carries the count for rules
//!   that want their own threshold.
//! - [`WholeObject::ClientSideApply`]: a patch (other than an apply patch) or create whose
//!   body carries the `kubectl.kubernetes.io/last-applied-configuration` annotation (classic
//!   `kubectl apply`). An apply patch carrying only that annotation is kubectl re-saving it
//!   after a server-side apply (field manager `kubectl-last-applied`), not a whole object.
//!
//! Precedence when several hold: Replace, then ServerSideApply, then ClientSideApply.

use serde::Serialize;

use super::media_type::{BodyFormat, PatchType};
use super::object::{DeleteOptions, ObjectIdentity};
use super::paths::{self, Collector};
use super::protobuf;
use super::query::{dry_run_values, Query};
use super::tree::{self, Node, ReadError, MAX_NESTING};
use super::{delete_options, RequestInfo, Verb};

/// An apply patch setting at least this many leaves (identity metadata excluded) restates
/// the whole object. A kubectl-style Deployment manifest sets 10 to 40; a targeted apply 1 to 3.
pub const SSA_WHOLE_OBJECT_MIN_LEAVES: usize = 10;

/// Why a payload restates a whole object (payload scope, rules PG002/PG003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WholeObject {
    /// PUT of an object (not a subresource such as `/scale` or `/status`).
    Replace,
    /// Server-side apply of a whole object (a spec skeleton, not one field).
    ServerSideApply,
    /// Client-side apply: the body carries `kubectl.kubernetes.io/last-applied-configuration`.
    ClientSideApply,
}

/// The result of [`analyse`]: facts about the payload, no judgement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Analysis {
    pub patch_type: Option<PatchType>,
    pub body_format: BodyFormat,
    /// Leaf paths the payload sets or removes, as JSON pointers (`/spec/replicas`),
    /// identity metadata (apiVersion, kind, metadata.name/namespace) excluded. List elements
    /// merged by key are written `name=web` (see the `paths` module); at most 1024 paths.
    pub touched_paths: Vec<String>,
    /// `false` when the payload was accepted but its paths cannot be read (protobuf objects)
    /// or the body is opaque: `touched_paths` is then empty, not "nothing".
    pub paths_known: bool,
    /// How many scalar leaves the payload writes (not bounded, not de-duplicated). For a
    /// JSON patch, the leaves of every operation's value: one `replace /spec/template` op
    /// is one touched path but restates the whole template.
    pub payload_leaves: usize,
    pub whole_object: Option<WholeObject>,
    /// `dryRun=All` in the query (or in DeleteOptions / options of the body) of an endpoint
    /// that honours it ([`RequestInfo::honours_dry_run`]): the apiserver will not act.
    pub dry_run: bool,
    /// The client asked for a dry run on an endpoint that ignores `dryRun` (a TokenRequest
    /// issues a real token): `dry_run` is then `false`, because the request acts.
    pub dry_run_ignored: bool,
    pub delete_options: Option<DeleteOptions>,
    /// `fieldManager` query parameter.
    pub field_manager: Option<String>,
    /// `force=true` (server-side apply conflicts).
    pub force: bool,
    /// The object's identity and metadata, where the body could be read.
    pub object: Option<ObjectIdentity>,
    /// Why the body could not be decoded (rule PG016); `None` when it was understood.
    pub opaque_reason: Option<String>,
    /// Why pathgate refuses the request outright, whatever the mode and rules (the proxy
    /// answers 400 `BadRequest` and forwards nothing): the body nests deeper than the
    /// bound, or is YAML the apiserver would read differently than pathgate can (merge keys,
    /// anchors, aliases, tags, repeated keys; see `tree`). Also set as `opaque_reason`.
    pub refusal: Option<String>,
    /// `limit` of a LIST, `labelSelector`/`fieldSelector` presence.
    ///
    /// Only a positive limit counts (`limit=0` asks for everything).
    pub list_limit: Option<u64>,
    pub has_selector: bool,
}

/// Analyses a request body against its request info. Never fails: what cannot be decoded
/// is reported in [`Analysis::opaque_reason`].
///
/// `query` is the raw query string (without `?`), `content_type` the request's
/// `Content-Type` header value.
pub fn analyse(
    info: &RequestInfo,
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Analysis {
    let mut analysis = Analysis {
        paths_known: true,
        ..Analysis::default()
    };
    let query = Query::parse(query).unwrap_or_else(|e| {
        analysis.opaque_reason = Some(e.to_string());
        Query::default()
    });
    analysis.field_manager = query.first("fieldManager").map(str::to_owned);
    analysis.force = query.go_bool("force").unwrap_or(false);
    analysis.list_limit = query
        .first("limit")
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n > 0);
    analysis.has_selector = ["labelSelector", "fieldSelector"]
        .iter()
        .any(|key| query.first(key).is_some_and(|v| !v.is_empty()));

    match info.verb {
        Verb::Delete | Verb::DeleteCollection => {
            analyse_delete(&mut analysis, &query, content_type, body)
        }
        Verb::Create if info.resource == "pods" && info.subresource == "eviction" => {
            analysis.dry_run = dry_run_values(query.all("dryRun"));
            analyse_eviction(&mut analysis, content_type, body);
        }
        Verb::Create | Verb::Update | Verb::Patch => {
            analysis.dry_run = dry_run_values(query.all("dryRun"));
            analyse_write(&mut analysis, info, content_type, body);
        }
        Verb::Get | Verb::List | Verb::Watch | Verb::Connect | Verb::NonResource => {}
    }
    if analysis.dry_run && !info.honours_dry_run() {
        analysis.dry_run = false;
        analysis.dry_run_ignored = true;
    }
    analysis
}

impl Analysis {
    fn opaque(&mut self, reason: impl Into<String>) {
        self.opaque_reason = Some(reason.into());
        self.paths_known = false;
        self.touched_paths.clear();
        self.payload_leaves = 0;
    }
}

/// A body that could not be read, and whether pathgate refuses the request for it.
struct Undecodable {
    reason: String,
    refused: bool,
}

impl From<String> for Undecodable {
    fn from(reason: String) -> Self {
        Self {
            reason,
            refused: false,
        }
    }
}

impl Analysis {
    fn undecodable(&mut self, context: &str, error: Undecodable) {
        let reason = format!("{context}{}", error.reason);
        if error.refused {
            self.refusal = Some(format!(
                "pathgate refuses this request: {reason}. pathgate forwards only bodies it \
                 reads exactly as the apiserver does, nested at most {MAX_NESTING} levels \
                 deep: send plain JSON (Content-Type: application/json), as kubectl does."
            ));
        }
        self.opaque(reason);
    }
}

fn read<'a>(result: Result<Node<'a>, ReadError>, syntax: &str) -> Result<Node<'a>, Undecodable> {
    result.map_err(|e| Undecodable {
        refused: e.is_refusal(),
        reason: if e.is_refusal() {
            e.to_string()
        } else {
            format!("invalid {syntax}: {e}")
        },
    })
}

fn decode_value(format: BodyFormat, body: &[u8]) -> Result<Node<'_>, Undecodable> {
    match format {
        BodyFormat::Json => read(tree::from_json(body), "JSON"),
        BodyFormat::Yaml => {
            // kubectl sends server-side apply bodies as JSON: read them with the JSON parser,
            // which is faster, then as the YAML reading would have them.
            let looks_like_json = body
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'{');
            match looks_like_json.then(|| tree::from_json_as_yaml(body)) {
                Some(Ok(value)) => Ok(value),
                Some(Err(e)) if e.is_refusal() => read(Err(e), "JSON"),
                _ => read(tree::from_yaml(body), "YAML"),
            }
        }
        other => Err(format!("{other:?} bodies are not decoded as JSON").into()),
    }
}

fn analyse_write(
    analysis: &mut Analysis,
    info: &RequestInfo,
    content_type: Option<&str>,
    body: &[u8],
) {
    if info.verb == Verb::Update && info.subresource.is_empty() {
        analysis.whole_object = Some(WholeObject::Replace);
    }
    let format = if info.verb == Verb::Patch {
        let patch_type = content_type.and_then(PatchType::from_content_type);
        let Some(patch_type) = patch_type else {
            analysis.body_format = BodyFormat::Unknown;
            analysis.opaque(format!(
                "patch media type {:?} is not one the apiserver accepts",
                content_type.unwrap_or_default()
            ));
            return;
        };
        analysis.patch_type = Some(patch_type);
        patch_type.body_format()
    } else {
        BodyFormat::from_content_type(content_type)
    };
    analysis.body_format = format;
    if body.is_empty() {
        analysis.opaque("the mutation has no body");
        return;
    }
    match format {
        BodyFormat::Json | BodyFormat::Yaml => {}
        BodyFormat::Protobuf => {
            match protobuf::envelope(body).and_then(|envelope| protobuf::object_identity(&envelope))
            {
                Ok(mut identity) => {
                    identity.shorten_annotations();
                    if identity.has_last_applied() && analysis.whole_object.is_none() {
                        analysis.whole_object = Some(WholeObject::ClientSideApply);
                    }
                    analysis.object = Some(identity);
                    analysis.paths_known = false;
                }
                Err(e) => analysis.opaque(format!("protobuf body does not decode: {e}")),
            }
            return;
        }
        BodyFormat::Cbor => {
            analysis.opaque("CBOR bodies are not decoded");
            return;
        }
        BodyFormat::Unknown | BodyFormat::None => {
            analysis.opaque(format!(
                "media type {:?} is not one the apiserver decodes",
                content_type.unwrap_or_default()
            ));
            return;
        }
    }
    let value = match decode_value(format, body) {
        Ok(value) => value,
        Err(e) => {
            analysis.undecodable("", e);
            return;
        }
    };

    let mut collector = Collector::new(info.subresource == "status");
    let mut path = String::with_capacity(256);
    match analysis.patch_type {
        Some(PatchType::JsonPatch) => match paths::json_patch(&value, &mut collector) {
            Ok(leaves) => analysis.payload_leaves = leaves,
            Err(e) => {
                analysis.opaque(format!("JSON patch: {}", e.0));
                return;
            }
        },
        patch_type => {
            if !value.is_object() {
                analysis.opaque("the body is not an object");
                return;
            }
            match patch_type {
                Some(PatchType::MergePatch) => paths::walk_merge(&value, &mut path, &mut collector),
                Some(PatchType::StrategicMergePatch) => {
                    paths::walk_strategic(&value, "", &mut path, &mut collector)
                }
                _ => paths::walk_object(&value, "", &mut path, &mut collector),
            }
            analysis.payload_leaves = collector.leaves;
            let identity = ObjectIdentity::from_json(&value);
            if analysis.whole_object.is_none() {
                let apply = patch_type == Some(PatchType::ApplyPatchYaml);
                if apply && restates_whole_object(&value, collector.leaves) {
                    analysis.whole_object = Some(WholeObject::ServerSideApply);
                } else if !apply && identity.has_last_applied() {
                    // An apply patch that carries the annotation without restating the
                    // object is kubectl's own bookkeeping: `kubectl apply --server-side`
                    // on an object once applied client-side re-saves the annotation with
                    // field manager `kubectl-last-applied` and nothing else.
                    analysis.whole_object = Some(WholeObject::ClientSideApply);
                }
            }
            analysis.object = Some(identity);
        }
    }
    analysis.touched_paths = collector.into_paths();
}

/// The server-side-apply criterion described in the module docs.
fn restates_whole_object(applied: &Node<'_>, leaves: usize) -> bool {
    leaves >= SSA_WHOLE_OBJECT_MIN_LEAVES
        || applied
            .at(&["spec", "selector"])
            .is_some_and(|selector| !selector.is_null())
}

fn analyse_delete(analysis: &mut Analysis, query: &Query, content_type: Option<&str>, body: &[u8]) {
    if body.is_empty() {
        match delete_options::from_query(query) {
            Ok(options) => {
                analysis.dry_run = options.dry_run;
                analysis.delete_options = Some(options);
            }
            Err(e) => analysis.opaque(e),
        }
        return;
    }
    let format = BodyFormat::from_content_type(content_type);
    analysis.body_format = format;
    let decoded: Result<DeleteOptions, Undecodable> = match format {
        BodyFormat::Json | BodyFormat::Yaml => decode_value(format, body)
            .and_then(|value| delete_options::from_json(&value).map_err(Undecodable::from)),
        BodyFormat::Protobuf => protobuf::envelope(body)
            .map_err(|e| e.to_string())
            .and_then(|envelope| {
                if envelope.kind.is_empty() || envelope.kind == "DeleteOptions" {
                    protobuf::delete_options(envelope.raw).map_err(|e| e.to_string())
                } else {
                    Err(format!(
                        "the body is a {:?}, not DeleteOptions",
                        envelope.kind
                    ))
                }
            })
            .map_err(Undecodable::from),
        BodyFormat::Cbor => Err("CBOR bodies are not decoded".to_owned().into()),
        BodyFormat::Unknown | BodyFormat::None => Err(format!(
            "media type {:?} is not one the apiserver decodes",
            content_type.unwrap_or_default()
        )
        .into()),
    };
    match decoded {
        Ok(mut options) => {
            options.query_ignored = delete_options::query_has_options(query);
            analysis.dry_run = options.dry_run;
            analysis.delete_options = Some(options);
        }
        Err(e) => analysis.undecodable("DeleteOptions body does not decode: ", e),
    }
}

fn analyse_eviction(analysis: &mut Analysis, content_type: Option<&str>, body: &[u8]) {
    let format = BodyFormat::from_content_type(content_type);
    analysis.body_format = format;
    if body.is_empty() {
        analysis.opaque("the eviction has no body");
        return;
    }
    let decoded = match format {
        BodyFormat::Json | BodyFormat::Yaml => decode_value(format, body).and_then(|value| {
            let options = match value.get("deleteOptions") {
                None | Some(Node::Null) => None,
                Some(options) => Some(delete_options::from_json(options)?),
            };
            Ok((ObjectIdentity::from_json(&value), options))
        }),
        BodyFormat::Protobuf => protobuf::envelope(body)
            .and_then(|envelope| protobuf::eviction(&envelope))
            .map_err(|e| Undecodable::from(e.to_string())),
        BodyFormat::Cbor => Err("CBOR bodies are not decoded".to_owned().into()),
        BodyFormat::Unknown | BodyFormat::None => Err(format!(
            "media type {:?} is not one the apiserver decodes",
            content_type.unwrap_or_default()
        )
        .into()),
    };
    match decoded {
        Ok((identity, options)) => {
            let options = options.unwrap_or_default();
            analysis.dry_run |= options.dry_run;
            analysis.delete_options = Some(options);
            analysis.object = Some(identity);
        }
        Err(e) => analysis.undecodable("eviction body does not decode: ", e),
    }
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
mod tests;
