//! The control-plane binaries: the pinned versions, the cache key, and the `go build` that
//! makes `kube-apiserver`, `kubectl` and `etcd` when the cache does not hold them yet.
//!
//! The Go modules in `controlplane/kubernetes` and `controlplane/etcd` hold only `go.mod` and
//! `go.sum`; this module reads the versions from them and hashes them, so a change of pin
//! means a new cache directory and the old one is never reused by mistake. Binaries live
//! outside the clone (`${XDG_CACHE_HOME:-~/.cache}/pathgate/`) so fresh clones reuse them.
//!
//! It does not own starting anything (see [`crate::launch`]).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::{io_error, Error, Result};

/// The module whose version names the Kubernetes release.
const KUBERNETES_MODULE: &str = "k8s.io/kubernetes";
/// The module whose version names the etcd release.
const ETCD_MODULE: &str = "go.etcd.io/etcd/server/v3";

/// The pinned releases, read from the `require` lines of the two go.mod files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// The `k8s.io/kubernetes` version, e.g. `v1.37.2`.
    pub kubernetes: String,
    /// The `go.etcd.io/etcd/server/v3` version, e.g. `v3.7.3`.
    pub etcd: String,
}

impl Versions {
    /// Reads both pins from `controlplane_dir` (the repository's `controlplane/`).
    pub fn read(controlplane_dir: &Path) -> Result<Self> {
        let kubernetes_mod = controlplane_dir.join("kubernetes/go.mod");
        let etcd_mod = controlplane_dir.join("etcd/go.mod");
        Ok(Versions {
            kubernetes: required_version(&read_to_string(&kubernetes_mod)?, KUBERNETES_MODULE)
                .ok_or(Error::MissingPin {
                    path: kubernetes_mod,
                    module: KUBERNETES_MODULE,
                })?,
            etcd: required_version(&read_to_string(&etcd_mod)?, ETCD_MODULE).ok_or(
                Error::MissingPin {
                    path: etcd_mod,
                    module: ETCD_MODULE,
                },
            )?,
        })
    }

    /// The Kubernetes major and minor numbers (`("1", "37")` for `v1.37.2`), which the
    /// version ldflags need besides the full version.
    pub fn kubernetes_major_minor(&self) -> (&str, &str) {
        let mut parts = self.kubernetes.trim_start_matches('v').split('.');
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
    }
}

/// Finds `module vX.Y.Z` in a go.mod, on a one-line `require` or inside a `require (...)`
/// block, ignoring `replace` lines (`module => ...`) and longer module paths.
fn required_version(go_mod: &str, module: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let line = line.trim();
        let line = line.strip_prefix("require ").unwrap_or(line).trim_start();
        let mut words = line.split_whitespace();
        let (name, version) = (words.next()?, words.next()?);
        (name == module && version.starts_with('v')).then(|| version.to_string())
    })
}

/// Paths of the three built binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// The cache directory that holds them.
    pub dir: PathBuf,
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `kubectl`.
    pub kubectl: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
}

impl Binaries {
    fn in_dir(dir: PathBuf) -> Self {
        Binaries {
            kube_apiserver: dir.join("kube-apiserver"),
            kubectl: dir.join("kubectl"),
            etcd: dir.join("etcd"),
            dir,
        }
    }

    fn all_present(&self) -> bool {
        [&self.kube_apiserver, &self.kubectl, &self.etcd]
            .iter()
            .all(|path| path.is_file())
    }
}

/// The pinned Go modules of `controlplane/` and where their binaries are cached.
#[derive(Debug, Clone)]
pub struct ControlPlaneSource {
    /// The repository's `controlplane/` directory.
    pub dir: PathBuf,
    /// The pinned releases.
    pub versions: Versions,
    /// First 16 hex digits of the SHA-256 of kubernetes/go.mod, kubernetes/go.sum,
    /// etcd/go.mod and etcd/go.sum concatenated in that order.
    pub key: String,
}

impl ControlPlaneSource {
    /// The `controlplane/` directory of this workspace.
    pub fn of_workspace() -> Result<Self> {
        Self::open(&crate::workspace_root().join("controlplane"))
    }

    /// Reads the pins and computes the cache key of `controlplane_dir`.
    pub fn open(controlplane_dir: &Path) -> Result<Self> {
        let versions = Versions::read(controlplane_dir)?;
        let mut hasher = Sha256::new();
        for file in [
            "kubernetes/go.mod",
            "kubernetes/go.sum",
            "etcd/go.mod",
            "etcd/go.sum",
        ] {
            let path = controlplane_dir.join(file);
            hasher.update(fs::read(&path).map_err(io_error("read", path))?);
        }
        let digest = hasher.finalize();
        let key = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok(ControlPlaneSource {
            dir: controlplane_dir.to_path_buf(),
            versions,
            key,
        })
    }

    /// The directory the binaries of these pins live in.
    pub fn cache_dir(&self) -> PathBuf {
        cache_root().join(format!(
            "controlplane-k8s-{}-etcd-{}-{}",
            self.versions.kubernetes, self.versions.etcd, self.key
        ))
    }

    /// The cached binaries, if a complete build is there.
    pub fn cached(&self) -> Option<Binaries> {
        let binaries = Binaries::in_dir(self.cache_dir());
        binaries.all_present().then_some(binaries)
    }

    /// Returns the cached binaries, building them first if needed.
    ///
    /// A build goes into `<cache dir>.partial` and is renamed into place only when all three
    /// binaries exist, so an interrupted build is never mistaken for a finished one. A lock
    /// file serialises concurrent builders (two test runs on a cold machine).
    pub fn ensure_built(&self) -> Result<Binaries> {
        if let Some(binaries) = self.cached() {
            return Ok(binaries);
        }
        let root = cache_root();
        fs::create_dir_all(&root).map_err(io_error("create", &root))?;
        let lock_path = root.join("build.lock");
        let lock = File::create(&lock_path).map_err(io_error("create", &lock_path))?;
        if lock.try_lock().is_err() {
            eprintln!(
                "testcluster: another build holds {}; waiting for it",
                lock_path.display()
            );
            lock.lock().map_err(io_error("lock", &lock_path))?;
        }
        // Another builder may have finished while we waited.
        if let Some(binaries) = self.cached() {
            return Ok(binaries);
        }
        let final_dir = self.cache_dir();
        // Not `with_extension`: the directory name contains dots (v1.37.2).
        let mut partial_name = final_dir.as_os_str().to_owned();
        partial_name.push(".partial");
        let partial = PathBuf::from(partial_name);
        if partial.exists() {
            fs::remove_dir_all(&partial).map_err(io_error("remove", &partial))?;
        }
        fs::create_dir_all(&partial).map_err(io_error("create", &partial))?;
        self.build_kubernetes(&partial)?;
        self.build_etcd(&partial)?;
        if final_dir.exists() {
            // An incomplete directory from an older layout: replace it.
            fs::remove_dir_all(&final_dir).map_err(io_error("remove", &final_dir))?;
        }
        fs::rename(&partial, &final_dir).map_err(io_error("rename", &partial))?;
        eprintln!(
            "testcluster: control plane cached in {}",
            final_dir.display()
        );
        Ok(Binaries::in_dir(final_dir))
    }

    fn build_kubernetes(&self, out: &Path) -> Result<()> {
        let version = &self.versions.kubernetes;
        let (major, minor) = self.versions.kubernetes_major_minor();
        // component-base feeds the apiserver's /version and kubectl's server side; client-go's
        // copy feeds kubectl's client version. Both must say the real release.
        let ldflags = format!(
            "-s -w \
             -X k8s.io/component-base/version.gitVersion={version} \
             -X k8s.io/component-base/version.gitMajor={major} \
             -X k8s.io/component-base/version.gitMinor={minor} \
             -X k8s.io/component-base/version.gitTreeState=clean \
             -X k8s.io/client-go/pkg/version.gitVersion={version} \
             -X k8s.io/client-go/pkg/version.gitMajor={major} \
             -X k8s.io/client-go/pkg/version.gitMinor={minor}"
        );
        go_build(
            &self.dir.join("kubernetes"),
            &format!("kube-apiserver and kubectl {version}"),
            "about 7 minutes and 2.5 GB of memory on two cores",
            &ldflags,
            &format!("{}/", out.display()),
            &[
                "k8s.io/kubernetes/cmd/kube-apiserver",
                "k8s.io/kubernetes/cmd/kubectl",
            ],
        )
    }

    fn build_etcd(&self, out: &Path) -> Result<()> {
        go_build(
            &self.dir.join("etcd"),
            &format!("etcd {}", self.versions.etcd),
            "about a minute",
            "-s -w",
            &out.join("etcd").display().to_string(),
            &[ETCD_MODULE],
        )
    }
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/pathgate`.
pub fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("pathgate")
}

fn go_command() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("go"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain([PathBuf::from("/usr/local/go/bin/go")])
        .find(|candidate| candidate.is_file())
        .ok_or(Error::GoMissing)
}

fn go_build(
    module_dir: &Path,
    what: &str,
    expected: &str,
    ldflags: &str,
    output: &str,
    packages: &[&str],
) -> Result<()> {
    let go = go_command()?;
    eprintln!(
        "testcluster: building {what} in {} (cold: {expected}; cached afterwards)",
        module_dir.display()
    );
    let started = Instant::now();
    let status = Command::new(&go)
        .current_dir(module_dir)
        // Static binaries need no C toolchain; `local` forbids a toolchain download.
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .args(["build", "-trimpath", "-ldflags", ldflags, "-o", output])
        .args(packages)
        .status()
        .map_err(io_error("run", &go))?;
    if !status.success() {
        return Err(Error::GoBuild {
            what: what.to_string(),
            status,
        });
    }
    let elapsed = started.elapsed().as_secs();
    eprintln!(
        "testcluster: built {what} in {}m{:02}s",
        elapsed / 60,
        elapsed % 60
    );
    Ok(())
}

fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(io_error("read", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_version_reads_block_and_single_line_requires_but_not_replaces() {
        let go_mod = "module x\n\nrequire k8s.io/kubernetes v1.37.2\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 v3.7.3 // indirect\n\tk8s.io/kubernetes/foo v9.9.9\n)\n\nreplace (\n\tk8s.io/api => k8s.io/api v0.37.2\n)\n";
        assert_eq!(
            required_version(go_mod, "k8s.io/kubernetes").as_deref(),
            Some("v1.37.2")
        );
        assert_eq!(
            required_version(go_mod, "go.etcd.io/etcd/server/v3").as_deref(),
            Some("v3.7.3")
        );
        assert_eq!(required_version(go_mod, "k8s.io/api"), None);
    }

    #[test]
    fn major_minor_come_from_the_pinned_version() {
        let versions = Versions {
            kubernetes: "v1.37.2".into(),
            etcd: "v3.7.3".into(),
        };
        assert_eq!(versions.kubernetes_major_minor(), ("1", "37"));
    }

    #[test]
    fn cache_key_is_the_hash_of_the_four_module_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("kubernetes/go.mod", "require k8s.io/kubernetes v1.2.3\n"),
            ("kubernetes/go.sum", "a\n"),
            ("etcd/go.mod", "require go.etcd.io/etcd/server/v3 v3.4.5\n"),
            ("etcd/go.sum", "b\n"),
        ];
        let mut concatenated = Vec::new();
        for (name, content) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
            concatenated.extend_from_slice(content.as_bytes());
        }
        let source = ControlPlaneSource::open(dir.path()).unwrap();
        let expected: String = Sha256::digest(&concatenated)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(source.key, expected[..16]);
        assert!(source.cache_dir().ends_with(format!(
            "controlplane-k8s-v1.2.3-etcd-v3.4.5-{}",
            &expected[..16]
        )));
    }
}
