//! The one Prometheus registry and the metrics handle passed to every component.
//!
//! Owns: metric names, label sets and the text exposition served on the admin listener.
//! Label sets are closed: a label value comes from an enum (verb, action, error kind, ledger
//! sink and outcome) or from the rule catalog (`PG` + three digits, anything else becomes
//! `other`), never from an object name, a namespace or a user. Every combination is
//! created at start, so a rate over a series that has not happened yet reads 0 instead of
//! "no data", and the dashboard test can see every name.
//!
//! Does not own: deciding what happened. Request metrics are derived from the ledger entry
//! by the ledger on every outcome (`ledger::observe`, through the typed methods here:
//! [`Metrics::request`], [`Metrics::finding`], ...), so the ledger and the metrics can never
//! disagree; this module knows the vocabulary (verbs, actions, rules, failure kinds), not the
//! entry. Gauges of things in flight (watches, upgrades) are held by the proxy through
//! [`GaugeGuard`]s.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::classify::Verb;
use crate::failure::ErrorKind;
use crate::policy::{Action, RuleId};

/// Kubernetes verbs as the ledger writes them ([`Verb::as_str`]): the closed `verb` label set.
pub const VERBS: [&str; Verb::ALL.len()] = {
    let mut names = [""; Verb::ALL.len()];
    let mut index = 0;
    while index < names.len() {
        names[index] = Verb::ALL[index].as_str();
        index += 1;
    }
    names
};

/// The `decision` label of a request that failed before policy decided anything.
pub const NO_DECISION: &str = "none";

/// Number of rules in the catalog, pre-created as label values: it follows the catalog.
pub const RULE_COUNT: u16 = RuleId::ALL.len() as u16;

/// The ledger's sinks: the `sink` label set of `pathgate_ledger_entries_total`.
pub const LEDGER_SINKS: [&str; 4] = ["spool", "stdout", "webhook", "otlp"];

/// What happened to entries: the `outcome` label set.
pub const LEDGER_OUTCOMES: [&str; 4] = ["queued", "written", "retried", "dropped"];

/// Upper bounds of the request duration histogram, the kube-apiserver's own
/// (`apiserver_request_duration_seconds`), so the two can be compared on one dashboard.
pub const DURATION_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// The metrics handle: cheap to clone, shared by the proxy, the ledger and the admin server.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests seen, by verb and the decision's action (`none` before a decision).
    pub requests: IntCounterVec,
    /// Findings on mutations, by rule: the headline "unsafe mutation" counter.
    pub unsafe_mutations: IntCounterVec,
    /// Findings by rule and the action the rule took (denials, rewrites, confirmations,
    /// flags), on any request.
    pub decisions: IntCounterVec,
    /// Request duration by verb; watches and connect (long-running) are left out, as the
    /// apiserver does.
    pub request_duration: HistogramVec,
    /// Requests the upstream side failed, by failure kind.
    pub upstream_errors: IntCounterVec,
    /// Watches being streamed now.
    pub open_watches: IntGauge,
    /// Upgraded connections (exec, attach, port-forward) open now.
    pub open_upgrades: IntGauge,
    /// Entries waiting in the ledger's in-memory queue.
    pub ledger_queue_depth: IntGauge,
    /// Bytes of JSONL segments in the ledger spool.
    pub ledger_spool_bytes: IntGauge,
    /// Ledger entries by sink (`spool` is the writer) and outcome.
    pub ledger_entries: IntCounterVec,
    /// Time of one spool commit (write + fsync) of a group of entries.
    pub ledger_commit_duration: Histogram,
    /// Entries made durable by one commit (the group-commit batch size).
    pub ledger_commit_entries: Histogram,
    /// Policy reloads by result (`ok`, `error`).
    pub policy_reloads: IntCounterVec,
    /// Client connections open now (admitted, TLS handshake included).
    pub open_connections: IntGauge,
    /// Client connections closed at accept because a limit was reached, by limit.
    pub connections_refused: IntCounterVec,
    /// Client connections (or request bodies) ended by a timeout, by kind.
    pub connection_timeouts: IntCounterVec,
    /// `accept` failures of the client listener (e.g. out of file descriptors).
    pub accept_errors: prometheus::IntCounter,
    /// Responses that did not end whole, by how they ended (`client_aborted`,
    /// `upstream_error`) and whether the request was a mutation: a mutation its client
    /// abandoned still happened.
    pub responses_cut_short: IntCounterVec,
    /// Pre-images (and post-images) by outcome: stored, withheld (not stored, with a reason
    /// in the ledger), evicted by `ledger.pre_images.max_bytes`.
    pub pre_images: IntCounterVec,
    /// Bytes of image files in the pre-image store.
    pub pre_image_bytes: IntGauge,
}

/// Which connection limit refused a client: the `limit` label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionLimit {
    /// `server.max_connections`: every client together.
    Global,
    /// `server.max_connections_per_peer`: one client IP address.
    PerPeer,
}

impl ConnectionLimit {
    pub const ALL: [ConnectionLimit; 2] = [ConnectionLimit::Global, ConnectionLimit::PerPeer];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionLimit::Global => "global",
            ConnectionLimit::PerPeer => "per_peer",
        }
    }
}

/// What a client was too slow at: the `kind` label set of the timeouts counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionTimeout {
    /// The TLS handshake did not finish in time.
    TlsHandshake,
    /// No request headers in time: the first request of a connection (any protocol), or
    /// the next one on a kept-alive HTTP/1.1 connection.
    HeaderRead,
    /// No request in flight for the idle timeout.
    Idle,
    /// An HTTP/2 PING went unanswered (a dead peer).
    Http2Keepalive,
    /// A mutation's body stalled.
    BodyRead,
}

impl ConnectionTimeout {
    pub const ALL: [ConnectionTimeout; 5] = [
        ConnectionTimeout::TlsHandshake,
        ConnectionTimeout::HeaderRead,
        ConnectionTimeout::Idle,
        ConnectionTimeout::Http2Keepalive,
        ConnectionTimeout::BodyRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionTimeout::TlsHandshake => "tls_handshake",
            ConnectionTimeout::HeaderRead => "header_read",
            ConnectionTimeout::Idle => "idle",
            ConnectionTimeout::Http2Keepalive => "http2_keepalive",
            ConnectionTimeout::BodyRead => "body_read",
        }
    }
}

/// How a response that did not end whole ended: the `end` label set of the cut-short
/// counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutShort {
    /// The client went away before the end.
    ClientAborted,
    /// The upstream broke the body off.
    UpstreamError,
}

impl CutShort {
    pub const ALL: [CutShort; 2] = [CutShort::ClientAborted, CutShort::UpstreamError];

    /// The ledger's name for the same end (`response.end`).
    pub fn as_str(self) -> &'static str {
        match self {
            CutShort::ClientAborted => "client_aborted",
            CutShort::UpstreamError => "upstream_error",
        }
    }
}

/// What happened to an image in the pre-image store: the `outcome` label set of
/// `pathgate_pre_images_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageOutcome {
    /// Written (or an identical image refreshed).
    Stored,
    /// Not stored: a Secret without a key, too large, no room, or a failed read or write.
    Withheld,
    /// Removed to make room within `ledger.pre_images.max_bytes`.
    Evicted,
}

impl ImageOutcome {
    pub const ALL: [ImageOutcome; 3] = [
        ImageOutcome::Stored,
        ImageOutcome::Withheld,
        ImageOutcome::Evicted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ImageOutcome::Stored => "stored",
            ImageOutcome::Withheld => "withheld",
            ImageOutcome::Evicted => "evicted",
        }
    }
}

impl Metrics {
    /// Creates the registry, registers every metric and creates every label combination.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric registered once");
            metric
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric registered once");
            metric
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("static metric definition");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric registered once");
            metric
        };

        let requests = counter(
            "pathgate_requests_total",
            "Requests seen, by Kubernetes verb and decision action (none: failed before a decision).",
            &["verb", "decision"],
        );
        let unsafe_mutations = counter(
            "pathgate_unsafe_mutations_total",
            "Mutations with a finding, by rule id.",
            &["rule"],
        );
        let decisions = counter(
            "pathgate_decisions_total",
            "Findings by the action the rule took (flag, rewrite, confirm, deny) and rule id.",
            &["action", "rule"],
        );
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "pathgate_request_duration_seconds",
                "Request duration through pathgate by verb (watch and connect excluded).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["verb"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(request_duration.clone()))
            .expect("metric registered once");
        let upstream_errors = counter(
            "pathgate_upstream_errors_total",
            "Requests the upstream side failed, by kind.",
            &["kind"],
        );
        let open_watches = gauge("pathgate_open_watches", "Watches being streamed now.");
        let open_upgrades = gauge(
            "pathgate_open_upgrades",
            "Upgraded connections (exec, attach, port-forward) open now.",
        );
        let ledger_queue_depth = gauge(
            "pathgate_ledger_queue_depth",
            "Ledger entries waiting in the in-memory queue.",
        );
        let ledger_spool_bytes = gauge(
            "pathgate_ledger_spool_bytes",
            "Bytes of JSONL segments in the ledger spool.",
        );
        let ledger_entries = counter(
            "pathgate_ledger_entries_total",
            "Ledger entries by sink and outcome (queued, written, retried, dropped).",
            &["sink", "outcome"],
        );
        let ledger_commit_duration = histogram(
            "pathgate_ledger_commit_duration_seconds",
            "Time of one spool commit (write and fsync) of a group of entries.",
            vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ],
        );
        let ledger_commit_entries = histogram(
            "pathgate_ledger_commit_entries",
            "Entries made durable by one spool commit (group-commit batch size).",
            vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0],
        );
        let policy_reloads = counter(
            "pathgate_policy_reloads_total",
            "Policy reloads by result (ok, error).",
            &["result"],
        );
        let open_connections = gauge(
            "pathgate_open_connections",
            "Client connections open now (TLS handshake included).",
        );
        let connections_refused = counter(
            "pathgate_connections_refused_total",
            "Client connections closed at accept by a connection limit (global, per_peer).",
            &["limit"],
        );
        let connection_timeouts = counter(
            "pathgate_connection_timeouts_total",
            "Client connections or request bodies ended by a timeout, by kind (tls_handshake, header_read, idle, http2_keepalive, body_read).",
            &["kind"],
        );
        let accept_errors = prometheus::IntCounter::new(
            "pathgate_accept_errors_total",
            "Failures to accept a client connection (e.g. out of file descriptors).",
        )
        .expect("static metric definition");
        registry
            .register(Box::new(accept_errors.clone()))
            .expect("metric registered once");
        let responses_cut_short = counter(
            "pathgate_responses_cut_short_total",
            "Responses that did not end whole, by end (client_aborted, upstream_error) and mutation (true, false).",
            &["end", "mutation"],
        );
        let pre_images = counter(
            "pathgate_pre_images_total",
            "Images of mutated objects by outcome (stored, withheld, evicted).",
            &["outcome"],
        );
        let pre_image_bytes = gauge(
            "pathgate_pre_image_bytes",
            "Bytes of image files in the pre-image store.",
        );

        let metrics = Metrics {
            registry,
            requests,
            unsafe_mutations,
            decisions,
            request_duration,
            upstream_errors,
            open_watches,
            open_upgrades,
            ledger_queue_depth,
            ledger_spool_bytes,
            ledger_entries,
            ledger_commit_duration,
            ledger_commit_entries,
            policy_reloads,
            open_connections,
            connections_refused,
            connection_timeouts,
            accept_errors,
            responses_cut_short,
            pre_images,
            pre_image_bytes,
        };
        metrics.create_label_combinations();
        metrics
    }

    fn create_label_combinations(&self) {
        let decisions: Vec<&str> = Action::ALL
            .iter()
            .map(|action| action.as_str())
            .chain([NO_DECISION])
            .collect();
        for verb in VERBS {
            for decision in &decisions {
                self.requests.with_label_values(&[verb, decision]);
            }
            if verb != "watch" && verb != "connect" {
                self.request_duration.with_label_values(&[verb]);
            }
        }
        for rule in known_rules().chain([OTHER_RULE]) {
            self.unsafe_mutations.with_label_values(&[rule]);
            for action in Action::ALL
                .iter()
                .filter(|action| **action != Action::Allow)
            {
                self.decisions.with_label_values(&[action.as_str(), rule]);
            }
        }
        for kind in ErrorKind::ALL {
            self.upstream_errors.with_label_values(&[kind.as_str()]);
        }
        for sink in LEDGER_SINKS {
            for outcome in LEDGER_OUTCOMES {
                self.ledger_entries.with_label_values(&[sink, outcome]);
            }
        }
        for result in ["ok", "error"] {
            self.policy_reloads.with_label_values(&[result]);
        }
        for limit in ConnectionLimit::ALL {
            self.connections_refused
                .with_label_values(&[limit.as_str()]);
        }
        for kind in ConnectionTimeout::ALL {
            self.connection_timeouts.with_label_values(&[kind.as_str()]);
        }
        for end in CutShort::ALL {
            for mutation in ["true", "false"] {
                self.responses_cut_short
                    .with_label_values(&[end.as_str(), mutation]);
            }
        }
        for outcome in ImageOutcome::ALL {
            self.pre_images.with_label_values(&[outcome.as_str()]);
        }
    }

    /// Counts one request by its verb (`None`: unclassified, counted as `nonresource`) and
    /// its decision's action (`None`: it failed before a decision).
    pub fn request(&self, verb: Option<Verb>, decision: Option<Action>) {
        let decision = decision.map_or(NO_DECISION, Action::as_str);
        self.requests
            .with_label_values(&[verb_label(verb), decision])
            .inc();
    }

    /// Counts one finding by the action its rule took (`None`: a rule id outside the
    /// catalog, counted as `other`); on a mutation, also as an unsafe mutation.
    pub fn finding(&self, action: Action, rule: Option<RuleId>, mutation: bool) {
        if action == Action::Allow {
            return;
        }
        let rule = rule.map_or(OTHER_RULE, RuleId::as_str);
        self.decisions
            .with_label_values(&[action.as_str(), rule])
            .inc();
        if mutation {
            self.unsafe_mutations.with_label_values(&[rule]).inc();
        }
    }

    /// Observes a request's duration; watches and connects (long-running) are left out, as
    /// the apiserver does.
    pub fn request_duration(&self, verb: Option<Verb>, seconds: f64) {
        if matches!(verb, Some(Verb::Watch | Verb::Connect)) {
            return;
        }
        self.request_duration
            .with_label_values(&[verb_label(verb)])
            .observe(seconds);
    }

    /// Counts a request the upstream side failed.
    pub fn upstream_error(&self, kind: ErrorKind) {
        self.upstream_errors
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Counts a response that did not end whole.
    pub fn response_cut_short(&self, end: CutShort, mutation: bool) {
        let mutation = if mutation { "true" } else { "false" };
        self.responses_cut_short
            .with_label_values(&[end.as_str(), mutation])
            .inc();
    }

    /// Counts ledger entries for one sink and outcome; both must be from the closed sets
    /// ([`LEDGER_SINKS`], [`LEDGER_OUTCOMES`]).
    pub fn ledger_count(&self, sink: &str, outcome: &str, entries: u64) {
        debug_assert!(LEDGER_SINKS.contains(&sink) && LEDGER_OUTCOMES.contains(&outcome));
        self.ledger_entries
            .with_label_values(&[sink, outcome])
            .inc_by(entries);
    }

    /// Counts `images` images with one outcome.
    pub fn pre_image(&self, outcome: ImageOutcome, images: u64) {
        self.pre_images
            .with_label_values(&[outcome.as_str()])
            .inc_by(images);
    }

    /// Counts one policy reload.
    pub fn policy_reload(&self, ok: bool) {
        self.policy_reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Marks a watch as open until the guard is dropped.
    pub fn open_watch(&self) -> GaugeGuard {
        GaugeGuard::new(self.open_watches.clone())
    }

    /// Counts a client connection refused by `limit`.
    pub fn connection_refused(&self, limit: ConnectionLimit) {
        self.connections_refused
            .with_label_values(&[limit.as_str()])
            .inc();
    }

    /// Counts a connection (or request body) ended by a timeout of `kind`.
    pub fn connection_timeout(&self, kind: ConnectionTimeout) {
        self.connection_timeouts
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Marks a client connection as open until the guard is dropped.
    pub fn open_connection(&self) -> GaugeGuard {
        GaugeGuard::new(self.open_connections.clone())
    }

    /// Marks an upgraded connection as open until the guard is dropped.
    pub fn open_upgrade(&self) -> GaugeGuard {
        GaugeGuard::new(self.open_upgrades.clone())
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buffer).expect("prometheus text exposition is UTF-8")
    }

    /// The name of every metric family the registry exports.
    pub fn family_names(&self) -> Vec<String> {
        self.registry
            .gather()
            .iter()
            .map(|family| family.name().to_owned())
            .collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Increments a gauge on creation and decrements it on drop, so a watch that ends by error
/// or cancellation is still counted out.
#[must_use = "the gauge is decremented when the guard is dropped"]
pub struct GaugeGuard {
    gauge: IntGauge,
}

impl GaugeGuard {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        GaugeGuard { gauge }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The `rule` label of a finding whose id is not in the catalog.
pub const OTHER_RULE: &str = "other";

/// Every rule id of the catalog, in order.
fn known_rules() -> impl Iterator<Item = &'static str> {
    RuleId::ALL.into_iter().map(RuleId::as_str)
}

/// A verb as a label; an unclassified request is `nonresource`.
fn verb_label(verb: Option<Verb>) -> &'static str {
    verb.unwrap_or(Verb::NonResource).as_str()
}

#[cfg(test)]
mod tests;
