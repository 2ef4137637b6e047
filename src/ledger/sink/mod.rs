//! Sinks: where spooled entries go after the spool (stdout, webhook, OTLP).
//!
//! Every sink reads the spool from its own persisted cursor, one batch at a time, and
//! moves the cursor only after the batch was delivered. A sink that is down is retried
//! with capped exponential backoff; entries stay in the spool meanwhile, so a sink that
//! comes back receives everything it missed (at-least-once: receivers dedupe on
//! `(trace_id, phase)`). A batch the receiver refuses for good (a 4xx other than 408/429)
//! is dropped and counted, or it would block the sink forever.

mod http_client;
mod otlp;
mod webhook;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::spool::{Batch, Cursor, SpoolReader};
use super::{LedgerError, LedgerSettings};
use crate::metrics::Metrics;

pub use otlp::OtlpSettings;
pub use webhook::{WebhookSettings, SCHEMA_HEADER};

/// Capped exponential backoff between delivery attempts of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// Wait after the first failure.
    pub initial: Duration,
    /// The wait doubles after each failure up to this.
    pub max: Duration,
}

impl Default for RetrySettings {
    /// 200 ms doubling up to 30 s.
    fn default() -> Self {
        RetrySettings {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

/// Why a batch was not delivered.
#[derive(Debug)]
pub(crate) enum DeliveryError {
    /// Worth retrying (connection refused, timeout, 5xx, 408, 429).
    Retryable(String),
    /// The receiver refused the batch for good.
    Permanent(String),
}

/// One configured sink.
pub(crate) enum Sink {
    Stdout,
    Webhook(Box<webhook::Webhook>),
    Otlp(Box<otlp::Otlp>),
}

impl Sink {
    /// The sink's name: its cursor file and its `sink` metric label.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Sink::Stdout => "stdout",
            Sink::Webhook(_) => "webhook",
            Sink::Otlp(_) => "otlp",
        }
    }

    fn batch_max_entries(&self) -> usize {
        match self {
            Sink::Stdout => 1024,
            Sink::Webhook(webhook) => webhook.settings.batch_max_entries,
            Sink::Otlp(otlp) => otlp.settings.batch_max_entries,
        }
    }

    fn retry(&self) -> RetrySettings {
        match self {
            Sink::Stdout => RetrySettings::default(),
            Sink::Webhook(webhook) => webhook.settings.retry,
            Sink::Otlp(otlp) => otlp.settings.retry,
        }
    }

    /// Delivers one batch of JSONL lines; returns how many lines were unreadable and
    /// skipped (counted as dropped). It is called again with the same batch after a
    /// retryable failure; the webhook sends the batch's buffer itself, so `batch.bytes`
    /// holds the lines only until the first attempt.
    async fn deliver(&mut self, batch: &mut Batch) -> Result<u64, DeliveryError> {
        match self {
            Sink::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(&batch.bytes)
                    .and_then(|()| stdout.flush())
                    .map_err(|error| DeliveryError::Retryable(error.to_string()))?;
                Ok(0)
            }
            Sink::Webhook(webhook) => webhook.deliver(batch).await.map(|()| 0),
            Sink::Otlp(otlp) => otlp.deliver(batch).await,
        }
    }
}

/// The sinks the settings ask for.
pub(crate) fn build(settings: &LedgerSettings) -> Result<Vec<Sink>, LedgerError> {
    let mut sinks = Vec::new();
    if settings.stdout {
        sinks.push(Sink::Stdout);
    }
    if let Some(webhook) = &settings.webhook {
        sinks.push(Sink::Webhook(Box::new(webhook::Webhook::new(
            webhook.clone(),
        )?)));
    }
    if let Some(otlp) = &settings.otlp {
        sinks.push(Sink::Otlp(Box::new(otlp::Otlp::new(otlp.clone())?)));
    }
    Ok(sinks)
}

/// How often a caught-up sink looks at the spool even without a notification.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// After a batch smaller than the sink's maximum, how long the sink lets entries
/// accumulate before reading again. Under load this turns one POST (and one cursor write)
/// per request into one per batch; it delays delivery by at most this much.
const LINGER: Duration = Duration::from_millis(100);

/// Runs one sink until shutdown: read a batch at the cursor, deliver it (retrying), move
/// the cursor. After `stop` carries a deadline, the sink stops once caught up or at the
/// deadline, whichever comes first.
pub(crate) async fn run(
    mut sink: Sink,
    dir: PathBuf,
    metrics: Metrics,
    mut written: watch::Receiver<Cursor>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let name = sink.name();
    let mut reader = {
        let dir = dir.clone();
        match tokio::task::spawn_blocking(move || SpoolReader::open(&dir, name)).await {
            Ok(Ok(reader)) => reader,
            Ok(Err(error)) => {
                tracing::error!(sink = name, %error, "ledger sink cannot open the spool; sink disabled");
                return;
            }
            Err(error) => {
                tracing::error!(sink = name, %error, "ledger sink failed to start");
                return;
            }
        }
    };
    let batch_max = sink.batch_max_entries().max(1);
    // One buffer for every batch this sink reads.
    let mut batch = Batch::default();
    'run: loop {
        let deadline = *stop.borrow_and_update();
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            break;
        }
        // A sink that keeps up reads the spool's newest pages, which the writer keeps in
        // the page cache: a memory copy, done here (handing it to the blocking pool cost
        // more than the copy). Anything older may wait on the disk: that read goes to the
        // blocking pool, so the other sinks on this thread keep delivering meanwhile.
        let result = if reader.reads_cached_tail(*written.borrow()) {
            reader.read_batch_into(batch_max, &mut batch)
        } else {
            let read = tokio::task::spawn_blocking(move || {
                let result = reader.read_batch_into(batch_max, &mut batch);
                (reader, batch, result)
            })
            .await;
            match read {
                Ok((returned_reader, returned_batch, result)) => {
                    reader = returned_reader;
                    batch = returned_batch;
                    result
                }
                Err(error) => {
                    tracing::error!(sink = name, %error, "ledger sink reader panicked; sink stopped");
                    return;
                }
            }
        };
        match result {
            Ok(()) => {}
            Err(error) => {
                tracing::error!(sink = name, %error, "ledger sink cannot read the spool");
                wait(&mut written, &mut stop, IDLE_POLL).await;
                continue;
            }
        }
        if batch.is_empty() {
            if deadline.is_some() {
                break; // caught up after shutdown was requested
            }
            wait(&mut written, &mut stop, IDLE_POLL).await;
            continue;
        }

        let count = batch.entries as u64;
        let retry = sink.retry();
        let mut delay = retry.initial;
        let mut failures = 0u32;
        loop {
            match sink.deliver(&mut batch).await {
                Ok(unreadable) => {
                    if failures > 0 {
                        tracing::info!(sink = name, failures, "ledger sink recovered");
                    }
                    metrics.ledger_count(name, "written", count - unreadable);
                    metrics.ledger_count(name, "dropped", unreadable);
                    break;
                }
                Err(DeliveryError::Permanent(reason)) => {
                    tracing::error!(sink = name, entries = count, %reason,
                        "ledger sink refused a batch for good; entries dropped for this sink");
                    metrics.ledger_count(name, "dropped", count);
                    break;
                }
                Err(DeliveryError::Retryable(reason)) => {
                    failures += 1;
                    metrics.ledger_count(name, "retried", count);
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(sink = name, failures, retry_in = ?delay, %reason,
                            "ledger sink delivery failed; entries stay in the spool");
                    }
                    let deadline = *stop.borrow_and_update();
                    if deadline.is_some_and(|deadline| Instant::now() + delay >= deadline) {
                        break 'run; // undelivered entries stay in the spool for the next start
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => {}
                    }
                    delay = (delay * 2).min(retry.max);
                }
            }
        }
        let partial = (count as usize) < batch_max;
        if reader.commit(batch.next) {
            let stored = tokio::task::spawn_blocking(move || {
                let result = reader.flush();
                (reader, result)
            })
            .await;
            match stored {
                Ok((returned, result)) => {
                    reader = returned;
                    if let Err(error) = result {
                        // The batch will be sent again after a restart: at-least-once.
                        tracing::error!(sink = name, %error, "ledger sink cannot store its cursor");
                    }
                }
                Err(error) => {
                    tracing::error!(sink = name, %error, "ledger sink cursor task panicked; sink stopped");
                    return;
                }
            }
        }
        if partial && stop.borrow().is_none() {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = stop.changed() => {}
            }
        }
    }
    // The cursor file lags by up to CURSOR_STORE_INTERVAL while the sink runs.
    let flushed = tokio::task::spawn_blocking(move || reader.flush()).await;
    if let Ok(Err(error)) = flushed {
        tracing::error!(sink = name, %error, "ledger sink cannot store its cursor");
    }
}

/// Waits for new spool data, a stop request or `idle`, whichever comes first.
async fn wait(
    written: &mut watch::Receiver<Cursor>,
    stop: &mut watch::Receiver<Option<Instant>>,
    idle: Duration,
) {
    tokio::select! {
        changed = written.changed() => {
            if changed.is_err() {
                // The writer is gone; fall back to polling.
                tokio::time::sleep(idle).await;
            }
        }
        _ = stop.changed() => {}
        _ = tokio::time::sleep(idle) => {}
    }
}
