//! Pipeline tests: durability, group commit, drops, redaction on disk, webhook delivery and
//! catch-up. Every test runs a real spool in a temporary directory; receivers are
//! in-process hyper servers (fault injection is the point of them).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::testing;
use super::*;
use crate::metrics::Metrics;

/// Every entry in the spool, in order. A segment that retention deletes between the
/// listing and the read is skipped (the writer runs concurrently).
fn spool_entries(dir: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (seq, _) in spool::list_segments(dir).unwrap() {
        let text = match std::fs::read_to_string(dir.join(segment_name(seq))) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => panic!("reading segment {seq}: {error}"),
        };
        for line in text.lines() {
            entries.push(serde_json::from_str(line).expect("every spool line is an entry"));
        }
    }
    entries
}

fn counter(metrics: &Metrics, sink: &str, outcome: &str) -> u64 {
    metrics
        .ledger_entries
        .with_label_values(&[sink, outcome])
        .get()
}

fn settings(dir: &Path) -> LedgerSettings {
    LedgerSettings::new(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_record_is_on_disk_when_it_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let (ledger, tasks) = Ledger::start(settings(dir.path()), metrics.clone()).unwrap();
    for i in 0..5 {
        let trace_id = format!("durable-{i}");
        ledger
            .record_durable(testing::mutation(&trace_id))
            .await
            .unwrap();
        // No shutdown, no flush: the entry must already be in the file.
        let on_disk = spool_entries(dir.path());
        assert_eq!(on_disk.last().unwrap().trace_id, trace_id);
        assert_eq!(on_disk.len(), i + 1);
    }
    assert_eq!(counter(&metrics, "spool", "written"), 5);
    tasks.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_durable_records_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let (ledger, tasks) = Ledger::start(settings(dir.path()), metrics.clone()).unwrap();
    const WAITERS: usize = 400;
    let started = Instant::now();
    let records = (0..WAITERS).map(|i| {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            ledger
                .record_durable(testing::mutation(&format!("group-{i}")))
                .await
        })
    });
    for record in futures_util::future::join_all(records).await {
        record.unwrap().unwrap();
    }
    let elapsed = started.elapsed();
    let commits = metrics.ledger_commit_entries.get_sample_count();
    let fsync_seconds = metrics.ledger_commit_duration.get_sample_sum();
    let fsyncs = metrics.ledger_commit_duration.get_sample_count();
    eprintln!(
        "group commit: {WAITERS} durable entries in {elapsed:?}, {commits} commits with waiters, \
         {fsyncs} fsyncs, mean fsync {:.3} ms, mean batch {:.1} entries",
        fsync_seconds * 1000.0 / fsyncs as f64,
        metrics.ledger_commit_entries.get_sample_sum() / commits as f64,
    );
    assert_eq!(
        metrics.ledger_commit_entries.get_sample_sum() as usize,
        WAITERS
    );
    assert!(
        (commits as usize) < WAITERS / 4,
        "{commits} fsyncs for {WAITERS} concurrent durable records: no group commit"
    );
    assert_eq!(spool_entries(dir.path()).len(), WAITERS);

    // For comparison: one mutation at a time pays one fsync each.
    let sequential_started = Instant::now();
    for i in 0..50 {
        ledger
            .record_durable(testing::mutation(&format!("alone-{i}")))
            .await
            .unwrap();
    }
    eprintln!(
        "one at a time: mean record_durable latency {:?}",
        sequential_started.elapsed() / 50
    );
    tasks.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_and_nothing_is_lost_silently() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let mut settings = settings(dir.path());
    settings.queue_capacity = 1;
    let (ledger, tasks) = Ledger::start(settings, metrics.clone()).unwrap();
    const RECORDS: u64 = 20_000;
    for i in 0..RECORDS {
        ledger.record(testing::read(&format!("read-{i}")));
    }
    tasks.shutdown(Duration::from_secs(1)).await;
    let queued = counter(&metrics, "spool", "queued");
    let dropped = counter(&metrics, "spool", "dropped");
    let written = counter(&metrics, "spool", "written");
    assert!(
        dropped > 0,
        "a one-slot queue fed in a tight loop must overflow"
    );
    assert_eq!(
        queued + dropped,
        RECORDS,
        "every record is either queued or counted dropped"
    );
    assert_eq!(written, queued, "every queued entry was written");
    let entries = spool_entries(dir.path());
    assert_eq!(entries.len() as u64, written);
    // Entries recorded after a drop carry the count so far (`ledger_dropped`), so a
    // reader can tell where entries went missing.
    let stamps: Vec<u64> = entries
        .iter()
        .map(|e| e.ledger_dropped.unwrap_or(0))
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    assert!(
        stamps.iter().any(|s| *s > 0),
        "no entry says a drop happened"
    );
    assert!(*stamps.last().unwrap() <= dropped);
    assert_eq!(
        entries[0].ledger_dropped, None,
        "nothing dropped before the first"
    );
    // Metrics come from every entry, written or not.
    assert_eq!(
        metrics.requests.with_label_values(&["get", "allow"]).get(),
        RECORDS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_after_shutdown_are_refused_or_counted() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let (ledger, tasks) = Ledger::start(settings(dir.path()), metrics.clone()).unwrap();
    ledger.record(testing::read("before"));
    tasks.shutdown(Duration::from_secs(1)).await;
    ledger.record(testing::read("after"));
    assert!(matches!(
        ledger
            .record_intent(testing::mutation("after-intent"))
            .await,
        Err(LedgerError::Closed)
    ));
    assert_eq!(counter(&metrics, "spool", "dropped"), 1);
    let on_disk: Vec<String> = spool_entries(dir.path())
        .into_iter()
        .map(|e| e.trace_id)
        .collect();
    assert_eq!(on_disk, ["before"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_reach_the_file_within_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let mut settings = settings(dir.path());
    settings.flush_interval = Duration::from_millis(50);
    let (ledger, tasks) = Ledger::start(settings, metrics.clone()).unwrap();
    ledger.record(testing::read("read-1"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(spool_entries(dir.path()).len(), 1);
    // The timed fsync happens without any durable waiter (how long the fsync itself takes
    // is up to the disk, shared with the other tests: allow it a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while metrics.ledger_commit_duration.get_sample_count() == 0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(metrics.ledger_commit_duration.get_sample_count() >= 1);
    tasks.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intent_then_outcome_share_a_trace_id_with_distinct_dedupe_keys() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let (ledger, tasks) = Ledger::start(settings(dir.path()), metrics.clone()).unwrap();
    let entry = testing::mutation("t-1");
    ledger.record_intent(entry.clone()).await.unwrap();
    ledger.record_durable(entry).await.unwrap();
    tasks.shutdown(Duration::from_secs(1)).await;
    let entries = spool_entries(dir.path());
    assert_eq!(entries[0].phase, Phase::Intent);
    assert_eq!(entries[1].phase, Phase::Outcome);
    assert_eq!(entries[0].dedupe_key(), "t-1/intent");
    assert_eq!(entries[1].dedupe_key(), "t-1/outcome");
    // The intent is not a request of its own: counted once.
    assert_eq!(
        metrics
            .requests
            .with_label_values(&["delete", "deny"])
            .get(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_data_never_reaches_the_jsonl_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.body_capture_max_bytes = Some(64 * 1024);
    let (ledger, tasks) = Ledger::start(settings, Metrics::new()).unwrap();

    let value = "czNjcjN0LXZhbHVl"; // base64 of "s3cr3t-value"
    let plain = "plain-text-password-42";
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop", "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration":
                format!("{{\"data\":{{\"password\":\"{value}\"}}}}")
        }},
        "data": {"password": value},
        "stringData": {"user": plain}
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let mut entry = testing::mutation("secret-create");
    entry.request.resource = "secrets".into();
    entry.request.query = safe_query(&format!("fieldManager=kubectl&token={plain}"));
    entry.body = ledger.capture_body("secrets", Some("application/json"), &body);
    assert!(entry.body.is_some(), "capture enabled");
    ledger.record_durable(entry).await.unwrap();

    let patch = serde_json::json!([{"op": "replace", "path": "/data/password", "value": value}]);
    let mut entry = testing::mutation("secret-patch");
    entry.request.resource = "secrets".into();
    entry.body = ledger.capture_body(
        "secrets",
        Some("application/json-patch+json"),
        &serde_json::to_vec(&patch).unwrap(),
    );
    ledger.record_durable(entry).await.unwrap();
    tasks.shutdown(Duration::from_secs(1)).await;

    let mut text = String::new();
    for (seq, _) in spool::list_segments(dir.path()).unwrap() {
        text += &std::fs::read_to_string(dir.path().join(segment_name(seq))).unwrap();
    }
    assert_eq!(text.lines().count(), 2);
    assert!(!text.contains(value), "Secret data in the ledger: {text}");
    assert!(
        !text.contains(plain),
        "Secret stringData or a token in the ledger: {text}"
    );
    assert!(text.contains(REDACTED));
    assert!(text.contains("\"password\""), "key names are kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_capture_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, tasks) = Ledger::start(settings(dir.path()), Metrics::new()).unwrap();
    assert!(ledger
        .capture_body("configmaps", Some("application/json"), b"{}")
        .is_none());
    tasks.shutdown(Duration::from_secs(1)).await;
}

/// Re-runs this test binary as a child that records until it is killed.
const CRASH_CHILD_ENV: &str = "PATHGATE_LEDGER_CRASH_CHILD_DIR";

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The child side of the kill -9 test: mutations are recorded durably and acknowledged on
/// stdout only after `record_durable` resolved (as the proxy answers the client only
/// then); reads are recorded without waiting and announced with their time.
async fn crash_child(dir: &Path) -> ! {
    let mut settings = settings(dir);
    settings.flush_interval = Duration::from_millis(50);
    let (ledger, _tasks) = Ledger::start(settings, Metrics::new()).unwrap();
    let mut stdout = std::io::stdout();
    for i in 0.. {
        let read = format!("read-{i}");
        ledger.record(testing::read(&read));
        let mutation = format!("mutation-{i}");
        ledger
            .record_durable(testing::mutation(&mutation))
            .await
            .unwrap();
        use std::io::Write;
        writeln!(stdout, "read {read} {}", unix_ms()).unwrap();
        writeln!(stdout, "acked {mutation}").unwrap();
        stdout.flush().unwrap();
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_mutation_and_reads_only_within_the_flush_interval() {
    if let Some(dir) = std::env::var_os(CRASH_CHILD_ENV) {
        crash_child(Path::new(&dir)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ledger::tests::kill_9_loses_no_acknowledged_mutation_and_reads_only_within_the_flush_interval",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let mut reads: Vec<(String, u128)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 300 {
        assert!(
            Instant::now() < deadline,
            "child too slow: {} acks",
            acked.len()
        );
        let line = lines.next().expect("child output").unwrap();
        collect_child_line(&line, &mut acked, &mut reads);
    }
    // SIGKILL, mid-stream: no shutdown, no flush, no destructor runs.
    child.kill().unwrap();
    let killed_at = unix_ms();
    for line in lines {
        let Ok(line) = line else { break };
        collect_child_line(&line, &mut acked, &mut reads);
    }
    child.wait().unwrap();

    let on_disk: BTreeSet<String> = {
        // Reopen as pathgate would after the crash (cuts a torn last line), then read.
        drop(spool::SpoolWriter::open(dir.path(), 64 << 20, 1 << 30).unwrap());
        spool_entries(dir.path())
            .into_iter()
            .map(|e| e.trace_id)
            .collect()
    };
    let lost: Vec<&String> = acked.iter().filter(|id| !on_disk.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged mutations lost by kill -9: {lost:?}"
    );
    let flush_window_ms = 50;
    let old_reads_lost: Vec<&String> = reads
        .iter()
        .filter(|(id, at)| *at + flush_window_ms < killed_at && !on_disk.contains(id))
        .map(|(id, _)| id)
        .collect();
    assert!(
        old_reads_lost.is_empty(),
        "reads older than the flush interval lost: {old_reads_lost:?}"
    );
    eprintln!(
        "kill -9: {} acknowledged mutations and {} reads announced, all on disk ({} entries)",
        acked.len(),
        reads.len(),
        on_disk.len()
    );
}

fn collect_child_line(line: &str, acked: &mut Vec<String>, reads: &mut Vec<(String, u128)>) {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("acked"), Some(id), None) => acked.push(id.to_owned()),
        (Some("read"), Some(id), Some(at)) => reads.push((id.to_owned(), at.parse().unwrap())),
        _ => {} // test harness chatter
    }
}

/// An in-process webhook receiver that answers 500 to its first `fail_first` requests,
/// then 200, and keeps every entry it accepted (duplicates included).
#[derive(Clone, Default)]
struct Receiver {
    fail_first: usize,
    requests: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<Value>>>,
    status_after: Option<u16>,
}

impl Receiver {
    async fn serve(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let receiver = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let receiver = receiver.clone();
                    async move {
                        let number = receiver.requests.fetch_add(1, Ordering::SeqCst);
                        let schema = request
                            .headers()
                            .get(SCHEMA_HEADER)
                            .map(|value| value.to_str().unwrap().to_owned());
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let status = if number < receiver.fail_first {
                            500
                        } else if let Some(status) = receiver.status_after {
                            status
                        } else {
                            assert_eq!(schema.as_deref(), Some(SCHEMA));
                            let batch: Vec<Value> = serde_json::from_slice(&body).unwrap();
                            receiver.accepted.lock().unwrap().extend(batch);
                            200
                        };
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Entries accepted, by dedupe key, with how often each arrived.
    fn by_key(&self) -> BTreeMap<String, usize> {
        let mut keys = BTreeMap::new();
        for entry in self.accepted.lock().unwrap().iter() {
            let key = format!(
                "{}/{}",
                entry["trace_id"].as_str().unwrap(),
                entry["phase"].as_str().unwrap()
            );
            *keys.entry(key).or_insert(0) += 1;
        }
        keys
    }
}

fn webhook_settings(address: SocketAddr) -> WebhookSettings {
    let mut settings = WebhookSettings::new(format!("http://{address}/ledger").parse().unwrap());
    settings.batch_max_entries = 50;
    settings.timeout = Duration::from_secs(2);
    settings.retry = RetrySettings {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    settings
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_receiver_ends_up_with_every_entry_once() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let receiver = Receiver {
        fail_first: 5,
        ..Receiver::default()
    };
    tokio::spawn(receiver.clone().serve(listener));

    let metrics = Metrics::new();
    let mut settings = settings(dir.path());
    settings.webhook = Some(webhook_settings(address));
    let (ledger, tasks) = Ledger::start(settings, metrics.clone()).unwrap();
    let mut expected = BTreeSet::new();
    for i in 0..300 {
        let id = format!("hook-{i}");
        if i % 3 == 0 {
            ledger.record_intent(testing::mutation(&id)).await.unwrap();
            expected.insert(format!("{id}/intent"));
        }
        ledger.record(testing::read(&id));
        expected.insert(format!("{id}/outcome"));
    }
    wait_for(
        "every entry at the webhook",
        Duration::from_secs(20),
        || receiver.by_key().len() == expected.len(),
    )
    .await;
    tasks.shutdown(Duration::from_secs(2)).await;

    let received = receiver.by_key();
    assert_eq!(received.keys().cloned().collect::<BTreeSet<_>>(), expected);
    let duplicates: Vec<_> = received.iter().filter(|(_, count)| **count > 1).collect();
    assert!(duplicates.is_empty(), "delivered twice: {duplicates:?}");
    assert!(receiver.requests.load(Ordering::SeqCst) > 5);
    assert!(counter(&metrics, "webhook", "retried") > 0);
    assert_eq!(
        counter(&metrics, "webhook", "written"),
        expected.len() as u64
    );
    assert_eq!(counter(&metrics, "webhook", "dropped"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_down_across_a_restart_catches_up_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port, then leave it closed: the receiver is down.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut settings = settings(dir.path());
    settings.webhook = Some(webhook_settings(address));

    // First run: the receiver never answers; entries stay in the spool.
    let metrics = Metrics::new();
    let (ledger, tasks) = Ledger::start(settings.clone(), metrics.clone()).unwrap();
    for i in 0..40 {
        ledger
            .record_durable(testing::mutation(&format!("first-{i}")))
            .await
            .unwrap();
    }
    wait_for("a failed delivery", Duration::from_secs(10), || {
        counter(&metrics, "webhook", "retried") > 0
    })
    .await;
    tasks.shutdown(Duration::from_millis(100)).await;

    // Second run: the receiver is up; old entries arrive, then new ones.
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let receiver = Receiver::default();
    tokio::spawn(receiver.clone().serve(listener));
    let metrics = Metrics::new();
    let (ledger, tasks) = Ledger::start(settings, metrics.clone()).unwrap();
    for i in 0..10 {
        ledger.record(testing::read(&format!("second-{i}")));
    }
    wait_for("catch-up", Duration::from_secs(20), || {
        receiver.by_key().len() == 50
    })
    .await;
    tasks.shutdown(Duration::from_secs(2)).await;
    let received = receiver.by_key();
    assert!(received.values().all(|count| *count == 1), "{received:?}");
    let order: Vec<String> = receiver
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|entry| entry["trace_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order[0], "first-0", "the spool is replayed in order");
    assert_eq!(order[49], "second-9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_good_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let receiver = Receiver {
        status_after: Some(400),
        ..Receiver::default()
    };
    tokio::spawn(receiver.clone().serve(listener));
    let metrics = Metrics::new();
    let mut settings = settings(dir.path());
    settings.webhook = Some(webhook_settings(address));
    let (ledger, tasks) = Ledger::start(settings, metrics.clone()).unwrap();
    for i in 0..3 {
        ledger
            .record_durable(testing::mutation(&format!("refused-{i}")))
            .await
            .unwrap();
    }
    wait_for("the drop", Duration::from_secs(10), || {
        counter(&metrics, "webhook", "dropped") == 3
    })
    .await;
    tasks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        counter(&metrics, "webhook", "retried"),
        0,
        "400 is not retried"
    );
    let cursor = spool::load_cursor(dir.path(), "webhook").unwrap().unwrap();
    assert_eq!(
        cursor.offset,
        std::fs::metadata(dir.path().join(segment_name(1)))
            .unwrap()
            .len()
    );
}

#[test]
fn https_sinks_need_a_ca_file_and_other_schemes_are_refused() {
    let mut settings = settings(Path::new("/nonexistent"));
    settings.webhook = Some(WebhookSettings::new(
        "https://127.0.0.1:1/x".parse().unwrap(),
    ));
    assert!(matches!(
        sink::build(&settings),
        Err(LedgerError::Sink {
            sink: "webhook",
            ..
        })
    ));
    settings.webhook = Some(WebhookSettings::new("ftp://127.0.0.1/x".parse().unwrap()));
    assert!(matches!(
        sink::build(&settings),
        Err(LedgerError::Sink {
            sink: "webhook",
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_a_down_sink_loses_to_spool_retention_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let metrics = Metrics::new();
    let mut settings = settings(dir.path());
    settings.segment_max_bytes = 2048;
    settings.spool_max_bytes = 8192;
    settings.webhook = Some(webhook_settings(address));
    let (ledger, tasks) = Ledger::start(settings, metrics.clone()).unwrap();
    const ENTRIES: u64 = 60;
    for i in 0..ENTRIES {
        ledger
            .record_durable(testing::mutation(&format!("retained-{i}")))
            .await
            .unwrap();
    }
    let on_disk = spool_entries(dir.path()).len() as u64;
    assert!(on_disk < ENTRIES, "retention deleted old segments");

    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let receiver = Receiver::default();
    tokio::spawn(receiver.clone().serve(listener));
    let accounted =
        || counter(&metrics, "webhook", "written") + counter(&metrics, "webhook", "dropped");
    wait_for(
        "every entry delivered or counted",
        Duration::from_secs(20),
        || accounted() >= ENTRIES,
    )
    .await;
    tasks.shutdown(Duration::from_secs(1)).await;
    let received = receiver.by_key();
    assert!(received.values().all(|count| *count == 1));
    let lost = ENTRIES - received.len() as u64;
    assert!(lost > 0, "the sink was down longer than retention allowed");
    assert!(
        counter(&metrics, "webhook", "dropped") >= lost,
        "{lost} entries never reached the webhook but only {} were counted dropped",
        counter(&metrics, "webhook", "dropped")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_is_verified_against_its_ca_file() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![server_cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(Vec::<Value>::new()));
    let store = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let Ok(stream) = acceptor.accept(stream).await else {
                continue;
            };
            let store = store.clone();
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let store = store.clone();
                async move {
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let batch: Vec<Value> = serde_json::from_slice(&body).unwrap();
                    store.lock().unwrap().extend(batch);
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });

    let metrics = Metrics::new();
    let mut first = settings(&dir.path().join("spool"));
    let mut webhook = WebhookSettings::new(format!("https://{address}/ledger").parse().unwrap());
    webhook.ca_file = Some(ca_file);
    first.webhook = Some(webhook);
    let (ledger, tasks) = Ledger::start(first, metrics.clone()).unwrap();
    ledger
        .record_durable(testing::mutation("over-tls"))
        .await
        .unwrap();
    wait_for("delivery over TLS", Duration::from_secs(10), || {
        !accepted.lock().unwrap().is_empty()
    })
    .await;
    tasks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(accepted.lock().unwrap()[0]["trace_id"], "over-tls");
    assert_eq!(counter(&metrics, "webhook", "retried"), 0);

    // The same receiver is refused when the CA file names another authority.
    let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = CertifiedIssuer::self_signed(other_params, KeyPair::generate().unwrap()).unwrap();
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, other.pem()).unwrap();
    let metrics = Metrics::new();
    let mut second = settings(&dir.path().join("spool-2"));
    let mut webhook = WebhookSettings::new(format!("https://{address}/ledger").parse().unwrap());
    webhook.ca_file = Some(other_file);
    webhook.retry.initial = Duration::from_millis(20);
    second.webhook = Some(webhook);
    let (ledger, tasks) = Ledger::start(second, metrics.clone()).unwrap();
    ledger
        .record_durable(testing::mutation("wrong-ca"))
        .await
        .unwrap();
    wait_for("a refused handshake", Duration::from_secs(10), || {
        counter(&metrics, "webhook", "retried") > 0
    })
    .await;
    tasks.shutdown(Duration::from_millis(50)).await;
    assert_eq!(
        accepted.lock().unwrap().len(),
        1,
        "nothing sent to an unverified receiver"
    );
}
