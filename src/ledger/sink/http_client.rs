//! The HTTP client the webhook and OTLP sinks share: hyper over plain TCP, or rustls
//! (ring) with the CA bundle the sink's settings name.

use std::path::Path;
use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::ledger::LedgerError;

/// A pooled client for `http://` and `https://` URLs, sending bodies of type `B`.
pub(crate) type SinkClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// The connector for a sink: `https://` URLs are verified against the certificates in
/// `ca_file` (required for them: pathgate carries no public root store, and a ledger
/// receiver is usually an internal service with its own CA).
pub(crate) fn connector(
    sink: &'static str,
    url: &http::Uri,
    ca_file: Option<&Path>,
) -> Result<HttpsConnector<HttpConnector>, LedgerError> {
    let invalid = |reason: String| LedgerError::Sink { sink, reason };
    let mut roots = rustls::RootCertStore::empty();
    match (url.scheme_str(), ca_file) {
        (Some("http"), _) => {}
        (Some("https"), Some(ca_file)) => {
            let certificates = CertificateDer::pem_file_iter(ca_file)
                .map_err(|error| invalid(format!("ca_file {}: {error}", ca_file.display())))?;
            for certificate in certificates {
                let certificate = certificate
                    .map_err(|error| invalid(format!("ca_file {}: {error}", ca_file.display())))?;
                roots
                    .add(certificate)
                    .map_err(|error| invalid(format!("ca_file {}: {error}", ca_file.display())))?;
            }
        }
        (Some("https"), None) => {
            return Err(invalid(format!(
                "{url} is https but no ca_file is set; name the CA bundle that signs the receiver"
            )))
        }
        _ => return Err(invalid(format!("{url} is not an http:// or https:// URL"))),
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| invalid(error.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build())
}

/// A pooled client over [`connector`].
pub(crate) fn client<B>(
    sink: &'static str,
    url: &http::Uri,
    ca_file: Option<&Path>,
) -> Result<SinkClient<B>, LedgerError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Ok(Client::builder(TokioExecutor::new()).build(connector(sink, url, ca_file)?))
}
