//! The container image's prerequisites and build: the static (musl) pathgate binary the
//! top-level `Containerfile` packs, the packages that build and run the image on these
//! machines, and `cargo xtask image`, which builds it into the host's podman store.
//!
//! No container registry is reachable from the machines this project is tested on, so the
//! Containerfile's builder stage (which pulls a Rust image) is replaced by the binary built
//! here, with `--build-context build=DIR`. deploy/README.md describes both ways.
//!
//! It does not own the image's tests (tests/integration/deploy/image.rs builds the image
//! again, in a throwaway store, from the binary built here).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use testcluster::workspace_root;

/// The Rust target of the image's binary: musl links statically, so the image needs no libc.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// The Cargo profile of the image's binary (release without debug info; see Cargo.toml).
const PROFILE: &str = "image";

/// Adds the musl Rust target when rustup does not have it. (The Debian packages the image
/// needs, podman, runc and musl-tools, are installed with the others: `DEBIAN_PACKAGES`.)
pub fn ensure_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::inherit())
        .output()
        .context("running rustup target list")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        eprintln!("xtask: adding the Rust target {TARGET}");
        let status = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .context("running rustup target add")?;
        if !status.success() {
            bail!("rustup target add {TARGET} failed ({status})");
        }
    }
    Ok(())
}

/// Where the static binary is built: `<target dir>/x86_64-unknown-linux-musl/image/pathgate`.
pub fn static_binary_path() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join(TARGET)
        .join(PROFILE)
        .join("pathgate")
}

/// Builds (or brings up to date) the static binary; cargo's own cache makes a repeat cheap.
pub fn build_static_binary() -> anyhow::Result<PathBuf> {
    ensure_target()?;
    eprintln!(
        "xtask: building the image's static pathgate ({TARGET}, profile {PROFILE}; cold: \
         a release build of every dependency, 20 minutes or more on two busy cores; cargo's \
         cache afterwards)"
    );
    let started = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--locked", "--bin", "pathgate", "--target", TARGET])
        .args(["--profile", PROFILE])
        .status()
        .context("running cargo build for the image")?;
    if !status.success() {
        bail!("building the static pathgate failed ({status})");
    }
    let binary = static_binary_path();
    eprintln!(
        "xtask: static pathgate ready at {} in {:.0} s",
        binary.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(binary)
}

/// `cargo xtask image`: the static binary, then the Containerfile built by podman with that
/// binary as its `build` stage, tagged `tag` (default: `localhost/pathgate:<its version>`) in
/// the host's image store.
pub fn build_image(tag: Option<&str>) -> anyhow::Result<()> {
    let binary = build_static_binary()?;
    let tag = match tag {
        Some(tag) => tag.to_string(),
        None => format!("localhost/pathgate:{}", version_of(&binary)?),
    };
    let root = workspace_root();
    // A directory with the binary alone: the build context is nothing else.
    let context = root.join("target/image-context");
    std::fs::create_dir_all(&context).with_context(|| format!("creating {}", context.display()))?;
    std::fs::copy(&binary, context.join("pathgate"))
        .with_context(|| format!("copying {} into {}", binary.display(), context.display()))?;
    let status = Command::new("podman")
        .args(["build", "--build-context"])
        .arg(format!("build={}", context.display()))
        .arg("--file")
        .arg(root.join("Containerfile"))
        .args(["--tag", &tag])
        .arg(&root)
        .status()
        .context("running podman build")?;
    if !status.success() {
        bail!("podman build failed ({status})");
    }
    eprintln!("xtask: built {tag}");
    Ok(())
}

/// The version `pathgate --version` prints (`pathgate 0.1.0` -> `0.1.0`).
fn version_of(binary: &Path) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    let printed = String::from_utf8_lossy(&output.stdout);
    match printed.trim().strip_prefix("pathgate ") {
        Some(version) if output.status.success() => Ok(version.to_string()),
        _ => bail!("{} --version printed {printed:?}", binary.display()),
    }
}
