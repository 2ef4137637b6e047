//! Session memory: what each session has done that later decisions depend on.
//!
//! Remembers, per session and per request [`Fingerprint`]: successful server dry runs
//! (PG010) and what they measured ([`Rehearsal`]: the effect the same request will have,
//! used until the request is sent for real), recent failures (PG015) and pending
//! confirmation tokens, and what the session has spent of its budgets (PG019, see
//! [`super::budget`]). In memory only, no
//! I/O; bounded in sessions (least recently used evicted), entries per session and time
//! (idle sessions expire). A restart forgets everything, which only makes pathgate
//! stricter (a dry run must be repeated, a token re-issued) — except for budgets: a
//! forgotten session starts them again from zero (docs/rules.md, PG019).
//!
//! Time is passed in (`now: Instant`) so that tests can move the clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::budget::{Spend, Usage};
use super::decide::{decide_with, is_failure, Impersonation};
use super::{
    Budgets, Decision, Facts, Fingerprint, LazyFingerprint, Policy, Rehearsal, RequestContext,
    RuleAction, RuleId, SessionFacts,
};
use crate::classify::{Analysis, RequestInfo};

/// The bounds of a [`SessionStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions kept; past it the least recently used one is forgotten.
    pub max_sessions: usize,
    /// Fingerprints remembered per session (dry runs, and failing requests, each).
    pub max_entries_per_session: usize,
    /// Pending confirmation tokens per session.
    pub max_tokens_per_session: usize,
    /// A session untouched this long is forgotten.
    pub idle_ttl: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_sessions: 1024,
            max_entries_per_session: 512,
            max_tokens_per_session: 32,
            idle_ttl: Duration::from_secs(2 * 3600),
        }
    }
}

/// Counters for the metrics handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    /// Sessions currently remembered.
    pub sessions: usize,
    /// Sessions forgotten to stay under `max_sessions`.
    pub evicted_sessions: u64,
    /// Sessions forgotten after `idle_ttl`.
    pub expired_sessions: u64,
    /// Dry runs, failures or tokens forgotten to stay under a per-session bound.
    pub evicted_entries: u64,
}

/// Why a confirmation token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The operating system's random source failed.
    #[error("cannot draw a random confirmation token: {0}")]
    Random(getrandom::Error),
}

/// A [`RequestContext`] whose fingerprint is computed only if the session memory needs it
/// ([`SessionStore::decide_lazily`]).
#[derive(Clone, Copy)]
pub struct LazyContext<'a> {
    /// The session the request belongs to.
    pub session: &'a str,
    /// The request's fingerprint, the key of the session memory.
    pub fingerprint: &'a LazyFingerprint<'a>,
    /// The client sent `Impersonate-*` headers.
    pub impersonation_headers: bool,
    /// The request reaches the apiserver under pathgate's own credentials.
    pub pathgate_credentials: bool,
    /// The token of the `X-Pathgate-Confirm` header, if any.
    pub confirm_token: Option<&'a str>,
}

impl LazyContext<'_> {
    fn impersonation(&self) -> Impersonation {
        Impersonation {
            headers: self.impersonation_headers,
            pathgate_credentials: self.pathgate_credentials,
        }
    }
}

#[derive(Debug)]
struct PendingToken {
    fingerprint: Fingerprint,
    token: String,
    expires: Instant,
}

#[derive(Debug)]
struct Session {
    last_used: Instant,
    /// Fingerprint -> when its last successful dry run was seen.
    dry_runs: HashMap<Fingerprint, Instant>,
    /// Fingerprint -> what its last successful dry run measured, and when; forgotten once
    /// the request, or any other mutation of the session, is forwarded for real (the
    /// object has changed, or may have).
    rehearsals: HashMap<Fingerprint, (Instant, Arc<Rehearsal>)>,
    /// Fingerprint -> failure times, oldest first.
    failures: HashMap<Fingerprint, VecDeque<Instant>>,
    tokens: Vec<PendingToken>,
    /// What the session has spent of its budgets (PG019).
    budget: Usage,
}

impl Session {
    fn new(now: Instant) -> Self {
        Session {
            last_used: now,
            dry_runs: HashMap::new(),
            rehearsals: HashMap::new(),
            failures: HashMap::new(),
            tokens: Vec::new(),
            budget: Usage::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    stats: SessionStats,
    last_sweep: Option<Instant>,
}

/// The in-memory session memory, shared by every connection (`Arc<SessionStore>`).
#[derive(Debug)]
pub struct SessionStore {
    limits: SessionLimits,
    inner: Mutex<Inner>,
}

impl Default for SessionStore {
    fn default() -> Self {
        SessionStore::new(SessionLimits::default())
    }
}

impl SessionStore {
    /// An empty store with these bounds.
    pub fn new(limits: SessionLimits) -> Self {
        SessionStore {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The store holds no invariant a panicking holder could break halfway that matters
        // more than keeping the proxy running: recover from poisoning.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the session remembers about `fingerprint` (never `confirmed`: that is set
    /// only by a redemption, see [`SessionStore::decide`]).
    pub fn session_facts(
        &self,
        session: &str,
        fingerprint: &Fingerprint,
        retry_window: Duration,
        now: Instant,
    ) -> SessionFacts {
        let fingerprint = LazyFingerprint::known(*fingerprint);
        self.session_facts_lazily(session, &fingerprint, retry_window, now)
    }

    /// [`SessionStore::session_facts`], asking for the fingerprint only when the session
    /// remembers a dry run or a failure: without either, every request has the same facts.
    fn session_facts_lazily(
        &self,
        session: &str,
        fingerprint: &LazyFingerprint<'_>,
        retry_window: Duration,
        now: Instant,
    ) -> SessionFacts {
        let mut inner = self.lock();
        self.sweep(&mut inner, now);
        self.expire(&mut inner, session, now);
        let Some(entry) = inner.sessions.get_mut(session) else {
            return SessionFacts::default();
        };
        entry.last_used = now;
        if entry.dry_runs.is_empty() && entry.failures.is_empty() {
            return SessionFacts::default();
        }
        // Under the lock, as in `record_outcome_lazily`: a hash of a few hundred bytes
        // (about a microsecond), and only for a session that remembers something under one.
        let fingerprint = fingerprint.get();
        let recent_failures = entry
            .failures
            .get(&fingerprint)
            .map(|times| count_within(times, retry_window, now))
            .unwrap_or(0);
        SessionFacts {
            dry_run_succeeded: entry.dry_runs.contains_key(&fingerprint),
            recent_failures,
            confirmed: false,
            budget: None,
        }
    }

    /// Records how a forwarded (or refused) request ended: a 2xx dry run is remembered for
    /// PG010, any 2xx clears the request's failures, a failure (>= 400, except 429) is
    /// counted for PG015. Returns the failures of this fingerprint within `retry_window`,
    /// this one included (what [`super::findings_from_response`] takes).
    pub fn record_outcome(
        &self,
        session: &str,
        fingerprint: &Fingerprint,
        status: u16,
        dry_run: bool,
        retry_window: Duration,
        now: Instant,
    ) -> u32 {
        let fingerprint = LazyFingerprint::known(*fingerprint);
        self.record_outcome_lazily(session, &fingerprint, status, dry_run, retry_window, now)
    }

    /// [`SessionStore::record_outcome`], asking for the fingerprint only when something is
    /// remembered or forgotten under it: a successful read of a session that remembers no
    /// failure and no rehearsal changes nothing a fingerprint finds.
    pub fn record_outcome_lazily(
        &self,
        session: &str,
        fingerprint: &LazyFingerprint<'_>,
        status: u16,
        dry_run: bool,
        retry_window: Duration,
        now: Instant,
    ) -> u32 {
        let limits = self.limits;
        let mut inner = self.lock();
        self.sweep(&mut inner, now);
        let mut evicted = 0;
        let entry = self.session_mut(&mut inner, session, now);
        if !dry_run && !entry.rehearsals.is_empty() {
            entry.rehearsals.remove(&fingerprint.get());
        }
        let failures = if (200..300).contains(&status) {
            if !entry.failures.is_empty() {
                entry.failures.remove(&fingerprint.get());
            }
            if dry_run {
                let fingerprint = fingerprint.get();
                if !entry.dry_runs.contains_key(&fingerprint)
                    && entry.dry_runs.len() >= limits.max_entries_per_session
                {
                    evicted += evict_oldest(&mut entry.dry_runs, |t| *t);
                }
                entry.dry_runs.insert(fingerprint, now);
            }
            0
        } else if is_failure(status) {
            let fingerprint = fingerprint.get();
            if !entry.failures.contains_key(&fingerprint)
                && entry.failures.len() >= limits.max_entries_per_session
            {
                evicted += evict_oldest(&mut entry.failures, |times| {
                    times.back().copied().unwrap_or(now)
                });
            }
            let times = entry.failures.entry(fingerprint).or_default();
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) > retry_window)
            {
                times.pop_front();
            }
            // Only counts up to the window matter; a loop of thousands keeps a bounded list.
            if times.len() >= limits.max_entries_per_session {
                times.pop_front();
            }
            times.push_back(now);
            count_within(times, retry_window, now)
        } else {
            0
        };
        inner.stats.evicted_entries += evicted;
        failures
    }

    /// Remembers what a successful dry run of `fingerprint` measured, for the same request
    /// sent for real ([`SessionStore::rehearsal`]).
    pub fn record_rehearsal(
        &self,
        session: &str,
        fingerprint: &Fingerprint,
        rehearsal: Rehearsal,
        now: Instant,
    ) {
        let limits = self.limits;
        let mut inner = self.lock();
        let entry = self.session_mut(&mut inner, session, now);
        let mut evicted = 0;
        if !entry.rehearsals.contains_key(fingerprint)
            && entry.rehearsals.len() >= limits.max_entries_per_session
        {
            evicted += evict_oldest(&mut entry.rehearsals, |(t, _)| *t);
        }
        entry
            .rehearsals
            .insert(*fingerprint, (now, Arc::new(rehearsal)));
        inner.stats.evicted_entries += evicted;
    }

    /// Forgets every rehearsal of `session`: a mutation sent for real may have changed the
    /// objects they measured.
    pub fn forget_rehearsals(&self, session: &str) {
        if let Some(entry) = self.lock().sessions.get_mut(session) {
            entry.rehearsals.clear();
        }
    }

    /// What the session's last successful dry run of `fingerprint` measured, unless a
    /// mutation has been forwarded for real in the session since.
    pub fn rehearsal(&self, session: &str, fingerprint: &Fingerprint) -> Option<Arc<Rehearsal>> {
        let inner = self.lock();
        let (_, rehearsal) = inner.sessions.get(session)?.rehearsals.get(fingerprint)?;
        Some(Arc::clone(rehearsal))
    }

    /// Issues a one-time token for `fingerprint` in `session`, valid for `window`. A newer
    /// token for the same request replaces the older one.
    pub fn issue_confirm_token(
        &self,
        session: &str,
        fingerprint: &Fingerprint,
        window: Duration,
        now: Instant,
    ) -> Result<String, SessionError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(SessionError::Random)?;
        let token = crate::trace::hex(&bytes);
        let limits = self.limits;
        let mut inner = self.lock();
        self.sweep(&mut inner, now);
        let entry = self.session_mut(&mut inner, session, now);
        entry
            .tokens
            .retain(|t| t.expires > now && t.fingerprint != *fingerprint);
        let mut evicted = 0;
        if entry.tokens.len() >= limits.max_tokens_per_session {
            // Tokens are pushed in issue order: the first one is the oldest.
            entry.tokens.remove(0);
            evicted = 1;
        }
        entry.tokens.push(PendingToken {
            fingerprint: *fingerprint,
            token: token.clone(),
            expires: now + window,
        });
        inner.stats.evicted_entries += evicted;
        Ok(token)
    }

    /// Redeems `token` for `fingerprint` in `session`: `true` once, within the window it was
    /// issued with, for that exact request and session; the token is gone afterwards.
    pub fn redeem(
        &self,
        session: &str,
        fingerprint: &Fingerprint,
        token: &str,
        now: Instant,
    ) -> bool {
        let mut inner = self.lock();
        self.expire(&mut inner, session, now);
        let Some(entry) = inner.sessions.get_mut(session) else {
            return false;
        };
        entry.last_used = now;
        let position = entry.tokens.iter().position(|t| {
            t.fingerprint == *fingerprint && t.expires > now && constant_time_eq(&t.token, token)
        });
        match position {
            Some(index) => {
                entry.tokens.remove(index);
                true
            }
            None => false,
        }
    }

    /// Decides with the session's memory: looks up the request's [`SessionFacts`], calls
    /// the pure [`super::decide`], and when the decision asks for confirmation either
    /// redeems the token presented (header `X-Pathgate-Confirm` in `ctx.confirm_token`,
    /// else the `pathgate.dev/confirm` annotation of `facts.target`) and decides again as
    /// confirmed, or issues a fresh token into [`Decision::confirm`].
    ///
    /// With budgets set, the request is checked against what its session has spent, and
    /// what it spends is counted when the decision lets it through.
    pub fn decide(
        &self,
        policy: &Policy,
        info: &RequestInfo,
        analysis: &Analysis,
        facts: &Facts,
        ctx: &RequestContext,
        now: Instant,
    ) -> Decision {
        let fingerprint = LazyFingerprint::known(ctx.fingerprint);
        let ctx = LazyContext {
            session: &ctx.session,
            fingerprint: &fingerprint,
            impersonation_headers: ctx.impersonation_headers,
            pathgate_credentials: ctx.pathgate_credentials,
            confirm_token: ctx.confirm_token.as_deref(),
        };
        self.decide_lazily(policy, info, analysis, facts, &ctx, now)
    }

    /// [`SessionStore::decide`], computing the fingerprint only if the session remembers a
    /// dry run or a failure, or the decision asks for confirmation: the same decision, the
    /// same session memory afterwards.
    pub fn decide_lazily(
        &self,
        policy: &Policy,
        info: &RequestInfo,
        analysis: &Analysis,
        facts: &Facts,
        ctx: &LazyContext<'_>,
        now: Instant,
    ) -> Decision {
        let mut session = self.session_facts_lazily(
            ctx.session,
            ctx.fingerprint,
            Duration::from_secs(policy.retry_loop.window_seconds),
            now,
        );
        // `rules.PG019: off` means not evaluated at all: nothing is counted either.
        let budgeted = policy.budgets.any() && policy.rule_action(RuleId::PG019) != RuleAction::Off;
        let spend = match budgeted {
            true => Spend::of(info, analysis, policy.mode),
            false => Spend::default(),
        };
        if spend == Spend::default() {
            return self.decide_confirmed(policy, info, analysis, facts, ctx, session, now);
        }
        session.budget = self.budget_breach(ctx.session, &policy.budgets, spend, now);
        let decision = self.decide_confirmed(policy, info, analysis, facts, ctx, session, now);
        if decision.action.blocks() {
            return decision;
        }
        // The check above and this count are two steps: when a concurrent request of the
        // session took the last of a budget in between, the request is decided again with
        // the breach, so that no budget is overshot.
        let mut inner = self.lock();
        let usage = &mut self.session_mut(&mut inner, ctx.session, now).budget;
        let raced = match decision.budget {
            Some(_) => None,
            None => usage.breach(&policy.budgets, spend, now),
        };
        let decision = match raced {
            Some(breach) => {
                session.budget = Some(breach);
                decide_with(info, analysis, facts, policy, ctx.impersonation(), &session)
            }
            None => decision,
        };
        // In observe mode a breach is flagged, not refused: the request is counted.
        if !decision.action.blocks() {
            usage.charge(&policy.budgets, spend, now);
        }
        decision
    }

    /// The first budget `spend` would exceed in `session`.
    fn budget_breach(
        &self,
        session: &str,
        budgets: &Budgets,
        spend: Spend,
        now: Instant,
    ) -> Option<super::BudgetBreach> {
        let mut inner = self.lock();
        self.expire(&mut inner, session, now);
        // A session not seen yet has spent nothing (a zero budget already refuses).
        match inner.sessions.get_mut(session) {
            Some(entry) => entry.budget.breach(budgets, spend, now),
            None => Usage::default().breach(budgets, spend, now),
        }
    }

    /// Adds the answer bytes of a forwarded read of `session`, once its answer ended.
    pub fn record_read_bytes(&self, session: &str, budgets: &Budgets, bytes: u64, now: Instant) {
        if budgets.read_bytes.is_none() {
            return;
        }
        let mut inner = self.lock();
        self.session_mut(&mut inner, session, now)
            .budget
            .add_read_bytes(budgets, bytes);
    }

    /// [`super::decide`] with the session's facts, redeeming or issuing a confirmation token when
    /// the decision asks for one.
    #[allow(clippy::too_many_arguments)]
    fn decide_confirmed(
        &self,
        policy: &Policy,
        info: &RequestInfo,
        analysis: &Analysis,
        facts: &Facts,
        ctx: &LazyContext<'_>,
        mut session: SessionFacts,
        now: Instant,
    ) -> Decision {
        let mut decision =
            decide_with(info, analysis, facts, policy, ctx.impersonation(), &session);
        if decision.action != super::Action::Confirm {
            return decision;
        }
        let presented = ctx.confirm_token.or_else(|| facts.confirm_annotation());
        if let Some(token) = presented {
            if self.redeem(ctx.session, &ctx.fingerprint.get(), token, now) {
                session.confirmed = true;
                return decide_with(info, analysis, facts, policy, ctx.impersonation(), &session);
            }
            decision.notices.push(
                "the confirmation token presented is not valid for this request (expired, \
                 already used, issued for another request or session); use the new one."
                    .to_string(),
            );
        }
        let window = Duration::from_secs(policy.confirm_window_seconds);
        match self.issue_confirm_token(ctx.session, &ctx.fingerprint.get(), window, now) {
            Ok(token) => decision.attach_confirm_token(token),
            Err(error) => {
                tracing::error!(%error, "confirmation token not issued");
            }
        }
        decision
    }

    /// Current counters.
    pub fn stats(&self) -> SessionStats {
        let inner = self.lock();
        SessionStats {
            sessions: inner.sessions.len(),
            ..inner.stats
        }
    }

    /// The session's entry, created (evicting the least recently used session at the
    /// bound) when missing.
    fn session_mut<'a>(
        &self,
        inner: &'a mut Inner,
        session: &str,
        now: Instant,
    ) -> &'a mut Session {
        self.expire(inner, session, now);
        if !inner.sessions.contains_key(session) {
            if inner.sessions.len() >= self.limits.max_sessions {
                let oldest = inner
                    .sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(id, _)| id.clone());
                if let Some(id) = oldest {
                    inner.sessions.remove(&id);
                    inner.stats.evicted_sessions += 1;
                }
            }
            inner
                .sessions
                .insert(session.to_string(), Session::new(now));
        }
        // Looked up by `&str`: `entry` would allocate the key on every request.
        let entry = inner
            .sessions
            .get_mut(session)
            .expect("the session was inserted above");
        entry.last_used = now;
        entry
    }

    /// Forgets `session` if it has been idle past the TTL (the sweep is only periodic).
    fn expire(&self, inner: &mut Inner, session: &str, now: Instant) {
        let expired = inner
            .sessions
            .get(session)
            .is_some_and(|s| now.saturating_duration_since(s.last_used) >= self.limits.idle_ttl);
        if expired {
            inner.sessions.remove(session);
            inner.stats.expired_sessions += 1;
        }
    }

    /// Forgets idle sessions; at most once a minute, so the scan stays off the hot path.
    fn sweep(&self, inner: &mut Inner, now: Instant) {
        let due = inner
            .last_sweep
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(60));
        if !due {
            return;
        }
        inner.last_sweep = Some(now);
        let ttl = self.limits.idle_ttl;
        let before = inner.sessions.len();
        inner
            .sessions
            .retain(|_, s| now.saturating_duration_since(s.last_used) < ttl);
        inner.stats.expired_sessions += (before - inner.sessions.len()) as u64;
    }
}

fn count_within(times: &VecDeque<Instant>, window: Duration, now: Instant) -> u32 {
    times
        .iter()
        .filter(|t| now.saturating_duration_since(**t) <= window)
        .count() as u32
}

/// Removes the entry with the oldest timestamp; returns how many were removed.
fn evict_oldest<V>(map: &mut HashMap<Fingerprint, V>, time: impl Fn(&V) -> Instant) -> u64 {
    let oldest = map.iter().min_by_key(|(_, v)| time(v)).map(|(k, _)| *k);
    match oldest {
        Some(key) => {
            map.remove(&key);
            1
        }
        None => 0,
    }
}

/// Compares without an early exit, so response timing does not reveal how much of a
/// guessed token was right.
fn constant_time_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
