//! The record of one request as the request path fills it in, phase by phase, and hands
//! it to the [`super::Recorder`] when the request ends.
//!
//! Owns: the fields and how a record is started and moved out. Does not own: their
//! ledger schema (`record::entry_of` turns an exchange into a `pathgate.ledger/v1` entry).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::header;
use http::{HeaderMap, Method};

use super::body::StreamEnd;
use super::identity::ClientIdentity;
use super::AuthMode;
use crate::classify::{Analysis, RequestInfo};
use crate::policy::Decision;
use crate::status::{ErrorKind, Side};
use crate::trace::TraceId;

/// The complete record of one request, handed to the [`super::Recorder`] when it ends.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub trace_id: TraceId,
    /// The client's address.
    pub peer: SocketAddr,
    pub session: String,
    pub identity: Arc<ClientIdentity>,
    pub auth_mode: AuthMode,
    pub started_at: SystemTime,
    pub duration: std::time::Duration,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub forwarded_query: Option<String>,
    pub info: Option<Arc<RequestInfo>>,
    /// Boxed: the exchange is moved several times per request, and most reads' analysis
    /// is small next to its inline size.
    pub analysis: Option<Box<Analysis>>,
    pub decision: Option<Decision>,
    pub status_code: u16,
    /// The `reason` of a `Status` response body, where one was seen.
    pub status_reason: Option<String>,
    /// The `Audit-Id` the apiserver answered with.
    pub audit_id: Option<String>,
    pub object_uid: Option<String>,
    pub object_resource_version: Option<String>,
    pub object_generation: Option<i64>,
    /// `metadata.name` and `metadata.namespace` of the answer (a `generateName` create is
    /// named only there).
    pub object_name: Option<String>,
    pub object_namespace: Option<String>,
    /// The image of the target as fetched before forwarding (`target.pre_image`).
    pub pre_image: Option<crate::ledger::images::ImageRecord>,
    /// The image of the apiserver's answer (`post_image`).
    pub post_image: Option<crate::ledger::images::ImageRecord>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub watch_events: Option<u64>,
    /// How the response ended (`response.end`).
    pub stream_end: Option<StreamEnd>,
    /// For an answer pathgate reads before relaying: read whole (`true`) or relayed unread.
    pub body_inspected: Option<bool>,
    /// Which side failed and why, for pathgate's own errors.
    pub error: Option<(Side, ErrorKind, String)>,
    /// The response was an upgrade (exec, attach, port-forward).
    pub upgraded: bool,
    /// The gate's session-memory key for this request. `None` on a decided request (with
    /// `decision`) means the gate deferred it: a read without body or `Impersonate-*`
    /// headers, whose fingerprint `info`, `query` and `content_type` give
    /// ([`crate::policy::Fingerprint::without_body`]) when the session or the ledger needs it.
    pub fingerprint: Option<crate::policy::Fingerprint>,
    /// What the gate's GET of the target showed before forwarding.
    pub target: Option<crate::ledger::TargetRecord>,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// pathgate answered itself (a denial, 413, 503...) instead of relaying the apiserver.
    pub answered_by_pathgate: bool,
    /// Effect scope: leaf paths that changed, when measured.
    pub effect_paths: Option<Vec<String>>,
    /// A redacted copy of the mutation body (body capture on).
    pub captured_body: Option<crate::ledger::CapturedBody>,
    /// `Warning` values pathgate added to the response.
    pub warnings: Vec<String>,
    /// A watch's place on its upstream lane, released with the record.
    pub upstream_stream: Option<crate::upstream::StreamSlot>,
}

/// The identity of a record whose client is not resolved yet: one shared empty value, so
/// that starting a record (twice per request, see [`Exchange::take`]) allocates none.
fn unresolved_identity() -> Arc<ClientIdentity> {
    static UNRESOLVED: std::sync::LazyLock<Arc<ClientIdentity>> =
        std::sync::LazyLock::new(Arc::default);
    Arc::clone(&UNRESOLVED)
}

impl Exchange {
    /// The record of a request that has just arrived.
    pub(super) fn new(
        trace_id: TraceId,
        peer: SocketAddr,
        auth_mode: AuthMode,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) -> Exchange {
        Exchange {
            trace_id,
            peer,
            session: String::new(),
            identity: unresolved_identity(),
            auth_mode,
            started_at: SystemTime::now(),
            duration: Default::default(),
            method: method.as_str().to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            forwarded_query: None,
            info: None,
            analysis: None,
            decision: None,
            status_code: 0,
            status_reason: None,
            audit_id: None,
            object_uid: None,
            object_resource_version: None,
            object_generation: None,
            object_name: None,
            object_namespace: None,
            pre_image: None,
            post_image: None,
            bytes_in: 0,
            bytes_out: 0,
            watch_events: None,
            stream_end: None,
            body_inspected: None,
            error: None,
            upgraded: false,
            fingerprint: None,
            target: None,
            warnings: Vec::new(),
            upstream_stream: None,
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            answered_by_pathgate: false,
            effect_paths: None,
            captured_body: None,
        }
    }

    /// Moves the record out (to whoever finishes it, e.g. a streamed body's end), leaving
    /// an empty one with the same trace id behind.
    pub(super) fn take(&mut self) -> Exchange {
        let empty = Exchange::new(
            self.trace_id,
            self.peer,
            self.auth_mode,
            &Method::GET,
            &http::Uri::from_static("/"),
            &HeaderMap::new(),
        );
        std::mem::replace(self, empty)
    }
}
