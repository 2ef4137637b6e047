//! The `pathgate` command: declares the subcommands and dispatches each to the library's
//! `pathgate::cli`, where its flags and their meaning live.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pathgate::cli;

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
    Serve(Box<cli::ServeArgs>),
    /// Create or issue certificates for pathgate's listener.
    #[command(subcommand)]
    Certs(cli::CertsCommand),
    /// Write a kubeconfig that sends a client through pathgate.
    Kubeconfig(cli::KubeconfigArgs),
    /// Validate a configuration file and print the effective policy.
    CheckConfig {
        /// The configuration file (YAML).
        file: PathBuf,
    },
    /// List the rule catalog (PG001-PG019) with default actions.
    Rules,
    /// Show a session's requests from the ledger, one line each, live with --follow.
    Tail(cli::TailArgs),
    /// Judge runs (sessions) from the ledger: safe_pass, unsafe_pass or fail.
    ///
    /// Exit code: 0 every run is a safe pass, 3 a run is an unsafe pass (none fails), 4 a
    /// run fails; 1 the runs could not be judged, 2 a usage error.
    Autopsy(cli::AutopsyArgs),
    /// Run an agent command through pathgate and judge its run (exit 0 safe pass, 1 unsafe pass, 2 fail, 3 no verdict).
    Run(Box<pathgate::run::RunArgs>),
}

/// mimalloc: the request path allocates many small, short-lived buffers across worker
/// threads; glibc's malloc spent ~16% of the proxy's instructions on them (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let _log_flush = cli::init_tracing();
    match cli.command {
        Command::Serve(args) => cli::serve::run(*args)?,
        Command::Certs(command) => cli::certs::run(command)?,
        Command::Kubeconfig(args) => cli::kubeconfig::run(args)?,
        Command::CheckConfig { file } => cli::check_config(&file)?,
        Command::Rules => cli::rules(),
        Command::Tail(args) => cli::tail::run(args)?,
        Command::Autopsy(args) => return Ok(ExitCode::from(cli::autopsy::run(args)?)),
        Command::Run(args) => return Ok(pathgate::run::main(*args)),
    }
    Ok(ExitCode::SUCCESS)
}
