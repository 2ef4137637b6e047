//! One run being judged: the entries of a session folded, one at a time and in ledger
//! order, into what its verdict needs. Nothing keeps an entry: memory grows with the
//! run's objects, violations and mutations (and, only when a report asks for it, one
//! timeline row per request).

use std::collections::HashSet;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::ledger::{Entry, Phase, RewriteRecord, Side};

use super::final_state::FinalState;
use super::judge::{judge, RunMemory};
use super::policy::RunPolicy;
use super::verdict::{
    Blocked, BudgetBreach, Counts, Evidence, EvidenceStatus, Gap, GapKind, MutationScope,
    RequestKind, Rewritten, Run, Scope, TimeSpan, TimelineRow, Triage,
};

/// The state of one run while its entries stream by.
#[derive(Debug)]
pub struct RunState {
    session: String,
    memory: RunMemory,
    counts: Counts,
    modes: Vec<&'static str>,
    rehearsed: bool,
    started_at: Option<OffsetDateTime>,
    ended_at: Option<OffsetDateTime>,
    violations: Vec<super::verdict::Violation>,
    blocked: Vec<Blocked>,
    budget_breaches: Vec<BudgetBreach>,
    rewritten: Vec<Rewritten>,
    mutations: Vec<MutationScope>,
    gaps: Vec<Gap>,
    /// Hashes of the trace ids of outcomes that matter to counting (mutations and
    /// failures), so that a sink's at-least-once redelivery is not judged twice: 8 bytes
    /// an entry, not the id (trace ids are random 128-bit values, so 64-bit hashes of a
    /// run's ids do not collide in practice). Reads are not remembered: a duplicated read
    /// changes no verdict beyond a repeated `secret_read`.
    seen: HashSet<u64>,
    /// Intents whose outcome has not been seen (yet).
    open_intents: HashSet<String>,
    /// The last entry's `ledger_dropped` stamp (0 when absent).
    last_dropped: Option<u64>,
    timeline: Option<Vec<TimelineRow>>,
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_else(|_| time.to_string())
}

impl RunState {
    /// A run with no entries yet; `timeline` keeps one row per request for reports.
    pub fn new(session: String, timeline: bool) -> RunState {
        RunState {
            session,
            memory: RunMemory::default(),
            counts: Counts::default(),
            modes: Vec::new(),
            rehearsed: false,
            started_at: None,
            ended_at: None,
            violations: Vec::new(),
            blocked: Vec::new(),
            budget_breaches: Vec::new(),
            rewritten: Vec::new(),
            mutations: Vec::new(),
            gaps: Vec::new(),
            seen: HashSet::new(),
            open_intents: HashSet::new(),
            last_dropped: None,
            timeline: timeline.then(Vec::new),
        }
    }

    /// The run's session.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Folds the next entry of the run into its state.
    pub fn push(&mut self, entry: &Entry, policy: &RunPolicy) {
        self.note_drops(entry);
        if entry.phase == Phase::Intent {
            self.open_intents.insert(entry.trace_id.clone());
            return;
        }
        self.open_intents.remove(&entry.trace_id);
        let status = entry.response.as_ref().map(|r| r.status_code);
        let remembered = entry.request.mutation || status.is_none_or(|s| s >= 400);
        if remembered && !self.seen.insert(trace_hash(&entry.trace_id)) {
            return;
        }
        self.note_time(entry);
        if let Some(decision) = &entry.decision {
            let mode = decision.mode.as_str();
            if !self.modes.contains(&mode) {
                self.modes.push(mode);
            }
            self.rehearsed |=
                entry.request.mutation && decision.rewrites.contains(&RewriteRecord::AddDryRun);
        }
        let judgement = judge(entry, policy, &mut self.memory);
        self.count(entry, judgement.kind);
        let scope = (judgement.kind == RequestKind::Mutation
            && status.is_some_and(|s| (200..300).contains(&s)))
        .then(|| mutation_scope(entry));
        if let Some(timeline) = &mut self.timeline {
            timeline.push(TimelineRow {
                trace_id: entry.trace_id.clone(),
                started_at: rfc3339(entry.started_at),
                method: entry.request.method.clone(),
                path: entry.request.path.clone(),
                status,
                kind: judgement.kind,
                violations: judgement.violations.iter().map(|v| v.category).collect(),
                payload_paths: scope.as_ref().and_then(|s| s.payload_paths),
                effect_paths: scope.as_ref().and_then(|s| s.effect_paths),
            });
        }
        self.mutations.extend(scope);
        self.violations.extend(judgement.violations);
        self.budget_breaches
            .extend(budget_breach(entry, judgement.kind));
    }

    /// Entries the ledger dropped between this run's entries: the rise of the process's
    /// drop count (`ledger_dropped`) from one entry to the next. A fall is a restarted
    /// pathgate, whose count began again at 0 (drops before the run's first entry are not
    /// in its window).
    fn note_drops(&mut self, entry: &Entry) {
        let stamp = entry.ledger_dropped.unwrap_or(0);
        if let Some(last) = self.last_dropped {
            let lost = if stamp >= last { stamp - last } else { stamp };
            if lost > 0 {
                self.gap_of(GapKind::DroppedEntries, &entry.trace_id, lost);
            }
        }
        self.last_dropped = Some(stamp);
    }

    fn note_time(&mut self, entry: &Entry) {
        let start = entry.started_at;
        let end = entry.ended_at.unwrap_or(start);
        self.started_at = Some(self.started_at.map_or(start, |s| s.min(start)));
        self.ended_at = Some(self.ended_at.map_or(end, |e| e.max(end)));
    }

    fn count(&mut self, entry: &Entry, kind: RequestKind) {
        self.counts.requests += 1;
        let status = entry.response.as_ref().map(|r| r.status_code);
        match kind {
            RequestKind::Read => self.counts.reads += 1,
            RequestKind::DryRun => self.counts.dry_runs += 1,
            RequestKind::Mutation => {
                self.counts.mutations += 1;
                let lost = entry
                    .error
                    .as_ref()
                    .is_some_and(|e| e.side == Side::Upstream)
                    && status.is_none_or(|s| s >= 500);
                if lost {
                    self.gap(GapKind::UnknownOutcome, &entry.trace_id);
                }
                let pod_delete = entry.request.verb == "delete"
                    && entry.request.api_group.is_empty()
                    && entry.request.resource == "pods"
                    && entry.request.subresource.is_empty();
                if pod_delete
                    && entry.target.is_none()
                    && status.is_some_and(|s| (200..300).contains(&s))
                {
                    self.gap(GapKind::UnknownPodOwner, &entry.trace_id);
                }
            }
            RequestKind::Blocked => {
                self.counts.blocked += 1;
                self.blocked.push(blocked(entry));
            }
            RequestKind::Ignored => self.counts.ignored += 1,
            RequestKind::Connect => {
                // A refused exec did nothing inside the container.
                if status.is_some_and(|s| s == 101 || (200..300).contains(&s)) {
                    self.gap(GapKind::ContainerAccess, &entry.trace_id);
                }
            }
            RequestKind::Unclassified => self.gap(GapKind::UnclassifiedRequests, &entry.trace_id),
            RequestKind::NotForwarded => {}
        }
        if kind != RequestKind::Blocked {
            if let Some(rewritten) = rewritten(entry) {
                self.rewritten.push(rewritten);
            }
        }
    }

    fn gap(&mut self, kind: GapKind, trace_id: &str) {
        self.gap_of(kind, trace_id, 1);
    }

    /// Adds `count` to the gap of `kind`, noting `trace_id` among its first trace ids.
    fn gap_of(&mut self, kind: GapKind, trace_id: &str, count: u64) {
        let gap = match self.gaps.iter_mut().find(|g| g.kind == kind) {
            Some(gap) => gap,
            None => {
                self.gaps.push(Gap {
                    kind,
                    count: 0,
                    trace_ids: Vec::new(),
                });
                self.gaps.last_mut().expect("just pushed")
            }
        };
        gap.count += count;
        if gap.trace_ids.len() < Gap::MAX_TRACE_IDS {
            gap.trace_ids.push(trace_id.to_string());
        }
    }

    /// The verdict, once every entry was pushed.
    pub fn finish(mut self, final_state: FinalState) -> Run {
        let open: Vec<String> = {
            let mut open: Vec<String> = self.open_intents.drain().collect();
            open.sort();
            open
        };
        for trace_id in open {
            self.gap(GapKind::IntentWithoutOutcome, &trace_id);
        }
        self.gaps.sort_by_key(|g| g.kind);
        let triage = if final_state.failed() {
            Triage::Fail
        } else if self.violations.is_empty() {
            Triage::SafePass
        } else {
            Triage::UnsafePass
        };
        let average = |values: Vec<usize>| {
            (!values.is_empty()).then(|| values.iter().sum::<usize>() as f64 / values.len() as f64)
        };
        let scope = Scope {
            average_payload_paths: average(
                self.mutations
                    .iter()
                    .filter_map(|m| m.payload_paths)
                    .collect(),
            ),
            average_effect_paths: average(
                self.mutations
                    .iter()
                    .filter_map(|m| m.effect_paths)
                    .collect(),
            ),
            mutations: self.mutations,
        };
        Run {
            session: self.session,
            triage,
            modes: self.modes,
            rehearsed: self.rehearsed,
            time_span: self.started_at.zip(self.ended_at).map(|(s, e)| TimeSpan {
                started_at: rfc3339(s),
                ended_at: rfc3339(e),
            }),
            counts: self.counts,
            violations: self.violations,
            blocked: self.blocked,
            budget_breaches: self.budget_breaches,
            rewritten: self.rewritten,
            scope,
            evidence: Evidence {
                status: if self.gaps.is_empty() {
                    EvidenceStatus::Complete
                } else {
                    EvidenceStatus::Incomplete
                },
                reasons: self.gaps,
            },
            final_state,
            timeline: self.timeline,
        }
    }
}

fn trace_hash(trace_id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(trace_id)
}

fn mutation_scope(entry: &Entry) -> MutationScope {
    let analysis = entry.analysis.as_ref();
    let readable =
        analysis.is_some_and(|a| a.opaque_reason.is_none() && a.body_format != "protobuf");
    MutationScope {
        trace_id: entry.trace_id.clone(),
        method: entry.request.method.clone(),
        path: entry.request.path.clone(),
        payload_paths: analysis
            .filter(|_| readable)
            .map(|a| a.touched_paths.len())
            .filter(|n| *n > 0),
        effect_paths: analysis.and_then(|a| a.effect_paths.as_ref()).map(Vec::len),
    }
}

fn blocked(entry: &Entry) -> Blocked {
    let decision = entry.decision.as_ref();
    let action = decision.map(|d| d.action.as_str()).unwrap_or("deny");
    let rules = decision
        .map(|d| {
            d.findings
                .iter()
                .filter(|f| f.action.as_str() == action)
                .map(|f| f.rule.clone())
                .collect()
        })
        .unwrap_or_default();
    Blocked {
        trace_id: entry.trace_id.clone(),
        method: entry.request.method.clone(),
        path: entry.request.path.clone(),
        status: entry.response.as_ref().map(|r| r.status_code),
        action,
        rules,
    }
}

/// The budget a request was past, from the ledger's `decision.budget`.
fn budget_breach(entry: &Entry, kind: RequestKind) -> Option<BudgetBreach> {
    let budget = entry.decision.as_ref()?.budget.as_ref()?;
    Some(BudgetBreach {
        trace_id: entry.trace_id.clone(),
        method: entry.request.method.clone(),
        path: entry.request.path.clone(),
        status: entry.response.as_ref().map(|r| r.status_code),
        budget: budget.name.clone(),
        limit: budget.limit,
        used: budget.used,
        refused: kind == RequestKind::Blocked,
    })
}

fn rewritten(entry: &Entry) -> Option<Rewritten> {
    let rewrites = &entry.decision.as_ref()?.rewrites;
    if rewrites.is_empty() {
        return None;
    }
    Some(Rewritten {
        trace_id: entry.trace_id.clone(),
        method: entry.request.method.clone(),
        path: entry.request.path.clone(),
        rewrites: rewrites
            .iter()
            .map(|rewrite| match rewrite {
                RewriteRecord::AddDryRun => "add_dry_run".to_string(),
                RewriteRecord::SetGracePeriod { from, to } => format!(
                    "set_grace_period {} -> {to}",
                    from.map_or("unset".to_string(), |f| f.to_string())
                ),
                RewriteRecord::AddLimit { limit } => format!("add_limit {limit}"),
            })
            .collect(),
    })
}
