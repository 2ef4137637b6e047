//! The ledger's OTLP sink against a real receiver: Jaeger v2 (an OpenTelemetry Collector
//! distribution) built from the Go module proxy by `controlplane/jaeger/go.mod`, listening
//! on loopback, storing spans in badger (so they survive its restart) and printing log
//! records with the collector's debug exporter.
//!
//! The test sends entries, reads them back through Jaeger's query API, stops Jaeger,
//! records more entries while it is down, restarts it, and checks that the sink caught up
//! from its spool cursor: every entry arrives as a span (with the whole entry attached) and
//! as a log record.
//!
//! The Jaeger binary is built by `cargo xtask test` before any test runs and cached in
//! `${XDG_CACHE_HOME:-~/.cache}/pathgate/jaeger-<version>-<hash>/` (hash of
//! `controlplane/jaeger/go.mod` + `go.sum`; see `testcluster::tools`). Without it the test
//! fails with a message naming that command.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pathgate::ledger::{
    examples, AuthMode, Entry, Ledger, LedgerSettings, OtlpSettings, RetrySettings,
};
use pathgate::metrics::Metrics;
use serde_json::Value;

/// The Jaeger binary `cargo xtask test` built before the tests started; tests never build
/// it themselves (two of them once raced to).
fn jaeger_binary() -> PathBuf {
    testcluster::tools::JAEGER
        .find()
        .unwrap_or_else(|error| panic!("{error}"))
}

use crate::gateway::free_port;

/// A Jaeger process on loopback ports, restartable with the same storage and ports.
pub(crate) struct Jaeger {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    pub(crate) otlp_http: u16,
    query_http: u16,
    child: Option<Child>,
}

impl Jaeger {
    pub(crate) fn new(dir: &Path) -> Self {
        let (otlp_http, query_http, query_grpc) = (free_port(), free_port(), free_port());
        let storage = dir.join("badger");
        let config = dir.join("jaeger.yaml");
        std::fs::write(
            &config,
            format!(
                r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
    logs:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_query:
    storage:
      traces: store
    http:
      endpoint: 127.0.0.1:{query_http}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      store:
        badger:
          directories:
            keys: {storage}
            values: {storage}
          ephemeral: false
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_http}
exporters:
  jaeger_storage_exporter:
    trace_storage: store
  debug:
    verbosity: detailed
"#,
                storage = storage.display()
            ),
        )
        .unwrap();
        Jaeger {
            binary: jaeger_binary(),
            config,
            log: dir.join("jaeger.log"),
            otlp_http,
            query_http,
            child: None,
        }
    }

    pub(crate) async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(format!("file:{}", self.config.display()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start jaeger");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if get_json(&format!(
                "http://127.0.0.1:{}/api/services",
                self.query_http
            ))
            .await
            .is_some()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("jaeger exited with {status}: {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "jaeger did not start: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Graceful stop (SIGTERM), so badger closes its files.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The spans Jaeger holds for one trace id.
    pub(crate) async fn spans(&self, trace_id: &str) -> Vec<Value> {
        let url = format!("http://127.0.0.1:{}/api/traces/{trace_id}", self.query_http);
        let Some(body) = get_json(&url).await else {
            return Vec::new();
        };
        body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|trace| trace["spans"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn get_json(url: &str) -> Option<Value> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(url.parse().ok()?))
        .await
        .ok()?
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = response.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

fn entry(trace_id: &str, index: usize) -> Entry {
    let started = time::OffsetDateTime::now_utc();
    let mut entry = Entry::new(
        trace_id,
        "otlp-test",
        examples::client(AuthMode::Sidecar),
        started,
        examples::request(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps/cm-{index}"),
        ),
    );
    entry.finish(started + time::Duration::milliseconds(3));
    entry
}

fn trace_id(index: usize) -> String {
    format!("{:016x}{:016x}", 0x7061_7468_6761_7465u64, index as u64 + 1)
}

/// The tag `key` of a Jaeger span.
fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|tag| tag["key"] == key)
        .map(|tag| &tag["value"])
}

async fn wait_for_spans(jaeger: &Jaeger, range: std::ops::Range<usize>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for index in range {
        let id = trace_id(index);
        loop {
            let spans = jaeger.spans(&id).await;
            if let Some(span) = spans.first() {
                assert_eq!(spans.len(), 1, "one span per entry: {spans:#?}");
                assert_eq!(span["operationName"], "get configmaps");
                let attached: Entry =
                    serde_json::from_str(tag(span, "pathgate.entry").unwrap().as_str().unwrap())
                        .unwrap();
                assert_eq!(attached.trace_id, id);
                assert_eq!(attached.request.name, format!("cm-{index}"));
                assert_eq!(
                    tag(span, "pathgate.trace_id").unwrap(),
                    &Value::from(id.clone())
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "entry {id} never reached Jaeger; its log:\n{}",
                jaeger.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_entries_reach_jaeger_including_those_recorded_while_it_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut jaeger = Jaeger::new(dir.path());
    jaeger.start().await;

    let metrics = Metrics::new();
    let mut settings = LedgerSettings::new(dir.path().join("spool"));
    let mut otlp = OtlpSettings::new(
        format!("http://127.0.0.1:{}", jaeger.otlp_http)
            .parse()
            .unwrap(),
    );
    otlp.batch_max_entries = 8;
    otlp.timeout = Duration::from_secs(5);
    otlp.retry = RetrySettings {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    settings.otlp = Some(otlp);
    let (ledger, tasks) = Ledger::start(settings, metrics.clone()).unwrap();

    // Receiver up.
    for index in 0..20 {
        ledger.record(entry(&trace_id(index), index));
    }
    wait_for_spans(&jaeger, 0..20).await;

    // Receiver down: entries wait in the spool, attempts fail and are counted.
    jaeger.stop();
    for index in 20..40 {
        ledger.record(entry(&trace_id(index), index));
    }
    let retried = || {
        metrics
            .ledger_entries
            .with_label_values(&["otlp", "retried"])
            .get()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while retried() == 0 {
        assert!(
            Instant::now() < deadline,
            "no failed attempt while Jaeger was down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Receiver back: the sink catches up from its cursor; the old spans are still there.
    jaeger.start().await;
    wait_for_spans(&jaeger, 20..40).await;
    wait_for_spans(&jaeger, 0..20).await;
    tasks.shutdown(Duration::from_secs(5)).await;

    let written = metrics
        .ledger_entries
        .with_label_values(&["otlp", "written"])
        .get();
    assert_eq!(written, 40, "every entry delivered once by the sink");
    assert_eq!(
        metrics
            .ledger_entries
            .with_label_values(&["otlp", "dropped"])
            .get(),
        0
    );
    // Log records went through the collector's logs pipeline (debug exporter output).
    let log = jaeger.log_text();
    for index in 0..40 {
        assert!(
            log.contains(&format!("Trace ID: {}", trace_id(index))),
            "log record of entry {index} not seen by Jaeger's logs pipeline"
        );
    }
    eprintln!(
        "OTLP: 40 entries in Jaeger as spans and log records; {} entry-attempts retried while it was down",
        retried()
    );
}
