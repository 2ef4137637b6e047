//! The MCP session: start the server over stdio, `initialize`, `tools/list`, refuse a
//! server that drifted from the path's pin (another version, a tool the path calls that is
//! gone), then `tools/call` each step in order, each bounded by a timeout.
//!
//! Everything observed goes into the [`Transcript`], which is returned with the outcome so
//! that a path stopped half-way still leaves its record.

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService, ServiceError, ServiceExt};
use rmcp::transport::TokioChildProcess;

use crate::steps::Steps;
use crate::transcript::{CallRecord, ServerInfo, Transcript};

/// How to start and drive the server.
#[derive(Debug)]
pub struct Options {
    /// The server's command and arguments.
    pub server: Vec<OsString>,
    /// Where the server's stderr goes (`None`: inherited).
    pub server_stderr: Option<PathBuf>,
    /// The `serverInfo.version` the path was written for.
    pub expect_version: Option<String>,
    /// The bound on each request.
    pub call_timeout: Duration,
}

/// Why a path could not be driven to its end.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("cannot start the MCP server {command}: {reason}")]
    Spawn { command: String, reason: String },
    #[error("{command}: initialize failed: {reason}")]
    Initialize { command: String, reason: String },
    #[error("{server} reports version {found}, but this path was written for {expected} (the pinned version in benches/scenarios/mcp/package.json; run `cargo xtask prepare`)")]
    VersionDrift {
        server: String,
        found: String,
        expected: String,
    },
    #[error("{server} {version} has no tool {}: the path calls it but tools/list offers {}", missing.join(", "), available.join(", "))]
    MissingTools {
        server: String,
        version: String,
        missing: Vec<String>,
        available: Vec<String>,
    },
    #[error("{method} failed: {reason}")]
    Protocol { method: String, reason: String },
    #[error("{method} did not answer within {} s", timeout.as_secs())]
    Timeout { method: String, timeout: Duration },
}

type Client = RunningService<RoleClient, ()>;

/// Drives `steps` through the server; the transcript holds whatever happened.
pub async fn drive(options: &Options, steps: &Steps) -> (Transcript, Result<(), DriveError>) {
    let mut transcript = Transcript::default();
    let outcome = match connect(options).await {
        Ok(client) => {
            let outcome = session(&client, options, steps, &mut transcript).await;
            // The server is asked to stop either way; a failure to stop is not the path's.
            let _ = client.cancel().await;
            outcome
        }
        Err(error) => Err(error),
    };
    if let Err(error) = &outcome {
        transcript.error = Some(error.to_string());
    }
    (transcript, outcome)
}

fn command_line(options: &Options) -> String {
    options
        .server
        .iter()
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Spawns the server and runs `initialize` (rmcp sends `notifications/initialized`).
async fn connect(options: &Options) -> Result<Client, DriveError> {
    let command = command_line(options);
    let spawn_error = |reason: String| DriveError::Spawn {
        command: command.clone(),
        reason,
    };
    let mut process = tokio::process::Command::new(&options.server[0]);
    process.args(&options.server[1..]);
    let stderr = match &options.server_stderr {
        Some(file) => Stdio::from(
            std::fs::File::create(file)
                .map_err(|e| spawn_error(format!("{}: {e}", file.display())))?,
        ),
        None => Stdio::inherit(),
    };
    let (transport, _) = TokioChildProcess::builder(process)
        .stderr(stderr)
        .spawn()
        .map_err(|e| spawn_error(e.to_string()))?;
    bounded("initialize", options.call_timeout, ().serve(transport))
        .await?
        .map_err(|e| DriveError::Initialize {
            command,
            reason: e.to_string(),
        })
}

/// initialize's answer, tools/list, the drift checks, then every step.
async fn session(
    client: &Client,
    options: &Options,
    steps: &Steps,
    transcript: &mut Transcript,
) -> Result<(), DriveError> {
    let info = server_info(client);
    transcript.server = Some(info.clone());
    if let Some(expected) = &options.expect_version {
        if info.version.trim_start_matches('v') != expected.trim_start_matches('v') {
            return Err(DriveError::VersionDrift {
                server: info.name,
                found: info.version,
                expected: expected.clone(),
            });
        }
    }
    let tools = bounded("tools/list", options.call_timeout, client.list_all_tools())
        .await?
        .map_err(|e| protocol("tools/list", e))?;
    transcript.tools = tools.iter().map(|tool| tool.name.to_string()).collect();
    let missing: Vec<String> = steps
        .tools()
        .into_iter()
        .filter(|tool| !transcript.tools.iter().any(|t| t == tool))
        .map(str::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(DriveError::MissingTools {
            server: info.name,
            version: info.version,
            missing,
            available: transcript.tools.clone(),
        });
    }
    for step in &steps.steps {
        let started = Instant::now();
        let method = format!("tools/call {}", step.tool);
        let params =
            CallToolRequestParams::new(step.tool.clone()).with_arguments(step.arguments.clone());
        let answer = bounded(&method, options.call_timeout, client.call_tool(params)).await?;
        let record = match answer {
            Ok(result) => record(step, &result, started.elapsed()),
            // A JSON-RPC error answer is how some servers report a failed tool (Flux159's
            // when kubectl exits non-zero): the agent reads it and goes on, so it is a step.
            Err(ServiceError::McpError(error)) => CallRecord {
                tool: step.tool.clone(),
                arguments: serde_json::Value::Object(step.arguments.clone()),
                is_error: true,
                rpc_error: Some(error.code.0),
                text: error.message.to_string(),
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            },
            Err(error) => return Err(protocol(&method, error)),
        };
        transcript.calls.push(record);
    }
    Ok(())
}

fn server_info(client: &Client) -> ServerInfo {
    let info = client.peer_info();
    let value = info
        .as_deref()
        .and_then(|info| serde_json::to_value(info).ok())
        .unwrap_or_default();
    let field = |key: &str| {
        value["serverInfo"][key]
            .as_str()
            .unwrap_or("unknown")
            .to_string()
    };
    ServerInfo {
        name: field("name"),
        version: field("version"),
    }
}

/// The call as the agent read it: its text blocks and `isError`. The result is read through
/// its JSON form, which is the protocol's and stays put across SDK releases.
fn record(step: &crate::steps::Step, result: &CallToolResult, took: Duration) -> CallRecord {
    let value = serde_json::to_value(result).unwrap_or_default();
    let text = value["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|block| block["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    CallRecord {
        tool: step.tool.clone(),
        arguments: serde_json::Value::Object(step.arguments.clone()),
        is_error: result.is_error.unwrap_or(false),
        rpc_error: None,
        text,
        duration_ms: took.as_secs_f64() * 1000.0,
    }
}

fn protocol(method: &str, error: impl std::fmt::Display) -> DriveError {
    DriveError::Protocol {
        method: method.to_string(),
        reason: error.to_string(),
    }
}

async fn bounded<T>(
    method: &str,
    timeout: Duration,
    future: impl Future<Output = T>,
) -> Result<T, DriveError> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| DriveError::Timeout {
            method: method.to_string(),
            timeout,
        })
}
