//! Scale on the real control plane (issue 15): many concurrent watches through one
//! pathgate ([`watches`]), and a long mixed load whose memory and latency must stay flat
//! ([`soak`]).
//!
//! Watches: the same number of watches on one namespace's ConfigMaps is opened straight to
//! kube-apiserver, then through pathgate (never both at once: the apiserver holds one set),
//! spread over HTTP/2 connections as client-go spreads informers of many processes. Then
//! ConfigMaps are created one at a time, each once every watch has seen the previous one;
//! every (watch, event) pair gives the delay from the create being sent to the event
//! arriving. pathgate's resident memory is read before the watches open and once they all
//! are: the difference over the number of watches is the memory one watch costs.
//!
//! Soak: watches held open, readers GETting a ConfigMap, a writer PATCHing it (the ledger
//! on, so every patch waits for its fsync), all through pathgate for the whole run; every
//! sample window reports pathgate's resident memory and the window's latencies, so a leak
//! or a slowdown shows as a trend from the first window to the last.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;

use crate::client::{self, HttpsClient};
use crate::report::percentile;

/// Where requests go, and over how many HTTP/2 connections (one client per connection).
pub struct Route {
    pub name: &'static str,
    pub base_url: String,
    pub clients: Vec<HttpsClient>,
    /// The process whose memory is reported (`None`: the direct route, nothing between).
    pub pid: Option<u32>,
}

/// The figures of one route in [`watches`].
#[derive(Debug, Clone)]
pub struct WatchScale {
    pub route: &'static str,
    pub watches: usize,
    pub connections: usize,
    /// From the first watch requested to the last one answered 200.
    pub open_time: Duration,
    pub rss_before_kib: Option<u64>,
    pub rss_open_kib: Option<u64>,
    /// Create sent → event received, over every (watch, event) pair, in microseconds.
    pub delays: Vec<i64>,
}

/// The arrivals every watch reports: per event, how many watches have seen it and when.
struct Arrivals {
    /// `(event index, microseconds after the create was sent)`, every watch's.
    delays: Mutex<Vec<i64>>,
    /// The send time of each event, set before the create is sent.
    sent: Mutex<Vec<Instant>>,
    /// Watches that saw the current event.
    seen: AtomicUsize,
    changed: Notify,
    opened: AtomicUsize,
}

/// Opens `count` watches on `route`, creates `events` ConfigMaps straight to the apiserver
/// (`direct`), and returns the route's figures; the watches are closed on return.
pub async fn watches(
    route: &Route,
    direct: &HttpsClient,
    apiserver: &str,
    token: &str,
    count: usize,
    events: usize,
) -> anyhow::Result<WatchScale> {
    let namespace = format!("bench-scale-{}-{}", route.name, std::process::id());
    let collection = create_namespace(direct, apiserver, token, &namespace).await?;
    let resource_version = list_version(direct, apiserver, token, &collection).await?;
    let rss_before_kib = route.pid.and_then(rss_kib);
    let arrivals = Arc::new(Arrivals {
        delays: Mutex::new(Vec::with_capacity(count * events)),
        sent: Mutex::new(Vec::new()),
        seen: AtomicUsize::new(0),
        changed: Notify::new(),
        opened: AtomicUsize::new(0),
    });
    let url = format!(
        "{}{collection}?watch=true&resourceVersion={resource_version}&allowWatchBookmarks=false",
        route.base_url
    );
    let started = Instant::now();
    let mut tasks: Vec<_> = (0..count)
        .map(|index| {
            let client = route.clients[index % route.clients.len()].clone();
            tokio::spawn(watch(
                client,
                url.clone(),
                token.to_string(),
                arrivals.clone(),
            ))
        })
        .collect();
    wait_for(
        &arrivals,
        |a| a.opened.load(Ordering::Relaxed) >= count,
        &mut tasks,
    )
    .await?;
    let open_time = started.elapsed();
    let rss_open_kib = route.pid.and_then(rss_kib);
    for index in 0..events {
        arrivals.seen.store(0, Ordering::Relaxed);
        arrivals.sent.lock().unwrap().push(Instant::now());
        let name = format!("event-{index:04}");
        let object = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": {"index": index.to_string()}});
        let (status, body) = post(direct, apiserver, token, &collection, object).await?;
        if status != StatusCode::CREATED {
            bail!(
                "creating {name}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        wait_for(
            &arrivals,
            |a| a.seen.load(Ordering::Relaxed) >= count,
            &mut tasks,
        )
        .await?;
    }
    for task in &tasks {
        task.abort();
    }
    let delays = std::mem::take(&mut *arrivals.delays.lock().unwrap());
    Ok(WatchScale {
        route: route.name,
        watches: count,
        connections: route.clients.len(),
        open_time,
        rss_before_kib,
        rss_open_kib,
        delays,
    })
}

/// Waits (at most 120 s) until `done`, failing early when a watch task ended with an error.
async fn wait_for(
    arrivals: &Arrivals,
    done: impl Fn(&Arrivals) -> bool,
    tasks: &mut Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(arrivals) {
        let changed = arrivals.changed.notified();
        if done(arrivals) {
            break;
        }
        if let Some(index) = tasks.iter().position(|t| t.is_finished()) {
            let ended = tasks.swap_remove(index).await;
            let error = match ended {
                Ok(Err(error)) => error,
                Ok(Ok(())) => anyhow::anyhow!("it ended"),
                Err(error) => anyhow::anyhow!(error),
            };
            return Err(error.context(format!(
                "a watch ended before the measurement did ({} open)",
                arrivals.opened.load(Ordering::Relaxed)
            )));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "timed out: {} watches open, {} saw the current event",
                arrivals.opened.load(Ordering::Relaxed),
                arrivals.seen.load(Ordering::Relaxed)
            );
        }
        let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), changed).await;
    }
    Ok(())
}

/// One watch: counts itself open on its 200, then every ADDED event as its line completes.
async fn watch(
    client: HttpsClient,
    url: String,
    token: String,
    arrivals: Arc<Arrivals>,
) -> anyhow::Result<()> {
    let request = Request::get(&url)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))?;
    let response = client.request(request).await.context("opening a watch")?;
    if response.status() != StatusCode::OK {
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        bail!(
            "a watch was answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    arrivals.opened.fetch_add(1, Ordering::Relaxed);
    arrivals.changed.notify_waiters();
    crate::watch::events_of(response.into_body(), |event, at| {
        if event["type"] != "ADDED" {
            return Ok(true);
        }
        let index: usize = event["object"]["data"]["index"]
            .as_str()
            .and_then(|i| i.parse().ok())
            .context("an event without its index")?;
        let sent = arrivals.sent.lock().unwrap()[index];
        let delay = at.saturating_duration_since(sent).as_micros() as i64;
        arrivals.delays.lock().unwrap().push(delay);
        arrivals.seen.fetch_add(1, Ordering::Relaxed);
        arrivals.changed.notify_waiters();
        Ok(true)
    })
    .await?;
    bail!("the watch ended")
}

/// One window of [`soak`].
#[derive(Debug, Clone)]
pub struct SoakSample {
    pub at: Duration,
    pub rss_kib: Option<u64>,
    pub gets: Vec<i64>,
    pub patches: Vec<i64>,
    pub watch_events: usize,
    pub errors: usize,
}

/// The shape of the soak's load.
pub struct SoakLoad {
    pub duration: Duration,
    pub window: Duration,
    pub readers: usize,
    pub watches: usize,
}

/// Runs the soak's load through `route` for `load.duration` and returns one sample per
/// window. Setup (namespace, ConfigMap) goes straight to the apiserver.
pub async fn soak(
    route: &Route,
    direct: &HttpsClient,
    apiserver: &str,
    token: &str,
    load: &SoakLoad,
) -> anyhow::Result<Vec<SoakSample>> {
    let namespace = format!("bench-soak-{}", std::process::id());
    let collection = create_namespace(direct, apiserver, token, &namespace).await?;
    let object = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "soak"}, "data": {"n": "0"}});
    let (status, body) = post(direct, apiserver, token, &collection, object).await?;
    if status != StatusCode::CREATED {
        bail!(
            "creating the soak ConfigMap: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let window = Arc::new(Mutex::new(SoakSample::empty()));
    let object_url = format!("{}{collection}/soak", route.base_url);
    let watch_url = format!("{}{collection}?watch=true", route.base_url);
    let mut tasks = Vec::new();
    for index in 0..load.watches {
        let client = route.clients[index % route.clients.len()].clone();
        tasks.push(tokio::spawn(soak_watch(
            client,
            watch_url.clone(),
            token.to_string(),
            window.clone(),
        )));
    }
    for index in 0..load.readers {
        let client = route.clients[index % route.clients.len()].clone();
        tasks.push(tokio::spawn(soak_loop(
            client,
            object_url.clone(),
            token.to_string(),
            window.clone(),
            false,
        )));
    }
    let writer = route.clients[0].clone();
    tasks.push(tokio::spawn(soak_loop(
        writer,
        object_url.clone(),
        token.to_string(),
        window.clone(),
        true,
    )));
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < load.duration {
        tokio::time::sleep(load.window).await;
        let mut current = window.lock().unwrap();
        let mut sample = std::mem::replace(&mut *current, SoakSample::empty());
        drop(current);
        sample.at = started.elapsed();
        sample.rss_kib = route.pid.and_then(rss_kib);
        eprintln!(
            "load benchmark: soak at {:>4} s: RSS {} KiB, {} GETs p50 {} µs, {} PATCHes p50 {} µs, {} watch events, {} errors",
            sample.at.as_secs(),
            sample.rss_kib.unwrap_or(0),
            sample.gets.len(),
            percentile(&sample.gets, 50.0),
            sample.patches.len(),
            percentile(&sample.patches, 50.0),
            sample.watch_events,
            sample.errors,
        );
        samples.push(sample);
    }
    for task in tasks {
        task.abort();
    }
    Ok(samples)
}

impl SoakSample {
    fn empty() -> Self {
        SoakSample {
            at: Duration::ZERO,
            rss_kib: None,
            gets: Vec::new(),
            patches: Vec::new(),
            watch_events: 0,
            errors: 0,
        }
    }
}

/// A reader (GET after GET) or the writer (a merge PATCH after another, each changing the
/// ConfigMap), one request at a time, its latencies into the current window.
async fn soak_loop(
    client: HttpsClient,
    url: String,
    token: String,
    window: Arc<Mutex<SoakSample>>,
    writes: bool,
) {
    for n in 0u64.. {
        let request = if writes {
            let patch = serde_json::json!({"data": {"n": n.to_string()}}).to_string();
            Request::builder()
                .method(Method::PATCH)
                .uri(&url)
                .header(header::CONTENT_TYPE, "application/merge-patch+json")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Full::new(Bytes::from(patch)))
        } else {
            Request::get(&url)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::ACCEPT, "application/json")
                .body(Full::new(Bytes::new()))
        };
        let Ok(request) = request else { return };
        let sent = Instant::now();
        let result = client::send(&client, request).await;
        let micros = sent.elapsed().as_micros() as i64;
        let mut sample = window.lock().unwrap();
        match result {
            Ok((StatusCode::OK, _)) if writes => sample.patches.push(micros),
            Ok((StatusCode::OK, _)) => sample.gets.push(micros),
            _ => sample.errors += 1,
        }
    }
}

/// A watch held for the whole soak, counting its events into the current window; reopened
/// when the apiserver ends it (as a client-go reflector would).
async fn soak_watch(
    client: HttpsClient,
    url: String,
    token: String,
    window: Arc<Mutex<SoakSample>>,
) {
    loop {
        let request = Request::get(&url)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()));
        let Ok(request) = request else { return };
        let Ok(response) = client.request(request).await else {
            window.lock().unwrap().errors += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut body = response.into_body();
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                let lines = data.iter().filter(|b| **b == b'\n').count();
                window.lock().unwrap().watch_events += lines;
            }
        }
    }
}

/// Creates a namespace straight on the apiserver; returns its ConfigMaps' collection path.
async fn create_namespace(
    client: &HttpsClient,
    apiserver: &str,
    token: &str,
    namespace: &str,
) -> anyhow::Result<String> {
    let object = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    let (status, body) = post(client, apiserver, token, "/api/v1/namespaces", object).await?;
    if status != StatusCode::CREATED {
        bail!(
            "creating namespace {namespace}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(format!("/api/v1/namespaces/{namespace}/configmaps"))
}

/// The resourceVersion of a LIST of `collection`: watches start there.
async fn list_version(
    client: &HttpsClient,
    apiserver: &str,
    token: &str,
    collection: &str,
) -> anyhow::Result<String> {
    let (status, body) = client::get(client, &format!("{apiserver}{collection}"), token).await?;
    if status != StatusCode::OK {
        bail!("listing {collection}: {status}");
    }
    let list: serde_json::Value = serde_json::from_slice(&body)?;
    list["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string)
        .context("the list has no resourceVersion")
}

async fn post(
    client: &HttpsClient,
    base_url: &str,
    token: &str,
    path: &str,
    object: serde_json::Value,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{base_url}{path}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(object.to_string())))?;
    client::send(client, request).await
}

/// A process's resident set size (`VmRSS` of `/proc/PID/status`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The watches' table: one row per route.
pub fn watches_markdown(results: &[WatchScale], events: usize) -> String {
    let mut out = format!(
        "## Concurrent watches on the control plane\n\n{} watches per route (one route at a time), \
         {events} ConfigMaps created one at a time; delay = create sent → event received, over \
         every (watch, event) pair. Memory: pathgate's resident set before the watches opened \
         and once all were open.\n\n\
         | route | watches | HTTP/2 connections | all open after | RSS before → open | per watch | delay p50 | p99 |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        results.first().map_or(0, |r| r.watches),
    );
    for result in results {
        let (memory, per_watch) = match (result.rss_before_kib, result.rss_open_kib) {
            (Some(before), Some(open)) => (
                format!(
                    "{:.1} → {:.1} MiB",
                    before as f64 / 1024.0,
                    open as f64 / 1024.0
                ),
                format!(
                    "{:.1} KiB",
                    open.saturating_sub(before) as f64 / result.watches as f64
                ),
            ),
            _ => ("—".into(), "—".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} s | {memory} | {per_watch} | {:.2} ms | {:.2} ms |\n",
            result.route,
            result.watches,
            result.connections,
            result.open_time.as_secs_f64(),
            percentile(&result.delays, 50.0) as f64 / 1000.0,
            percentile(&result.delays, 99.0) as f64 / 1000.0,
        ));
    }
    out
}

/// The soak's table: one row per window.
pub fn soak_markdown(samples: &[SoakSample], load: &SoakLoad) -> String {
    let mut out = format!(
        "## Soak through pathgate\n\n{} s of {} readers (GET after GET), one writer (merge PATCH \
         after merge PATCH, ledger on) and {} watches, all through pathgate; one row per {} s \
         window.\n\n\
         | at | RSS | GETs | GET p50 | GET p99 | PATCHes | PATCH p50 | PATCH p99 | watch events | errors |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        load.duration.as_secs(),
        load.readers,
        load.watches,
        load.window.as_secs(),
    );
    let ms = |values: &[i64], p: f64| percentile(values, p) as f64 / 1000.0;
    for s in samples {
        out.push_str(&format!(
            "| {} s | {:.1} MiB | {} | {:.2} ms | {:.2} ms | {} | {:.2} ms | {:.2} ms | {} | {} |\n",
            s.at.as_secs(),
            s.rss_kib.unwrap_or(0) as f64 / 1024.0,
            s.gets.len(),
            ms(&s.gets, 50.0),
            ms(&s.gets, 99.0),
            s.patches.len(),
            ms(&s.patches, 50.0),
            ms(&s.patches, 99.0),
            s.watch_events,
            s.errors,
        ));
    }
    out
}
