//! The one Prometheus registry and the metrics handle passed to every component.
//!
//! Owns: metric names, label sets (closed: never object names or namespaces) and the text
//! exposition served on the admin listener.

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

/// The metrics handle: cheap to clone, shared by the proxy, the ledger and the admin server.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests seen, by Kubernetes verb and decision action.
    pub requests: IntCounterVec,
}

impl Metrics {
    /// Creates the registry and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("pathgate_requests_total", "Requests seen, by verb and decision."),
            &["verb", "decision"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(requests.clone()))
            .expect("metric registered once");
        Self { registry, requests }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buffer).expect("prometheus text exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
