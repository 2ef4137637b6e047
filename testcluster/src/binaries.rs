//! The control-plane binaries: the pinned versions, the cache key, and the `go build` that
//! makes `kube-apiserver`, `kubectl` and `etcd` when the cache does not hold them yet.
//!
//! The Go modules in `controlplane/kubernetes` and `controlplane/etcd` hold only `go.mod` and
//! `go.sum`; this module reads the versions from them and hashes them, so a change of pin
//! means a new cache directory and the old one is never reused by mistake. Binaries live
//! outside the clone (`${XDG_CACHE_HOME:-~/.cache}/pathgate/`) so fresh clones reuse them.
//!
//! It does not own starting anything (see [`crate::launch`]), nor the other tools the tests
//! run (see [`crate::tools`]).

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::gobuild::{build_locked, GoBuild};
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
pub(crate) fn required_version(go_mod: &str, module: &str) -> Option<String> {
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

    /// Returns the cached binaries, building them first if needed (see
    /// [`crate::gobuild`]: whole or not at all, one builder at a time).
    pub fn ensure_built(&self) -> Result<Binaries> {
        let final_dir = self.cache_dir();
        build_locked(
            &final_dir,
            |dir| Binaries::in_dir(dir.to_path_buf()).all_present(),
            |partial| {
                self.build_kubernetes(partial)?;
                self.build_etcd(partial)
            },
        )?;
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
        GoBuild {
            what: &format!("kube-apiserver and kubectl {version}"),
            expected: "about 7 minutes and 2.5 GB of memory on two cores",
            module_dir: &self.dir.join("kubernetes"),
            ldflags: &ldflags,
            output: &format!("{}/", out.display()),
            packages: &[
                "k8s.io/kubernetes/cmd/kube-apiserver",
                "k8s.io/kubernetes/cmd/kubectl",
            ],
            env: &[],
            log: &out.join("kubernetes-build.log"),
        }
        .run()
    }

    fn build_etcd(&self, out: &Path) -> Result<()> {
        GoBuild {
            what: &format!("etcd {}", self.versions.etcd),
            expected: "about a minute",
            module_dir: &self.dir.join("etcd"),
            ldflags: "-s -w",
            output: &out.join("etcd").display().to_string(),
            packages: &[ETCD_MODULE],
            env: &[],
            log: &out.join("etcd-build.log"),
        }
        .run()
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
