//! The files of a cluster directory, and reading a running cluster back from them.
//!
//! The launcher writes every file named here; tests and humans read them. `DIR/env` is
//! written last, once the cluster is ready, and removed by `down`: its presence is what
//! "a cluster is running here" means to a reader.
//!
//! It does not own writing the files (see [`crate::launch`]) nor what is in them
//! (see [`crate::pki`] and the `manifests` module).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::{io_error, Error, Result, CLUSTER_DIR_ENV};

/// The file whose presence says a directory was made by this crate (and may be emptied).
pub const MARKER: &str = ".testcluster";

/// A cluster directory: every path the launcher writes, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDir {
    root: PathBuf,
}

macro_rules! files {
    ($($(#[$doc:meta])* $name:ident => $file:literal,)*) => {
        impl ClusterDir {
            $($(#[$doc])* pub fn $name(&self) -> PathBuf { self.root.join($file) })*
        }
    };
}

files! {
    /// The CA certificate (PEM) that signed the serving and client certificates.
    ca_cert => "ca.crt",
    /// The CA private key (PEM).
    ca_key => "ca.key",
    /// The apiserver's serving certificate (127.0.0.1, ::1, localhost).
    serving_cert => "apiserver.crt",
    /// The apiserver's serving key.
    serving_key => "apiserver.key",
    /// The admin client certificate (CN=admin, O=system:masters).
    admin_cert => "admin.crt",
    /// The admin client key.
    admin_key => "admin.key",
    /// The agent client certificate (CN=agent, O=pathgate:agents).
    agent_cert => "agent.crt",
    /// The agent client key.
    agent_key => "agent.key",
    /// The admin static bearer token (one line).
    admin_token => "admin.token",
    /// The agent static bearer token (one line).
    agent_token => "agent.token",
    /// The apiserver's `--token-auth-file` (CSV).
    token_auth_file => "tokens.csv",
    /// The service-account token signing key (private, PEM).
    service_account_key => "service-account.key",
    /// The service-account token verification key (public, PEM).
    service_account_public_key => "service-account.pub",
    /// The audit policy (every request at `Metadata`).
    audit_policy => "audit-policy.yaml",
    /// The apiserver's audit log, one JSON event per line.
    audit_log => "audit.log",
    /// Kubeconfig of the admin identity by client certificate.
    admin_kubeconfig => "admin.kubeconfig",
    /// Kubeconfig of the admin identity by static token.
    admin_token_kubeconfig => "admin-token.kubeconfig",
    /// Kubeconfig of the agent identity by client certificate.
    agent_kubeconfig => "agent.kubeconfig",
    /// Kubeconfig of the agent identity by static token.
    agent_token_kubeconfig => "agent-token.kubeconfig",
    /// Shell exports describing the running cluster (written last, removed by `down`).
    env_file => "env",
    /// Process group ids of etcd and kube-apiserver, one `name pgid` per line.
    pid_file => "pids",
    /// etcd's output.
    etcd_log => "etcd.log",
    /// kube-apiserver's output.
    apiserver_log => "kube-apiserver.log",
    /// etcd's data directory.
    etcd_data => "etcd-data",
    /// See [`MARKER`].
    marker => ".testcluster",
}

impl ClusterDir {
    /// A cluster directory rooted at `root` (nothing is read or created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ClusterDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// A running cluster as its directory describes it: what a test needs to reach it.
#[derive(Debug, Clone)]
pub struct RunningCluster {
    /// Its directory and every file in it.
    pub dir: ClusterDir,
    /// The built kubectl.
    pub kubectl: PathBuf,
    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub apiserver: String,
    /// The apiserver's port on 127.0.0.1.
    pub port: u16,
    /// The release the apiserver and kubectl were built from (`v1.37.2`).
    pub kubernetes_version: String,
}

impl RunningCluster {
    /// The cluster named by `PATHGATE_CLUSTER_DIR`; the error names `cargo xtask test`.
    pub fn from_env() -> Result<Self> {
        let dir = std::env::var_os(CLUSTER_DIR_ENV).ok_or_else(|| Error::NoCluster {
            reason: format!("{CLUSTER_DIR_ENV} is not set"),
        })?;
        Self::load(Path::new(&dir))
    }

    /// Reads `dir/env`, which exists only while a cluster started there is running.
    pub fn load(dir: &Path) -> Result<Self> {
        let cluster_dir = ClusterDir::new(dir);
        let env_path = cluster_dir.env_file();
        let text = fs::read_to_string(&env_path).map_err(|error| Error::NoCluster {
            reason: format!("cannot read {}: {error}", env_path.display()),
        })?;
        let exports = parse_exports(&text);
        let get = |key: &str| {
            exports.get(key).cloned().ok_or_else(|| Error::NoCluster {
                reason: format!("{} has no {key}", env_path.display()),
            })
        };
        let apiserver = get("APISERVER")?;
        let port = apiserver
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| Error::NoCluster {
                reason: format!(
                    "APISERVER={apiserver} in {} has no port",
                    env_path.display()
                ),
            })?;
        Ok(RunningCluster {
            dir: cluster_dir,
            kubectl: PathBuf::from(get("KUBECTL")?),
            apiserver,
            port,
            kubernetes_version: get("KUBERNETES_VERSION")?,
        })
    }

    /// The admin static token.
    pub fn admin_token(&self) -> Result<String> {
        read_token(&self.dir.admin_token())
    }

    /// The agent static token.
    pub fn agent_token(&self) -> Result<String> {
        read_token(&self.dir.agent_token())
    }
}

fn read_token(path: &Path) -> Result<String> {
    Ok(fs::read_to_string(path)
        .map_err(io_error("read", path))?
        .trim()
        .to_string())
}

/// Renders `export KEY='value'` lines that any POSIX shell can `source`.
pub(crate) fn render_exports(exports: &[(&str, String)]) -> String {
    exports
        .iter()
        .map(|(key, value)| format!("export {key}='{}'\n", value.replace('\'', r"'\''")))
        .collect()
}

/// Reads back what [`render_exports`] wrote.
fn parse_exports(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.strip_prefix("export ")?.split_once('=')?;
            let value = value.strip_prefix('\'')?.strip_suffix('\'')?;
            Some((key.to_string(), value.replace(r"'\''", "'")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_round_trip_including_quotes() {
        let text = render_exports(&[
            ("KUBECTL", "/cache/kubectl".to_string()),
            ("ODD", "it's".to_string()),
        ]);
        assert_eq!(
            text,
            "export KUBECTL='/cache/kubectl'\nexport ODD='it'\\''s'\n"
        );
        let parsed = parse_exports(&text);
        assert_eq!(parsed["KUBECTL"], "/cache/kubectl");
        assert_eq!(parsed["ODD"], "it's");
    }

    #[test]
    fn a_missing_env_file_names_the_test_command() {
        let dir = tempfile::tempdir().unwrap();
        let error = RunningCluster::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("cargo xtask test"), "{error}");
        assert!(error.contains("env"), "{error}");
    }

    #[test]
    fn load_reads_the_apiserver_port_and_kubectl() {
        let dir = tempfile::tempdir().unwrap();
        let cluster_dir = ClusterDir::new(dir.path());
        fs::write(
            cluster_dir.env_file(),
            render_exports(&[
                ("KUBECTL", "/x/kubectl".into()),
                ("APISERVER", "https://127.0.0.1:41234".into()),
                ("KUBERNETES_VERSION", "v1.37.2".into()),
            ]),
        )
        .unwrap();
        let cluster = RunningCluster::load(dir.path()).unwrap();
        assert_eq!(cluster.port, 41234);
        assert_eq!(cluster.kubectl, PathBuf::from("/x/kubectl"));
        assert_eq!(cluster.kubernetes_version, "v1.37.2");
    }
}
