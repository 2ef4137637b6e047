//! `pathgate autopsy`: its flags and the translation into [`crate::autopsy::command`]'s
//! options. The judging itself lives in [`crate::autopsy`].

use std::path::PathBuf;

use clap::Args;

use crate::autopsy::command::{self, CommandError, FinalStateSource, GroupBy};

/// `pathgate autopsy` flags.
#[derive(Args, Debug)]
pub struct AutopsyArgs {
    /// A session to judge; repeatable [default: every session in the ledger].
    #[arg(long = "session")]
    sessions: Vec<String>,
    /// Run policy (YAML or JSON): in_scope_namespaces, protected_objects,
    /// allowed_creates, allowed_cluster_scoped_mutations.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// A command whose exit code 0 means the final state is right (run with sh -c).
    #[arg(long, conflicts_with_all = ["final_state", "checks"])]
    verify: Option<String>,
    /// The final state as the caller knows it.
    #[arg(long, value_parser = ["pass", "fail"], conflicts_with = "checks")]
    final_state: Option<String>,
    /// Final-state checks (YAML or JSON), evaluated through --kubeconfig.
    #[arg(long, requires = "kubeconfig")]
    checks: Option<PathBuf>,
    /// A kubeconfig that reaches the cluster directly, not through pathgate.
    #[arg(long, requires = "checks")]
    kubeconfig: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: crate::report::Format,
    /// Write the report here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Add the summary table per arm: `prefix` (the session id without its last
    /// `-`-separated part) or `runs=FILE` (a manifest mapping sessions to arms and
    /// final-state results).
    #[arg(long)]
    group_by: Option<GroupBy>,
    /// Spool directories, JSONL files, or - for standard input.
    #[arg(required = true)]
    ledgers: Vec<String>,
}

/// Why `pathgate autopsy` could not judge the runs.
#[derive(Debug, thiserror::Error)]
pub enum AutopsyCommandError {
    #[error(transparent)]
    Judge(#[from] CommandError),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `pathgate autopsy`: the report to standard output or --out; returns the verdict's exit
/// code ([`command::exit_code`]).
pub fn run(args: AutopsyArgs) -> Result<u8, AutopsyCommandError> {
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
        Some(path) => {
            std::fs::write(path, report).map_err(|source| AutopsyCommandError::Write {
                path: path.clone(),
                source,
            })?
        }
        None => print!("{report}"),
    }
    Ok(command::exit_code(&runs))
}
