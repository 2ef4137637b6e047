//! The webhook sink: batches of entries POSTed as one JSON array.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::http_client::{self, SinkClient};
use super::{DeliveryError, RetrySettings};
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
    client: SinkClient,
    /// The last batch's body, taken back from hyper once sent, so the next body is
    /// written into memory already in use rather than a fresh allocation.
    body: Vec<u8>,
}

impl Webhook {
    pub(crate) fn new(settings: WebhookSettings) -> Result<Self, LedgerError> {
        let client = http_client::client("webhook", &settings.url, settings.ca_file.as_deref())?;
        Ok(Webhook {
            settings,
            client,
            body: Vec::new(),
        })
    }

    /// POSTs `[line, line, ...]`: the spool's lines (`lines`, each ending in `\n`) sent
    /// as they are, their newlines turned into the array's commas.
    pub(crate) async fn deliver(&mut self, lines: &[u8]) -> Result<(), DeliveryError> {
        let mut body = std::mem::take(&mut self.body);
        json_array(lines, &mut body);
        let body = Bytes::from(body);
        let request = http::Request::post(self.settings.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SCHEMA_HEADER, SCHEMA)
            .body(Full::new(body.clone()))
            .map_err(|error| DeliveryError::Permanent(error.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            // Read (and discard) the body so the connection can be reused.
            let _ = response.into_body().collect().await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        };
        let outcome = tokio::time::timeout(self.settings.timeout, exchange).await;
        self.body = reclaim(body);
        let status = match outcome {
            Err(_) => {
                return Err(DeliveryError::Retryable(format!(
                    "no response within {:?}",
                    self.settings.timeout
                )))
            }
            Ok(Err(error)) => return Err(DeliveryError::Retryable(error.to_string())),
            Ok(Ok(status)) => status,
        };
        classify_status(status)
    }
}

/// The buffer behind `body` when hyper has dropped its copies (it has once the response
/// arrived, the request being sent whole by then); an empty one otherwise.
fn reclaim(body: Bytes) -> Vec<u8> {
    body.try_into_mut().map(Vec::from).unwrap_or_default()
}

/// `[a,b,c]` from `a\nb\nc\n` into `body` (cleared first): a JSON line never holds a raw
/// newline, so every newline ends an entry.
fn json_array(lines: &[u8], body: &mut Vec<u8>) {
    body.clear();
    body.reserve(lines.len() + 2);
    body.push(b'[');
    body.extend_from_slice(lines);
    for newline in memchr::memchr_iter(b'\n', lines) {
        body[newline + 1] = b',';
    }
    match body.last_mut() {
        Some(last) if *last == b',' => *last = b']',
        _ => body.push(b']'),
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
    use super::*;

    fn array(lines: &[u8]) -> Vec<u8> {
        let mut body = b"left over from the last batch".to_vec();
        json_array(lines, &mut body);
        body
    }

    #[test]
    fn spool_lines_become_one_json_array() {
        assert_eq!(array(b"{\"a\":1}\n"), b"[{\"a\":1}]");
        let body = array(b"{\"a\":\"x\\ny\"}\n{\"b\":[1,2]}\n{}\n");
        assert_eq!(body, br#"[{"a":"x\ny"},{"b":[1,2]},{}]"#);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 3);
        assert_eq!(array(b""), b"[]");
    }

    #[test]
    fn a_sent_body_gives_its_buffer_back_once_unshared() {
        for lines in [&b"{\"a\":1}\n{\"b\":2}\n"[..], b"{}\n"] {
            let mut body = Vec::new();
            json_array(lines, &mut body);
            let (address, capacity) = (body.as_ptr(), body.capacity());
            let sent = Bytes::from(body);
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
