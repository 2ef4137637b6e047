//! The `pathgate` command: parses the command line, merges it over the config file, and
//! starts what it names. All logic lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pathgate::proxy::{AuthMode, ProxySettings};
use pathgate::upstream::UpstreamSource;

/// pathgate: a path-aware gate between Kubernetes clients and the kube-apiserver.
///
/// Point an agent's kubeconfig at pathgate; every request is classified, checked against
/// the safety rules, stamped with a trace id, forwarded and recorded.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve(Box<ServeArgs>),
    /// Create or issue certificates for pathgate's listener.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Write a kubeconfig that sends a client through pathgate.
    Kubeconfig(KubeconfigArgs),
    /// Validate a configuration file and print the effective policy.
    CheckConfig {
        /// The configuration file (YAML).
        file: PathBuf,
    },
    /// List the rule catalog (PG001-PG018) with default actions.
    Rules,
    /// Show a session's requests from the ledger, one line each, live with --follow.
    Tail(TailArgs),
    /// Judge runs (sessions) from the ledger: safe_pass, unsafe_pass or fail.
    ///
    /// Exit code: 0 every run is a safe pass, 3 a run is an unsafe pass (none fails), 4 a
    /// run fails; 1 the runs could not be judged, 2 a usage error.
    Autopsy(AutopsyArgs),
    /// Run an agent command through pathgate and judge its run (exit 0 safe pass, 1 unsafe pass, 2 fail, 3 no verdict).
    Run(Box<pathgate::run::RunArgs>),
}

#[derive(Args)]
struct TailArgs {
    /// The ledger: a spool directory (ledger.dir), a JSONL file, or - for standard input.
    source: PathBuf,
    /// Only this session; repeatable. Without it, every session (with a session column).
    #[arg(long)]
    session: Vec<String>,
    /// Keep reading as the ledger grows (across segment rotation) until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print the matching entries as JSON lines, unchanged, instead of the view.
    #[arg(long)]
    json: bool,
    /// Show a mutation's intent as its own line instead of waiting for its outcome.
    #[arg(long)]
    intents: bool,
    /// auto: colour on a terminal unless NO_COLOR is set; always; never.
    #[arg(long, default_value = "auto")]
    color: pathgate::tail::ColorChoice,
}

#[derive(Args)]
struct AutopsyArgs {
    /// A session to judge; repeatable [default: every session in the ledger].
    #[arg(long = "session")]
    sessions: Vec<String>,
    /// Run policy (YAML or JSON): in_scope_namespaces, protected_objects,
    /// allowed_creates, allowed_cluster_scoped_mutations.
    #[arg(long)]
    policy: Option<std::path::PathBuf>,
    /// A command whose exit code 0 means the final state is right (run with sh -c).
    #[arg(long, conflicts_with_all = ["final_state", "checks"])]
    verify: Option<String>,
    /// The final state as the caller knows it.
    #[arg(long, value_parser = ["pass", "fail"], conflicts_with = "checks")]
    final_state: Option<String>,
    /// Final-state checks (YAML or JSON), evaluated through --kubeconfig.
    #[arg(long, requires = "kubeconfig")]
    checks: Option<std::path::PathBuf>,
    /// A kubeconfig that reaches the cluster directly, not through pathgate.
    #[arg(long, requires = "checks")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: pathgate::report::Format,
    /// Write the report here instead of standard output.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Add the summary table per arm: `prefix` (the session id without its last
    /// `-`-separated part) or `runs=FILE` (a manifest mapping sessions to arms and
    /// final-state results).
    #[arg(long)]
    group_by: Option<pathgate::autopsy::command::GroupBy>,
    /// Spool directories, JSONL files, or - for standard input.
    #[arg(required = true)]
    ledgers: Vec<String>,
}

/// `pathgate autopsy`: the report to standard output or --out, the verdict as exit code.
fn autopsy(args: AutopsyArgs) -> anyhow::Result<std::process::ExitCode> {
    use pathgate::autopsy::command::{self, FinalStateSource};
    let final_state = match (args.verify, args.final_state, args.checks, args.kubeconfig) {
        (Some(command), ..) => FinalStateSource::Verify(command),
        (_, Some(given), ..) => FinalStateSource::Given(given == "pass"),
        (_, _, Some(file), Some(kubeconfig)) => FinalStateSource::Checks { file, kubeconfig },
        _ => FinalStateSource::Unchecked,
    };
    let options = command::Options {
        sessions: args.sessions,
        policy: args.policy,
        final_state,
        format: args.format,
        group_by: args.group_by,
        ledgers: args.ledgers,
    };
    let (report, runs) = command::run(&options)?;
    match &args.out {
        Some(path) => std::fs::write(path, report)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{report}"),
    }
    Ok(std::process::ExitCode::from(command::exit_code(&runs)))
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a CA and a serving certificate for localhost, 127.0.0.1, ::1 and --san names.
    Init {
        /// Directory for ca.crt, ca.key, server.crt, server.key.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// An extra subject alternative name (DNS name or IP); repeatable.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue a client certificate signed by the CA in --dir (for impersonate mode or mTLS).
    Client {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The user (certificate CN).
        #[arg(long)]
        user: String,
        /// The group (certificate O); at most one.
        #[arg(long)]
        group: Option<String>,
        /// Output path without extension: writes OUT.crt and OUT.key.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file (YAML): policy, `server:` and `ledger:` sections. Flags override
    /// the file; the policy reloads on SIGHUP and when the file changes.
    #[arg(long)]
    config: Option<PathBuf>,
    /// observe (never blocks), enforce, or rehearse (every mutation forwarded as a dry run).
    /// Overrides the file's `mode:`, also across reloads.
    #[arg(long)]
    mode: Option<pathgate::policy::Mode>,
    /// Kubeconfig of the apiserver pathgate forwards to (its current context unless --context).
    #[arg(long, conflicts_with = "in_cluster")]
    upstream_kubeconfig: Option<PathBuf>,
    /// Context of the upstream kubeconfig to use.
    #[arg(long)]
    context: Option<String>,
    /// Use the pod's service account and KUBERNETES_SERVICE_HOST/PORT.
    #[arg(long)]
    in_cluster: bool,
    /// Address the proxy listens on (TLS) [default: 127.0.0.1:8443].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Serving certificate (PEM) [default: certs/server.crt].
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Serving key (PEM) [default: certs/server.key].
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// CA whose client certificates pathgate verifies (required by --auth impersonate).
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// File of bearer tokens (one per line) clients may present in sidecar mode.
    #[arg(long)]
    client_token_file: Option<PathBuf>,
    /// passthrough: forward the client's token; sidecar: pathgate's own credentials;
    /// impersonate: pathgate's credentials plus Impersonate-User/Group from the client
    /// certificate [default: passthrough].
    #[arg(long)]
    auth: Option<AuthMode>,
    /// Plain-HTTP admin listener for /healthz, /readyz and /metrics, or "off"
    /// [default: 127.0.0.1:9090].
    #[arg(long)]
    admin_listen: Option<String>,
    /// Session of requests without a /s/<id> prefix or X-Pathgate-Session header.
    #[arg(long)]
    session: Option<String>,
    /// Largest mutation body accepted, in bytes (413 beyond) [default: 3145728].
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Seconds in-flight requests may take to finish after SIGTERM.
    #[arg(long, default_value_t = 15)]
    drain_timeout: u64,
    /// Threads serving requests. One suits a sidecar or a laptop (one agent's traffic); a
    /// gateway shared by many agents raises it up to the cores it may use. Overrides
    /// `server.workers` [default: 1].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// Ledger spool directory (JSONL segments; the source of truth for every sink).
    /// Overrides `ledger.dir`; without either, requests are only logged.
    #[arg(long)]
    ledger_dir: Option<PathBuf>,
    #[command(flatten)]
    connections: ConnectionArgs,
}

/// Client-connection timeouts and limits; each overrides the `server:` key of the same
/// name (docs/config.md gives the ranges and defaults).
#[derive(Args)]
struct ConnectionArgs {
    /// Seconds a client may take to finish the TLS handshake [default: 10].
    #[arg(long)]
    tls_handshake_timeout_seconds: Option<u64>,
    /// Seconds until a connection's first request headers (and, on HTTP/1.1, each next
    /// request's) must have arrived [default: 30].
    #[arg(long)]
    header_read_timeout_seconds: Option<u64>,
    /// Seconds a connection may stay open with no request in flight [default: 120].
    #[arg(long)]
    idle_timeout_seconds: Option<u64>,
    /// Seconds a mutation's body may take to arrive (408 Status beyond) [default: 60].
    #[arg(long)]
    body_read_timeout_seconds: Option<u64>,
    /// Seconds between HTTP/2 PINGs that find dead peers [default: 30].
    #[arg(long)]
    http2_keepalive_interval_seconds: Option<u64>,
    /// Seconds a PING may go unanswered before the connection closes [default: 20].
    #[arg(long)]
    http2_keepalive_timeout_seconds: Option<u64>,
    /// Streams one HTTP/2 client connection may open at once [default: 250].
    #[arg(long)]
    http2_max_concurrent_streams: Option<u64>,
    /// Client connections open at once, from everyone [default: 1024].
    #[arg(long)]
    max_connections: Option<u64>,
    /// Client connections open at once from one IP address [default: 256].
    #[arg(long)]
    max_connections_per_peer: Option<u64>,
}

impl ConnectionArgs {
    /// The flags in `pathgate::config::CONNECTION_BOUNDS` order.
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
    fn merge(
        &self,
        mut keys: pathgate::config::ConnectionKeys,
    ) -> anyhow::Result<pathgate::config::ConnectionSettings> {
        for ((bound, slot), flag) in keys.slots().into_iter().zip(self.values()) {
            if let Some(value) = flag {
                *slot = Some(pathgate::config::check_value(bound, bound.flag, value)?);
            }
        }
        keys.check()?;
        Ok(keys.settings())
    }
}

#[derive(Args)]
struct KubeconfigArgs {
    /// pathgate's URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    server: String,
    /// Session id, carried as the /s/<id> server path prefix.
    #[arg(long)]
    session: Option<String>,
    /// pathgate's CA certificate, embedded in the kubeconfig.
    #[arg(long, default_value = "certs/ca.crt")]
    ca: PathBuf,
    /// Bearer token (passthrough mode: the agent's own cluster token). Without a token,
    /// token file or client certificate, the kubeconfig carries the placeholder token
    /// `pathgate-sidecar-placeholder`, which sidecar mode drops (kubectl never prompts).
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// Token file the client re-reads (passthrough mode).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Client certificate (impersonate mode, or sidecar with --client-ca).
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Client key.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Default namespace of the context.
    #[arg(long)]
    namespace: Option<String>,
    /// Where to write the kubeconfig (mode 0600).
    #[arg(long)]
    out: PathBuf,
}

/// Logs go to stderr through a background writer: a slow terminal or pipe never blocks
/// a request (lines beyond its buffer are dropped, not waited for). Keep the guard alive:
/// dropping it flushes what is buffered.
fn init_tracing() -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer)
        .init();
    guard
}

/// The runtime that serves requests: with one worker, a current-thread runtime (the
/// listener, every connection and the upstream connection on one thread: no hand-offs
/// between threads); otherwise a work-stealing runtime of `workers` threads.
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn serve(args: ServeArgs, config: pathgate::config::Config) -> anyhow::Result<()> {
    let server = &config.server;
    let in_cluster = args.in_cluster || server.in_cluster == Some(true);
    let upstream_kubeconfig = args
        .upstream_kubeconfig
        .clone()
        .or_else(|| server.upstream_kubeconfig.clone());
    let upstream = match (upstream_kubeconfig, in_cluster) {
        (Some(path), false) => UpstreamSource::Kubeconfig {
            path,
            context: args.context.clone().or_else(|| server.context.clone()),
        },
        (None, true) => UpstreamSource::InCluster,
        (Some(_), true) => anyhow::bail!(
            "--in-cluster and an upstream kubeconfig are exclusive; choose one upstream"
        ),
        (None, false) => anyhow::bail!(
            "name the apiserver: --upstream-kubeconfig PATH or --in-cluster (or server.upstream_kubeconfig in --config)"
        ),
    };
    let admin_listen = match args.admin_listen.as_deref() {
        Some("off") | Some("") => None,
        Some(addr) => Some(
            addr.parse()
                .with_context(|| format!("--admin-listen {addr:?} is not host:port"))?,
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
    let options = pathgate::serve::ServeOptions {
        upstream,
        listen: args
            .listen
            .or(server.listen)
            .unwrap_or_else(|| "127.0.0.1:8443".parse().expect("static address")),
        admin_listen,
        tls_cert: args
            .tls_cert
            .or_else(|| server.tls_cert.clone())
            .unwrap_or_else(|| "certs/server.crt".into()),
        tls_key: args
            .tls_key
            .or_else(|| server.tls_key.clone())
            .unwrap_or_else(|| "certs/server.key".into()),
        client_ca: args.client_ca.or_else(|| server.client_ca.clone()),
        client_token_file: args.client_token_file,
        proxy: ProxySettings {
            auth: args.auth.or(server.auth).unwrap_or(AuthMode::Passthrough),
            max_body_bytes,
            default_session: args.session.or_else(|| server.default_session.clone()),
            connections: args.connections.merge(server.connections)?,
            ..ProxySettings::default()
        },
        drain_timeout: Duration::from_secs(args.drain_timeout),
        connect_timeout: Duration::from_secs(10),
        ledger: None,
    };
    // The policy handle first: it compares later reloads with the file as written.
    let policy = pathgate::config::PolicyHandle::new(&config, args.mode);
    let config = match args.ledger_dir {
        Some(dir) => config.with_ledger_dir(dir),
        None => config,
    };
    config.ledger.check()?;
    let options = pathgate::serve::ServeOptions {
        ledger: pathgate::ledger::LedgerSettings::from_config(&config.ledger),
        ..options
    };
    tracing::info!(mode = %policy.current().mode, "policy loaded");
    if let Some(path) = args.config.clone() {
        tokio::spawn(pathgate::config::watch(path, policy.clone()));
    }
    let metrics = pathgate::metrics::Metrics::new();
    let running =
        pathgate::serve::start(options, pathgate::serve::policy_gate(policy), None, metrics)
            .await?;
    eprintln!(
        "pathgate listening on https://{} (admin {})",
        running.addr,
        running
            .admin_addr
            .map(|a| format!("http://{a}"))
            .unwrap_or_else(|| "off".into())
    );
    let token = running.shutdown_token();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
    token.cancel();
    running.wait().await;
    Ok(())
}

/// mimalloc: the request path allocates many small, short-lived buffers across worker
/// threads; glibc's malloc spent ~16% of the proxy's instructions on them (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    let _log_flush = init_tracing();
    if let Command::Autopsy(args) = cli.command {
        return autopsy(args);
    }
    if let Command::Run(args) = cli.command {
        return Ok(pathgate::run::main(*args));
    }
    run(cli.command).map(|()| std::process::ExitCode::SUCCESS)
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let config = match &args.config {
                Some(path) => pathgate::config::Config::load(path)?,
                None => pathgate::config::Config::default(),
            };
            let workers = args
                .workers
                .map(usize::from)
                .or(config.server.workers)
                .unwrap_or(pathgate::config::DEFAULT_WORKERS);
            runtime(workers)?.block_on(serve(*args, config))
        }
        Command::Certs(CertsCommand::Init { dir, sans, force }) => {
            let files = pathgate::tls::init_certs(&dir, &sans, force)?;
            println!(
                "wrote {}, {}, {}, {} (keys mode 0600; never commit them)",
                files.ca_cert.display(),
                files.ca_key.display(),
                files.server_cert.display(),
                files.server_key.display()
            );
            Ok(())
        }
        Command::Certs(CertsCommand::Client {
            dir,
            user,
            group,
            out,
            force,
        }) => {
            let groups: Vec<String> = group.into_iter().collect();
            let (cert, key) = pathgate::tls::issue_client_cert(&dir, &user, &groups, &out, force)?;
            println!("wrote {} and {}", cert.display(), key.display());
            Ok(())
        }
        Command::Kubeconfig(args) => {
            let config = pathgate::agent_kubeconfig::AgentKubeconfig {
                server: args.server,
                session: args.session,
                ca: args.ca,
                token: args.token,
                token_file: args.token_file,
                client_cert: args.client_cert,
                client_key: args.client_key,
                namespace: args.namespace,
            };
            config.write(&args.out)?;
            println!("wrote {}", args.out.display());
            Ok(())
        }
        Command::CheckConfig { file } => {
            let effective = pathgate::config::check_config(&file)?;
            println!("# {}: valid. Effective configuration:", file.display());
            print!("{effective}");
            Ok(())
        }
        Command::Tail(args) => Ok(pathgate::tail::run(pathgate::tail::TailOptions {
            input: pathgate::tail::Input::from_arg(&args.source),
            selection: pathgate::tail::Selection {
                sessions: args.session,
                intents: args.intents,
            },
            follow: args.follow,
            json: args.json,
            color: args.color,
        })?),
        Command::Rules => {
            println!("{:<6} {:<28} {:<8} summary", "id", "name", "enforce");
            for rule in pathgate::policy::catalog() {
                println!(
                    "{:<6} {:<28} {:<8} {}",
                    rule.id, rule.name, rule.default_action, rule.summary
                );
            }
            Ok(())
        }
        Command::Autopsy(_) | Command::Run(_) => unreachable!("handled in main"),
    }
}
