use super::*;

fn write_kubeconfig(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(&path, body).unwrap();
    path
}

fn certs(dir: &Path) -> crate::tls::CertFiles {
    crate::tls::init_certs(&dir.join("pki"), &[], false).unwrap()
}

fn kubeconfig(server: &str, cluster_extra: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: main\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority: pki/ca.crt\n{cluster_extra}contexts:\n- name: main\n  context: {{cluster: c, user: u}}\n- name: other\n  context: {{cluster: c, user: missing}}\nusers:\n- name: u\n  user:\n{user}"
    )
}

fn load(path: &Path, context: Option<&str>) -> Result<Upstream, UpstreamError> {
    Upstream::load(
        &UpstreamSource::Kubeconfig {
            path: path.to_path_buf(),
            context: context.map(str::to_string),
        },
        Duration::from_secs(1),
        true,
        16,
    )
}

#[tokio::test]
async fn relative_files_and_static_token_are_read() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let path = write_kubeconfig(
        dir.path(),
        &kubeconfig("https://127.0.0.1:6443/prefix/", "", "    token: abc\n"),
    );
    let upstream = load(&path, None).unwrap();
    assert_eq!(upstream.authority(), "127.0.0.1:6443");
    assert_eq!(
        upstream.uri_for("/api/v1/pods?limit=1").to_string(),
        "https://127.0.0.1:6443/prefix/api/v1/pods?limit=1"
    );
    assert!(upstream.has_own_credentials());
    assert_eq!(upstream.own_token().await.unwrap().as_deref(), Some("abc"));
}

#[tokio::test]
async fn token_file_is_relative_to_the_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    std::fs::write(dir.path().join("tok"), "from-file\n").unwrap();
    let path = write_kubeconfig(
        dir.path(),
        &kubeconfig("https://127.0.0.1:6443", "", "    tokenFile: tok\n"),
    );
    let upstream = load(&path, None).unwrap();
    assert_eq!(
        upstream.own_token().await.unwrap().as_deref(),
        Some("from-file")
    );
}

#[test]
fn client_certificate_data_is_used() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let files = certs(dir.path());
    let (cert, key) = crate::tls::issue_client_cert(
        &dir.path().join("pki"),
        "admin",
        &["system:masters".into()],
        &dir.path().join("admin"),
        false,
    )
    .unwrap();
    let b64 =
        |p: &Path| base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap());
    let user = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&cert),
        b64(&key)
    );
    let path = write_kubeconfig(dir.path(), &kubeconfig("https://127.0.0.1:6443", "", &user));
    let upstream = load(&path, None).unwrap();
    assert!(upstream.has_own_credentials());
    drop(files);
}

#[test]
fn errors_name_the_file_the_key_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let path = write_kubeconfig(
        dir.path(),
        &kubeconfig("https://127.0.0.1:6443", "", "    token: abc\n"),
    );
    let err = load(&path, Some("nope")).unwrap_err().to_string();
    assert!(
        err.contains("kubeconfig") && err.contains("contexts") && err.contains("\"nope\""),
        "{err}"
    );
    let err = load(&path, Some("other")).unwrap_err().to_string();
    assert!(
        err.contains("users") && err.contains("\"missing\""),
        "{err}"
    );

    let path = write_kubeconfig(
        dir.path(),
        &kubeconfig(
            "https://127.0.0.1:6443",
            "    proxy-url: http://127.0.0.1:3128\n",
            "    token: abc\n",
        ),
    );
    let err = load(&path, None).unwrap_err().to_string();
    assert!(err.contains("proxy-url is not supported"), "{err}");

    let path = write_kubeconfig(
        dir.path(),
        &kubeconfig(
            "https://127.0.0.1:6443",
            "",
            "    auth-provider: {name: gcp}\n",
        ),
    );
    let err = load(&path, None).unwrap_err().to_string();
    assert!(err.contains("auth-provider is not supported"), "{err}");

    let path = write_kubeconfig(
        dir.path(),
        &kubeconfig("http://127.0.0.1:6443", "", "    token: abc\n"),
    );
    let err = load(&path, None).unwrap_err().to_string();
    assert!(err.contains("must be https"), "{err}");
}

#[test]
fn missing_ca_without_insecure_is_refused_and_insecure_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let body = "apiVersion: v1\nkind: Config\ncurrent-context: m\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: m\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\n";
    let path = write_kubeconfig(dir.path(), body);
    let err = load(&path, None).unwrap_err().to_string();
    assert!(err.contains("certificate-authority"), "{err}");
    let insecure = body.replace(
        "server: https://127.0.0.1:6443\n",
        "server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: true\n",
    );
    let path = write_kubeconfig(dir.path(), &insecure);
    load(&path, None).unwrap();
}

#[tokio::test]
async fn passthrough_never_loads_pathgates_own_credentials() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let path = write_kubeconfig(
        dir.path(),
        &kubeconfig("https://127.0.0.1:6443", "", "    token: abc\n"),
    );
    let upstream = Upstream::load(
        &UpstreamSource::Kubeconfig {
            path,
            context: None,
        },
        Duration::from_secs(1),
        false,
        16,
    )
    .unwrap();
    assert!(!upstream.has_own_credentials());
    assert_eq!(upstream.own_token().await.unwrap(), None);
}
