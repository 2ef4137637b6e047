//! The scenario benchmark: `cargo bench --bench scenarios` (docs/scenarios.md).
//!
//! Runs every scenario x path x arm under `benches/scenarios/` through `pathgate run`, each
//! in its own namespace and session, two at a time, judges each with the autopsy, and
//! prints and writes (to `target/scenarios/`) the study's table per arm, the violations per
//! category, one row per run and the HTML report of every run; then runs the unsafe and
//! failing paths again under `--mode enforce` and reports what was blocked and what the
//! agent saw. With `--agent-cmd CMD` it runs CMD once per scenario instead of the scripted
//! paths (the task in `PATHGATE_TASK`).
//!
//! Options (after `cargo bench --bench scenarios --`): `--scenario NAME` and `--arm ARM`
//! (repeatable filters), `--agent-cmd CMD`, `--parallel N` (2), `--timeout S` (120),
//! `--no-enforce`, `--out DIR`, `--pathgate BINARY` (another build than this one's). The control plane is `PATHGATE_CLUSTER_DIR`'s when set,
//! otherwise one started for the run in `DIR/cluster`.
//!
//! It is a `harness = false` bench target: a `cargo test --benches` that runs the binary
//! without `--bench` returns at once. Exit code 1 when a run had a harness error or a
//! scripted path's verdict is not the one it was written for.

mod harness;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use harness::gate::Mode;
use harness::scenario::{Arm, Expect, Scenario};
use harness::suite::{self, Settings};
use harness::{table, Tools};

struct Options {
    scenarios: Vec<String>,
    arms: Vec<Arm>,
    agent_cmd: Option<String>,
    parallel: usize,
    timeout: Duration,
    enforce: bool,
    out: PathBuf,
    /// Another pathgate build to run the scenarios through (`--pathgate BINARY`).
    pathgate: Option<PathBuf>,
}

fn value(args: &mut std::slice::Iter<String>, flag: &str) -> anyhow::Result<String> {
    args.next()
        .cloned()
        .with_context(|| format!("{flag} needs a value"))
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            scenarios: vec![],
            arms: vec![],
            agent_cmd: None,
            parallel: 2,
            timeout: Duration::from_secs(120),
            enforce: true,
            out: harness::workspace_root().join("target/scenarios"),
            pathgate: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => {}
                "--scenario" => options.scenarios.push(value(&mut args, arg)?),
                "--arm" => {
                    let arm = value(&mut args, arg)?;
                    options
                        .arms
                        .push(serde_yaml::from_str(&arm).with_context(|| {
                            format!("--arm {arm}: expected kubectl, flux159 or containers")
                        })?);
                }
                "--agent-cmd" => options.agent_cmd = Some(value(&mut args, arg)?),
                "--parallel" => {
                    options.parallel = value(&mut args, arg)?.parse().context("--parallel")?
                }
                "--timeout" => {
                    options.timeout =
                        Duration::from_secs(value(&mut args, arg)?.parse().context("--timeout")?)
                }
                "--no-enforce" => options.enforce = false,
                "--out" => options.out = PathBuf::from(value(&mut args, arg)?),
                "--pathgate" => options.pathgate = Some(PathBuf::from(value(&mut args, arg)?)),
                other => bail!("unknown option {other:?} (see benches/scenarios/main.rs)"),
            }
        }
        Ok(options)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("scenarios: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// A running control plane: the caller's, or one started (and stopped) here.
enum ControlPlane {
    Given(testcluster::RunningCluster),
    Started(testcluster::Cluster),
}

impl ControlPlane {
    fn get(out: &std::path::Path) -> anyhow::Result<ControlPlane> {
        if std::env::var_os(testcluster::CLUSTER_DIR_ENV).is_some() {
            return Ok(ControlPlane::Given(testcluster::RunningCluster::from_env()?));
        }
        let dir = out.join("cluster");
        testcluster::stop_dir(&dir)?;
        let source = testcluster::ControlPlaneSource::of_workspace()?;
        let binaries = source.ensure_built()?;
        eprintln!("scenarios: starting the control plane in {}", dir.display());
        Ok(ControlPlane::Started(testcluster::Cluster::start(
            &dir,
            &binaries,
            &source.versions,
        )?))
    }

    fn info(&self) -> &testcluster::RunningCluster {
        match self {
            ControlPlane::Given(running) => running,
            ControlPlane::Started(cluster) => cluster.info(),
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<bool> {
    let options = Options::parse(args)?;
    std::fs::create_dir_all(&options.out)?;
    let scenarios: Vec<Arc<Scenario>> = Scenario::load_all(&harness::scenarios_root())?
        .into_iter()
        .filter(|s| options.scenarios.is_empty() || options.scenarios.contains(&s.name))
        .map(Arc::new)
        .collect();
    if scenarios.is_empty() {
        bail!("no scenario matches {:?}", options.scenarios);
    }
    let control_plane = ControlPlane::get(&options.out)?;
    let cluster = control_plane.info();
    let pathgate = options
        .pathgate
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pathgate")));
    let tools = Tools::find(&pathgate, &cluster.kubectl, &cluster.dir.admin_kubeconfig())?;
    let settings = Settings {
        parallel: options.parallel,
        out: options.out.join("runs"),
        timeout: options.timeout,
    };
    let (observe, enforce) = match &options.agent_cmd {
        Some(command) => (
            suite::run_all(&tools, suite::agent_jobs(&scenarios, command), &settings),
            vec![],
        ),
        None => {
            let observe = suite::run_all(
                &tools,
                suite::scripted_jobs(&scenarios, &options.arms, Mode::Observe),
                &settings,
            );
            let enforce = if options.enforce {
                let unsafe_jobs = suite::scripted_jobs(&scenarios, &options.arms, Mode::Enforce)
                    .into_iter()
                    .filter(|job| job.expect() != Some(Expect::SafePass))
                    .collect();
                suite::run_all(&tools, unsafe_jobs, &settings)
            } else {
                vec![]
            };
            (observe, enforce)
        }
    };
    let markdown = table::markdown(&observe, &enforce);
    println!("{markdown}");
    std::fs::write(options.out.join("table.md"), &markdown)?;
    std::fs::write(
        options.out.join("results.json"),
        serde_json::to_string_pretty(&table::json(&observe, &enforce))? + "\n",
    )?;
    std::fs::write(options.out.join("report.html"), table::html(&observe))?;
    if !enforce.is_empty() {
        std::fs::write(
            options.out.join("report-enforce.html"),
            table::html(&enforce),
        )?;
    }
    eprintln!(
        "scenarios: wrote table.md, results.json and report.html to {}",
        options.out.display()
    );
    if let ControlPlane::Started(cluster) = control_plane {
        cluster.stop()?;
    }
    let all = || observe.iter().chain(&enforce);
    let errors = all().filter(|r| r.outcome.is_err()).count();
    let mismatches = observe
        .iter()
        .filter(|r| r.as_expected() == Some(false))
        .count();
    if errors + mismatches > 0 {
        eprintln!("scenarios: {errors} harness error(s), {mismatches} verdict(s) other than the path was written for");
    }
    Ok(errors + mismatches == 0)
}
