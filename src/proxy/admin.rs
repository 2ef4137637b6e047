//! The admin listener: `/healthz`, `/readyz` (the apiserver is reachable) and `/metrics`.
//! Plain HTTP, meant for loopback or a pod-local scrape.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::status::{full_body, Body};
use crate::upstream::Upstream;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Any HTTP answer from the apiserver's `/readyz` within two seconds means reachable (it
/// may be 401/403 without credentials; reachability is what pathgate needs).
async fn upstream_reachable(upstream: &Upstream) -> Result<u16, String> {
    let mut request = Request::get(upstream.uri_for("/readyz"))
        .body(full_body(Bytes::new()))
        .expect("static request");
    if let Ok(Some(token)) = upstream.own_token().await {
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
    }
    match tokio::time::timeout(Duration::from_secs(2), upstream.client().request(request)).await {
        Ok(Ok(response)) => Ok(response.status().as_u16()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 2s".into()),
    }
}

async fn route(
    request: Request<Incoming>,
    upstream: Arc<Upstream>,
    metrics: Metrics,
) -> Response<Body> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match request.uri().path() {
        "/healthz" | "/livez" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match upstream_reachable(&upstream).await {
            Ok(code) => text(StatusCode::OK, format!("ok: apiserver answered {code}\n")),
            Err(error) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("apiserver {} unreachable: {error}\n", upstream.description),
            ),
        },
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /healthz /readyz /metrics\n",
        ),
    }
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    upstream: Arc<Upstream>,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            () = &mut shutdown => return,
        };
        let upstream = upstream.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let upstream = upstream.clone();
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(route(request, upstream, metrics).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
