//! Watch-event latency on the real control plane: two watches on the ConfigMaps of a fresh
//! namespace, one straight to kube-apiserver and one through pathgate, while ConfigMaps are
//! created one by one (straight to the apiserver, so both watches see the same events).
//! For each event: the delay from the create call returning to the event arriving on each
//! watch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use crate::client::{self, HttpsClient};

/// Where a watch connects.
pub struct WatchTarget {
    pub base_url: String,
    pub client: HttpsClient,
}

/// Per-event delays of one watch, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Delays {
    /// Create answered → event received. Signed: the apiserver sends the event and the
    /// create's answer at about the same time, so the event often arrives first.
    pub after_answer: Vec<i64>,
    /// Create sent → event received (never negative).
    pub after_send: Vec<i64>,
}

/// The delays of both watches for the same events.
#[derive(Debug, Clone, Default)]
pub struct WatchDelays {
    pub direct: Delays,
    pub through_pathgate: Delays,
}

/// Creates `warmup + events` ConfigMaps and returns the delays of the last `events`.
pub async fn measure(
    direct: WatchTarget,
    through_pathgate: WatchTarget,
    token: &str,
    warmup: usize,
    events: usize,
) -> anyhow::Result<WatchDelays> {
    let namespace = format!("bench-watch-{}", std::process::id());
    let (status, body) = post(
        &direct,
        token,
        "/api/v1/namespaces",
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
    )
    .await?;
    if status != StatusCode::CREATED {
        bail!(
            "creating namespace {namespace}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let collection = format!("/api/v1/namespaces/{namespace}/configmaps");
    let (status, body) = client::get(
        &direct.client,
        &format!("{}{collection}", direct.base_url),
        token,
    )
    .await?;
    if status != StatusCode::OK {
        bail!("listing {collection}: {status}");
    }
    let list: serde_json::Value = serde_json::from_slice(&body)?;
    let resource_version = list["metadata"]["resourceVersion"]
        .as_str()
        .context("the list has no resourceVersion")?
        .to_string();

    let watch_path = format!("{collection}?watch=true&resourceVersion={resource_version}");
    let (direct_tx, mut direct_rx) = mpsc::unbounded_channel();
    let (proxied_tx, mut proxied_rx) = mpsc::unbounded_channel();
    let direct_watch = tokio::spawn(watch(
        direct.client.clone(),
        format!("{}{watch_path}", direct.base_url),
        token.to_string(),
        direct_tx,
    ));
    let proxied_watch = tokio::spawn(watch(
        through_pathgate.client.clone(),
        format!("{}{watch_path}", through_pathgate.base_url),
        token.to_string(),
        proxied_tx,
    ));

    let mut delays = WatchDelays::default();
    let mut direct_seen: HashMap<String, Instant> = HashMap::new();
    let mut proxied_seen: HashMap<String, Instant> = HashMap::new();
    for index in 0..warmup + events {
        let name = format!("event-{index:03}");
        let sent = Instant::now();
        let (status, body) = post(
            &direct,
            token,
            &collection,
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"index": index.to_string()}}),
        )
        .await?;
        let answered = Instant::now();
        if status != StatusCode::CREATED {
            bail!(
                "creating ConfigMap {name}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let deadline = answered + Duration::from_secs(10);
        let direct_at =
            arrival(&name, &mut direct_seen, &mut direct_rx, deadline, "direct").await?;
        let proxied_at = arrival(
            &name,
            &mut proxied_seen,
            &mut proxied_rx,
            deadline,
            "through pathgate",
        )
        .await?;
        if index >= warmup {
            for (watch, at) in [
                (&mut delays.direct, direct_at),
                (&mut delays.through_pathgate, proxied_at),
            ] {
                watch.after_answer.push(signed_micros(at, answered));
                watch.after_send.push(signed_micros(at, sent));
            }
        }
    }
    direct_watch.abort();
    proxied_watch.abort();
    // The namespace stays Terminating (no controller-manager); the cluster is discarded.
    let _ = delete(&direct, token, &format!("/api/v1/namespaces/{namespace}")).await;
    Ok(delays)
}

fn signed_micros(event: Instant, answered: Instant) -> i64 {
    if event >= answered {
        event.duration_since(answered).as_micros() as i64
    } else {
        -(answered.duration_since(event).as_micros() as i64)
    }
}

/// Waits until the watch reported `name` (it may have before the create answered).
async fn arrival(
    name: &str,
    seen: &mut HashMap<String, Instant>,
    events: &mut mpsc::UnboundedReceiver<anyhow::Result<(String, Instant)>>,
    deadline: Instant,
    which: &str,
) -> anyhow::Result<Instant> {
    loop {
        if let Some(at) = seen.remove(name) {
            return Ok(at);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(Ok((event_name, at)))) => {
                seen.insert(event_name, at);
            }
            Ok(Some(Err(error))) => return Err(error.context(format!("the {which} watch"))),
            Ok(None) => bail!("the {which} watch ended"),
            Err(_) => bail!("no ADDED event for {name} on the {which} watch within 10 s"),
        }
    }
}

/// Streams a watch, timestamping each ADDED event as its line completes.
async fn watch(
    client: HttpsClient,
    url: String,
    token: String,
    events: mpsc::UnboundedSender<anyhow::Result<(String, Instant)>>,
) {
    let result = async {
        let request = Request::get(&url)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))?;
        let response = client
            .request(request)
            .await
            .with_context(|| format!("opening {url}"))?;
        if response.status() != StatusCode::OK {
            bail!("{url}: {}", response.status());
        }
        let ended = events_of(response.into_body(), |event, at| {
            if event["type"] != "ADDED" {
                return Ok(true);
            }
            let name = event["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Ok(events.send(Ok((name, at))).is_ok())
        })
        .await?;
        if !ended {
            return Ok(());
        }
        bail!("{url}: the watch ended")
    }
    .await;
    if let Err(error) = result {
        let _ = events.send(Err(error));
    }
}

async fn post(
    target: &WatchTarget,
    token: &str,
    path: &str,
    object: serde_json::Value,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}{path}", target.base_url))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(object.to_string())))?;
    client::send(&target.client, request).await
}

async fn delete(
    target: &WatchTarget,
    token: &str,
    path: &str,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let request = Request::builder()
        .method(Method::DELETE)
        .uri(format!("{}{path}", target.base_url))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    client::send(&target.client, request).await
}

/// Reads a watch's answer line by line, giving each event and when its line completed to
/// `on_event` until it returns `false` (then `Ok(false)`) or the stream ends (`Ok(true)`).
pub async fn events_of(
    mut body: hyper::body::Incoming,
    mut on_event: impl FnMut(serde_json::Value, Instant) -> anyhow::Result<bool>,
) -> anyhow::Result<bool> {
    let mut pending = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let at = Instant::now();
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line = pending.split_to(end + 1);
            if !on_event(serde_json::from_slice(&line)?, at)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}
