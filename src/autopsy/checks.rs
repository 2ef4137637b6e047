//! Establishing the final state: running `--verify CMD`, or evaluating `--checks FILE`
//! against the cluster with GETs through a kubeconfig that does not go through pathgate
//! (the upstream module's loader and client: the same TLS, token, exec-plugin and
//! client-certificate handling as `serve`).
//!
//! The only I/O of the autopsy besides reading the ledger.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;

use super::final_state::{load_checks, Check, ChecksError, FinalState, Observed};
use crate::upstream::{Upstream, UpstreamError, UpstreamSource};

/// Why the final state could not be established at all (a check that fails is a result,
/// not an error).
#[derive(Debug, thiserror::Error)]
pub enum FinalStateError {
    #[error(transparent)]
    Checks(#[from] ChecksError),
    /// The `--kubeconfig` of the checks cannot be used (the source says why).
    #[error("--kubeconfig cannot be used for the checks")]
    Kubeconfig(#[from] UpstreamError),
    #[error("cannot start the runtime for --checks: {0}")]
    Runtime(std::io::Error),
}

/// How long one check's GET may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `command` with `sh -c`; exit code 0 is a pass. Its output goes to the autopsy's
/// standard error, so a report on standard output stays parseable.
pub fn verify(command: &str) -> FinalState {
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::io::stderr())
        .status();
    match status {
        Ok(status) => FinalState::Command {
            command: command.to_string(),
            exit_code: status.code(),
            passed: status.success(),
            error: None,
        },
        Err(error) => FinalState::Command {
            command: command.to_string(),
            exit_code: None,
            passed: false,
            error: Some(format!("cannot run: {error}")),
        },
    }
}

/// Evaluates the checks of `file` against the cluster `kubeconfig` names (its current
/// context).
pub fn run_checks(file: &Path, kubeconfig: &Path) -> Result<FinalState, FinalStateError> {
    let checks = load_checks(file)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(FinalStateError::Runtime)?;
    runtime.block_on(async {
        let upstream = Upstream::load(
            &UpstreamSource::Kubeconfig {
                path: kubeconfig.to_path_buf(),
                context: None,
            },
            CHECK_TIMEOUT,
            true,
            // Checks are sequential GETs: no long-lived requests.
            1,
        )?;
        let mut results = Vec::with_capacity(checks.len());
        for check in &checks {
            results.push(check.evaluate(&observe(&upstream, check).await));
        }
        Ok(FinalState::Checks {
            file: file.to_path_buf(),
            passed: results.iter().all(|r| r.passed),
            results,
        })
    })
}

/// GETs a check's object.
async fn observe(upstream: &Upstream, check: &Check) -> Observed {
    let request = http::Request::get(upstream.uri_for(&check.path));
    let answer = upstream
        .send_collected(request, Bytes::new(), CHECK_TIMEOUT)
        .await;
    match answer {
        Err(error) => Observed::Error(error),
        Ok((status, _)) if status == http::StatusCode::NOT_FOUND => Observed::Absent,
        Ok((status, body)) if status.is_success() => match serde_json::from_slice(&body) {
            Ok(object) => Observed::Present(object),
            Err(error) => Observed::Error(format!("the answer is not JSON: {error}")),
        },
        Ok((status, body)) => {
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_default();
            Observed::Error(format!("answered {status} {reason}").trim_end().to_string())
        }
    }
}
