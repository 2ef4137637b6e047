//! `pathgate certs init` and client certificates for impersonate mode.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use super::TlsError;

/// The files `certs init` writes.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl CertFiles {
    /// The file names inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        }
    }
}

fn generate_err(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn write_file(path: &Path, contents: &str, mode: u32, force: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if force && path.exists() {
        fs::remove_file(path).map_err(io)?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                TlsError::Exists(path.to_path_buf())
            } else {
                io(e)
            }
        })?;
    file.write_all(contents.as_bytes()).map_err(io)
}

fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate_err)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "pathgate CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Creates a CA and a serving certificate for `localhost`, `127.0.0.1`, `::1` and `sans`
/// in `dir`. Refuses to overwrite existing files unless `force`. Keys are mode 0600.
pub fn init_certs(dir: &Path, sans: &[String], force: bool) -> Result<CertFiles, TlsError> {
    let files = CertFiles::in_dir(dir);
    if !force {
        for path in [
            &files.ca_cert,
            &files.ca_key,
            &files.server_cert,
            &files.server_key,
        ] {
            if path.exists() {
                return Err(TlsError::Exists(path.clone()));
            }
        }
    }
    fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;

    let ca_key = KeyPair::generate().map_err(generate_err)?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params()?, ca_key).map_err(generate_err)?;

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for san in sans {
        if !names.contains(san) {
            names.push(san.clone());
        }
    }
    let mut params = CertificateParams::new(names).map_err(generate_err)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "pathgate");
    params.distinguished_name = name;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().map_err(generate_err)?;
    let server_cert = params.signed_by(&server_key, &ca).map_err(generate_err)?;

    write_file(&files.ca_cert, &ca.pem(), 0o644, force)?;
    write_file(&files.ca_key, &ca_key_pem, 0o600, force)?;
    write_file(&files.server_cert, &server_cert.pem(), 0o644, force)?;
    write_file(&files.server_key, &server_key.serialize_pem(), 0o600, force)?;
    Ok(files)
}

/// Issues a client certificate (CN = `user`, O = each group) signed by the CA in `dir`,
/// written as `<out>.crt` and `<out>.key` (0600). This is the identity impersonate mode
/// turns into `Impersonate-User` / `Impersonate-Group`.
pub fn issue_client_cert(
    dir: &Path,
    user: &str,
    groups: &[String],
    out: &Path,
    force: bool,
) -> Result<(PathBuf, PathBuf), TlsError> {
    if groups.len() > 1 {
        // rcgen keeps one value per distinguished-name attribute type.
        return Err(TlsError::Generate(format!(
            "a client certificate carries at most one group (O=); got {}",
            groups.len()
        )));
    }
    let files = CertFiles::in_dir(dir);
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| TlsError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let ca_key = KeyPair::from_pem(&read(&files.ca_key)?).map_err(generate_err)?;
    let issuer = Issuer::from_ca_cert_pem(&read(&files.ca_cert)?, ca_key).map_err(generate_err)?;

    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate_err)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, user);
    for group in groups {
        name.push(DnType::OrganizationName, group.as_str());
    }
    params.distinguished_name = name;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().map_err(generate_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(generate_err)?;

    let cert_path = out.with_extension("crt");
    let key_path = out.with_extension("key");
    write_file(&cert_path, &cert.pem(), 0o644, force)?;
    write_file(&key_path, &key.serialize_pem(), 0o600, force)?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_a_chain_the_server_config_accepts_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let files = init_certs(dir.path(), &["pathgate.example".into()], false).unwrap();
        let mode = fs::metadata(&files.server_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(&files.ca_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        crate::tls::server_config(&files.server_cert, &files.server_key, None, false).unwrap();

        let again = init_certs(dir.path(), &[], false).unwrap_err();
        assert!(matches!(again, TlsError::Exists(_)), "{again}");
        init_certs(dir.path(), &[], true).unwrap();
    }

    #[test]
    fn client_certificates_carry_user_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        init_certs(dir.path(), &[], false).unwrap();
        let (cert, _key) = issue_client_cert(
            dir.path(),
            "agent-7",
            &["agents".into()],
            &dir.path().join("agent-7"),
            false,
        )
        .unwrap();
        let der = crate::tls::read_certs(&cert).unwrap().remove(0);
        let (user, groups) = crate::tls::identity_of(&der).unwrap();
        assert_eq!(user, "agent-7");
        assert_eq!(groups, vec!["agents".to_string()]);
        let two = issue_client_cert(
            dir.path(),
            "x",
            &["a".into(), "b".into()],
            &dir.path().join("x"),
            false,
        );
        assert!(two.is_err());
    }
}
