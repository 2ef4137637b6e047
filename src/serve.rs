//! `pathgate serve`: wires configuration, upstream, TLS, metrics, gate and recorder into a
//! running proxy and admin listener. Tests start it in-process on `127.0.0.1:0`. Also
//! fits the connection limits to the process's open files limit (raised to its hard limit
//! first).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::proxy::{AuthMode, Gate, LedgerRecorder, LogRecorder, Proxy, ProxySettings, Recorder};
use crate::upstream::{Upstream, UpstreamSource};

/// Everything `serve` needs, after flags and the config file are merged.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub upstream: UpstreamSource,
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// CA whose client certificates are verified (required for impersonate mode).
    pub client_ca: Option<PathBuf>,
    /// Bearer tokens (one per line) accepted from clients in sidecar mode.
    pub client_token_file: Option<PathBuf>,
    pub proxy: ProxySettings,
    pub drain_timeout: Duration,
    pub connect_timeout: Duration,
    /// The ledger; `None` records to the log only.
    pub ledger: Option<crate::ledger::LedgerSettings>,
}

/// Why pathgate refused to start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsafe(String),
    #[error("ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("pre-image store: {0}")]
    Images(#[from] crate::ledger::images::ImageError),
    #[error("{path}: {source}")]
    ClientTokens {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A running pathgate.
pub struct Running {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    /// Where the admin endpoints listen.
    pub admin_addr: Option<SocketAddr>,
    pub metrics: Metrics,
    /// The apiserver and pathgate's connections to it.
    pub upstream: Arc<Upstream>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts draining and waits until the proxy has stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// A token that starts the drain when cancelled (e.g. on SIGTERM).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the proxy has stopped (after the shutdown token was cancelled).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Descriptors kept for everything but client connections and their upstream
/// connections: listeners, the ledger's segments, the config watch, logs.
const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the soft limit of open files to the hard limit (often 1024 against 524288 or
/// more): the default soft limit is what let one client exhaust pathgate with idle
/// connections. Returns the soft limit now in force, `None` when it cannot be read.
pub fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "raised the open files limit");
            Some(hard)
        }
        Err(error) => {
            tracing::warn!(%error, soft, hard, "cannot raise the open files limit");
            Some(soft)
        }
    }
}

/// The most client connections `descriptors` open files can carry: each may hold an
/// upstream connection of its own (a watch, a `logs -f`, an exec stream), so two each.
pub fn connections_within(descriptors: u64) -> usize {
    (descriptors.saturating_sub(RESERVED_DESCRIPTORS) / 2).max(1) as usize
}

/// Lowers the connection limits to what the descriptor limit can carry, so the limit is
/// reached (and refused, counted) before `accept` fails with "too many open files".
fn fit_to_descriptors(settings: &mut crate::config::ConnectionSettings) {
    let Some(descriptors) = raise_open_files_limit() else {
        return;
    };
    let most = connections_within(descriptors);
    if settings.max_connections > most {
        tracing::warn!(
            configured = settings.max_connections,
            open_files_limit = descriptors,
            effective = most,
            "server.max_connections is above what the open files limit allows; using the lower value"
        );
        settings.max_connections = most;
    }
    settings.max_connections_per_peer = settings.max_connections_per_peer.min(most);
}

/// Refuses configurations that would expose pathgate's credentials: the check
/// configuration validation runs too ([`crate::config::client_auth_problem`]), here for
/// options built without a file.
pub fn validate(options: &ServeOptions) -> Result<(), ServeError> {
    match crate::config::client_auth_problem(
        options.proxy.auth,
        options.listen,
        options.client_ca.is_some(),
        options.client_token_file.is_some(),
    ) {
        Some((_, reason)) => Err(ServeError::Unsafe(reason)),
        None => Ok(()),
    }
}

/// The tokens of a `--client-token-file`: one a line, surrounding whitespace (a `\r`
/// from an editor too) trimmed; empty lines and `#` comments skipped.
pub fn client_tokens(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Builds the gate once the upstream is known (the policy gate fetches facts from it).
pub type GateFactory = Box<dyn FnOnce(Arc<Upstream>, AuthMode) -> Arc<dyn Gate> + Send>;

/// The gate of a policy: classify, decide, rewrite.
pub fn policy_gate(policy: crate::config::PolicyHandle) -> GateFactory {
    Box::new(move |upstream, auth| {
        Arc::new(crate::proxy::PolicyGate::new(policy, upstream, auth)) as Arc<dyn Gate>
    })
}

/// A gate that allows everything (forwarding tests).
pub fn allow_all() -> GateFactory {
    Box::new(|_, _| Arc::new(crate::proxy::AllowAll) as Arc<dyn Gate>)
}

/// The pre-image store of the ledger, when the ledger keeps one.
fn pre_images(
    ledger: Option<&crate::ledger::LedgerSettings>,
    metrics: &Metrics,
) -> Result<Option<Arc<crate::ledger::images::ImageStore>>, ServeError> {
    let Some((ledger, images)) = ledger.and_then(|l| Some((l, l.pre_images.as_ref()?))) else {
        return Ok(None);
    };
    let store = images.open(&ledger.dir, metrics.clone())?;
    tracing::info!(dir = %crate::ledger::images::images_dir(&ledger.dir).display(), "pre-images kept");
    Ok(Some(Arc::new(store)))
}

/// Starts the proxy (and the admin listener) and returns once both listen.
pub async fn start(
    options: ServeOptions,
    gate: GateFactory,
    recorder: Option<Arc<dyn Recorder>>,
    metrics: Metrics,
) -> Result<Running, ServeError> {
    validate(&options)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut settings = options.proxy.clone();
    fit_to_descriptors(&mut settings.connections);
    if let Some(path) = &options.client_token_file {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::ClientTokens {
            path: path.clone(),
            source,
        })?;
        settings.client_tokens = client_tokens(&text);
    }
    let upstream = Arc::new(Upstream::load(
        &options.upstream,
        options.connect_timeout,
        settings.auth != AuthMode::Passthrough,
        // One upstream connection per client connection at most, on average: what the
        // descriptor budget of `fit_to_descriptors` assumes.
        settings.connections.max_connections,
    )?);
    if settings.auth != AuthMode::Passthrough && !upstream.has_own_credentials() {
        tracing::warn!(
            "--auth {:?}: the upstream kubeconfig has no token or client certificate; requests go upstream anonymously",
            settings.auth
        );
    }
    // Certificates are verified when presented but not required at the handshake: a
    // client without one gets a 401 `Status` it can read instead of a TLS alert.
    let require_client_cert = false;
    let tls = crate::tls::server_config(
        &options.tls_cert,
        &options.tls_key,
        options.client_ca.as_deref(),
        require_client_cert,
    )?;
    let listener =
        TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: options.listen,
                source,
            })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: options.listen,
        source,
    })?;
    let shutdown = CancellationToken::new();
    let admin_addr = match options.admin_listen {
        Some(admin) => {
            let admin_listener =
                TcpListener::bind(admin)
                    .await
                    .map_err(|source| ServeError::Listen {
                        addr: admin,
                        source,
                    })?;
            let admin_addr = admin_listener.local_addr().ok();
            tokio::spawn(crate::proxy::serve_admin(
                admin_listener,
                upstream.clone(),
                metrics.clone(),
                shutdown.clone().cancelled_owned(),
            ));
            admin_addr
        }
        None => None,
    };
    let (recorder, ledger_tasks): (Arc<dyn Recorder>, _) = match (recorder, &options.ledger) {
        (Some(recorder), _) => (recorder, None),
        (None, Some(settings)) => {
            let (ledger, tasks) = crate::ledger::Ledger::start(settings.clone(), metrics.clone())?;
            tracing::info!(dir = %settings.dir.display(), "ledger spooling");
            (
                Arc::new(LedgerRecorder { ledger }) as Arc<dyn Recorder>,
                Some(tasks),
            )
        }
        (None, None) => (
            {
                tracing::warn!("no ledger configured (--ledger-dir or ledger.dir): requests are counted in the metrics and logged at debug level only");
                Arc::new(LogRecorder {
                    metrics: metrics.clone(),
                }) as Arc<dyn Recorder>
            },
            None,
        ),
    };
    let images = pre_images(options.ledger.as_ref(), &metrics)?;
    let gate = gate(upstream.clone(), settings.auth);
    let proxy = Proxy {
        settings: Arc::new(settings),
        upstream,
        metrics: metrics.clone(),
        gate,
        recorder,
        draining: CancellationToken::new(),
        in_flight: tokio_util::task::TaskTracker::new(),
        images,
        rehearsed: Default::default(),
    };
    tracing::info!(%addr, upstream = %proxy.upstream.description, auth = ?proxy.settings.auth, "pathgate listening");
    let drain_timeout = options.drain_timeout;
    let upstream = Arc::clone(&proxy.upstream);
    let serve = crate::proxy::serve(
        listener,
        Arc::new(tls),
        proxy,
        shutdown.clone().cancelled_owned(),
        drain_timeout,
    );
    let task = tokio::spawn(async move {
        serve.await;
        if let Some(tasks) = ledger_tasks {
            // Everything recorded is written and fsynced; sinks get the drain budget.
            tasks.shutdown(drain_timeout).await;
        }
    });
    Ok(Running {
        addr,
        admin_addr,
        metrics,
        upstream,
        shutdown,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_token_files_are_trimmed_and_skip_blank_lines_and_comments() {
        let text = "# agents of team a\n  tok-1  \n\n\ttok-2\r\n   # indented comment\n#tok-3\n";
        assert_eq!(client_tokens(text), ["tok-1", "tok-2"]);
        assert!(client_tokens("\n  \n# only comments\n").is_empty());
        // A token with inner spaces is kept whole (the header value would carry them).
        assert_eq!(client_tokens("a b\n"), ["a b"]);
    }

    #[test]
    fn each_connection_is_budgeted_two_descriptors_after_the_reserve() {
        assert_eq!(connections_within(1024), 480);
        assert_eq!(connections_within(1_048_576), 524_256);
        // A limit below the reserve still admits one connection rather than none.
        assert_eq!(connections_within(10), 1);
    }
}
