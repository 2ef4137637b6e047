//! The gateway a run goes through: one started in-process for the run, or one already
//! running (`--gateway`), and the agent's kubeconfig for the run's session.
//!
//! Owns: starting and stopping the in-process pathgate (the stop drains it and flushes
//! its ledger), checking before CMD runs that the apiserver behind it answers, checking
//! that a running gateway is reachable and presents a certificate of the given CA, and
//! waiting for a running gateway's ledger to settle once CMD has ended. Does not own the
//! listeners themselves ([`crate::serve`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::agent_kubeconfig::{AgentKubeconfig, KubeconfigError};
use crate::autopsy::input::{for_each_entry, InputError, LedgerSource};
use crate::config::PolicyHandle;
use crate::serve::{Running, ServeError, ServeOptions};

/// How long the apiserver behind a started gateway, or a running gateway, may take to
/// answer before the run is given up with no verdict.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running gateway's ledger is complete for the session once no entry of it was added
/// for this long (its `ledger.flush_interval` must be shorter)...
pub const SETTLE_QUIET: Duration = Duration::from_secs(1);
/// ...or, on a busy gateway, once this long has passed.
pub const SETTLE_MAX: Duration = Duration::from_secs(15);

/// Why the gateway cannot carry the run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot start pathgate: {0}")]
    Start(#[from] ServeError),
    #[error("the apiserver behind pathgate does not answer: {0}")]
    Apiserver(String),
    #[error("gateway {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("--gateway {0:?} must be https://host:port")]
    Url(String),
    #[error("cannot write the agent's kubeconfig: {0}")]
    Kubeconfig(#[from] KubeconfigError),
    #[error("the ledger {dir} cannot be read: {source}")]
    Ledger { dir: PathBuf, source: InputError },
}

/// The gateway a run starts for itself.
pub struct StartGateway {
    pub options: ServeOptions,
    pub policy: PolicyHandle,
}

/// A started gateway.
pub struct Started {
    pub url: String,
    running: Running,
}

impl StartGateway {
    /// Starts the listeners and waits until the apiserver behind them answers (any HTTP
    /// answer to `/readyz`, as the admin endpoint defines it).
    pub async fn start(&self) -> Result<Started, GatewayError> {
        let metrics = crate::metrics::Metrics::new();
        let gate = crate::serve::policy_gate(self.policy.clone());
        let running = crate::serve::start(self.options.clone(), gate, None, metrics).await?;
        let started = Started {
            url: format!("https://{}", running.addr),
            running,
        };
        if let Some(admin) = started.running.admin_addr {
            if let Err(reason) = wait_ready(admin).await {
                started.stop().await;
                return Err(GatewayError::Apiserver(reason));
            }
        }
        Ok(started)
    }
}

impl Started {
    /// Drains the gateway; once this returns, every entry it recorded is in the spool.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// Polls the admin `/readyz` until it says 200 or [`READY_TIMEOUT`] passes.
async fn wait_ready(admin: std::net::SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let answer = readyz(admin).await;
        match answer {
            Ok((200, _)) => return Ok(()),
            Ok((_, body)) | Err(body) if Instant::now() >= deadline => {
                return Err(body.trim().to_string())
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One plain-HTTP `GET /readyz`: the status code and the body.
async fn readyz(admin: std::net::SocketAddr) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(admin).await?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: pathgate\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer from the admin listener".to_string())?
        .map_err(|e| e.to_string())?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}"))?;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok((status, body.to_string()))
}

/// `host:port` of an `https://host:port` gateway URL.
pub fn gateway_authority(url: &str) -> Result<(String, u16), GatewayError> {
    let bad = || GatewayError::Url(url.to_string());
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("https") || !matches!(uri.path(), "" | "/") {
        return Err(bad());
    }
    let host = uri.host().ok_or_else(bad)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(443)))
}

/// Connects to a running gateway and completes a TLS handshake that verifies its
/// certificate against `ca`: a closed port, a wrong address and a wrong CA each fail here,
/// before the agent runs, with the reason.
pub async fn probe(url: &str, ca: &Path) -> Result<(), GatewayError> {
    let (host, port) = gateway_authority(url)?;
    let unreachable = |reason: String| GatewayError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::tls::read_certs(ca).map_err(|e| unreachable(e.to_string()))? {
        roots
            .add(cert)
            .map_err(|e| unreachable(format!("{}: {e}", ca.display())))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| unreachable(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| unreachable(format!("{host:?}: {e}")))?;
    let handshake = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))
    };
    match tokio::time::timeout(READY_TIMEOUT, handshake).await {
        Err(_) => Err(unreachable(format!("no answer within {READY_TIMEOUT:?}"))),
        Ok(Err(reason)) => Err(unreachable(reason)),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Writes the agent's kubeconfig: `url/s/<session>`, the CA embedded, the token (or the
/// placeholder a sidecar gateway drops).
pub fn write_kubeconfig(
    url: &str,
    session: &str,
    ca: &Path,
    token: Option<&str>,
    namespace: Option<&str>,
    out: &Path,
) -> Result<(), GatewayError> {
    AgentKubeconfig {
        server: url.to_string(),
        session: Some(session.to_string()),
        ca: ca.to_path_buf(),
        token: token.map(str::to_string),
        namespace: namespace.map(str::to_string),
        ..Default::default()
    }
    .write(out)?;
    Ok(())
}

/// The session's entries in a spool directory (0 while it has no segment).
pub(crate) fn count_entries(dir: &Path, session: &str) -> Result<u64, GatewayError> {
    let mut count = 0;
    let wanted = |s: &str| s == session;
    match for_each_entry(
        &[LedgerSource::Spool(dir.to_path_buf())],
        Some(&wanted),
        &mut |_| count += 1,
    ) {
        Ok(()) | Err(InputError::EmptySpool(_)) => Ok(count),
        Err(source) => Err(GatewayError::Ledger {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

/// The spool's segments and their sizes: when they are unchanged, so is the session's
/// count, and the spool is not read again.
fn spool_sizes(dir: &Path) -> Vec<(PathBuf, u64)> {
    crate::autopsy::input::spool_segments(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|path| {
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            (path, size)
        })
        .collect()
}

/// Waits until a running gateway has written the session's last entries: its ledger
/// writes an entry when the response ends, asynchronously, so an agent's last requests
/// may reach the spool after it exits. Returns the session's entry count.
pub async fn settle(dir: &Path, session: &str) -> Result<u64, GatewayError> {
    let started = Instant::now();
    let mut sizes = spool_sizes(dir);
    let mut count = count_entries(dir, session)?;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < SETTLE_QUIET && started.elapsed() < SETTLE_MAX {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now_sizes = spool_sizes(dir);
        if now_sizes == sizes {
            continue;
        }
        sizes = now_sizes;
        let now = count_entries(dir, session)?;
        if now != count {
            count = now;
            quiet_since = Instant::now();
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls_are_https_host_and_port_only() {
        assert_eq!(
            gateway_authority("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(
            gateway_authority("https://[::1]:9443/").unwrap(),
            ("::1".into(), 9443)
        );
        assert_eq!(
            gateway_authority("https://pathgate.local").unwrap(),
            ("pathgate.local".into(), 443)
        );
        for bad in [
            "http://127.0.0.1:8443",
            "https://127.0.0.1:8443/s/x",
            "127.0.0.1",
        ] {
            assert!(gateway_authority(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_closed_port_is_unreachable_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let certs = crate::tls::init_certs(dir.path(), &[], false).unwrap();
        // Bound then dropped: nothing listens there now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("https://127.0.0.1:{port}");
        let error = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(probe(&url, &certs.ca_cert))
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("gateway {url} is unreachable: "))
                && text.contains("refused"),
            "{text}"
        );
    }

    #[test]
    fn settling_counts_only_the_session_and_tolerates_an_empty_spool() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(settle(dir.path(), "s")).unwrap(), 0);
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/examples/ledger-unbounded-list.json");
        let entry: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
        let session = entry["session"].as_str().unwrap().to_string();
        let mut other = entry.clone();
        other["session"] = "someone-else".into();
        let lines = format!("{entry}\n{other}\n{entry}\n");
        std::fs::write(dir.path().join(crate::ledger::segment_name(1)), lines).unwrap();
        assert_eq!(runtime.block_on(settle(dir.path(), &session)).unwrap(), 2);
    }
}
