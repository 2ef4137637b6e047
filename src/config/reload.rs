//! Policy reloads: an atomically swapped `Arc<Policy>`, reloaded on SIGHUP and when the
//! file changes. A file that fails to load or validate leaves the running policy in place
//! and is logged with its file, key and reason.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::{Config, ConfigError, LedgerSettings, ServerSettings};
use crate::policy::{Mode, Policy};

/// The running policy, shared by every request: cloning the handle shares it. Readers take
/// a cheap `Arc<Policy>` snapshot per request, so a reload never changes the policy under a
/// request in flight.
#[derive(Clone, Debug)]
pub struct PolicyHandle {
    current: Arc<RwLock<Arc<Policy>>>,
    /// A `--mode` from the command line wins over the file's `mode:`, across reloads.
    mode_override: Option<Mode>,
    /// Successful swaps so far (for metrics and tests).
    generation: Arc<AtomicU64>,
    /// The `server`/`ledger` sections the process started with: a reload that changes them
    /// says they need a restart.
    restart_only: Arc<Mutex<(ServerSettings, LedgerSettings)>>,
}

impl PolicyHandle {
    /// A handle on the configuration's policy; `mode_override` (from `--mode`) replaces the
    /// file's mode now and on every reload.
    pub fn new(config: &Config, mode_override: Option<Mode>) -> Self {
        let mut policy = config.policy.clone();
        if let Some(mode) = mode_override {
            policy.mode = mode;
        }
        PolicyHandle {
            current: Arc::new(RwLock::new(Arc::new(policy))),
            mode_override,
            generation: Arc::new(AtomicU64::new(0)),
            restart_only: Arc::new(Mutex::new((config.server.clone(), config.ledger.clone()))),
        }
    }

    /// The policy to decide the current request with.
    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many times the policy was swapped.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Swaps in `policy` (the mode override applied); returns the previous one.
    pub fn replace(&self, mut policy: Policy) -> Arc<Policy> {
        if let Some(mode) = self.mode_override {
            policy.mode = mode;
        }
        let new = Arc::new(policy);
        let old = {
            let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *guard, new)
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        old
    }

    /// Loads `path` and swaps its policy in. On any error the running policy stays and the
    /// error (file, key, reason) is returned.
    pub fn reload_from(&self, path: &Path) -> Result<Arc<Policy>, ConfigError> {
        let config = Config::load(path)?;
        {
            let started = self.restart_only.lock().unwrap_or_else(|e| e.into_inner());
            if started.0 != config.server || started.1 != config.ledger {
                tracing::warn!(
                    file = %path.display(),
                    "server or ledger settings changed; they apply after a restart, the policy applies now"
                );
            }
        }
        self.replace(config.policy);
        Ok(self.current())
    }
}

/// The content hash of the file. A configuration file is small, so reading it every
/// second costs nothing and, unlike a modification time, cannot miss an edit made within
/// the filesystem's timestamp granularity or hide behind a ConfigMap symlink swap.
async fn look(path: &Path) -> std::io::Result<[u8; 32]> {
    let bytes = tokio::fs::read(path).await?;
    Ok(Sha256::digest(&bytes).into())
}

fn reload(path: &Path, handle: &PolicyHandle, why: &str) {
    match handle.reload_from(path) {
        Ok(policy) => tracing::info!(
            file = %path.display(),
            trigger = why,
            mode = %policy.mode,
            generation = handle.generation(),
            "policy reloaded"
        ),
        Err(error) => tracing::error!(
            file = %path.display(),
            trigger = why,
            key = error.key().unwrap_or(""),
            %error,
            "policy reload rejected; the previous policy stays in force"
        ),
    }
}

/// Reloads the policy from `path` on SIGHUP and whenever the file's content changes
/// (a content hash checked every second, so a touch without a change does not
/// reload). Runs until the task is dropped or aborted.
pub async fn watch(path: PathBuf, handle: PolicyHandle) {
    let hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reloading on file change only");
            None
        }
    };
    watch_with(path, handle, Duration::from_secs(1), hangup).await
}

/// [`watch`] with an explicit poll interval and SIGHUP stream (tests pass their own).
/// The content present when the watcher starts is taken as already loaded.
pub async fn watch_with(
    path: PathBuf,
    handle: PolicyHandle,
    poll: Duration,
    mut hangup: Option<Signal>,
) {
    let mut seen = look(&path).await.ok();
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut missing_logged = false;
    loop {
        let hup = async {
            match hangup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticker.tick() => {
                match look(&path).await {
                    Ok(now) => {
                        missing_logged = false;
                        let changed = seen != Some(now);
                        seen = Some(now);
                        if changed {
                            reload(&path, &handle, "file change");
                        }
                    }
                    Err(error) if !missing_logged => {
                        missing_logged = true;
                        tracing::warn!(file = %path.display(), %error, "cannot read the configuration file; keeping the current policy");
                    }
                    Err(_) => {}
                }
            }
            received = hup => {
                if received.is_none() {
                    // The signal stream ended; keep polling the file.
                    hangup = None;
                    continue;
                }
                seen = look(&path).await.ok();
                reload(&path, &handle, "SIGHUP");
            }
        }
    }
}
