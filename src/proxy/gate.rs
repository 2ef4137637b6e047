//! The gate between classification and forwarding: the [`Gate`] the request path asks,
//! and its production implementation ([`PolicyGate`]): analysis, facts, the policy
//! decision, the impersonation guard, and the rewrites a decision asks for, applied to the
//! query and body.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http_body_util::BodyExt;

use super::error::PathError;
use super::exchange::Exchange;
use super::identity::ClientIdentity;
use super::AuthMode;
use crate::classify::{self, Analysis, RequestInfo};
use crate::config::PolicyHandle;
use crate::ledger::TargetRecord;
use crate::policy::{
    self, Action, EffectBasis, Facts, Fingerprint, LazyContext, LazyFingerprint, Rehearsal,
    Rewrite, SessionLimits, SessionStore, TargetFact,
};
use crate::status::full_body;
use crate::trace::TraceId;
use crate::upstream::Upstream;
use http::{HeaderMap, Method};

/// What the gate is asked about one request.
pub struct GateRequest<'a> {
    pub trace_id: TraceId,
    pub session: &'a str,
    pub identity: &'a ClientIdentity,
    pub info: &'a RequestInfo,
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    /// The `Authorization` value the upstream will see (passthrough: the client's own),
    /// used when the gate fetches facts.
    pub upstream_authorization: Option<&'a HeaderValue>,
}

/// The gate's answer: deny, or forward (possibly rewritten) with warnings.
#[derive(Debug, Default)]
pub struct GateOutcome {
    pub analysis: Option<Box<Analysis>>,
    pub decision: Option<policy::Decision>,
    /// `Some`: answer with this refusal instead of forwarding.
    pub deny: Option<PathError>,
    /// `Warning` header values (`299 pathgate "..."`).
    pub warnings: Vec<String>,
    /// A rewritten query string to forward instead of the client's.
    pub query: Option<String>,
    /// A rewritten body to forward instead of the client's.
    pub body: Option<Bytes>,
    /// The request's session-memory key, kept for [`Gate::observe_response`]; `None` with
    /// a decision when deferred (see [`Exchange::fingerprint`]).
    pub fingerprint: Option<crate::policy::Fingerprint>,
    /// What the effect of a patch or update is measured against once it is answered.
    pub effect: EffectBasis,
    /// The target to fetch as the pre-image of effect scope before forwarding
    /// ([`Gate::fetch_pre_image`]): no rule needed it to decide, so the fetch can overlap
    /// the intent's fsync, or the request itself when it is a dry run.
    pub pre_image_path: Option<String>,
    /// The request is forwarded as a server dry run (the client's, or rehearse mode's): it
    /// changes nothing, so its pre-image can be fetched while it is sent.
    pub dry_run: bool,
    /// What the gate's GET of the target showed, for the ledger's `target`.
    pub target: Option<crate::ledger::TargetRecord>,
    /// The body of that GET (the object at [`policy::target_path`]), kept for the
    /// pre-image store so the object is not fetched twice.
    pub target_body: Option<Bytes>,
}

/// What [`Gate::fetch_pre_image`] learned: the effect basis, the ledger's `target`, and
/// the object's body as the apiserver sent it (for the pre-image store).
#[derive(Debug, Default)]
pub struct PreImage {
    pub effect: EffectBasis,
    pub target: Option<TargetRecord>,
    pub body: Option<Bytes>,
}

/// Classification and policy, as seen by the request path.
pub trait Gate: Send + Sync {
    /// Decides what to do with one request.
    fn evaluate<'a>(
        &'a self,
        request: GateRequest<'a>,
    ) -> Pin<Box<dyn std::future::Future<Output = GateOutcome> + Send + 'a>>;

    /// Learns the apiserver's answer to a forwarded request (dry-run successes, failures
    /// for retry loops, 409 on create); returns extra `Warning` values for the response.
    fn observe_response(&self, _exchange: &mut Exchange) -> Vec<String> {
        Vec::new()
    }

    /// Learns how a forwarded request's answer ended, once it has (a read's bytes count
    /// against its session's `budgets.read_bytes`).
    fn observe_end(&self, _exchange: &Exchange) {}

    /// Fetches [`GateOutcome::pre_image_path`] with the upstream `authorization`: the
    /// effect basis and what the ledger keeps of the target.
    fn fetch_pre_image<'a>(
        &'a self,
        _path: &'a str,
        _authorization: Option<&'a HeaderValue>,
        _trace_id: TraceId,
    ) -> Pin<Box<dyn std::future::Future<Output = PreImage> + Send + 'a>> {
        Box::pin(async { PreImage::default() })
    }

    /// Learns the measured effect of a successful patch or update (`exchange.effect_paths`,
    /// `after` its answer): a dry run's effect is remembered for the same request sent for
    /// real, and told to the client.
    fn observe_effect(
        &self,
        _exchange: &Exchange,
        _after: &serde_json::Value,
    ) -> Option<Rehearsed> {
        None
    }
}

/// What a successful dry run of a patch or update taught its session.
#[derive(Debug)]
pub struct Rehearsed {
    /// The `Warning` value telling the client the effect.
    pub warning: String,
    /// The effect digest of the dry run's answer ([`policy::effect_digest`]): the real
    /// request's answer has the same when the object did not change in between.
    pub post_image: [u8; 32],
}

/// The header a client that can add headers uses to present a confirmation token.
pub const CONFIRM_HEADER: HeaderName = HeaderName::from_static("x-pathgate-confirm");

/// Allows everything without analysis: for tests that exercise forwarding alone.
#[derive(Debug, Default)]
pub struct AllowAll;

impl Gate for AllowAll {
    fn evaluate<'a>(
        &'a self,
        _request: GateRequest<'a>,
    ) -> Pin<Box<dyn std::future::Future<Output = GateOutcome> + Send + 'a>> {
        Box::pin(async { GateOutcome::default() })
    }
}

/// The production gate: classify, fetch the facts a rule needs, decide, rewrite.
pub struct PolicyGate {
    policy: PolicyHandle,
    sessions: SessionStore,
    upstream: Arc<Upstream>,
    auth: AuthMode,
}

impl PolicyGate {
    pub fn new(policy: PolicyHandle, upstream: Arc<Upstream>, auth: AuthMode) -> Self {
        Self {
            policy,
            sessions: SessionStore::new(SessionLimits::default()),
            upstream,
            auth,
        }
    }

    /// GETs the request's target object ([`get`]): the fact, and the body it was read
    /// from. A failed fetch is `Unknown`, never a guess.
    async fn fetch_target(
        &self,
        path: &str,
        authorization: Option<&HeaderValue>,
        trace_id: TraceId,
    ) -> (TargetFact, Option<Bytes>) {
        match get(&self.upstream, path, authorization, trace_id).await {
            Fetched::Absent => (TargetFact::Missing, None),
            Fetched::Failed => (TargetFact::Unknown, None),
            Fetched::Found(body) => match serde_json::from_slice(&body) {
                Ok(object) => (TargetFact::Present(object), Some(body)),
                Err(_) => (TargetFact::Unknown, None),
            },
        }
    }
}

/// What a fact-finding GET returned.
#[derive(Debug, Clone)]
pub(super) enum Fetched {
    /// 200, with its body.
    Found(Bytes),
    /// 404.
    Absent,
    /// Anything else: another status, a timeout, a broken connection.
    Failed,
}

/// GETs `path_and_query` as JSON: with the client's credentials in passthrough mode
/// (pathgate must not reveal what the client could not read), pathgate's own otherwise.
pub(super) async fn get(
    upstream: &Upstream,
    path_and_query: &str,
    authorization: Option<&HeaderValue>,
    trace_id: TraceId,
) -> Fetched {
    let mut request = http::Request::get(upstream.uri_for(path_and_query))
        .header(header::ACCEPT, "application/json")
        .body(full_body(Bytes::new()))
        .expect("a GET of a path built from request info");
    if let Some(value) = authorization {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, value.clone());
    }
    // The fact-finding GET is findable in the audit log as `<trace id>-facts`; the
    // trace id itself stays unique to the request it names.
    if let Ok(value) = HeaderValue::from_str(&format!("{}-facts", trace_id.to_hex())) {
        request
            .headers_mut()
            .insert(crate::trace::AUDIT_ID_HEADER, value);
    }
    let response =
        tokio::time::timeout(Duration::from_secs(10), upstream.client().request(request)).await;
    let Ok(Ok(response)) = response else {
        return Fetched::Failed;
    };
    match response.status().as_u16() {
        404 => Fetched::Absent,
        200 => match tokio::time::timeout(Duration::from_secs(10), response.collect()).await {
            Ok(Ok(collected)) => Fetched::Found(collected.to_bytes()),
            _ => Fetched::Failed,
        },
        _ => Fetched::Failed,
    }
}

/// Bodies larger than these are analysed (and fingerprinted) on the blocking pool rather
/// than on the event loop, whose workers serve every other connection. Reading is linear in
/// the body's size (BENCHMARKS.md, "Reading YAML bodies"): about 5 ns a byte for JSON, up to
/// 100 ns for flow-style YAML (110 KB in 9.8 ms, release, loaded 2-core machine), so a
/// 3 MiB YAML body would hold a worker for a third of a second. At these sizes the inline
/// read costs at most ~0.4 ms (YAML) or ~0.1 ms (JSON); the handoff, a thread wake-up, costs
/// microseconds.
const INLINE_ANALYSIS_MAX_BYTES: usize = 16 * 1024;
const INLINE_YAML_ANALYSIS_MAX_BYTES: usize = 4 * 1024;

/// The request's analysis and fingerprint, off the event loop for a large body. No
/// fingerprint when it is deferred ([`defers_fingerprint`]).
async fn analyse(
    info: &RequestInfo,
    query: Option<&str>,
    headers: &http::HeaderMap,
    body: &Bytes,
) -> (Analysis, Option<Fingerprint>) {
    let inline_max = if content_type(headers).is_some_and(|ct| ct.contains("yaml")) {
        INLINE_YAML_ANALYSIS_MAX_BYTES
    } else {
        INLINE_ANALYSIS_MAX_BYTES
    };
    if body.len() <= inline_max {
        return analyse_now(info, query, headers, body);
    }
    let (info, query, headers, body) = (
        info.clone(),
        query.map(str::to_owned),
        headers.clone(),
        body.clone(),
    );
    tokio::task::spawn_blocking(move || analyse_now(&info, query.as_deref(), &headers, &body))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn analyse_now(
    info: &RequestInfo,
    query: Option<&str>,
    headers: &http::HeaderMap,
    body: &Bytes,
) -> (Analysis, Option<Fingerprint>) {
    let analysis = classify::analyse(info, query, content_type(headers), body);
    let fingerprint = (!defers_fingerprint(info, headers, body))
        .then(|| Fingerprint::of(info, &analysis, query, headers, body));
    (analysis, fingerprint)
}

/// A read without a body and without `Impersonate-*` headers, whose `Content-Type` (if
/// any) is text, has its fingerprint computed only when its session needs it
/// ([`SessionStore::decide_lazily`]): most reads never do, and the hash is a sizeable part
/// of what a small read costs. What the exchange keeps (info, query, `Content-Type`) is
/// then enough to compute it later ([`Fingerprint::without_body`]), the same as
/// [`Fingerprint::of`] would have.
fn defers_fingerprint(info: &RequestInfo, headers: &http::HeaderMap, body: &[u8]) -> bool {
    !info.is_mutation()
        && body.is_empty()
        && !super::headers::has_impersonation(headers)
        && headers
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v.to_str().is_ok())
}

fn content_type(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// Applies rewrites to the query string, returning the new query.
pub fn rewrite_query(query: Option<&str>, rewrites: &[Rewrite]) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for rewrite in rewrites {
        match rewrite {
            Rewrite::AddDryRun => {
                pairs.retain(|(k, _)| k != "dryRun");
                pairs.push(("dryRun".into(), "All".into()));
            }
            Rewrite::SetGracePeriod { to, .. } => {
                pairs.retain(|(k, _)| k != "gracePeriodSeconds");
                pairs.push(("gracePeriodSeconds".into(), to.to_string()));
            }
            Rewrite::AddLimit { limit } => {
                pairs.retain(|(k, _)| k != "limit");
                pairs.push(("limit".into(), limit.to_string()));
            }
        }
    }
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Applies rewrites to a DeleteOptions body (the body wins over the query in the
/// apiserver, so both must agree). `Ok(None)` when the body needs no change (no body, or
/// no rewrite that concerns it). `Err` when it needs one but is not a JSON object
/// (protobuf, CBOR, anything else): forwarding it unchanged would silently drop the
/// rewrite, so the caller refuses the request instead.
pub fn rewrite_delete_body(body: &[u8], rewrites: &[Rewrite]) -> Result<Option<Bytes>, String> {
    let concerns_body = rewrites
        .iter()
        .any(|r| matches!(r, Rewrite::AddDryRun | Rewrite::SetGracePeriod { .. }));
    if body.is_empty() || !concerns_body {
        return Ok(None);
    }
    let mut options: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| "the DeleteOptions body is not JSON".to_string())?;
    let object = options
        .as_object_mut()
        .ok_or_else(|| "the DeleteOptions body is not a JSON object".to_string())?;
    for rewrite in rewrites {
        match rewrite {
            Rewrite::AddDryRun => {
                object.insert("dryRun".into(), serde_json::json!(["All"]));
            }
            Rewrite::SetGracePeriod { to, .. } => {
                object.insert("gracePeriodSeconds".into(), serde_json::json!(to));
            }
            Rewrite::AddLimit { .. } => {}
        }
    }
    Ok(Some(Bytes::from(
        serde_json::to_vec(&options).expect("JSON value serialises"),
    )))
}

/// Applies a grace-period rewrite to an eviction's `deleteOptions` (where the apiserver reads
/// the pod delete's options from). `Ok(None)` when no rewrite concerns the body (a dry run
/// goes into the query, which the apiserver merges into `deleteOptions`). `Err` when the body
/// is not a JSON object (protobuf, CBOR): the caller refuses rather than forward zero grace.
pub fn rewrite_eviction_body(body: &[u8], rewrites: &[Rewrite]) -> Result<Option<Bytes>, String> {
    let grace = rewrites.iter().find_map(|r| match r {
        Rewrite::SetGracePeriod { to, .. } => Some(*to),
        _ => None,
    });
    let Some(grace) = grace else {
        return Ok(None);
    };
    let mut eviction: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the eviction body is not JSON".to_string())?;
    let object = eviction
        .as_object_mut()
        .ok_or_else(|| "the eviction body is not a JSON object".to_string())?;
    let options = object
        .entry("deleteOptions")
        .or_insert_with(|| serde_json::json!({}));
    if options.is_null() {
        *options = serde_json::json!({});
    }
    options
        .as_object_mut()
        .ok_or_else(|| "the eviction's deleteOptions is not a JSON object".to_string())?
        .insert("gracePeriodSeconds".into(), serde_json::json!(grace));
    Ok(Some(Bytes::from(
        serde_json::to_vec(&eviction).expect("JSON value serialises"),
    )))
}

/// What a rewrite sets, for the message of a refusal when it cannot be applied.
fn rewrite_summary(rewrites: &[Rewrite]) -> String {
    rewrites
        .iter()
        .filter_map(|rewrite| match rewrite {
            Rewrite::AddDryRun => Some("dryRun=All (rehearse mode)".to_string()),
            Rewrite::SetGracePeriod { to, .. } => {
                Some(format!("gracePeriodSeconds={to} (PG005 zero-grace-delete)"))
            }
            Rewrite::AddLimit { .. } => None,
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

fn dry_run_forwarded(analysis: Option<&Analysis>, decision: Option<&policy::Decision>) -> bool {
    analysis.is_some_and(|a| a.dry_run)
        || decision.is_some_and(|d| d.rewrites.contains(&Rewrite::AddDryRun))
}

impl PolicyGate {
    /// The request's analysis, the facts its rules need, the decision, and the rewrites
    /// applied to the query and body.
    async fn decide(&self, request: GateRequest<'_>) -> GateOutcome {
        let info: &RequestInfo = request.info;
        let policy = self.policy.current();
        let (analysis, fingerprint) =
            analyse(info, request.query, request.headers, request.body).await;
        let deferred = || {
            let content_type = content_type(request.headers);
            Fingerprint::without_body(info, request.query, content_type)
        };
        if let Some(refusal) = &analysis.refusal {
            // A body pathgate cannot read as the apiserver would is refused in every
            // mode: forwarding it would pass what no rule could check.
            return GateOutcome {
                deny: Some(PathError::Unreadable(refusal.clone())),
                fingerprint: Some(fingerprint.unwrap_or_else(deferred)),
                analysis: Some(Box::new(analysis)),
                ..GateOutcome::default()
            };
        }
        // The session's dry run of this same request measured its effect: rules judge on it,
        // and the target need not be fetched again for effect scope (a mutation's
        // fingerprint is never deferred).
        let rehearsal = fingerprint
            .filter(|_| measures_effect(info))
            .and_then(|fingerprint| self.sessions.rehearsal(request.session, &fingerprint));
        let (facts, pre_image_path, target_body) = self
            .facts(&request, &analysis, &policy, rehearsal.as_deref())
            .await;
        let fingerprint = match fingerprint {
            Some(fingerprint) => LazyFingerprint::known(fingerprint),
            None => LazyFingerprint::deferred(&deferred),
        };
        let ctx = LazyContext {
            session: request.session,
            fingerprint: &fingerprint,
            impersonation_headers: super::headers::has_impersonation(request.headers),
            pathgate_credentials: self.auth != AuthMode::Passthrough,
            confirm_token: request
                .headers
                .get(CONFIRM_HEADER)
                .and_then(|v| v.to_str().ok()),
        };
        let now = Instant::now();
        let mut decision = self
            .sessions
            .decide_lazily(&policy, info, &analysis, &facts, &ctx, now);
        let body_rewrite = body_rewrite(&request, &mut decision);
        let mut outcome = GateOutcome {
            warnings: decision.warnings(),
            ..GateOutcome::default()
        };
        if decision.action.blocks() {
            let message = decision
                .status_message()
                .unwrap_or_else(|| "pathgate denied this request".into());
            let refusal = refusal(&decision, message);
            // A refusal is an outcome of the request too (PG015 counts repeats, not 429s).
            self.sessions.record_outcome_lazily(
                request.session,
                &fingerprint,
                refusal.status().code.as_u16(),
                analysis.dry_run,
                Duration::from_secs(policy.retry_loop.window_seconds),
                now,
            );
            outcome.deny = Some(refusal);
        } else if decision.action == Action::Rewrite && !decision.rewrites.is_empty() {
            outcome.query = Some(query_rewrite(&request, &decision.rewrites));
            outcome.body = body_rewrite;
        }
        outcome.effect = match (rehearsal, &facts.target) {
            (Some(rehearsal), _) => EffectBasis::Rehearsed(rehearsal),
            (None, TargetFact::Present(object)) if measures_effect(info) => {
                EffectBasis::PreImage(object.clone())
            }
            (None, _) => EffectBasis::Unmeasured,
        };
        outcome.target = target_record(&facts.target);
        outcome.target_body = target_body;
        outcome.pre_image_path = pre_image_path;
        outcome.dry_run = dry_run_forwarded(Some(&analysis), Some(&decision));
        // A refused read's fingerprint was computed above: its entry carries it.
        outcome.fingerprint = fingerprint.computed();
        outcome.analysis = Some(Box::new(analysis));
        outcome.decision = Some(decision);
        outcome
    }

    /// The facts the request's rules need: the effect its session's dry run measured, and
    /// its target object when a rule needs it. Also the path of the pre-image of effect
    /// scope still to fetch, when no rule needed the target and no dry run measured the
    /// effect ([`GateOutcome::pre_image_path`]), and the body of a target it fetched.
    async fn facts(
        &self,
        request: &GateRequest<'_>,
        analysis: &Analysis,
        policy: &policy::Policy,
        rehearsal: Option<&Rehearsal>,
    ) -> (Facts, Option<String>, Option<Bytes>) {
        let info = request.info;
        let mut facts = Facts {
            effect_paths: rehearsal.map(|r| r.effect_paths.clone()),
            ..Facts::default()
        };
        let pre_image = measures_effect(info) && rehearsal.is_none();
        let Some(path) = policy::target_path(info, analysis) else {
            return (facts, None, None);
        };
        if policy::needs_target(info, analysis, policy) {
            let authorization = request.upstream_authorization;
            let (target, body) = self
                .fetch_target(&path, authorization, request.trace_id)
                .await;
            facts.target = target;
            return (facts, None, body);
        }
        // No rule reads the target: the pre-image is fetched later, beside the intent.
        (facts, pre_image.then_some(path), None)
    }
}

/// A refusal's error: `429` when only a budget refuses (PG019), else `403`.
fn refusal(decision: &policy::Decision, message: String) -> PathError {
    match decision.budget_refusal() {
        Some(breach) => PathError::BudgetExceeded {
            message,
            retry_after_seconds: breach.retry_after_seconds,
        },
        None => PathError::Denied(message),
    }
}

/// What the ledger keeps of a fetched target.
fn target_record(target: &TargetFact) -> Option<TargetRecord> {
    match target {
        TargetFact::Present(object) => Some(TargetRecord::from_object(Some(object))),
        TargetFact::Missing => Some(TargetRecord::from_object(None)),
        TargetFact::Unknown => None,
    }
}

/// Patches and updates of an object (not a subresource) have their effect measured: the
/// object before (the pre-image) against the answer (see the ledger's
/// `analysis.effect_paths`).
fn measures_effect(info: &RequestInfo) -> bool {
    matches!(info.verb, classify::Verb::Patch | classify::Verb::Update)
        && info.subresource.is_empty()
}

/// The rewritten body of a DELETE or an eviction a rewrite concerns. The apiserver reads a
/// DELETE's options from its body and ignores the query then: a rewrite pathgate cannot
/// put into the body would not happen (a rehearsed delete would really delete), so the
/// decision becomes a denial naming how to send the request instead.
fn body_rewrite(request: &GateRequest<'_>, decision: &mut policy::Decision) -> Option<Bytes> {
    let info = request.info;
    let is_eviction = info.is_pod_eviction();
    let is_delete = matches!(
        info.verb,
        classify::Verb::Delete | classify::Verb::DeleteCollection
    );
    if !(is_delete || is_eviction)
        || decision.action != Action::Rewrite
        || decision.rewrites.is_empty()
    {
        return None;
    }
    let rewritten = if is_eviction {
        rewrite_eviction_body(request.body, &decision.rewrites)
    } else {
        rewrite_delete_body(request.body, &decision.rewrites)
    };
    let reason = match rewritten {
        Ok(body) => return body,
        Err(reason) => reason,
    };
    let (why, what) = if is_eviction {
        (
            "the apiserver reads the pod's grace period from the eviction body",
            "the Eviction",
        )
    } else {
        (
            "the apiserver ignores the query's options when a body is present",
            "DeleteOptions",
        )
    };
    decision.notices.push(format!(
        "pathgate must set {} before forwarding this request, but {reason} ({}), and {why}. \
         Send {what} as JSON (Content-Type: application/json).",
        rewrite_summary(&decision.rewrites),
        content_type(request.headers).unwrap_or("no Content-Type"),
    ));
    decision.action = Action::Deny;
    decision.rewrites.clear();
    None
}

/// The query with the decision's rewrites. An eviction's grace period lives in its body
/// only; the query of a POST takes CreateOptions, where a gracePeriodSeconds would mean
/// nothing.
fn query_rewrite(request: &GateRequest<'_>, rewrites: &[Rewrite]) -> String {
    let is_eviction = request.info.is_pod_eviction();
    let query_rewrites: Vec<Rewrite> = rewrites
        .iter()
        .filter(|r| !(is_eviction && matches!(r, Rewrite::SetGracePeriod { .. })))
        .cloned()
        .collect();
    rewrite_query(request.query, &query_rewrites)
}

impl Gate for PolicyGate {
    fn evaluate<'a>(
        &'a self,
        request: GateRequest<'a>,
    ) -> Pin<Box<dyn std::future::Future<Output = GateOutcome> + Send + 'a>> {
        Box::pin(self.decide(request))
    }

    fn observe_response(&self, exchange: &mut Exchange) -> Vec<String> {
        let (Some(info), Some(analysis), Some(decision)) = (
            exchange.info.as_ref(),
            exchange.analysis.as_deref(),
            exchange.decision.as_mut(),
        ) else {
            return Vec::new();
        };
        // A decided request without a fingerprint is a read whose fingerprint the gate
        // deferred: computed here only if the session memory needs it.
        let deferred = || {
            let content_type = exchange.content_type.as_deref();
            Fingerprint::without_body(info, exchange.query.as_deref(), content_type)
        };
        let fingerprint = match exchange.fingerprint {
            Some(fingerprint) => LazyFingerprint::known(fingerprint),
            None => LazyFingerprint::deferred(&deferred),
        };
        let policy = self.policy.current();
        let dry_run = dry_run_forwarded(Some(analysis), Some(decision));
        if info.is_mutation() && !dry_run {
            self.sessions.forget_rehearsals(&exchange.session);
        }
        let failures = self.sessions.record_outcome_lazily(
            &exchange.session,
            &fingerprint,
            exchange.status_code,
            dry_run,
            Duration::from_secs(policy.retry_loop.window_seconds),
            Instant::now(),
        );
        let findings = policy::findings_from_response(
            info,
            analysis,
            &policy,
            decision,
            exchange.status_code,
            failures,
        );
        let mut extra = policy::Decision::allow(decision.mode);
        extra.findings = findings.clone();
        let warnings = extra.warnings();
        decision.findings.extend(findings);
        let computed = fingerprint.computed();
        exchange.fingerprint = computed;
        warnings
    }

    fn observe_end(&self, exchange: &Exchange) {
        let Some(info) = exchange.info.as_deref() else {
            return;
        };
        if exchange.answered_by_pathgate || !policy::counts_read_bytes(info) {
            return;
        }
        let budgets = self.policy.current().budgets;
        self.sessions.record_read_bytes(
            &exchange.session,
            &budgets,
            exchange.bytes_out,
            Instant::now(),
        );
    }

    fn fetch_pre_image<'a>(
        &'a self,
        path: &'a str,
        authorization: Option<&'a HeaderValue>,
        trace_id: TraceId,
    ) -> Pin<Box<dyn std::future::Future<Output = PreImage> + Send + 'a>> {
        Box::pin(async move {
            let (target, body) = self.fetch_target(path, authorization, trace_id).await;
            let record = target_record(&target);
            let effect = match target {
                TargetFact::Present(object) => EffectBasis::PreImage(object),
                _ => EffectBasis::Unmeasured,
            };
            PreImage {
                effect,
                target: record,
                body,
            }
        })
    }

    fn observe_effect(&self, exchange: &Exchange, after: &serde_json::Value) -> Option<Rehearsed> {
        let (Some(effect_paths), Some(fingerprint)) =
            (&exchange.effect_paths, exchange.fingerprint)
        else {
            return None;
        };
        if !dry_run_forwarded(exchange.analysis.as_deref(), exchange.decision.as_ref()) {
            return None;
        }
        let warning = policy::rehearsal_warning(effect_paths);
        let post_image = policy::effect_digest(after);
        let rehearsal = Rehearsal {
            effect_paths: effect_paths.clone(),
            post_image,
        };
        self.sessions
            .record_rehearsal(&exchange.session, &fingerprint, rehearsal, Instant::now());
        Some(Rehearsed {
            warning,
            post_image,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_read_defers_its_fingerprint() {
        let info = |method: &Method, path: &str| {
            classify::request_info(method, path, None, &HeaderMap::new()).unwrap()
        };
        let get = info(&Method::GET, "/api/v1/namespaces/shop/configmaps/c");
        let delete = info(&Method::DELETE, "/api/v1/namespaces/shop/configmaps/c");
        let mut headers = HeaderMap::new();
        assert!(defers_fingerprint(&get, &headers, b""));
        assert!(
            !defers_fingerprint(&delete, &headers, b""),
            "a mutation's is kept"
        );
        assert!(
            !defers_fingerprint(&get, &headers, b"{}"),
            "a body is hashed"
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(defers_fingerprint(&get, &headers, b""));
        let opaque = HeaderValue::from_bytes(b"application/json; x=\xff").unwrap();
        headers.insert(header::CONTENT_TYPE, opaque);
        assert!(
            !defers_fingerprint(&get, &headers, b""),
            "the exchange keeps a Content-Type only as text"
        );
        headers.remove(header::CONTENT_TYPE);
        headers.insert("impersonate-user", HeaderValue::from_static("admin"));
        assert!(
            !defers_fingerprint(&get, &headers, b""),
            "the exchange does not keep Impersonate-* headers"
        );
    }

    #[test]
    fn query_rewrites_replace_and_add_parameters() {
        let query = rewrite_query(
            Some("gracePeriodSeconds=0&pretty=true"),
            &[
                Rewrite::SetGracePeriod {
                    from: Some(0),
                    to: 30,
                },
                Rewrite::AddDryRun,
            ],
        );
        assert_eq!(query, "pretty=true&gracePeriodSeconds=30&dryRun=All");
        assert_eq!(
            rewrite_query(None, &[Rewrite::AddLimit { limit: 50 }]),
            "limit=50"
        );
    }

    #[test]
    fn delete_bodies_get_the_same_rewrites_as_the_query() {
        let body = br#"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0,"propagationPolicy":"Background"}"#;
        let rewritten = rewrite_delete_body(
            body,
            &[Rewrite::SetGracePeriod {
                from: Some(0),
                to: 30,
            }],
        )
        .unwrap()
        .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&rewritten).unwrap();
        assert_eq!(value["gracePeriodSeconds"], 30);
        assert_eq!(value["propagationPolicy"], "Background");
        let dry = rewrite_delete_body(body, &[Rewrite::AddDryRun])
            .unwrap()
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&dry).unwrap();
        assert_eq!(value["dryRun"], serde_json::json!(["All"]));
        assert_eq!(rewrite_delete_body(b"", &[Rewrite::AddDryRun]), Ok(None));
        assert_eq!(
            rewrite_delete_body(body, &[Rewrite::AddLimit { limit: 5 }]),
            Ok(None),
            "no rewrite concerns the body"
        );
    }

    #[test]
    fn delete_bodies_that_cannot_be_rewritten_are_errors_not_silence() {
        let protobuf =
            b"k8s\x00\x0a\x1f\x0a\x0emeta.k8s.io/v1\x12\x0dDeleteOptions\x12\x02\x08\x00";
        let grace = [Rewrite::SetGracePeriod {
            from: Some(0),
            to: 30,
        }];
        assert!(rewrite_delete_body(protobuf, &grace).is_err());
        assert!(rewrite_delete_body(protobuf, &[Rewrite::AddDryRun]).is_err());
        assert!(rewrite_delete_body(b"[]", &grace).is_err());
        assert_eq!(
            rewrite_delete_body(protobuf, &[Rewrite::AddLimit { limit: 5 }]),
            Ok(None)
        );
        assert!(rewrite_summary(&grace).contains("gracePeriodSeconds=30 (PG005"));
    }
}
