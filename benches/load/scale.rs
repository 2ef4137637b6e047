//! Many concurrent watches (`--watches N`): N watches on the ConfigMaps of one namespace of
//! the real control plane, first straight to kube-apiserver, then (after those closed)
//! through one pathgate binary; in each phase ConfigMaps are created one at a time and
//! every watch's delay from the create being sent to its event arriving is kept. pathgate's
//! resident memory is read before its watches open and once they all stream.
//!
//! Watches are spread over HTTP/2 connections of [`STREAMS_PER_CONNECTION`] streams each
//! (below pathgate's and the apiserver's stream limits), as many clients would open them.
//! pathgate gives each watch an upstream HTTP/1.1 connection of its own
//! (src/upstream/streams.rs), so N watches hold about N descriptors in pathgate and N in
//! the apiserver; [`raise_open_files`] lifts the limit the children inherit.
//!
//! The phases run one after the other, not side by side: both at once would double the
//! apiserver's watchers (and its descriptors), and each phase's latency is measured with
//! the same number of watchers fanning out each event.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::report::percentile;

/// Watches per client HTTP/2 connection: under pathgate's 250 and the apiserver's limits.
const STREAMS_PER_CONNECTION: usize = 100;

/// Between two creates: long enough for N events to reach every watch before the next.
const CREATE_INTERVAL: Duration = Duration::from_millis(500);

/// Where a phase's watches go.
pub struct Target {
    pub label: &'static str,
    pub addr: SocketAddr,
    pub ca: std::path::PathBuf,
    /// The process whose resident memory is reported (pathgate), if any.
    pub measured_pid: Option<u32>,
    /// The apiserver, whose resident memory is reported too.
    pub apiserver_pid: u32,
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct Phase {
    pub label: &'static str,
    pub watches: usize,
    /// From the first watch requested to the last one's response head.
    pub open_time: Duration,
    /// Resident memory of the measured process before and with every watch open, KiB.
    pub rss_kib: Option<(u64, u64)>,
    /// The apiserver's resident memory with every watch open, KiB.
    pub apiserver_rss_kib: u64,
    /// Per (watch, event): create sent → event received, µs.
    pub delays: Vec<i64>,
    /// (watch, event) pairs that never arrived within the phase.
    pub missed: usize,
}

/// Raises this process's open-files limit (inherited by the control plane and pathgate) to
/// at least `wanted` when allowed (root), else the soft limit to the hard one. Returns the
/// limit.
pub fn raise_open_files(wanted: u64) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    // Never lowered: the limit only has to carry at least `wanted`.
    let wanted = wanted.max(soft);
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted.max(hard)).is_ok() {
        return wanted;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// Resident memory of `pid`, KiB (`VmRSS` of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn tls_config(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in pathgate::tls::read_certs(ca)? {
        roots.add(cert)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(pathgate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = TlsConnector::from(config)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await?;
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(256 * 1024)
        .handshake(TokioIo::new(tls))
        .await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One watch's arrivals: `(event index, when)`.
type Arrivals = Vec<(usize, Instant)>;

/// Runs one phase: opens `watches` watches on `collection` from `resource_version`,
/// creates `events` ConfigMaps through `create` and gathers every delay.
pub async fn phase(
    target: &Target,
    token: &str,
    collection: &str,
    resource_version: &str,
    watches: usize,
    events: usize,
    create: impl AsyncFn(usize) -> anyhow::Result<()>,
) -> anyhow::Result<Phase> {
    let rss_before = target.measured_pid.map(rss_kib);
    let config = tls_config(&target.ca)?;
    let path = format!("{collection}?watch=true&resourceVersion={resource_version}");
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<anyhow::Result<()>>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Arrivals>();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for first in (0..watches).step_by(STREAMS_PER_CONNECTION) {
        let sender = connect(target.addr, config.clone())
            .await
            .with_context(|| format!("connecting to {} ({})", target.addr, target.label))?;
        for _ in first..(first + STREAMS_PER_CONNECTION).min(watches) {
            let request = WatchRequest {
                uri: format!("https://{}{path}", target.addr),
                authorization: format!("Bearer {token}"),
            };
            tasks.push(tokio::spawn(watch(
                sender.clone(),
                request,
                events,
                opened_tx.clone(),
                done_tx.clone(),
            )));
        }
    }
    for _ in 0..watches {
        match tokio::time::timeout(Duration::from_secs(120), opened_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(error))) => bail!("a watch through {} failed: {error:#}", target.label),
            _ => bail!(
                "the watches through {} did not all open within 120 s",
                target.label
            ),
        }
    }
    let open_time = started.elapsed();
    let rss_open = target.measured_pid.map(rss_kib);
    let apiserver_rss_kib = rss_kib(target.apiserver_pid);
    eprintln!(
        "load benchmark: {watches} watches open ({}) after {:.1} s",
        target.label,
        open_time.as_secs_f64()
    );
    // Event 0 warms the path up (the first fan-out allocates buffers on both sides) and
    // is not counted.
    let mut sent = Vec::with_capacity(events + 1);
    for index in 0..=events {
        sent.push(Instant::now());
        create(index).await?;
        tokio::time::sleep(CREATE_INTERVAL).await;
    }
    let mut delays = Vec::with_capacity(watches * events);
    let mut reported = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while reported < watches {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(arrivals)) = tokio::time::timeout(left, done_rx.recv()).await else {
            break;
        };
        reported += 1;
        for (index, at) in arrivals.into_iter().filter(|(index, _)| *index > 0) {
            delays.push(at.duration_since(sent[index]).as_micros() as i64);
        }
    }
    for task in tasks {
        task.abort();
    }
    Ok(Phase {
        label: target.label,
        watches,
        open_time,
        rss_kib: rss_before.zip(rss_open),
        apiserver_rss_kib,
        missed: watches * events - delays.len(),
        delays,
    })
}

/// One watch request, rebuilt for each attempt.
struct WatchRequest {
    uri: String,
    authorization: String,
}

/// Attempts at opening one watch: the apiserver's priority and fairness may answer 429
/// while thousands of watches start at once.
const OPEN_ATTEMPTS: usize = 30;

/// Opens the watch, retrying a 429 after a second.
async fn open(
    sender: &mut SendRequest<Full<Bytes>>,
    watch: &WatchRequest,
) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
    for _ in 0..OPEN_ATTEMPTS {
        let request = Request::get(&watch.uri)
            .header(header::AUTHORIZATION, &watch.authorization)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        match response.status() {
            StatusCode::OK => return Ok(response),
            StatusCode::TOO_MANY_REQUESTS => tokio::time::sleep(Duration::from_secs(1)).await,
            status => bail!("answered {status}"),
        }
    }
    bail!("answered 429 {OPEN_ATTEMPTS} times")
}

/// Streams one watch; reports its opening, then its arrivals once it saw the warm-up
/// event and `events` more.
async fn watch(
    mut sender: SendRequest<Full<Bytes>>,
    request: WatchRequest,
    events: usize,
    opened: mpsc::UnboundedSender<anyhow::Result<()>>,
    done: mpsc::UnboundedSender<Arrivals>,
) {
    let response = open(&mut sender, &request).await;
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            let _ = opened.send(Err(error));
            return;
        }
    };
    let _ = opened.send(Ok(()));
    let mut body = response.into_body();
    let mut pending = BytesMut::new();
    let mut arrivals = Vec::with_capacity(events);
    while let Some(Ok(frame)) = body.frame().await {
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let at = Instant::now();
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line = pending.split_to(end + 1);
            if let Some(index) = added_event_index(&line) {
                arrivals.push((index, at));
            }
        }
        if arrivals.len() == events + 1 {
            let _ = done.send(std::mem::take(&mut arrivals));
        }
    }
}

/// The index of an `ADDED` event's ConfigMap (`event-<index>`), found without parsing the
/// whole event: ten thousand watches each read every event.
fn added_event_index(line: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?;
    if !text.starts_with(r#"{"type":"ADDED""#) {
        return None;
    }
    let rest = text.split(r#""name":"event-"#).nth(1)?;
    rest.split('"').next()?.parse().ok()
}

impl Phase {
    fn row(&self) -> String {
        let rss = match self.rss_kib {
            Some((before, open)) => format!(
                "{:.1} MiB → {:.1} MiB ({:.1} KiB per watch)",
                before as f64 / 1024.0,
                open as f64 / 1024.0,
                open.saturating_sub(before) as f64 / self.watches as f64
            ),
            None => "—".into(),
        };
        format!(
            "| {} | {} | {:.1} s | {} | {:.0} MiB | {} µs | {} µs | {} µs | {} |",
            self.label,
            self.watches,
            self.open_time.as_secs_f64(),
            rss,
            self.apiserver_rss_kib as f64 / 1024.0,
            percentile(&self.delays, 50.0),
            percentile(&self.delays, 99.0),
            self.delays.iter().max().copied().unwrap_or(0),
            self.missed
        )
    }
}

/// The phases as Markdown, with pathgate's latency over the direct path's.
pub fn markdown(phases: &[Phase], events: usize) -> String {
    let mut out = format!(
        "#### {} concurrent watches (real kube-apiserver; {events} ConfigMaps created {} ms apart after one warm-up, every watch gets every event)\n\n",
        phases.first().map_or(0, |p| p.watches),
        CREATE_INTERVAL.as_millis()
    );
    out.push_str("| watches | count | all open after | pathgate RSS (before → all open) | apiserver RSS (all open) | p50 create sent → event | p99 | max | events missed |\n");
    out.push_str("|---|---:|---:|---|---:|---:|---:|---:|---:|\n");
    for phase in phases {
        out.push_str(&phase.row());
        out.push('\n');
    }
    if let [direct, proxied] = phases {
        let ratio = |p: f64| {
            let (d, g) = (
                percentile(&direct.delays, p),
                percentile(&proxied.delays, p),
            );
            if d > 0 {
                format!("{:.2} ({:+} µs)", g as f64 / d as f64, g - d)
            } else {
                format!("{:+} µs", g - d)
            }
        };
        out.push_str(&format!(
            "\nthrough pathgate / direct: p50 {}, p99 {}\n",
            ratio(50.0),
            ratio(99.0)
        ));
    }
    out
}
