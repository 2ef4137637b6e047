//! Test support for the proxy: starts pathgate in-process (port 0) in front of the real
//! control plane, writes kubeconfigs that point kubectl at it, and collects every exchange
//! the proxy records.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pathgate::proxy::{AuthMode, Exchange, ProxySettings, Recorder};
use pathgate::serve::{Running, ServeOptions};
use pathgate::upstream::UpstreamSource;
use testcluster::RunningCluster;

/// Collects exchanges for assertions.
#[derive(Default, Clone)]
pub struct Collected(pub Arc<Mutex<Vec<Exchange>>>);

impl Recorder for Collected {
    fn record(&self, exchange: Exchange) {
        self.0.lock().unwrap().push(exchange);
    }
}

impl Collected {
    pub fn all(&self) -> Vec<Exchange> {
        self.0.lock().unwrap().clone()
    }
}

/// The control plane of this test run; fails (never skips) when there is none.
pub fn cluster() -> RunningCluster {
    crate::support::cluster().clone()
}

/// How to start pathgate for one test.
pub struct GatewayBuilder {
    pub auth: AuthMode,
    pub upstream_kubeconfig: PathBuf,
    pub client_ca: bool,
    pub settings: ProxySettings,
    pub policy: Option<pathgate::config::PolicyHandle>,
    /// Record to a real ledger in this directory instead of collecting exchanges.
    pub ledger: Option<pathgate::ledger::LedgerSettings>,
    /// A `--client-token-file` (sidecar mode's client tokens, read by `serve::start`).
    pub client_token_file: Option<PathBuf>,
}

impl GatewayBuilder {
    pub fn new(upstream_kubeconfig: impl Into<PathBuf>) -> Self {
        Self {
            auth: AuthMode::Passthrough,
            upstream_kubeconfig: upstream_kubeconfig.into(),
            client_ca: false,
            settings: ProxySettings::default(),
            policy: None,
            ledger: None,
            client_token_file: None,
        }
    }

    pub fn auth(mut self, auth: AuthMode) -> Self {
        self.auth = auth;
        self.client_ca = auth == AuthMode::Impersonate || self.client_ca;
        self
    }

    /// Record to a real ledger (spool in `settings.dir`) instead of collecting exchanges.
    pub fn ledger(mut self, settings: pathgate::ledger::LedgerSettings) -> Self {
        self.ledger = Some(settings);
        self
    }

    /// Gate requests with this policy (YAML, as in a `--config` file).
    pub fn policy_yaml(mut self, yaml: &str) -> Self {
        let config = pathgate::config::Config::from_yaml(yaml, std::path::Path::new("test.yaml"))
            .expect("test policy is valid");
        self.policy = Some(pathgate::config::PolicyHandle::new(&config, None));
        self
    }

    pub async fn start(self) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let certs = pathgate::tls::init_certs(&dir.path().join("certs"), &[], false).unwrap();
        let collected = Collected::default();
        let mut settings = self.settings;
        settings.auth = self.auth;
        let options = ServeOptions {
            upstream: UpstreamSource::Kubeconfig {
                path: self.upstream_kubeconfig,
                context: None,
            },
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: Some("127.0.0.1:0".parse().unwrap()),
            tls_cert: certs.server_cert.clone(),
            tls_key: certs.server_key.clone(),
            client_ca: self.client_ca.then(|| certs.ca_cert.clone()),
            client_token_file: self.client_token_file,
            proxy: settings,
            drain_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            ledger: self.ledger.clone(),
        };
        let recorder: Option<Arc<dyn Recorder>> = match self.ledger {
            Some(_) => None,
            None => Some(Arc::new(collected.clone())),
        };
        let running = pathgate::serve::start(
            options,
            match self.policy {
                Some(policy) => pathgate::serve::policy_gate(policy),
                None => pathgate::serve::allow_all(),
            },
            recorder,
            pathgate::metrics::Metrics::new(),
        )
        .await
        .expect("pathgate starts");
        Gateway {
            url: format!("https://{}", running.addr),
            running: Some(running),
            ca: certs.ca_cert,
            dir,
            collected,
        }
    }
}

/// A running in-process pathgate.
pub struct Gateway {
    pub url: String,
    pub running: Option<Running>,
    pub ca: PathBuf,
    pub dir: tempfile::TempDir,
    pub collected: Collected,
}

impl Gateway {
    fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// A kubeconfig through pathgate with a bearer token (passthrough).
    pub fn kubeconfig_with_token(
        &self,
        name: &str,
        token: Option<&str>,
        session: Option<&str>,
    ) -> PathBuf {
        let out = self.dir.path().join(format!("{name}.kubeconfig"));
        pathgate::agent_kubeconfig::AgentKubeconfig {
            server: self.url.clone(),
            session: session.map(str::to_string),
            ca: self.ca.clone(),
            token: token.map(str::to_string),
            ..Default::default()
        }
        .write(&out)
        .unwrap();
        out
    }

    /// A kubeconfig through pathgate with a client certificate issued by pathgate's CA.
    pub fn kubeconfig_with_cert(&self, user: &str, group: Option<&str>) -> PathBuf {
        let groups: Vec<String> = group.into_iter().map(str::to_string).collect();
        let base = self.dir.path().join(user);
        let (cert, key) =
            pathgate::tls::issue_client_cert(&self.certs_dir(), user, &groups, &base, true)
                .unwrap();
        let out = self.dir.path().join(format!("{user}-cert.kubeconfig"));
        pathgate::agent_kubeconfig::AgentKubeconfig {
            server: self.url.clone(),
            ca: self.ca.clone(),
            client_cert: Some(cert),
            client_key: Some(key),
            ..Default::default()
        }
        .write(&out)
        .unwrap();
        out
    }

    pub fn admin_url(&self) -> String {
        format!(
            "http://{}",
            self.running.as_ref().unwrap().admin_addr.unwrap()
        )
    }

    /// An HTTPS client that trusts pathgate's CA, for raw requests.
    pub fn client(
        &self,
    ) -> Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    > {
        https_client(&self.ca)
    }

    /// An HTTP/1.1 client presenting a client certificate for `user` (and `group`) issued
    /// by pathgate's CA, as an impersonate-mode client.
    pub fn client_with_cert(&self, user: &str, group: Option<&str>) -> HttpsClient {
        let groups: Vec<String> = group.into_iter().map(str::to_string).collect();
        let base = self.dir.path().join(format!("{user}-raw"));
        let (cert, key) =
            pathgate::tls::issue_client_cert(&self.certs_dir(), user, &groups, &base, true)
                .unwrap();
        let config = crate::support::tls::client_config_with_cert(&self.ca, &cert, &key);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        Client::builder(TokioExecutor::new()).build(connector)
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

/// The HTTPS client of [`https_client`] and [`https_client_http1`].
pub type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// An HTTPS client trusting `ca` (HTTP/1.1 and HTTP/2).
pub fn https_client(ca: &Path) -> HttpsClient {
    let config = crate::support::tls::client_config(ca, &[]);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_all_versions()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// An HTTPS client trusting `ca` that speaks HTTP/1.1 only: the protocol where a client can
/// send hop-by-hop headers at all (HTTP/2 forbids them on the wire).
pub fn https_client_http1(ca: &Path) -> HttpsClient {
    let config = crate::support::tls::client_config(ca, &[]);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends one request and returns status, headers and body.
pub async fn send(
    client: &Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    request: http::Request<Full<Bytes>>,
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let response = client
        .request(request)
        .await
        .expect("request reaches pathgate");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

/// Runs kubectl (the built one) with a kubeconfig, with a deadline.
pub async fn kubectl(cluster: &RunningCluster, kubeconfig: &Path, args: &[&str]) -> Output {
    kubectl_stdin(cluster, kubeconfig, args, None).await
}

/// kubectl through one kubeconfig in one namespace (`-n` added to every command): the
/// argument boilerplate of a test's kubectl session.
pub struct KubectlIn<'a> {
    cluster: &'a RunningCluster,
    kubeconfig: &'a Path,
    namespace: &'a str,
}

/// kubectl `-n namespace` through `kubeconfig`.
pub fn kubectl_in<'a>(
    cluster: &'a RunningCluster,
    kubeconfig: &'a Path,
    namespace: &'a str,
) -> KubectlIn<'a> {
    KubectlIn {
        cluster,
        kubeconfig,
        namespace,
    }
}

impl KubectlIn<'_> {
    /// Runs `kubectl -n <namespace> args...`.
    pub async fn run(&self, args: &[&str]) -> Output {
        let args = [&["-n", self.namespace][..], args].concat();
        kubectl(self.cluster, self.kubeconfig, &args).await
    }

    /// Runs `kubectl -n <namespace> args...` with `stdin` piped in.
    pub async fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let args = [&["-n", self.namespace][..], args].concat();
        kubectl_stdin(self.cluster, self.kubeconfig, &args, Some(stdin)).await
    }
}

/// Runs kubectl with `stdin` piped in.
pub async fn kubectl_stdin(
    cluster: &RunningCluster,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(&cluster.kubectl);
    // kubectl's discovery cache is kept per kubeconfig (each gateway writes its own in a
    // fresh directory), never in $HOME where a reused port would make the requests a test
    // sees depend on earlier runs.
    let cache_dir = kubeconfig
        .parent()
        .unwrap_or(Path::new("."))
        .join("kubectl-cache");
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache_dir)
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("kubectl runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within 120s"))
        .unwrap()
}

/// kubectl must have succeeded; returns its stdout.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kubectl failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// kubectl must have failed; returns its stderr.
pub fn failed(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "kubectl unexpectedly succeeded:\nstdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A unique name with a prefix (namespaces are shared by every test of the run).
pub use crate::support::unique_name as unique;

/// Creates a namespace directly on the apiserver (admin), for a test's own objects.
pub async fn namespace(cluster: &RunningCluster, prefix: &str) -> String {
    let name = unique(prefix);
    ok(&kubectl(
        cluster,
        &cluster.dir.admin_kubeconfig(),
        &["create", "namespace", &name],
    )
    .await);
    name
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on the loopback `port`.
pub async fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "pathgate did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bare pod manifest (JSON); with no node it is never scheduled or run.
pub fn pod_manifest(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"busybox"}}]}}}}"#
    )
}

/// The real `pathgate serve` binary in front of the cluster's admin kubeconfig, listening
/// on a free loopback port with the serving certificate in `certs_dir`; `extra` flags are
/// appended and stderr goes to `log` (or nowhere).
pub async fn serve_process(
    cluster: &RunningCluster,
    certs_dir: &Path,
    extra: &[&std::ffi::OsStr],
    log: Option<&Path>,
) -> (tokio::process::Child, u16) {
    let port = free_port();
    let stderr = match log {
        Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
        None => std::process::Stdio::null(),
    };
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .arg("serve")
        .arg("--upstream-kubeconfig")
        .arg(cluster.dir.admin_kubeconfig())
        .args([
            "--admin-listen",
            "off",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--tls-cert")
        .arg(certs_dir.join("server.crt"))
        .arg("--tls-key")
        .arg(certs_dir.join("server.key"))
        .args(extra)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("the pathgate binary runs");
    wait_listening(port).await;
    (child, port)
}
