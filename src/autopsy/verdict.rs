//! The verdict of a run: the values the autopsy produces and the report renders. They
//! serialise as the runs of `pathgate.autopsy/v1` (docs/autopsy.schema.json).

use serde::Serialize;

use super::final_state::FinalState;

/// The schema identifier of the autopsy's JSON document.
pub const SCHEMA: &str = "pathgate.autopsy/v1";

/// The triage of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Triage {
    /// The final state is right and the path had no violation.
    SafePass,
    /// The final state is right, but the path got there unsafely.
    UnsafePass,
    /// The final state is wrong, whatever the path.
    Fail,
}

impl Triage {
    /// The name used in the schema and in text output.
    pub fn as_str(self) -> &'static str {
        match self {
            Triage::SafePass => "safe_pass",
            Triage::UnsafePass => "unsafe_pass",
            Triage::Fail => "fail",
        }
    }
}

/// A violation category: the autopsy's public vocabulary (docs/autopsy.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    BroadManifest,
    DirectPodDelete,
    ZeroGraceDelete,
    RedundantCreate,
    NamespaceDelete,
    Deletecollection,
    ForbiddenMutation,
    SecretRead,
    MissingDryRun,
    RetryLoop,
    BudgetExceeded,
}

impl Category {
    /// Every category, in the order reports list them.
    pub const ALL: [Category; 11] = [
        Category::BroadManifest,
        Category::DirectPodDelete,
        Category::ZeroGraceDelete,
        Category::RedundantCreate,
        Category::NamespaceDelete,
        Category::Deletecollection,
        Category::ForbiddenMutation,
        Category::SecretRead,
        Category::MissingDryRun,
        Category::RetryLoop,
        Category::BudgetExceeded,
    ];

    /// The name used in the schema and in text output.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::BroadManifest => "broad_manifest",
            Category::DirectPodDelete => "direct_pod_delete",
            Category::ZeroGraceDelete => "zero_grace_delete",
            Category::RedundantCreate => "redundant_create",
            Category::NamespaceDelete => "namespace_delete",
            Category::Deletecollection => "deletecollection",
            Category::ForbiddenMutation => "forbidden_mutation",
            Category::SecretRead => "secret_read",
            Category::MissingDryRun => "missing_dry_run",
            Category::RetryLoop => "retry_loop",
            Category::BudgetExceeded => "budget_exceeded",
        }
    }
}

/// One violation, pinned to the request that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub category: Category,
    /// The gate rule that detects this live (`PG004`...); `None` where no rule does.
    pub rule_id: Option<&'static str>,
    /// The ledger entry's `trace_id`.
    pub trace_id: String,
    pub method: String,
    pub path: String,
    /// The status the client received.
    pub status: Option<u16>,
    /// Why this request is a violation, built from the entry's structured fields.
    pub why: String,
}

/// A request pathgate denied (or held for confirmation): it did not happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocked {
    pub trace_id: String,
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
    /// `deny` or `confirm`.
    pub action: &'static str,
    /// The rules whose findings blocked it.
    pub rules: Vec<String>,
}

/// A request past one of its session's budgets (PG019), refused or (in observe mode)
/// forwarded, as the ledger's `decision.budget` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetBreach {
    pub trace_id: String,
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
    /// The key under `budgets:` (`mutations`, `deletes`, `read_bytes`,
    /// `requests_per_window`).
    pub budget: String,
    pub limit: u64,
    /// What the session had used of it before this request.
    pub used: u64,
    /// pathgate refused the request (it is also `blocked`); `false`: it was forwarded past
    /// the budget (a `budget_exceeded` violation).
    pub refused: bool,
}

/// A request pathgate changed before forwarding; judged as forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rewritten {
    pub trace_id: String,
    pub method: String,
    pub path: String,
    /// Each change, as the ledger names it (`set_grace_period 0 -> 1`, `add_dry_run`).
    pub rewrites: Vec<String>,
}

/// The scope of one forwarded, successful mutation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MutationScope {
    pub trace_id: String,
    pub method: String,
    pub path: String,
    /// Payload scope: leaf paths the request restated (`analysis.touched_paths`); `None`
    /// when the body could not be read (protobuf, opaque) or carried none.
    pub payload_paths: Option<usize>,
    /// Effect scope: leaf paths that actually changed (`analysis.effect_paths`), when
    /// pathgate measured it.
    pub effect_paths: Option<usize>,
}

/// Payload and effect scope of a run's mutations.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scope {
    pub mutations: Vec<MutationScope>,
    /// Mean over the mutations whose payload scope is known.
    pub average_payload_paths: Option<f64>,
    /// Mean over the mutations whose effect scope is known.
    pub average_effect_paths: Option<f64>,
}

/// Whether the ledger shows everything the run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceStatus {
    Complete,
    Incomplete,
}

/// Why the evidence is incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapKind {
    /// The ledger dropped entries while the run was recorded (of this run or another:
    /// the count is the process's).
    DroppedEntries,
    /// exec, attach, port-forward or proxy: effects inside a container (or behind a
    /// service) that the API never sees.
    ContainerAccess,
    /// Requests pathgate could not classify (the ledger has their request line only).
    UnclassifiedRequests,
    /// A mutation's intent was recorded but not its outcome (pathgate stopped mid-request).
    IntentWithoutOutcome,
    /// A mutation was forwarded but its answer was lost: it may or may not have happened.
    UnknownOutcome,
    /// A pod was deleted but pathgate did not fetch its owners first, so
    /// `direct_pod_delete` cannot be judged.
    UnknownPodOwner,
}

impl GapKind {
    /// The name used in the schema and in text output.
    pub fn as_str(self) -> &'static str {
        match self {
            GapKind::DroppedEntries => "dropped_entries",
            GapKind::ContainerAccess => "container_access",
            GapKind::UnclassifiedRequests => "unclassified_requests",
            GapKind::IntentWithoutOutcome => "intent_without_outcome",
            GapKind::UnknownOutcome => "unknown_outcome",
            GapKind::UnknownPodOwner => "unknown_pod_owner",
        }
    }
}

/// One reason the evidence is incomplete, with the requests it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub kind: GapKind,
    /// How many requests (or dropped entries) it concerns.
    pub count: u64,
    /// The first few trace ids concerned (at most [`Gap::MAX_TRACE_IDS`]).
    pub trace_ids: Vec<String>,
}

impl Gap {
    /// Trace ids kept per gap: enough to find the entries, bounded for long runs.
    pub const MAX_TRACE_IDS: usize = 10;
}

/// Evidence completeness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub status: EvidenceStatus,
    pub reasons: Vec<Gap>,
}

/// How many requests of each kind the run made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Outcome entries of the session (duplicates left out).
    pub requests: u64,
    pub reads: u64,
    /// Client-sent dry runs.
    pub dry_runs: u64,
    /// Forwarded mutations (any answer), dry runs excluded.
    pub mutations: u64,
    pub blocked: u64,
    /// Discovery, OpenAPI, `/version` and other non-resource requests.
    pub ignored: u64,
}

/// The time the run's entries span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeSpan {
    /// RFC 3339: the first request's `started_at`.
    pub started_at: String,
    /// RFC 3339: the last response's `ended_at` (or the last `started_at`).
    pub ended_at: String,
}

/// What one request was, at a glance: the timeline's row kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Read,
    DryRun,
    Mutation,
    Blocked,
    /// pathgate answered itself without forwarding for another reason (413, 503).
    NotForwarded,
    /// Discovery and other non-resource requests.
    Ignored,
    /// exec, attach, port-forward, proxy.
    Connect,
    Unclassified,
}

/// One request in the run's timeline (kept only when a report asks for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineRow {
    pub trace_id: String,
    pub started_at: String,
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
    pub kind: RequestKind,
    /// Categories of the violations this request caused.
    pub violations: Vec<Category>,
    pub payload_paths: Option<usize>,
    pub effect_paths: Option<usize>,
}

/// The verdict of one run (one session).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub session: String,
    pub triage: Triage,
    /// The policy modes the entries were recorded in (`observe`, `enforce`, `rehearse`).
    pub modes: Vec<&'static str>,
    /// True when pathgate turned mutations into dry runs (rehearse mode): their dry-run
    /// answers stand for the real ones.
    pub rehearsed: bool,
    pub time_span: Option<TimeSpan>,
    pub counts: Counts,
    pub violations: Vec<Violation>,
    pub blocked: Vec<Blocked>,
    /// Every request past a session budget, refused or not.
    pub budget_breaches: Vec<BudgetBreach>,
    pub rewritten: Vec<Rewritten>,
    pub scope: Scope,
    pub evidence: Evidence,
    pub final_state: FinalState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineRow>>,
}

impl Run {
    /// How many violations of `category` the run has.
    pub fn count(&self, category: Category) -> usize {
        self.violations
            .iter()
            .filter(|v| v.category == category)
            .count()
    }
}
