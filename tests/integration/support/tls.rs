//! The rustls client every raw-TLS test uses: it trusts one CA file and offers the ALPN
//! protocols the test asks for.

use std::path::Path;

/// A client configuration trusting the certificates in `ca` (PEM), offering `alpn` (none:
/// no ALPN extension, which servers take as HTTP/1.1).
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut config = builder(ca).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// [`client_config`] presenting the client certificate `cert` with its key `key` (PEM).
pub fn client_config_with_cert(ca: &Path, cert: &Path, key: &Path) -> rustls::ClientConfig {
    builder(ca)
        .with_client_auth_cert(
            pathgate::tls::read_certs(cert).expect("the client certificate is PEM"),
            pathgate::tls::read_key(key).expect("the client key is PEM"),
        )
        .expect("the key matches the certificate")
}

fn builder(
    ca: &Path,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in pathgate::tls::read_certs(ca).expect("the CA file is PEM") {
        roots.add(cert).expect("the CA is a valid certificate");
    }
    rustls::ClientConfig::builder_with_provider(pathgate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
}
