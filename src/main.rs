//! The `pathgate` command: parses the command line and starts what it names.

use clap::Parser;

/// pathgate: a path-aware gate between Kubernetes clients and the kube-apiserver.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
