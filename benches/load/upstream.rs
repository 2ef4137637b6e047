//! The fixed upstream: a TLS server (HTTP/1.1 and h2, keep-alive) that answers two canned
//! Kubernetes API responses (and yes to kube-rbac-proxy's token and access reviews), standing in for the apiserver so that the three measured
//! paths differ only by what sits between the load generator and it.
//!
//! It runs as a child process (this same benchmark binary, started with
//! [`CHILD_COMMAND`]) so that its CPU use is its own, as an apiserver's would be. It does not
//! own anything about the proxies in front of it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The first argument that makes this binary the upstream instead of the benchmark.
pub const CHILD_COMMAND: &str = "__canned-upstream";

/// The small GET: one ConfigMap.
pub const SMALL_PATH: &str = "/api/v1/namespaces/default/configmaps/small";
/// Where the ledger-on case's webhook sink posts its batches.
pub const LEDGER_PATH: &str = "/ledger";
/// The LIST: a ConfigMapList of about 30 KB.
pub const LIST_PATH: &str = "/api/v1/namespaces/default/configmaps";
/// kube-rbac-proxy's questions: is this token valid, may its user make this request. Both
/// are answered yes (any token is the bench's user, who may do anything).
const TOKEN_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEW_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
const TOKEN_REVIEW: &[u8] = br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{},"spec":{},"status":{"authenticated":true,"user":{"username":"pathgate-bench","groups":["system:authenticated"]}}}"#;
const ACCESS_REVIEW: &[u8] = br#"{"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{},"status":{"allowed":true}}"#;

/// One ConfigMap, shaped as the apiserver returns it (about 300 bytes).
pub fn small_object() -> Bytes {
    Bytes::from(configmap_json("small", 0, 1).to_string())
}

/// A ConfigMapList with enough items to reach 30 KB.
pub fn configmap_list() -> Bytes {
    let mut items = Vec::new();
    let mut size = 0;
    let mut index = 0;
    while size < 30 * 1024 - 600 {
        let item = configmap_json(&format!("settings-{index:03}"), index, 2);
        size += item.to_string().len() + 1;
        items.push(item);
        index += 1;
    }
    let list = serde_json::json!({
        "kind": "ConfigMapList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "48213"},
        "items": items,
    });
    Bytes::from(list.to_string())
}

fn configmap_json(name: &str, index: usize, keys: usize) -> serde_json::Value {
    let mut data = serde_json::Map::new();
    for key in 0..keys {
        data.insert(
            format!("setting-{key}.conf"),
            serde_json::Value::String(format!(
                "level=info\nretries={index}\nendpoint=svc-{key}.default.svc:8080\n"
            )),
        );
    }
    serde_json::json!({
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": format!("4c1d9e4e-2f0b-4a8e-9d55-{:012x}", index),
            "resourceVersion": format!("{}", 40000 + index),
            "creationTimestamp": "2025-01-06T09:30:00Z",
            "labels": {"app": "bench"},
        },
        "data": data,
    })
}

/// `__canned-upstream CERT KEY`: serves on 127.0.0.1:0, prints
/// `canned upstream listening on https://ADDR` to stderr, runs until killed.
pub fn child_main(args: &[String]) -> ExitCode {
    let [cert, key] = args else {
        eprintln!("usage: {CHILD_COMMAND} CERT KEY");
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(serve(PathBuf::from(cert), PathBuf::from(key))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("canned upstream: {error:#}");
            ExitCode::FAILURE
        }
    }
}

struct Canned {
    small: Bytes,
    list: Bytes,
}

async fn serve(cert: PathBuf, key: PathBuf) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = pathgate::tls::server_config(&cert, &key, None, false)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    eprintln!(
        "canned upstream listening on https://{}",
        listener.local_addr()?
    );
    let canned = Arc::new(Canned {
        small: small_object(),
        list: configmap_list(),
    });
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let canned = canned.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let Ok(tls_stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |request: Request<Incoming>| {
                let canned = canned.clone();
                async move {
                    if request.method() == http::Method::POST && request.uri().path() == LEDGER_PATH
                    {
                        return Ok::<_, Infallible>(receive_ledger_batch(request).await);
                    }
                    Ok(answer(&canned, &request))
                }
            });
            let _ = builder
                .serve_connection(TokioIo::new(tls_stream), service)
                .await;
        });
    }
}

/// The ledger's webhook sink in the ledger-on case: every frame of the batch is read, as a
/// receiver streaming it to storage would, and the batch must be a JSON array (checked by
/// its first and last byte, not parsed: the harness measures pathgate, not a JSON parser,
/// nor copies of the body into one buffer); 400 otherwise.
async fn receive_ledger_batch(request: Request<Incoming>) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let mut body = request.into_body();
    let (mut first, mut last) = (None, None);
    let mut status = StatusCode::OK;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref().filter(|data| !data.is_empty()) {
                    first = first.or(data.first().copied());
                    last = data.last().copied();
                }
            }
            Err(_) => {
                status = StatusCode::BAD_REQUEST;
                break;
            }
        }
    }
    if (first, last) != (Some(b'['), Some(b']')) {
        status = StatusCode::BAD_REQUEST;
    }
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .expect("a static response")
}

fn answer(canned: &Canned, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method().as_str(), request.uri().path()) {
        ("GET", SMALL_PATH) => (StatusCode::OK, canned.small.clone()),
        ("GET", LIST_PATH) => (StatusCode::OK, canned.list.clone()),
        ("POST", TOKEN_REVIEW_PATH) => (StatusCode::CREATED, Bytes::from_static(TOKEN_REVIEW)),
        ("POST", ACCESS_REVIEW_PATH) => (StatusCode::CREATED, Bytes::from_static(ACCESS_REVIEW)),
        _ => (
            StatusCode::NOT_FOUND,
            Bytes::from_static(
                br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NotFound","code":404}"#,
            ),
        ),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("audit-id", "00000000-0000-4000-8000-000000000000")
        .body(Full::new(body))
        .expect("a static response")
}
