//! From a finished [`Exchange`] to a ledger [`Entry`]: the one place the request path's
//! record becomes the `pathgate.ledger/v1` schema, and the recorders that use it.

use std::pin::Pin;

use crate::classify::Verb;
use crate::ledger::{
    self, AnalysisRecord, Client, DecisionRecord, Entry, ErrorRecord, Ledger, ObjectRecord,
    OnFailure, Origin, ResponseRecord, SentForwarded,
};
use crate::metrics::Metrics;
use crate::policy::Rewrite;
use crate::status::Side;

use super::handler::{Exchange, Recorder};
use super::AuthMode;

fn auth_mode(mode: AuthMode) -> ledger::AuthMode {
    match mode {
        AuthMode::Passthrough => ledger::AuthMode::Passthrough,
        AuthMode::Sidecar => ledger::AuthMode::Sidecar,
        AuthMode::Impersonate => ledger::AuthMode::Impersonate,
    }
}

fn side(side: Side) -> ledger::Side {
    match side {
        Side::Client => ledger::Side::Client,
        Side::Upstream => ledger::Side::Upstream,
        Side::Pathgate => ledger::Side::Pathgate,
    }
}

/// `peer.to_string()`, without the formatting machinery for the IPv4 case every local
/// client has (a quarter of building an entry under load, by perf).
fn address_text(peer: std::net::SocketAddr) -> String {
    let std::net::SocketAddr::V4(peer) = peer else {
        return peer.to_string();
    };
    let mut text = String::with_capacity(21);
    let mut digits = itoa::Buffer::new();
    for (index, octet) in peer.ip().octets().into_iter().enumerate() {
        if index > 0 {
            text.push('.');
        }
        text.push_str(digits.format(octet));
    }
    text.push(':');
    text.push_str(digits.format(peer.port()));
    text
}

/// A sent/forwarded pair for the ledger: written when the request's verb takes the
/// parameter, or when either side is set (a client may send `dryRun` on a GET: the
/// apiserver ignores it, the ledger still shows it); absent otherwise (docs/ledger.md).
fn applicable<T: Default + PartialEq>(
    verb_takes_it: bool,
    pair: SentForwarded<T>,
) -> Option<SentForwarded<T>> {
    (verb_takes_it || pair != SentForwarded::default()).then_some(pair)
}

/// Builds the ledger entry of an exchange, moving its strings into the entry.
pub fn entry_of(exchange: Exchange) -> Entry {
    let Exchange {
        trace_id,
        peer,
        session,
        identity,
        auth_mode: mode,
        started_at,
        duration,
        method,
        path,
        query,
        info,
        analysis,
        decision,
        status_code,
        status_reason,
        audit_id,
        object_uid,
        object_resource_version,
        object_generation,
        bytes_in,
        bytes_out,
        watch_events,
        error,
        content_type,
        answered_by_pathgate,
        effect_paths,
        captured_body,
        ..
    } = exchange;
    let started_at = time::OffsetDateTime::from(started_at);
    let identity = std::sync::Arc::unwrap_or_clone(identity);
    let client = Client {
        user: identity.user,
        groups: identity.groups,
        token_fingerprint: identity.token_fingerprint,
        auth_mode: auth_mode(mode),
        remote_addr: Some(address_text(peer)),
    };
    let verb = info.as_ref().map(|info| info.verb);
    // An eviction deletes its pod with the eviction's deleteOptions.
    let effect_verb = info.as_ref().map(|info| info.effect_verb());
    let request = match info {
        // The exchange holds the last reference by now: its strings move, not copy.
        Some(info) => ledger::Request::from_info(
            std::sync::Arc::unwrap_or_clone(info),
            query.as_deref(),
            content_type.as_deref(),
        ),
        None => ledger::Request::unclassified(&method, &path, query.as_deref()),
    };
    let mut entry = Entry::new(trace_id.to_hex(), session, client, started_at, request);
    let rewrites: &[Rewrite] = decision
        .as_ref()
        .map(|d| d.rewrites.as_slice())
        .unwrap_or(&[]);
    if let Some(analysis) = &analysis {
        let mut record = AnalysisRecord::from(analysis);
        record.effect_paths = effect_paths;
        // Absent for a request without a body (a GET, a LIST, a DELETE without options):
        // it would say nothing but `"body_format":"none"`.
        entry.analysis = (!record.is_bodiless()).then_some(record);
    }
    let sent_dry_run = analysis.as_ref().is_some_and(|a| a.dry_run);
    entry.dry_run = applicable(
        verb.is_some_and(Verb::takes_dry_run),
        SentForwarded {
            sent: sent_dry_run,
            forwarded: sent_dry_run || rewrites.contains(&Rewrite::AddDryRun),
        },
    );
    let grace_sent = analysis
        .as_ref()
        .and_then(|a| a.delete_options.as_ref())
        .and_then(|o| o.grace_period_seconds);
    let grace_forwarded = rewrites
        .iter()
        .find_map(|r| match r {
            Rewrite::SetGracePeriod { to, .. } => Some(*to),
            _ => None,
        })
        .or(grace_sent);
    entry.grace_period = applicable(
        matches!(effect_verb, Some(Verb::Delete | Verb::DeleteCollection)),
        SentForwarded {
            sent: grace_sent,
            forwarded: grace_forwarded,
        },
    );
    let limit_sent = analysis.as_ref().and_then(|a| a.list_limit);
    let limit_forwarded = rewrites
        .iter()
        .find_map(|r| match r {
            Rewrite::AddLimit { limit } => Some(*limit),
            _ => None,
        })
        .or(limit_sent);
    entry.limit = applicable(
        verb == Some(Verb::List),
        SentForwarded {
            sent: limit_sent,
            forwarded: limit_forwarded,
        },
    );
    if let Some(decision) = &decision {
        entry.decision = Some(DecisionRecord::new(
            decision.mode,
            decision,
            decision.confirmed,
        ));
    }
    if status_code != 0 {
        entry.response = Some(ResponseRecord {
            status_code,
            reason: status_reason,
            audit_id,
            origin: if answered_by_pathgate {
                Origin::Pathgate
            } else {
                Origin::Upstream
            },
        });
    }
    if object_uid.is_some() || object_resource_version.is_some() {
        entry.object = Some(ObjectRecord {
            uid: object_uid,
            resource_version: object_resource_version,
            generation: object_generation,
        });
    }
    entry.bytes_in = bytes_in;
    entry.bytes_out = bytes_out;
    entry.watch_events = watch_events;
    if let Some((failed_side, kind, message)) = error {
        entry.error = Some(ErrorRecord {
            side: side(failed_side),
            kind,
            message,
        });
    }
    entry.body = captured_body;
    entry.finish(started_at + duration);
    entry
}

/// Records exchanges in the ledger (which also counts them in the metrics).
pub struct LedgerRecorder {
    pub ledger: Ledger,
}

impl Recorder for LedgerRecorder {
    fn record(&self, exchange: Exchange) {
        self.ledger.record(entry_of(exchange));
    }

    fn record_durable(
        &self,
        exchange: Exchange,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> {
        let ledger = self.ledger.clone();
        let entry = entry_of(exchange);
        Box::pin(async move {
            ledger
                .record_durable(entry)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn record_intent(
        &self,
        exchange: &Exchange,
    ) -> Option<Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>> {
        if self.ledger.on_failure() != OnFailure::FailClosedMutations {
            return None;
        }
        let ledger = self.ledger.clone();
        let entry = entry_of(exchange.clone());
        Some(Box::pin(async move {
            ledger.record_intent(entry).await.map_err(|e| e.to_string())
        }))
    }

    fn capture_body(
        &self,
        resource: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Option<ledger::CapturedBody> {
        self.ledger.capture_body(resource, content_type, body)
    }
}

/// Without a ledger: the metrics, and a structured line per request at `debug` level
/// (`RUST_LOG=pathgate=debug`). The ledger is pathgate's record of requests; formatting a
/// log line per request would cost the request path about as much as the ledger does.
pub struct LogRecorder {
    pub metrics: Metrics,
}

impl Recorder for LogRecorder {
    fn record(&self, exchange: Exchange) {
        let status = exchange.status_code;
        let entry = entry_of(exchange);
        self.metrics.observe_entry(&entry);
        tracing::debug!(
            trace_id = %entry.trace_id,
            session = %entry.session,
            method = %entry.request.method,
            path = %entry.request.path,
            status,
            duration_ms = entry.duration_ms.unwrap_or_default(),
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::address_text;

    #[test]
    fn peer_addresses_read_as_their_display_form() {
        for peer in [
            "127.0.0.1:52850",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.0.100.9:443",
            "[::1]:6443",
            "[fe80::1%2]:80",
            "[::ffff:10.1.2.3]:8443",
        ] {
            let parsed: std::net::SocketAddr = peer.parse().unwrap();
            assert_eq!(address_text(parsed), parsed.to_string(), "{peer}");
        }
        assert_eq!(
            address_text("10.0.100.9:443".parse().unwrap()),
            "10.0.100.9:443"
        );
    }
}
