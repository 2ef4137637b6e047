//! Validation: the parsed [`ConfigFile`] becomes the frozen [`Config`], or an error naming
//! the key and the reason. Also the way back (`Config` -> `ConfigFile`) for printing the
//! effective configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::policy::{
    NamespacePattern, Policy, RetryLoop, RuleAction, RuleId, SafetyGates, SchemaEnforcement,
};

use super::file::{
    AuthMode, ConfigFile, LedgerFile, OnFailure, OtlpFile, RetryLoopFile, SafetyGatesFile,
    SchemaEnforcementFile, ServerFile, WebhookFile,
};
use super::Config;

/// A key whose value is refused, before the file name is known.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// `server:` as validated. Every field stays optional: the command line fills in or
/// overrides what the file leaves out, then calls [`ServerSettings::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSettings {
    /// Where the proxy listens for clients.
    pub listen: Option<SocketAddr>,
    /// Where metrics and health are served.
    pub admin_listen: Option<SocketAddr>,
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
    /// Largest mutation body pathgate reads (413 past it).
    pub max_body_bytes: Option<u64>,
    /// The session of requests that carry none.
    pub default_session: Option<String>,
}

/// Bounds of `server.max_body_bytes`.
const MIN_BODY_BYTES: u64 = 1024;
const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;

impl ServerSettings {
    /// Cross-key checks, to run again after command-line flags are merged in.
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
        if self.auth == Some(AuthMode::Impersonate) && self.client_ca.is_none() {
            return Err(invalid(
                "server.client_ca",
                "auth: impersonate derives the user from verified client certificates, so \
                 client_ca is required",
            ));
        }
        Ok(())
    }
}

/// `ledger:` as validated: plain data for the ledger module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// Spool directory; `None` keeps the spool in memory only.
    pub dir: Option<PathBuf>,
    pub on_failure: OnFailure,
    /// fsync the spool at every flush.
    pub fsync: bool,
    /// How often queued entries are flushed to the spool and the sinks.
    pub flush_interval_ms: u64,
    /// A spool segment is rotated past this size.
    pub max_segment_bytes: u64,
    /// JSONL sink: append one entry per line to this file.
    pub jsonl: Option<PathBuf>,
    /// Write entries to standard output as JSONL.
    pub stdout: bool,
    pub otlp: Option<OtlpSettings>,
    pub webhook: Option<WebhookSettings>,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            dir: None,
            on_failure: OnFailure::FailOpen,
            fsync: true,
            flush_interval_ms: 200,
            max_segment_bytes: 64 * 1024 * 1024,
            jsonl: None,
            stdout: false,
            otlp: None,
            webhook: None,
        }
    }
}

/// `ledger.otlp`: OTLP/HTTP logs export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// `http(s)://host:port` of the collector.
    pub endpoint: String,
}

/// `ledger.webhook`: entries POSTed as JSON arrays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub url: String,
    /// Entries per POST.
    pub batch_size: u32,
}

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

fn patterns(key: &str, values: Vec<String>) -> Result<Vec<NamespacePattern>, ValidationError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            NamespacePattern::new(v).map_err(|e| invalid(format!("{key}[{i}]"), e.to_string()))
        })
        .collect()
}

fn http_url(key: &str, url: &str) -> Result<String, ValidationError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(url.to_string())
        }
        _ => Err(invalid(
            key,
            format!("{url:?} is not an http:// or https:// URL with a host"),
        )),
    }
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
        };

        let server_file = file.server.unwrap_or_default();
        let server = ServerSettings {
            listen: socket_addr("server.listen", server_file.listen)?,
            admin_listen: socket_addr("server.admin_listen", server_file.admin_listen)?,
            auth: server_file.auth,
            upstream_kubeconfig: server_file.upstream_kubeconfig,
            context: server_file.context,
            in_cluster: server_file.in_cluster,
            tls_cert: server_file.tls_cert,
            tls_key: server_file.tls_key,
            client_ca: server_file.client_ca,
            max_body_bytes: server_file
                .max_body_bytes
                .map(|b| ranged("server.max_body_bytes", b, MIN_BODY_BYTES, MAX_BODY_BYTES))
                .transpose()?,
            default_session: session_id("server.default_session", server_file.default_session)?,
        };
        server.check()?;

        let ledger_file = file.ledger.unwrap_or_default();
        let default_ledger = LedgerSettings::default();
        let ledger = LedgerSettings {
            dir: ledger_file.dir,
            on_failure: ledger_file.on_failure.unwrap_or_default(),
            fsync: ledger_file.fsync.unwrap_or(default_ledger.fsync),
            flush_interval_ms: ranged(
                "ledger.flush_interval_ms",
                ledger_file
                    .flush_interval_ms
                    .unwrap_or(default_ledger.flush_interval_ms),
                1,
                60_000,
            )?,
            max_segment_bytes: ranged(
                "ledger.max_segment_bytes",
                ledger_file
                    .max_segment_bytes
                    .unwrap_or(default_ledger.max_segment_bytes),
                64 * 1024,
                16 * 1024 * 1024 * 1024,
            )?,
            jsonl: ledger_file.jsonl,
            stdout: ledger_file.stdout.unwrap_or(default_ledger.stdout),
            otlp: ledger_file
                .otlp
                .map(|o| {
                    Ok::<_, ValidationError>(OtlpSettings {
                        endpoint: http_url("ledger.otlp.endpoint", &o.endpoint)?,
                    })
                })
                .transpose()?,
            webhook: ledger_file
                .webhook
                .map(|w| {
                    Ok::<_, ValidationError>(WebhookSettings {
                        url: http_url("ledger.webhook.url", &w.url)?,
                        batch_size: ranged(
                            "ledger.webhook.batch_size",
                            w.batch_size.unwrap_or(100),
                            1,
                            10_000,
                        )?,
                    })
                })
                .transpose()?,
        };
        if ledger.on_failure == OnFailure::FailClosedMutations
            && ledger.dir.is_none()
            && ledger.jsonl.is_none()
            && !ledger.stdout
            && ledger.otlp.is_none()
            && ledger.webhook.is_none()
        {
            return Err(invalid(
                "ledger.on_failure",
                "fail-closed-mutations needs somewhere to record entries: set ledger.dir or a sink",
            ));
        }

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

impl Config {
    /// Makes every relative path absolute against `base` (the config file's directory).
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        let server = &mut self.server;
        for path in [
            &mut server.upstream_kubeconfig,
            &mut server.tls_cert,
            &mut server.tls_key,
            &mut server.client_ca,
            &mut self.ledger.dir,
            &mut self.ledger.jsonl,
        ] {
            resolve(base, path);
        }
    }

    /// The effective configuration as a file: every key present, every rule's action
    /// explicit. Loading it gives the same configuration back.
    pub fn to_file(&self) -> ConfigFile {
        let p = &self.policy;
        let s = &self.server;
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
            min_grace_period_seconds: Some(p.min_grace_period_seconds),
            confirm_window_seconds: Some(p.confirm_window_seconds),
            retry_loop: Some(RetryLoopFile {
                window_seconds: Some(p.retry_loop.window_seconds),
                threshold: Some(p.retry_loop.threshold),
            }),
            server: Some(ServerFile {
                listen: s.listen.map(|a| a.to_string()),
                admin_listen: s.admin_listen.map(|a| a.to_string()),
                auth: s.auth,
                upstream_kubeconfig: s.upstream_kubeconfig.clone(),
                context: s.context.clone(),
                in_cluster: s.in_cluster,
                tls_cert: s.tls_cert.clone(),
                tls_key: s.tls_key.clone(),
                client_ca: s.client_ca.clone(),
                max_body_bytes: s.max_body_bytes,
                default_session: s.default_session.clone(),
            }),
            ledger: Some(LedgerFile {
                dir: l.dir.clone(),
                on_failure: Some(l.on_failure),
                fsync: Some(l.fsync),
                flush_interval_ms: Some(l.flush_interval_ms),
                max_segment_bytes: Some(l.max_segment_bytes),
                jsonl: l.jsonl.clone(),
                stdout: Some(l.stdout),
                otlp: l.otlp.as_ref().map(|o| OtlpFile {
                    endpoint: o.endpoint.clone(),
                }),
                webhook: l.webhook.as_ref().map(|w| WebhookFile {
                    url: w.url.clone(),
                    batch_size: Some(w.batch_size),
                }),
            }),
        }
    }
}
