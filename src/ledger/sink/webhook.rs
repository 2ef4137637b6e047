//! The webhook sink: batches of entries POSTed as one JSON array.

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use super::http_client::{self, SinkClient};
use super::{DeliveryError, RetrySettings};
use crate::ledger::spool::{Batch, Cursor};
use crate::ledger::{LedgerError, SCHEMA};

/// Webhook sink settings (config keys `ledger.webhook.*`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Where batches are POSTed (`http://` or `https://`).
    pub url: http::Uri,
    /// CA bundle (PEM) that verifies an `https://` receiver.
    pub ca_file: Option<PathBuf>,
    /// Most entries in one POST.
    pub batch_max_entries: usize,
    /// Deadline of one POST, response included.
    pub timeout: Duration,
    /// Backoff between attempts of a failed batch.
    pub retry: RetrySettings,
}

impl WebhookSettings {
    /// Defaults: batches of 256 entries, 10 s timeout, default backoff.
    pub fn new(url: http::Uri) -> Self {
        WebhookSettings {
            url,
            ca_file: None,
            batch_max_entries: 256,
            timeout: Duration::from_secs(10),
            retry: RetrySettings::default(),
        }
    }
}

/// The schema header sent with every batch, so a receiver can refuse what it cannot read.
pub const SCHEMA_HEADER: &str = "x-pathgate-ledger-schema";

pub(crate) struct Webhook {
    pub(crate) settings: WebhookSettings,
    client: SinkClient<ArrayBody>,
    /// The body of the batch being delivered (the batch ending at the cursor), kept for
    /// its retries: the batch's own buffer, its lines turned into the array in place.
    pending: Option<(Cursor, Bytes)>,
}

impl Webhook {
    pub(crate) fn new(settings: WebhookSettings) -> Result<Self, LedgerError> {
        let client = http_client::client("webhook", &settings.url, settings.ca_file.as_deref())?;
        Ok(Webhook {
            settings,
            client,
            pending: None,
        })
    }

    /// POSTs `[line,line,...]`: the spool's lines (each ending in `\n`) sent as they
    /// are, their newlines turned into the array's commas. The batch's buffer becomes the
    /// body (no copy); it is handed back to the batch once the batch is settled, delivered
    /// or refused for good, and kept for the next attempt when the failure is retryable.
    pub(crate) async fn deliver(&mut self, batch: &mut Batch) -> Result<(), DeliveryError> {
        let lines = match self.pending.take() {
            Some((next, lines)) if next == batch.next => lines,
            _ => {
                let mut lines = std::mem::take(&mut batch.bytes);
                array_after_bracket(&mut lines);
                Bytes::from(lines)
            }
        };
        let outcome = self.post(lines.clone()).await;
        if matches!(outcome, Err(DeliveryError::Retryable(_))) {
            self.pending = Some((batch.next, lines));
        } else {
            batch.bytes = reclaim(lines);
        }
        outcome
    }

    async fn post(&self, lines: Bytes) -> Result<(), DeliveryError> {
        let request = http::Request::post(self.settings.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SCHEMA_HEADER, SCHEMA)
            .body(ArrayBody::new(lines))
            .map_err(|error| DeliveryError::Permanent(error.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            // Read (and discard) the body so the connection can be reused.
            let _ = response.into_body().collect().await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        };
        match tokio::time::timeout(self.settings.timeout, exchange).await {
            Err(_) => Err(DeliveryError::Retryable(format!(
                "no response within {:?}",
                self.settings.timeout
            ))),
            Ok(Err(error)) => Err(DeliveryError::Retryable(error.to_string())),
            Ok(Ok(status)) => classify_status(status),
        }
    }
}

/// The buffer behind `lines` when hyper has dropped its copies (it has once the response
/// arrived, the request being sent whole by then); an empty one otherwise.
fn reclaim(lines: Bytes) -> Vec<u8> {
    lines.try_into_mut().map(Vec::from).unwrap_or_default()
}

/// Turns `a\nb\nc\n` into `a,b,c]` in place, the array without its `[` (which
/// [`ArrayBody`] sends first): a JSON line never holds a raw newline, so every newline
/// ends an entry. No lines become `]`.
fn array_after_bracket(lines: &mut Vec<u8>) {
    let mut from = 0;
    while let Some(newline) = memchr::memchr(b'\n', &lines[from..]) {
        lines[from + newline] = b',';
        from += newline + 1;
    }
    match lines.last_mut() {
        Some(last) if *last == b',' => *last = b']',
        _ => lines.push(b']'),
    }
}

/// A webhook body: `[`, then the batch's buffer as [`array_after_bracket`] left it. Two
/// frames, so the batch is not copied behind a bracket; its exact length lets hyper send
/// a `Content-Length`.
pub(crate) struct ArrayBody {
    bracket_sent: bool,
    rest: Option<Bytes>,
}

impl ArrayBody {
    fn new(rest: Bytes) -> Self {
        ArrayBody {
            bracket_sent: false,
            rest: Some(rest),
        }
    }
}

impl http_body::Body for ArrayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.bracket_sent {
            self.bracket_sent = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"[")))));
        }
        Poll::Ready(self.rest.take().map(|rest| Ok(Frame::data(rest))))
    }

    fn is_end_stream(&self) -> bool {
        self.bracket_sent && self.rest.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.as_ref().map_or(0, Bytes::len);
        SizeHint::with_exact((rest + usize::from(!self.bracket_sent)) as u64)
    }
}

/// 2xx delivered; 408, 429 and 5xx retried; any other status refused for good.
pub(crate) fn classify_status(status: http::StatusCode) -> Result<(), DeliveryError> {
    if status.is_success() {
        Ok(())
    } else if status.is_server_error()
        || status == http::StatusCode::REQUEST_TIMEOUT
        || status == http::StatusCode::TOO_MANY_REQUESTS
    {
        Err(DeliveryError::Retryable(format!(
            "receiver answered {status}"
        )))
    } else {
        Err(DeliveryError::Permanent(format!(
            "receiver answered {status}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body;

    use super::*;

    /// The whole body [`ArrayBody`] sends for `lines`, and the size it announced.
    fn body_of(lines: &[u8]) -> (Vec<u8>, u64) {
        let mut rest = lines.to_vec();
        array_after_bracket(&mut rest);
        let body = ArrayBody::new(Bytes::from(rest));
        let announced = body.size_hint().exact().expect("an exact size");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let collected = runtime.block_on(body.collect()).unwrap().to_bytes();
        (collected.to_vec(), announced)
    }

    #[test]
    fn spool_lines_become_one_json_array_of_the_announced_length() {
        let cases: [(&[u8], &[u8]); 3] = [
            (b"{\"a\":1}\n", b"[{\"a\":1}]"),
            (
                b"{\"a\":\"x\\ny\"}\n{\"b\":[1,2]}\n{}\n",
                br#"[{"a":"x\ny"},{"b":[1,2]},{}]"#,
            ),
            (b"", b"[]"),
        ];
        for (lines, expected) in cases {
            let (body, announced) = body_of(lines);
            assert_eq!(body, expected);
            assert_eq!(announced, body.len() as u64);
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                parsed.as_array().unwrap().len(),
                memchr::memchr_iter(b'\n', lines).count()
            );
        }
    }

    #[test]
    fn a_sent_body_gives_its_buffer_back_once_unshared() {
        for lines in [&b"{\"a\":1}\n{\"b\":2}\n"[..], b"{}\n"] {
            let mut buffer = lines.to_vec();
            array_after_bracket(&mut buffer);
            let (address, capacity) = (buffer.as_ptr(), buffer.capacity());
            let sent = Bytes::from(buffer);
            let held_by_hyper = sent.clone();
            assert!(
                reclaim(sent.clone()).is_empty(),
                "still shared: nothing to take back"
            );
            drop(held_by_hyper);
            let back = reclaim(sent);
            assert_eq!((back.as_ptr(), back.capacity()), (address, capacity));
        }
    }
}
