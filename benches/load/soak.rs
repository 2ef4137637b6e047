//! The mixed-load soak (`--soak-seconds N`): reads, writes and watches through one pathgate
//! binary (ledger on) in front of the real control plane for N seconds, with pathgate's
//! resident memory and the read and write latencies sampled per window, so that growth
//! over time shows (the promise is flat memory and latency).
//!
//! Readers GET one of a few ConfigMaps or LIST them (`limit=50`), writers create,
//! merge-patch and delete a ConfigMap of their own, and long-running watches on the
//! namespace count the events every write produces. Every loop is bounded by the deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::client::{self, HttpsClient};
use crate::report::percentile;
use crate::scale::rss_kib;

/// How the soak is run.
#[derive(Debug, Clone)]
pub struct SoakSettings {
    pub duration: Duration,
    pub window: Duration,
    pub readers: usize,
    pub writers: usize,
    pub watches: usize,
}

/// Where the load goes.
pub struct SoakTarget {
    pub base_url: String,
    pub client: HttpsClient,
    pub token: String,
    pub collection: String,
    pub pathgate_pid: u32,
}

/// One window's figures.
#[derive(Debug, Clone)]
pub struct Window {
    pub end: Duration,
    pub rss_kib: u64,
    pub reads: Vec<i64>,
    pub writes: Vec<i64>,
    pub watch_events: u64,
    pub errors: u64,
}

/// What the load tasks record, swapped out at each window's end.
#[derive(Default)]
struct Samples {
    reads: Mutex<Vec<i64>>,
    writes: Mutex<Vec<i64>>,
    watch_events: AtomicU64,
    errors: AtomicU64,
}

/// Base objects the readers GET.
const READ_SET: usize = 8;

/// Runs the soak and returns its windows.
pub async fn run(target: SoakTarget, settings: &SoakSettings) -> anyhow::Result<Vec<Window>> {
    let target = Arc::new(target);
    for index in 0..READ_SET {
        let path = target.collection.clone();
        let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("read-{index}")}, "data": {"a": "1"}});
        let (status, _) = request(&target, Method::POST, &path, Some(body)).await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "creating read-{index}: {status}"
        );
    }
    let samples = Arc::new(Samples::default());
    let started = Instant::now();
    let deadline = started + settings.duration;
    let mut tasks = Vec::new();
    for _ in 0..settings.watches {
        tasks.push(tokio::spawn(watch(target.clone(), samples.clone())));
    }
    for reader in 0..settings.readers {
        tasks.push(tokio::spawn(read_loop(
            target.clone(),
            samples.clone(),
            reader,
            deadline,
        )));
    }
    for writer in 0..settings.writers {
        tasks.push(tokio::spawn(write_loop(
            target.clone(),
            samples.clone(),
            writer,
            deadline,
        )));
    }
    let mut windows = Vec::new();
    let mut next = started + settings.window;
    while next <= deadline {
        tokio::time::sleep_until(next.into()).await;
        windows.push(Window {
            end: next - started,
            rss_kib: rss_kib(target.pathgate_pid),
            reads: std::mem::take(&mut *samples.reads.lock().unwrap()),
            writes: std::mem::take(&mut *samples.writes.lock().unwrap()),
            watch_events: samples.watch_events.swap(0, Ordering::Relaxed),
            errors: samples.errors.swap(0, Ordering::Relaxed),
        });
        eprintln!(
            "load benchmark: soak {}",
            windows.last().unwrap().row(settings.window)
        );
        next += settings.window;
    }
    for task in tasks {
        task.abort();
    }
    Ok(windows)
}

async fn request(
    target: &SoakTarget,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let content_type = if method == Method::PATCH {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", target.base_url))
        .header(header::AUTHORIZATION, format!("Bearer {}", target.token))
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(
            body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
        ))?;
    client::send(&target.client, request).await
}

/// Times one request into `into`; a failed request or an unexpected status is an error.
async fn timed(
    target: &SoakTarget,
    samples: &Samples,
    into: &Mutex<Vec<i64>>,
    (method, path, body): (Method, String, Option<serde_json::Value>),
    expected: StatusCode,
) {
    let sent = Instant::now();
    match request(target, method, &path, body).await {
        Ok((status, _)) if status == expected => {
            into.lock().unwrap().push(sent.elapsed().as_micros() as i64)
        }
        _ => {
            samples.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn read_loop(
    target: Arc<SoakTarget>,
    samples: Arc<Samples>,
    reader: usize,
    deadline: Instant,
) {
    let mut round = reader;
    while Instant::now() < deadline {
        round += 1;
        let path = if round % 4 == 0 {
            format!("{}?limit=50", target.collection)
        } else {
            format!("{}/read-{}", target.collection, round % READ_SET)
        };
        let call = (Method::GET, path, None);
        timed(&target, &samples, &samples.reads, call, StatusCode::OK).await;
    }
}

async fn write_loop(
    target: Arc<SoakTarget>,
    samples: Arc<Samples>,
    writer: usize,
    deadline: Instant,
) {
    let mut round = 0;
    while Instant::now() < deadline {
        round += 1;
        let name = format!("write-{writer}-{round}");
        let object = format!("{}/{name}", target.collection);
        let calls = [
            (
                (
                    Method::POST,
                    target.collection.clone(),
                    Some(serde_json::json!(
                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
                    )),
                ),
                StatusCode::CREATED,
            ),
            (
                (
                    Method::PATCH,
                    object.clone(),
                    Some(serde_json::json!({"data": {"round": round.to_string()}})),
                ),
                StatusCode::OK,
            ),
            ((Method::DELETE, object, None), StatusCode::OK),
        ];
        for (call, expected) in calls {
            timed(&target, &samples, &samples.writes, call, expected).await;
        }
    }
}

/// A watch on the namespace that counts events until it is aborted (reopened if the
/// apiserver ends it).
async fn watch(target: Arc<SoakTarget>, samples: Arc<Samples>) {
    loop {
        let request = Request::get(format!(
            "{}{}?watch=true",
            target.base_url, target.collection
        ))
        .header(header::AUTHORIZATION, format!("Bearer {}", target.token))
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
        let Ok(response) = target.client.request(request).await else {
            samples.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut body = response.into_body();
        let mut pending = BytesMut::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                pending.extend_from_slice(data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let _ = pending.split_to(end + 1);
                    samples.watch_events.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Window {
    fn row(&self, window: Duration) -> String {
        let per_second = |n: usize| n as f64 / window.as_secs_f64();
        format!(
            "| {} s | {:.1} MiB | {:.0} | {} µs | {} µs | {:.0} | {} µs | {} µs | {:.0} | {} |",
            self.end.as_secs(),
            self.rss_kib as f64 / 1024.0,
            per_second(self.reads.len()),
            percentile(&self.reads, 50.0),
            percentile(&self.reads, 99.0),
            per_second(self.writes.len()),
            percentile(&self.writes, 50.0),
            percentile(&self.writes, 99.0),
            per_second(self.watch_events as usize),
            self.errors
        )
    }
}

/// The windows as Markdown, with the first and last window compared.
pub fn markdown(windows: &[Window], settings: &SoakSettings) -> String {
    let mut out = format!(
        "#### Mixed-load soak through pathgate (real kube-apiserver, ledger on): {} s, {} readers, {} writers, {} watches, {} s windows\n\n",
        settings.duration.as_secs(),
        settings.readers,
        settings.writers,
        settings.watches,
        settings.window.as_secs()
    );
    out.push_str("| window end | pathgate RSS | reads/s | read p50 | read p99 | writes/s | write p50 | write p99 | watch events/s | errors |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for window in windows {
        out.push_str(&window.row(settings.window));
        out.push('\n');
    }
    // The first window includes the warm-up (connections, caches); the second is the
    // reference that later ones are held against.
    if let (Some(first), Some(last)) = (windows.get(1), windows.last()) {
        let ratio = |a: i64, b: i64| if b > 0 { a as f64 / b as f64 } else { f64::NAN };
        out.push_str(&format!(
            "\nlast window over the second: RSS {:.2}, read p99 {:.2}, write p99 {:.2}\n",
            last.rss_kib as f64 / first.rss_kib.max(1) as f64,
            ratio(
                percentile(&last.reads, 99.0),
                percentile(&first.reads, 99.0)
            ),
            ratio(
                percentile(&last.writes, 99.0),
                percentile(&first.writes, 99.0)
            ),
        ));
    }
    out
}
