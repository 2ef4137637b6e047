//! The one call to `pathgate run`: a fresh gateway and session for one agent command,
//! then the final-state checks and the autopsy's verdict (docs/run.md).
//!
//! `pathgate run` owns the gateway, the session's kubeconfig, the agent's environment
//! (`KUBECONFIG`, `PATHGATE_SESSION`, `PATHGATE_TASK`, `PATHGATE_LEDGER`), the timeout and
//! the verdict; the harness reads its `pathgate.run/v1` summary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
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
    if !has_run_command(&tools.pathgate) {
        return interim::serve_and_judge(tools, request);
    }
    let ledger = request.dir.join("ledger");
    let out_dir = request.dir.join("out");
    let started = Instant::now();
    let output = Command::new(&tools.pathgate)
        .arg("run")
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

/// Whether a path is inside the run directory (for reports that link to it).
pub fn relative<'a>(path: &'a Path, root: &Path) -> &'a Path {
    path.strip_prefix(root).unwrap_or(path)
}

/// Whether this pathgate build has the `run` subcommand.
fn has_run_command(pathgate: &Path) -> bool {
    Command::new(pathgate)
        .args(["run", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The same run for a pathgate without `run`: `pathgate serve` for the session, the agent
/// with the session's kubeconfig, then `pathgate autopsy` on the ledger. Removed once every
/// build has `run`.
mod interim {
    use std::net::TcpStream;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::{HarnessError, RunRequest, RunSummary, Tools};

    fn failed(command: &str, reason: impl std::fmt::Display) -> HarnessError {
        HarnessError::Command {
            command: command.to_string(),
            reason: reason.to_string(),
        }
    }

    fn status(command: &mut Command, what: &str) -> Result<(), HarnessError> {
        let output = command.output().map_err(|e| failed(what, e))?;
        if !output.status.success() {
            return Err(failed(what, String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(())
    }

    pub fn serve_and_judge(
        tools: &Tools,
        request: &RunRequest,
    ) -> Result<RunSummary, HarnessError> {
        let started = Instant::now();
        let dir = &request.dir;
        let ledger = dir.join("ledger");
        let certs = dir.join("certs");
        status(
            Command::new(&tools.pathgate)
                .args(["certs", "init", "--dir"])
                .arg(&certs),
            "pathgate certs init",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| failed("a free port", e))?
            .port();
        let gate_config = dir.join("gate.yaml");
        std::fs::write(&gate_config, gate_config_text(&request.policy)?)
            .map_err(super::super::io_error(&gate_config))?;
        let mut serve = Command::new(&tools.pathgate)
            .arg("serve")
            .arg("--config")
            .arg(&gate_config)
            .args(["--auth", "sidecar", "--mode", request.mode.as_str()])
            .arg("--upstream-kubeconfig")
            .arg(&tools.admin)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-listen",
                "off",
            ])
            .args(["--session", &request.session])
            .arg("--tls-cert")
            .arg(certs.join("server.crt"))
            .arg("--tls-key")
            .arg(certs.join("server.key"))
            .arg("--ledger-dir")
            .arg(&ledger)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("pathgate.log"))
                    .map_err(super::super::io_error(dir))?,
            ))
            .spawn()
            .map_err(|e| failed("pathgate serve", e))?;
        let outcome = agent_through(tools, request, &mut serve, port, &certs);
        stop(&mut serve);
        let agent_exit = outcome?;
        judge(tools, request, &ledger, agent_exit, started.elapsed())
    }

    /// The gate's config: the run policy's protected objects, which the gate enforces too.
    fn gate_config_text(policy: &std::path::Path) -> Result<String, HarnessError> {
        let text = std::fs::read_to_string(policy).map_err(super::super::io_error(policy))?;
        let value: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| failed("run policy", e))?;
        let protected = value
            .get("protected_objects")
            .cloned()
            .unwrap_or(serde_yaml::Value::Sequence(vec![]));
        let mut config = serde_yaml::Mapping::new();
        config.insert("protected_objects".into(), protected);
        serde_yaml::to_string(&config).map_err(|e| failed("gate config", e))
    }

    fn agent_through(
        tools: &Tools,
        request: &RunRequest,
        serve: &mut Child,
        port: u16,
        certs: &std::path::Path,
    ) -> Result<Option<i64>, HarnessError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || serve.try_wait().ok().flatten().is_some() {
                return Err(failed(
                    "pathgate serve",
                    format!(
                        "not listening on {port}; see {}",
                        request.dir.join("pathgate.log").display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let kubeconfig = request.dir.join("kubeconfig");
        status(
            Command::new(&tools.pathgate)
                .args([
                    "kubeconfig",
                    "--server",
                    &format!("https://127.0.0.1:{port}"),
                ])
                .args(["--session", &request.session])
                .arg("--ca")
                .arg(certs.join("ca.crt"))
                .arg("--out")
                .arg(&kubeconfig),
            "pathgate kubeconfig",
        )?;
        let task = std::fs::read_to_string(&request.task_file).unwrap_or_default();
        let mut agent = Command::new(&request.command[0]);
        agent
            .args(&request.command[1..])
            .envs(request.env.iter().map(|(k, v)| (k, v)))
            .env("KUBECONFIG", &kubeconfig)
            .env("KUBECACHEDIR", request.dir.join("kube-cache"))
            .env("PATHGATE_SESSION", &request.session)
            .env("PATHGATE_TASK", task)
            .env("PATHGATE_LEDGER", request.dir.join("ledger"))
            .stdin(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut agent, 0);
        let mut child = agent.spawn().map_err(|e| failed("the agent command", e))?;
        let deadline = Instant::now() + request.timeout;
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| failed("the agent command", e))?
            {
                return Ok(status.code().map(i64::from));
            }
            if Instant::now() > deadline {
                let group = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, so that the ledger is flushed, then wait.
    fn stop(serve: &mut Child) {
        let pid = nix::unistd::Pid::from_raw(serve.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = serve.wait();
    }

    fn judge(
        tools: &Tools,
        request: &RunRequest,
        ledger: &std::path::Path,
        agent_exit: Option<i64>,
        duration: Duration,
    ) -> Result<RunSummary, HarnessError> {
        let out = request.dir.join("out");
        std::fs::create_dir_all(&out).map_err(super::super::io_error(&out))?;
        let report = out.join("autopsy.json");
        let output = Command::new(&tools.pathgate)
            .args(["autopsy", "--session", &request.session, "--policy"])
            .arg(&request.policy)
            .arg("--checks")
            .arg(&request.checks)
            .arg("--kubeconfig")
            .arg(&tools.admin)
            .args(["--format", "json", "--out"])
            .arg(&report)
            .arg(ledger)
            .output()
            .map_err(|e| failed("pathgate autopsy", e))?;
        let verdict = std::fs::read_to_string(&report)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|doc| doc["runs"][0]["triage"].as_str().map(str::to_string));
        Ok(RunSummary {
            reason: match &verdict {
                Some(verdict) => format!("autopsy: {verdict}"),
                None => String::from_utf8_lossy(&output.stderr).trim().to_string(),
            },
            verdict,
            agent_exit,
            ledger: ledger.to_path_buf(),
            duration,
        })
    }
}
