//! Long-lived requests upstream: which requests hold their upstream stream for as long as
//! the client wants ([`Lifetime::of`]), and the bounded connector that gives each upgrade
//! or exec-like stream an HTTP/1.1 connection of its own ([`Bounded`]); watches and
//! followed logs go on lanes of their own ([`super::lanes`]).
//!
//! Why apart: every short request shares one pooled HTTP/2 connection to the apiserver,
//! which caps the streams open on it (100 were measured). 150 watches through pathgate
//! held 100 of them; the other 50 watches, and every short request behind them, waited
//! for a watch to end (a GET waited 41.8 s in the probe, over 60 s in the test). A
//! long-lived request away from that connection never takes a stream from a short one.
//! Their number is bounded ([`Bounded`], and the lanes' stream limit), so an HTTP/2
//! client opening hundreds of streams on one connection cannot turn them into unbounded
//! upstream descriptors.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::classify::{RequestInfo, Verb};

/// How long a request holds its upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Answered and done: shares the pooled HTTP/2 connection.
    Short,
    /// A plain streaming GET (a watch, a followed log): an HTTP/2 stream on a lane of
    /// long-lived streams ([`super::lanes`]).
    Watch,
    /// Streams until the client or the apiserver ends it and may switch protocols: an
    /// exec/attach/port-forward/proxy stream, any protocol upgrade. An HTTP/1.1
    /// connection of its own.
    LongLived,
}

/// Subresources whose requests stream for as long as the client wants.
const STREAMING_SUBRESOURCES: [&str; 4] = ["exec", "attach", "portforward", "proxy"];

impl Lifetime {
    /// The lifetime of a request as the apiserver will serve it. Errs towards the long
    /// ones: a short request on a connection of its own costs a handshake, a long one on
    /// the shared connection costs everyone a stream.
    pub fn of(info: &RequestInfo, query: Option<&str>, is_upgrade: bool) -> Lifetime {
        let long = is_upgrade
            || info.apiserver_verb == "proxy"
            || STREAMING_SUBRESOURCES.contains(&info.subresource.as_str());
        let watch = info.verb == Verb::Watch
            || (info.subresource == "log" && query_flag(query, "follow"))
            || query_flag(query, "watch");
        if long {
            Lifetime::LongLived
        } else if watch {
            Lifetime::Watch
        } else {
            Lifetime::Short
        }
    }
}

/// Whether `name` is set true in the query, as Go's `strconv.ParseBool` reads it (the
/// apiserver's parameter codec): `1`, `t`, `T`, `true`, `TRUE`, `True`. Keys are
/// percent-decoded, as Go's `url.ParseQuery` does.
fn query_flag(query: Option<&str>, name: &str) -> bool {
    let Some(query) = query else {
        return false;
    };
    form_urlencoded::parse(query.as_bytes()).any(|(key, value)| {
        key == name && matches!(&*value, "1" | "t" | "T" | "true" | "TRUE" | "True")
    })
}

/// The long-lived connections already open reached the limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} long-lived upstream connections (watches, followed logs, exec streams) are open, \
     the limit (server.max_connections); retry when one has ended"
)]
pub struct LongLivedLimit(pub usize);

/// A connector whose connections each hold a permit until they close: at most `limit`
/// of them are open at once, pooled idle ones included.
#[derive(Clone)]
pub struct Bounded<C> {
    inner: C,
    permits: Arc<Semaphore>,
    limit: usize,
}

impl<C> Bounded<C> {
    pub fn new(inner: C, limit: usize) -> Self {
        Bounded {
            inner,
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<Uri> for Bounded<C>
where
    C: tower_service::Service<Uri> + Send + 'static,
    C::Response: Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = Permitted<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            let limit = self.limit;
            return Box::pin(async move { Err(Box::new(LongLivedLimit(limit)) as BoxError) });
        };
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await.map_err(Into::into)?;
            Ok(Permitted {
                io,
                _permit: permit,
            })
        })
    }
}

/// A connection holding its permit until it is dropped.
pub struct Permitted<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
}

impl<T: Connection> Connection for Permitted<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Permitted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Permitted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: &str, path: &str, query: Option<&str>, upgrade: bool) -> RequestInfo {
        let mut headers = http::HeaderMap::new();
        if upgrade {
            headers.insert("connection", "Upgrade".parse().unwrap());
            headers.insert("upgrade", "websocket".parse().unwrap());
        }
        crate::classify::request_info(&method.parse().unwrap(), path, query, &headers).unwrap()
    }

    fn lifetime(method: &str, path: &str, query: Option<&str>, upgrade: bool) -> Lifetime {
        Lifetime::of(&info(method, path, query, upgrade), query, upgrade)
    }

    #[test]
    fn watches_and_follows_stream_and_upgrades_are_long_lived() {
        use Lifetime::*;
        let pods = "/api/v1/namespaces/a/pods";
        for (method, path, query, upgrade, want) in [
            ("GET", pods, Some("watch=true"), false, Watch),
            ("GET", pods, Some("watch=1&resourceVersion=5"), false, Watch),
            ("GET", pods, Some("wat%63h=True"), false, Watch),
            ("GET", "/api/v1/watch/namespaces/a/pods", None, false, Watch),
            (
                "GET",
                "/api/v1/namespaces/a/pods/p/log",
                Some("follow=true"),
                false,
                Watch,
            ),
            (
                "GET",
                "/api/v1/namespaces/a/pods/p/log",
                Some("follow=t&container=c"),
                false,
                Watch,
            ),
            (
                "GET",
                "/api/v1/namespaces/a/pods/p/exec",
                Some("command=sh"),
                true,
                LongLived,
            ),
            (
                "POST",
                "/api/v1/namespaces/a/pods/p/exec",
                Some("command=sh"),
                false,
                LongLived,
            ),
            (
                "POST",
                "/api/v1/namespaces/a/pods/p/portforward",
                None,
                false,
                LongLived,
            ),
            (
                "GET",
                "/api/v1/namespaces/a/services/s/proxy/x",
                None,
                false,
                LongLived,
            ),
            ("GET", pods, None, false, Short),
            ("GET", pods, Some("watch=false"), false, Short),
            ("GET", pods, Some("limit=500"), false, Short),
            ("GET", "/api/v1/namespaces/a/pods/p/log", None, false, Short),
            (
                "GET",
                "/api/v1/namespaces/a/pods/p/log",
                Some("follow=false"),
                false,
                Short,
            ),
            ("POST", pods, None, false, Short),
            ("GET", "/version", None, false, Short),
        ] {
            assert_eq!(
                lifetime(method, path, query, upgrade),
                want,
                "{method} {path}?{query:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_connector_refuses_past_its_limit_until_a_connection_closes() {
        #[derive(Clone)]
        struct Pipe;
        impl tower_service::Service<Uri> for Pipe {
            type Response = hyper_util::rt::TokioIo<tokio::io::DuplexStream>;
            type Error = std::io::Error;
            type Future = std::future::Ready<Result<Self::Response, std::io::Error>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Uri) -> Self::Future {
                std::future::ready(Ok(hyper_util::rt::TokioIo::new(tokio::io::duplex(64).0)))
            }
        }
        use tower_service::Service;
        let mut connector = Bounded::new(Pipe, 2);
        let uri: Uri = "https://127.0.0.1:6443".parse().unwrap();
        let first = connector.call(uri.clone()).await.unwrap();
        let _second = connector.call(uri.clone()).await.unwrap();
        let refused = connector.call(uri.clone()).await.err().unwrap();
        assert!(
            refused
                .to_string()
                .contains("2 long-lived upstream connections"),
            "{refused}"
        );
        drop(first);
        connector
            .call(uri)
            .await
            .expect("a closed connection gave its permit back");
    }
}
