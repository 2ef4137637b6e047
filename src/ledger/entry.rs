//! The `pathgate.ledger/v1` entry: one JSON object per request (and per intent).
//!
//! The entry mirrors the classify and policy contracts field by field instead of embedding
//! them, for two reasons: the ledger must deserialize its own entries (the autopsy reads them
//! back) and the schema is a public, versioned interface that must not change because an
//! internal type gained a field. The `From` conversions below are where the two meet; a
//! contract change that matters to the ledger breaks the build there.
//!
//! Every field is documented in `docs/ledger.md` and `docs/ledger.schema.json`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::images::ImageRecord;
use crate::classify::{Analysis, RequestInfo};
use crate::policy;

/// The schema identifier written in every entry.
pub const SCHEMA: &str = "pathgate.ledger/v1";

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Always [`SCHEMA`]; readers refuse entries of another major version.
    pub schema: String,
    /// `intent` (written before forwarding a mutation) or `outcome` (written on completion).
    pub phase: Phase,
    /// The execution trace id, also sent upstream as `Audit-ID`.
    pub trace_id: String,
    /// The session the request belongs to.
    pub session: String,
    /// Who made the request.
    pub client: Client,
    /// When pathgate received the request head.
    #[serde(with = "rfc3339")]
    pub started_at: OffsetDateTime,
    /// When the response ended (stream end for watches); absent on intents.
    #[serde(
        default,
        with = "rfc3339_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ended_at: Option<OffsetDateTime>,
    /// `ended_at - started_at` in milliseconds (microsecond precision); absent on intents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// What the request is, as the apiserver reads it.
    pub request: Request,
    /// The request's fingerprint (SHA-256, hex) as the gate computed it: two entries
    /// with the same fingerprint are the same request up to `dryRun` (PG010, PG015, the
    /// autopsy's `retry_loop`). Absent when the request was not gated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Facts about a mutation's payload; absent for requests without a body to analyse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRecord>,
    /// What pathgate's GET of the request's target showed before forwarding; absent when
    /// it did not fetch the target (no rule needed it) or the fetch failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetRecord>,
    /// What pathgate decided; absent when the request failed before a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionRecord>,
    /// `dryRun=All` as the client sent it and as pathgate forwarded it; absent for a verb
    /// that takes no dry run (a read, a watch) unless either side is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<SentForwarded<bool>>,
    /// DeleteOptions `gracePeriodSeconds` as sent and as forwarded; absent for a verb
    /// other than delete and deletecollection unless either side is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<SentForwarded<Option<i64>>>,
    /// LIST `limit` as sent and as forwarded; absent for a verb other than list unless
    /// either side is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<SentForwarded<Option<u64>>>,
    /// The response the client received; absent on intents and when no response was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseRecord>,
    /// The object named by the response, where it carried metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRecord>,
    /// The image of the apiserver's answer (the object after the mutation), for a
    /// forwarded non-dry-run mutation answered with an object; absent otherwise, and when
    /// the pre-image store is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_image: Option<ImageRecord>,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// Events streamed to the client, for watches only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_events: Option<u64>,
    /// Entries this pathgate process's ledger had dropped (any cause) when this one was
    /// recorded; absent while none. A rise between two entries means entries were lost
    /// between them (the autopsy's `dropped_entries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_dropped: Option<u64>,
    /// Which side failed and how, when the request did not complete normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
    /// The redacted request body, only when body capture is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<CapturedBody>,
}

/// Whether an entry announces a mutation about to be forwarded or records a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Written durably before a mutation is forwarded (`on_failure: fail-closed-mutations`).
    Intent,
    /// Written when the request completed (or failed).
    Outcome,
}

impl Phase {
    /// The lowercase name used in the schema and in dedupe keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Intent => "intent",
            Phase::Outcome => "outcome",
        }
    }
}

/// How pathgate authenticates upstream for this client (see DESIGN "Auth modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The client's bearer token is forwarded.
    Passthrough,
    /// pathgate's own identity; the client's credentials are dropped.
    Sidecar,
    /// pathgate's own identity plus `Impersonate-*` derived from the client certificate.
    Impersonate,
}

impl AuthMode {
    /// The lowercase name used in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Passthrough => "passthrough",
            AuthMode::Sidecar => "sidecar",
            AuthMode::Impersonate => "impersonate",
        }
    }
}

/// The client identity, as far as pathgate knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// User name, when known (client certificate CN, or an authenticated token's user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Groups, when known (client certificate O).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// `sha256:` + the first 16 hex digits of SHA-256 over the bearer token, never the
    /// token itself; see [`super::token_fingerprint`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_fingerprint: Option<String>,
    /// The upstream auth mode in force.
    pub auth_mode: AuthMode,
    /// The client's socket address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
}

/// What the request is. Mirrors [`RequestInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// HTTP method, uppercase.
    pub method: String,
    /// The path as the apiserver sees it (session prefix removed).
    pub path: String,
    /// The query string, made safe by [`super::safe_query`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, `connect`, `nonresource`).
    pub verb: String,
    /// Whether the request can change cluster state.
    pub mutation: bool,
    /// API group; empty for the core group.
    #[serde(default)]
    pub api_group: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub subresource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    /// The request's `Content-Type`, when it had a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The resource's scope from pathgate's table of built-in resources (`namespaced`,
    /// `cluster`, `unknown` for custom resources and aggregated APIs); absent for
    /// non-resource requests. Judge scope by this and `namespace`, never by a namespace
    /// in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// What the request does to the object it names, when that is not `verb`: `delete` for
    /// a pod eviction (`POST pods/<name>/eviction` deletes the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect_verb: Option<String>,
}

impl Request {
    /// The request record for a classified request. `query` is passed through
    /// [`super::safe_query`] here, so no caller can forget it.
    pub fn from_info(info: RequestInfo, query: Option<&str>, content_type: Option<&str>) -> Self {
        let scope = info
            .is_resource_request
            .then(|| info.scope().as_str().to_owned());
        let effect_verb =
            (info.effect_verb() != info.verb).then(|| info.effect_verb().as_str().to_owned());
        Request {
            scope,
            effect_verb,
            mutation: info.is_mutation(),
            verb: info.verb.as_str().to_owned(),
            method: info.method,
            path: info.path,
            query: query.and_then(super::safe_query),
            api_group: info.api_group,
            api_version: info.api_version,
            resource: info.resource,
            subresource: info.subresource,
            namespace: info.namespace,
            name: info.name,
            content_type: content_type.map(str::to_owned),
        }
    }

    /// A request that could not be classified (ambiguous path, bad query): only the request
    /// line is known.
    pub fn unclassified(method: &str, path: &str, query: Option<&str>) -> Self {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.and_then(super::safe_query),
            verb: String::new(),
            mutation: false,
            api_group: String::new(),
            api_version: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
            content_type: None,
            scope: None,
            effect_verb: None,
        }
    }
}

/// Facts about a mutation's payload. Mirrors the parts of [`Analysis`] the ledger keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisRecord {
    /// `json-patch`, `merge-patch`, `strategic-merge-patch`, `apply-patch-yaml`,
    /// `apply-patch-cbor`; absent when the request is not a patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// Payload scope: leaf paths the payload sets or removes (JSON pointers).
    #[serde(default)]
    pub touched_paths: Vec<String>,
    /// Effect scope: leaf paths that actually changed, when a pre- and post-image were known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect_paths: Option<Vec<String>>,
    /// `replace`, `server-side-apply` or `client-side-apply` when the payload restates a
    /// whole object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole_object: Option<String>,
    /// `none`, `json`, `yaml`, `protobuf`, `cbor` or `unknown`.
    pub body_format: String,
    /// Why the body could not be decoded (rule PG016).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opaque_reason: Option<String>,
    /// `metadata.name` as the body gives it (JSON, YAML or protobuf): the name of the
    /// object a create makes, which its path does not carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_name: Option<String>,
}

impl AnalysisRecord {
    /// True when the record holds nothing but `body_format: none`: the request had no
    /// body to analyse.
    pub fn is_bodiless(&self) -> bool {
        let AnalysisRecord {
            patch_type,
            touched_paths,
            effect_paths,
            whole_object,
            body_format,
            opaque_reason,
            object_name,
        } = self;
        patch_type.is_none()
            && touched_paths.is_empty()
            && effect_paths.is_none()
            && whole_object.is_none()
            && body_format == "none"
            && opaque_reason.is_none()
            && object_name.is_none()
    }
}

impl From<&Analysis> for AnalysisRecord {
    fn from(analysis: &Analysis) -> Self {
        AnalysisRecord {
            patch_type: analysis.patch_type.as_ref().map(serde_label),
            touched_paths: analysis.touched_paths.clone(),
            effect_paths: None,
            whole_object: analysis.whole_object.as_ref().map(serde_label),
            body_format: serde_label(&analysis.body_format),
            opaque_reason: analysis.opaque_reason.clone(),
            object_name: analysis.object.as_ref().and_then(|o| o.name.clone()),
        }
    }
}

/// The request's target object as pathgate fetched it before forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TargetRecord {
    /// `true`: the object existed (200); `false`: it did not (404).
    pub found: bool,
    /// The object's `ownerReference` with `controller: true`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<OwnerRecord>,
    /// The object's `metadata.resourceVersion` as fetched, when it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// The object's `metadata.uid` as fetched, when it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The image of the object as fetched just before a forwarded non-dry-run mutation
    /// (docs/ledger.md, "Pre-images").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_image: Option<ImageRecord>,
}

/// An owner reference of the target object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

impl TargetRecord {
    /// The record of a fetched object: whether it existed, its `resourceVersion` and
    /// `uid`, and its controller owner read from `metadata.ownerReferences` (the first
    /// entry with `controller: true`).
    pub fn from_object(object: Option<&serde_json::Value>) -> Self {
        let Some(object) = object else {
            return TargetRecord::default();
        };
        let metadata_text = |key: &str| {
            object
                .pointer(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let controller = object
            .pointer("/metadata/ownerReferences")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .find(|owner| owner.get("controller") == Some(&serde_json::Value::Bool(true)))
            .map(|owner| {
                let text = |key: &str| {
                    owner
                        .get(key)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                OwnerRecord {
                    api_version: text("apiVersion"),
                    kind: text("kind"),
                    name: text("name"),
                }
            });
        TargetRecord {
            found: true,
            controller,
            resource_version: metadata_text("/metadata/resourceVersion"),
            uid: metadata_text("/metadata/uid"),
            pre_image: None,
        }
    }
}

/// Policy mode. Mirrors [`policy::Mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Observe,
    Enforce,
    Rehearse,
}

impl Mode {
    /// The lowercase name used in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Enforce => "enforce",
            Mode::Rehearse => "rehearse",
        }
    }
}

impl From<policy::Mode> for Mode {
    fn from(mode: policy::Mode) -> Self {
        match mode {
            policy::Mode::Observe => Mode::Observe,
            policy::Mode::Enforce => Mode::Enforce,
            policy::Mode::Rehearse => Mode::Rehearse,
        }
    }
}

/// What a rule (or the whole decision) did. Mirrors [`policy::Action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Flag,
    Rewrite,
    Confirm,
    Deny,
}

impl Action {
    /// Every action, in severity order: the closed label set of the metrics.
    pub const ALL: [Action; 5] = [
        Action::Allow,
        Action::Flag,
        Action::Rewrite,
        Action::Confirm,
        Action::Deny,
    ];

    /// The lowercase name used in the schema and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Flag => "flag",
            Action::Rewrite => "rewrite",
            Action::Confirm => "confirm",
            Action::Deny => "deny",
        }
    }
}

impl From<policy::Action> for Action {
    fn from(action: policy::Action) -> Self {
        match action {
            policy::Action::Allow => Action::Allow,
            policy::Action::Flag => Action::Flag,
            policy::Action::Rewrite => Action::Rewrite,
            policy::Action::Confirm => Action::Confirm,
            policy::Action::Deny => Action::Deny,
        }
    }
}

impl From<Action> for policy::Action {
    fn from(action: Action) -> Self {
        match action {
            Action::Allow => policy::Action::Allow,
            Action::Flag => policy::Action::Flag,
            Action::Rewrite => policy::Action::Rewrite,
            Action::Confirm => policy::Action::Confirm,
            Action::Deny => policy::Action::Deny,
        }
    }
}

/// One rule's verdict. Mirrors [`policy::Finding`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// Stable rule id, e.g. `PG004`.
    pub rule: String,
    pub action: Action,
    pub message: String,
}

/// A change pathgate made before forwarding. Mirrors [`policy::Rewrite`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RewriteRecord {
    AddDryRun,
    SetGracePeriod { from: Option<i64>, to: i64 },
    AddLimit { limit: u64 },
}

impl From<&policy::Rewrite> for RewriteRecord {
    fn from(rewrite: &policy::Rewrite) -> Self {
        match rewrite {
            policy::Rewrite::AddDryRun => RewriteRecord::AddDryRun,
            policy::Rewrite::SetGracePeriod { from, to } => RewriteRecord::SetGracePeriod {
                from: *from,
                to: *to,
            },
            policy::Rewrite::AddLimit { limit } => RewriteRecord::AddLimit { limit: *limit },
        }
    }
}

/// What pathgate decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The policy mode in force.
    pub mode: Mode,
    /// The action actually taken.
    pub action: Action,
    /// The action `enforce` would have taken (differs from `action` in observe/rehearse).
    pub enforce_action: Action,
    #[serde(default)]
    pub findings: Vec<FindingRecord>,
    #[serde(default)]
    pub rewrites: Vec<RewriteRecord>,
    /// `true` when a `confirm` finding was satisfied by a confirmation token.
    #[serde(default)]
    pub confirmed: bool,
    /// The session budget PG019 found exceeded (absent unless it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetRecord>,
}

/// A session budget a request was past (PG019): which, its limit and what was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetRecord {
    /// The key under `budgets:`: `mutations`, `deletes`, `read_bytes`,
    /// `requests_per_window`.
    pub name: String,
    pub limit: u64,
    /// What the session had used of it before this request.
    pub used: u64,
}

impl From<&policy::BudgetBreach> for BudgetRecord {
    fn from(breach: &policy::BudgetBreach) -> Self {
        BudgetRecord {
            name: breach.budget.as_str().to_owned(),
            limit: breach.limit,
            used: breach.used,
        }
    }
}

impl DecisionRecord {
    /// The record of a policy decision.
    pub fn new(mode: policy::Mode, decision: &policy::Decision, confirmed: bool) -> Self {
        DecisionRecord {
            mode: mode.into(),
            action: decision.action.into(),
            enforce_action: decision.enforce_action.into(),
            findings: decision
                .findings
                .iter()
                .map(|finding| FindingRecord {
                    rule: finding.rule.as_str().to_owned(),
                    action: finding.action.into(),
                    message: finding.message.clone(),
                })
                .collect(),
            rewrites: decision.rewrites.iter().map(RewriteRecord::from).collect(),
            confirmed,
            budget: decision.budget.as_ref().map(BudgetRecord::from),
        }
    }
}

/// A value as the client sent it and as pathgate forwarded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SentForwarded<T> {
    pub sent: T,
    pub forwarded: T,
}

impl<T: Clone> SentForwarded<T> {
    /// A value pathgate did not change.
    pub fn unchanged(value: T) -> Self {
        SentForwarded {
            sent: value.clone(),
            forwarded: value,
        }
    }
}

/// Who produced the response the client received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The apiserver answered (pathgate streamed its response).
    Upstream,
    /// pathgate answered itself (denial, confirmation request, 413, 503...).
    Pathgate,
}

impl Origin {
    /// The lowercase name used in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Upstream => "upstream",
            Origin::Pathgate => "pathgate",
        }
    }
}

/// The response the client received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseRecord {
    pub status_code: u16,
    /// The `reason` of a Kubernetes `Status` body (`Forbidden`, `AlreadyExists`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The apiserver's `Audit-ID` response header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    pub origin: Origin,
    /// How the response ended: relayed whole, or cut short by the client or the upstream.
    /// Absent in entries written before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<ResponseEnd>,
    /// For an answer pathgate reads before relaying it (mutations, error answers): whether
    /// it was read whole (`object` and `reason` come from it) or relayed unread (past the
    /// inspection bound, or broken by the upstream). Absent for streamed answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_inspected: Option<bool>,
}

/// How a response ended, as pathgate saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseEnd {
    /// The whole response was handed to the client's connection.
    Complete,
    /// The client went away (connection reset, HTTP/2 stream reset) before the end.
    ClientAborted,
    /// The upstream broke the body off before its end.
    UpstreamError,
    /// pathgate ended a watch cleanly because it was draining.
    Drained,
}

impl ResponseEnd {
    /// Every value, in schema order.
    pub const ALL: [ResponseEnd; 4] = [
        ResponseEnd::Complete,
        ResponseEnd::ClientAborted,
        ResponseEnd::UpstreamError,
        ResponseEnd::Drained,
    ];

    /// The snake_case name used in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseEnd::Complete => "complete",
            ResponseEnd::ClientAborted => "client_aborted",
            ResponseEnd::UpstreamError => "upstream_error",
            ResponseEnd::Drained => "drained",
        }
    }
}

/// The object named by the response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// `metadata.name` of the answer: the only place a `generateName` create is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `metadata.namespace` of the answer; absent for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

impl ObjectRecord {
    /// The identity of a Kubernetes object (a mutation's response body): `metadata.uid`,
    /// `metadata.resourceVersion`, `metadata.generation`. `None` when the body carries
    /// none of them (a `Status`, a list, not an object).
    pub fn from_object(object: &serde_json::Value) -> Option<Self> {
        let metadata = object.get("metadata")?;
        let text = |key: &str| {
            metadata
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let record = ObjectRecord {
            name: text("name"),
            namespace: text("namespace"),
            uid: text("uid"),
            resource_version: text("resourceVersion"),
            generation: metadata
                .get("generation")
                .and_then(serde_json::Value::as_i64),
        };
        (record != ObjectRecord::default()).then_some(record)
    }
}

/// The `reason` of a Kubernetes `Status` body (`{"kind":"Status","reason":"Forbidden"}`);
/// `None` for any other body.
pub fn status_reason(body: &serde_json::Value) -> Option<String> {
    if body.get("kind")?.as_str()? != "Status" {
        return None;
    }
    body.get("reason")?
        .as_str()
        .filter(|reason| !reason.is_empty())
        .map(str::to_owned)
}

pub use crate::failure::{ErrorKind, Side};

/// How a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub side: Side,
    pub kind: ErrorKind,
    pub message: String,
}

/// A captured, redacted request body (see [`super::capture_body`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapturedBody {
    /// The body as JSON after redaction; absent when it was too large or not JSON/YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// Size of the body as received.
    pub original_bytes: u64,
    /// `true` when the redacted body exceeded the capture limit and was left out.
    pub truncated: bool,
}

impl Entry {
    /// The name the request's body gives its object (`analysis.object_name`): the only
    /// name a create's path does not carry.
    pub fn body_object_name(&self) -> Option<&str> {
        self.analysis.as_ref()?.object_name.as_deref()
    }

    /// The object's name: the request path's, else the one its body gives; empty when
    /// neither names one.
    pub fn object_name(&self) -> String {
        match self.request.name.as_str() {
            "" => self.body_object_name().unwrap_or_default().to_string(),
            name => name.to_string(),
        }
    }

    /// A new outcome entry with the fields every request has; the proxy fills the rest as it
    /// learns them.
    pub fn new(
        trace_id: impl Into<String>,
        session: impl Into<String>,
        client: Client,
        started_at: OffsetDateTime,
        request: Request,
    ) -> Self {
        Entry {
            schema: SCHEMA.to_owned(),
            phase: Phase::Outcome,
            trace_id: trace_id.into(),
            session: session.into(),
            client,
            started_at,
            ended_at: None,
            duration_ms: None,
            request,
            fingerprint: None,
            analysis: None,
            target: None,
            decision: None,
            dry_run: None,
            grace_period: None,
            limit: None,
            response: None,
            object: None,
            post_image: None,
            bytes_in: 0,
            bytes_out: 0,
            watch_events: None,
            ledger_dropped: None,
            error: None,
            body: None,
        }
    }

    /// Sets `ended_at` and `duration_ms` (microsecond precision).
    pub fn finish(&mut self, ended_at: OffsetDateTime) {
        let micros = (ended_at - self.started_at).whole_microseconds().max(0);
        self.ended_at = Some(ended_at);
        self.duration_ms = Some(micros as f64 / 1000.0);
    }

    /// The key a receiver dedupes on: an entry may be delivered more than once
    /// (at-least-once), but `(trace_id, phase)` is unique.
    pub fn dedupe_key(&self) -> String {
        format!("{}/{}", self.trace_id, self.phase.as_str())
    }
}

/// The serde name of a unit enum variant (`Verb::DeleteCollection` -> `deletecollection`):
/// the contract types define their wire names once, with serde, and the ledger reuses them.
fn serde_label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(label)) => label,
        other => format!("{other:?}"),
    }
}

/// RFC 3339 timestamps with the `time` crate's formatting and parsing features.
mod rfc3339 {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(
        value: &OffsetDateTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        // Formatted on the stack: two timestamps per entry, no allocation.
        let mut buffer = [0u8; 64];
        let mut out = &mut buffer[..];
        value
            .format_into(&mut out, &Rfc3339)
            .map_err(serde::ser::Error::custom)?;
        let written = 64 - out.len();
        let text = std::str::from_utf8(&buffer[..written]).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(D::Error::custom)
    }
}

mod rfc3339_option {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(
        value: &Option<OffsetDateTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => super::rfc3339::serialize(value, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::rfc3339")] OffsetDateTime);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(value)| value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_identity_comes_from_metadata() {
        let pod = json!({"kind": "Pod", "metadata": {"uid": "u-1", "resourceVersion": "42", "generation": 3}});
        assert_eq!(
            ObjectRecord::from_object(&pod),
            Some(ObjectRecord {
                uid: Some("u-1".into()),
                resource_version: Some("42".into()),
                generation: Some(3),
                ..ObjectRecord::default()
            })
        );
        let generated =
            json!({"metadata": {"name": "web-x7k2p", "namespace": "shop", "uid": "u-2"}});
        let record = ObjectRecord::from_object(&generated).unwrap();
        assert_eq!(record.name.as_deref(), Some("web-x7k2p"));
        assert_eq!(record.namespace.as_deref(), Some("shop"));
        assert_eq!(ObjectRecord::from_object(&json!({"kind": "Status"})), None);
        assert_eq!(ObjectRecord::from_object(&json!({"metadata": {}})), None);
    }

    #[test]
    fn target_records_keep_only_the_controller_owner() {
        let pod = json!({"metadata": {"resourceVersion": "7", "uid": "u-7", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c7", "controller": true}
        ]}});
        assert_eq!(
            TargetRecord::from_object(Some(&pod)),
            TargetRecord {
                found: true,
                controller: Some(OwnerRecord {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "web-5d9c7".into()
                }),
                resource_version: Some("7".into()),
                uid: Some("u-7".into()),
                pre_image: None,
            }
        );
        let owned_not_controlled = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg", "controller": false}
        ]}});
        assert_eq!(
            TargetRecord::from_object(Some(&owned_not_controlled)).controller,
            None
        );
        assert_eq!(
            TargetRecord::from_object(None),
            TargetRecord {
                found: false,
                ..TargetRecord::default()
            }
        );
    }

    #[test]
    fn status_reason_only_from_status_bodies() {
        let status =
            json!({"kind": "Status", "status": "Failure", "reason": "AlreadyExists", "code": 409});
        assert_eq!(status_reason(&status).as_deref(), Some("AlreadyExists"));
        assert_eq!(
            status_reason(&json!({"kind": "Status", "status": "Success"})),
            None
        );
        assert_eq!(
            status_reason(&json!({"kind": "Pod", "reason": "Evicted"})),
            None
        );
    }

    #[test]
    fn finish_sets_duration_with_microsecond_precision() {
        let started = time::macros::datetime!(2026-01-01 00:00:00 UTC);
        let mut entry = crate::ledger::testing::read("t");
        entry.started_at = started;
        entry.finish(started + time::Duration::microseconds(1_234_567));
        assert_eq!(entry.duration_ms, Some(1234.567));
        assert_eq!(
            entry.ended_at,
            Some(started + time::Duration::microseconds(1_234_567))
        );
    }
}
