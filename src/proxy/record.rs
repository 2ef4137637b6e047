//! Where finished exchanges go: the [`Recorder`] the request path hands them to, the one
//! place an [`Exchange`] becomes a `pathgate.ledger/v1` [`Entry`] ([`entry_of`]), and the
//! recorders that use it.

use std::pin::Pin;

use crate::classify::Verb;
use crate::ledger::{
    self, AnalysisRecord, Client, DecisionRecord, Entry, ErrorRecord, Ledger, LedgerError,
    ObjectRecord, OnFailure, Origin, ResponseEnd, ResponseRecord, SentForwarded,
};
use crate::metrics::Metrics;
use crate::policy::{Fingerprint, Rewrite};

use super::body::StreamEnd;
use super::exchange::Exchange;
use super::AuthMode;

/// A record being made durable; resolves once it is (or could not be).
pub type Recording = Pin<Box<dyn std::future::Future<Output = Result<(), LedgerError>> + Send>>;

/// Where finished exchanges go (the ledger, metrics).
pub trait Recorder: Send + Sync {
    /// Records without waiting (reads, watches).
    fn record(&self, exchange: Exchange);

    /// Records and resolves once the record is durable (mutations, before the client
    /// receives the response). An error means the record could not be made durable.
    fn record_durable(&self, exchange: Exchange) -> Recording {
        self.record(exchange);
        Box::pin(async { Ok(()) })
    }

    /// With `on_failure: fail-closed-mutations`: makes the intent of a mutation durable
    /// before it is forwarded; `None` when the recorder does not require it.
    fn record_intent(&self, _exchange: &Exchange) -> Option<Recording> {
        None
    }

    /// A redacted copy of a mutation body, when body capture is on.
    fn capture_body(
        &self,
        _resource: &str,
        _content_type: Option<&str>,
        _body: &[u8],
    ) -> Option<crate::ledger::CapturedBody> {
        None
    }
}

fn auth_mode(mode: AuthMode) -> ledger::AuthMode {
    match mode {
        AuthMode::Passthrough => ledger::AuthMode::Passthrough,
        AuthMode::Sidecar => ledger::AuthMode::Sidecar,
        AuthMode::Impersonate => ledger::AuthMode::Impersonate,
    }
}

fn response_end(end: StreamEnd) -> ResponseEnd {
    match end {
        StreamEnd::Complete => ResponseEnd::Complete,
        StreamEnd::ClientGone => ResponseEnd::ClientAborted,
        StreamEnd::UpstreamError => ResponseEnd::UpstreamError,
        StreamEnd::Drained => ResponseEnd::Drained,
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
        object_name,
        object_namespace,
        pre_image,
        post_image,
        bytes_in,
        bytes_out,
        watch_events,
        stream_end,
        body_inspected,
        error,
        content_type,
        answered_by_pathgate,
        effect_paths,
        captured_body,
        fingerprint,
        target,
        ..
    } = exchange;
    let started_at = time::OffsetDateTime::from(started_at);
    let client = client_of(identity, mode, peer);
    // A decided request without a fingerprint is a read the gate deferred it for (see
    // `gate::defers_fingerprint`): computed only for an entry that carries it, a failure's.
    let fingerprint = match (fingerprint, info.as_deref(), &decision) {
        (None, Some(info), Some(_)) if status_code >= 400 => Some(Fingerprint::without_body(
            info,
            query.as_deref(),
            content_type.as_deref(),
        )),
        (fingerprint, ..) => fingerprint,
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
    // Only where a reader needs it: a mutation (the same request as a dry run, PG010) or
    // a failure (retries, PG015). A successful read's entry stays as small as it was.
    if entry.request.mutation || status_code >= 400 {
        entry.fingerprint = fingerprint.map(|f| f.to_hex());
    }
    entry.target = target.map(|mut target| {
        target.pre_image = pre_image;
        target
    });
    let rewrites: &[Rewrite] = decision
        .as_ref()
        .map(|d| d.rewrites.as_slice())
        .unwrap_or(&[]);
    if let Some(analysis) = analysis.as_deref() {
        let mut record = AnalysisRecord::from(analysis);
        record.effect_paths = effect_paths;
        // Absent for a request without a body (a GET, a LIST, a DELETE without options):
        // it would say nothing but `"body_format":"none"`.
        entry.analysis = (!record.is_bodiless()).then_some(record);
    }
    sent_and_forwarded(&mut entry, verb, effect_verb, analysis.as_deref(), rewrites);
    if let Some(decision) = &decision {
        entry.decision = Some(DecisionRecord::new(
            decision.mode,
            decision,
            decision.confirmed,
        ));
    }
    if status_code != 0 {
        let origin = if answered_by_pathgate {
            Origin::Pathgate
        } else {
            Origin::Upstream
        };
        entry.response = Some(ResponseRecord {
            status_code,
            reason: status_reason,
            audit_id,
            origin,
            end: stream_end.map(response_end),
            body_inspected,
        });
    }
    entry.object = object_record(
        (object_name, object_namespace),
        object_uid,
        object_resource_version,
        object_generation,
    );
    entry.post_image = post_image;
    entry.bytes_in = bytes_in;
    entry.bytes_out = bytes_out;
    entry.watch_events = watch_events;
    if let Some((failed_side, kind, message)) = error {
        entry.error = Some(ErrorRecord {
            side: failed_side,
            kind,
            message,
        });
    }
    entry.body = captured_body;
    entry.finish(started_at + duration);
    entry
}

/// The object the answer named, when it named one.
fn object_record(
    (name, namespace): (Option<String>, Option<String>),
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
) -> Option<ObjectRecord> {
    (uid.is_some() || resource_version.is_some()).then_some(ObjectRecord {
        name,
        namespace,
        uid,
        resource_version,
        generation,
    })
}

/// The client as the ledger names it.
fn client_of(
    identity: std::sync::Arc<super::ClientIdentity>,
    mode: AuthMode,
    peer: std::net::SocketAddr,
) -> Client {
    let identity = std::sync::Arc::unwrap_or_clone(identity);
    Client {
        user: identity.user,
        groups: identity.groups,
        token_fingerprint: identity.token_fingerprint,
        auth_mode: auth_mode(mode),
        remote_addr: Some(address_text(peer)),
    }
}

/// The dryRun, grace period and limit the client sent and pathgate forwarded.
fn sent_and_forwarded(
    entry: &mut Entry,
    verb: Option<Verb>,
    effect_verb: Option<Verb>,
    analysis: Option<&crate::classify::Analysis>,
    rewrites: &[Rewrite],
) {
    let sent_dry_run = analysis.is_some_and(|a| a.dry_run);
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
    let limit_sent = analysis.and_then(|a| a.list_limit);
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
}

/// Records exchanges in the ledger (which also counts them in the metrics).
pub struct LedgerRecorder {
    pub ledger: Ledger,
}

impl Recorder for LedgerRecorder {
    fn record(&self, exchange: Exchange) {
        self.ledger.record(entry_of(exchange));
    }

    fn record_durable(&self, exchange: Exchange) -> Recording {
        let ledger = self.ledger.clone();
        let entry = entry_of(exchange);
        Box::pin(async move { ledger.record_durable(entry).await })
    }

    fn record_intent(&self, exchange: &Exchange) -> Option<Recording> {
        if self.ledger.on_failure() != OnFailure::FailClosedMutations {
            return None;
        }
        let ledger = self.ledger.clone();
        let entry = entry_of(exchange.clone());
        Some(Box::pin(async move { ledger.record_intent(entry).await }))
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
        ledger::observe(&self.metrics, &entry);
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

    /// A read the gate decided without computing its fingerprint: a failure's entry still
    /// names the fingerprint `Fingerprint::of` gives it, a success's entry none.
    #[test]
    fn a_deferred_reads_entry_names_its_fingerprint_when_it_failed() {
        use crate::classify::{analyse, request_info};
        use crate::policy::{Decision, Fingerprint, Mode};
        let (method, path, query) = (http::Method::GET, "/api/v1/namespaces/a/pods/p", "x=1");
        let uri: http::Uri = format!("{path}?{query}").parse().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        let info = request_info(&method, path, Some(query), &headers).unwrap();
        let analysis = analyse(&info, Some(query), Some("application/json"), b"");
        let eager = Fingerprint::of(&info, &analysis, Some(query), &headers, b"");
        let peer = "127.0.0.1:1".parse().unwrap();
        for (status, expected) in [
            (504, Some(eager.to_hex())),
            (404, Some(eager.to_hex())),
            (200, None),
        ] {
            let mut exchange = super::Exchange::new(
                crate::trace::TraceId::random(),
                peer,
                super::AuthMode::Passthrough,
                &method,
                &uri,
                &headers,
            );
            exchange.info = Some(std::sync::Arc::new(info.clone()));
            exchange.decision = Some(Decision::allow(Mode::Enforce));
            exchange.status_code = status;
            assert_eq!(super::entry_of(exchange).fingerprint, expected, "{status}");
        }
    }

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
