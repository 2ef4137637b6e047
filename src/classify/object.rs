//! What a body says about its object: identity and metadata ([`ObjectIdentity`], read from
//! JSON, YAML or protobuf) and the [`DeleteOptions`] of a delete or an eviction.
//!
//! Owns: the shared vocabulary of `analysis`, `delete_options` and `protobuf`, which each
//! fill these types from their own wire format. Does not own: reading the formats.

use serde::Serialize;

use super::paths::LAST_APPLIED;
use super::tree::Node;

/// Annotation values longer than this are cut in [`ObjectIdentity::annotations`]: the ledger
/// records them, and they can be large.
const MAX_ANNOTATION_VALUE: usize = 1024;

/// One `metadata.ownerReferences` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
}

/// What the ledger keeps of the object an apiserver answer carries (its identity and
/// version), or of a `Status` answer (its reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerMeta {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub generation: Option<i64>,
    /// A `Status` answer's `reason`.
    pub status_reason: Option<String>,
}

impl AnswerMeta {
    /// Reads a protobuf answer (what a typed client such as kubectl's `create deployment`
    /// asks for); `None` for another media type or a body that does not decode.
    pub fn of_protobuf(content_type: Option<&str>, body: &[u8]) -> Option<AnswerMeta> {
        let media = content_type?.split(';').next()?.trim();
        if media != "application/vnd.kubernetes.protobuf" {
            return None;
        }
        super::protobuf::answer_meta(body).ok()
    }
}

/// The identity and metadata a body declares (read from JSON, YAML or protobuf).
///
/// For a patch, only what the patch itself mentions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectIdentity {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub generate_name: Option<String>,
    /// `metadata.labels` (string values only).
    pub labels: Vec<(String, String)>,
    /// `metadata.annotations` (string values only). The last-applied-configuration value is
    /// replaced by a note of its size (it restates the whole object, Secret data included);
    /// other values longer than 1 KiB are cut.
    pub annotations: Vec<(String, String)>,
    pub owner_references: Vec<OwnerReference>,
}

impl ObjectIdentity {
    /// The value of an annotation.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body carries client-side apply's last-applied annotation.
    pub fn has_last_applied(&self) -> bool {
        self.annotation(LAST_APPLIED).is_some()
    }

    /// The controller owner reference, if any.
    pub fn controller(&self) -> Option<&OwnerReference> {
        self.owner_references.iter().find(|o| o.controller)
    }

    pub(super) fn from_json(value: &Node<'_>) -> Self {
        let text = |v: Option<&Node<'_>>| v.and_then(Node::as_str).map(str::to_owned);
        let meta = value.get("metadata");
        let pairs = |field: &str| -> Vec<(String, String)> {
            let mut pairs: Vec<(String, String)> = Vec::new();
            let entries = meta.and_then(|m| m.get(field)).and_then(Node::as_object);
            for (key, value) in entries.unwrap_or_default() {
                let Some(value) = value.as_str() else {
                    continue;
                };
                // Go maps keep the last value of a repeated key.
                match pairs.iter_mut().find(|(k, _)| k == key) {
                    Some(existing) => existing.1 = value.to_owned(),
                    None => pairs.push((key.to_string(), value.to_owned())),
                }
            }
            pairs
        };
        let owner_references = meta
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Node::as_array)
            .unwrap_or_default()
            .iter()
            .filter(|o| o.is_object())
            .map(|o| OwnerReference {
                api_version: text(o.get("apiVersion")).unwrap_or_default(),
                kind: text(o.get("kind")).unwrap_or_default(),
                name: text(o.get("name")).unwrap_or_default(),
                uid: text(o.get("uid")).unwrap_or_default(),
                controller: o.get("controller").and_then(Node::as_bool).unwrap_or(false),
            })
            .collect();
        let mut identity = Self {
            api_version: text(value.get("apiVersion")),
            kind: text(value.get("kind")),
            namespace: text(meta.and_then(|m| m.get("namespace"))),
            name: text(meta.and_then(|m| m.get("name"))),
            generate_name: text(meta.and_then(|m| m.get("generateName"))),
            labels: pairs("labels"),
            annotations: pairs("annotations"),
            owner_references,
        };
        identity.shorten_annotations();
        identity
    }

    pub(super) fn shorten_annotations(&mut self) {
        for (key, value) in &mut self.annotations {
            if key == LAST_APPLIED {
                *value = format!("(omitted: {} bytes)", value.len());
            } else if value.len() > MAX_ANNOTATION_VALUE {
                let mut cut = MAX_ANNOTATION_VALUE;
                while !value.is_char_boundary(cut) {
                    cut -= 1;
                }
                let total = value.len();
                value.truncate(cut);
                value.push_str(&format!("…(cut, {total} bytes)"));
            }
        }
    }
}

/// DeleteOptions as the apiserver reads them: from the body when there is one, otherwise
/// from the query (the apiserver never merges the two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    /// `dryRun: ["All"]` (every value `All`).
    pub dry_run: bool,
    /// `ignoreStoreReadErrorWithClusterBreakingPotential`: the unsafe deletion of an object
    /// the apiserver cannot read back.
    pub ignore_store_read_error_with_cluster_breaking_potential: Option<bool>,
    /// Where the options came from: `body`, `query`, or `none` (a DELETE with neither).
    pub source: &'static str,
    /// The request has a body *and* DeleteOptions query parameters: the apiserver ignores
    /// the query ones. (A rewrite must change the body, not the query.)
    pub query_ignored: bool,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        Self {
            grace_period_seconds: None,
            propagation_policy: None,
            orphan_dependents: None,
            precondition_uid: None,
            precondition_resource_version: None,
            dry_run: false,
            ignore_store_read_error_with_cluster_breaking_potential: None,
            source: "none",
            query_ignored: false,
        }
    }
}
