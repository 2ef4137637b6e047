//! The Go-built tools the test suite runs besides the control plane (Jaeger as the OTLP
//! receiver, helm, a minimal OpenTelemetry Collector for the fleet test), each pinned by a
//! Go module under `controlplane/<name>/`; and kube-rbac-proxy, which only the load
//! benchmark builds.
//!
//! `cargo xtask test` builds every one of them before any test starts ([`ALL`],
//! [`GoTool::ensure_built`]); tests only look them up ([`GoTool::find`]) and fail with a
//! message naming `cargo xtask test` when one is missing, so no two tests ever build the
//! same tool at once. Each is cached in `${XDG_CACHE_HOME:-~/.cache}/pathgate/
//! <binary>-<version>-<key>/`, where the key hashes the module's go.mod and go.sum: a new
//! pin is a new directory.
//!
//! It does not own the control plane's own binaries ([`crate::binaries`]).

use std::fs;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::binaries::{cache_root, required_version};
use crate::gobuild::{build_locked, GoBuild};
use crate::{io_error, Error, Result};

/// One tool: which module pins it and what to build from it.
#[derive(Debug)]
pub struct GoTool {
    /// Its name for people, e.g. `Jaeger`.
    pub name: &'static str,
    /// The directory under `controlplane/` holding its go.mod and go.sum.
    pub module_dir: &'static str,
    /// The module whose `require` line names the release.
    pub version_module: &'static str,
    /// The main package to build.
    pub package: &'static str,
    /// The binary's file name.
    pub binary: &'static str,
    /// How long a cold build takes, for people.
    pub expected: &'static str,
    /// Extra environment for `go build`.
    pub env: &'static [(&'static str, &'static str)],
}

/// Jaeger v2, an OpenTelemetry Collector distribution: the ledger's OTLP sink tests send to
/// its receiver and read spans back through its query API.
pub const JAEGER: GoTool = GoTool {
    name: "Jaeger",
    module_dir: "jaeger",
    version_module: "github.com/jaegertracing/jaeger",
    package: "github.com/jaegertracing/jaeger/cmd/jaeger",
    binary: "jaeger",
    expected: "about 5 minutes on two cores",
    // The module pins the tool through a `tool` directive; its go.sum lists the build's
    // modules but `-mod=mod` lets go fill in any it needs rather than refuse.
    env: &[("GOFLAGS", "-mod=mod")],
};

/// helm v4: the chart tests lint `deploy/helm/pathgate` and render it for the apiserver's
/// server-side dry run.
pub const HELM: GoTool = GoTool {
    name: "helm",
    module_dir: "helm",
    version_module: "helm.sh/helm/v4",
    package: "helm.sh/helm/v4/cmd/helm",
    binary: "helm",
    expected: "about 4 minutes on two cores",
    // go.sum is complete for this build: go may not change it.
    env: &[],
};

/// The smallest OpenTelemetry Collector with the OTLP receiver and the file exporter (its
/// `main.go` is what the collector's `builder` generates for those two components): the
/// fleet test's two pathgate instances export their ledgers to it, and `pathgate autopsy`
/// reads the file it writes.
pub const OTELCOL: GoTool = GoTool {
    name: "OpenTelemetry Collector",
    module_dir: "otelcol",
    version_module: "go.opentelemetry.io/collector/otelcol",
    package: "pathgate.dev/controlplane/otelcol",
    binary: "otelcol-pathgate",
    expected: "about 3 minutes on two cores",
    // go.sum is complete for this build: go may not change it.
    env: &[],
};

/// Every tool `cargo xtask test` prepares before the tests run.
pub const ALL: &[&GoTool] = &[&JAEGER, &HELM, &OTELCOL];

/// kube-rbac-proxy, a Kubernetes-native peer of pathgate in the load benchmark (its
/// `kube-rbac-proxy` route). Not in [`ALL`]: no test needs it, so only the benchmark builds
/// it ([`GoTool::ensure_built`]), when it is asked to measure that route.
pub const KUBE_RBAC_PROXY: GoTool = GoTool {
    name: "kube-rbac-proxy",
    module_dir: "kube-rbac-proxy",
    version_module: "github.com/brancz/kube-rbac-proxy",
    package: "github.com/brancz/kube-rbac-proxy/cmd/kube-rbac-proxy",
    binary: "kube-rbac-proxy",
    expected: "about 3 minutes on two cores",
    // go.sum is complete for this build: go may not change it.
    env: &[],
};

/// A tool's pinned release and cache location, read from its module.
#[derive(Debug, Clone)]
pub struct ToolSource {
    tool: &'static GoTool,
    module: PathBuf,
    /// The pinned release, e.g. `v1.76.0`.
    pub version: String,
    /// First 16 hex digits of the SHA-256 of go.mod and go.sum concatenated.
    pub key: String,
}

impl GoTool {
    /// Reads the pin of this tool from the workspace's `controlplane/`.
    pub fn source(&'static self) -> Result<ToolSource> {
        let module = crate::workspace_root()
            .join("controlplane")
            .join(self.module_dir);
        let go_mod_path = module.join("go.mod");
        let go_mod = fs::read(&go_mod_path).map_err(io_error("read", &go_mod_path))?;
        let go_sum_path = module.join("go.sum");
        let go_sum = fs::read(&go_sum_path).map_err(io_error("read", &go_sum_path))?;
        let version = required_version(&String::from_utf8_lossy(&go_mod), self.version_module)
            .ok_or(Error::MissingPin {
                path: go_mod_path,
                module: self.version_module,
            })?;
        let digest = Sha256::new()
            .chain_update(&go_mod)
            .chain_update(&go_sum)
            .finalize();
        let key = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok(ToolSource {
            tool: self,
            module,
            version,
            key,
        })
    }

    /// The built binary, or an error naming `cargo xtask test` (what tests call).
    pub fn find(&'static self) -> Result<PathBuf> {
        self.source()?.find()
    }

    /// The built binary, building it first if the cache does not hold it.
    pub fn ensure_built(&'static self) -> Result<PathBuf> {
        self.source()?.ensure_built()
    }
}

impl ToolSource {
    /// `<cache root>/<binary>-<version>-<key>`.
    pub fn cache_dir(&self) -> PathBuf {
        cache_root().join(format!(
            "{}-{}-{}",
            self.tool.binary, self.version, self.key
        ))
    }

    fn binary(&self) -> PathBuf {
        self.cache_dir().join(self.tool.binary)
    }

    /// The built binary, or [`Error::NotBuilt`].
    pub fn find(&self) -> Result<PathBuf> {
        let binary = self.binary();
        if binary.is_file() {
            Ok(binary)
        } else {
            Err(Error::NotBuilt {
                what: format!("{} {}", self.tool.name, self.version),
                path: binary,
            })
        }
    }

    /// The built binary, building it first (once, under a lock) if needed.
    pub fn ensure_built(&self) -> Result<PathBuf> {
        let binary = self.tool.binary;
        build_locked(
            &self.cache_dir(),
            |dir| dir.join(binary).is_file(),
            |partial| {
                GoBuild {
                    what: &format!("{} {}", self.tool.name, self.version),
                    expected: self.tool.expected,
                    module_dir: &self.module,
                    ldflags: "-s -w",
                    output: &partial.join(binary).display().to_string(),
                    packages: &[self.tool.package],
                    env: self.tool.env,
                    log: &partial.join(format!("{binary}-build.log")),
                }
                .run()
            },
        )?;
        self.find()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_pins_its_release_in_its_module() {
        for tool in ALL.iter().chain([&&KUBE_RBAC_PROXY]) {
            let source = tool.source().unwrap_or_else(|error| panic!("{error}"));
            assert!(
                source.version.starts_with('v'),
                "{tool:?}: {}",
                source.version
            );
            assert_eq!(source.key.len(), 16);
            assert!(source
                .cache_dir()
                .ends_with(format!("{}-{}-{}", tool.binary, source.version, source.key)));
        }
    }

    #[test]
    fn a_missing_tool_names_the_command_that_builds_it() {
        let source = ToolSource {
            tool: &JAEGER,
            module: PathBuf::from("/nonexistent"),
            version: "v0.0.0-test".into(),
            key: "0000000000000000".into(),
        };
        let message = source.find().unwrap_err().to_string();
        assert!(message.contains("Jaeger v0.0.0-test"), "{message}");
        assert!(message.contains(crate::TEST_COMMAND), "{message}");
    }
}
