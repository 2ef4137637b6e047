//! The kubeconfig file model, read as kubectl reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::UpstreamError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Kubeconfig {
    #[serde(default)]
    pub clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    pub users: Vec<NamedUser>,
    #[serde(default)]
    pub contexts: Vec<Named<Context>>,
    #[serde(default)]
    pub current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Named<T> {
    pub name: String,
    #[serde(alias = "cluster", alias = "context")]
    pub value: T,
}

#[derive(Debug, Deserialize)]
pub(super) struct NamedUser {
    pub name: String,
    #[serde(default)]
    pub user: User,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Cluster {
    pub server: Option<String>,
    pub certificate_authority: Option<String>,
    pub certificate_authority_data: Option<String>,
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    pub tls_server_name: Option<String>,
    pub proxy_url: Option<String>,
    /// Accepted and ignored: pathgate passes compression through untouched.
    #[serde(default, rename = "disable-compression")]
    pub _disable_compression: bool,
    /// Accepted and ignored: client-side extensions carry nothing for the upstream.
    #[serde(default, rename = "extensions")]
    pub _extensions: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Context {
    pub cluster: String,
    #[serde(default)]
    pub user: Option<String>,
    /// Accepted and ignored: the namespace default is the client's business.
    #[serde(default, rename = "namespace")]
    pub _namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct User {
    pub client_certificate: Option<String>,
    pub client_certificate_data: Option<String>,
    pub client_key: Option<String>,
    pub client_key_data: Option<String>,
    pub token: Option<String>,
    #[serde(rename = "tokenFile")]
    pub token_file: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub exec: Option<ExecConfig>,
    pub auth_provider: Option<serde_yaml::Value>,
    #[serde(rename = "as")]
    pub impersonate: Option<String>,
    #[serde(rename = "as-groups")]
    pub impersonate_groups: Option<Vec<String>>,
}

/// `users[].user.exec`: a client-go credential plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecConfig {
    pub api_version: Option<String>,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<ExecEnv>,
    #[serde(default)]
    pub install_hint: Option<String>,
    #[serde(default)]
    pub provide_cluster_info: bool,
    #[serde(default)]
    pub interactive_mode: Option<String>,
}

/// One `env` entry of an exec plugin.
#[derive(Debug, Clone, Deserialize)]
pub struct ExecEnv {
    pub name: String,
    pub value: String,
}

/// The parts of a kubeconfig pathgate uses, resolved for one context, with file paths made
/// absolute relative to the kubeconfig's directory (as kubectl does).
#[derive(Debug)]
pub(super) struct Resolved {
    pub server: String,
    pub ca_pem: Option<Vec<u8>>,
    pub insecure_skip_tls_verify: bool,
    pub tls_server_name: Option<String>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub exec: Option<ExecConfig>,
}

fn decode_data(path: &Path, key: &str, data: &str) -> Result<Vec<u8>, UpstreamError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| UpstreamError::kubeconfig(path, key, format!("is not valid base64: {e}")))
}

fn read_relative(path: &Path, key: &str, file: &str) -> Result<Vec<u8>, UpstreamError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let full = base.join(file);
    std::fs::read(&full).map_err(|e| {
        UpstreamError::kubeconfig(path, key, format!("cannot read {}: {e}", full.display()))
    })
}

fn file_or_data(
    path: &Path,
    key: &str,
    file: &Option<String>,
    data: &Option<String>,
) -> Result<Option<Vec<u8>>, UpstreamError> {
    match (data, file) {
        (Some(data), _) => Ok(Some(decode_data(path, &format!("{key}-data"), data)?)),
        (None, Some(file)) => Ok(Some(read_relative(path, key, file)?)),
        (None, None) => Ok(None),
    }
}

/// Reads `path` and resolves `context` (or the current context).
pub(super) fn load(path: &Path, context: Option<&str>) -> Result<Resolved, UpstreamError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UpstreamError::kubeconfig(path, "", format!("cannot read: {e}")))?;
    let config: Kubeconfig = serde_yaml::from_str(&text)
        .map_err(|e| UpstreamError::kubeconfig(path, "", format!("is not a kubeconfig: {e}")))?;

    let context_name = match context {
        Some(name) => name.to_string(),
        None => config
            .current_context
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                UpstreamError::kubeconfig(
                    path,
                    "current-context",
                    "is not set; pass --context NAME",
                )
            })?,
    };
    let ctx = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .ok_or_else(|| {
            UpstreamError::kubeconfig(
                path,
                "contexts",
                format!("has no context named {context_name:?}"),
            )
        })?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == ctx.value.cluster)
        .ok_or_else(|| {
            UpstreamError::kubeconfig(
                path,
                "clusters",
                format!("has no cluster named {:?}", ctx.value.cluster),
            )
        })?;
    let cluster = &cluster.value;
    let user = match &ctx.value.user {
        Some(name) if !name.is_empty() => config
            .users
            .iter()
            .find(|u| &u.name == name)
            .map(|u| &u.user)
            .ok_or_else(|| {
                UpstreamError::kubeconfig(path, "users", format!("has no user named {name:?}"))
            })?,
        _ => &User::default(),
    };

    let unsupported = |key: &str, why: &str| Err(UpstreamError::unsupported(path, key, why));
    if cluster.proxy_url.is_some() {
        return unsupported(
            "clusters[].cluster.proxy-url",
            "pathgate connects to the apiserver directly; run it where the apiserver is reachable",
        );
    }
    if user.auth_provider.is_some() {
        return unsupported(
            "users[].user.auth-provider",
            "auth-provider plugins were removed from client-go; use an exec credential plugin",
        );
    }
    if user.username.is_some() || user.password.is_some() {
        return unsupported(
            "users[].user.username/password",
            "basic authentication is not supported by current apiservers",
        );
    }
    if user.impersonate.is_some() || user.impersonate_groups.is_some() {
        return unsupported(
            "users[].user.as",
            "impersonation in the upstream kubeconfig is not supported; use --auth impersonate",
        );
    }
    let server = cluster.server.clone().ok_or_else(|| {
        UpstreamError::kubeconfig(path, "clusters[].cluster.server", "is missing")
    })?;

    let ca_pem = file_or_data(
        path,
        "certificate-authority",
        &cluster.certificate_authority,
        &cluster.certificate_authority_data,
    )?;
    let client_cert_pem = file_or_data(
        path,
        "client-certificate",
        &user.client_certificate,
        &user.client_certificate_data,
    )?;
    let client_key_pem = file_or_data(path, "client-key", &user.client_key, &user.client_key_data)?;
    if client_cert_pem.is_some() != client_key_pem.is_some() {
        return Err(UpstreamError::kubeconfig(
            path,
            "users[].user.client-key",
            "a client certificate needs both the certificate and the key",
        ));
    }
    let token_file = user.token_file.as_ref().map(|f| {
        let base = path.parent().unwrap_or(Path::new("."));
        base.join(f)
    });
    Ok(Resolved {
        server,
        ca_pem,
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
        tls_server_name: cluster.tls_server_name.clone(),
        client_cert_pem,
        client_key_pem,
        token: user.token.clone().filter(|t| !t.is_empty()),
        token_file,
        exec: user.exec.clone(),
    })
}

/// Environment variables of an exec plugin, as a map (for tests and the runner).
pub(super) fn exec_env(exec: &ExecConfig) -> BTreeMap<String, String> {
    exec.env
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}
