//! The Kubernetes-native peers, in front of the same canned upstream as every other route:
//! `kubectl proxy` (the kubectl the test cluster builds) and kube-rbac-proxy (built from its
//! pinned Go module the first time the benchmark is asked for it, see
//! `testcluster::tools::KUBE_RBAC_PROXY`).
//!
//! kube-rbac-proxy asks the upstream's API whether the client's token is valid
//! (TokenReview) and whether the request is allowed (SubjectAccessReview); the canned
//! upstream answers both yes ([`crate::upstream`]), and kube-rbac-proxy caches the answers
//! (2 and 5 minutes), so the measured requests pay its proxying and the cache look-ups, as
//! in a cluster. It does not own the report's comparison (see `report`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::children::{self, ChildProcess};

/// The upstream kubeconfig with the benchmark's bearer token: both peers authenticate
/// upstream with their own credentials (kubectl would prompt for a password without any).
fn with_token(dir: &Path, kubeconfig: &Path) -> anyhow::Result<PathBuf> {
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(kubeconfig)?)?;
    config["users"][0]["user"]["token"] = crate::TOKEN.into();
    let path = dir.join("peers.kubeconfig");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

/// `kubectl proxy` on a free loopback port, reaching the upstream through `kubeconfig`.
/// It serves plain HTTP only (its own documentation's use: a local port for one user).
pub fn kubectl_proxy(dir: &Path, kubeconfig: &Path) -> anyhow::Result<(ChildProcess, SocketAddr)> {
    let kubeconfig = with_token(dir, kubeconfig)?;
    let kubectl = testcluster::ControlPlaneSource::of_workspace()?
        .ensure_built()?
        .kubectl;
    let mut command = Command::new(kubectl);
    command.arg("--kubeconfig").arg(kubeconfig).args([
        "proxy",
        "--address",
        "127.0.0.1",
        "--port",
        "0",
    ]);
    let mut child = ChildProcess::spawn("kubectl proxy", command, &dir.join("kubectl-proxy.log"))?;
    let addr = child.announced_address("Starting to serve on ")?;
    Ok((child, addr))
}

/// kube-rbac-proxy serving TLS with the benchmark's certificate, proxying to `upstream`
/// (verified against `certs.ca_cert`) and asking the API behind `kubeconfig` for reviews.
pub fn kube_rbac_proxy(
    dir: &Path,
    certs: &pathgate::tls::CertFiles,
    upstream: SocketAddr,
    kubeconfig: &Path,
) -> anyhow::Result<(ChildProcess, SocketAddr)> {
    let binary = testcluster::tools::KUBE_RBAC_PROXY
        .ensure_built()
        .context("building kube-rbac-proxy from controlplane/kube-rbac-proxy")?;
    let kubeconfig = with_token(dir, kubeconfig)?;
    let port = children::free_loopback_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut command = Command::new(binary);
    command
        .arg(format!("--secure-listen-address={addr}"))
        .arg(format!("--upstream=https://localhost:{}/", upstream.port()))
        .arg(format!("--upstream-ca-file={}", certs.ca_cert.display()))
        .arg(format!("--tls-cert-file={}", certs.server_cert.display()))
        .arg(format!(
            "--tls-private-key-file={}",
            certs.server_key.display()
        ))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--v=0");
    let mut child =
        ChildProcess::spawn("kube-rbac-proxy", command, &dir.join("kube-rbac-proxy.log"))?;
    child.wait_listening(addr)?;
    Ok((child, addr))
}

/// The measured peers' releases, for the report's tools line (empty when none is measured).
pub fn versions(routes: &[crate::report::Route]) -> anyhow::Result<String> {
    use crate::report::Route;
    let mut versions = Vec::new();
    if routes.contains(&Route::KubectlProxy) {
        let source = testcluster::ControlPlaneSource::of_workspace()?;
        versions.push(format!("kubectl {}", source.versions.kubernetes));
    }
    if routes.contains(&Route::KubeRbacProxy) {
        let source = testcluster::tools::KUBE_RBAC_PROXY.source()?;
        versions.push(format!("kube-rbac-proxy {}", source.version));
    }
    Ok(versions
        .iter()
        .map(|version| format!("; {version}"))
        .collect())
}
