//! `mcpdrive`: one scripted agent for the scenario benchmark's MCP arms.
//!
//! It starts a real MCP server (the command after `--`) over stdio with the environment it
//! was given (`KUBECONFIG` is the pathgate session's kubeconfig when `pathgate run` starts
//! it), initializes, lists the server's tools, checks that every tool the path calls is
//! there, calls each step in order and writes a JSON transcript: the server's name and
//! version, its tools, and per step the tool, the arguments, the result's text and whether
//! the server flagged it as an error. A step the server answers with `isError` is what an
//! agent would see and carry on from; it is recorded, not fatal.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`steps`] | the path file: a YAML list of tool calls |
//! | [`drive`] | the MCP session: spawn, initialize, tools/list, the drift checks, tools/call |
//! | [`transcript`] | the JSON transcript written after the run, whatever happened |
//!
//! Exit codes: 0 every step was called; 1 the path could not be driven (unreadable path
//! file, the server did not start or initialize, a version or a tool that drifted from the
//! pin, a protocol error or a call that timed out); 2 usage error.

mod drive;
mod steps;
mod transcript;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Drive an MCP server over stdio through a scripted list of tool calls.
#[derive(Parser)]
#[command(name = "mcpdrive", version)]
struct Cli {
    /// The path: YAML `steps: [{tool: NAME, arguments: {...}}, ...]`.
    #[arg(long)]
    steps: PathBuf,
    /// Where to write the JSON transcript.
    #[arg(long)]
    transcript: PathBuf,
    /// Where the server's standard error goes [default: this process's].
    #[arg(long)]
    server_stderr: Option<PathBuf>,
    /// The server version the path was written for (`serverInfo.version`, a leading `v`
    /// ignored); another version is refused before any tool is called.
    #[arg(long)]
    expect_version: Option<String>,
    /// Seconds one request (initialize, tools/list, each tools/call) may take.
    #[arg(long, default_value_t = 60)]
    call_timeout: u64,
    /// The server's command and arguments.
    #[arg(last = true, required = true)]
    server: Vec<OsString>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let steps = match steps::Steps::load(&cli.steps) {
        Ok(steps) => steps,
        Err(error) => {
            eprintln!("mcpdrive: {error}");
            return ExitCode::from(1);
        }
    };
    let options = drive::Options {
        server: cli.server,
        server_stderr: cli.server_stderr,
        expect_version: cli.expect_version,
        call_timeout: Duration::from_secs(cli.call_timeout),
    };
    let (transcript, outcome) = drive::drive(&options, &steps).await;
    if let Err(error) = transcript.write(&cli.transcript) {
        eprintln!("mcpdrive: {error}");
        return ExitCode::from(1);
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcpdrive: {error}");
            ExitCode::from(1)
        }
    }
}
