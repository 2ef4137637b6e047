//! The execution ledger: one versioned entry per request, queued without blocking the
//! request path, spooled durably, and streamed to sinks (stdout, webhook, OTLP).
//!
//! Owns: the `pathgate.ledger/v1` entry schema ([`Entry`]), redaction ([`redact_body`],
//! [`safe_query`], [`token_fingerprint`]), the bounded queue, the spool (JSONL segments in
//! `ledger.dir`, the source of truth and the JSONL ledger itself), the sinks, their
//! cursors and retries, and the ledger's counters. Request metrics are derived here too,
//! from the same entry ([`observe`]), so the proxy calls one
//! thing per request.
//!
//! Does not own: deciding what goes into an entry (the proxy fills it), or refusing a
//! request when the ledger fails (the proxy does, from [`Ledger::record_intent`]'s result).
//!
//! # Pipeline
//!
//! ```text
//! proxy --record()---------> bounded queue --> writer thread --> ledger-<seq>.jsonl
//!       --record_durable()-/   (try_send,        (one write per batch;   |
//!       --record_intent()-/     drop counted)     fsync per group)       v
//!                                                         sink thread: one task per sink
//!                                                         reads from its cursor: stdout,
//!                                                         webhook, OTLP
//! ```
//!
//! Thread names fit Linux's 15 characters, so `top -H` and `/proc/PID/task/*/comm` tell
//! them apart: `pg-ledger-write` (the writer), `pg-ledger-sinks` (the sinks).
//!
//! The sinks run on a thread of their own (a current-thread runtime), not on the proxy's
//! runtime: encrypting and sending a batch of hundreds of entries takes long enough to
//! delay every request the proxy's event loop is serving, and with the default single
//! worker it would.
//!
//! # What the proxy calls, and when
//!
//! 1. At start: `let (ledger, tasks) = Ledger::start(settings, metrics.clone())?;` inside
//!    the runtime; pass `ledger` (cheap clone) to the connection tasks.
//! 2. Per request, build one [`Entry`] with [`Entry::new`] as soon as the request head is
//!    classified ([`Request::from_info`] applies [`safe_query`]); fill `analysis`
//!    ([`AnalysisRecord::from`]), `decision` ([`DecisionRecord::new`]), the
//!    `dry_run` / `grace_period` / `limit` pairs and, with capture on, `body`
//!    ([`Ledger::capture_body`]) as they become known.
//! 3. Mutations under `on_failure: fail-closed-mutations` ([`Ledger::on_failure`]): before
//!    forwarding, `ledger.record_intent(entry.clone()).await`; on `Err`, answer 503 with a
//!    `Status` and record the outcome with `error.kind = ledger`.
//! 4. On completion (for watches: stream end), fill `response` ([`status_reason`]),
//!    `object` ([`ObjectRecord::from_object`]), byte counts, `watch_events`, `error`, call
//!    [`Entry::finish`], then:
//!    - mutations: `ledger.record_durable(entry).await` **before** the response is
//!      released to the client (for a denial pathgate answers itself: same rule);
//!    - everything else: `ledger.record(entry)` (never blocks).
//!
//!    Both also update the request metrics ([`observe`]): the proxy does not
//!    count requests itself. It holds [`Metrics::open_watch`] / [`Metrics::open_upgrade`]
//!    guards while streams are open.
//! 5. At shutdown, after the listener drained: `tasks.shutdown(grace).await`.
//!
//! One pathgate per `ledger.dir`: two writers on one spool would interleave segments.
//!
//! # Durability
//!
//! - [`Ledger::record_durable`] (mutations) resolves after the entry is fsynced. Waiters
//!   share fsyncs: the writer takes every entry queued while the previous fsync ran and
//!   covers them with one (group commit), without an artificial delay.
//! - [`Ledger::record`] (reads) returns at once and wakes no thread: the entry joins an
//!   in-memory list the writer takes every 10 ms (or with the next durable entry), and
//!   reaches the disk within [`LedgerSettings::flush_interval`] after that. A `kill -9` loses
//!   at most the last 10 ms of reads; a power failure at most one more flush interval.

mod config;
mod entry;
pub mod examples;
mod line;
mod observe;
mod redact;
mod sink;
mod spool;

#[cfg(test)]
pub(crate) mod schema_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::Metrics;

pub use entry::status_reason;
pub use entry::{
    Action, AnalysisRecord, AuthMode, BudgetRecord, CapturedBody, Client, DecisionRecord, Entry,
    ErrorKind, ErrorRecord, FindingRecord, Mode, ObjectRecord, Origin, OwnerRecord, Phase, Request,
    ResponseEnd, ResponseRecord, RewriteRecord, SentForwarded, Side, TargetRecord, SCHEMA,
};
pub use line::{write_line, LineError};
pub use observe::observe;
pub use redact::{
    capture_body, redact_body, safe_query, token_fingerprint, MAX_QUERY_CHARS, REDACTED,
};
pub use sink::{OtlpSettings, RetrySettings, WebhookSettings, SCHEMA_HEADER};
pub use spool::{list_segments, segment_name, Cursor};

/// What the proxy does with a mutation when the ledger cannot record its intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Forward anyway; the failure is counted and logged.
    #[default]
    FailOpen,
    /// Refuse the mutation with a 503 `Status` before it reaches the apiserver.
    FailClosedMutations,
}

/// Ledger settings (config keys `ledger.*`).
#[derive(Debug, Clone)]
pub struct LedgerSettings {
    /// `ledger.dir`: the spool directory (created if missing).
    pub dir: PathBuf,
    /// Entries the in-memory queue holds before [`Ledger::record`] drops and counts.
    pub queue_capacity: usize,
    /// Longest time a non-durable entry stays written but not fsynced.
    pub flush_interval: Duration,
    /// A segment is closed and a new one started past this size.
    pub segment_max_bytes: u64,
    /// The oldest segments are deleted past this total (undelivered entries counted as
    /// dropped for the sinks that had not read them).
    pub spool_max_bytes: u64,
    /// How long [`Ledger::record_durable`] waits (queue space + fsync) before failing.
    pub durable_timeout: Duration,
    /// `ledger.on_failure`.
    pub on_failure: OnFailure,
    /// Capture redacted mutation bodies up to this many bytes; `None` (default) captures
    /// nothing.
    pub body_capture_max_bytes: Option<usize>,
    /// Also print every entry on stdout (a sink with its own cursor).
    pub stdout: bool,
    /// Webhook sink.
    pub webhook: Option<WebhookSettings>,
    /// OTLP sink.
    pub otlp: Option<OtlpSettings>,
}

impl LedgerSettings {
    /// Defaults: queue 8192 entries, flush interval 50 ms, segments of 64 MiB, spool of
    /// 1 GiB, durable timeout 5 s, fail-open, no body capture, no sinks.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LedgerSettings {
            dir: dir.into(),
            queue_capacity: 8192,
            flush_interval: Duration::from_millis(50),
            segment_max_bytes: 64 << 20,
            spool_max_bytes: 1 << 30,
            durable_timeout: Duration::from_secs(5),
            on_failure: OnFailure::FailOpen,
            body_capture_max_bytes: None,
            stdout: false,
            webhook: None,
            otlp: None,
        }
    }
}

/// Why the ledger could not record an entry durably.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The spool directory cannot be opened or created.
    #[error("ledger spool {dir} cannot be opened: {source}; check that the directory exists and is writable")]
    Open {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing or fsyncing the spool failed (disk full, I/O error).
    #[error("ledger spool write failed: {0}; is the disk full?")]
    Io(String),
    /// The queue stayed full, or the fsync did not complete, within `durable_timeout`.
    #[error(
        "ledger did not make the entry durable within {0:?}; the disk or the writer is too slow"
    )]
    Timeout(Duration),
    /// The ledger was shut down.
    #[error("ledger is shut down")]
    Closed,
    /// A sink's settings are invalid.
    #[error("ledger sink {sink}: {reason}")]
    Sink { sink: &'static str, reason: String },
}

/// A request for the writer thread.
enum Command {
    /// A durable entry, already written as its JSON line; `ack` is answered after the
    /// fsync.
    Entry {
        line: Vec<u8>,
        ack: oneshot::Sender<Result<(), LedgerError>>,
    },
    /// Write and fsync everything queued before, then stop.
    Shutdown(oneshot::Sender<()>),
}

/// The ledger handle: cheap to clone, passed to the proxy.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    queue: mpsc::Sender<Command>,
    /// Non-durable entries as JSON lines, taken by the writer on its next wake-up (at
    /// least every [`READ_TICK`]): recording a read wakes no thread.
    reads: Arc<std::sync::Mutex<Lines>>,
    /// Bound of `reads` in entries (`ledger.queue_capacity`).
    reads_capacity: usize,
    metrics: Metrics,
    on_failure: OnFailure,
    body_capture_max_bytes: Option<usize>,
    durable_timeout: Duration,
    /// Entries dropped since start, whatever the cause (shared with the writer thread):
    /// stamped on later entries as `ledger_dropped`, and used to log the first drop and
    /// then every 1000th without flooding.
    dropped: Arc<AtomicU64>,
}

/// What the request path and the writer thread share.
struct Shared {
    /// The reads buffer ([`Inner::reads`]).
    reads: Arc<std::sync::Mutex<Lines>>,
    /// The drop count ([`Inner::dropped`]): the writer adds the entries a failed spool
    /// write lost.
    dropped: Arc<AtomicU64>,
}

/// Entries written as JSON lines, waiting for the writer. The request path writes into
/// it; the writer swaps it with an empty one it keeps, so the two buffers (and their
/// allocations) go back and forth between the threads instead of one allocation per entry
/// being freed on another thread.
#[derive(Default)]
struct Lines {
    bytes: Vec<u8>,
    entries: u64,
}

impl Lines {
    fn clear(&mut self) {
        self.bytes.clear();
        self.entries = 0;
    }
}

/// The ledger's background work: the writer thread and the sink thread.
pub struct LedgerTasks {
    queue: mpsc::Sender<Command>,
    writer: std::thread::JoinHandle<()>,
    sinks: Option<std::thread::JoinHandle<()>>,
    stop_sinks: watch::Sender<Option<Instant>>,
}

impl Ledger {
    /// Opens the spool, starts the writer thread and the sink thread.
    pub fn start(
        settings: LedgerSettings,
        metrics: Metrics,
    ) -> Result<(Ledger, LedgerTasks), LedgerError> {
        let open_error = |source| LedgerError::Open {
            dir: settings.dir.clone(),
            source,
        };
        let spool = spool::SpoolWriter::open(
            &settings.dir,
            settings.segment_max_bytes,
            settings.spool_max_bytes,
        )
        .map_err(open_error)?;
        metrics.ledger_spool_bytes.set(spool.total_bytes() as i64);

        let sinks = sink::build(&settings)?;
        let sink_names: Vec<&'static str> = sinks.iter().map(sink::Sink::name).collect();
        let (queue, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let reads = Arc::new(std::sync::Mutex::new(Lines::default()));
        let writer_reads = reads.clone();
        let (written, written_watch) = watch::channel(spool.position());
        let writer_metrics = metrics.clone();
        let dropped = Arc::new(AtomicU64::new(0));
        let writer_dropped = dropped.clone();
        let flush_interval = settings.flush_interval;
        let writer = std::thread::Builder::new()
            .name("pg-ledger-write".into())
            .spawn(move || {
                writer_thread(
                    spool,
                    receiver,
                    Shared {
                        reads: writer_reads,
                        dropped: writer_dropped,
                    },
                    writer_metrics,
                    flush_interval,
                    written,
                    sink_names,
                )
            })
            .map_err(open_error)?;

        let (stop_sinks, stop_watch) = watch::channel(None);
        let sink_thread = if sinks.is_empty() {
            None
        } else {
            let dir = settings.dir.clone();
            let sink_metrics = metrics.clone();
            let thread = std::thread::Builder::new()
                .name("pg-ledger-sinks".into())
                .spawn(move || sink_thread(sinks, dir, sink_metrics, written_watch, stop_watch))
                .map_err(open_error)?;
            Some(thread)
        };

        let ledger = Ledger {
            inner: Arc::new(Inner {
                queue: queue.clone(),
                reads,
                reads_capacity: settings.queue_capacity.max(1),
                metrics,
                on_failure: settings.on_failure,
                body_capture_max_bytes: settings.body_capture_max_bytes,
                durable_timeout: settings.durable_timeout,
                dropped,
            }),
        };
        let tasks = LedgerTasks {
            queue,
            writer,
            sinks: sink_thread,
            stop_sinks,
        };
        Ok((ledger, tasks))
    }

    /// Records an entry without waiting (reads, watches, anything not a mutation). Never
    /// blocks: when the queue is full the entry is dropped, counted
    /// (`pathgate_ledger_entries_total{sink="spool",outcome="dropped"}`) and logged.
    pub fn record(&self, mut entry: Entry) {
        observe(&self.inner.metrics, &entry);
        entry.ledger_dropped = self.dropped_so_far();
        let written = {
            let mut reads = self.inner.reads.lock().expect("ledger reads lock");
            if reads.entries < self.inner.reads_capacity as u64 && !self.inner.queue.is_closed() {
                // Written here, on the request's thread, so that the entry's strings are
                // freed where they were allocated; counted as queued by the writer when it
                // takes them (one counter update per tick instead of one per request).
                let written = write_line(&mut reads.bytes, &entry);
                reads.entries += u64::from(written.is_ok());
                Some(written)
            } else {
                None
            }
        };
        match written {
            Some(Ok(())) => return,
            Some(Err(error)) => {
                tracing::error!(%error, trace_id = %entry.trace_id, "ledger entry cannot be written; dropped");
                self.inner.metrics.ledger_count("spool", "dropped", 1);
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            None => {}
        }
        self.inner.metrics.ledger_count("spool", "dropped", 1);
        let dropped = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped == 1 || dropped % 1000 == 0 {
            tracing::warn!(
                trace_id = %entry.trace_id,
                dropped_total = dropped,
                "ledger queue full or closed: entry dropped"
            );
        }
    }

    /// Records an entry and resolves once it is fsynced in the spool (mutations: call
    /// before the response is returned to the client). Many concurrent callers share one
    /// fsync. Fails after [`LedgerSettings::durable_timeout`] or on an I/O error.
    pub async fn record_durable(&self, entry: Entry) -> Result<(), LedgerError> {
        if entry.phase == Phase::Outcome {
            observe(&self.inner.metrics, &entry);
        }
        self.send_durable(entry).await
    }

    /// Records the intent of a mutation durably before it is forwarded (the entry's phase
    /// is set to `intent`). With [`OnFailure::FailClosedMutations`], the proxy answers an
    /// error here with a 503 `Status` and does not forward.
    pub async fn record_intent(&self, mut entry: Entry) -> Result<(), LedgerError> {
        entry.phase = Phase::Intent;
        self.send_durable(entry).await
    }

    /// The `ledger_dropped` stamp: `None` while nothing was dropped.
    fn dropped_so_far(&self) -> Option<u64> {
        Some(self.inner.dropped.load(Ordering::Relaxed)).filter(|n| *n > 0)
    }

    async fn send_durable(&self, mut entry: Entry) -> Result<(), LedgerError> {
        entry.ledger_dropped = self.dropped_so_far();
        let timeout = self.inner.durable_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut line = Vec::with_capacity(1024);
        if let Err(error) = write_line(&mut line, &entry) {
            self.inner.metrics.ledger_count("spool", "dropped", 1);
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(LedgerError::Io(format!(
                "entry {} cannot be written: {error}",
                entry.trace_id
            )));
        }
        drop(entry);
        let (ack, acked) = oneshot::channel();
        let command = Command::Entry { line, ack };
        match tokio::time::timeout_at(deadline, self.inner.queue.send(command)).await {
            Ok(Ok(())) => self.queued(),
            Ok(Err(_)) => return Err(LedgerError::Closed),
            Err(_) => {
                self.inner.metrics.ledger_count("spool", "dropped", 1);
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(LedgerError::Timeout(timeout));
            }
        }
        match tokio::time::timeout_at(deadline, acked).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LedgerError::Closed),
            // The entry may still be written later; the caller must treat it as not durable.
            Err(_) => Err(LedgerError::Timeout(timeout)),
        }
    }

    fn queued(&self) {
        let queue = &self.inner.queue;
        self.inner.metrics.ledger_count("spool", "queued", 1);
        self.inner
            .metrics
            .ledger_queue_depth
            .set((queue.max_capacity() - queue.capacity()) as i64);
    }

    /// `ledger.on_failure`, for the proxy to decide whether a failed intent refuses the
    /// mutation.
    pub fn on_failure(&self) -> OnFailure {
        self.inner.on_failure
    }

    /// Captures a redacted request body for [`Entry::body`] when body capture is enabled
    /// (`None` otherwise). See [`capture_body`].
    pub fn capture_body(
        &self,
        resource: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Option<CapturedBody> {
        self.inner
            .body_capture_max_bytes
            .map(|max_bytes| capture_body(resource, content_type, body, max_bytes))
    }
}

impl LedgerTasks {
    /// Stops the ledger: every entry queued so far is written and fsynced, then the sinks
    /// keep delivering until they are caught up or `grace` has passed (what they did not
    /// deliver stays in the spool for the next start). Entries recorded after this call
    /// are dropped and counted.
    pub async fn shutdown(self, grace: Duration) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Command::Shutdown(done)).await.is_ok() {
            let _ = finished.await;
        }
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        let _ = self.stop_sinks.send(Some(Instant::now() + grace));
        if let Some(sinks) = self.sinks {
            let _ = tokio::task::spawn_blocking(move || sinks.join()).await;
        }
    }
}

/// The current-thread runtime of one of the ledger's threads (timers always, sockets when
/// `io`); `None`, logged, when it cannot be built: that thread's work stops.
fn thread_runtime(thread: &'static str, io: bool) -> Option<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time();
    if io {
        builder.enable_io();
    }
    match builder.build() {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            tracing::error!(%error, thread, "a ledger thread cannot start its runtime; its work stops");
            None
        }
    }
}

/// The sink thread: one task per sink on a current-thread runtime, until `stop` carries a
/// deadline and every sink is caught up or past it.
fn sink_thread(
    sinks: Vec<sink::Sink>,
    dir: PathBuf,
    metrics: Metrics,
    written: watch::Receiver<spool::Cursor>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let Some(runtime) = thread_runtime("sinks", true) else {
        return;
    };
    runtime.block_on(async move {
        let tasks: Vec<_> = sinks
            .into_iter()
            .map(|sink| {
                tokio::spawn(sink::run(
                    sink,
                    dir.clone(),
                    metrics.clone(),
                    written.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        let deadline = loop {
            if let Some(deadline) = *stop.borrow_and_update() {
                break Some(deadline);
            }
            if stop.changed().await.is_err() {
                break None;
            }
        };
        // A sink in the middle of a slow request may overrun the grace by its own timeout;
        // give it one second more, then stop it (its batch is sent again next start). Without
        // a shutdown (the ledger was dropped), stop at once.
        let hard_deadline = tokio::time::Instant::from_std(match deadline {
            Some(deadline) => deadline + Duration::from_secs(1),
            None => Instant::now(),
        });
        for mut task in tasks {
            if tokio::time::timeout_at(hard_deadline, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    });
}

/// The writer: owns the spool file, batches whatever is queued, writes it with one
/// `write`, and fsyncs when a durable waiter needs it or the flush interval has passed.
/// A dedicated thread, so blocking file I/O never stalls a tokio worker; it runs a small
/// current-thread runtime only to wait on the queue with a timer.
fn writer_thread(
    mut spool: spool::SpoolWriter,
    mut queue: mpsc::Receiver<Command>,
    shared: Shared,
    metrics: Metrics,
    flush_interval: Duration,
    written: watch::Sender<spool::Cursor>,
    sink_names: Vec<&'static str>,
) {
    let Shared { reads, dropped } = shared;
    let Some(runtime) = thread_runtime("writer", false) else {
        return;
    };
    /// Upper bound of one batch, so one write stays reasonably sized.
    const MAX_BATCH: usize = 4096;

    runtime.block_on(async move {
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        let mut commands = Vec::with_capacity(MAX_BATCH);
        let mut buffer = Vec::with_capacity(256 * 1024);
        // Swapped with the request path's buffer each time round: see [`Lines`].
        let mut pending_reads = Lines::default();
        loop {
            commands.clear();
            // Durable entries wake the writer at once; reads are picked up at the next
            // tick; an unsynced tail is fsynced when the flush interval is due.
            let mut wake = tokio::time::Instant::now() + READ_TICK;
            if unsynced {
                wake = wake.min(tokio::time::Instant::from_std(last_sync + flush_interval));
            }
            let mut closed = false;
            match tokio::time::timeout_at(wake, queue.recv()).await {
                Ok(Some(command)) => commands.push(command),
                Ok(None) => closed = true,
                Err(_) => {}
            }
            while !closed && commands.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(command) => commands.push(command),
                    Err(_) => break,
                }
            }
            pending_reads.clear();
            std::mem::swap(
                &mut pending_reads,
                &mut *reads.lock().expect("ledger reads lock"),
            );
            if commands.is_empty() && pending_reads.entries == 0 {
                if unsynced && (closed || last_sync.elapsed() >= flush_interval) {
                    // A failure is logged by `commit`; no waiter depends on this one.
                    let _ = commit(&mut spool, &metrics, 0, &mut last_sync);
                    unsynced = false;
                }
                if closed {
                    return;
                }
                continue;
            }
            metrics
                .ledger_queue_depth
                .set((queue.max_capacity() - queue.capacity()) as i64);

            buffer.clear();
            let mut waiters = Vec::new();
            let mut shutdown = None;
            let mut entries = pending_reads.entries;
            if entries > 0 {
                metrics.ledger_count("spool", "queued", entries);
            }
            for command in commands.drain(..) {
                match command {
                    Command::Entry { line, ack } => {
                        buffer.extend_from_slice(&line);
                        entries += 1;
                        waiters.push(ack);
                    }
                    Command::Shutdown(done) => shutdown = Some(done),
                }
            }

            let mut result = Ok(());
            if entries > 0 {
                result = spool
                    .append_all(&[&pending_reads.bytes, &buffer])
                    .map_err(|error| error.to_string());
                match &result {
                    Ok(()) => {
                        unsynced = true;
                        metrics.ledger_count("spool", "written", entries);
                    }
                    Err(error) => {
                        tracing::error!(%error, entries, "ledger spool write failed; entries dropped");
                        metrics.ledger_count("spool", "dropped", entries);
                        dropped.fetch_add(entries, Ordering::Relaxed);
                    }
                }
            }
            let due = last_sync.elapsed() >= flush_interval;
            if result.is_ok() && unsynced && (!waiters.is_empty() || shutdown.is_some() || due) {
                result = commit(&mut spool, &metrics, waiters.len() as u64, &mut last_sync);
                unsynced = result.is_err();
            }
            for waiter in waiters {
                let _ = waiter.send(result.clone().map_err(LedgerError::Io));
            }
            if result.is_ok() && entries > 0 {
                match spool.enforce_retention() {
                    Ok(losses) => {
                        // Cursors of sinks no longer configured are ignored: nobody
                        // waits for those entries.
                        for loss in losses {
                            let Some(sink) = sink_names.iter().find(|name| **name == loss.sink)
                            else {
                                continue;
                            };
                            tracing::warn!(sink, entries = loss.entries,
                                "ledger spool full: oldest segment deleted before the sink read it");
                            metrics.ledger_count(sink, "dropped", loss.entries);
                        }
                    }
                    Err(error) => tracing::error!(%error, "ledger spool retention failed"),
                }
                metrics.ledger_spool_bytes.set(spool.total_bytes() as i64);
                let _ = written.send(spool.position());
            }
            if let Some(done) = shutdown {
                let _ = done.send(());
                return;
            }
            if closed {
                if unsynced {
                    let _ = commit(&mut spool, &metrics, 0, &mut last_sync);
                }
                return;
            }
        }
    });
}

/// How long a recorded read may wait in memory before the writer takes it (it reaches the
/// disk by the next flush interval after that).
const READ_TICK: Duration = Duration::from_millis(10);

/// One fsync covering everything appended so far; `waiters` durable entries ride on it.
fn commit(
    spool: &mut spool::SpoolWriter,
    metrics: &Metrics,
    waiters: u64,
    last_sync: &mut Instant,
) -> Result<(), String> {
    let started = Instant::now();
    let result = spool.sync().map_err(|error| {
        tracing::error!(%error, "ledger spool fsync failed");
        error.to_string()
    });
    *last_sync = Instant::now();
    metrics
        .ledger_commit_duration
        .observe(started.elapsed().as_secs_f64());
    if waiters > 0 {
        metrics.ledger_commit_entries.observe(waiters as f64);
    }
    result
}
