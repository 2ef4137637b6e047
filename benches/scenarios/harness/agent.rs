//! The command each arm runs as the agent, and what the agent saw of pathgate.
//!
//! - `kubectl`: the path's shell script under bash, with `$KUBECTL`, `$NS`, `$OTHER_NS`;
//! - `flux159` / `containers`: the MCP driver (`mcpdrive`) starting the pinned server over
//!   stdio with the path's tool calls (rendered for the run); Flux159 shells out to
//!   `kubectl`, so the cluster's kubectl is first on `PATH`;
//! - `agent`: the user's `--agent-cmd` under `sh -c`, the task in `PATHGATE_TASK`.
//!
//! Every agent's stdout and stderr go to files in the run directory: `pathgate run`'s own
//! stdout is its JSON summary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::scenario::Arm;
use super::{McpServer, Tools, CONTAINERS, FLUX159};

/// What to run and with which extra environment.
#[derive(Debug, Clone)]
pub struct AgentCommand {
    pub command: Vec<OsString>,
    pub env: Vec<(String, OsString)>,
}

/// Where an agent's outputs go.
#[derive(Debug, Clone)]
pub struct AgentFiles {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// The MCP driver's transcript (MCP arms).
    pub transcript: PathBuf,
    /// The MCP server's stderr (MCP arms).
    pub server_stderr: PathBuf,
}

impl AgentFiles {
    pub fn in_dir(dir: &Path) -> AgentFiles {
        AgentFiles {
            stdout: dir.join("agent.stdout"),
            stderr: dir.join("agent.stderr"),
            transcript: dir.join("transcript.json"),
            server_stderr: dir.join("server.stderr"),
        }
    }
}

/// What drives the path.
pub enum Driver<'a> {
    /// A kubectl shell script or an MCP tool-call list (already rendered), per arm.
    Scripted { arm: Arm, file: &'a Path },
    /// `sh -c COMMAND`.
    AgentCmd(&'a str),
}

/// The command for `driver`, its outputs redirected to `files`.
pub fn command(
    tools: &Tools,
    driver: &Driver,
    files: &AgentFiles,
    vars: &super::scenario::Vars,
) -> AgentCommand {
    let inner: Vec<OsString> = match driver {
        Driver::Scripted {
            arm: Arm::Kubectl,
            file,
        } => vec!["bash".into(), file.into()],
        Driver::Scripted {
            arm: Arm::Flux159,
            file,
        } => mcp(tools, FLUX159, file, files),
        Driver::Scripted {
            arm: Arm::Containers,
            file,
        } => mcp(tools, CONTAINERS, file, files),
        Driver::Scripted {
            arm: Arm::Agent, ..
        } => unreachable!("the agent arm has no script"),
        Driver::AgentCmd(command) => vec!["sh".into(), "-c".into(), (*command).into()],
    };
    let mut command: Vec<OsString> = vec![
        "sh".into(),
        "-c".into(),
        "out=$1; err=$2; shift 2; exec \"$@\" >\"$out\" 2>\"$err\" </dev/null".into(),
        "agent".into(),
        files.stdout.clone().into(),
        files.stderr.clone().into(),
    ];
    command.extend(inner);
    let kubectl_dir = tools
        .kubectl
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let mut path = OsString::from(kubectl_dir);
    if let Some(rest) = std::env::var_os("PATH") {
        path.push(":");
        path.push(rest);
    }
    AgentCommand {
        command,
        env: vec![
            ("PATH".into(), path),
            ("KUBECTL".into(), tools.kubectl.clone().into()),
            ("NS".into(), vars.get("NS").into()),
            ("OTHER_NS".into(), vars.get("OTHER_NS").into()),
            // kubectl's discovery cache in the run's directory, never in $HOME, where
            // another run's would change which requests this one makes.
            (
                "KUBECACHEDIR".into(),
                files.stdout.with_file_name("kube-cache").into(),
            ),
        ],
    }
}

fn mcp(tools: &Tools, server: McpServer, steps: &Path, files: &AgentFiles) -> Vec<OsString> {
    vec![
        tools.mcpdrive.clone().into(),
        "--steps".into(),
        steps.into(),
        "--transcript".into(),
        files.transcript.clone().into(),
        "--server-stderr".into(),
        files.server_stderr.clone().into(),
        "--expect-version".into(),
        server.version.into(),
        "--".into(),
        tools.server_bin(server).into(),
    ]
}

/// What the agent was told by pathgate or the apiserver when something was refused or
/// flagged: kubectl's `Warning:` and `Error from server` lines, MCP results that carry a
/// rule id or a Forbidden answer. Distinct lines, at most `limit`, each at most 240 chars.
pub fn what_the_agent_saw(files: &AgentFiles, limit: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let interesting = |line: &str| {
        line.contains("pathgate")
            || line.contains("PG0")
            || line.contains("Forbidden")
            || line.starts_with("Warning:")
            || line.starts_with("Error from server")
    };
    let mut push = |line: &str| {
        let line: String = line.trim().chars().take(240).collect();
        if !line.is_empty() && interesting(&line) && !lines.contains(&line) && lines.len() < limit {
            lines.push(line);
        }
    };
    if let Ok(text) = std::fs::read_to_string(&files.stderr) {
        text.lines().for_each(&mut push);
    }
    if let Ok(text) = std::fs::read_to_string(&files.transcript) {
        if let Ok(transcript) = serde_json::from_str::<serde_json::Value>(&text) {
            for call in transcript["calls"].as_array().into_iter().flatten() {
                if let Some(text) = call["text"].as_str() {
                    text.lines().for_each(&mut push);
                }
            }
        }
    }
    lines
}
