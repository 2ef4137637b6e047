//! `pathgate serve`: its flags ([`ServeArgs`], flattenable into other commands that start a
//! gateway), their translation into [`crate::config::Overrides`] (validated with the file
//! in [`ServeArgs::load_config`]), the validated configuration as
//! [`crate::serve::ServeOptions`] and the [`PolicyHandle`] ([`ServeArgs::gateway`]), and the
//! process around it: runtime, config watch, signals, drain ([`run`]).
//!
//! Does not own: what a key means or accepts ([`crate::config`]) nor starting the
//! listeners ([`crate::serve::start`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::{
    defaults, AdminListen, Config, ConfigError, Loaded, Overrides, PolicyHandle, ServerSettings,
};
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
    pub max_body_bytes: Option<u64>,
    /// Seconds in-flight requests may take to finish after SIGTERM [default: 15].
    #[arg(long)]
    pub drain_timeout: Option<u64>,
    /// Threads serving requests. One suits a sidecar or a laptop (one agent's traffic); a
    /// gateway shared by many agents raises it up to the cores it may use [default: 1].
    #[arg(long)]
    pub workers: Option<u64>,
    /// Ledger spool directory (JSONL segments; the source of truth for every sink).
    /// Overrides `ledger.dir`; without either, requests are only logged.
    #[arg(long)]
    pub ledger_dir: Option<PathBuf>,
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Client-connection timeouts and limits; each overrides the `server:` key of the same
/// name (docs/config.md gives the ranges and defaults, `config::CONNECTION_BOUNDS` holds
/// them).
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
    pub fn values(&self) -> [Option<u64>; 9] {
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
}

/// Why the flags and the configuration file do not make a gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Neither `--upstream-kubeconfig` / `server.upstream_kubeconfig` nor in-cluster.
    #[error("name the apiserver: --upstream-kubeconfig PATH or --in-cluster (or server.upstream_kubeconfig in --config)")]
    NoUpstream,
    /// Both an upstream kubeconfig and in-cluster (validation refuses this first; kept for
    /// settings built without it).
    #[error("--in-cluster and an upstream kubeconfig are exclusive; choose one upstream")]
    TwoUpstreams,
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
    /// The flags that override configuration keys.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            mode: self.mode,
            listen: self.listen,
            admin_listen: self.admin_listen.clone(),
            auth: self.auth,
            upstream_kubeconfig: self.upstream_kubeconfig.clone(),
            context: self.context.clone(),
            in_cluster: self.in_cluster,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            client_ca: self.client_ca.clone(),
            client_token_file: self.client_token_file.clone(),
            max_body_bytes: self.max_body_bytes,
            default_session: self.session.clone(),
            workers: self.workers,
            drain_timeout_seconds: self.drain_timeout,
            ledger_dir: self.ledger_dir.clone(),
            connections: self.connections.values(),
        }
    }

    /// The file named by `--config` (or none) with these flags over it, validated once.
    pub fn load_config(&self) -> Result<Loaded, ConfigError> {
        Config::load_with(self.config.as_deref(), &self.overrides())
    }

    /// Threads serving requests (`--workers` or `server.workers`, else the default).
    pub fn workers(&self, config: &Loaded) -> usize {
        config.effective.server.workers.unwrap_or(defaults::WORKERS)
    }

    /// The loaded configuration as the options `serve::start` takes, and the policy handle.
    pub fn gateway(&self, config: Loaded) -> Result<Gateway, GatewayError> {
        let server = &config.effective.server;
        let options = ServeOptions {
            upstream: upstream(server)?,
            listen: server.listen.unwrap_or(defaults::LISTEN),
            admin_listen: server
                .admin_listen
                .unwrap_or(AdminListen::At(defaults::ADMIN_LISTEN))
                .addr(),
            tls_cert: (server.tls_cert.clone()).unwrap_or_else(|| defaults::TLS_CERT.into()),
            tls_key: (server.tls_key.clone()).unwrap_or_else(|| defaults::TLS_KEY.into()),
            client_ca: server.client_ca.clone(),
            client_token_file: server.client_token_file.clone(),
            proxy: ProxySettings {
                auth: server.auth.unwrap_or(defaults::AUTH),
                // Validation bounds it far below `usize::MAX` on any target.
                max_body_bytes: usize::try_from(
                    server.max_body_bytes.unwrap_or(defaults::MAX_BODY_BYTES),
                )
                .unwrap_or(usize::MAX),
                default_session: server.default_session.clone(),
                connections: server.connections.settings(),
                ..ProxySettings::default()
            },
            drain_timeout: Duration::from_secs(
                server
                    .drain_timeout_seconds
                    .unwrap_or(defaults::DRAIN_TIMEOUT_SECONDS),
            ),
            connect_timeout: defaults::CONNECT_TIMEOUT,
            ledger: crate::ledger::LedgerSettings::from_config(&config.effective.ledger),
        };
        Ok(Gateway {
            options,
            // Built from the file as written: a reload compares itself with it.
            policy: PolicyHandle::new(&config.file, self.mode),
            config_file: self.config.clone(),
        })
    }
}

/// The apiserver: a kubeconfig or the pod's service account (validation refused both).
fn upstream(server: &ServerSettings) -> Result<UpstreamSource, GatewayError> {
    match (&server.upstream_kubeconfig, server.in_cluster == Some(true)) {
        (Some(path), false) => Ok(UpstreamSource::Kubeconfig {
            path: path.clone(),
            context: server.context.clone(),
        }),
        (None, true) => Ok(UpstreamSource::InCluster),
        (Some(_), true) => Err(GatewayError::TwoUpstreams),
        (None, false) => Err(GatewayError::NoUpstream),
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

async fn serve(args: ServeArgs, config: Loaded) -> Result<(), ServeCommandError> {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::config::CONNECTION_BOUNDS;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn load(flags: &[String]) -> Result<Loaded, ConfigError> {
        let argv = std::iter::once("serve".to_string()).chain(flags.iter().cloned());
        Serve::try_parse_from(argv).unwrap().args.load_config()
    }

    /// Every flag with a bound: its name, the range, and the flags that keep the rest of
    /// its range valid (the cross-key checks).
    fn bounded_flags() -> Vec<(&'static str, u64, u64, Vec<&'static str>)> {
        let mut flags = vec![
            ("--max-body-bytes", 1024, 268_435_456, vec![]),
            ("--workers", 1, 256, vec![]),
            ("--drain-timeout", 0, 3_600, vec![]),
        ];
        for bound in CONNECTION_BOUNDS {
            let companion = match bound.key {
                "http2_keepalive_timeout_seconds" => {
                    vec!["--http2-keepalive-interval-seconds", "3600"]
                }
                "http2_keepalive_interval_seconds" => {
                    vec!["--http2-keepalive-timeout-seconds", "1"]
                }
                "max_connections_per_peer" => vec!["--max-connections", "1000000"],
                _ => vec![],
            };
            flags.push((bound.flag, bound.min, bound.max, companion));
        }
        flags
    }

    #[test]
    fn a_flag_outside_its_bound_is_refused_as_its_key_would_be_and_names_the_flag() {
        for (flag, min, max, companion) in bounded_flags() {
            let with = |value: u64| {
                let mut argv: Vec<String> = companion.iter().map(|s| s.to_string()).collect();
                argv.extend([flag.to_string(), value.to_string()]);
                argv
            };
            for ok in [min, max] {
                load(&with(ok)).unwrap_or_else(|e| panic!("{flag} {ok}: {e}"));
            }
            let below = min.checked_sub(1).into_iter();
            for bad in below.chain([max + 1]) {
                match load(&with(bad)) {
                    Err(ConfigError::Flag {
                        flag: named,
                        reason,
                    }) => {
                        assert_eq!(named, flag);
                        assert!(
                            reason
                                .starts_with(&format!("{bad} is out of range; use {min} to {max}")),
                            "{flag} {bad}: {reason}"
                        );
                    }
                    other => panic!("{flag} {bad}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_flag_is_refused_even_when_the_file_has_a_valid_value_and_the_file_still_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pathgate.yaml");
        std::fs::write(&file, "server: {max_body_bytes: 4096}\n").unwrap();
        let config = ["--config".to_string(), file.display().to_string()];
        let flag = [&config[..], &["--max-body-bytes".into(), "0".into()]].concat();
        assert_eq!(
            load(&flag).unwrap_err().to_string(),
            "--max-body-bytes: 0 is out of range; use 1024 to 268435456"
        );
        std::fs::write(&file, "server: {max_body_bytes: 0}\n").unwrap();
        let error = load(&config).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "{}: server.max_body_bytes: 0 is out of range; use 1024 to 268435456",
                file.display()
            )
        );
    }

    #[test]
    fn cross_key_checks_see_the_flags_and_name_them() {
        let flags = |args: &[&str]| load(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let error = flags(&["--http2-keepalive-timeout-seconds", "40"]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--http2-keepalive-timeout-seconds: 40s is not below"),
            "{error}"
        );
        let error = flags(&["--max-connections-per-peer", "2000"]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--max-connections-per-peer: 2000 is above"),
            "{error}"
        );
        // No file: an impersonate without a CA names the flag that is missing.
        let error = flags(&["--auth", "impersonate"]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--client-ca: auth: impersonate"),
            "{error}"
        );
        flags(&["--auth", "impersonate", "--client-ca", "ca.crt"]).unwrap();
        let error = flags(&["--session", "a b"]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--session: \"a b\" is not a session id"),
            "{error}"
        );
        let error = flags(&["--admin-listen", "nowhere"]).unwrap_err();
        assert!(
            error.to_string().starts_with("--admin-listen: \"nowhere\""),
            "{error}"
        );
    }

    /// The defaults the help text promises are the code's (config::defaults, the
    /// connection bounds): a help line cannot drift from what an omitted flag gives.
    #[test]
    fn every_default_in_the_help_is_the_codes() {
        use clap::CommandFactory;
        let mut expected: Vec<(String, String)> = vec![
            ("listen".into(), defaults::LISTEN.to_string()),
            ("admin_listen".into(), defaults::ADMIN_LISTEN.to_string()),
            ("auth".into(), "passthrough".into()),
            ("tls_cert".into(), defaults::TLS_CERT.into()),
            ("tls_key".into(), defaults::TLS_KEY.into()),
            (
                "max_body_bytes".into(),
                defaults::MAX_BODY_BYTES.to_string(),
            ),
            (
                "drain_timeout".into(),
                defaults::DRAIN_TIMEOUT_SECONDS.to_string(),
            ),
            ("workers".into(), defaults::WORKERS.to_string()),
        ];
        expected.extend(
            CONNECTION_BOUNDS
                .iter()
                .map(|b| (b.key.to_string(), b.default.to_string())),
        );
        let command = Serve::command();
        let mut checked = 0;
        for arg in command.get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let Some(promised) = help
                .split("[default: ")
                .nth(1)
                .and_then(|rest| rest.split(']').next())
            else {
                continue;
            };
            let id = arg.get_id().as_str();
            let code = expected
                .iter()
                .find(|(flag, _)| flag == id)
                .unwrap_or_else(|| panic!("--{id} promises a default the test does not know"));
            assert_eq!(promised, code.1, "--{id}");
            checked += 1;
        }
        assert_eq!(checked, expected.len(), "a flag lost its [default: ...]");
    }

    #[test]
    fn flags_override_the_file_and_paths_keep_their_own_base() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pathgate.yaml");
        std::fs::write(
            &file,
            "server: {tls_cert: a.crt, tls_key: a.key, max_body_bytes: 4096, admin_listen: off}\n",
        )
        .unwrap();
        let argv: Vec<String> = ["--config", file.to_str().unwrap(), "--tls-cert", "b.crt"]
            .iter()
            .chain(&["--tls-key", "b.key", "--upstream-kubeconfig", "kc"])
            .map(|s| s.to_string())
            .collect();
        let loaded = load(&argv).unwrap();
        let server = &loaded.effective.server;
        assert_eq!(server.tls_cert.as_deref(), Some(Path::new("b.crt")));
        assert_eq!(server.max_body_bytes, Some(4096));
        assert_eq!(loaded.file.server.tls_cert, Some(dir.path().join("a.crt")));
        let gateway = Serve::try_parse_from(std::iter::once("serve".to_string()).chain(argv))
            .unwrap()
            .args
            .gateway(loaded)
            .unwrap();
        assert_eq!(gateway.options.admin_listen, None, "admin_listen: off");
        assert_eq!(gateway.options.proxy.max_body_bytes, 4096);
        assert_eq!(gateway.options.listen, defaults::LISTEN);
    }
}
