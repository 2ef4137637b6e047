//! The load benchmark: `cargo bench --bench load` (see BENCHMARKS.md).
//!
//! # What it does
//!
//! 1. Starts a fixed TLS upstream serving canned Kubernetes API answers ([`upstream`]).
//! 2. Starts, in front of that same upstream, the release `pathgate serve` binary (policy
//!    gate, `--mode observe`), an in-process pathgate with the `allow_all` gate, and
//!    Debian's HAProxy terminating and re-encrypting TLS ([`children`]); with
//!    `--routes ...,kubectl-proxy,kube-rbac-proxy`, also the Kubernetes-native peers
//!    ([`peers`]).
//! 3. Loads each path in turn with `wrk` ([`wrk`]) for each case (a small GET and a 30 KB
//!    LIST) and reports throughput and p99 latency as ratios to the direct path ([`report`]).
//! 4. Starts the real control plane and measures watch-event latency directly and through
//!    the pathgate binary ([`watch`]), and one-at-a-time GETs and merge PATCHes directly
//!    and through the pathgate binary with its ledger on ([`mutation`]), then stops
//!    everything. `--mutations-only` runs this last case alone (no wrk, no HAProxy);
//!    `--durable-etcd` lets etcd fsync its writes as a production cluster does (the test
//!    cluster's etcd runs with `--unsafe-no-fsync` otherwise).
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`upstream`] | the canned TLS upstream (a child process) and its bodies |
//! | [`children`] | child processes, their logs and addresses; the `allow_all` child |
//! | [`wrk`] | running the load generator and parsing its numbers |
//! | [`client`] | the HTTPS client used for checks and watches |
//! | [`cpu`] | CPU time per process from `/proc`, and the share of foreign processes |
//! | [`watch`] | watch-event latency on the control plane |
//! | [`mutation`] | mutation and read latency on the control plane, direct vs pathgate |
//! | [`peers`] | the Kubernetes-native peers: `kubectl proxy`, kube-rbac-proxy |
//! | [`report`] | the Markdown tables and ratios |
//!
//! It is a `harness = false` bench target: `cargo test` never runs it (and when a
//! `cargo test --benches` runs the binary without `--bench`, it returns at once).

mod children;
mod client;
mod cpu;
mod mutation;
mod peers;
mod report;
mod scale;
mod upstream;
mod watch;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;

use children::ChildProcess;
use report::{Case, Measurement, Report, Route};
use wrk::{LoadSettings, Wrk};

/// The token every client presents (the canned upstream accepts anything; passthrough
/// forwards it, as with a real agent).
const TOKEN: &str = "pathgate-bench-token";

/// The policy the binary runs: the defaults, observed (every rule evaluates, none blocks).
const POLICY: &str = "# Written by the pathgate load benchmark.\nmode: observe\n";

/// Command-line options (after `cargo bench --bench load --`).
struct Options {
    settings: LoadSettings,
    watch_events: usize,
    watch_warmup: usize,
    watch: bool,
    /// Measure mutations and reads on the control plane ([`mutation`]).
    mutations: bool,
    /// Only that: no canned upstream, no watch.
    mutations_only: bool,
    /// Requests per operation and route in the mutation case.
    mutation_requests: usize,
    /// etcd fsyncs its writes (`--durable-etcd`), as a production cluster does; by default
    /// the test cluster's etcd runs with `--unsafe-no-fsync`, so a direct write is never
    /// durable while pathgate's ledger fsyncs every mutation.
    durable_etcd: bool,
    /// How many times each case goes through every route, interleaved and alternating
    /// in order (A B C C B A...), so that ratios compare runs made under the same machine
    /// conditions.
    rounds: usize,
    /// The proxies to measure (the direct path always is: it is the reference).
    routes: Vec<Route>,
    /// Another pathgate binary to measure as [`Route::Baseline`] (`--baseline BINARY`).
    baseline: Option<PathBuf>,
    /// The scale cases ([`scale`]), run alone when either is asked for.
    scale: ScaleOptions,
}

/// `--watches N [--watch-connections N] [--scale-events N]` and `--soak-seconds N
/// [--soak-window-seconds N] [--soak-readers N] [--soak-watches N]`.
struct ScaleOptions {
    watches: Option<usize>,
    watch_connections: usize,
    events: usize,
    soak: Option<scale::SoakLoad>,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Options {
            settings: LoadSettings {
                threads: 2,
                connections: 16,
                warmup: Duration::from_secs(2),
                duration: Duration::from_secs(10),
            },
            watch_events: 50,
            watch_warmup: 5,
            watch: true,
            mutations: true,
            mutations_only: false,
            mutation_requests: 150,
            durable_etcd: false,
            rounds: 3,
            routes: Route::ALL
                .into_iter()
                .filter(|route| !Route::PEERS.contains(route))
                .collect(),
            baseline: None,
            scale: ScaleOptions {
                watches: None,
                watch_connections: 50,
                events: 20,
                soak: None,
            },
        };
        let mut soak = scale::SoakLoad {
            duration: Duration::ZERO,
            window: Duration::from_secs(30),
            readers: 4,
            watches: 100,
        };
        let named_routes = args_named_routes(args);
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> anyhow::Result<u64> {
                args.next()
                    .with_context(|| format!("{name} needs a value"))?
                    .parse()
                    .with_context(|| format!("{name} needs a number"))
            };
            match arg.as_str() {
                "--bench" => {}
                "--no-mutations" => options.mutations = false,
                "--mutations-only" => options.mutations_only = true,
                "--durable-etcd" => options.durable_etcd = true,
                "--mutation-requests" => options.mutation_requests = number(arg)? as usize,
                "--seconds" => options.settings.duration = Duration::from_secs(number(arg)?),
                "--warmup-seconds" => options.settings.warmup = Duration::from_secs(number(arg)?),
                "--connections" => options.settings.connections = number(arg)? as u32,
                "--threads" => options.settings.threads = number(arg)? as u32,
                "--watch-events" => options.watch_events = number(arg)? as usize,
                "--no-watch" => options.watch = false,
                "--rounds" => options.rounds = number(arg)?.max(1) as usize,
                "--watches" => options.scale.watches = Some(number(arg)?.max(1) as usize),
                "--watch-connections" => {
                    options.scale.watch_connections = number(arg)?.max(1) as usize
                }
                "--scale-events" => options.scale.events = number(arg)?.max(1) as usize,
                "--soak-seconds" => soak.duration = Duration::from_secs(number(arg)?.max(1)),
                "--soak-window-seconds" => {
                    soak.window = Duration::from_secs(number(arg)?.max(1))
                }
                "--soak-readers" => soak.readers = number(arg)? as usize,
                "--soak-watches" => soak.watches = number(arg)? as usize,
                "--baseline" => {
                    let binary = args.next().context("--baseline needs a pathgate binary")?;
                    options.baseline = Some(PathBuf::from(binary));
                }
                "--routes" => {
                    let names = args.next().context("--routes needs a list")?;
                    options.routes = vec![Route::Direct];
                    for name in names.split(',') {
                        let route = Route::ALL
                            .into_iter()
                            .find(|route| route.name() == name)
                            .with_context(|| {
                                format!("unknown route {name:?}: {}", Route::names())
                            })?;
                        if route != Route::Direct {
                            options.routes.push(route);
                        }
                    }
                }
                other => bail!(
                    "unknown option {other:?}; options: --seconds N --warmup-seconds N --connections N --threads N --watch-events N --no-watch --no-mutations --mutations-only --mutation-requests N --durable-etcd --rounds N --watches N --watch-connections N --scale-events N --soak-seconds N --soak-window-seconds N --soak-readers N --soak-watches N --routes {} --baseline BINARY",
                    Route::names()
                ),
            }
        }
        // The baseline route needs its binary; without one it is not measured.
        match (&options.baseline, options.routes.contains(&Route::Baseline)) {
            (None, true) if named_routes => {
                bail!("--routes baseline needs --baseline BINARY (e.g. the previous commit's release build)")
            }
            (None, _) => options.routes.retain(|route| *route != Route::Baseline),
            (Some(_), false) => options.routes.push(Route::Baseline),
            (Some(_), true) => {}
        }
        if !soak.duration.is_zero() {
            options.scale.soak = Some(soak);
        }
        Ok(options)
    }
}

/// Whether `--routes` was given (otherwise every route but an absent baseline is measured).
fn args_named_routes(args: &[String]) -> bool {
    args.iter().any(|arg| arg == "--routes")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(upstream::CHILD_COMMAND) => return upstream::child_main(&args[1..]),
        Some(children::ALLOW_ALL_COMMAND) => return children::allow_all_main(&args[1..]),
        _ => {}
    }
    if !args.iter().any(|arg| arg == "--bench") {
        eprintln!("load benchmark: skipped outside `cargo bench` (run `cargo bench --bench load`)");
        return ExitCode::SUCCESS;
    }
    let result = Options::parse(&args).and_then(|options| run(&options));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load benchmark failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> anyhow::Result<()> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = workspace.join("target").join("bench-load");
    let cluster_dir = dir.join("cluster");
    // A cluster left by an interrupted run is stopped before its files are removed.
    testcluster::stop_dir(&cluster_dir)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let started = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let wrk = Wrk::new(&dir)?;
    let haproxy_version = haproxy_version()?;
    let machine = machine_description();
    eprintln!("load benchmark: {machine}; logs in {}", dir.display());

    let pathgate_binary = copy_pathgate_binary(&dir)?;
    let certs = pathgate::tls::init_certs(&dir.join("certs"), &[], true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if options.scale.watches.is_some() || options.scale.soak.is_some() {
        let markdown = runtime.block_on(scale_cases(&dir, &cluster_dir, &certs, options))?;
        std::fs::write(dir.join("results.md"), &markdown)?;
        println!("{markdown}");
        return Ok(());
    }
    if options.mutations_only {
        let (_, mutations) =
            runtime.block_on(control_plane(&dir, &cluster_dir, &certs, options))?;
        let markdown = mutations.map(|m| m.markdown()).unwrap_or_default();
        std::fs::write(dir.join("results.md"), &markdown)?;
        println!("{markdown}");
        return Ok(());
    }

    // The upstream.
    let me = std::env::current_exe()?;
    let mut command = Command::new(&me);
    command
        .arg(upstream::CHILD_COMMAND)
        .arg(&certs.server_cert)
        .arg(&certs.server_key);
    let mut upstream_child =
        ChildProcess::spawn("canned upstream", command, &dir.join("upstream.log"))?;
    let upstream_addr = upstream_child.announced_address("listening on https://")?;
    let kubeconfig = dir.join("upstream.kubeconfig");
    write_kubeconfig(
        &kubeconfig,
        &format!("https://{upstream_addr}"),
        &certs.ca_cert,
    )?;
    // The binary, with `policy` written to `policy{suffix}.yaml` and its log in
    // `pathgate{suffix}.log`.
    let start = |binary: &Path, name: &str, suffix: &str, policy: &str| {
        let path = dir.join(format!("policy{suffix}.yaml"));
        std::fs::write(&path, policy)?;
        let command = serve_command(binary, &kubeconfig, &certs, &path);
        let mut child =
            ChildProcess::spawn(name, command, &dir.join(format!("pathgate{suffix}.log")))?;
        let addr = child.announced_address("pathgate listening on https://")?;
        anyhow::Ok((child, addr))
    };
    let start_binary =
        |name: &str, suffix: &str, policy: &str| start(&pathgate_binary, name, suffix, policy);

    // pathgate, the binary.
    let (mut pathgate_child, pathgate_addr) = start_binary("pathgate", "", POLICY)?;

    // pathgate in-process with allow_all.
    let mut command = Command::new(&me);
    command
        .arg(children::ALLOW_ALL_COMMAND)
        .arg(&kubeconfig)
        .arg(&certs.server_cert)
        .arg(&certs.server_key);
    let mut allow_all_child = ChildProcess::spawn(
        "pathgate allow_all",
        command,
        &dir.join("pathgate-allow-all.log"),
    )?;
    let allow_all_addr = allow_all_child.announced_address("pathgate listening on https://")?;

    // pathgate, the binary, with the ledger on: JSONL spool plus a webhook sink (the canned
    // upstream accepts the batches).
    let (mut ledger_child, ledger_addr) = start_binary(
        "pathgate ledger",
        "-ledger",
        &format!(
            "{POLICY}ledger:\n  dir: {}\n  webhook:\n    url: https://localhost:{}{}\n    ca_file: {}\n",
            dir.join("ledger").display(),
            upstream_addr.port(),
            upstream::LEDGER_PATH,
            certs.ca_cert.display()
        ),
    )?;

    // pathgate, the binary, with the spool alone (no sink): the writer's share of the cost.
    let (mut spool_child, spool_addr) = start_binary(
        "pathgate spool",
        "-spool",
        &format!(
            "{POLICY}ledger:\n  dir: {}\n",
            dir.join("ledger-spool").display()
        ),
    )?;

    // The baseline build, with the same policy as `pathgate`.
    let mut baseline = match &options.baseline {
        Some(binary) => Some(start(binary, "pathgate baseline", "-baseline", POLICY)?),
        None => None,
    };

    // HAProxy.
    let (haproxy_child, haproxy_addr) = start_haproxy(&dir, &certs, upstream_addr)?;

    // The Kubernetes-native peers, when asked for.
    let mut peers = Vec::new();
    if options.routes.contains(&Route::KubectlProxy) {
        let (child, addr) = peers::kubectl_proxy(&dir, &kubeconfig)?;
        peers.push((Route::KubectlProxy, child, addr));
    }
    if options.routes.contains(&Route::KubeRbacProxy) {
        let (child, addr) = peers::kube_rbac_proxy(&dir, &certs, upstream_addr, &kubeconfig)?;
        peers.push((Route::KubeRbacProxy, child, addr));
    }

    let cases = vec![
        Case {
            title: "small GET",
            path_and_query: upstream::SMALL_PATH,
            body_bytes: upstream::small_object().len(),
        },
        Case {
            title: "30 KB LIST",
            path_and_query: "/api/v1/namespaces/default/configmaps?limit=500",
            body_bytes: upstream::configmap_list().len(),
        },
    ];
    let expected = [upstream::small_object(), upstream::configmap_list()];
    let upstream_pid = upstream_child.pid();
    let routes = [
        (Route::Direct, upstream_addr, vec![upstream_pid]),
        (
            Route::Haproxy,
            haproxy_addr,
            vec![upstream_pid, haproxy_child.pid()],
        ),
        (
            Route::Pathgate,
            pathgate_addr,
            vec![upstream_pid, pathgate_child.pid()],
        ),
        (
            Route::PathgateAllowAll,
            allow_all_addr,
            vec![upstream_pid, allow_all_child.pid()],
        ),
        (
            Route::PathgateSpool,
            spool_addr,
            vec![upstream_pid, spool_child.pid()],
        ),
        (
            Route::PathgateLedger,
            ledger_addr,
            vec![upstream_pid, ledger_child.pid()],
        ),
    ];
    let mut routes = Vec::from(routes);
    if let Some((child, addr)) = &baseline {
        routes.push((Route::Baseline, *addr, vec![upstream_pid, child.pid()]));
    }
    for (route, child, addr) in &peers {
        routes.push((*route, *addr, vec![upstream_pid, child.pid()]));
    }

    // Every path answers every case with the canned body before anything is measured.
    let checker = client::trusting(&certs.ca_cert)?;
    for (route, addr, _) in &routes {
        for (case, body) in cases.iter().zip(&expected) {
            let url = format!(
                "{}://localhost:{}{}",
                route.scheme(),
                addr.port(),
                case.path_and_query
            );
            let (status, answer) = runtime.block_on(client::get(&checker, &url, TOKEN))?;
            if status != http::StatusCode::OK || answer != *body {
                bail!(
                    "{} answered {status} with {} bytes for {url} (expected 200 and the canned {} bytes): {}",
                    route.label(),
                    answer.len(),
                    body.len(),
                    String::from_utf8_lossy(&answer[..answer.len().min(300)])
                );
            }
        }
    }

    let routes: Vec<_> = routes
        .into_iter()
        .filter(|(route, _, _)| options.routes.contains(route))
        .collect();
    let mut measurements = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        for round in 0..options.rounds {
            // Odd rounds run the routes in reverse (A B C, C B A, ...): a machine that
            // speeds up or slows down during the run favours no route's position.
            let order: Vec<_> = if round % 2 == 0 {
                routes.iter().collect()
            } else {
                routes.iter().rev().collect()
            };
            for (route, addr, watched) in order {
                let url = format!(
                    "{}://127.0.0.1:{}{}",
                    route.scheme(),
                    addr.port(),
                    case.path_and_query
                );
                eprintln!(
                    "load benchmark: {} via {}, round {}/{}",
                    case.title,
                    route.label(),
                    round + 1,
                    options.rounds
                );
                let result = wrk.measure(&url, &options.settings, watched)?;
                eprintln!(
                    "  {:.0} req/s, p99 {:?}, {} errors",
                    result.requests_per_second(),
                    result.p99,
                    result.errors
                );
                measurements.push(Measurement {
                    case: index,
                    round,
                    route: *route,
                    result,
                });
            }
        }
        for child in [
            &mut upstream_child,
            &mut pathgate_child,
            &mut allow_all_child,
            &mut spool_child,
            &mut ledger_child,
        ] {
            child.fail_if_exited()?;
        }
        if let Some((child, _)) = &mut baseline {
            child.fail_if_exited()?;
        }
        for (_, child, _) in &mut peers {
            child.fail_if_exited()?;
        }
    }
    if routes
        .iter()
        .any(|(route, _, _)| *route == Route::PathgateLedger)
    {
        check_webhook_delivered(&dir)?;
    }
    drop(routes);
    drop(haproxy_child);
    drop(allow_all_child);
    drop(spool_child);
    drop(ledger_child);
    drop(pathgate_child);
    drop(baseline);
    drop(peers);
    drop(upstream_child);

    let (watch, mutations) = if options.watch || options.mutations {
        let (delays, mutations) =
            runtime.block_on(control_plane(&dir, &cluster_dir, &certs, options))?;
        (delays.map(|d| (d, options.watch_warmup)), mutations)
    } else {
        (None, None)
    };

    let report = Report {
        started,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        machine,
        tools: format!(
            "{}; {haproxy_version}{}; pathgate release build (debug=1)",
            wrk.version,
            peers::versions(&options.routes)?
        ),
        settings: options.settings.clone(),
        rounds: options.rounds,
        cases,
        measurements,
        watch,
    };
    let mut markdown = report.markdown();
    if let Some(mutations) = &mutations {
        markdown.push('\n');
        markdown.push_str(&mutations.markdown());
    }
    std::fs::write(dir.join("results.md"), &markdown)?;
    println!("{markdown}");
    eprintln!(
        "load benchmark: results in {}",
        dir.join("results.md").display()
    );
    Ok(())
}

/// The control plane, pathgate (binary) in front of it, the watches and the mutations.
async fn control_plane(
    dir: &Path,
    cluster_dir: &Path,
    certs: &pathgate::tls::CertFiles,
    options: &Options,
) -> anyhow::Result<(
    Option<watch::WatchDelays>,
    Option<mutation::MutationLatencies>,
)> {
    eprintln!(
        "load benchmark: starting the control plane in {}",
        cluster_dir.display()
    );
    let source = testcluster::ControlPlaneSource::of_workspace()?;
    let binaries = source.ensure_built()?;
    // Stopped when dropped, also on an error below.
    let durability = if options.durable_etcd {
        testcluster::Durability::Durable
    } else {
        testcluster::Durability::Throwaway
    };
    let cluster =
        testcluster::Cluster::start_with(cluster_dir, &binaries, &source.versions, durability)?;
    let running = cluster.info().clone();
    let token = running.admin_token()?;
    let watch = if options.watch && !options.mutations_only {
        Some(watch_latency(dir, &running, certs, &token, options).await?)
    } else {
        None
    };
    let mutations = if options.mutations || options.mutations_only {
        Some(mutation_latency(dir, &running, certs, &token, options).await?)
    } else {
        None
    };
    cluster.stop()?;
    Ok((watch, mutations))
}

/// The scale cases alone ([`scale`]): the control plane, pathgate in front of it with room
/// for the watches (`--max-connections`: each watch holds an upstream connection of its
/// own), the watches direct then through pathgate, then the soak.
async fn scale_cases(
    dir: &Path,
    cluster_dir: &Path,
    certs: &pathgate::tls::CertFiles,
    options: &Options,
) -> anyhow::Result<String> {
    let source = testcluster::ControlPlaneSource::of_workspace()?;
    let binaries = source.ensure_built()?;
    let cluster = testcluster::Cluster::start_with(
        cluster_dir,
        &binaries,
        &source.versions,
        testcluster::Durability::Throwaway,
    )?;
    let running = cluster.info().clone();
    let token = running.admin_token()?;
    let policy = format!(
        "{POLICY}ledger:\n  dir: {}\n",
        dir.join("ledger-scale").display()
    );
    let watches = options.scale.watches.unwrap_or(0);
    let limit = (watches + options.scale.watch_connections + 256).to_string();
    let extra = [
        "--max-connections",
        &limit,
        "--max-connections-per-peer",
        &limit,
    ];
    let binary = dir.join("pathgate");
    let (pathgate_child, addr) =
        control_plane_pathgate_extra(dir, &binary, &running, certs, "scale", &policy, &extra)?;
    let direct_client = client::trusting(&running.dir.ca_cert())?;
    let clients = |ca: &Path, count: usize| -> anyhow::Result<Vec<client::HttpsClient>> {
        (0..count).map(|_| client::trusting(ca)).collect()
    };
    let connections = options.scale.watch_connections;
    let direct = scale::Route {
        name: "direct",
        base_url: running.apiserver.clone(),
        clients: clients(&running.dir.ca_cert(), connections)?,
        pid: None,
    };
    let proxied = scale::Route {
        name: "pathgate",
        base_url: format!("https://localhost:{}", addr.port()),
        clients: clients(&certs.ca_cert, connections)?,
        pid: Some(pathgate_child.pid()),
    };
    let mut markdown = String::new();
    if watches > 0 {
        let mut results = Vec::new();
        for route in [&direct, &proxied] {
            eprintln!("load benchmark: {watches} watches, {}", route.name);
            let events = options.scale.events;
            let api = &running.apiserver;
            results
                .push(scale::watches(route, &direct_client, api, &token, watches, events).await?);
        }
        markdown.push_str(&scale::watches_markdown(&results, options.scale.events));
    }
    if let Some(load) = &options.scale.soak {
        eprintln!("load benchmark: soak, {} s", load.duration.as_secs());
        let samples =
            scale::soak(&proxied, &direct_client, &running.apiserver, &token, load).await?;
        markdown.push('\n');
        markdown.push_str(&scale::soak_markdown(&samples, load));
    }
    drop(pathgate_child);
    cluster.stop()?;
    Ok(markdown)
}

/// `pathgate serve` (passthrough, observe mode, `policy`) in front of the control plane.
fn control_plane_pathgate(
    dir: &Path,
    binary: &Path,
    running: &testcluster::RunningCluster,
    certs: &pathgate::tls::CertFiles,
    name: &str,
    policy: &str,
) -> anyhow::Result<(ChildProcess, std::net::SocketAddr)> {
    control_plane_pathgate_extra(dir, binary, running, certs, name, policy, &[])
}

/// [`control_plane_pathgate`] with `extra` flags.
fn control_plane_pathgate_extra(
    dir: &Path,
    binary: &Path,
    running: &testcluster::RunningCluster,
    certs: &pathgate::tls::CertFiles,
    name: &str,
    policy: &str,
    extra: &[&str],
) -> anyhow::Result<(ChildProcess, std::net::SocketAddr)> {
    let config = dir.join(format!("policy-{name}.yaml"));
    std::fs::write(&config, policy)?;
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .arg("--upstream-kubeconfig")
        .arg(running.dir.admin_kubeconfig())
        .args([
            "--auth",
            "passthrough",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
        ])
        .arg("--tls-cert")
        .arg(&certs.server_cert)
        .arg("--tls-key")
        .arg(&certs.server_key)
        .arg("--config")
        .arg(&config)
        .args(["--mode", "observe"])
        .args(extra);
    let mut child = ChildProcess::spawn(
        &format!("pathgate ({name})"),
        command,
        &dir.join(format!("pathgate-{name}.log")),
    )?;
    let addr = child.announced_address("pathgate listening on https://")?;
    Ok((child, addr))
}

/// Two watches, one direct and one through pathgate.
async fn watch_latency(
    dir: &Path,
    running: &testcluster::RunningCluster,
    certs: &pathgate::tls::CertFiles,
    token: &str,
    options: &Options,
) -> anyhow::Result<watch::WatchDelays> {
    let (pathgate_child, pathgate_addr) =
        control_plane_pathgate(dir, &dir.join("pathgate"), running, certs, "watch", POLICY)?;
    let direct = watch::WatchTarget {
        base_url: running.apiserver.clone(),
        client: client::trusting(&running.dir.ca_cert())?,
    };
    let through_pathgate = watch::WatchTarget {
        base_url: format!("https://localhost:{}", pathgate_addr.port()),
        client: client::trusting(&certs.ca_cert)?,
    };
    eprintln!(
        "load benchmark: watch latency, {} events",
        options.watch_events
    );
    let delays = watch::measure(
        direct,
        through_pathgate,
        token,
        options.watch_warmup,
        options.watch_events,
    )
    .await;
    drop(pathgate_child);
    delays
}

/// One-at-a-time GETs and merge PATCHes, direct and through pathgate with its ledger on.
async fn mutation_latency(
    dir: &Path,
    running: &testcluster::RunningCluster,
    certs: &pathgate::tls::CertFiles,
    token: &str,
    options: &Options,
) -> anyhow::Result<mutation::MutationLatencies> {
    let policy = format!(
        "{POLICY}ledger:\n  dir: {}\n",
        dir.join("ledger-mutations").display()
    );
    let (pathgate_child, pathgate_addr) = control_plane_pathgate(
        dir,
        &dir.join("pathgate"),
        running,
        certs,
        "mutations",
        &policy,
    )?;
    let baseline = match &options.baseline {
        Some(binary) => {
            let policy = format!(
                "{POLICY}ledger:\n  dir: {}\n",
                dir.join("ledger-mutations-baseline").display()
            );
            Some(control_plane_pathgate(
                dir,
                binary,
                running,
                certs,
                "mutations-baseline",
                &policy,
            )?)
        }
        None => None,
    };
    let through = |addr: std::net::SocketAddr| -> anyhow::Result<mutation::Target> {
        Ok(mutation::Target {
            base_url: format!("https://localhost:{}", addr.port()),
            client: client::trusting(&certs.ca_cert)?,
        })
    };
    let mut routes = vec![
        (
            "direct",
            mutation::Target {
                base_url: running.apiserver.clone(),
                client: client::trusting(&running.dir.ca_cert())?,
            },
        ),
        ("pathgate", through(pathgate_addr)?),
    ];
    if let Some((_, addr)) = &baseline {
        routes.push(("baseline", through(*addr)?));
    }
    eprintln!(
        "load benchmark: mutations and reads, {} requests per operation and route",
        options.mutation_requests
    );
    let rounds = options.rounds.max(2);
    let latencies = mutation::measure(routes, token, rounds, options.mutation_requests, 10)
        .await
        .map(|latencies| mutation::MutationLatencies {
            durable_etcd: options.durable_etcd,
            ..latencies
        });
    drop(baseline);
    drop(pathgate_child);
    latencies
}

/// Copies this checkout's `pathgate` binary into the run directory at once.
///
/// With a `CARGO_TARGET_DIR` shared between checkouts, another checkout's build can replace
/// `target/release/pathgate` at any time. The binary measured must be built from this
/// checkout: its debug info names this directory (`debug = 1` in the release profile), so
/// when the uplifted file does not, the newest `deps/pathgate-*` that does is used instead.
/// The ledger-on route measured a webhook sink that delivered: its cursor moved past the
/// spool's start (the cursor file lags delivery by up to a second) and it logged no failed
/// delivery. A sink failing in the background would make the route look cheaper than it is.
fn check_webhook_delivered(dir: &Path) -> anyhow::Result<()> {
    let cursor_path = dir.join("ledger").join("cursor-webhook.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let cursor: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&cursor_path)
                .with_context(|| format!("reading {}", cursor_path.display()))?,
        )
        .with_context(|| format!("parsing {}", cursor_path.display()))?;
        if cursor["segment"].as_u64() > Some(1) || cursor["offset"].as_u64() > Some(0) {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the ledger route's webhook sink delivered nothing ({} is {cursor}); see {}",
                cursor_path.display(),
                dir.join("pathgate-ledger.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(dir.join("pathgate-ledger.log"))?;
    if let Some(line) = log.lines().find(|line| line.contains("delivery failed")) {
        bail!("the ledger route's webhook sink failed during the run: {line}");
    }
    Ok(())
}

fn copy_pathgate_binary(dir: &Path) -> anyhow::Result<PathBuf> {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_pathgate"));
    let mut marker = env!("CARGO_MANIFEST_DIR").as_bytes().to_vec();
    marker.push(0);
    let is_ours = |path: &Path| {
        std::fs::read(path).is_ok_and(|bytes| {
            bytes
                .windows(marker.len())
                .any(|window| window == marker.as_slice())
        })
    };
    let chosen = if is_ours(&built) {
        built.clone()
    } else {
        let deps = built
            .parent()
            .map(|release| release.join("deps"))
            .context("the pathgate binary has no directory")?;
        let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&deps)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.starts_with("pathgate-") && path.extension().is_none()
            })
            .filter_map(|path| Some((path.metadata().ok()?.modified().ok()?, path)))
            .collect();
        candidates.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        candidates
            .into_iter()
            .map(|(_, path)| path)
            .find(|path| {
                Command::new(path)
                    .args(["serve", "--help"])
                    .output()
                    .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--mode"))
                    && is_ours(path)
            })
            .with_context(|| {
                format!(
                    "{} was built from another checkout (shared target dir) and no pathgate binary of {} is in {}; rebuild and rerun",
                    built.display(),
                    env!("CARGO_MANIFEST_DIR"),
                    deps.display()
                )
            })?
    };
    if chosen != built {
        eprintln!(
            "load benchmark: {} is another checkout's build; using {}",
            built.display(),
            chosen.display()
        );
    }
    let copy = dir.join("pathgate");
    std::fs::copy(&chosen, &copy).with_context(|| format!("copying {}", chosen.display()))?;
    Ok(copy)
}

/// `pathgate serve` in observe mode with `config`, on a free port, in front of the upstream.
fn serve_command(
    binary: &Path,
    kubeconfig: &Path,
    certs: &pathgate::tls::CertFiles,
    config: &Path,
) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .arg("--upstream-kubeconfig")
        .arg(kubeconfig)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .arg("--tls-cert")
        .arg(&certs.server_cert)
        .arg("--tls-key")
        .arg(&certs.server_key)
        .arg("--config")
        .arg(config)
        .args(["--mode", "observe"]);
    command
}

fn start_haproxy(
    dir: &Path,
    certs: &pathgate::tls::CertFiles,
    upstream: std::net::SocketAddr,
) -> anyhow::Result<(ChildProcess, std::net::SocketAddr)> {
    // HAProxy reads certificate and key from one file.
    let pem = dir.join("haproxy.pem");
    let mut combined = std::fs::read(&certs.server_cert)?;
    combined.extend(std::fs::read(&certs.server_key)?);
    std::fs::write(&pem, combined)?;
    let config = dir.join("haproxy.cfg");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = children::free_loopback_port()?;
        std::fs::write(
            &config,
            haproxy_config(port, &pem, &certs.ca_cert, upstream, running_as_root()),
        )?;
        let mut command = Command::new("haproxy");
        command.arg("-db").arg("-f").arg(&config);
        let mut child = ChildProcess::spawn("haproxy", command, &dir.join("haproxy.log"))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        match child.wait_listening(addr) {
            Ok(()) => return Ok((child, addr)),
            Err(error) if attempt < 2 => {
                eprintln!(
                    "load benchmark: HAProxy did not start ({error:#}); retrying on another port"
                );
            }
            Err(error) => return Err(error),
        }
    }
}

/// TLS termination on loopback, re-encryption to the upstream verified against its CA,
/// HTTP/2 upstream when offered (as pathgate), two threads, and one access-log line per
/// request on stderr (into its log file), as pathgate writes one per request.
fn haproxy_config(
    port: u16,
    pem: &Path,
    ca: &Path,
    upstream: std::net::SocketAddr,
    drop_privileges: bool,
) -> String {
    let user = if drop_privileges {
        // Started as root: HAProxy reads its files, then runs as nobody.
        "    uid 65534\n    gid 65534\n"
    } else {
        ""
    };
    format!(
        "# Written by the pathgate load benchmark.
global
    nbthread 2
    maxconn 4096
    log stderr format raw local0 info
{user}
defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive

frontend bench
    bind 127.0.0.1:{port} ssl crt {pem} alpn h2,http/1.1
    default_backend canned

backend canned
    server upstream {upstream} ssl verify required ca-file {ca} alpn h2,http/1.1
",
        pem = pem.display(),
        ca = ca.display(),
    )
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn haproxy_version() -> anyhow::Result<String> {
    let output = Command::new("haproxy").arg("-v").output().context(
        "HAProxy is not installed: `apt-get install -y haproxy` (Debian) provides the reference proxy",
    )?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or("HAProxy")
        .split(" - ")
        .next()
        .unwrap_or("HAProxy")
        .trim()
        .to_string())
}

fn machine_description() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores (nproc), {model}, Linux {}", kernel.trim())
}

/// A kubeconfig for the canned upstream: its URL and CA, no credentials (passthrough).
fn write_kubeconfig(path: &Path, server: &str, ca: &Path) -> anyhow::Result<()> {
    let ca_data = base64::engine::general_purpose::STANDARD.encode(std::fs::read(ca)?);
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "canned", "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": "client", "user": {}}],
        "contexts": [{"name": "canned", "context": {"cluster": "canned", "user": "client"}}],
        "current-context": "canned",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&kubeconfig)?)?;
    Ok(())
}
