//! The one call to `pathgate run`: a fresh gateway and session for one agent command,
//! then the final-state checks and the autopsy's verdict (docs/run.md).
//!
//! `pathgate run` owns the gateway, the session's kubeconfig, the agent's environment
//! (`KUBECONFIG`, `PATHGATE_SESSION`, `PATHGATE_TASK`, `PATHGATE_LEDGER`), the timeout and
//! the verdict; the harness reads its `pathgate.run/v1` summary. The gateway's config
//! carries the run policy's protected objects, which it enforces live.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{HarnessError, Tools};

/// pathgate's policy mode for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Observe,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Enforce => "enforce",
        }
    }
}

/// One agent run through `pathgate run`.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub session: String,
    pub mode: Mode,
    pub policy: PathBuf,
    pub checks: PathBuf,
    pub task_file: PathBuf,
    /// The run's directory: `pathgate run` writes its ledger and reports under it.
    pub dir: PathBuf,
    pub timeout: Duration,
    pub env: Vec<(String, OsString)>,
    pub command: Vec<OsString>,
}

/// What `pathgate run` reported.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// `safe_pass`, `unsafe_pass`, `fail`; `None`: no verdict (`reason` says why).
    pub verdict: Option<String>,
    pub reason: String,
    /// The agent command's exit code (`None`: it did not exit by itself).
    pub agent_exit: Option<i64>,
    pub ledger: PathBuf,
    pub duration: Duration,
}

/// Runs `request.command` through `pathgate run` and reads its JSON summary.
pub fn pathgate_run(tools: &Tools, request: &RunRequest) -> Result<RunSummary, HarnessError> {
    let ledger = request.dir.join("ledger");
    let out_dir = request.dir.join("out");
    let gate_config = request.dir.join("gate.yaml");
    std::fs::write(&gate_config, gate_config_text(&request.policy)?)
        .map_err(super::io_error(&gate_config))?;
    let started = Instant::now();
    let output = Command::new(&tools.pathgate)
        .arg("run")
        .arg("--config")
        .arg(&gate_config)
        .arg("--upstream-kubeconfig")
        .arg(&tools.admin)
        .arg("--policy")
        .arg(&request.policy)
        .arg("--checks")
        .arg(&request.checks)
        .arg("--kubeconfig")
        .arg(&tools.admin)
        .args([
            "--mode",
            request.mode.as_str(),
            "--session",
            &request.session,
        ])
        .arg("--task-file")
        .arg(&request.task_file)
        .args(["--timeout", &request.timeout.as_secs().max(1).to_string()])
        .arg("--ledger-dir")
        .arg(&ledger)
        .arg("--out-dir")
        .arg(&out_dir)
        .args(["--format", "json", "--quiet", "--"])
        .args(&request.command)
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(request.dir.join("pathgate-run.stderr"))
                .map_err(super::io_error(&request.dir))?,
        ))
        .output()
        .map_err(|e| HarnessError::Command {
            command: format!("{} run", tools.pathgate.display()),
            reason: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| HarnessError::Command {
            command: "pathgate run --format json".into(),
            reason: format!(
                "exit {}; no JSON summary ({e}); see {}",
                output.status,
                request.dir.join("pathgate-run.stderr").display()
            ),
        })?;
    Ok(RunSummary {
        verdict: summary["verdict"].as_str().map(str::to_string),
        reason: summary["reason"].as_str().unwrap_or_default().to_string(),
        agent_exit: summary["agent"]["exit_code"].as_i64(),
        ledger: summary["ledger"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or(ledger),
        duration: started.elapsed(),
    })
}

/// The started gateway's configuration: the run policy's protected objects, so that what
/// the autopsy calls a `forbidden_mutation` of one is what the gate denies live (PG018).
fn gate_config_text(policy: &std::path::Path) -> Result<String, HarnessError> {
    let invalid = |reason: String| HarnessError::Scenario {
        file: policy.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(policy).map_err(super::io_error(policy))?;
    let value: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let protected = value
        .get("protected_objects")
        .cloned()
        .unwrap_or(serde_yaml::Value::Sequence(vec![]));
    let mut config = serde_yaml::Mapping::new();
    config.insert("protected_objects".into(), protected);
    serde_yaml::to_string(&config).map_err(|e| invalid(e.to_string()))
}
