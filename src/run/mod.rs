//! `pathgate run`: one agent run, end to end — a gateway (started for the run, or one
//! already running), a fresh session and its kubeconfig, the agent command with a
//! timeout, the final-state check, and the autopsy's verdict as the exit code.
//!
//! The judging is the autopsy's ([`crate::autopsy`]): the same ledger fields, the same run
//! policy, the same final-state sources. This module only arranges a run around it.
//! docs/run.md is the user's manual.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`args`] | the command line ([`RunArgs`]) and its translation into [`RunOptions`] |
//! | [`workdir`] | session ids, the run's private directories, the throwaway certificates |
//! | [`gateway`] | starting/stopping the in-process gateway, probing a running one, the agent's kubeconfig, the ledger settling |
//! | [`agent`] | CMD: environment, captured output, timeout, process-group kill |
//! | [`verdict`] | the autopsy of the session and the exit codes |
//! | [`summary`] | the `pathgate.run/v1` summary and its text rendering |
//!
//! # Phases
//!
//! Everything that can be checked before CMD runs is (the policy and checks files, the
//! task file, the gateway and the apiserver behind it), so a broken setup gives no
//! verdict instead of a verdict on an agent that could not work. Then: CMD to its end or
//! its timeout; the gateway stopped (its ledger flushed) or, for `--gateway`, its ledger
//! given time to settle; the final state; the autopsy; the reports.

pub mod agent;
pub mod args;
pub mod gateway;
pub mod summary;
pub mod verdict;
pub mod workdir;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::autopsy::command::FinalStateSource;
use crate::autopsy::RunPolicy;
use crate::upstream::UpstreamSource;

pub use args::RunArgs;
pub use summary::{Summary, SummaryFormat};

use agent::{AgentOutcome, AgentSpec};
use gateway::{GatewayError, StartGateway};
use summary::Reports;

/// The variables CMD is given.
pub const ENV_KUBECONFIG: &str = "KUBECONFIG";
pub const ENV_SESSION: &str = "PATHGATE_SESSION";
pub const ENV_TASK: &str = "PATHGATE_TASK";
pub const ENV_LEDGER: &str = "PATHGATE_LEDGER";

/// Where the run's requests go.
pub enum GatewayPlan {
    /// A pathgate started for the run, on loopback.
    Start {
        gateway: Box<StartGateway>,
        /// The CA of its serving certificate (embedded in the agent's kubeconfig).
        ca: PathBuf,
        /// The throwaway certificates, removed when the run ends.
        certs: Option<workdir::Throwaway>,
    },
    /// A pathgate already running (`--gateway`), whose spool is `ledger_dir`.
    Existing { url: String, ca: PathBuf },
}

/// The bearer token in the agent's kubeconfig.
#[derive(Debug, Clone)]
pub enum AgentToken {
    /// `--token`.
    Given(String),
    /// Passthrough without `--token`: the upstream kubeconfig's own token, so the agent
    /// acts as the identity it would have had without pathgate.
    FromUpstream(UpstreamSource),
    /// The placeholder a sidecar gateway drops (it presents its own credentials).
    Placeholder,
}

/// Everything a run needs, validated.
pub struct RunOptions {
    pub session: String,
    pub gateway: GatewayPlan,
    pub token: AgentToken,
    /// The default namespace of the agent's kubeconfig.
    pub namespace: Option<String>,
    pub command: Vec<String>,
    pub task: Option<String>,
    pub timeout: Duration,
    pub policy: RunPolicy,
    pub final_state: FinalStateSource,
    pub out_dir: PathBuf,
    pub ledger_dir: PathBuf,
    /// Copy CMD's output to stderr while it runs (not `--quiet`).
    pub tee: bool,
    /// Threads of the runtime that serves the in-process gateway.
    pub workers: usize,
}

/// Why a run has no verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Args(#[from] args::ArgsError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
    #[error("the agent's token: {0}")]
    Token(#[from] crate::upstream::UpstreamError),
    #[error("the final state cannot be established: {0}")]
    FinalState(#[from] crate::autopsy::checks::FinalStateError),
    #[error("the ledger {dir} cannot be read: {source}")]
    Ledger {
        dir: PathBuf,
        source: crate::autopsy::InputError,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl RunOptions {
    fn file(&self, name: &str) -> PathBuf {
        self.out_dir.join(name)
    }
}

/// Runs the agent and judges the run (`started`: when pathgate run began); the summary
/// says what happened, verdict or not, and the text report comes with a verdict.
pub fn execute(options: RunOptions, started: Instant) -> (Summary, Option<String>) {
    let mut summary = Summary::begin(
        &options.session,
        options.ledger_dir.clone(),
        options.out_dir.clone(),
    );
    let text = match drive(options, &mut summary) {
        Ok(text) => Some(text),
        Err(error) => {
            summary.no_verdict(&error);
            None
        }
    };
    summary.duration_seconds = started.elapsed().as_secs_f64();
    (summary, text)
}

/// The phases; returns the autopsy's text report.
fn drive(options: RunOptions, summary: &mut Summary) -> Result<String, RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers.max(1))
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let agent = runtime.block_on(through_gateway(&options, summary))?;
    drop(runtime);
    summary.agent = Some(agent);
    // Synchronous: the checks run on a runtime of their own.
    let final_state = crate::autopsy::command::final_state(&options.final_state)?;
    let run = verdict::judge(
        &options.ledger_dir,
        &options.session,
        options.policy.clone(),
        final_state,
    )
    .map_err(|source| RunError::Ledger {
        dir: options.ledger_dir.clone(),
        source,
    })?;
    let (reports, text) = write_reports(&options, &run)?;
    summary.judged(run, reports);
    Ok(text)
}

/// Writes `autopsy.json` (without the timeline) and `autopsy.html`; returns their paths
/// and the text report.
fn write_reports(
    options: &RunOptions,
    run: &crate::autopsy::Run,
) -> Result<(Reports, String), RunError> {
    use crate::report::{self, Format};
    let reports = Reports {
        json: options.file("autopsy.json"),
        html: options.file("autopsy.html"),
    };
    let mut without_timeline = run.clone();
    without_timeline.timeline = None;
    write(
        &reports.json,
        &report::json(std::slice::from_ref(&without_timeline), None),
    )?;
    let runs = std::slice::from_ref(run);
    write(&reports.html, &report::render(Format::Html, runs, None))?;
    Ok((reports, report::render(Format::Text, runs, None)))
}

fn write(path: &std::path::Path, text: &str) -> Result<(), RunError> {
    std::fs::write(path, text).map_err(|source| RunError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Gateway up, kubeconfig, CMD, gateway down (or its ledger settled).
async fn through_gateway(
    options: &RunOptions,
    summary: &mut Summary,
) -> Result<AgentOutcome, RunError> {
    let kubeconfig = options.file("kubeconfig");
    let token = agent_token(&options.token).await?;
    match &options.gateway {
        GatewayPlan::Existing { url, ca } => {
            gateway::probe(url, ca).await?;
            summary.gateway = Some(url.clone());
            write_kubeconfig(options, url, ca, token.as_deref(), &kubeconfig, summary)?;
            let outcome = agent::run(&agent_spec(options, &kubeconfig)).await?;
            gateway::settle(&options.ledger_dir, &options.session).await?;
            Ok(outcome)
        }
        GatewayPlan::Start { gateway, ca, .. } => {
            let started = gateway.start().await?;
            summary.gateway = Some(started.url.clone());
            let url = started.url.clone();
            let outcome =
                match write_kubeconfig(options, &url, ca, token.as_deref(), &kubeconfig, summary) {
                    Ok(()) => agent::run(&agent_spec(options, &kubeconfig))
                        .await
                        .map_err(RunError::from),
                    Err(error) => Err(error),
                };
            // Stopped whatever happened: the drain flushes every recorded entry.
            started.stop().await;
            outcome
        }
    }
}

fn write_kubeconfig(
    options: &RunOptions,
    url: &str,
    ca: &std::path::Path,
    token: Option<&str>,
    out: &std::path::Path,
    summary: &mut Summary,
) -> Result<(), RunError> {
    gateway::write_kubeconfig(
        url,
        &options.session,
        ca,
        token,
        options.namespace.as_deref(),
        out,
    )?;
    summary.kubeconfig = Some(out.to_path_buf());
    Ok(())
}

/// The token the agent's kubeconfig carries (`None`: the placeholder).
async fn agent_token(token: &AgentToken) -> Result<Option<String>, RunError> {
    match token {
        AgentToken::Given(token) => Ok(Some(token.clone())),
        AgentToken::Placeholder => Ok(None),
        AgentToken::FromUpstream(source) => {
            let upstream =
                crate::upstream::Upstream::load(source, Duration::from_secs(10), true, 1)?;
            match upstream.own_token().await? {
                Some(token) => Ok(Some(token)),
                None => Err(args::ArgsError::PassthroughWithoutToken.into()),
            }
        }
    }
}

fn agent_spec(options: &RunOptions, kubeconfig: &std::path::Path) -> AgentSpec {
    let mut env = vec![
        (ENV_KUBECONFIG, kubeconfig.display().to_string()),
        (ENV_SESSION, options.session.clone()),
        (ENV_LEDGER, options.ledger_dir.display().to_string()),
    ];
    let mut unset = Vec::new();
    match &options.task {
        Some(task) => env.push((ENV_TASK, task.clone())),
        None => unset.push(ENV_TASK),
    }
    AgentSpec {
        command: options.command.clone(),
        env,
        unset,
        timeout: options.timeout,
        stdout: options.file("agent.stdout"),
        stderr: options.file("agent.stderr"),
        tee: options.tee,
    }
}

/// `pathgate run` from its parsed command line: prints the summary, writes `run.json`
/// into the output directory, and returns the exit code.
pub fn main(args: RunArgs) -> std::process::ExitCode {
    let started = Instant::now();
    let format = args.format;
    let (summary, text) = match args.into_options() {
        Ok(options) => execute(options, started),
        Err(failed) => {
            let (mut summary, error) = *failed;
            summary.no_verdict(&error);
            summary.duration_seconds = started.elapsed().as_secs_f64();
            (summary, None)
        }
    };
    let run_json = summary.out_dir.join("run.json");
    if summary.out_dir.is_dir() {
        if let Err(error) = std::fs::write(&run_json, summary.json()) {
            eprintln!("pathgate run: cannot write {}: {error}", run_json.display());
        }
    }
    match format {
        SummaryFormat::Json => print!("{}", summary.json()),
        SummaryFormat::Text => print!("{}", summary.text(text.as_deref())),
    }
    std::process::ExitCode::from(summary.exit_code)
}
