//! The OTLP sink: each entry as a span (queryable by trace id in tracing backends) and/or a
//! log record (the whole entry as the body), over OTLP/HTTP protobuf.
//!
//! The exporters of `opentelemetry-otlp` are called directly, not through the SDK's batch
//! processors: those keep their own in-memory queue and drop on failure, while this sink
//! must know whether a batch arrived before it moves its spool cursor. The exporters' own
//! retries are disabled for the same reason: the sink retries from the spool.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_otlp::{
    LogExporter, Protocol, RetryPolicy, SpanExporter, WithExportConfig, WithHttpConfig,
};
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;
use sha2::{Digest, Sha256};

use super::{http_client, DeliveryError, RetrySettings};
use crate::ledger::spool::Batch;
use crate::ledger::{Action, Entry, LedgerError, Phase, SCHEMA};

/// OTLP sink settings (config keys `ledger.otlp.*`).
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// The receiver's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`; `/v1/traces` and
    /// `/v1/logs` are appended.
    pub endpoint: http::Uri,
    /// CA bundle (PEM) that verifies an `https://` receiver.
    pub ca_file: Option<std::path::PathBuf>,
    /// Export each entry as a span.
    pub spans: bool,
    /// Export each entry as a log record.
    pub logs: bool,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Most entries in one export.
    pub batch_max_entries: usize,
    /// Deadline of one export request.
    pub timeout: Duration,
    /// Backoff between attempts of a failed batch.
    pub retry: RetrySettings,
}

impl OtlpSettings {
    /// Defaults: spans and logs, service `pathgate`, batches of 256, 10 s timeout.
    pub fn new(endpoint: http::Uri) -> Self {
        OtlpSettings {
            endpoint,
            ca_file: None,
            spans: true,
            logs: true,
            service_name: "pathgate".to_owned(),
            batch_max_entries: 256,
            timeout: Duration::from_secs(10),
            retry: RetrySettings::default(),
        }
    }
}

pub(crate) struct Otlp {
    pub(crate) settings: OtlpSettings,
    spans: Option<SpanExporter>,
    logs: Option<(LogExporter, SdkLogger, InstrumentationScope)>,
    /// Whether the spans of the batch being retried were already accepted, so a retry
    /// caused by the logs export does not send the spans again.
    spans_done: bool,
    scope: InstrumentationScope,
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Otlp")
            .field("endpoint", &self.settings.endpoint)
            .finish()
    }
}

impl Otlp {
    pub(crate) fn new(settings: OtlpSettings) -> Result<Self, LedgerError> {
        let invalid = |reason: String| LedgerError::Sink {
            sink: "otlp",
            reason,
        };
        if !settings.spans && !settings.logs {
            return Err(invalid("neither spans nor logs are enabled".into()));
        }
        let connector =
            http_client::connector("otlp", &settings.endpoint, settings.ca_file.as_deref())?;
        let base = settings.endpoint.to_string();
        let base = base.trim_end_matches('/');
        let resource = Resource::builder_empty()
            .with_service_name(settings.service_name.clone())
            .build();
        let scope = InstrumentationScope::builder("pathgate.ledger")
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_schema_url(SCHEMA)
            .build();

        let spans = if settings.spans {
            let mut exporter = SpanExporter::builder()
                .with_http()
                .with_http_client(HyperClient::new(connector.clone(), settings.timeout, None))
                .with_endpoint(format!("{base}/v1/traces"))
                .with_protocol(Protocol::HttpBinary)
                .with_timeout(settings.timeout)
                .with_retry_policy(RetryPolicy::disabled())
                .build()
                .map_err(|error| invalid(error.to_string()))?;
            exporter.set_resource(&resource);
            Some(exporter)
        } else {
            None
        };
        let logs = if settings.logs {
            let mut exporter = LogExporter::builder()
                .with_http()
                .with_http_client(HyperClient::new(connector, settings.timeout, None))
                .with_endpoint(format!("{base}/v1/logs"))
                .with_protocol(Protocol::HttpBinary)
                .with_timeout(settings.timeout)
                .with_retry_policy(RetryPolicy::disabled())
                .build()
                .map_err(|error| invalid(error.to_string()))?;
            exporter.set_resource(&resource);
            // A provider without processors: used only to create log records, which the
            // SDK does not let anything else construct. Records are exported by hand.
            let provider = SdkLoggerProvider::builder().build();
            let logger = provider.logger_with_scope(scope.clone());
            Some((exporter, logger, scope.clone()))
        } else {
            None
        };
        Ok(Otlp {
            settings,
            spans,
            logs,
            spans_done: false,
            scope,
        })
    }

    /// Exports one batch; lines that are not entries are skipped and reported.
    pub(crate) async fn deliver(&mut self, batch: &Batch) -> Result<u64, DeliveryError> {
        let mut entries = Vec::with_capacity(batch.entries);
        let mut unreadable = 0;
        for line in batch.lines() {
            match serde_json::from_str::<Entry>(&line) {
                Ok(entry) => entries.push((entry, line)),
                Err(error) => {
                    tracing::warn!(%error, "ledger OTLP sink: unreadable spool line skipped");
                    unreadable += 1;
                }
            }
        }
        if entries.is_empty() {
            return Ok(unreadable);
        }
        if let Some(exporter) = &self.spans {
            if !self.spans_done {
                let spans = entries
                    .iter()
                    .map(|(entry, line)| to_span(entry, line, &self.scope))
                    .collect();
                exporter
                    .export(spans)
                    .await
                    .map_err(|error| DeliveryError::Retryable(format!("spans: {error}")))?;
                self.spans_done = true;
            }
        }
        if let Some((exporter, logger, scope)) = &self.logs {
            let records: Vec<_> = entries
                .iter()
                .map(|(entry, line)| {
                    let mut record = logger.create_log_record();
                    fill_log_record(&mut record, entry, line);
                    record
                })
                .collect();
            let pairs: Vec<_> = records.iter().map(|record| (record, scope)).collect();
            exporter
                .export(LogBatch::new(&pairs))
                .await
                .map_err(|error| DeliveryError::Retryable(format!("logs: {error}")))?;
        }
        self.spans_done = false;
        Ok(unreadable)
    }
}

/// The OpenTelemetry trace id of an entry: its trace id when that is already 32 hex digits
/// (pathgate's own format, shared with `traceparent`), else the first 16 bytes of its
/// SHA-256, so any id maps to the same trace every time.
pub fn otel_trace_id(trace_id: &str) -> TraceId {
    if trace_id.len() == 32 {
        if let Ok(id) = TraceId::from_hex(trace_id) {
            if id != TraceId::INVALID {
                return id;
            }
        }
    }
    let digest = Sha256::digest(trace_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    TraceId::from_bytes(bytes)
}

/// One span id per entry: intent and outcome of a request are two spans of one trace.
fn span_id(entry: &Entry) -> SpanId {
    let digest = Sha256::digest(entry.dedupe_key().as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    SpanId::from_bytes(bytes)
}

fn span_name(entry: &Entry) -> String {
    let request = &entry.request;
    let what = if request.resource.is_empty() {
        format!("{} {}", request.method, request.path)
    } else if request.subresource.is_empty() {
        format!("{} {}", request.verb, request.resource)
    } else {
        format!(
            "{} {}/{}",
            request.verb, request.resource, request.subresource
        )
    };
    match entry.phase {
        Phase::Intent => format!("intent {what}"),
        Phase::Outcome => what,
    }
}

/// Attributes shared by spans and log records: what a query in the receiver filters on.
fn attributes(entry: &Entry) -> Vec<KeyValue> {
    let request = &entry.request;
    let mut attributes = vec![
        KeyValue::new("pathgate.schema", entry.schema.clone()),
        KeyValue::new("pathgate.trace_id", entry.trace_id.clone()),
        KeyValue::new("pathgate.phase", entry.phase.as_str()),
        KeyValue::new("pathgate.session", entry.session.clone()),
        KeyValue::new("http.request.method", request.method.clone()),
        KeyValue::new("url.path", request.path.clone()),
        KeyValue::new("k8s.verb", request.verb.clone()),
        KeyValue::new("k8s.resource", request.resource.clone()),
        KeyValue::new("k8s.namespace.name", request.namespace.clone()),
        KeyValue::new("k8s.object.name", request.name.clone()),
        KeyValue::new("pathgate.mutation", request.mutation),
    ];
    if let Some(user) = &entry.client.user {
        attributes.push(KeyValue::new("enduser.id", user.clone()));
    }
    if let Some(decision) = &entry.decision {
        attributes.push(KeyValue::new(
            "pathgate.decision.action",
            decision.action.as_str(),
        ));
        attributes.push(KeyValue::new(
            "pathgate.decision.enforce_action",
            decision.enforce_action.as_str(),
        ));
        let rules: Vec<&str> = decision.findings.iter().map(|f| f.rule.as_str()).collect();
        attributes.push(KeyValue::new("pathgate.rules", rules.join(",")));
    }
    if let Some(response) = &entry.response {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(response.status_code),
        ));
        if let Some(audit_id) = &response.audit_id {
            attributes.push(KeyValue::new("k8s.audit_id", audit_id.clone()));
        }
    }
    attributes
}

fn to_system_time(time: time::OffsetDateTime) -> SystemTime {
    SystemTime::from(time)
}

fn to_span(entry: &Entry, line: &str, scope: &InstrumentationScope) -> SpanData {
    let start = to_system_time(entry.started_at);
    let end = entry.ended_at.map(to_system_time).unwrap_or(start);
    let mut attributes = attributes(entry);
    // The whole entry rides along, so the receiver holds the complete ledger record.
    attributes.push(KeyValue::new("pathgate.entry", line.to_owned()));
    let events = entry
        .decision
        .iter()
        .flat_map(|decision| decision.findings.iter())
        .map(|finding| {
            opentelemetry::trace::Event::new(
                "pathgate.finding",
                start,
                vec![
                    KeyValue::new("pathgate.rule", finding.rule.clone()),
                    KeyValue::new("pathgate.action", finding.action.as_str()),
                    KeyValue::new("pathgate.message", finding.message.clone()),
                ],
                0,
            )
        })
        .collect::<Vec<_>>();
    let mut span_events = SpanEvents::default();
    span_events.events = events;
    let failed = entry.error.is_some()
        || entry
            .response
            .as_ref()
            .is_some_and(|response| response.status_code >= 500);
    let status = if failed {
        Status::Error {
            description: Cow::Owned(
                entry
                    .error
                    .as_ref()
                    .map(|error| error.message.clone())
                    .unwrap_or_else(|| "server error".into()),
            ),
        }
    } else {
        Status::Unset
    };
    SpanData {
        span_context: SpanContext::new(
            otel_trace_id(&entry.trace_id),
            span_id(entry),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: Cow::Owned(span_name(entry)),
        start_time: start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: span_events,
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

fn fill_log_record(record: &mut opentelemetry_sdk::logs::SdkLogRecord, entry: &Entry, line: &str) {
    let timestamp = to_system_time(entry.ended_at.unwrap_or(entry.started_at));
    record.set_event_name("pathgate.ledger.entry");
    record.set_timestamp(timestamp);
    record.set_observed_timestamp(SystemTime::now());
    let denied = entry
        .decision
        .as_ref()
        .is_some_and(|decision| decision.findings.iter().any(|f| f.action != Action::Allow));
    let (severity, text) = if entry.error.is_some() {
        (Severity::Error, "ERROR")
    } else if denied {
        (Severity::Warn, "WARN")
    } else {
        (Severity::Info, "INFO")
    };
    record.set_severity_number(severity);
    record.set_severity_text(text);
    record.set_body(AnyValue::String(line.to_owned().into()));
    record.add_attributes(
        attributes(entry)
            .into_iter()
            .map(|pair| (pair.key, any_value(pair.value))),
    );
    record.set_trace_context(
        otel_trace_id(&entry.trace_id),
        span_id(entry),
        Some(TraceFlags::SAMPLED),
    );
}

/// Log attributes are `AnyValue`s; the attributes built here are scalars or strings.
fn any_value(value: opentelemetry::Value) -> AnyValue {
    match value {
        opentelemetry::Value::Bool(value) => AnyValue::Boolean(value),
        opentelemetry::Value::I64(value) => AnyValue::Int(value),
        opentelemetry::Value::F64(value) => AnyValue::Double(value),
        other => AnyValue::String(other.as_str().into_owned().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_trace_ids_are_kept_and_others_hashed_stably() {
        let hex = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(otel_trace_id(hex).to_string(), hex);
        let other = otel_trace_id("not-hex-trace");
        assert_ne!(other, TraceId::INVALID);
        assert_eq!(other, otel_trace_id("not-hex-trace"));
        assert_ne!(
            otel_trace_id("00000000000000000000000000000000"),
            TraceId::INVALID
        );
    }
}
