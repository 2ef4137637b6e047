//! `cargo xtask`: the project's commands around its test control plane.
//!
//! - `cluster up [--dir DIR]` / `cluster down [--dir DIR]`: a cluster for humans and demos;
//! - `build-controlplane`: build (or reuse) kube-apiserver, kubectl and etcd;
//! - `prepare`: build (or reuse) every test prerequisite: the control plane, the Go-built
//!   tools (`testcluster::tools`), Debian's prometheus and chromium, the image's static binary,
//!   the scenario benchmark's MCP servers (`npm ci`, module `mcp`) and its MCP driver;
//! - `test [-- ARGS]`: prepare, start a cluster, run every test against it, stop it;
//! - `image [--tag TAG]`: build the container image into the host's podman store (module
//!   `image`).
//!
//! Everything real lives in the `testcluster` crate, which the integration tests share; this
//! binary parses arguments, prints progress and turns outcomes into exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use testcluster::{workspace_root, Cluster, ControlPlaneSource, CLUSTER_DIR_ENV};

mod image;
mod mcp;

/// Project automation for pathgate.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Start or stop a local control plane (etcd + kube-apiserver on loopback).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Build kube-apiserver, kubectl and etcd from their Go modules, or reuse the cache.
    BuildControlplane,
    /// Build or reuse every test prerequisite (control plane, Go-built tools, Debian
    /// packages, the image's static binary).
    Prepare,
    /// Build the container image (static pathgate + Containerfile) into podman's store.
    Image {
        /// The image's name and tag [default: localhost/pathgate:<the binary's version>].
        #[arg(long)]
        tag: Option<String>,
    },
    /// Build or reuse the control plane, start a cluster, run all tests against it, stop it.
    ///
    /// Arguments after `--` go to `cargo nextest run` (or `cargo test` without nextest).
    Test {
        /// Extra arguments for the test runner.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Start a cluster in the background and return once it is ready.
    Up {
        /// Directory for its kubeconfigs, certificates, logs and data.
        #[arg(long, default_value_os_t = default_cluster_dir())]
        dir: PathBuf,
    },
    /// Stop the cluster started in DIR.
    Down {
        /// The directory given to `cluster up`.
        #[arg(long, default_value_os_t = default_cluster_dir())]
        dir: PathBuf,
    },
}

fn default_cluster_dir() -> PathBuf {
    workspace_root().join("target/cluster")
}

/// Where `cargo xtask test` runs its cluster, apart from the one a human may have up.
fn test_cluster_dir() -> PathBuf {
    workspace_root().join("target/cluster-test")
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // SIGINT/SIGTERM must not end this process before it stops the servers it started:
    // they sit in their own process groups, so nothing else would stop them. Children get
    // the default dispositions back at exec, so Ctrl-C still ends the test runner.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("xtask: interrupted again; stopping the control plane first");
        } else {
            eprintln!("xtask: interrupted; stopping the control plane");
        }
    })
    .context("installing the signal handler")?;

    match cli.command {
        Task::BuildControlplane => {
            let binaries = ControlPlaneSource::of_workspace()?.ensure_built()?;
            println!("{}", binaries.dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Task::Prepare => {
            prepare()?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Image { tag } => {
            image::build_image(tag.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Cluster {
            action: ClusterAction::Up { dir },
        } => cluster_up(&dir, &interrupted),
        Task::Cluster {
            action: ClusterAction::Down { dir },
        } => {
            if testcluster::stop_dir(&dir)? {
                eprintln!("xtask: stopped the cluster in {}", dir.display());
            } else {
                eprintln!("xtask: no cluster running in {}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Task::Test { args } => test(&args, &interrupted),
    }
}

fn start(dir: &Path) -> anyhow::Result<Cluster> {
    let source = ControlPlaneSource::of_workspace()?;
    let binaries = source.ensure_built()?;
    eprintln!(
        "xtask: starting kube-apiserver {} and etcd {} in {}",
        source.versions.kubernetes,
        source.versions.etcd,
        dir.display()
    );
    let started = Instant::now();
    let cluster = Cluster::start(dir, &binaries, &source.versions)
        .with_context(|| format!("starting the control plane in {}", dir.display()))?;
    eprintln!(
        "xtask: control plane ready at {} in {:.1} s",
        cluster.info().apiserver,
        started.elapsed().as_secs_f64()
    );
    Ok(cluster)
}

fn cluster_up(dir: &Path, interrupted: &AtomicBool) -> anyhow::Result<ExitCode> {
    let cluster = start(dir)?;
    if interrupted.load(Ordering::SeqCst) {
        cluster.stop()?;
        return Ok(ExitCode::from(130));
    }
    let running = cluster.detach();
    let env = running.dir.env_file();
    println!(
        "Cluster running. Use it with:\n  source {env}\n  \"$KUBECTL\" get namespaces\nStop it with:\n  cargo xtask cluster down{}",
        if dir == default_cluster_dir() {
            String::new()
        } else {
            format!(" --dir {}", dir.display())
        },
        env = env.display(),
    );
    Ok(ExitCode::SUCCESS)
}

/// The Debian packages the tests run, each with a file that shows it is installed:
/// `prometheus` (a test scrapes pathgate with it; `promtool` checks the alert rules),
/// `chromium` (the autopsy's HTML report is loaded in it headless), and for the container
/// image podman (whose buildah builds it; the tests run it), runc (podman's default crun
/// refuses a cgroup v1 host with an empty v2 mount, as these machines have) and musl-tools
/// (`musl-gcc` for ring's and mimalloc's C code); node and npm install and run the scenario
/// benchmark's MCP servers.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("nodejs", "/usr/bin/node"),
    ("npm", "/usr/bin/npm"),
    ("prometheus", "/usr/bin/prometheus"),
    ("chromium", "/usr/bin/chromium"),
    ("podman", "/usr/bin/podman"),
    ("runc", "/usr/sbin/runc"),
    ("musl-tools", "/usr/bin/musl-gcc"),
];

/// Installs the [`DEBIAN_PACKAGES`] that are missing with apt-get, as the README says. A
/// machine whose package lists are empty or stale gets `apt-get update` once, then a retry.
fn ensure_debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing Debian's {} with apt-get",
        missing.join(", ")
    );
    if apt_get(&["install", "-y", "-qq"], &missing)? {
        return Ok(());
    }
    eprintln!("xtask: apt-get install failed; updating the package lists and retrying");
    if !apt_get(&["update", "-qq"], &[])? || !apt_get(&["install", "-y", "-qq"], &missing)? {
        bail!(
            "apt-get could not install {}; install these Debian packages",
            missing.join(" ")
        );
    }
    Ok(())
}

fn apt_get(args: &[&str], packages: &[&str]) -> anyhow::Result<bool> {
    let status = Command::new("apt-get")
        .args(args)
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .context("running apt-get")?;
    Ok(status.success())
}

/// `deploy/check.sh`: promtool checks and unit-tests the alert rules.
fn check_deploy() -> anyhow::Result<()> {
    let status = Command::new("bash")
        .arg(workspace_root().join("deploy/check.sh"))
        .status()
        .context("running deploy/check.sh")?;
    if !status.success() {
        bail!("deploy/check.sh failed ({status})");
    }
    Ok(())
}

/// Builds or reuses everything the tests run, one after the other, before any test starts:
/// tests only look these up, so none of them builds (or races another to build) anything.
fn prepare() -> anyhow::Result<()> {
    let started = Instant::now();
    ensure_debian_packages()?;
    let binaries = ControlPlaneSource::of_workspace()?.ensure_built()?;
    eprintln!("xtask: control plane ready in {}", binaries.dir.display());
    for tool in testcluster::tools::ALL {
        let binary = tool
            .ensure_built()
            .with_context(|| format!("preparing {}", tool.name))?;
        eprintln!("xtask: {} ready at {}", tool.name, binary.display());
    }
    image::build_static_binary().context("preparing the image's static binary")?;
    mcp::ensure_servers().context("preparing the scenario benchmark's MCP servers")?;
    mcp::build_driver().context("building the MCP driver")?;
    eprintln!(
        "xtask: every test prerequisite ready ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn test(extra_args: &[String], interrupted: &AtomicBool) -> anyhow::Result<ExitCode> {
    prepare()?;
    check_deploy()?;
    let dir = test_cluster_dir();
    // The guard stops the cluster however this function ends: error, panic or success.
    let cluster = start(&dir)?;
    if interrupted.load(Ordering::SeqCst) {
        cluster.stop()?;
        return Ok(ExitCode::from(130));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    if nextest_available(&cargo) {
        command.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        eprintln!("xtask: cargo-nextest not found; running `cargo test` instead");
        command.args(["test", "--workspace", "--no-fail-fast"]);
    }
    let running = cluster.info();
    command
        .args(extra_args)
        .current_dir(workspace_root())
        .env(CLUSTER_DIR_ENV, running.dir.root())
        .env("KUBECTL", &running.kubectl)
        .env("KUBECONFIG", running.dir.admin_kubeconfig());
    eprintln!("xtask: running {command:?}");
    let status = command.status().context("running the test suite")?;
    cluster.stop().context("stopping the control plane")?;
    if interrupted.load(Ordering::SeqCst) {
        return Ok(ExitCode::from(130));
    }
    if !status.success() {
        bail!("the test suite failed ({status})");
    }
    eprintln!("xtask: all tests passed; control plane stopped");
    Ok(ExitCode::SUCCESS)
}

fn nextest_available(cargo: &std::ffi::OsStr) -> bool {
    Command::new(cargo)
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
