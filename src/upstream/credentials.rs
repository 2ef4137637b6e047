//! Credentials pathgate presents upstream in sidecar and impersonate modes: a static
//! token, a token file (re-read: it rotates), or an exec credential plugin (cached until
//! its expiry). Client certificates are part of the TLS configuration instead.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::kubeconfig::{exec_env, ExecConfig};
use super::UpstreamError;

/// How often a token file is re-read (client-go re-reads about once a minute; shorter here
/// so a rotated projected token is picked up quickly).
const TOKEN_FILE_REFRESH: Duration = Duration::from_secs(10);
/// How long an exec credential without an expiry is reused.
const EXEC_DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Renew an exec credential this long before it expires.
const EXEC_EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// An exec plugin that takes longer than this is killed.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// A source of a bearer token.
pub(super) enum TokenSource {
    None,
    Static(String),
    File {
        path: PathBuf,
        cached: Mutex<Option<(Instant, String)>>,
    },
    Exec {
        config: ExecConfig,
        cached: tokio::sync::Mutex<Option<(Instant, String)>>,
    },
}

impl TokenSource {
    pub(super) fn file(path: PathBuf) -> Self {
        Self::File {
            path,
            cached: Mutex::new(None),
        }
    }

    pub(super) fn exec(config: ExecConfig) -> Self {
        Self::Exec {
            config,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The current token, if this source has one.
    pub(super) async fn token(&self) -> Result<Option<String>, UpstreamError> {
        match self {
            Self::None => Ok(None),
            Self::Static(token) => Ok(Some(token.clone())),
            Self::File { path, cached } => {
                {
                    let guard = cached.lock().expect("token cache lock");
                    if let Some((read_at, token)) = guard.as_ref() {
                        if read_at.elapsed() < TOKEN_FILE_REFRESH {
                            return Ok(Some(token.clone()));
                        }
                    }
                }
                let token = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| UpstreamError::Credentials(format!("{}: {e}", path.display())))?
                    .trim()
                    .to_string();
                *cached.lock().expect("token cache lock") = Some((Instant::now(), token.clone()));
                Ok(Some(token))
            }
            Self::Exec { config, cached } => {
                let mut guard = cached.lock().await;
                if let Some((valid_until, token)) = guard.as_ref() {
                    if Instant::now() < *valid_until {
                        return Ok(Some(token.clone()));
                    }
                }
                let (token, ttl) = run_exec(config).await?;
                *guard = Some((Instant::now() + ttl, token.clone()));
                Ok(Some(token))
            }
        }
    }
}

/// Runs an exec credential plugin and returns its token and how long to reuse it.
async fn run_exec(config: &ExecConfig) -> Result<(String, Duration), UpstreamError> {
    let api_version = config
        .api_version
        .clone()
        .unwrap_or_else(|| "client.authentication.k8s.io/v1".into());
    let exec_info = serde_json::json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "spec": { "interactive": false },
    });
    let mut command = tokio::process::Command::new(&config.command);
    command
        .args(&config.args)
        .envs(exec_env(config))
        .env("KUBERNETES_EXEC_INFO", exec_info.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(EXEC_TIMEOUT, command.output())
        .await
        .map_err(|_| {
            UpstreamError::Credentials(format!(
                "exec plugin {} did not finish within {}s",
                config.command,
                EXEC_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| {
            let hint = config.install_hint.as_deref().unwrap_or("");
            UpstreamError::Credentials(format!(
                "exec plugin {} could not run: {e}. {hint}",
                config.command
            ))
        })?;
    if !output.status.success() {
        return Err(UpstreamError::Credentials(format!(
            "exec plugin {} failed ({}): {}",
            config.command,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    parse_exec_credential(&output.stdout, &config.command)
}

fn parse_exec_credential(
    stdout: &[u8],
    command: &str,
) -> Result<(String, Duration), UpstreamError> {
    let bad = |why: String| UpstreamError::Credentials(format!("exec plugin {command}: {why}"));
    let credential: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|e| bad(format!("output is not JSON: {e}")))?;
    let status = &credential["status"];
    if status.get("clientCertificateData").is_some() {
        return Err(bad(
            "returns a client certificate; pathgate supports exec plugins that return tokens"
                .into(),
        ));
    }
    let token = status["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("output has no status.token".into()))?
        .to_string();
    let ttl = match status["expirationTimestamp"].as_str() {
        Some(expiry) => {
            let expiry =
                time::OffsetDateTime::parse(expiry, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| bad(format!("status.expirationTimestamp {expiry:?}: {e}")))?;
            let remaining = expiry - time::OffsetDateTime::now_utc();
            let remaining = Duration::try_from(remaining).unwrap_or(Duration::ZERO);
            remaining.saturating_sub(EXEC_EXPIRY_MARGIN)
        }
        None => EXEC_DEFAULT_TTL,
    };
    Ok((token, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_credential_token_and_expiry_are_read() {
        let in_an_hour = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let out = serde_json::json!({
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": {"token": "abc", "expirationTimestamp": in_an_hour}
        });
        let (token, ttl) = parse_exec_credential(out.to_string().as_bytes(), "plugin").unwrap();
        assert_eq!(token, "abc");
        assert!(ttl > Duration::from_secs(3000) && ttl < Duration::from_secs(3600));
    }

    #[test]
    fn exec_credential_without_token_is_an_error() {
        let err = parse_exec_credential(br#"{"status":{}}"#, "plugin").unwrap_err();
        assert!(err.to_string().contains("no status.token"), "{err}");
        let err = parse_exec_credential(b"nope", "plugin").unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }

    #[tokio::test]
    async fn token_file_is_reread_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let source = TokenSource::file(path.clone());
        assert_eq!(source.token().await.unwrap().as_deref(), Some("first"));
        std::fs::write(&path, "second\n").unwrap();
        if let TokenSource::File { cached, .. } = &source {
            // Age the cache instead of sleeping for the refresh interval.
            let mut guard = cached.lock().unwrap();
            let (_, token) = guard.take().unwrap();
            *guard = Some((Instant::now() - TOKEN_FILE_REFRESH, token));
        }
        assert_eq!(source.token().await.unwrap().as_deref(), Some("second"));
    }

    #[tokio::test]
    async fn exec_plugin_runs_with_its_env() {
        let config = ExecConfig {
            api_version: Some("client.authentication.k8s.io/v1".into()),
            command: "sh".into(),
            args: vec![
                "-c".into(),
                r#"printf '{"kind":"ExecCredential","status":{"token":"%s"}}' "$PLUGIN_TOKEN""#
                    .into(),
            ],
            env: vec![super::super::kubeconfig::ExecEnv {
                name: "PLUGIN_TOKEN".into(),
                value: "from-env".into(),
            }],
            install_hint: None,
            provide_cluster_info: false,
            interactive_mode: None,
        };
        let source = TokenSource::exec(config);
        assert_eq!(source.token().await.unwrap().as_deref(), Some("from-env"));
    }
}
