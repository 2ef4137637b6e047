//! The scenario benchmark's MCP arms: the pinned MCP servers (`npm ci` in
//! `benches/scenarios/mcp/`, from its package-lock.json) and the MCP driver (`mcpdrive`,
//! release build) that the harness starts as the agent.
//!
//! `npm ci` removes and reinstalls `node_modules` every time, so it runs only when the
//! lockfile changed since the last install: a stamp in `node_modules` holds the lockfile's
//! SHA-256. Tests and the benchmark only look the servers up.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use testcluster::workspace_root;

/// The directory with package.json, package-lock.json and .npmrc.
fn servers_dir() -> PathBuf {
    workspace_root().join("benches/scenarios/mcp")
}

/// The executables `npm ci` must leave (one per pinned server), under `node_modules`.
const LAUNCHERS: &[&str] = &[
    ".bin/mcp-server-kubernetes",
    "kubernetes-mcp-server-linux-amd64/bin/kubernetes-mcp-server-linux-amd64",
];

const STAMP: &str = "node_modules/.pathgate-lock-sha256";

fn lock_digest(dir: &Path) -> anyhow::Result<String> {
    let lock = dir.join("package-lock.json");
    let bytes = std::fs::read(&lock).with_context(|| format!("reading {}", lock.display()))?;
    Ok(format!("{:x}", Sha256::digest(bytes)))
}

/// Installs the pinned servers with `npm ci` unless the same lockfile is installed.
pub fn ensure_servers() -> anyhow::Result<()> {
    let dir = servers_dir();
    let digest = lock_digest(&dir)?;
    let installed = std::fs::read_to_string(dir.join(STAMP)).unwrap_or_default();
    let launchers_present = LAUNCHERS
        .iter()
        .all(|bin| dir.join("node_modules").join(bin).exists());
    if installed.trim() == digest && launchers_present {
        eprintln!("xtask: MCP servers ready in {}", dir.display());
        return Ok(());
    }
    eprintln!(
        "xtask: installing the MCP servers with npm ci in {}",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .context("running npm (Debian's npm package)")?;
    if !status.success() {
        bail!("npm ci in {} failed ({status})", dir.display());
    }
    for bin in LAUNCHERS {
        if !dir.join("node_modules").join(bin).exists() {
            bail!(
                "npm ci left no node_modules/.bin/{bin} in {}",
                dir.display()
            );
        }
    }
    std::fs::write(dir.join(STAMP), format!("{digest}\n")).context("writing the npm stamp")?;
    Ok(())
}

/// `cargo build -p mcpdrive --release` (cargo itself skips an up-to-date build).
pub fn build_driver() -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "mcpdrive"])
        .current_dir(workspace_root())
        .status()
        .context("running cargo build -p mcpdrive")?;
    if !status.success() {
        bail!("cargo build -p mcpdrive failed ({status})");
    }
    eprintln!("xtask: MCP driver ready");
    Ok(())
}
