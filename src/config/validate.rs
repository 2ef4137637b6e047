//! Validation: the parsed [`ConfigFile`] becomes the frozen [`Config`], or an error naming
//! the key and the reason. Also the way back (`Config` -> `ConfigFile`) for printing the
//! effective configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::policy::{
    Budgets, NamespacePattern, ObjectPattern, ObjectPatternFile, Policy, RetryLoop, RuleAction,
    RuleId, SafetyGates, SchemaEnforcement,
};

use super::connections::ConnectionKeys;
use super::file::{
    AuthMode, BudgetsFile, ConfigFile, LedgerFile, OnFailure, OtlpFile, RetryLoopFile,
    SafetyGatesFile, SchemaEnforcementFile, ServerFile, WebhookFile,
};
use super::{defaults, Config};

/// A key whose value is refused, before the file name is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ValidationError {
    /// Dotted key path, e.g. `safety_gates.max_patch_keys` or `protected_namespaces[1]`.
    pub key: String,
    pub reason: String,
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ValidationError {
    ValidationError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// `server:` as validated, command-line overrides included ([`super::Overrides`]). A key
/// left out stays `None`; its default is in [`super::defaults`], applied where the setting
/// is used (`cli::ServeArgs::gateway`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSettings {
    /// Where the proxy listens for clients.
    pub listen: Option<SocketAddr>,
    /// Where metrics and health are served, or off.
    pub admin_listen: Option<AdminListen>,
    pub auth: Option<AuthMode>,
    /// The kubeconfig pathgate uses to reach the apiserver (relative paths resolved
    /// against the config file's directory).
    pub upstream_kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    pub context: Option<String>,
    /// Use the pod's service account instead of a kubeconfig.
    pub in_cluster: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA bundle for verifying client certificates (enables mTLS).
    pub client_ca: Option<PathBuf>,
    /// Bearer tokens (one per line) clients may present in sidecar mode.
    pub client_token_file: Option<PathBuf>,
    /// Largest mutation body pathgate reads (413 past it).
    pub max_body_bytes: Option<u64>,
    /// The session of requests that carry none.
    pub default_session: Option<String>,
    /// Threads serving requests (see [`defaults::WORKERS`]).
    pub workers: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub drain_timeout_seconds: Option<u64>,
    /// Client-connection timeouts and limits.
    pub connections: ConnectionKeys,
}

/// `server.admin_listen`: an address, or `off` (no admin listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    Off,
    At(SocketAddr),
}

impl AdminListen {
    /// The address to listen on; `None` when off.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            AdminListen::Off => None,
            AdminListen::At(addr) => Some(addr),
        }
    }
}

impl std::fmt::Display for AdminListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminListen::Off => f.write_str("off"),
            AdminListen::At(addr) => write!(f, "{addr}"),
        }
    }
}

/// Upper bound of `server.workers`.
pub const MAX_WORKERS: usize = 256;

/// Bounds of `server.max_body_bytes`.
const MIN_BODY_BYTES: u64 = 1024;
const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;
/// Bounds of `server.drain_timeout_seconds`: 0 stops at once, cutting what is in flight.
const DRAIN_TIMEOUT_SECONDS: (u64, u64) = (0, 3_600);

/// Why a listener's client authentication would be unsafe. The one place that knows: both
/// configuration validation and `serve::start` (options built without a file) ask here.
pub fn client_auth_problem(
    auth: AuthMode,
    listen: SocketAddr,
    client_ca: bool,
    client_token_file: bool,
) -> Option<(&'static str, String)> {
    match auth {
        AuthMode::Impersonate if !client_ca => Some((
            "server.client_ca",
            "auth: impersonate (--auth impersonate) derives the user from verified client \
             certificates, so client_ca (--client-ca) is required"
                .to_string(),
        )),
        AuthMode::Sidecar if !listen.ip().is_loopback() && !client_ca && !client_token_file => {
            Some((
                "server.listen",
                format!(
                    "auth: sidecar on {listen} (not loopback) with no client authentication \
                     would lend pathgate's credentials to anyone who can connect; set \
                     client_ca (--client-ca) or client_token_file (--client-token-file), or \
                     listen on 127.0.0.1"
                ),
            ))
        }
        _ => None,
    }
}

impl ServerSettings {
    /// Cross-key checks.
    pub fn check(&self) -> Result<(), ValidationError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(invalid(
                    "server.tls_key",
                    "tls_cert is set but tls_key is not; set both or neither",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "server.tls_cert",
                    "tls_key is set but tls_cert is not; set both or neither",
                ))
            }
            _ => {}
        }
        if self.in_cluster == Some(true) && self.upstream_kubeconfig.is_some() {
            return Err(invalid(
                "server.in_cluster",
                "in_cluster: true and upstream_kubeconfig are exclusive; choose one upstream",
            ));
        }
        if self.in_cluster == Some(true) && self.context.is_some() {
            return Err(invalid(
                "server.context",
                "context selects a kubeconfig context and means nothing with in_cluster: true",
            ));
        }
        if let Some((key, reason)) = client_auth_problem(
            self.auth.unwrap_or(defaults::AUTH),
            self.listen.unwrap_or(defaults::LISTEN),
            self.client_ca.is_some(),
            self.client_token_file.is_some(),
        ) {
            return Err(invalid(key, reason));
        }
        self.connections.check()
    }
}

/// `ledger:` as validated: plain data, in the file's units, for the ledger module
/// (`crate::ledger::LedgerSettings::from_config` maps it). The defaults are the ledger's
/// own (`crate::ledger::LedgerSettings::new`), and a test holds them equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// Spool directory: the JSONL ledger itself, and what every sink reads from. `None`
    /// turns the ledger off (unless `--ledger-dir` sets it, see
    /// [`Config::with_ledger_dir`]).
    pub dir: Option<PathBuf>,
    pub on_failure: OnFailure,
    /// Entries the in-memory queue holds before non-durable entries are dropped (counted).
    pub queue_capacity: u32,
    /// Longest time a non-durable entry stays written but not fsynced.
    pub flush_interval_ms: u64,
    /// A spool segment is closed and a new one started past this size.
    pub max_segment_bytes: u64,
    /// The oldest segments are deleted past this total.
    pub max_spool_bytes: u64,
    /// How long a mutation's durable record may wait (queue space + fsync) before it fails.
    pub durable_timeout_ms: u64,
    /// Capture redacted mutation bodies up to this size; `None` captures none.
    pub capture_bodies_max_bytes: Option<u64>,
    /// Print every entry on standard output as JSONL (a sink reading the spool).
    pub stdout: bool,
    pub webhook: Option<WebhookSettings>,
    pub otlp: Option<OtlpSettings>,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            dir: None,
            on_failure: OnFailure::FailOpen,
            queue_capacity: defaults::QUEUE_CAPACITY,
            flush_interval_ms: defaults::FLUSH_INTERVAL_MS,
            max_segment_bytes: defaults::MAX_SEGMENT_BYTES,
            max_spool_bytes: defaults::MAX_SPOOL_BYTES,
            durable_timeout_ms: defaults::DURABLE_TIMEOUT_MS,
            capture_bodies_max_bytes: None,
            stdout: false,
            webhook: None,
            otlp: None,
        }
    }
}

impl LedgerSettings {
    /// The checks that need the final `dir` (the file's or `--ledger-dir`'s), run by
    /// [`Config::load_with`] after the overrides. Besides what loading already checks, it refuses
    /// settings that would be silently ignored because no `dir` is set: the sinks read
    /// from the spool, and fail-closed and body capture mean nothing without a ledger.
    pub fn check(&self) -> Result<(), ValidationError> {
        self.check_sizes()?;
        if self.dir.is_some() {
            return Ok(());
        }
        let needs_dir = [
            ("ledger.stdout", self.stdout),
            ("ledger.webhook", self.webhook.is_some()),
            ("ledger.otlp", self.otlp.is_some()),
            (
                "ledger.on_failure",
                self.on_failure == OnFailure::FailClosedMutations,
            ),
            (
                "ledger.capture_bodies_max_bytes",
                self.capture_bodies_max_bytes.is_some(),
            ),
        ];
        match needs_dir.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(invalid(
                *key,
                "needs a ledger, and the ledger is off: set ledger.dir (or --ledger-dir); \
                 the spool in dir is the ledger every sink reads from",
            )),
            None => Ok(()),
        }
    }

    /// Checks between keys that hold whatever `dir` is (run at load).
    fn check_sizes(&self) -> Result<(), ValidationError> {
        // Retention deletes whole closed segments and never the one being written: with
        // room for fewer than two, a closed segment would be deleted as soon as it closed,
        // before a sink that lags a little could read it.
        if self.max_spool_bytes < self.max_segment_bytes.saturating_mul(2) {
            return Err(invalid(
                "ledger.max_spool_bytes",
                format!(
                    "{} holds fewer than two segments of max_segment_bytes {}; \
                     set it to at least {}",
                    self.max_spool_bytes,
                    self.max_segment_bytes,
                    self.max_segment_bytes.saturating_mul(2)
                ),
            ));
        }
        Ok(())
    }
}

/// `ledger.otlp`: each entry exported as a span and/or a log record over OTLP/HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The receiver's base URL (`http(s)://host:port[/prefix]`); `/v1/traces` and
    /// `/v1/logs` are appended.
    pub endpoint: http::Uri,
    /// CA bundle (PEM) verifying an `https://` receiver; required for `https://`.
    pub ca_file: Option<PathBuf>,
    /// Most entries in one export.
    pub batch_size: u32,
    /// Deadline of one export request.
    pub timeout_ms: u64,
    /// Export each entry as a span.
    pub spans: bool,
    /// Export each entry as a log record.
    pub logs: bool,
    /// `service.name` of the exported resource.
    pub service_name: String,
}

/// `ledger.webhook`: entries POSTed as JSON arrays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Where batches are POSTed.
    pub url: http::Uri,
    /// CA bundle (PEM) verifying an `https://` receiver; required for `https://`.
    pub ca_file: Option<PathBuf>,
    /// Most entries in one POST.
    pub batch_size: u32,
    /// Deadline of one POST, response included.
    pub timeout_ms: u64,
}

/// Bounds of the `ledger.*` keys.
const QUEUE_CAPACITY: (u32, u32) = (1, 1 << 20);
const FLUSH_INTERVAL_MS: (u64, u64) = (1, 60_000);
const SEGMENT_BYTES: (u64, u64) = (64 << 10, 4 << 30);
const SPOOL_BYTES: (u64, u64) = (1 << 20, 16 << 40);
const DURABLE_TIMEOUT_MS: (u64, u64) = (100, 300_000);
const CAPTURE_BYTES: (u64, u64) = (64, 16 << 20);
const BATCH_SIZE: (u32, u32) = (1, 10_000);
const SINK_TIMEOUT_MS: (u64, u64) = (100, 300_000);

fn ranged<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ValidationError> {
    if value < min || value > max {
        Err(invalid(
            key,
            format!("{value} is out of range; use {min} to {max}"),
        ))
    } else {
        Ok(value)
    }
}

/// The bounds of the `budgets:` keys. The window keeps one timestamp per request it holds,
/// so its limit bounds the memory of each session.
const BUDGET_COUNT: (u64, u64) = (0, 1_000_000_000);
const BUDGET_READ_BYTES: (u64, u64) = (0, 1 << 50);
const BUDGET_REQUESTS_PER_WINDOW: (u32, u32) = (1, 10_000);
const BUDGET_WINDOW_SECONDS: (u64, u64) = (1, 86_400);

/// `budgets:` (PG019): each budget off unless set, within its bounds.
fn budgets(file: BudgetsFile) -> Result<Budgets, ValidationError> {
    let optional = |key: &str, value: Option<u64>, (min, max): (u64, u64)| {
        value
            .map(|v| ranged(key, v, min, max))
            .transpose()
            .map_err(|mut e| {
                e.reason
                    .push_str(" (omit the key or set null to turn the budget off)");
                e
            })
    };
    let (min, max) = BUDGET_REQUESTS_PER_WINDOW;
    let (window_min, window_max) = BUDGET_WINDOW_SECONDS;
    Ok(Budgets {
        mutations: optional("budgets.mutations", file.mutations, BUDGET_COUNT)?,
        deletes: optional("budgets.deletes", file.deletes, BUDGET_COUNT)?,
        read_bytes: optional("budgets.read_bytes", file.read_bytes, BUDGET_READ_BYTES)?,
        requests_per_window: file
            .requests_per_window
            .map(|n| ranged("budgets.requests_per_window", n, min, max))
            .transpose()?,
        window_seconds: ranged(
            "budgets.window_seconds",
            file.window_seconds
                .unwrap_or(crate::policy::DEFAULT_WINDOW_SECONDS),
            window_min,
            window_max,
        )?,
    })
}

fn patterns(key: &str, values: Vec<String>) -> Result<Vec<NamespacePattern>, ValidationError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            NamespacePattern::new(v).map_err(|e| invalid(format!("{key}[{i}]"), e.to_string()))
        })
        .collect()
}

/// `protected_objects:` (PG018): the object patterns the autopsy's run policy also uses,
/// each checked the same way, plus what only the gate refuses: characters no object
/// identity contains, which would make a pattern silently match nothing.
fn object_patterns(
    key: &str,
    values: Vec<ObjectPatternFile>,
) -> Result<Vec<ObjectPattern>, ValidationError> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, file)| {
            let at = format!("{key}[{i}]");
            for (field, value) in [
                ("group", &file.group),
                ("resource", &file.resource),
                ("namespace", &file.namespace),
                ("name", &file.name),
            ] {
                if let Some(bad) = value
                    .as_deref()
                    .and_then(|v| v.chars().find(|c| c.is_whitespace() || c.is_control()))
                {
                    return Err(invalid(
                        format!("{at}.{field}"),
                        format!(
                            "{bad:?} never occurs in a Kubernetes {field}, so this glob would \
                             match nothing; use the name as the API spells it, * and ? as \
                             wildcards"
                        ),
                    ));
                }
            }
            ObjectPattern::from_file(file).map_err(|reason| invalid(at, reason))
        })
        .collect()
}

/// An `http://` or `https://` URL with a host, parsed the way the sinks use it.
fn http_url(key: &str, url: &str) -> Result<http::Uri, ValidationError> {
    let refused = || {
        invalid(
            key,
            format!("{url:?} is not an http:// or https:// URL with a host"),
        )
    };
    let uri: http::Uri = url.parse().map_err(|_| refused())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(refused()),
    }
}

/// `ca_file` goes with `https://` and only with it: pathgate carries no public root store,
/// and a CA file next to a plain-HTTP URL is a mistake about which receiver is meant.
fn ca_file_matches(
    section: &str,
    url_key: &str,
    url: &http::Uri,
    ca_file: &Option<PathBuf>,
) -> Result<(), ValidationError> {
    match (url.scheme_str(), ca_file) {
        (Some("https"), None) => Err(invalid(
            format!("{section}.ca_file"),
            format!(
                "{url_key} is https, so ca_file is required: name the CA bundle (PEM) that \
                 signs the receiver (pathgate carries no public root store)"
            ),
        )),
        (Some("http"), Some(_)) => Err(invalid(
            format!("{section}.ca_file"),
            format!("ca_file verifies https receivers, but {url_key} is http://"),
        )),
        _ => Ok(()),
    }
}

fn webhook_settings(file: WebhookFile) -> Result<WebhookSettings, ValidationError> {
    let url = http_url("ledger.webhook.url", &file.url)?;
    ca_file_matches("ledger.webhook", "url", &url, &file.ca_file)?;
    Ok(WebhookSettings {
        url,
        ca_file: file.ca_file,
        batch_size: ranged(
            "ledger.webhook.batch_size",
            file.batch_size.unwrap_or(defaults::BATCH_SIZE),
            BATCH_SIZE.0,
            BATCH_SIZE.1,
        )?,
        timeout_ms: ranged(
            "ledger.webhook.timeout_ms",
            file.timeout_ms.unwrap_or(defaults::SINK_TIMEOUT_MS),
            SINK_TIMEOUT_MS.0,
            SINK_TIMEOUT_MS.1,
        )?,
    })
}

fn otlp_settings(file: OtlpFile) -> Result<OtlpSettings, ValidationError> {
    let endpoint = http_url("ledger.otlp.endpoint", &file.endpoint)?;
    if endpoint.query().is_some() {
        return Err(invalid(
            "ledger.otlp.endpoint",
            "the endpoint is the receiver's base URL (/v1/traces and /v1/logs are appended \
             to it); remove the query",
        ));
    }
    ca_file_matches("ledger.otlp", "endpoint", &endpoint, &file.ca_file)?;
    let spans = file.spans.unwrap_or(true);
    let logs = file.logs.unwrap_or(true);
    if !spans && !logs {
        return Err(invalid(
            "ledger.otlp",
            "spans and logs are both false, so nothing would be exported; enable one or \
             remove the otlp section",
        ));
    }
    let service_name = file
        .service_name
        .unwrap_or_else(|| defaults::SERVICE_NAME.to_string());
    if service_name.is_empty()
        || service_name.len() > 255
        || service_name.chars().any(char::is_control)
    {
        return Err(invalid(
            "ledger.otlp.service_name",
            format!("{service_name:?} is not a service name: use 1-255 characters, no control characters"),
        ));
    }
    Ok(OtlpSettings {
        endpoint,
        ca_file: file.ca_file,
        batch_size: ranged(
            "ledger.otlp.batch_size",
            file.batch_size.unwrap_or(defaults::BATCH_SIZE),
            BATCH_SIZE.0,
            BATCH_SIZE.1,
        )?,
        timeout_ms: ranged(
            "ledger.otlp.timeout_ms",
            file.timeout_ms.unwrap_or(defaults::SINK_TIMEOUT_MS),
            SINK_TIMEOUT_MS.0,
            SINK_TIMEOUT_MS.1,
        )?,
        spans,
        logs,
        service_name,
    })
}

fn ledger_settings(file: LedgerFile) -> Result<LedgerSettings, ValidationError> {
    let ledger = LedgerSettings {
        dir: file.dir,
        on_failure: file.on_failure.unwrap_or_default(),
        queue_capacity: ranged(
            "ledger.queue_capacity",
            file.queue_capacity.unwrap_or(defaults::QUEUE_CAPACITY),
            QUEUE_CAPACITY.0,
            QUEUE_CAPACITY.1,
        )?,
        flush_interval_ms: ranged(
            "ledger.flush_interval_ms",
            file.flush_interval_ms
                .unwrap_or(defaults::FLUSH_INTERVAL_MS),
            FLUSH_INTERVAL_MS.0,
            FLUSH_INTERVAL_MS.1,
        )?,
        max_segment_bytes: ranged(
            "ledger.max_segment_bytes",
            file.max_segment_bytes
                .unwrap_or(defaults::MAX_SEGMENT_BYTES),
            SEGMENT_BYTES.0,
            SEGMENT_BYTES.1,
        )?,
        max_spool_bytes: ranged(
            "ledger.max_spool_bytes",
            file.max_spool_bytes.unwrap_or(defaults::MAX_SPOOL_BYTES),
            SPOOL_BYTES.0,
            SPOOL_BYTES.1,
        )?,
        durable_timeout_ms: ranged(
            "ledger.durable_timeout_ms",
            file.durable_timeout_ms
                .unwrap_or(defaults::DURABLE_TIMEOUT_MS),
            DURABLE_TIMEOUT_MS.0,
            DURABLE_TIMEOUT_MS.1,
        )?,
        capture_bodies_max_bytes: file
            .capture_bodies_max_bytes
            .map(|bytes| {
                ranged(
                    "ledger.capture_bodies_max_bytes",
                    bytes,
                    CAPTURE_BYTES.0,
                    CAPTURE_BYTES.1,
                )
            })
            .transpose()
            .map_err(|mut e| {
                e.reason
                    .push_str(" (omit the key or set null to capture no bodies)");
                e
            })?,
        stdout: file.stdout.unwrap_or(false),
        webhook: file.webhook.map(webhook_settings).transpose()?,
        otlp: file.otlp.map(otlp_settings).transpose()?,
    };
    ledger.check_sizes()?;
    Ok(ledger)
}

fn socket_addr(key: &str, value: Option<String>) -> Result<Option<SocketAddr>, ValidationError> {
    value
        .map(|v| {
            v.parse().map_err(|_| {
                invalid(
                    key,
                    format!("{v:?} is not an address:port such as 127.0.0.1:8443 or [::1]:8443"),
                )
            })
        })
        .transpose()
}

fn admin_listen(value: Option<String>) -> Result<Option<AdminListen>, ValidationError> {
    match value.as_deref() {
        Some("off") => Ok(Some(AdminListen::Off)),
        _ => Ok(socket_addr("server.admin_listen", value)?.map(AdminListen::At)),
    }
}

fn session_id(key: &str, value: Option<String>) -> Result<Option<String>, ValidationError> {
    match value {
        Some(v)
            if v.is_empty()
                || v.len() > 128
                || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            Err(invalid(key, format!("{v:?} is not a session id: use 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-'")))
        }
        other => Ok(other),
    }
}

fn rules(
    values: BTreeMap<String, RuleAction>,
    discovery_payload_limit: Option<u64>,
) -> Result<BTreeMap<RuleId, RuleAction>, ValidationError> {
    let mut out = BTreeMap::new();
    for (key, action) in values {
        let path = format!("rules.{key}");
        let rule: RuleId = key
            .parse()
            .map_err(|e: crate::policy::UnknownRule| invalid(&path, e.to_string()))?;
        if action == RuleAction::Rewrite && !rule.has_rewrite() {
            return Err(invalid(
                &path,
                format!(
                    "{rule} {} has no rewrite; use off, flag, confirm or deny",
                    rule.name()
                ),
            ));
        }
        if rule == RuleId::PG011
            && action == RuleAction::Rewrite
            && discovery_payload_limit.is_none()
        {
            return Err(invalid(
                &path,
                "PG011 rewrite adds limit=N and needs schema_enforcement.discovery_payload_limit",
            ));
        }
        if out.insert(rule, action).is_some() {
            return Err(invalid(
                &path,
                format!("{rule} is set twice (by id and by name)"),
            ));
        }
    }
    Ok(out)
}

impl TryFrom<ConfigFile> for Config {
    type Error = ValidationError;

    fn try_from(file: ConfigFile) -> Result<Self, Self::Error> {
        let defaults = Policy::default();

        let gates = file.safety_gates.unwrap_or_default();
        let default_gates = SafetyGates::default();
        let safety_gates = SafetyGates {
            dry_run_default: gates
                .dry_run_default
                .unwrap_or(default_gates.dry_run_default),
            max_patch_keys: ranged(
                "safety_gates.max_patch_keys",
                gates.max_patch_keys.unwrap_or(default_gates.max_patch_keys),
                1,
                10_000,
            )?,
            allow_direct_deletion: gates
                .allow_direct_deletion
                .unwrap_or(default_gates.allow_direct_deletion),
            require_grace_period: gates
                .require_grace_period
                .unwrap_or(default_gates.require_grace_period),
            force_full_replace_allowed: gates
                .force_full_replace_allowed
                .unwrap_or(default_gates.force_full_replace_allowed),
        };

        let schema = file.schema_enforcement.unwrap_or_default();
        let default_schema = SchemaEnforcement::default();
        let discovery_payload_limit = schema
            .discovery_payload_limit
            .map(|limit| {
                ranged(
                    "schema_enforcement.discovery_payload_limit",
                    limit,
                    1,
                    100_000,
                )
            })
            .transpose()
            .map_err(|mut e| {
                e.reason
                    .push_str(" (omit the key or set null to disable the rewrite)");
                e
            })?;
        let schema_enforcement = SchemaEnforcement {
            strict_identity: schema
                .strict_identity
                .unwrap_or(default_schema.strict_identity),
            label_selector_filter: schema
                .label_selector_filter
                .unwrap_or(default_schema.label_selector_filter),
            discovery_payload_limit,
        };

        let retry = file.retry_loop.unwrap_or_default();
        let retry_loop = RetryLoop {
            window_seconds: ranged(
                "retry_loop.window_seconds",
                retry
                    .window_seconds
                    .unwrap_or(defaults.retry_loop.window_seconds),
                1,
                86_400,
            )?,
            threshold: ranged(
                "retry_loop.threshold",
                retry.threshold.unwrap_or(defaults.retry_loop.threshold),
                2,
                1_000,
            )?,
        };

        let policy = Policy {
            mode: file.mode.unwrap_or(defaults.mode),
            safety_gates,
            rules: rules(file.rules.unwrap_or_default(), discovery_payload_limit)?,
            schema_enforcement,
            protected_namespaces: match file.protected_namespaces {
                Some(values) => patterns("protected_namespaces", values)?,
                None => defaults.protected_namespaces,
            },
            mutation_namespaces: patterns(
                "mutation_namespaces",
                file.mutation_namespaces.unwrap_or_default(),
            )?,
            protected_objects: object_patterns(
                "protected_objects",
                file.protected_objects.unwrap_or_default(),
            )?,
            min_grace_period_seconds: ranged(
                "min_grace_period_seconds",
                file.min_grace_period_seconds
                    .unwrap_or(defaults.min_grace_period_seconds),
                0,
                86_400,
            )?,
            confirm_window_seconds: ranged(
                "confirm_window_seconds",
                file.confirm_window_seconds
                    .unwrap_or(defaults.confirm_window_seconds),
                10,
                86_400,
            )?,
            retry_loop,
            budgets: budgets(file.budgets.unwrap_or_default())?,
        };

        let server_file = file.server.unwrap_or_default();
        let connections = ConnectionKeys::from_file(&server_file)?;
        let server = ServerSettings {
            listen: socket_addr("server.listen", server_file.listen)?,
            admin_listen: admin_listen(server_file.admin_listen)?,
            auth: server_file.auth,
            upstream_kubeconfig: server_file.upstream_kubeconfig,
            context: server_file.context,
            in_cluster: server_file.in_cluster,
            tls_cert: server_file.tls_cert,
            tls_key: server_file.tls_key,
            client_ca: server_file.client_ca,
            client_token_file: server_file.client_token_file,
            max_body_bytes: server_file
                .max_body_bytes
                .map(|b| ranged("server.max_body_bytes", b, MIN_BODY_BYTES, MAX_BODY_BYTES))
                .transpose()?,
            default_session: session_id("server.default_session", server_file.default_session)?,
            workers: server_file
                .workers
                .map(|w| ranged("server.workers", w, 1, MAX_WORKERS as u64).map(|w| w as usize))
                .transpose()?,
            drain_timeout_seconds: server_file
                .drain_timeout_seconds
                .map(|s| {
                    let (min, max) = DRAIN_TIMEOUT_SECONDS;
                    ranged("server.drain_timeout_seconds", s, min, max)
                })
                .transpose()?,
            connections,
        };
        server.check()?;

        let ledger = ledger_settings(file.ledger.unwrap_or_default())?;

        Ok(Config {
            policy,
            server,
            ledger,
        })
    }
}

/// Resolves a relative path against the config file's directory, as kubeconfig does.
fn resolve(base: &Path, path: &mut Option<PathBuf>) {
    if let Some(p) = path {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
}

impl ConfigFile {
    /// Makes every relative path absolute against `base` (the config file's directory).
    /// Runs before command-line overrides are applied: their paths are relative to the
    /// working directory, as command-line paths are.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Some(server) = &mut self.server {
            for path in [
                &mut server.upstream_kubeconfig,
                &mut server.tls_cert,
                &mut server.tls_key,
                &mut server.client_ca,
                &mut server.client_token_file,
            ] {
                resolve(base, path);
            }
        }
        let Some(ledger) = &mut self.ledger else {
            return;
        };
        resolve(base, &mut ledger.dir);
        for path in [
            ledger.webhook.as_mut().map(|w| &mut w.ca_file),
            ledger.otlp.as_mut().map(|o| &mut o.ca_file),
        ]
        .into_iter()
        .flatten()
        {
            resolve(base, path);
        }
    }
}

impl Config {
    /// `server:` as a file section.
    fn server_file(&self) -> ServerFile {
        let s = &self.server;
        let mut file = ServerFile {
            listen: s.listen.map(|a| a.to_string()),
            admin_listen: s.admin_listen.map(|a| a.to_string()),
            client_token_file: s.client_token_file.clone(),
            drain_timeout_seconds: s.drain_timeout_seconds,
            auth: s.auth,
            upstream_kubeconfig: s.upstream_kubeconfig.clone(),
            context: s.context.clone(),
            in_cluster: s.in_cluster,
            tls_cert: s.tls_cert.clone(),
            tls_key: s.tls_key.clone(),
            client_ca: s.client_ca.clone(),
            max_body_bytes: s.max_body_bytes,
            default_session: s.default_session.clone(),
            workers: s.workers.map(|w| w as u64),
            ..ServerFile::default()
        };
        s.connections.to_file(&mut file);
        file
    }

    /// The effective configuration as a file: every key present, every rule's action
    /// explicit. Loading it gives the same configuration back.
    pub fn to_file(&self) -> ConfigFile {
        let p = &self.policy;
        let l = &self.ledger;
        ConfigFile {
            mode: Some(p.mode),
            safety_gates: Some(SafetyGatesFile {
                dry_run_default: Some(p.safety_gates.dry_run_default),
                max_patch_keys: Some(p.safety_gates.max_patch_keys),
                allow_direct_deletion: Some(p.safety_gates.allow_direct_deletion),
                require_grace_period: Some(p.safety_gates.require_grace_period),
                force_full_replace_allowed: Some(p.safety_gates.force_full_replace_allowed),
            }),
            schema_enforcement: Some(SchemaEnforcementFile {
                strict_identity: Some(p.schema_enforcement.strict_identity),
                label_selector_filter: Some(p.schema_enforcement.label_selector_filter),
                discovery_payload_limit: p.schema_enforcement.discovery_payload_limit,
            }),
            rules: Some(
                p.effective_rules()
                    .into_iter()
                    .map(|(rule, action)| (rule.as_str().to_string(), action))
                    .collect(),
            ),
            protected_namespaces: Some(
                p.protected_namespaces
                    .iter()
                    .map(|n| n.as_str().to_string())
                    .collect(),
            ),
            mutation_namespaces: Some(
                p.mutation_namespaces
                    .iter()
                    .map(|n| n.as_str().to_string())
                    .collect(),
            ),
            protected_objects: Some(p.protected_objects.iter().map(|o| o.to_file()).collect()),
            min_grace_period_seconds: Some(p.min_grace_period_seconds),
            confirm_window_seconds: Some(p.confirm_window_seconds),
            retry_loop: Some(RetryLoopFile {
                window_seconds: Some(p.retry_loop.window_seconds),
                threshold: Some(p.retry_loop.threshold),
            }),
            budgets: Some(BudgetsFile {
                mutations: p.budgets.mutations,
                deletes: p.budgets.deletes,
                read_bytes: p.budgets.read_bytes,
                requests_per_window: p.budgets.requests_per_window,
                window_seconds: Some(p.budgets.window_seconds),
            }),
            server: Some(self.server_file()),
            ledger: Some(LedgerFile {
                dir: l.dir.clone(),
                on_failure: Some(l.on_failure),
                queue_capacity: Some(l.queue_capacity),
                flush_interval_ms: Some(l.flush_interval_ms),
                max_segment_bytes: Some(l.max_segment_bytes),
                max_spool_bytes: Some(l.max_spool_bytes),
                durable_timeout_ms: Some(l.durable_timeout_ms),
                capture_bodies_max_bytes: l.capture_bodies_max_bytes,
                stdout: Some(l.stdout),
                webhook: l.webhook.as_ref().map(|w| WebhookFile {
                    url: w.url.to_string(),
                    ca_file: w.ca_file.clone(),
                    batch_size: Some(w.batch_size),
                    timeout_ms: Some(w.timeout_ms),
                }),
                otlp: l.otlp.as_ref().map(|o| OtlpFile {
                    endpoint: o.endpoint.to_string(),
                    ca_file: o.ca_file.clone(),
                    batch_size: Some(o.batch_size),
                    timeout_ms: Some(o.timeout_ms),
                    spans: Some(o.spans),
                    logs: Some(o.logs),
                    service_name: Some(o.service_name.clone()),
                }),
            }),
        }
    }
}
