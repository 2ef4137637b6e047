//! `pathgate kubeconfig`: the kubeconfig an agent uses to reach the apiserver through
//! pathgate. It trusts pathgate's CA (embedded) and carries the session in the server path.
//!
//! A kubeconfig always names a credential. Given none (the sidecar and loopback case,
//! where pathgate presents its own), it carries [`SIDECAR_PLACEHOLDER_TOKEN`]: with an
//! empty `user`, kubectl asks for a username on its terminal and, without one (a pod, a
//! script, an MCP server that shells out), fails with `EOF` before sending anything.

use std::path::{Path, PathBuf};

use base64::Engine;

/// The bearer token of a kubeconfig written without credentials. pathgate's sidecar and
/// impersonate modes drop the client's `Authorization` header, so it never reaches the
/// apiserver; in passthrough mode the apiserver refuses it (401) like any unknown token.
pub const SIDECAR_PLACEHOLDER_TOKEN: &str = "pathgate-sidecar-placeholder";

/// What goes into the agent's kubeconfig.
#[derive(Debug, Clone, Default)]
pub struct AgentKubeconfig {
    /// pathgate's URL, e.g. `https://127.0.0.1:8443`.
    pub server: String,
    /// Session id carried as the `/s/<id>` server path prefix.
    pub session: Option<String>,
    /// pathgate's CA certificate (PEM file), embedded as `certificate-authority-data`.
    pub ca: PathBuf,
    /// A bearer token for passthrough mode (the cluster's token for this agent).
    pub token: Option<String>,
    /// A token file path, re-read by the client (passthrough mode).
    pub token_file: Option<PathBuf>,
    /// A client certificate and key (PEM files) for impersonate mode or sidecar mTLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Default namespace of the context.
    pub namespace: Option<String>,
}

/// Why the kubeconfig could not be written.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn read(path: &Path) -> Result<Vec<u8>, KubeconfigError> {
    std::fs::read(path).map_err(|source| KubeconfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl AgentKubeconfig {
    /// Renders the kubeconfig YAML.
    pub fn render(&self) -> Result<String, KubeconfigError> {
        let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut server = self.server.trim_end_matches('/').to_string();
        if !server.starts_with("https://") {
            return Err(KubeconfigError::Invalid(format!(
                "--server {server:?} must start with https://"
            )));
        }
        if let Some(session) = &self.session {
            if !crate::session::is_valid_id(session) {
                return Err(KubeconfigError::Invalid(
                    crate::session::SessionError::InvalidId(session.clone()).to_string(),
                ));
            }
            server = format!("{server}/s/{session}");
        }
        let ca = crate::tls::read_certs(&self.ca)
            .map_err(|e| KubeconfigError::Invalid(e.to_string()))?;
        drop(ca);
        let mut user = serde_json::Map::new();
        if let Some(token) = &self.token {
            user.insert("token".into(), token.clone().into());
        }
        if let Some(file) = &self.token_file {
            user.insert("tokenFile".into(), file.display().to_string().into());
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                user.insert("client-certificate-data".into(), b64(read(cert)?).into());
                user.insert("client-key-data".into(), b64(read(key)?).into());
            }
            (None, None) => {}
            _ => {
                return Err(KubeconfigError::Invalid(
                    "--client-cert and --client-key go together".into(),
                ))
            }
        }
        if user.is_empty() {
            user.insert("token".into(), SIDECAR_PLACEHOLDER_TOKEN.into());
        }
        let mut context = serde_json::json!({"cluster": "pathgate", "user": "agent"});
        if let Some(namespace) = &self.namespace {
            context["namespace"] = namespace.clone().into();
        }
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "pathgate", "cluster": {
                "server": server,
                "certificate-authority-data": b64(read(&self.ca)?),
            }}],
            "users": [{"name": "agent", "user": user}],
            "contexts": [{"name": "pathgate", "context": context}],
            "current-context": "pathgate",
        });
        let yaml =
            serde_yaml::to_string(&config).map_err(|e| KubeconfigError::Invalid(e.to_string()))?;
        Ok(format!(
            "# Written by `pathgate kubeconfig`: every request goes through pathgate at {}.\n{yaml}",
            self.server
        ))
    }

    /// Renders and writes the kubeconfig (mode 0600: it may hold a token or a key).
    pub fn write(&self, out: &Path) -> Result<(), KubeconfigError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = self.render()?;
        let io = |source| KubeconfigError::Io {
            path: out.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(out)
            .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_goes_into_the_server_path_and_ca_is_embedded() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::tls::init_certs(dir.path(), &[], false).unwrap();
        let config = AgentKubeconfig {
            server: "https://127.0.0.1:8443/".into(),
            session: Some("run-1".into()),
            ca: files.ca_cert.clone(),
            token: Some("tok".into()),
            ..Default::default()
        };
        let text = config.render().unwrap();
        let value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            value["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:8443/s/run-1"
        );
        let data = value["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(pem, std::fs::read(&files.ca_cert).unwrap());
        assert_eq!(value["users"][0]["user"]["token"], "tok");
    }

    #[test]
    fn without_credentials_the_user_carries_the_placeholder_token() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::tls::init_certs(dir.path(), &[], false).unwrap();
        let config = AgentKubeconfig {
            server: "https://127.0.0.1:8443".into(),
            ca: files.ca_cert.clone(),
            ..Default::default()
        };
        let value: serde_yaml::Value = serde_yaml::from_str(&config.render().unwrap()).unwrap();
        let user = value["users"][0]["user"].as_mapping().unwrap();
        assert_eq!(user.len(), 1, "only the placeholder: {user:?}");
        assert_eq!(
            value["users"][0]["user"]["token"],
            SIDECAR_PLACEHOLDER_TOKEN
        );
    }

    #[test]
    fn a_client_certificate_needs_no_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::tls::init_certs(dir.path(), &[], false).unwrap();
        let (cert, key) = crate::tls::issue_client_cert(
            dir.path(),
            "agent",
            &[],
            &dir.path().join("agent"),
            false,
        )
        .unwrap();
        let config = AgentKubeconfig {
            server: "https://127.0.0.1:8443".into(),
            ca: files.ca_cert.clone(),
            client_cert: Some(cert),
            client_key: Some(key),
            ..Default::default()
        };
        let value: serde_yaml::Value = serde_yaml::from_str(&config.render().unwrap()).unwrap();
        let user = &value["users"][0]["user"];
        assert!(user.get("token").is_none(), "{user:?}");
        assert!(user.get("client-certificate-data").is_some());
    }

    #[test]
    fn invalid_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::tls::init_certs(dir.path(), &[], false).unwrap();
        let mut config = AgentKubeconfig {
            server: "http://127.0.0.1:8443".into(),
            ca: files.ca_cert.clone(),
            ..Default::default()
        };
        assert!(config.render().is_err());
        config.server = "https://127.0.0.1:8443".into();
        config.session = Some("bad id".into());
        assert!(config.render().is_err());
    }
}
