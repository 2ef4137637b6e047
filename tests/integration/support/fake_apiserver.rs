//! A fake upstream for pure HTTP behaviour: an in-process HTTPS server (its own rcgen CA,
//! HTTP/1.1 and HTTP/2) that records every request it receives and answers each with a
//! canned response. Tests of what pathgate does to a request on its way (header hygiene,
//! the body bound, trace stamping, auth modes, error mapping) run against it in seconds,
//! without the control plane.
//!
//! It has none of Kubernetes' semantics: anything that depends on what the apiserver
//! *means* (RBAC, admission, dry runs, audit) is tested against the real one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A request as the fake apiserver received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// How long to wait before answering (a slow apiserver).
    pub delay: Option<std::time::Duration>,
}

impl Canned {
    /// A JSON answer.
    pub fn json(status: u16, body: serde_json::Value) -> Canned {
        Canned {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: Bytes::from(body.to_string()),
            delay: None,
        }
    }

    /// This answer, sent only after `delay`.
    pub fn after(mut self, delay: std::time::Duration) -> Canned {
        self.delay = Some(delay);
        self
    }
}

/// What the fake answers: a function of the request.
pub type Answer = Arc<dyn Fn(&Received) -> Canned + Send + Sync>;

/// A running fake apiserver; stops when dropped.
pub struct FakeApiserver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    dir: tempfile::TempDir,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The token the fake's kubeconfig carries: pathgate's own credentials in sidecar and
/// impersonate modes.
pub const UPSTREAM_TOKEN: &str = "fake-upstream-token";

impl FakeApiserver {
    /// Answers every request with `200 {"kind":"ConfigMap",...}` naming the request path.
    pub async fn start() -> FakeApiserver {
        FakeApiserver::answering(|request| {
            Canned::json(
                200,
                serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1",
                    "metadata": {"name": "echo", "annotations": {"path": request.uri.path()}}}),
            )
        })
        .await
    }

    /// Answers with `answer`.
    pub async fn answering(
        answer: impl Fn(&Received) -> Canned + Send + Sync + 'static,
    ) -> FakeApiserver {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls_config(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            tls,
            Arc::new(answer),
            received.clone(),
            stop.clone(),
        ));
        let fake = FakeApiserver {
            addr,
            received,
            dir,
            stop,
            task: Mutex::new(Some(task)),
        };
        fake.write_kubeconfig();
        fake
    }

    /// Closes the listener (its kubeconfig stays): connecting is then refused.
    pub async fn stop_listening(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.await.unwrap();
        }
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// A kubeconfig that reaches the fake with [`UPSTREAM_TOKEN`] (pathgate's upstream).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("upstream.kubeconfig")
    }

    fn write_kubeconfig(&self) {
        let ca = self.dir.path().join("ca.crt");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  \
             cluster: {{server: 'https://{}', certificate-authority: '{}'}}\ncontexts:\n- name: \
             fake\n  context: {{cluster: fake, user: pathgate}}\nusers:\n- name: pathgate\n  \
             user: {{token: {UPSTREAM_TOKEN}}}\n",
            self.addr,
            ca.display()
        );
        std::fs::write(self.kubeconfig(), text).unwrap();
    }
}

impl Drop for FakeApiserver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A CA (written to `dir/ca.crt`) and a serving certificate for 127.0.0.1 signed by it.
fn tls_config(dir: &Path) -> Arc<rustls::ServerConfig> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(pathgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    answer: Answer,
    received: Arc<Mutex<Vec<Received>>>,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        let (acceptor, answer, received) = (acceptor.clone(), answer.clone(), received.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let (answer, received) = (answer.clone(), received.clone());
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let request = Received {
                        method: parts.method,
                        uri: parts.uri,
                        version: parts.version,
                        headers: parts.headers,
                        body,
                    };
                    let canned = answer(&request);
                    received.lock().unwrap().push(request);
                    if let Some(delay) = canned.delay {
                        tokio::time::sleep(delay).await;
                    }
                    let mut response = http::Response::builder().status(canned.status);
                    for (name, value) in &canned.headers {
                        response = response.header(*name, value);
                    }
                    Ok::<_, std::convert::Infallible>(
                        response.body(Full::new(canned.body)).unwrap(),
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
