//! Bodies: bounded buffering of mutation bodies, answers read up to an inspection bound (and
//! relayed whole past it, or broken where the upstream broke them), and the streaming
//! wrapper of responses that reports how each ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Why a request body could not be buffered.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("reading the request body: {0}")]
    Read(#[from] hyper::Error),
}

/// Reads a body completely, refusing more than `limit` bytes.
pub async fn read_bounded<B>(mut body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: HttpBody<Data = Bytes, Error = hyper::Error> + Unpin,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge(limit));
    }
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

/// An upstream answer read up to a bound (see [`read_answer`]).
pub enum Answer<B> {
    /// The whole body, within the bound.
    Whole(Bytes),
    /// The body went past the bound: the frames read so far and the rest, still unread.
    Over { read: Bytes, rest: B },
    /// The upstream broke the body off after sending `read`.
    Broken { read: Bytes, error: hyper::Error },
}

/// Reads an answer whole when it fits in `limit` bytes. Unlike [`read_bounded`], going past
/// the bound is not a failure: the caller gets back what was read and the rest of the body,
/// so an answer too large to inspect can still be relayed as the apiserver sent it.
pub async fn read_answer<B>(mut body: B, limit: usize) -> Answer<B>
where
    B: HttpBody<Data = Bytes, Error = hyper::Error> + Unpin,
{
    let mut buffer = BytesMut::new();
    if body.size_hint().lower() > limit as u64 {
        return Answer::Over {
            read: Bytes::new(),
            rest: body,
        };
    }
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    buffer.extend_from_slice(&data);
                    if buffer.len() > limit {
                        return Answer::Over {
                            read: buffer.freeze(),
                            rest: body,
                        };
                    }
                }
            }
            Err(error) => {
                return Answer::Broken {
                    read: buffer.freeze(),
                    error,
                }
            }
        }
    }
    Answer::Whole(buffer.freeze())
}

/// What comes after the bytes a [`Prefixed`] body already holds.
pub enum Tail<B> {
    /// The rest of the upstream body.
    Rest(B),
    /// The upstream's failure, passed on once (the client sees the body break off).
    Broken(Option<hyper::Error>),
}

/// A body whose first bytes were already read (to inspect them), followed by its tail.
pub struct Prefixed<B> {
    prefix: Option<Bytes>,
    tail: Tail<B>,
    /// Whether the connection had its turn to write what came before a failure.
    yielded: bool,
}

impl<B> Prefixed<B> {
    pub fn new(prefix: Bytes, tail: Tail<B>) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            tail,
            yielded: false,
        }
    }
}

impl<B> HttpBody for Prefixed<B>
where
    B: HttpBody<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match &mut this.tail {
            Tail::Rest(rest) => Pin::new(rest).poll_frame(cx),
            Tail::Broken(error) => {
                // hyper's HTTP/1.1 connection drops what it buffered when a body fails: let
                // it write the head and the bytes read first, so the client sees the answer
                // break off where it broke, not a connection closed without an answer.
                if !this.yielded && error.is_some() {
                    this.yielded = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(error.take().map(Err))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none()
            && match &self.tail {
                Tail::Rest(rest) => rest.is_end_stream(),
                Tail::Broken(error) => error.is_none(),
            }
    }
}

/// Counters a streamed response fills in, read when the stream ends.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Bytes relayed to the client.
    pub bytes: AtomicU64,
    /// Newline-delimited JSON watch events relayed (watches only).
    pub events: AtomicU64,
}

/// Called once when a streamed response ends, fails or is dropped by the client. It may
/// return the task making the record durable: the body's end is released to the client
/// only once that task finished (a mutation's answer too large to buffer).
pub type OnEnd = Box<dyn FnOnce(StreamEnd) -> Option<JoinHandle<()>> + Send + Sync + 'static>;

/// How a streamed response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The upstream finished the body.
    Complete,
    /// pathgate is draining and ended a watch cleanly.
    Drained,
    /// The upstream failed mid-body.
    UpstreamError,
    /// The client went away before the end.
    ClientGone,
}

/// Relays an upstream body frame by frame (never buffering), counting bytes and watch
/// events, ending a watch cleanly when pathgate drains, and reporting how it ended.
pub struct Relay<B: HttpBody> {
    inner: B,
    stats: Arc<StreamStats>,
    count_events: bool,
    drain: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    on_end: Option<OnEnd>,
    /// The durable record the end of the body waits for.
    recording: Option<JoinHandle<()>>,
}

impl<B: HttpBody> Relay<B> {
    /// Wraps `inner`. With `drain`, the stream ends (cleanly, as an end of body) when the
    /// token is cancelled: that is how watches finish on SIGTERM.
    pub fn new(
        inner: B,
        stats: Arc<StreamStats>,
        count_events: bool,
        drain: Option<CancellationToken>,
        on_end: OnEnd,
    ) -> Self {
        Self {
            inner,
            stats,
            count_events,
            drain: drain.map(|token| Box::pin(token.cancelled_owned())),
            on_end: Some(on_end),
            recording: None,
        }
    }

    fn finish(&mut self, end: StreamEnd) {
        if let Some(on_end) = self.on_end.take() {
            self.recording = on_end(end);
        }
    }

    /// Ends the body once the record of its end (if one is awaited) is made.
    fn end_when_recorded(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(recording) = self.recording.as_mut() {
            if Pin::new(recording).poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.recording = None;
        }
        Poll::Ready(None)
    }
}

impl<B: HttpBody> Drop for Relay<B> {
    fn drop(&mut self) {
        // hyper drops a body it knows to be over (empty, or the answer to a HEAD) unread.
        let end = if self.inner.is_end_stream() {
            StreamEnd::Complete
        } else {
            StreamEnd::ClientGone
        };
        self.finish(end);
    }
}

impl<B> HttpBody for Relay<B>
where
    B: HttpBody<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if this.on_end.is_none() {
            // Ended: only the record it waits for may be left.
            return this.end_when_recorded(cx);
        }
        if let Some(drain) = this.drain.as_mut() {
            if drain.as_mut().poll(cx).is_ready() {
                this.finish(StreamEnd::Drained);
                return this.end_when_recorded(cx);
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.stats
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    if this.count_events {
                        let events = data.iter().filter(|b| **b == b'\n').count() as u64;
                        this.stats.events.fetch_add(events, Ordering::Relaxed);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.finish(StreamEnd::UpstreamError);
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                this.finish(StreamEnd::Complete);
                this.end_when_recorded(cx)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // Not before `poll_frame` saw the end: it reports it, and may wait for its record.
        self.on_end.is_none() && self.recording.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What an upgraded (exec, attach, port-forward) connection carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub to_upstream: u64,
    pub to_client: u64,
    pub end: StreamEnd,
    /// An upstream-side failure; a client that hangs up abruptly is not one.
    pub error: Option<String>,
}

/// Copies both directions of an upgraded connection until either side closes, counting
/// bytes even when a side hangs up without a clean shutdown.
pub async fn relay_upgraded<C, U>(client: C, upstream: U) -> Relayed
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pump<R, W>(mut from: R, mut to: W, count: &AtomicU64) -> Result<(), std::io::Error>
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = from.read(&mut buffer).await?;
            if n == 0 {
                let _ = to.shutdown().await;
                return Ok(());
            }
            to.write_all(&buffer[..n]).await?;
            to.flush().await?;
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let to_upstream = AtomicU64::new(0);
    let to_client = AtomicU64::new(0);
    let (up, down) = tokio::join!(
        pump(client_read, upstream_write, &to_upstream),
        pump(upstream_read, client_write, &to_client),
    );
    let (end, error) = match (up, down) {
        (_, Err(e)) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
            (StreamEnd::UpstreamError, Some(e.to_string()))
        }
        (Err(_), _) => (StreamEnd::ClientGone, None),
        _ => (StreamEnd::Complete, None),
    };
    Relayed {
        to_upstream: to_upstream.into_inner(),
        to_client: to_client.into_inner(),
        end,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};
    use std::sync::Mutex;
    use std::time::Duration;

    fn full(bytes: &'static [u8]) -> http_body_util::combinators::BoxBody<Bytes, hyper::Error> {
        Full::new(Bytes::from_static(bytes))
            .map_err(|never| match never {})
            .boxed()
    }

    #[tokio::test]
    async fn bounded_read_accepts_up_to_the_limit_and_refuses_beyond() {
        assert_eq!(read_bounded(full(b"12345"), 5).await.unwrap(), "12345");
        assert!(matches!(
            read_bounded(full(b"123456"), 5).await,
            Err(BodyError::TooLarge(5))
        ));
    }

    fn frames(
        chunks: &'static [&'static [u8]],
    ) -> http_body_util::combinators::BoxBody<Bytes, hyper::Error> {
        let stream = futures_util::stream::iter(
            chunks
                .iter()
                .map(|chunk| Ok::<_, hyper::Error>(Frame::data(Bytes::from_static(chunk)))),
        );
        StreamBody::new(stream).boxed()
    }

    #[tokio::test]
    async fn an_answer_within_the_bound_is_read_whole() {
        let Answer::Whole(bytes) = read_answer(frames(&[b"abc", b"de"]), 5).await else {
            panic!("within the bound");
        };
        assert_eq!(bytes, "abcde");
    }

    #[tokio::test]
    async fn an_answer_past_the_bound_comes_back_whole_as_read_part_and_rest() {
        let Answer::Over { read, rest } = read_answer(frames(&[b"abc", b"def", b"gh"]), 5).await
        else {
            panic!("past the bound");
        };
        assert_eq!(
            read, "abcdef",
            "read up to the frame that crossed the bound"
        );
        let relayed = Prefixed::new(read, Tail::Rest(rest))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(relayed, "abcdefgh", "nothing lost, nothing repeated");
        let Answer::Over { read, .. } = read_answer(full(b"123456"), 5).await else {
            panic!("a known length past the bound is not read at all");
        };
        assert!(read.is_empty());
    }

    #[tokio::test]
    async fn the_end_of_a_body_waits_for_its_record() {
        let (made, recorded) = tokio::sync::oneshot::channel::<()>();
        let mut made = Some(made);
        let recorded = Arc::new(Mutex::new(Some(recorded)));
        let mut relay = Relay::new(
            full(b"answer"),
            Arc::new(StreamStats::default()),
            false,
            None,
            Box::new(move |end| {
                assert_eq!(end, StreamEnd::Complete);
                let recorded = recorded.lock().unwrap().take().unwrap();
                Some(tokio::spawn(async move {
                    let _ = recorded.await;
                }))
            }),
        );
        assert_eq!(
            relay.frame().await.unwrap().unwrap().into_data().unwrap(),
            "answer"
        );
        assert!(
            !relay.is_end_stream(),
            "the end is not announced before the record"
        );
        let waiting = tokio::time::timeout(Duration::from_millis(50), relay.frame()).await;
        assert!(
            waiting.is_err(),
            "the end waits while the record is being made"
        );
        made.take().unwrap().send(()).unwrap();
        assert!(relay.frame().await.is_none(), "then the body ends");
        assert!(relay.is_end_stream());
    }

    #[tokio::test]
    async fn a_body_dropped_unread_at_its_end_is_complete() {
        let ended = Arc::new(Mutex::new(None));
        let seen = ended.clone();
        let relay = Relay::new(
            full(b""),
            Arc::new(StreamStats::default()),
            false,
            None,
            Box::new(move |end| {
                *seen.lock().unwrap() = Some(end);
                None
            }),
        );
        drop(relay); // as hyper drops the body of an answer to HEAD
        assert_eq!(*ended.lock().unwrap(), Some(StreamEnd::Complete));
    }

    #[tokio::test]
    async fn relay_counts_and_reports_completion() {
        let ended = Arc::new(Mutex::new(None));
        let seen = ended.clone();
        let stats = Arc::new(StreamStats::default());
        let relay = Relay::new(
            full(b"{\"type\":\"ADDED\"}\n{\"type\":\"MODIFIED\"}\n"),
            stats.clone(),
            true,
            None,
            Box::new(move |end| {
                *seen.lock().unwrap() = Some(end);
                None
            }),
        );
        let bytes = relay.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 37);
        assert_eq!(stats.bytes.load(Ordering::Relaxed), 37);
        assert_eq!(stats.events.load(Ordering::Relaxed), 2);
        assert_eq!(*ended.lock().unwrap(), Some(StreamEnd::Complete));
    }

    #[tokio::test]
    async fn drain_ends_an_endless_stream_cleanly() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, hyper::Error>>(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"{}\n"))))
            .await
            .unwrap();
        let stream = tokio_stream_from(rx);
        let token = CancellationToken::new();
        let ended = Arc::new(Mutex::new(None));
        let seen = ended.clone();
        let mut relay = Relay::new(
            StreamBody::new(stream),
            Arc::new(StreamStats::default()),
            true,
            Some(token.clone()),
            Box::new(move |end| {
                *seen.lock().unwrap() = Some(end);
                None
            }),
        );
        let first = relay.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "{}\n");
        token.cancel();
        assert!(relay.frame().await.is_none(), "the body ends, not errors");
        assert_eq!(*ended.lock().unwrap(), Some(StreamEnd::Drained));
        drop(tx);
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, hyper::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, hyper::Error>> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    #[tokio::test]
    async fn dropping_before_the_end_reports_client_gone() {
        let ended = Arc::new(Mutex::new(None));
        let seen = ended.clone();
        let relay = Relay::new(
            full(b"abc"),
            Arc::new(StreamStats::default()),
            false,
            None,
            Box::new(move |end| {
                *seen.lock().unwrap() = Some(end);
                None
            }),
        );
        drop(relay);
        assert_eq!(*ended.lock().unwrap(), Some(StreamEnd::ClientGone));
    }
}
