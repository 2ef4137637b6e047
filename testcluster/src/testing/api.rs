//! A small HTTPS client for the apiserver (hyper 1 over tokio-rustls), so tests can send
//! exactly the bytes and headers they mean to, which kubectl cannot always be made to do.
//!
//! One connection per request: tests are about what a request does, not about pooling.

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{cluster, RunningCluster};

/// Media type of a JSON patch (RFC 6902).
pub const JSON_PATCH: &str = "application/json-patch+json";
/// Media type of a JSON merge patch (RFC 7386).
pub const MERGE_PATCH: &str = "application/merge-patch+json";
/// Media type of a Kubernetes strategic merge patch.
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
/// Media type of a server-side apply patch.
pub const APPLY_PATCH_YAML: &str = "application/apply-patch+yaml";

/// Who the client authenticates as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// system:masters by client certificate.
    AdminCertificate,
    /// system:masters by static token.
    AdminToken,
    /// The limited agent by client certificate.
    AgentCertificate,
    /// The limited agent by static token.
    AgentToken,
}

/// An apiserver client with one identity.
#[derive(Clone)]
pub struct ApiClient {
    port: u16,
    connector: TlsConnector,
    bearer_token: Option<String>,
}

/// A response read to the end.
#[derive(Debug)]
pub struct ApiResponse {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl ApiResponse {
    /// The body as JSON.
    ///
    /// # Panics
    /// If the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "{} response is not JSON ({error}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status, showing the body when it differs.
    pub fn expect_status(&self, expected: StatusCode) -> &Self {
        assert_eq!(
            self.status,
            expected,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

impl ApiClient {
    /// A client of the running cluster as `identity`.
    pub fn new(identity: Identity) -> Self {
        Self::for_cluster(cluster(), identity)
    }

    /// A client of `cluster` as `identity`.
    pub fn for_cluster(cluster: &RunningCluster, identity: Identity) -> Self {
        let dir = &cluster.dir;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(dir.ca_cert()).expect("ca.crt is readable") {
            roots
                .add(cert.expect("ca.crt is PEM"))
                .expect("the CA is a valid certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots);
        let client_cert = |cert: std::path::PathBuf, key: std::path::PathBuf| {
            let chain = CertificateDer::pem_file_iter(&cert)
                .expect("client certificate is readable")
                .collect::<Result<Vec<_>, _>>()
                .expect("client certificate is PEM");
            let key = PrivateKeyDer::from_pem_file(&key).expect("client key is PEM");
            (chain, key)
        };
        let (mut config, bearer_token) = match identity {
            Identity::AdminCertificate => {
                let (chain, key) = client_cert(dir.admin_cert(), dir.admin_key());
                (
                    builder
                        .with_client_auth_cert(chain, key)
                        .expect("admin key matches"),
                    None,
                )
            }
            Identity::AgentCertificate => {
                let (chain, key) = client_cert(dir.agent_cert(), dir.agent_key());
                (
                    builder
                        .with_client_auth_cert(chain, key)
                        .expect("agent key matches"),
                    None,
                )
            }
            Identity::AdminToken => (
                builder.with_no_client_auth(),
                Some(cluster.admin_token().expect("admin.token is readable")),
            ),
            Identity::AgentToken => (
                builder.with_no_client_auth(),
                Some(cluster.agent_token().expect("agent.token is readable")),
            ),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        ApiClient {
            port: cluster.port,
            connector: TlsConnector::from(Arc::new(config)),
            bearer_token,
        }
    }

    /// GET `path` (with its query).
    pub async fn get(&self, path: &str) -> ApiResponse {
        self.request(Method::GET, path, None, Bytes::new(), &[])
            .await
    }

    /// POST a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> ApiResponse {
        self.request(
            Method::POST,
            path,
            Some("application/json"),
            Bytes::from(body.to_string()),
            &[],
        )
        .await
    }

    /// PATCH with `content_type` (one of the patch media types above).
    pub async fn patch(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> ApiResponse {
        self.request(Method::PATCH, path, Some(content_type), body.into(), &[])
            .await
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> ApiResponse {
        self.request(Method::DELETE, path, None, Bytes::new(), &[])
            .await
    }

    /// Sends one request on a fresh TLS connection and reads the whole response.
    ///
    /// # Panics
    /// On connection or protocol errors: a test cannot go on without an answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> ApiResponse {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, format!("127.0.0.1:{}", self.port))
            .header("Accept", "application/json");
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if let Some(token) = &self.bearer_token {
            request = request.header(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).expect("tokens are hex"),
            );
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).expect("a valid request");

        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "cannot connect to the apiserver on port {}: {error}",
                    self.port
                )
            });
        let server_name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let tls = self
            .connector
            .connect(server_name, tcp)
            .await
            .expect("TLS handshake with the apiserver");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        let response = sender.send_request(request).await.expect("a response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the whole body").to_bytes();
        ApiResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}
