//! The upstream: where the apiserver is and how pathgate talks to it.
//!
//! Owns: loading a kubeconfig (current context or `--context`) or the in-cluster service
//! account, the credentials pathgate presents in sidecar and impersonate modes, the rustls
//! client configuration, and the pooled hyper clients: one for short requests (HTTP/2
//! where the apiserver offers it: they share one connection); lanes of HTTP/2 connections
//! for watches and followed logs, a bounded number of streams on each ([`lanes`]); and one
//! for exec/attach/port-forward/proxy streams and upgrades, HTTP/1.1 with a bounded number
//! of connections, one each ([`streams`]). Long-lived requests never take a short
//! request's stream. Does not own: what is sent (the proxy decides headers and bodies).

mod credentials;
mod kubeconfig;
mod lanes;
mod streams;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::status::Body;
use credentials::TokenSource;
pub use kubeconfig::{ExecConfig, ExecEnv};
pub use lanes::{StreamSlot, UpstreamAnswer};
pub use streams::{Lifetime, LongLivedLimit};

/// The in-cluster service account directory.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why the upstream could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The kubeconfig is unreadable or inconsistent.
    #[error("{path}: {key}{sep}{reason}", sep = if key.is_empty() { "" } else { " " })]
    Kubeconfig {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// The kubeconfig asks for something pathgate does not do.
    #[error("{path}: {key} is not supported: {reason}")]
    Unsupported {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// In-cluster configuration is incomplete.
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    /// A credential could not be obtained (token file, exec plugin).
    #[error("upstream credentials: {0}")]
    Credentials(String),
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl UpstreamError {
    fn kubeconfig(path: &Path, key: &str, reason: impl Into<String>) -> Self {
        Self::Kubeconfig {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    fn unsupported(path: &Path, key: &str, reason: &str) -> Self {
        Self::Unsupported {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Where the upstream configuration comes from.
#[derive(Debug, Clone)]
pub enum UpstreamSource {
    Kubeconfig {
        path: PathBuf,
        context: Option<String>,
    },
    InCluster,
}

/// The pooled client type.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// The client of long-lived requests: a bounded number of HTTP/1.1 connections.
type LongLivedClient = Client<streams::Bounded<HttpsConnector<HttpConnector>>, Body>;

/// The apiserver and pathgate's connections to it.
pub struct Upstream {
    /// `https://host:port`, no path.
    base: Uri,
    /// A path prefix of the server URL (e.g. a Rancher-style `/k8s/clusters/c-1`).
    path_prefix: String,
    token: TokenSource,
    /// Whether pathgate has credentials of its own (token or client certificate).
    has_own_credentials: bool,
    /// Pooled; HTTP/2 when the apiserver offers it. Short requests only.
    client: HttpClient,
    /// HTTP/1.1 only, one connection per long-lived request (upgrades need HTTP/1.1 too).
    long_lived_client: LongLivedClient,
    /// Watches and followed logs: HTTP/2 lanes of their own.
    lanes: lanes::Lanes,
    /// Shown in logs and `/readyz`.
    pub description: String,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .field("path_prefix", &self.path_prefix)
            .field("has_own_credentials", &self.has_own_credentials)
            .finish_non_exhaustive()
    }
}

/// Accepts any server certificate: `insecure-skip-tls-verify: true`.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

struct Material {
    server: String,
    ca_pem: Option<Vec<u8>>,
    insecure: bool,
    tls_server_name: Option<String>,
    client_identity: Option<(Vec<u8>, Vec<u8>)>,
    token: TokenSource,
    description: String,
}

fn in_cluster() -> Result<Material, UpstreamError> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST")
        .map_err(|_| UpstreamError::InCluster("KUBERNETES_SERVICE_HOST is not set".into()))?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT")
        .map_err(|_| UpstreamError::InCluster("KUBERNETES_SERVICE_PORT is not set".into()))?;
    let dir = Path::new(SERVICE_ACCOUNT_DIR);
    let ca = std::fs::read(dir.join("ca.crt"))
        .map_err(|e| UpstreamError::InCluster(format!("{}: {e}", dir.join("ca.crt").display())))?;
    let token_path = dir.join("token");
    if !token_path.exists() {
        return Err(UpstreamError::InCluster(format!(
            "{} does not exist",
            token_path.display()
        )));
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(Material {
        server: format!("https://{host}:{port}"),
        ca_pem: Some(ca),
        insecure: false,
        tls_server_name: None,
        client_identity: None,
        token: TokenSource::file(token_path),
        description: "in-cluster service account".into(),
    })
}

fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Material, UpstreamError> {
    let resolved = kubeconfig::load(path, context)?;
    let token = match (&resolved.token, &resolved.token_file, &resolved.exec) {
        (Some(token), _, _) => TokenSource::Static(token.clone()),
        (None, Some(file), _) => TokenSource::file(file.clone()),
        (None, None, Some(exec)) => TokenSource::exec(exec.clone()),
        (None, None, None) => TokenSource::None,
    };
    let client_identity = match (resolved.client_cert_pem, resolved.client_key_pem) {
        (Some(cert), Some(key)) => Some((cert, key)),
        _ => None,
    };
    Ok(Material {
        description: format!("{} ({})", resolved.server, path.display()),
        server: resolved.server,
        ca_pem: resolved.ca_pem,
        insecure: resolved.insecure_skip_tls_verify,
        tls_server_name: resolved.tls_server_name,
        client_identity,
        token,
    })
}

fn client_config(material: &Material) -> Result<ClientConfig, UpstreamError> {
    let provider = crate::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::tls::TlsError::Rustls(e.to_string()))?;
    let builder = if material.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        let pem = material.ca_pem.as_deref().ok_or_else(|| {
            UpstreamError::Credentials(
                "the upstream kubeconfig has no certificate-authority; pathgate does not use system roots for the apiserver".into(),
            )
        })?;
        for cert in crate::tls::parse_certs(pem, "certificate-authority")? {
            roots
                .add(cert)
                .map_err(|e| crate::tls::TlsError::Rustls(e.to_string()))?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &material.client_identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                crate::tls::parse_certs(cert, "client-certificate")?,
                crate::tls::parse_key(key, "client-key")?,
            )
            .map_err(|e| crate::tls::TlsError::Rustls(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    // hyper-rustls sets ALPN from the enabled HTTP versions.
    config.alpn_protocols.clear();
    Ok(config)
}

fn connector(
    material: &Material,
    http2: bool,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, UpstreamError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let tls = client_config(material)?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    let builder = match &material.tls_server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone()).map_err(|e| {
                UpstreamError::Credentials(format!("tls-server-name {name:?}: {e}"))
            })?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(if http2 {
        builder.enable_all_versions().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    })
}

fn pooled<C>(connector: C) -> Client<C, Body>
where
    C: hyper_util::client::legacy::connect::Connect + Clone,
{
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .http2_keep_alive_interval(Some(Duration::from_secs(30)))
        .http2_keep_alive_while_idle(true)
        .build(connector)
}

impl Upstream {
    /// Loads the upstream from a kubeconfig or the in-cluster service account.
    ///
    /// With `own_credentials` false (passthrough mode) the kubeconfig's token and client
    /// certificate are never presented: a client without credentials must reach the
    /// apiserver as anonymous, not as pathgate. At most `long_lived_connections`
    /// long-lived requests are open upstream at once.
    pub fn load(
        source: &UpstreamSource,
        connect_timeout: Duration,
        own_credentials: bool,
        long_lived_connections: usize,
    ) -> Result<Self, UpstreamError> {
        let mut material = match source {
            UpstreamSource::Kubeconfig { path, context } => {
                from_kubeconfig(path, context.as_deref())?
            }
            UpstreamSource::InCluster => in_cluster()?,
        };
        if !own_credentials {
            material.client_identity = None;
            material.token = TokenSource::None;
        }
        if material.insecure {
            tracing::warn!(
                server = %material.server,
                "INSECURE: insecure-skip-tls-verify is set; pathgate will not verify the apiserver's certificate, so anyone on the path can impersonate it"
            );
        }
        let uri: Uri = material.server.parse().map_err(|e| {
            UpstreamError::Credentials(format!("server {:?} is not a URL: {e}", material.server))
        })?;
        if uri.scheme_str() != Some("https") {
            return Err(UpstreamError::Credentials(format!(
                "server {:?} must be https://",
                material.server
            )));
        }
        let authority = uri.authority().cloned().ok_or_else(|| {
            UpstreamError::Credentials(format!("server {:?} has no host", material.server))
        })?;
        let base = Uri::builder()
            .scheme("https")
            .authority(authority)
            .path_and_query("/")
            .build()
            .expect("scheme and authority form a URI");
        let path_prefix = uri.path().trim_end_matches('/').to_string();
        let has_own_credentials =
            material.client_identity.is_some() || !matches!(material.token, TokenSource::None);
        // A quarter of the long-lived descriptor budget goes to lanes (each carrying up to
        // `STREAMS_PER_LANE` watches), the rest to upgrades and exec-like streams.
        let lane_connections = (long_lived_connections / 4).max(1);
        let lane_streams = lane_connections * lanes::STREAMS_PER_LANE;
        Ok(Self {
            client: pooled(connector(&material, true, connect_timeout)?),
            long_lived_client: pooled(streams::Bounded::new(
                connector(&material, false, connect_timeout)?,
                long_lived_connections
                    .saturating_sub(lane_connections)
                    .max(1),
            )),
            lanes: lanes::Lanes::new(connector(&material, true, connect_timeout)?, lane_streams),
            base,
            path_prefix,
            has_own_credentials,
            description: material.description.clone(),
            token: material.token,
        })
    }

    /// The upstream URI for a path and query as the apiserver should see them.
    pub fn uri_for(&self, path_and_query: &str) -> Uri {
        let authority = self
            .base
            .authority()
            .expect("base has an authority")
            .clone();
        Uri::builder()
            .scheme("https")
            .authority(authority)
            .path_and_query(format!("{}{}", self.path_prefix, path_and_query))
            .build()
            .unwrap_or_else(|_| self.base.clone())
    }

    /// `host:port` of the apiserver (the `Host` pathgate sends).
    pub fn authority(&self) -> String {
        self.base
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// pathgate's own bearer token (sidecar and impersonate modes), if it has one.
    pub async fn own_token(&self) -> Result<Option<String>, UpstreamError> {
        self.token.token().await
    }

    /// Whether pathgate holds credentials of its own.
    pub fn has_own_credentials(&self) -> bool {
        self.has_own_credentials
    }

    /// Sends one short request as pathgate (its own token, when it has one) and reads the
    /// whole answer within `timeout`: the autopsy's final-state checks and undo's steps.
    /// Errors are the client's words for what failed.
    pub async fn send_collected(
        &self,
        request: http::request::Builder,
        body: bytes::Bytes,
        timeout: Duration,
    ) -> Result<(http::StatusCode, bytes::Bytes), String> {
        use http_body_util::BodyExt;
        let mut request = request.header(http::header::ACCEPT, "application/json");
        if let Some(token) = self.own_token().await.map_err(|e| e.to_string())? {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(crate::status::full_body(body))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }

    /// The pooled client for short requests (facts, readiness).
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// Sends a request on the client of its [`Lifetime`]: long-lived requests never
    /// share the short requests' HTTP/2 connection, whose streams they would hold. A
    /// watch holds the returned slot on its lane until its stream ends; past the lanes'
    /// stream limit it is refused.
    pub fn request(
        &self,
        lifetime: Lifetime,
        request: http::Request<Body>,
    ) -> Result<(UpstreamAnswer, Option<StreamSlot>), LongLivedLimit> {
        Ok(match lifetime {
            Lifetime::Short => (Box::pin(self.client.request(request)), None),
            Lifetime::LongLived => (Box::pin(self.long_lived_client.request(request)), None),
            Lifetime::Watch => {
                let (answer, slot) = self.lanes.send(request)?;
                (answer, Some(slot))
            }
        })
    }

    /// Watch streams open upstream, and the lanes carrying them.
    pub fn lane_counts(&self) -> (usize, usize) {
        self.lanes.counts()
    }
}

#[cfg(test)]
mod tests;
