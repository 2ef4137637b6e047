//! The rule catalog: stable ids, names, summaries and the actions each rule may take.
//!
//! Rule ids and names are a public interface (metrics labels, ledger entries, docs, config
//! overrides): never renumber or rename one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Action;

/// One rule of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleId {
    /// broad-patch
    PG001,
    /// full-replace
    PG002,
    /// full-manifest-apply
    PG003,
    /// direct-pod-delete
    PG004,
    /// zero-grace-delete
    PG005,
    /// deletecollection
    PG006,
    /// namespace-delete
    PG007,
    /// cluster-scoped-mutation
    PG008,
    /// redundant-create
    PG009,
    /// missing-dry-run
    PG010,
    /// unbounded-list
    PG011,
    /// secret-read
    PG012,
    /// exec-attach-portforward
    PG013,
    /// out-of-scope-mutation
    PG014,
    /// retry-loop
    PG015,
    /// opaque-body
    PG016,
    /// impersonation
    PG017,
    /// protected-object
    PG018,
    /// session-budget
    PG019,
}

impl RuleId {
    /// Every rule, in id order.
    pub const ALL: [RuleId; 19] = [
        RuleId::PG001,
        RuleId::PG002,
        RuleId::PG003,
        RuleId::PG004,
        RuleId::PG005,
        RuleId::PG006,
        RuleId::PG007,
        RuleId::PG008,
        RuleId::PG009,
        RuleId::PG010,
        RuleId::PG011,
        RuleId::PG012,
        RuleId::PG013,
        RuleId::PG014,
        RuleId::PG015,
        RuleId::PG016,
        RuleId::PG017,
        RuleId::PG018,
        RuleId::PG019,
    ];

    /// The stable id, e.g. `PG004`.
    pub fn as_str(self) -> &'static str {
        self.info().id
    }

    /// The stable kebab-case name, e.g. `direct-pod-delete`.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// This rule's catalog entry.
    pub fn info(self) -> &'static RuleInfo {
        &CATALOG[self as usize]
    }

    /// Whether the rule has a rewrite (only those may be configured `rewrite`).
    pub fn has_rewrite(self) -> bool {
        self.info().has_rewrite
    }
}

/// `finding.rule == "PG017"`: a rule id compares equal to its stable id.
impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule {0:?}; valid rules are PG001..PG019 or their names ({names})", names = rule_names())]
pub struct UnknownRule(pub String);

fn rule_names() -> String {
    CATALOG
        .iter()
        .map(|r| r.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for RuleId {
    type Err = UnknownRule;

    /// Accepts the id (`PG004`, any case) or the name (`direct-pod-delete`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuleId::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s) || r.name() == s)
            .ok_or_else(|| UnknownRule(s.to_string()))
    }
}

impl Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What a rule is configured to do when it matches (`rules: {PG004: deny}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// The rule is not evaluated at all.
    Off,
    /// Forward, record, and warn the agent.
    Flag,
    /// Change the request (dryRun, grace period, limit), forward it and warn.
    Rewrite,
    /// Refuse with a one-time token; the same request with the token passes once.
    Confirm,
    /// Refuse with a 403 `Status` naming the rule.
    Deny,
}

impl RuleAction {
    /// The decision action a matching rule contributes; `None` for `off`.
    pub fn action(self) -> Option<Action> {
        match self {
            RuleAction::Off => None,
            RuleAction::Flag => Some(Action::Flag),
            RuleAction::Rewrite => Some(Action::Rewrite),
            RuleAction::Confirm => Some(Action::Confirm),
            RuleAction::Deny => Some(Action::Deny),
        }
    }

    /// The lowercase name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Off => "off",
            RuleAction::Flag => "flag",
            RuleAction::Rewrite => "rewrite",
            RuleAction::Confirm => "confirm",
            RuleAction::Deny => "deny",
        }
    }
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A catalog entry, as `pathgate rules` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    /// Stable id (`PG004`).
    pub id: &'static str,
    /// Stable kebab-case name (`direct-pod-delete`).
    pub name: &'static str,
    /// The action in `enforce` mode with the default configuration.
    pub default_action: RuleAction,
    /// One line: what the rule catches.
    pub summary: &'static str,
    /// Whether the rule can rewrite a request (and so be configured `rewrite`).
    pub has_rewrite: bool,
    /// The configuration keys that shape the rule, besides `rules.<id>`.
    pub config_keys: &'static [&'static str],
}

/// The catalog, indexed by `RuleId as usize`.
static CATALOG: [RuleInfo; 19] = [
    RuleInfo {
        id: "PG001",
        name: "broad-patch",
        default_action: RuleAction::Flag,
        summary: "a patch or update touches (or, when known, changes) more leaf paths than safety_gates.max_patch_keys",
        has_rewrite: false,
        config_keys: &["safety_gates.max_patch_keys"],
    },
    RuleInfo {
        id: "PG002",
        name: "full-replace",
        default_action: RuleAction::Deny,
        summary: "PUT of a whole object (not a subresource such as /scale or /status)",
        has_rewrite: false,
        config_keys: &["safety_gates.force_full_replace_allowed"],
    },
    RuleInfo {
        id: "PG003",
        name: "full-manifest-apply",
        default_action: RuleAction::Flag,
        summary: "server-side or client-side apply restating a whole existing object",
        has_rewrite: false,
        config_keys: &[],
    },
    RuleInfo {
        id: "PG004",
        name: "direct-pod-delete",
        default_action: RuleAction::Deny,
        summary: "DELETE or eviction of a pod that has a controller ownerReference",
        has_rewrite: false,
        config_keys: &["safety_gates.allow_direct_deletion"],
    },
    RuleInfo {
        id: "PG005",
        name: "zero-grace-delete",
        default_action: RuleAction::Rewrite,
        summary: "DELETE or eviction with gracePeriodSeconds below min_grace_period_seconds (0 = --force)",
        has_rewrite: true,
        config_keys: &["safety_gates.require_grace_period", "min_grace_period_seconds"],
    },
    RuleInfo {
        id: "PG006",
        name: "deletecollection",
        default_action: RuleAction::Deny,
        summary: "DELETE of a whole collection instead of named objects",
        has_rewrite: false,
        config_keys: &["schema_enforcement.strict_identity"],
    },
    RuleInfo {
        id: "PG007",
        name: "namespace-delete",
        default_action: RuleAction::Confirm,
        summary: "DELETE of a namespace in protected_namespaces",
        has_rewrite: false,
        config_keys: &["protected_namespaces", "confirm_window_seconds"],
    },
    RuleInfo {
        id: "PG008",
        name: "cluster-scoped-mutation",
        default_action: RuleAction::Flag,
        summary: "mutation of a cluster-scoped object: nodes, CRDs, cluster RBAC, admission webhooks/policies, APIServices, storage and priority classes...",
        has_rewrite: false,
        config_keys: &[],
    },
    RuleInfo {
        id: "PG009",
        name: "redundant-create",
        default_action: RuleAction::Flag,
        summary: "create of an object that already exists (seen before forwarding or as a 409 AlreadyExists)",
        has_rewrite: false,
        config_keys: &[],
    },
    RuleInfo {
        id: "PG010",
        name: "missing-dry-run",
        default_action: RuleAction::Deny,
        summary: "mutation with no successful server dry run of the same request earlier in the session",
        has_rewrite: false,
        config_keys: &["safety_gates.dry_run_default"],
    },
    RuleInfo {
        id: "PG011",
        name: "unbounded-list",
        default_action: RuleAction::Flag,
        summary: "LIST without limit or selector, or a watch across all namespaces without selector",
        has_rewrite: true,
        config_keys: &[
            "schema_enforcement.label_selector_filter",
            "schema_enforcement.discovery_payload_limit",
        ],
    },
    RuleInfo {
        id: "PG012",
        name: "secret-read",
        default_action: RuleAction::Flag,
        summary: "GET, LIST or WATCH of secrets (data is redacted in the ledger)",
        has_rewrite: false,
        config_keys: &[],
    },
    RuleInfo {
        id: "PG013",
        name: "exec-attach-portforward",
        default_action: RuleAction::Flag,
        summary: "exec, attach, port-forward or proxy into a pod, service or node",
        has_rewrite: false,
        config_keys: &[],
    },
    RuleInfo {
        id: "PG014",
        name: "out-of-scope-mutation",
        default_action: RuleAction::Deny,
        summary: "mutation (or exec/attach) outside mutation_namespaces, by the path and the resource's scope, never the body",
        has_rewrite: false,
        config_keys: &["mutation_namespaces"],
    },
    RuleInfo {
        id: "PG015",
        name: "retry-loop",
        default_action: RuleAction::Flag,
        summary: "the same failing request repeated retry_loop.threshold times within retry_loop.window_seconds",
        has_rewrite: false,
        config_keys: &["retry_loop.window_seconds", "retry_loop.threshold"],
    },
    RuleInfo {
        id: "PG016",
        name: "opaque-body",
        default_action: RuleAction::Flag,
        summary: "mutation body pathgate cannot decode (protobuf it cannot read, CBOR, malformed)",
        has_rewrite: false,
        config_keys: &[],
    },
    RuleInfo {
        id: "PG017",
        name: "impersonation",
        default_action: RuleAction::Deny,
        summary: "Impersonate-* headers on a request that would use pathgate's own credentials",
        has_rewrite: false,
        config_keys: &[],
    },
    RuleInfo {
        id: "PG018",
        name: "protected-object",
        default_action: RuleAction::Deny,
        summary: "mutation (subresources, evictions and collection deletes included) of an object matching protected_objects",
        has_rewrite: false,
        config_keys: &["protected_objects"],
    },
    RuleInfo {
        id: "PG019",
        name: "session-budget",
        default_action: RuleAction::Deny,
        summary: "past a budget of the session (mutations, deletes, read bytes, requests per window): 429 with Retry-After for the window; all budgets off by default",
        has_rewrite: false,
        config_keys: &[
            "budgets.mutations",
            "budgets.deletes",
            "budgets.read_bytes",
            "budgets.requests_per_window",
            "budgets.window_seconds",
        ],
    },
];

/// The whole catalog, in id order, with the default configuration's `enforce` actions.
pub fn catalog() -> &'static [RuleInfo] {
    &CATALOG
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_indexed_by_rule_id() {
        for (index, rule) in RuleId::ALL.into_iter().enumerate() {
            assert_eq!(rule as usize, index);
            assert_eq!(rule.as_str(), format!("PG{:03}", index + 1));
            assert_eq!(format!("{rule:?}"), rule.as_str());
        }
    }

    #[test]
    fn rules_parse_from_id_or_name() {
        assert_eq!("PG004".parse::<RuleId>(), Ok(RuleId::PG004));
        assert_eq!("pg004".parse::<RuleId>(), Ok(RuleId::PG004));
        assert_eq!("direct-pod-delete".parse::<RuleId>(), Ok(RuleId::PG004));
        assert_eq!("protected-object".parse::<RuleId>(), Ok(RuleId::PG018));
        assert_eq!("session-budget".parse::<RuleId>(), Ok(RuleId::PG019));
        assert_eq!("pg019".parse::<RuleId>(), Ok(RuleId::PG019));
        let err = "PG020".parse::<RuleId>().unwrap_err();
        assert!(err.to_string().contains("PG001..PG019"), "{err}");
        assert!(err.to_string().contains("retry-loop"), "{err}");
    }

    #[test]
    fn only_grace_and_list_rules_rewrite() {
        let rewriting: Vec<_> = RuleId::ALL
            .into_iter()
            .filter(|r| r.has_rewrite())
            .collect();
        assert_eq!(rewriting, vec![RuleId::PG005, RuleId::PG011]);
    }
}
