//! The rustls client every raw-TLS test uses: it trusts one CA file and offers the ALPN
//! protocols the test asks for.

use std::path::Path;

/// A client configuration trusting the certificates in `ca` (PEM), offering `alpn` (none:
/// no ALPN extension, which servers take as HTTP/1.1).
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in pathgate::tls::read_certs(ca).expect("the CA file is PEM") {
        roots.add(cert).expect("the CA is a valid certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(pathgate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}
