//! Helpers for tests that run against a started cluster: the cluster named by
//! `PATHGATE_CLUSTER_DIR`, the built kubectl with its argument boilerplate, unique names, a
//! polling helper, and a small HTTPS client for the apiserver ([`api`]). Shared by this
//! crate's own tests (that the control plane is a real apiserver) and pathgate's
//! integration tests.
//!
//! Tests run in parallel on one cluster, so each works in its own namespace
//! ([`unique_namespace`]) or with unique object names ([`unique_name`]). Without a cluster,
//! [`cluster`] panics with a message naming `cargo xtask test`: a test that needs the
//! control plane fails, it never skips.
//!
//! Nothing here asserts anything about pathgate.

pub mod api;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use crate::RunningCluster;

/// The running cluster named by `PATHGATE_CLUSTER_DIR`.
///
/// # Panics
/// When no cluster is running, with a message naming `cargo xtask test`.
pub fn cluster() -> &'static RunningCluster {
    static CLUSTER: OnceLock<RunningCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RunningCluster::from_env().unwrap_or_else(|error| panic!("{error}")))
}

/// Runs the built kubectl with `kubeconfig` and `args`; never panics on kubectl's failure.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    run_kubectl(kubeconfig, args, None)
}

/// Like [`kubectl`], with `stdin` piped in (for `-f -`).
pub fn kubectl_with_stdin(kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
    run_kubectl(kubeconfig, args, Some(stdin))
}

/// Runs kubectl and returns its stdout, panicking with stderr if it failed.
pub fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    succeeded(kubeconfig, args, kubectl(kubeconfig, args))
}

/// [`kubectl_with_stdin`] that must succeed; returns stdout.
pub fn kubectl_with_stdin_ok(kubeconfig: &Path, args: &[&str], stdin: &str) -> String {
    succeeded(
        kubeconfig,
        args,
        kubectl_with_stdin(kubeconfig, args, stdin),
    )
}

/// Runs kubectl `args` that must fail; returns stderr.
pub fn kubectl_err(kubeconfig: &Path, args: &[&str]) -> String {
    let output = kubectl(kubeconfig, args);
    assert!(
        !output.status.success(),
        "kubectl {} (as {}) should have failed but printed:\n{}",
        args.join(" "),
        kubeconfig.display(),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The admin (system:masters, client certificate) kubeconfig.
pub fn admin() -> std::path::PathBuf {
    cluster().dir.admin_kubeconfig()
}

/// Runs kubectl as admin and parses its `-o json` output.
pub fn admin_json(args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let stdout = kubectl_ok(&admin(), &args);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("kubectl printed no JSON ({error}): {stdout}"))
}

fn run_kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let cluster = cluster();
    let mut child = Command::new(&cluster.kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", cluster.kubectl.display()));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .expect("kubectl reads its stdin");
    }
    child
        .wait_with_output()
        .expect("kubectl runs to completion")
}

fn succeeded(kubeconfig: &Path, args: &[&str], output: Output) -> String {
    assert!(
        output.status.success(),
        "kubectl {} (as {}) failed ({}):\n{}",
        args.join(" "),
        kubeconfig.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `prefix-<8 random hex digits>`: unique across parallel tests and repeated runs on one
/// cluster, and a valid DNS label as long as `prefix` is one of at most 54 characters.
pub fn unique_name(prefix: &str) -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the system has randomness");
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{suffix}")
}

/// Creates a fresh namespace (as admin) and returns its name.
///
/// Namespaces are never deleted: with no controller-manager a deleted namespace stays
/// `Terminating` forever, and each `cargo xtask test` run starts from an empty cluster anyway.
pub fn unique_namespace(prefix: &str) -> String {
    let name = unique_name(prefix);
    kubectl_ok(&admin(), &["create", "namespace", &name]);
    name
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
