//! The agent command: started in a process group of its own with the session's
//! environment and stdin closed, its stdout and stderr written to files (and copied to
//! pathgate's stderr as they grow), bounded by the run's timeout.
//!
//! Owns: starting CMD, the timeout (SIGTERM to the group, then SIGKILL after a grace),
//! killing what CMD left running in its group when it ends, and the outcome a verdict
//! records. Output goes to files rather than pipes so that a grandchild holding a pipe
//! open can never keep the run from ending.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// How long the agent's process group has between SIGTERM and SIGKILL on a timeout.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// What to run and how.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// CMD and its arguments (never run through a shell).
    pub command: Vec<String>,
    /// Variables set for CMD, on top of pathgate's own environment.
    pub env: Vec<(&'static str, String)>,
    /// Variables removed from the inherited environment (a stale `PATHGATE_TASK`).
    pub unset: Vec<&'static str>,
    pub timeout: Duration,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// Copy CMD's output to pathgate's stderr while it runs.
    pub tee: bool,
}

/// How the agent's run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentOutcome {
    pub command: Vec<String>,
    /// `None` when a signal ended it.
    pub exit_code: Option<i32>,
    /// The signal that ended it (9 after a timeout that SIGTERM did not end).
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// `SIGINT` or `SIGTERM`: pathgate run was interrupted and ended the agent.
    pub interrupted: Option<String>,
    pub timeout_seconds: u64,
    pub duration_seconds: f64,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl AgentOutcome {
    /// One line: `agent exited 0 after 1.4 s`, `agent timed out after 5 s ...`.
    pub fn describe(&self) -> String {
        let after = format!("{:.1} s", self.duration_seconds);
        if self.timed_out {
            return format!(
                "agent timed out after {} s; its process group was killed",
                self.timeout_seconds
            );
        }
        if let Some(signal) = &self.interrupted {
            return format!(
                "agent interrupted ({signal} to pathgate run) after {after}; its process group was killed"
            );
        }
        match (self.exit_code, self.signal) {
            (Some(code), _) => format!("agent exited {code} after {after}"),
            (None, Some(signal)) => format!(
                "agent was killed by signal {signal} ({}) after {after}",
                signal_name(signal)
            ),
            (None, None) => format!("agent ended after {after}"),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    Signal::try_from(signal).map_or("unknown", Signal::as_str)
}

/// Why the agent could not be run at all (a run that ends badly is an outcome, not this).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot start the agent command {command:?}: {source}")]
    Start {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot create {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lost track of the agent process: {0}")]
    Wait(std::io::Error),
}

fn output_file(path: &PathBuf) -> Result<std::fs::File, AgentError> {
    use std::os::unix::fs::OpenOptionsExt;
    // The agent's output may quote what it read (a Secret's data): owner only.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| AgentError::Output {
            path: path.clone(),
            source,
        })
}

/// Runs the agent to its end or its timeout.
pub async fn run(spec: &AgentSpec) -> Result<AgentOutcome, AgentError> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| AgentError::Start {
            command: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command given"),
        })?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(output_file(&spec.stdout)?)
        .stderr(output_file(&spec.stderr)?)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .kill_on_drop(true);
    for name in &spec.unset {
        command.env_remove(name);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| AgentError::Start {
        command: spec.command.join(" "),
        source,
    })?;
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    let done = CancellationToken::new();
    let tees: Vec<_> = if spec.tee {
        [&spec.stdout, &spec.stderr]
            .into_iter()
            .map(|path| tokio::spawn(tee(path.clone(), done.clone())))
            .collect()
    } else {
        Vec::new()
    };
    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status.map_err(AgentError::Wait)?),
        _ = tokio::time::sleep(spec.timeout) => Ended::TimedOut,
        signal = interrupted() => Ended::Interrupted(signal),
    };
    let (status, timed_out, interrupted) = match ended {
        Ended::Exited(status) => (status, false, None),
        Ended::TimedOut => (terminate(&mut child, group).await?, true, None),
        Ended::Interrupted(signal) => (terminate(&mut child, group).await?, false, Some(signal)),
    };
    let duration = started.elapsed();
    // The run ends with CMD: a background process it left (a port-forward, a watch)
    // must not go on acting, or hold the gateway's drain open, after the verdict.
    signal_group(group, Signal::SIGKILL);
    done.cancel();
    for tee in tees {
        let _ = tee.await;
    }
    Ok(AgentOutcome {
        command: spec.command.clone(),
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        interrupted: interrupted.map(str::to_string),
        timeout_seconds: spec.timeout.as_secs(),
        duration_seconds: duration.as_secs_f64(),
        stdout: spec.stdout.clone(),
        stderr: spec.stderr.clone(),
    })
}

/// How CMD's wait ended.
enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
    Interrupted(&'static str),
}

/// Resolves when pathgate run itself gets SIGINT or SIGTERM: CMD runs in a process group
/// of its own, so a terminal's Ctrl-C reaches only pathgate, which must end CMD rather
/// than leave it acting on the cluster unobserved.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// SIGTERM to the group, then SIGKILL once [`KILL_GRACE`] has passed.
async fn terminate(
    child: &mut tokio::process::Child,
    group: Option<Pid>,
) -> Result<std::process::ExitStatus, AgentError> {
    signal_group(group, Signal::SIGTERM);
    if let Ok(status) = tokio::time::timeout(KILL_GRACE, child.wait()).await {
        return status.map_err(AgentError::Wait);
    }
    signal_group(group, Signal::SIGKILL);
    let _ = child.start_kill();
    child.wait().await.map_err(AgentError::Wait)
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        // ESRCH: nothing is left in the group.
        let _ = killpg(group, signal);
    }
}

/// Copies `path` to stderr as it grows, until `done` and the end of the file.
async fn tee(path: PathBuf, done: CancellationToken) {
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return;
    };
    let mut stderr = tokio::io::stderr();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Cancelled before this read began: the writer has stopped, so an empty read is
        // the true end of the file.
        let finishing = done.is_cancelled();
        match file.read(&mut buf).await {
            Ok(0) if finishing => break,
            Ok(0) => {
                tokio::select! {
                    _ = done.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            Ok(n) => {
                if stderr.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = stderr.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, script: &str, timeout: Duration) -> AgentSpec {
        AgentSpec {
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("PATHGATE_SESSION", "run-test".into())],
            unset: vec!["PATHGATE_TASK"],
            timeout,
            stdout: dir.join("agent.stdout"),
            stderr: dir.join("agent.stderr"),
            tee: false,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn output_is_captured_with_the_environment_and_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(
            dir.path(),
            "echo out $PATHGATE_SESSION; echo err >&2; echo task=${PATHGATE_TASK:-unset}; read line || echo stdin closed; exit 7",
            Duration::from_secs(30),
        );
        spec.tee = true;
        let outcome = runtime().block_on(run(&spec)).unwrap();
        assert_eq!(outcome.exit_code, Some(7));
        assert!(!outcome.timed_out);
        let stdout = std::fs::read_to_string(&outcome.stdout).unwrap();
        assert_eq!(stdout, "out run-test\ntask=unset\nstdin closed\n");
        assert_eq!(std::fs::read_to_string(&outcome.stderr).unwrap(), "err\n");
        assert!(outcome.describe().starts_with("agent exited 7 after"));
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survivor");
        // The child ignores SIGTERM and leaves a grandchild that would write the marker.
        let script = format!(
            "trap '' TERM; (sleep 4; touch {}) & sleep 60",
            marker.display()
        );
        let started = Instant::now();
        let outcome = runtime()
            .block_on(run(&spec(dir.path(), &script, Duration::from_secs(1))))
            .unwrap();
        let took = started.elapsed();
        assert!(outcome.timed_out);
        assert_eq!(outcome.signal, Some(9), "{outcome:?}");
        assert!(
            took < Duration::from_secs(1) + KILL_GRACE + Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(
            outcome.describe(),
            "agent timed out after 1 s; its process group was killed"
        );
        std::thread::sleep(Duration::from_secs(4));
        assert!(!marker.exists(), "the grandchild survived the group kill");
    }

    #[test]
    fn leftovers_in_the_group_are_killed_when_the_command_ends() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("leftover");
        let script = format!("(sleep 2; touch {}) & exit 0", marker.display());
        let outcome = runtime()
            .block_on(run(&spec(dir.path(), &script, Duration::from_secs(30))))
            .unwrap();
        assert_eq!(outcome.exit_code, Some(0));
        std::thread::sleep(Duration::from_secs(3));
        assert!(!marker.exists(), "a background process outlived the run");
    }

    #[test]
    fn a_missing_command_cannot_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path(), "", Duration::from_secs(5));
        spec.command = vec!["pathgate-no-such-agent".into()];
        let error = runtime().block_on(run(&spec)).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("\"pathgate-no-such-agent\"") && text.contains("No such file"),
            "{text}"
        );
    }

    #[test]
    fn a_signal_is_described_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = runtime()
            .block_on(run(&spec(
                dir.path(),
                "kill -USR1 $$",
                Duration::from_secs(5),
            )))
            .unwrap();
        assert_eq!(outcome.signal, Some(10));
        assert!(
            outcome.describe().contains("signal 10 (SIGUSR1)"),
            "{}",
            outcome.describe()
        );
    }
}
