//! Pure policy: the rule catalog (PG001–PG019) and `decide`.
//!
//! Owns: rule ids and their documentation strings ([`catalog`]), the validated [`Policy`],
//! the decision for one classified request given the facts and the session's history
//! ([`decide`]), the findings that only the response can reveal
//! ([`findings_from_response`]), the rewrites a decision asks for, request fingerprints
//! ([`Fingerprint`]) and the in-memory session memory of dry runs, failures and
//! confirmation tokens ([`SessionStore`]), per-session budgets and what each request
//! spends of them ([`Budgets`], [`Spend`]), and the object patterns the gate and the
//! autopsy share ([`objects`]).
//!
//! Does not own: reading the config file (that is [`crate::config`]), fetching facts from
//! the apiserver or applying rewrites to the wire (that is [`crate::proxy`]).
//!
//! # How the proxy drives this module
//!
//! 1. `fingerprint = Fingerprint::of(&info, &analysis, query, headers, body)`; build a
//!    [`RequestContext`]. (A read without a body may defer its fingerprint instead:
//!    [`LazyFingerprint`] in a [`LazyContext`], with `decide_lazily` and
//!    `record_outcome_lazily` below; it is computed only if the session needs it.)
//! 2. If [`needs_target`] says so, GET the target object into [`Facts::target`].
//! 3. `decision = store.decide(&policy, &info, &analysis, &facts, &ctx, now)` — this calls
//!    the pure [`decide`], redeems a presented confirmation token when the decision asks
//!    for one, and issues a fresh token when confirmation is still needed.
//! 4. Act on `decision.action`: `Deny`/`Confirm` answer 403 with
//!    [`Decision::status_message`]; otherwise apply `decision.rewrites`, forward, and add
//!    [`Decision::warnings`] as `Warning` headers.
//! 5. On the response: `store.record_outcome(...)`, then [`findings_from_response`] for
//!    post-hoc findings (PG009 on 409, PG015 on a repeated failure).

mod budget;
mod catalog;
mod decide;
mod effect;
mod fingerprint;
mod messages;
pub mod objects;
mod session;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use budget::{counts_read_bytes, Budget, BudgetBreach, Budgets, DEFAULT_WINDOW_SECONDS};
pub use catalog::{catalog, RuleAction, RuleId, RuleInfo, UnknownRule};
pub use decide::{
    decide, findings_from_response, needs_target, target_path, CONFIRM_ANNOTATION,
    IMPERSONATION_REFUSAL,
};
pub use effect::{effect_digest, effect_paths, EffectBasis, Rehearsal};
pub use fingerprint::{Fingerprint, LazyFingerprint};
pub use objects::{Glob, ObjectPattern, ObjectPatternFile};
pub use session::{LazyContext, SessionError, SessionLimits, SessionStats, SessionStore};

/// How pathgate acts on its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Never blocks; records what `enforce` would have done.
    Observe,
    /// Applies every rule's action.
    #[default]
    Enforce,
    /// Forwards every mutation with `dryRun=All`.
    Rehearse,
}

impl Mode {
    /// The lowercase name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Enforce => "enforce",
            Mode::Rehearse => "rehearse",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?}; expected observe, enforce or rehearse")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "observe" => Ok(Mode::Observe),
            "enforce" => Ok(Mode::Enforce),
            "rehearse" => Ok(Mode::Rehearse),
            other => Err(UnknownMode(other.to_string())),
        }
    }
}

/// What a rule (or the whole decision) does with a request, weakest first: the strongest
/// action among the findings wins (`Deny > Confirm > Rewrite > Flag > Allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Forward unchanged.
    Allow,
    /// Forward, record, and warn the agent.
    Flag,
    /// Apply [`Decision::rewrites`], forward, and warn.
    Rewrite,
    /// Refuse with a one-time token ([`Decision::confirm`]).
    Confirm,
    /// Refuse with a 403 `Status`.
    Deny,
}

impl Action {
    /// Every action, weakest first: the closed `decision` and `action` label sets.
    pub const ALL: [Action; 5] = [
        Action::Allow,
        Action::Flag,
        Action::Rewrite,
        Action::Confirm,
        Action::Deny,
    ];

    /// The lowercase name used in the ledger and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Flag => "flag",
            Action::Rewrite => "rewrite",
            Action::Confirm => "confirm",
            Action::Deny => "deny",
        }
    }

    /// `true` when the request is not forwarded.
    pub fn blocks(self) -> bool {
        matches!(self, Action::Confirm | Action::Deny)
    }
}

/// A change pathgate makes to a request before forwarding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Rewrite {
    /// Add `dryRun=All` to the query. On a DELETE that carries a DeleteOptions body the
    /// apiserver ignores the query's options, so the body must get `"dryRun": ["All"]` too.
    AddDryRun,
    /// Set DeleteOptions.gracePeriodSeconds to `to`: in the query, and in the body when the
    /// body carries DeleteOptions (the body wins in the apiserver, so both must agree).
    SetGracePeriod { from: Option<i64>, to: i64 },
    /// Add `limit=N` to a LIST.
    AddLimit { limit: u64 },
}

/// One rule's verdict on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule, e.g. `PG004`.
    pub rule: RuleId,
    /// What the rule does with the request in the current mode (see [`Decision`]).
    pub action: Action,
    /// `PGxxx name: what was seen. How to comply.` — shown to the agent in a Warning or a
    /// Status. ASCII only.
    pub message: String,
}

/// How the agent can confirm a request that a rule gates behind confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfirmRequest {
    /// The one-time token; `None` until the caller issues one (see
    /// [`SessionStore::decide`] / [`Decision::attach_confirm_token`]). Never serialised:
    /// the ledger records that a confirmation was asked for, not the secret that passes it.
    #[serde(skip)]
    pub token: Option<String>,
    /// How long the token stays valid.
    pub window_seconds: u64,
    /// The `kubectl annotate` arguments naming the target object
    /// (`namespace prod`, `pods web-1 -n shop`); `None` when the request names no object,
    /// in which case only the `X-Pathgate-Confirm` header can carry the token.
    pub annotate_target: Option<String>,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The mode the decision was made in.
    pub mode: Mode,
    /// The action actually taken (in `observe` mode always `allow` or `flag`).
    pub action: Action,
    /// The action `enforce` would take, recorded in every mode.
    pub enforce_action: Action,
    /// Every rule that matched, in rule-id order.
    pub findings: Vec<Finding>,
    /// The changes the proxy must make before forwarding (empty unless `action` is
    /// `rewrite`).
    pub rewrites: Vec<Rewrite>,
    /// Messages that are not rule findings (rehearse and observe notices, dry-run notes).
    pub notices: Vec<String>,
    /// Set when `action` is `confirm`: how the agent confirms.
    pub confirm: Option<ConfirmRequest>,
    /// `true` when a confirmation token was redeemed and the request passes because of it.
    pub confirmed: bool,
    /// The budget PG019 found exceeded, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetBreach>,
}

/// Upper bound of one `Warning` header value: kubectl prints each on one line, and an
/// apiserver-like bound keeps a response's headers small.
const MAX_WARNING_BYTES: usize = 1024;

impl Decision {
    /// A decision with no findings: forward unchanged.
    pub fn allow(mode: Mode) -> Self {
        Decision {
            mode,
            action: Action::Allow,
            enforce_action: Action::Allow,
            findings: Vec::new(),
            rewrites: Vec::new(),
            notices: Vec::new(),
            confirm: None,
            confirmed: false,
            budget: None,
        }
    }

    /// The breach to answer `429 TooManyRequests` for: the request is refused, and every
    /// refusing finding is PG019's. A request another rule refuses too gets that rule's
    /// 403: waiting would not make it pass.
    pub fn budget_refusal(&self) -> Option<&BudgetBreach> {
        let only_budget = self
            .findings
            .iter()
            .filter(|f| f.action == self.action)
            .all(|f| f.rule == RuleId::PG019);
        (self.action == Action::Deny && only_budget)
            .then_some(self.budget.as_ref())
            .flatten()
    }

    /// The impersonation guard's verdict, whatever the mode or the rule overrides said:
    /// client-sent `Impersonate-*` headers under pathgate's own credentials would lend
    /// pathgate's identity to whoever the client names (PG017).
    pub fn deny_impersonation(&mut self) {
        self.action = Action::Deny;
        self.enforce_action = Action::Deny;
        if !self.findings.iter().any(|f| f.rule == RuleId::PG017) {
            self.findings.push(Finding {
                rule: RuleId::PG017,
                action: Action::Deny,
                message: format!("PG017 impersonation: {IMPERSONATION_REFUSAL}"),
            });
        }
    }

    /// The rule ids of all findings, in order.
    pub fn rule_ids(&self) -> Vec<&'static str> {
        self.findings.iter().map(|f| f.rule.as_str()).collect()
    }

    /// `Warning` header values (RFC 7234 `warn-code warn-agent "warn-text"`, code 299) for
    /// every finding and notice: `299 pathgate "pathgate PG012 secret-read: ..."`. kubectl
    /// prints each text on stderr as `Warning: pathgate PG012 ...`. Texts are ASCII, quotes
    /// and backslashes escaped, each value at most 1 KiB.
    pub fn warnings(&self) -> Vec<String> {
        self.findings
            .iter()
            .filter(|f| f.action != Action::Allow)
            .map(|f| f.message.as_str())
            .chain(self.notices.iter().map(String::as_str))
            .map(|text| warning_header_value(&format!("pathgate {text}")))
            .collect()
    }

    /// The message of the 403 `Status` when the request is refused (`deny` or `confirm`):
    /// the refusing findings, the notices (a refusal carries no `Warning` headers, so a
    /// note such as "the token presented is not valid" must travel in the message) and,
    /// for `confirm`, how to pass the token. `None` when the request is forwarded.
    pub fn status_message(&self) -> Option<String> {
        if !self.action.blocks() {
            return None;
        }
        let reasons: Vec<&str> = self
            .findings
            .iter()
            .filter(|f| f.action == self.action)
            .map(|f| f.message.as_str())
            .collect();
        let mut message = match self.action {
            Action::Deny => "pathgate denied this request:",
            _ => "pathgate needs confirmation for this request:",
        }
        .to_string();
        // A refusal the proxy adds (a rewrite it cannot apply) has no refusing finding,
        // only a notice.
        if !reasons.is_empty() {
            message.push(' ');
            message.push_str(&reasons.join(" | "));
        }
        for notice in &self.notices {
            message.push(' ');
            message.push_str(notice);
        }
        if let Some(confirm) = &self.confirm {
            message.push(' ');
            message.push_str(&messages::confirm_instructions(confirm));
        }
        Some(message)
    }

    /// Puts the one-time token the caller issued into [`Decision::confirm`].
    pub fn attach_confirm_token(&mut self, token: String) {
        if let Some(confirm) = &mut self.confirm {
            confirm.token = Some(token);
        }
    }
}

/// The `Warning` a successful dry run of a patch or update answers with: what the same
/// request would change, measured on the object before and the dry run's answer
/// (`299 pathgate "pathgate: this dry run would change 1 field: /data/mode"`).
pub fn rehearsal_warning(effect_paths: &[String]) -> String {
    const SHOWN: usize = 8;
    let count = effect_paths.len();
    let text = if count == 0 {
        "pathgate: this dry run would change no field".to_string()
    } else {
        let mut shown = effect_paths[..count.min(SHOWN)].join(", ");
        if count > SHOWN {
            shown.push_str(&format!(", and {} more", count - SHOWN));
        }
        let noun = if count == 1 { "field" } else { "fields" };
        format!("pathgate: this dry run would change {count} {noun}: {shown}")
    };
    warning_header_value(&text)
}

/// Formats one `Warning` header value: ASCII, escaped, bounded.
fn warning_header_value(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len().min(MAX_WARNING_BYTES) + 16);
    for c in text.chars() {
        if escaped.len() >= MAX_WARNING_BYTES {
            escaped.push_str("...");
            break;
        }
        match c {
            '"' | '\\' => {
                escaped.push('\\');
                escaped.push(c);
            }
            // Header values must be visible ASCII (or space); anything else becomes '?'
            // rather than a value hyper refuses or a client mis-decodes.
            ' '..='~' => escaped.push(c),
            _ => escaped.push('?'),
        }
    }
    format!("299 pathgate \"{escaped}\"")
}

/// A namespace name or a glob over names (`agent-*`, `*-staging`); `*` matches any run of
/// characters, including none.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NamespacePattern(String);

/// A namespace pattern that could never match a namespace name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a namespace name or glob: use 1-63 characters of a-z, 0-9, '-' and '*'")]
pub struct InvalidNamespacePattern(pub String);

impl NamespacePattern {
    /// Validates a pattern: lowercase RFC 1123 label characters plus `*`.
    pub fn new(pattern: &str) -> Result<Self, InvalidNamespacePattern> {
        let valid = !pattern.is_empty()
            && pattern.len() <= 63
            && pattern
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*');
        if valid {
            Ok(NamespacePattern(pattern.to_string()))
        } else {
            Err(InvalidNamespacePattern(pattern.to_string()))
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `namespace` matches (a namespace pattern holds no `?`, so only `*` is a
    /// wildcard).
    pub fn matches(&self, namespace: &str) -> bool {
        objects::glob_match(self.0.as_bytes(), namespace.as_bytes())
    }
}

impl Serialize for NamespacePattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// `safety_gates:` — the switches of the main gates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SafetyGates {
    /// PG010 denies (instead of flagging) a mutation without an earlier successful server
    /// dry run of the same request in the session.
    pub dry_run_default: bool,
    /// PG001: more touched (or changed) leaf paths than this is a broad patch.
    pub max_patch_keys: u32,
    /// PG004 flags (instead of denying) the deletion of a controller-owned pod.
    pub allow_direct_deletion: bool,
    /// PG005 rewrites (instead of flagging) a grace period below the minimum.
    pub require_grace_period: bool,
    /// PG002 flags (instead of denying) a PUT of a whole object.
    pub force_full_replace_allowed: bool,
}

impl Default for SafetyGates {
    fn default() -> Self {
        SafetyGates {
            dry_run_default: true,
            max_patch_keys: 3,
            allow_direct_deletion: false,
            require_grace_period: true,
            force_full_replace_allowed: false,
        }
    }
}

/// `schema_enforcement:` — identity and list-size checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaEnforcement {
    /// Mutations must name their object: PG006 (deletecollection) denies instead of flags.
    pub strict_identity: bool,
    /// PG011 flags LISTs without limit or selector and all-namespace WATCHes without
    /// selector (when `false` and no limit is set, PG011 is off).
    pub label_selector_filter: bool,
    /// PG011 rewrites an unbounded LIST to `limit=N`.
    pub discovery_payload_limit: Option<u64>,
}

impl Default for SchemaEnforcement {
    fn default() -> Self {
        SchemaEnforcement {
            strict_identity: true,
            label_selector_filter: true,
            discovery_payload_limit: None,
        }
    }
}

/// `retry_loop:` — PG015's notion of a loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryLoop {
    /// Failures older than this do not count.
    pub window_seconds: u64,
    /// This many failures of the same request within the window is a loop.
    pub threshold: u32,
}

impl Default for RetryLoop {
    fn default() -> Self {
        RetryLoop {
            window_seconds: 300,
            threshold: 3,
        }
    }
}

/// The validated policy, frozen after loading. Fields are public so tests and the CLI can
/// build variants; [`crate::config`] is the validating constructor for files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub mode: Mode,
    pub safety_gates: SafetyGates,
    pub schema_enforcement: SchemaEnforcement,
    /// Per-rule overrides; they win over the defaults derived from the gates.
    pub rules: BTreeMap<RuleId, RuleAction>,
    /// PG007: deleting one of these namespaces needs confirmation.
    pub protected_namespaces: Vec<NamespacePattern>,
    /// PG014: mutations are allowed only in these namespaces; empty means everywhere.
    pub mutation_namespaces: Vec<NamespacePattern>,
    /// PG018: objects no request of the session may change.
    pub protected_objects: Vec<ObjectPattern>,
    /// PG005: the smallest grace period a DELETE may carry.
    pub min_grace_period_seconds: i64,
    /// How long a confirmation token stays valid.
    pub confirm_window_seconds: u64,
    pub retry_loop: RetryLoop,
    /// PG019: per-session budgets; all off by default.
    pub budgets: Budgets,
}

/// Namespaces whose loss breaks the cluster itself.
pub const DEFAULT_PROTECTED_NAMESPACES: [&str; 4] =
    ["kube-system", "kube-public", "kube-node-lease", "default"];

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::default(),
            safety_gates: SafetyGates::default(),
            schema_enforcement: SchemaEnforcement::default(),
            rules: BTreeMap::new(),
            protected_namespaces: DEFAULT_PROTECTED_NAMESPACES
                .iter()
                .map(|ns| NamespacePattern(ns.to_string()))
                .collect(),
            mutation_namespaces: Vec::new(),
            protected_objects: Vec::new(),
            min_grace_period_seconds: 30,
            confirm_window_seconds: 300,
            retry_loop: RetryLoop::default(),
            budgets: Budgets::default(),
        }
    }
}

impl Policy {
    /// The action `rule` takes when it matches: the override from `rules:` if any,
    /// otherwise the default the gates imply. A `rewrite` that cannot be carried out
    /// (PG011 without `discovery_payload_limit`, or a rule without a rewrite) acts as
    /// `flag`; [`crate::config`] refuses such files, this only guards hand-built values.
    pub fn rule_action(&self, rule: RuleId) -> RuleAction {
        let action = self
            .rules
            .get(&rule)
            .copied()
            .unwrap_or_else(|| self.gate_default(rule));
        let rewrite_possible = match rule {
            RuleId::PG005 => true,
            RuleId::PG011 => self.schema_enforcement.discovery_payload_limit.is_some(),
            _ => false,
        };
        if action == RuleAction::Rewrite && !rewrite_possible {
            RuleAction::Flag
        } else {
            action
        }
    }

    /// The action the gates imply for `rule`, ignoring `rules:` overrides.
    pub fn gate_default(&self, rule: RuleId) -> RuleAction {
        let gates = &self.safety_gates;
        let schema = &self.schema_enforcement;
        let pick = |on: bool, yes: RuleAction, no: RuleAction| if on { yes } else { no };
        match rule {
            RuleId::PG002 => pick(
                gates.force_full_replace_allowed,
                RuleAction::Flag,
                RuleAction::Deny,
            ),
            RuleId::PG004 => pick(
                gates.allow_direct_deletion,
                RuleAction::Flag,
                RuleAction::Deny,
            ),
            RuleId::PG005 => pick(
                gates.require_grace_period,
                RuleAction::Rewrite,
                RuleAction::Flag,
            ),
            RuleId::PG006 => pick(schema.strict_identity, RuleAction::Deny, RuleAction::Flag),
            RuleId::PG010 => pick(gates.dry_run_default, RuleAction::Deny, RuleAction::Flag),
            RuleId::PG011 => {
                if schema.discovery_payload_limit.is_some() {
                    RuleAction::Rewrite
                } else {
                    pick(
                        schema.label_selector_filter,
                        RuleAction::Flag,
                        RuleAction::Off,
                    )
                }
            }
            other => other.info().default_action,
        }
    }

    /// Every rule's effective action, in id order (what `pathgate check-config` prints).
    pub fn effective_rules(&self) -> BTreeMap<RuleId, RuleAction> {
        RuleId::ALL
            .into_iter()
            .map(|rule| (rule, self.rule_action(rule)))
            .collect()
    }

    /// Whether mutations in `namespace` are in scope (PG014).
    pub fn mutation_allowed_in(&self, namespace: &str) -> bool {
        self.mutation_namespaces.is_empty()
            || self
                .mutation_namespaces
                .iter()
                .any(|p| p.matches(namespace))
    }

    /// Whether `namespace` is protected (PG007).
    pub fn is_protected(&self, namespace: &str) -> bool {
        self.protected_namespaces
            .iter()
            .any(|p| p.matches(namespace))
    }
}

/// What the apiserver said about the request's target object, fetched only when a rule
/// needs it ([`needs_target`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TargetFact {
    /// Not fetched (no rule needed it, or the fetch failed).
    #[default]
    Unknown,
    /// The object does not exist (404).
    Missing,
    /// The object as JSON.
    Present(serde_json::Value),
}

/// Facts from the cluster that rules may need.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Facts {
    /// The object the request names (for a create: the object the body names).
    pub target: TargetFact,
    /// Effect scope: the leaf paths that differ between the object before and after the
    /// mutation ([`effect_paths`] of the pre-image and a dry-run or response post-image),
    /// when the proxy measured it. PG001 judges breadth on this when present.
    pub effect_paths: Option<Vec<String>>,
}

/// What the proxy knows about a request beyond its path and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The session the request belongs to.
    pub session: String,
    /// The request's [`Fingerprint`] (dryRun excluded), the key of the session memory.
    pub fingerprint: Fingerprint,
    /// The client sent `Impersonate-*` headers.
    pub impersonation_headers: bool,
    /// The request reaches the apiserver under pathgate's own credentials (sidecar and
    /// impersonate auth modes). In passthrough mode the client's own token carries any
    /// `Impersonate-*` header and the apiserver checks the client's `impersonate` RBAC, so
    /// PG017 does not apply.
    pub pathgate_credentials: bool,
    /// The token of the `X-Pathgate-Confirm` header, if any.
    pub confirm_token: Option<String>,
}

/// What the session remembers about this request's fingerprint; built by
/// [`SessionStore::session_facts`], or by hand in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionFacts {
    /// A server dry run of the same request succeeded earlier in the session (PG010).
    pub dry_run_succeeded: bool,
    /// Failures of the same request within `retry_loop.window_seconds` (PG015).
    pub recent_failures: u32,
    /// A confirmation token for this request was redeemed (it passes once).
    pub confirmed: bool,
    /// The first budget of the session this request would exceed (PG019).
    pub budget: Option<BudgetBreach>,
}

impl Facts {
    /// The confirmation token the agent put on the target object with
    /// `kubectl annotate ... pathgate.dev/confirm=<token>`.
    pub fn confirm_annotation(&self) -> Option<&str> {
        match &self.target {
            TargetFact::Present(object) => object
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(CONFIRM_ANNOTATION))
                .and_then(|v| v.as_str()),
            _ => None,
        }
    }
}
