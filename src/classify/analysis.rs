//! Mutation analysis: what a create, update, patch or delete body would change.

use serde::Serialize;

use super::RequestInfo;

/// The five patch media types the apiserver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchType {
    /// `application/json-patch+json`
    JsonPatch,
    /// `application/merge-patch+json`
    MergePatch,
    /// `application/strategic-merge-patch+json`
    StrategicMergePatch,
    /// `application/apply-patch+yaml` (server-side apply)
    ApplyPatchYaml,
    /// `application/apply-patch+cbor` (server-side apply)
    ApplyPatchCbor,
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    None,
    Json,
    Yaml,
    Protobuf,
    Cbor,
    /// Undecodable or an unknown media type.
    Unknown,
}

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

/// One `metadata.ownerReferences` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
}

/// The identity and metadata a body declares (read from JSON, YAML or protobuf).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectIdentity {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub annotations: Vec<(String, String)>,
    pub owner_references: Vec<OwnerReference>,
}

/// DeleteOptions merged as the apiserver merges them: the body wins over the query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
    /// Where the options came from: `query`, `body` or `query+body`.
    pub source: &'static str,
}

/// The result of [`analyse`]: facts about the payload, no judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Analysis {
    pub patch_type: Option<PatchType>,
    pub body_format: BodyFormat,
    /// Leaf paths the payload sets or removes, as JSON pointers (`/spec/replicas`),
    /// identity metadata (apiVersion, kind, metadata.name/namespace) excluded.
    pub touched_paths: Vec<String>,
    pub whole_object: Option<WholeObject>,
    /// `dryRun=All` in the query (or in DeleteOptions / options of the body).
    pub dry_run: bool,
    pub delete_options: Option<DeleteOptions>,
    /// `fieldManager` query parameter.
    pub field_manager: Option<String>,
    /// `force=true` (server-side apply conflicts).
    pub force: bool,
    /// The object's identity and metadata, where the body could be read.
    pub object: Option<ObjectIdentity>,
    /// Why the body could not be decoded (rule PG016); `None` when it was understood.
    pub opaque_reason: Option<String>,
    /// `limit` of a LIST, `labelSelector`/`fieldSelector` presence.
    pub list_limit: Option<u64>,
    pub has_selector: bool,
}

/// Analyses a request body against its request info. Never fails: what cannot be decoded
/// is reported in [`Analysis::opaque_reason`].
pub fn analyse(
    info: &RequestInfo,
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Analysis {
    let _ = (info, query, content_type, body);
    unimplemented!("classify::analyse")
}
