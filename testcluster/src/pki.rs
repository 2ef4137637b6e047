//! Credentials of a test cluster: a fresh CA, the apiserver's serving certificate, client
//! certificates for the two identities, the service-account key pair and static tokens.
//!
//! Everything is generated in memory with rcgen (ECDSA P-256) for each `cluster up`, so no
//! private key is ever committed and two clusters never trust each other.
//!
//! It does not own writing the files (see [`crate::launch`]).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::{Error, Result};

/// The admin user name (client certificate CN and token user).
pub const ADMIN_USER: &str = "admin";
/// The admin group: `system:masters` bypasses RBAC entirely.
pub const ADMIN_GROUP: &str = "system:masters";
/// The agent user name: the limited identity an AI agent would hold.
pub const AGENT_USER: &str = "agent";
/// The agent group, which the agent RBAC bindings name.
pub const AGENT_GROUP: &str = "pathgate:agents";

/// Names and addresses the serving certificate is valid for. The in-cluster names and the
/// first service IP cost nothing and keep clients that insist on them working.
const SERVING_NAMES: &[&str] = &[
    "127.0.0.1",
    "::1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "10.0.0.1",
];

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    /// The certificate.
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

/// Every credential of one cluster.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA (self-signed).
    pub ca: CertifiedKey,
    /// The apiserver's serving certificate.
    pub serving: CertifiedKey,
    /// CN=admin, O=system:masters.
    pub admin: CertifiedKey,
    /// CN=agent, O=pathgate:agents.
    pub agent: CertifiedKey,
    /// Signs service-account tokens (private key, PEM).
    pub service_account_key_pem: String,
    /// Verifies service-account tokens (public key, PEM).
    pub service_account_public_key_pem: String,
    /// Static bearer token of the admin.
    pub admin_token: String,
    /// Static bearer token of the agent.
    pub agent_token: String,
}

impl Pki {
    /// Generates a fresh set.
    pub fn generate() -> Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = name("pathgate-testcluster-ca", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, &ca_key);

        let serving_names: Vec<String> = SERVING_NAMES.iter().map(|s| s.to_string()).collect();
        let mut serving_params = CertificateParams::new(serving_names)?;
        serving_params.distinguished_name = name("kube-apiserver", None);
        serving_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving = sign(serving_params, &issuer)?;

        let service_account = KeyPair::generate()?;
        Ok(Pki {
            ca: CertifiedKey {
                cert_pem: ca_cert.pem(),
                key_pem: ca_key.serialize_pem(),
            },
            serving,
            admin: client_certificate(ADMIN_USER, ADMIN_GROUP, &issuer)?,
            agent: client_certificate(AGENT_USER, AGENT_GROUP, &issuer)?,
            service_account_key_pem: service_account.serialize_pem(),
            service_account_public_key_pem: service_account.public_key_pem(),
            admin_token: random_token()?,
            agent_token: random_token()?,
        })
    }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        // The apiserver maps O= to groups and CN= to the user name.
        name.push(DnType::OrganizationName, organization);
    }
    name
}

fn client_certificate(
    user: &str,
    group: &str,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<CertifiedKey> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(user, Some(group));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign(params, issuer)
}

fn sign(params: CertificateParams, issuer: &Issuer<'_, &KeyPair>) -> Result<CertifiedKey> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// 32 random bytes in hex: a token nobody can guess, and safe in a CSV file and a header.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_are_pem_and_tokens_differ() {
        let pki = Pki::generate().unwrap();
        for pem in [
            &pki.ca.cert_pem,
            &pki.serving.cert_pem,
            &pki.admin.cert_pem,
            &pki.agent.cert_pem,
        ] {
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        }
        assert!(pki.agent.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(pki
            .service_account_public_key_pem
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(pki.admin_token.len(), 64);
        assert_ne!(pki.admin_token, pki.agent_token);
        assert_ne!(pki.admin.cert_pem, pki.agent.cert_pem);
    }
}
