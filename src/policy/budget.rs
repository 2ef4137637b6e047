//! Per-session budgets (PG019 session-budget): what a request spends, what a session has
//! spent, and the first budget a request would exceed.
//!
//! Owns: the validated `budgets:` policy ([`Budgets`]), the budgets' names ([`Budget`]),
//! what one request spends ([`Spend::of`]), a session's counters ([`Usage`]) and the
//! breach a refusal or a flag reports ([`BudgetBreach`]). Pure: time is passed in. Does not
//! own where the counters live (the session memory, [`super::SessionStore`]) or when read
//! bytes are known (the proxy, at the end of a read's answer).
//!
//! Counting rules, in one place (docs/rules.md, PG019):
//! - only resource requests count; discovery and other non-resource requests neither count
//!   nor are refused (clients need them to make any request, and cache them);
//! - a request is counted when the gate lets it through, before it is forwarded, so that
//!   concurrent requests cannot overshoot a budget; a refused request counts nowhere;
//! - `mutations` and `deletes` count what acts for real: a dry run the apiserver honours
//!   (the client's, or rehearse mode's) is no mutation;
//! - `read_bytes` counts the answer bytes of forwarded gets, lists and watches when the
//!   answer ends; the read that crosses the budget is answered, the next one is refused;
//! - `requests_per_window` counts every resource request, dry runs and reads included, in
//!   a sliding window of `window_seconds`.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::classify::{Analysis, RequestInfo, Verb};

use super::Mode;

/// `budgets:` — every budget off (`None`) unless set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Budgets {
    /// Forwarded mutations that act for real, per session.
    pub mutations: Option<u64>,
    /// Forwarded deletes, deletecollections and pod evictions that act for real.
    pub deletes: Option<u64>,
    /// Answer bytes of forwarded reads and watches, per session.
    pub read_bytes: Option<u64>,
    /// Resource requests let through within any `window_seconds`.
    pub requests_per_window: Option<u32>,
    /// The sliding window of `requests_per_window`.
    pub window_seconds: u64,
}

/// `budgets.window_seconds` when left out.
pub const DEFAULT_WINDOW_SECONDS: u64 = 60;

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            mutations: None,
            deletes: None,
            read_bytes: None,
            requests_per_window: None,
            window_seconds: DEFAULT_WINDOW_SECONDS,
        }
    }
}

impl Budgets {
    /// Whether any budget is set (none is by default: nothing is counted then).
    pub fn any(&self) -> bool {
        self.mutations.is_some()
            || self.deletes.is_some()
            || self.read_bytes.is_some()
            || self.requests_per_window.is_some()
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.window_seconds)
    }
}

/// One budget, by the name of its key under `budgets:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    Mutations,
    Deletes,
    ReadBytes,
    RequestsPerWindow,
}

impl Budget {
    /// The key's name under `budgets:` (and the ledger's `decision.budget.name`).
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Mutations => "mutations",
            Budget::Deletes => "deletes",
            Budget::ReadBytes => "read_bytes",
            Budget::RequestsPerWindow => "requests_per_window",
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A budget a request would exceed: which, its limit and what the session has used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BudgetBreach {
    pub budget: Budget,
    pub limit: u64,
    /// What the session has used of it (bytes for `read_bytes`, requests in the window for
    /// `requests_per_window`), before this request.
    pub used: u64,
    /// Seconds until the window frees a slot; `None` for a budget that lasts the session,
    /// which no wait frees (client-go retries a 429 only when it carries `Retry-After`).
    pub retry_after_seconds: Option<u64>,
}

impl BudgetBreach {
    /// What the agent is told (after `PG019 session-budget: `).
    pub fn text(&self) -> String {
        let key = format!("budgets.{}", self.budget);
        match self.budget {
            Budget::RequestsPerWindow => format!(
                "this session has made {} requests in its sliding window ({key} is {}); wait \
                 {} seconds and retry, or make fewer requests (one list instead of many gets, \
                 a watch instead of polling).",
                self.used,
                self.limit,
                self.retry_after_seconds.unwrap_or(1),
            ),
            Budget::ReadBytes => format!(
                "this session has read {} bytes from the apiserver ({key} is {}); no further \
                 read is allowed in this session. Work with what you have read, or ask an \
                 operator for a larger budget or a new session.",
                self.used, self.limit,
            ),
            Budget::Mutations | Budget::Deletes => format!(
                "this session has used {} of its {} {} ({key}); no further one is allowed in \
                 this session. Check what the earlier ones did (a dry run still passes: \
                 --dry-run=server), or ask an operator for a larger budget or a new session.",
                self.used,
                self.limit,
                if self.budget == Budget::Deletes {
                    "deletes"
                } else {
                    "mutations"
                },
            ),
        }
    }
}

/// What one request spends of its session's budgets when it is let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spend {
    /// A mutation that acts for real.
    pub mutation: bool,
    /// A delete, deletecollection or eviction that acts for real.
    pub delete: bool,
    /// A get, list or watch: its answer bytes count once it ends, so it is refused once
    /// `read_bytes` is used up.
    pub read: bool,
    /// A resource request: one slot of `requests_per_window`.
    pub request: bool,
}

impl Spend {
    /// What the request spends in `mode`. Discovery and non-resource requests spend nothing.
    pub fn of(info: &RequestInfo, analysis: &Analysis, mode: Mode) -> Spend {
        if info.is_discovery || !info.is_resource_request {
            return Spend::default();
        }
        let dry_run = analysis.dry_run && info.honours_dry_run();
        let mutation = info.is_mutation() && !dry_run && mode != Mode::Rehearse;
        let deletes =
            matches!(info.verb, Verb::Delete | Verb::DeleteCollection) || info.is_pod_eviction();
        Spend {
            mutation,
            delete: mutation && deletes,
            read: counts_read_bytes(info),
            request: true,
        }
    }
}

/// Whether the answer bytes of `info` count against `budgets.read_bytes`: gets (logs
/// included), lists and watches of resources.
pub fn counts_read_bytes(info: &RequestInfo) -> bool {
    info.is_resource_request
        && !info.is_discovery
        && matches!(info.verb, Verb::Get | Verb::List | Verb::Watch)
}

/// A session's counters. Each counts only while its budget is set.
#[derive(Debug, Default)]
pub struct Usage {
    mutations: u64,
    deletes: u64,
    read_bytes: u64,
    /// When the requests of the sliding window were let through, oldest first; never
    /// longer than `requests_per_window` (validation bounds it).
    window: VecDeque<Instant>,
}

impl Usage {
    /// The first budget `spend` would exceed, lifetime budgets first: a wait cannot free
    /// those, so a `Retry-After` for the window must not promise what they would refuse.
    pub fn breach(
        &mut self,
        budgets: &Budgets,
        spend: Spend,
        now: Instant,
    ) -> Option<BudgetBreach> {
        let lifetime = |budget, limit: Option<u64>, used: u64, spends: bool| {
            let limit = limit.filter(|limit| spends && used >= *limit)?;
            Some(BudgetBreach {
                budget,
                limit,
                used,
                retry_after_seconds: None,
            })
        };
        lifetime(
            Budget::Mutations,
            budgets.mutations,
            self.mutations,
            spend.mutation,
        )
        .or_else(|| lifetime(Budget::Deletes, budgets.deletes, self.deletes, spend.delete))
        .or_else(|| {
            lifetime(
                Budget::ReadBytes,
                budgets.read_bytes,
                self.read_bytes,
                spend.read,
            )
        })
        .or_else(|| self.window_breach(budgets, spend, now))
    }

    fn window_breach(
        &mut self,
        budgets: &Budgets,
        spend: Spend,
        now: Instant,
    ) -> Option<BudgetBreach> {
        let limit = budgets.requests_per_window.filter(|_| spend.request)?;
        self.slide(budgets.window(), now);
        let used = self.window.len();
        if used < limit as usize {
            return None;
        }
        // The oldest request leaves the window first; rounded up, so a client that waits
        // exactly this long finds the slot free.
        let oldest = self.window[used - limit as usize];
        let frees_in = budgets
            .window()
            .saturating_sub(now.saturating_duration_since(oldest));
        Some(BudgetBreach {
            budget: Budget::RequestsPerWindow,
            limit: limit.into(),
            used: used as u64,
            retry_after_seconds: Some(ceil_seconds(frees_in).max(1)),
        })
    }

    /// Counts `spend` against the budgets that are set.
    pub fn charge(&mut self, budgets: &Budgets, spend: Spend, now: Instant) {
        if spend.mutation && budgets.mutations.is_some() {
            self.mutations += 1;
        }
        if spend.delete && budgets.deletes.is_some() {
            self.deletes += 1;
        }
        if let Some(limit) = budgets.requests_per_window.filter(|_| spend.request) {
            self.slide(budgets.window(), now);
            // Past the limit only in observe mode (a breach is flagged, not refused): the
            // log keeps what the window needs, so it stays bounded by the limit.
            if self.window.len() >= limit as usize {
                self.window.pop_front();
            }
            self.window.push_back(now);
        }
    }

    /// Adds a read's answer bytes, once the answer has ended.
    pub fn add_read_bytes(&mut self, budgets: &Budgets, bytes: u64) {
        if budgets.read_bytes.is_some() {
            self.read_bytes = self.read_bytes.saturating_add(bytes);
        }
    }

    /// Forgets the requests that have left the window.
    fn slide(&mut self, window: Duration, now: Instant) {
        while self
            .window
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.window.pop_front();
        }
    }
}

fn ceil_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::policy::tests::builders::{ctx, discovery, req, Req};
    use crate::policy::{Action, Facts, Policy, RuleAction, RuleId, SessionStore};

    const NONE: Spend = Spend {
        mutation: false,
        delete: false,
        read: false,
        request: false,
    };
    const READ: Spend = Spend {
        read: true,
        request: true,
        ..NONE
    };
    const MUTATION: Spend = Spend {
        mutation: true,
        request: true,
        ..NONE
    };
    const DELETE: Spend = Spend {
        delete: true,
        ..MUTATION
    };
    const REQUEST: Spend = Spend {
        request: true,
        ..NONE
    };

    #[test]
    fn what_each_request_spends() {
        let eviction = req(Verb::Create, "pods")
            .ns("shop")
            .name("web")
            .sub("eviction");
        let token = req(Verb::Create, "serviceaccounts")
            .ns("shop")
            .name("bot")
            .sub("token")
            .dry_run();
        let cases: [(&str, Req, Mode, Spend); 12] = [
            (
                "get",
                req(Verb::Get, "pods").ns("shop").name("web"),
                Mode::Enforce,
                READ,
            ),
            (
                "list",
                req(Verb::List, "pods").ns("shop"),
                Mode::Enforce,
                READ,
            ),
            (
                "watch",
                req(Verb::Watch, "pods").ns("shop"),
                Mode::Enforce,
                READ,
            ),
            (
                "logs",
                req(Verb::Get, "pods").ns("shop").name("web").sub("log"),
                Mode::Enforce,
                READ,
            ),
            (
                "patch",
                req(Verb::Patch, "configmaps").ns("shop").name("c"),
                Mode::Enforce,
                MUTATION,
            ),
            (
                "patch observed",
                req(Verb::Patch, "configmaps").ns("shop").name("c"),
                Mode::Observe,
                MUTATION,
            ),
            (
                "dry-run patch",
                req(Verb::Patch, "configmaps")
                    .ns("shop")
                    .name("c")
                    .dry_run(),
                Mode::Enforce,
                REQUEST,
            ),
            (
                "rehearsed patch",
                req(Verb::Patch, "configmaps").ns("shop").name("c"),
                Mode::Rehearse,
                REQUEST,
            ),
            (
                "delete",
                req(Verb::Delete, "pods").ns("shop").name("web"),
                Mode::Enforce,
                DELETE,
            ),
            (
                "deletecollection",
                req(Verb::DeleteCollection, "pods").ns("shop"),
                Mode::Enforce,
                DELETE,
            ),
            ("eviction", eviction, Mode::Enforce, DELETE),
            // A TokenRequest ignores dryRun: it acts, so it is a mutation.
            ("token request with dryRun", token, Mode::Enforce, MUTATION),
        ];
        for (name, r, mode, expected) in cases {
            assert_eq!(Spend::of(&r.info, &r.analysis, mode), expected, "{name}");
        }
        let api = discovery("/apis");
        assert_eq!(
            Spend::of(&api.info, &api.analysis, Mode::Enforce),
            NONE,
            "discovery"
        );
    }

    fn budgets(edit: impl FnOnce(&mut Budgets)) -> Budgets {
        let mut budgets = Budgets::default();
        edit(&mut budgets);
        budgets
    }

    /// One step of a session: at `at` seconds, `spend` meets `expected` (the breached
    /// budget and what was used); a request that is not refused is charged.
    type Step = (u64, Spend, Option<(Budget, u64)>);

    fn run_steps(name: &str, budgets: Budgets, steps: &[Step]) -> Usage {
        let t0 = Instant::now();
        let mut usage = Usage::default();
        for (index, (at, spend, expected)) in steps.iter().enumerate() {
            let now = t0 + Duration::from_secs(*at);
            let breach = usage.breach(&budgets, *spend, now);
            assert_eq!(
                breach.map(|b| (b.budget, b.used)),
                *expected,
                "{name}: step {index}"
            );
            if breach.is_none() {
                usage.charge(&budgets, *spend, now);
            }
        }
        usage
    }

    #[test]
    fn counters_refuse_past_each_budget() {
        use Budget::*;
        let cases: Vec<(&str, Budgets, Vec<Step>)> = vec![
            (
                "two mutations, the third refused",
                budgets(|b| b.mutations = Some(2)),
                vec![
                    (0, MUTATION, None),
                    (1, MUTATION, None),
                    (2, MUTATION, Some((Mutations, 2))),
                ],
            ),
            (
                "reads and dry runs do not spend mutations",
                budgets(|b| b.mutations = Some(1)),
                vec![
                    (0, READ, None),
                    (0, REQUEST, None),
                    (0, MUTATION, None),
                    (0, REQUEST, None),
                    (0, MUTATION, Some((Mutations, 1))),
                ],
            ),
            (
                "a delete spends both budgets",
                budgets(|b| {
                    b.mutations = Some(2);
                    b.deletes = Some(1);
                }),
                vec![
                    (0, DELETE, None),
                    (0, DELETE, Some((Deletes, 1))),
                    (0, MUTATION, None),
                    (0, MUTATION, Some((Mutations, 2))),
                ],
            ),
            (
                "a zero budget refuses the first",
                budgets(|b| b.deletes = Some(0)),
                vec![(0, MUTATION, None), (0, DELETE, Some((Deletes, 0)))],
            ),
            (
                "a budget that is off counts nothing",
                budgets(|b| b.deletes = Some(5)),
                vec![
                    (0, MUTATION, None),
                    (0, MUTATION, None),
                    (0, MUTATION, None),
                ],
            ),
            (
                "the window refuses the third within 10 s, frees a slot after it",
                budgets(|b| {
                    b.requests_per_window = Some(2);
                    b.window_seconds = 10;
                }),
                vec![
                    (0, READ, None),
                    (4, MUTATION, None),
                    (9, REQUEST, Some((RequestsPerWindow, 2))),
                    (10, READ, None),
                    (13, READ, Some((RequestsPerWindow, 2))),
                    (14, READ, None),
                ],
            ),
            (
                "lifetime budgets are reported before the window",
                budgets(|b| {
                    b.mutations = Some(1);
                    b.requests_per_window = Some(1);
                }),
                vec![
                    (0, MUTATION, None),
                    (1, MUTATION, Some((Mutations, 1))),
                    (2, READ, Some((RequestsPerWindow, 1))),
                ],
            ),
        ];
        for (name, budgets, steps) in cases {
            run_steps(name, budgets, &steps);
        }
    }

    #[test]
    fn the_window_says_when_it_frees_a_slot() {
        let budgets = budgets(|b| {
            b.requests_per_window = Some(2);
            b.window_seconds = 10;
        });
        let t0 = Instant::now();
        let mut usage = Usage::default();
        usage.charge(&budgets, READ, t0);
        usage.charge(&budgets, READ, t0 + Duration::from_millis(3_500));
        let mut at = |ms| usage_breach(&mut usage, &budgets, t0 + Duration::from_millis(ms));
        // The oldest leaves at 10 s: 6.5 s later, rounded up.
        assert_eq!(at(3_500), Some(7));
        assert_eq!(at(9_000), Some(1));
        assert_eq!(at(9_999), Some(1), "never 0: client-go would retry at once");
        assert_eq!(at(10_000), None);
        let lifetime =
            Usage::default().breach(&self::budgets(|b| b.mutations = Some(0)), MUTATION, t0);
        assert_eq!(lifetime.unwrap().retry_after_seconds, None);
    }

    fn usage_breach(usage: &mut Usage, budgets: &Budgets, now: Instant) -> Option<u64> {
        usage.breach(budgets, READ, now)?.retry_after_seconds
    }

    #[test]
    fn read_bytes_refuse_the_read_after_the_one_that_crossed() {
        let budgets = budgets(|b| b.read_bytes = Some(1_000));
        let now = Instant::now();
        let mut usage = Usage::default();
        assert_eq!(usage.breach(&budgets, READ, now), None);
        usage.add_read_bytes(&budgets, 999);
        assert_eq!(usage.breach(&budgets, READ, now), None);
        usage.add_read_bytes(&budgets, 5_000);
        let breach = usage.breach(&budgets, READ, now).unwrap();
        assert_eq!(
            (breach.budget, breach.limit, breach.used),
            (Budget::ReadBytes, 1_000, 5_999)
        );
        assert_eq!(
            usage.breach(&budgets, MUTATION, now),
            None,
            "mutations still pass"
        );
        let text = breach.text();
        assert!(
            text.contains("5999 bytes") && text.contains("budgets.read_bytes is 1000"),
            "{text}"
        );
    }

    #[test]
    fn the_window_log_stays_bounded_by_its_limit() {
        let budgets = budgets(|b| b.requests_per_window = Some(3));
        let now = Instant::now();
        let mut usage = Usage::default();
        for _ in 0..100 {
            usage.charge(&budgets, REQUEST, now);
        }
        assert_eq!(usage.window.len(), 3);
    }

    fn store_decide(
        store: &SessionStore,
        policy: &Policy,
        r: &Req,
        at: Instant,
    ) -> crate::policy::Decision {
        store.decide(policy, &r.info, &r.analysis, &Facts::default(), &ctx(), at)
    }

    fn budget_policy(mode: Mode) -> Policy {
        let mut policy = Policy {
            mode,
            ..Policy::default()
        };
        policy.rules.insert(RuleId::PG010, RuleAction::Off);
        policy.budgets.mutations = Some(2);
        policy
    }

    #[test]
    fn the_store_refuses_the_third_mutation_and_names_the_budget() {
        let store = SessionStore::default();
        let policy = budget_policy(Mode::Enforce);
        let patch = req(Verb::Patch, "configmaps")
            .ns("shop")
            .name("c")
            .paths(&["/data/a"]);
        let now = Instant::now();
        for _ in 0..2 {
            let decision = store_decide(&store, &policy, &patch, now);
            assert_eq!(decision.action, Action::Allow);
        }
        // Dry runs pass and do not count.
        let dry = store_decide(&store, &policy, &patch.clone().dry_run(), now);
        assert_eq!(dry.action, Action::Allow);
        let third = store_decide(&store, &policy, &patch, now);
        assert_eq!(third.action, Action::Deny);
        assert_eq!(third.rule_ids(), vec!["PG019"]);
        let breach = third.budget_refusal().expect("a budget refusal");
        assert_eq!(
            (breach.budget, breach.limit, breach.used),
            (Budget::Mutations, 2, 2)
        );
        let message = third.status_message().unwrap();
        assert!(
            message.contains("PG019 session-budget")
                && message.contains("2 of its 2 mutations (budgets.mutations)"),
            "{message}"
        );
        // Refused requests spend nothing: the used amount stays at the limit.
        let again = store_decide(&store, &policy, &patch, now);
        assert_eq!(again.budget.unwrap().used, 2);
        // Another session has its own budget.
        let other = crate::policy::RequestContext {
            session: "s2".into(),
            ..ctx()
        };
        let decision = store.decide(
            &policy,
            &patch.info,
            &patch.analysis,
            &Facts::default(),
            &other,
            now,
        );
        assert_eq!(decision.action, Action::Allow);
    }

    #[test]
    fn observe_mode_flags_a_breach_and_keeps_counting() {
        let store = SessionStore::default();
        let policy = budget_policy(Mode::Observe);
        let patch = req(Verb::Patch, "configmaps")
            .ns("shop")
            .name("c")
            .paths(&["/data/a"]);
        let now = Instant::now();
        let decisions: Vec<_> = (0..4)
            .map(|_| store_decide(&store, &policy, &patch, now))
            .collect();
        assert_eq!(decisions[1].action, Action::Allow);
        for (decision, used) in decisions[2..].iter().zip([2, 3]) {
            assert_eq!(decision.action, Action::Flag);
            assert_eq!(decision.enforce_action, Action::Deny);
            assert_eq!(decision.budget.unwrap().used, used);
            assert_eq!(decision.budget_refusal(), None, "observe never refuses");
        }
    }

    #[test]
    fn a_budget_refusal_is_a_403_when_another_rule_denies_too() {
        let store = SessionStore::default();
        let mut policy = budget_policy(Mode::Enforce);
        policy.budgets.mutations = Some(0);
        policy.mutation_namespaces = vec![crate::policy::NamespacePattern::new("agent").unwrap()];
        let patch = req(Verb::Patch, "configmaps")
            .ns("shop")
            .name("c")
            .paths(&["/data/a"]);
        let decision = store_decide(&store, &policy, &patch, Instant::now());
        assert_eq!(decision.rule_ids(), vec!["PG014", "PG019"]);
        assert_eq!(decision.budget_refusal(), None);
        assert!(decision.budget.is_some());
    }

    #[test]
    fn a_dry_run_past_the_window_is_refused_not_let_through() {
        let store = SessionStore::default();
        let mut policy = budget_policy(Mode::Enforce);
        policy.budgets.requests_per_window = Some(1);
        let dry = req(Verb::Patch, "configmaps")
            .ns("shop")
            .name("c")
            .paths(&["/data/a"])
            .dry_run();
        let now = Instant::now();
        assert_eq!(
            store_decide(&store, &policy, &dry, now).action,
            Action::Allow
        );
        let second = store_decide(&store, &policy, &dry, now);
        assert_eq!(second.action, Action::Deny);
        assert_eq!(
            second.budget_refusal().unwrap().retry_after_seconds,
            Some(60)
        );
    }

    #[test]
    fn read_bytes_are_counted_in_the_store_after_the_answer() {
        let store = SessionStore::default();
        let mut policy = Policy::default();
        policy.budgets.read_bytes = Some(100);
        let get = req(Verb::Get, "configmaps").ns("shop").name("c");
        let now = Instant::now();
        assert_eq!(
            store_decide(&store, &policy, &get, now).action,
            Action::Allow
        );
        store.record_read_bytes("s1", &policy.budgets, 150, now);
        let refused = store_decide(&store, &policy, &get, now);
        assert_eq!(refused.action, Action::Deny);
        assert_eq!(refused.budget.unwrap().used, 150);
        assert_eq!(refused.budget.unwrap().retry_after_seconds, None);
    }

    #[test]
    fn a_rule_that_is_off_counts_nothing() {
        let store = SessionStore::default();
        let mut off = Policy::default();
        off.rules.insert(RuleId::PG010, RuleAction::Off);
        off.budgets.mutations = Some(1);
        let mut on = off.clone();
        off.rules.insert(RuleId::PG019, RuleAction::Off);
        let patch = req(Verb::Patch, "configmaps")
            .ns("shop")
            .name("c")
            .paths(&["/data/a"]);
        let now = Instant::now();
        let decide = |policy: &Policy| {
            store
                .decide(
                    policy,
                    &patch.info,
                    &patch.analysis,
                    &Facts::default(),
                    &ctx(),
                    now,
                )
                .action
        };
        for _ in 0..3 {
            assert_eq!(decide(&off), Action::Allow);
        }
        assert_eq!(decide(&on), Action::Allow, "nothing was counted while off");
        assert_eq!(decide(&on), Action::Deny);
        on.budgets.mutations = None;
        assert_eq!(decide(&on), Action::Allow, "a budget unset is off");
    }

    #[test]
    fn concurrent_requests_of_a_session_never_overshoot_a_budget() {
        let store = SessionStore::default();
        let mut policy = budget_policy(Mode::Enforce);
        policy.budgets.mutations = Some(5);
        let patch = req(Verb::Patch, "configmaps")
            .ns("shop")
            .name("c")
            .paths(&["/data/a"]);
        // Many threads deciding at once keep the gap between the check and the count busy.
        let barrier = std::sync::Barrier::new(32);
        let allowed: usize = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..32)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        (0..50)
                            .map(|_| store_decide(&store, &policy, &patch, Instant::now()))
                            .filter(|d| d.action == Action::Allow)
                            .count()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(allowed, 5);
    }
}
