//! The configuration file as written: every key optional, unknown keys refused.
//!
//! This is the parse stage only; [`super::validate`] turns it into the frozen
//! [`super::Config`]. The same types serialise the effective configuration for
//! `pathgate check-config`, so its output is itself a valid file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::{Mode, ObjectPatternFile, RuleAction};

/// The top level of a pathgate configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_gates: Option<SafetyGatesFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_enforcement: Option<SchemaEnforcementFile>,
    /// Rule id (or name) -> action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<BTreeMap<String, RuleAction>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected_namespaces: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutation_namespaces: Option<Vec<String>>,
    /// PG018: `{group, resource, namespace, name}` globs of objects no request may change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected_objects: Option<Vec<ObjectPatternFile>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_grace_period_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm_window_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_loop: Option<RetryLoopFile>,
    /// PG019: per-session budgets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budgets: Option<BudgetsFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerFile>,
}

/// `safety_gates:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyGatesFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run_default: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_patch_keys: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_direct_deletion: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_grace_period: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_full_replace_allowed: Option<bool>,
}

/// `schema_enforcement:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaEnforcementFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict_identity: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector_filter: Option<bool>,
    /// `null` (or absent) disables the PG011 rewrite. Serialised even when `None`, so the
    /// effective configuration shows the key.
    #[serde(default)]
    pub discovery_payload_limit: Option<u64>,
}

/// `retry_loop:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryLoopFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
}

/// `budgets:` (PG019). A budget left out (or `null`) is off; the budgets are serialised
/// even when off, so the effective configuration shows every key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetsFile {
    #[serde(default)]
    pub mutations: Option<u64>,
    #[serde(default)]
    pub deletes: Option<u64>,
    #[serde(default)]
    pub read_bytes: Option<u64>,
    #[serde(default)]
    pub requests_per_window: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
}

/// How pathgate authenticates to the apiserver (`server.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Forward the client's own bearer token; pathgate holds no cluster credentials.
    Passthrough,
    /// pathgate's own kubeconfig or service account; the client's `Authorization` is
    /// dropped.
    Sidecar,
    /// pathgate's own identity plus `Impersonate-User/Group` from the client certificate.
    Impersonate,
}

/// `server:` — every key optional; command-line flags override them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_kubeconfig: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_cluster: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_timeout_seconds: Option<u64>,
    // Client-connection timeouts and limits (`super::connections`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake_timeout_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_read_timeout_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_keepalive_interval_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_keepalive_timeout_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_max_concurrent_streams: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_peer: Option<u64>,
}

/// What happens to requests when the ledger cannot record them (`ledger.on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Keep serving; count and alarm the lost entries.
    #[default]
    FailOpen,
    /// Refuse mutations (503) while entries cannot be recorded; reads keep flowing.
    FailClosedMutations,
}

/// `ledger.otlp:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpFile {
    pub endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

/// `ledger.webhook:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `ledger:`. There is no JSONL file key and no fsync switch: the spool segments in `dir`
/// are the JSONL ledger, and they are always group-committed with fsync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_segment_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_spool_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durable_timeout_ms: Option<u64>,
    /// `null` (or absent) captures no bodies. Serialised even when `None`, so the effective
    /// configuration shows the key.
    #[serde(default)]
    pub capture_bodies_max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpFile>,
}
