//! The scenario harness: runs scripted agent paths (and a user's own agent) through
//! `pathgate run` against the real control plane and judges each run with the autopsy.
//!
//! Shared by the benchmark (`cargo bench --bench scenarios`, benches/scenarios/main.rs)
//! and the integration tests (tests/integration/scenarios.rs, which `#[path]`s this
//! module). The format and conventions are in docs/scenarios.md.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`scenario`] | the scenario directory format, its validation and templates |
//! | [`setup`] | a run's namespaces and setup objects, created with admin credentials |
//! | [`agent`] | the command each arm runs (shell script, MCP driver, `--agent-cmd`) and what the agent saw |
//! | [`gate`] | the one call to `pathgate run` |
//! | [`judge`] | the autopsy of a run (in-process, the same verdict) and its expected requests |
//! | [`suite`] | running many runs, two at a time, each in its own namespace and session |
//! | [`table`] | the study's table per arm, categories, per-run rows, the enforce pass |
//!
//! Verdicts, categories, the per-arm summary and the HTML report are the autopsy's
//! (`pathgate::autopsy`, `pathgate::report`): this module only arranges runs.

// The test binary uses part of the harness, the benchmark all of it.
#![allow(dead_code)]

pub mod agent;
pub mod gate;
pub mod judge;
pub mod scenario;
pub mod setup;
pub mod suite;
pub mod table;

use std::path::{Path, PathBuf};

/// An MCP server the MCP arms drive, as pinned in `benches/scenarios/mcp/package.json`.
#[derive(Debug, Clone, Copy)]
pub struct McpServer {
    pub package: &'static str,
    pub version: &'static str,
    /// The server's executable, relative to `node_modules`.
    pub launcher: &'static str,
}

/// Flux159 `mcp-server-kubernetes` (shells out to kubectl).
pub const FLUX159: McpServer = McpServer {
    package: "mcp-server-kubernetes",
    version: "4.1.7",
    launcher: ".bin/mcp-server-kubernetes",
};

/// containers `kubernetes-mcp-server` (Go, client-go). npm ships the binary as optional
/// per-platform packages under a small node wrapper; the lock pins the linux x64 one and
/// the harness runs its binary directly.
pub const CONTAINERS: McpServer = McpServer {
    package: "kubernetes-mcp-server-linux-amd64",
    version: "0.0.67",
    launcher: "kubernetes-mcp-server-linux-amd64/bin/kubernetes-mcp-server-linux-amd64",
};

/// The command that installs the MCP servers and builds the MCP driver.
pub const PREPARE_COMMAND: &str = "cargo xtask prepare";

/// Why a run (or the suite) could not be carried out. A harness error is never a verdict.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A scenario file is missing or malformed.
    #[error("{}: {reason}", file.display())]
    Scenario { file: PathBuf, reason: String },
    /// A prerequisite (MCP server, driver, cluster) is not there.
    #[error("{what} is missing ({}); run `{PREPARE_COMMAND}` (or the tests with `cargo xtask test`)", path.display())]
    Missing { what: String, path: PathBuf },
    /// A pinned MCP server is installed at another version.
    #[error("{package} {found} is installed but {expected} is pinned; run `{PREPARE_COMMAND}`")]
    Drift {
        package: &'static str,
        found: String,
        expected: &'static str,
    },
    /// A command the harness runs failed.
    #[error("{command}: {reason}")]
    Command { command: String, reason: String },
    /// The path ran but did not produce a request it declares.
    #[error("the path's expected requests did not happen: {}", .0.join("; "))]
    ExpectedRequests(Vec<String>),
    /// `pathgate run` gave no verdict.
    #[error("no verdict: {0}")]
    NoVerdict(String),
    /// The in-process autopsy disagrees with `pathgate run`'s verdict.
    #[error("pathgate run says {run}, the autopsy of its ledger says {autopsy}")]
    Disagreement { run: String, autopsy: String },
    #[error("{}: {reason}", file.display())]
    Io { file: PathBuf, reason: String },
}

pub(crate) fn io_error(file: &Path) -> impl FnOnce(std::io::Error) -> HarnessError + '_ {
    move |e| HarnessError::Io {
        file: file.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The binaries and files every run needs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub pathgate: PathBuf,
    pub kubectl: PathBuf,
    /// The cluster's admin kubeconfig (setup, checks, pathgate's upstream).
    pub admin: PathBuf,
    pub mcpdrive: PathBuf,
    /// `benches/scenarios/mcp` with its `node_modules`.
    pub mcp_dir: PathBuf,
}

/// The workspace root (the harness lives in `benches/scenarios/harness`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `benches/scenarios`, where the scenario directories are.
pub fn scenarios_root() -> PathBuf {
    workspace_root().join("benches/scenarios")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

impl Tools {
    /// Finds every prerequisite, failing with what to run when one is missing or drifted.
    pub fn find(pathgate: &Path, kubectl: &Path, admin: &Path) -> Result<Tools, HarnessError> {
        let tools = Tools {
            pathgate: pathgate.to_path_buf(),
            kubectl: kubectl.to_path_buf(),
            admin: admin.to_path_buf(),
            mcpdrive: target_dir().join("release/mcpdrive"),
            mcp_dir: scenarios_root().join("mcp"),
        };
        if !tools.mcpdrive.is_file() {
            return Err(HarnessError::Missing {
                what: "the MCP driver (mcpdrive, release build)".into(),
                path: tools.mcpdrive.clone(),
            });
        }
        for server in [FLUX159, CONTAINERS] {
            tools.check_server(server)?;
        }
        Ok(tools)
    }

    /// The server's executable.
    pub fn server_bin(&self, server: McpServer) -> PathBuf {
        self.mcp_dir.join("node_modules").join(server.launcher)
    }

    fn check_server(&self, server: McpServer) -> Result<(), HarnessError> {
        let manifest = self
            .mcp_dir
            .join("node_modules")
            .join(server.package)
            .join("package.json");
        let bin = self.server_bin(server);
        if !manifest.is_file() || !bin.exists() {
            return Err(HarnessError::Missing {
                what: format!("the MCP server {} {}", server.package, server.version),
                path: bin,
            });
        }
        let text = std::fs::read_to_string(&manifest).map_err(io_error(&manifest))?;
        let found = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["version"].as_str().map(str::to_string))
            .unwrap_or_else(|| "an unknown version".into());
        if found != server.version {
            return Err(HarnessError::Drift {
                package: server.package,
                found,
                expected: server.version,
            });
        }
        Ok(())
    }
}
