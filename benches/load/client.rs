//! A small HTTPS client (hyper + rustls, HTTP/2 or HTTP/1.1 by ALPN, as client-go
//! negotiates) that trusts one CA: used to check each path answers the canned body before
//! it is loaded, and to watch and create objects on the control plane.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The client type.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled client that trusts the CA certificate(s) in `ca_pem`.
pub fn trusting(ca_pem: &Path) -> anyhow::Result<HttpsClient> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in pathgate::tls::read_certs(ca_pem)? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(pathgate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Without TCP_NODELAY a request whose body follows its head in a second write waits
    // for the peer's delayed ACK (about 40 ms on Linux): client-go and kubectl set it too.
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        // Plain HTTP too: `kubectl proxy` serves nothing else.
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// GETs `url` with a bearer token and returns the status and the whole body.
pub async fn get(
    client: &HttpsClient,
    url: &str,
    token: &str,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let request = Request::get(url)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))?;
    send(client, request).await
}

/// Sends `request` and reads the whole answer, within 30 s.
pub async fn send(
    client: &HttpsClient,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let uri = request.uri().clone();
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, body))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .with_context(|| format!("{uri} did not answer within 30 s"))?
        .with_context(|| format!("requesting {uri}"))
}
