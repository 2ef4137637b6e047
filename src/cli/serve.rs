//! `pathgate serve`: its flags ([`ServeArgs`], flattenable into other commands that start a
//! gateway), the merge of those flags with the configuration file into
//! [`crate::serve::ServeOptions`] and the [`PolicyHandle`] ([`ServeArgs::gateway`]), and the
//! process around it: runtime, config watch, signals, drain ([`run`]).
//!
//! Does not own: what a key means or accepts ([`crate::config`]) nor starting the
//! listeners ([`crate::serve::start`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::{Config, ConfigError, ConnectionKeys, ConnectionSettings, PolicyHandle};
use crate::metrics::Metrics;
use crate::proxy::{AuthMode, ProxySettings};
use crate::serve::{Running, ServeError, ServeOptions};
use crate::upstream::UpstreamSource;

/// The flags of `pathgate serve`: upstream, listener, client auth, limits, ledger.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Configuration file (YAML): policy, `server:` and `ledger:` sections. Flags override
    /// the file; the policy reloads on SIGHUP and when the file changes.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// observe (never blocks), enforce, or rehearse (every mutation forwarded as a dry run).
    /// Overrides the file's `mode:`, also across reloads.
    #[arg(long)]
    pub mode: Option<crate::policy::Mode>,
    /// Kubeconfig of the apiserver pathgate forwards to (its current context unless --context).
    #[arg(long, conflicts_with = "in_cluster")]
    pub upstream_kubeconfig: Option<PathBuf>,
    /// Context of the upstream kubeconfig to use.
    #[arg(long)]
    pub context: Option<String>,
    /// Use the pod's service account and KUBERNETES_SERVICE_HOST/PORT.
    #[arg(long)]
    pub in_cluster: bool,
    /// Address the proxy listens on (TLS) [default: 127.0.0.1:8443].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Serving certificate (PEM) [default: certs/server.crt].
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM) [default: certs/server.key].
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// CA whose client certificates pathgate verifies (required by --auth impersonate).
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// File of bearer tokens (one per line) clients may present in sidecar mode.
    #[arg(long)]
    pub client_token_file: Option<PathBuf>,
    /// passthrough: forward the client's token; sidecar: pathgate's own credentials;
    /// impersonate: pathgate's credentials plus Impersonate-User/Group from the client
    /// certificate [default: passthrough].
    #[arg(long)]
    pub auth: Option<AuthMode>,
    /// Plain-HTTP admin listener for /healthz, /readyz and /metrics, or "off"
    /// [default: 127.0.0.1:9090].
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Session of requests without a /s/<id> prefix or X-Pathgate-Session header.
    #[arg(long)]
    pub session: Option<String>,
    /// Largest mutation body accepted, in bytes (413 beyond) [default: 3145728].
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// Seconds in-flight requests may take to finish after SIGTERM.
    #[arg(long, default_value_t = 15)]
    pub drain_timeout: u64,
    /// Threads serving requests. One suits a sidecar or a laptop (one agent's traffic); a
    /// gateway shared by many agents raises it up to the cores it may use. Overrides
    /// `server.workers` [default: 1].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// Ledger spool directory (JSONL segments; the source of truth for every sink).
    /// Overrides `ledger.dir`; without either, requests are only logged.
    #[arg(long)]
    pub ledger_dir: Option<PathBuf>,
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Client-connection timeouts and limits; each overrides the `server:` key of the same
/// name (docs/config.md gives the ranges and defaults).
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct ConnectionArgs {
    /// Seconds a client may take to finish the TLS handshake [default: 10].
    #[arg(long)]
    pub tls_handshake_timeout_seconds: Option<u64>,
    /// Seconds until a connection's first request headers (and, on HTTP/1.1, each next
    /// request's) must have arrived [default: 30].
    #[arg(long)]
    pub header_read_timeout_seconds: Option<u64>,
    /// Seconds a connection may stay open with no request in flight [default: 120].
    #[arg(long)]
    pub idle_timeout_seconds: Option<u64>,
    /// Seconds a mutation's body may take to arrive (408 Status beyond) [default: 60].
    #[arg(long)]
    pub body_read_timeout_seconds: Option<u64>,
    /// Seconds between HTTP/2 PINGs that find dead peers [default: 30].
    #[arg(long)]
    pub http2_keepalive_interval_seconds: Option<u64>,
    /// Seconds a PING may go unanswered before the connection closes [default: 20].
    #[arg(long)]
    pub http2_keepalive_timeout_seconds: Option<u64>,
    /// Streams one HTTP/2 client connection may open at once [default: 250].
    #[arg(long)]
    pub http2_max_concurrent_streams: Option<u64>,
    /// Client connections open at once, from everyone [default: 1024].
    #[arg(long)]
    pub max_connections: Option<u64>,
    /// Client connections open at once from one IP address [default: 256].
    #[arg(long)]
    pub max_connections_per_peer: Option<u64>,
}

impl ConnectionArgs {
    /// The flags in `crate::config::CONNECTION_BOUNDS` order.
    fn values(&self) -> [Option<u64>; 9] {
        [
            self.tls_handshake_timeout_seconds,
            self.header_read_timeout_seconds,
            self.idle_timeout_seconds,
            self.body_read_timeout_seconds,
            self.http2_keepalive_interval_seconds,
            self.http2_keepalive_timeout_seconds,
            self.http2_max_concurrent_streams,
            self.max_connections,
            self.max_connections_per_peer,
        ]
    }

    /// The file's connection keys with these flags over them, each flag checked under its
    /// own name, then the cross-key checks.
    fn merge(&self, mut keys: ConnectionKeys) -> Result<ConnectionSettings, GatewayError> {
        for ((bound, slot), flag) in keys.slots().into_iter().zip(self.values()) {
            if let Some(value) = flag {
                *slot = Some(crate::config::check_value(bound, bound.flag, value)?);
            }
        }
        keys.check()?;
        Ok(keys.settings())
    }
}

/// Why the flags and the configuration file do not make a gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Invalid(#[from] crate::config::ValidationError),
    /// Neither `--upstream-kubeconfig` / `server.upstream_kubeconfig` nor in-cluster.
    #[error("name the apiserver: --upstream-kubeconfig PATH or --in-cluster (or server.upstream_kubeconfig in --config)")]
    NoUpstream,
    /// Both an upstream kubeconfig and in-cluster.
    #[error("--in-cluster and an upstream kubeconfig are exclusive; choose one upstream")]
    TwoUpstreams,
    #[error("--admin-listen {0:?} is not host:port")]
    AdminListen(String),
}

/// Why `pathgate serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeCommandError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
}

/// A gateway ready to start: the merged options and the policy they run with.
#[derive(Debug)]
pub struct Gateway {
    pub options: ServeOptions,
    /// The running policy; reloads swap it (see [`Gateway::start`]).
    pub policy: PolicyHandle,
    /// The configuration file to watch for policy reloads.
    pub config_file: Option<PathBuf>,
}

impl Gateway {
    /// Starts the listeners with the policy gate, and the config watch if there is a file.
    pub async fn start(self, metrics: Metrics) -> Result<Running, ServeError> {
        tracing::info!(mode = %self.policy.current().mode, "policy loaded");
        if let Some(path) = self.config_file {
            tokio::spawn(crate::config::watch(path, self.policy.clone()));
        }
        let gate = crate::serve::policy_gate(self.policy);
        crate::serve::start(self.options, gate, None, metrics).await
    }
}

impl ServeArgs {
    /// The configuration file named by `--config`, or the default configuration.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        match &self.config {
            Some(path) => Config::load(path),
            None => Ok(Config::default()),
        }
    }

    /// Threads serving requests: `--workers`, else `server.workers`, else the default.
    pub fn workers(&self, config: &Config) -> usize {
        self.workers
            .map(usize::from)
            .or(config.server.workers)
            .unwrap_or(crate::config::DEFAULT_WORKERS)
    }

    /// The flags over the loaded configuration: the options `serve::start` takes and the
    /// policy handle.
    pub fn gateway(&self, config: Config) -> Result<Gateway, GatewayError> {
        let args = self;
        let server = &config.server;
        let upstream = self.upstream(&config)?;
        let admin_listen = match args.admin_listen.as_deref() {
            Some("off") | Some("") => None,
            Some(addr) => Some(
                addr.parse()
                    .map_err(|_| GatewayError::AdminListen(addr.to_string()))?,
            ),
            None => Some(
                server
                    .admin_listen
                    .unwrap_or_else(|| "127.0.0.1:9090".parse().expect("static address")),
            ),
        };
        let max_body_bytes = match args.max_body_bytes {
            Some(bytes) => bytes,
            None => server
                .max_body_bytes
                .map(|b| b as usize)
                .unwrap_or(3 * 1024 * 1024),
        };
        let options = ServeOptions {
            upstream,
            listen: args
                .listen
                .or(server.listen)
                .unwrap_or_else(|| "127.0.0.1:8443".parse().expect("static address")),
            admin_listen,
            tls_cert: args
                .tls_cert
                .clone()
                .or_else(|| server.tls_cert.clone())
                .unwrap_or_else(|| "certs/server.crt".into()),
            tls_key: args
                .tls_key
                .clone()
                .or_else(|| server.tls_key.clone())
                .unwrap_or_else(|| "certs/server.key".into()),
            client_ca: args.client_ca.clone().or_else(|| server.client_ca.clone()),
            client_token_file: args.client_token_file.clone(),
            proxy: ProxySettings {
                auth: args.auth.or(server.auth).unwrap_or(AuthMode::Passthrough),
                max_body_bytes,
                default_session: args
                    .session
                    .clone()
                    .or_else(|| server.default_session.clone()),
                connections: args.connections.merge(server.connections)?,
                ..ProxySettings::default()
            },
            drain_timeout: Duration::from_secs(args.drain_timeout),
            connect_timeout: Duration::from_secs(10),
            ledger: None,
        };
        // The policy handle first: it compares later reloads with the file as written.
        let policy = PolicyHandle::new(&config, args.mode);
        let config = match &args.ledger_dir {
            Some(dir) => config.with_ledger_dir(dir),
            None => config,
        };
        config.ledger.check()?;
        let options = ServeOptions {
            ledger: crate::ledger::LedgerSettings::from_config(&config.ledger),
            ..options
        };
        Ok(Gateway {
            options,
            policy,
            config_file: args.config.clone(),
        })
    }

    /// The apiserver: a kubeconfig (flag or file) or the pod's service account.
    fn upstream(&self, config: &Config) -> Result<UpstreamSource, GatewayError> {
        let server = &config.server;
        let in_cluster = self.in_cluster || server.in_cluster == Some(true);
        let upstream_kubeconfig = self
            .upstream_kubeconfig
            .clone()
            .or_else(|| server.upstream_kubeconfig.clone());
        match (upstream_kubeconfig, in_cluster) {
            (Some(path), false) => Ok(UpstreamSource::Kubeconfig {
                path,
                context: self.context.clone().or_else(|| server.context.clone()),
            }),
            (None, true) => Ok(UpstreamSource::InCluster),
            (Some(_), true) => Err(GatewayError::TwoUpstreams),
            (None, false) => Err(GatewayError::NoUpstream),
        }
    }
}

/// The runtime that serves requests: with one worker, a current-thread runtime (the
/// listener, every connection and the upstream connection on one thread: no hand-offs
/// between threads); otherwise a work-stealing runtime of `workers` threads.
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().build()
}

/// `pathgate serve`: loads the configuration, starts the gateway on its own runtime and
/// serves until SIGTERM or SIGINT, then drains.
pub fn run(args: ServeArgs) -> Result<(), ServeCommandError> {
    let config = args.load_config().map_err(GatewayError::from)?;
    let workers = args.workers(&config);
    runtime(workers)
        .map_err(ServeCommandError::Runtime)?
        .block_on(serve(args, config))
}

async fn serve(args: ServeArgs, config: Config) -> Result<(), ServeCommandError> {
    let gateway = args.gateway(config)?;
    let running = gateway.start(Metrics::new()).await?;
    eprintln!(
        "pathgate listening on https://{} (admin {})",
        running.addr,
        running
            .admin_addr
            .map(|a| format!("http://{a}"))
            .unwrap_or_else(|| "off".into())
    );
    let token = running.shutdown_token();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeCommandError::Signals)?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
    token.cancel();
    running.wait().await;
    Ok(())
}
