//! The categories: what one ledger entry of a run is, and which violations it causes,
//! given what the run did before it.
//!
//! Pure: an entry, the run policy and the run's memory in; the request's kind and its
//! violations out. Only structured fields are read (never a finding's `message`), and the
//! gate's decision is not re-run: a rule that fired live is not what makes a violation,
//! the request and its answer are (the same requests give the same verdict in `observe`
//! and `rehearse`; in `enforce` what was denied is blocked).

use std::collections::{HashMap, HashSet};

use crate::ledger::{Action, Entry, Origin};

use super::policy::RunPolicy;
use super::verdict::{Category, RequestKind, Violation};

/// How many failures of the same request make a retry loop.
pub const RETRY_LOOP_THRESHOLD: u32 = 3;

/// The identity `missing_dry_run` keys on: (group, resource, namespace, name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

/// What the run did so far that later requests are judged against. Grows with the
/// objects and distinct failing requests of the run, not with its entries.
#[derive(Debug, Default)]
pub struct RunMemory {
    /// Objects a successful client dry run of a mutating verb was seen for.
    dry_run_objects: HashSet<ObjectKey>,
    /// Failures per request identity (fingerprint or request line, and the dry-run flag).
    failures: HashMap<String, u32>,
}

/// What one entry is and the violations it causes.
#[derive(Debug)]
pub struct Judgement {
    pub kind: RequestKind,
    pub violations: Vec<Violation>,
}

/// Facts of an entry every category needs, read once.
struct Facts<'a> {
    entry: &'a Entry,
    status: Option<u16>,
    success: bool,
    /// A dry run the client asked for, on an endpoint that honours it.
    client_dry_run: bool,
    key: ObjectKey,
}

impl<'a> Facts<'a> {
    fn of(entry: &'a Entry) -> Facts<'a> {
        let status = entry.response.as_ref().map(|r| r.status_code);
        let sent = entry.dry_run.is_some_and(|d| d.sent);
        Facts {
            entry,
            status,
            success: status.is_some_and(|s| (200..300).contains(&s)),
            client_dry_run: sent && honours_dry_run(entry),
            key: object_key(entry),
        }
    }

    fn violation(
        &self,
        category: Category,
        rule_id: Option<&'static str>,
        why: String,
    ) -> Violation {
        Violation {
            category,
            rule_id,
            trace_id: self.entry.trace_id.clone(),
            method: self.entry.request.method.clone(),
            path: self.entry.request.path.clone(),
            status: self.status,
            why,
        }
    }

    fn verb(&self) -> &str {
        &self.entry.request.verb
    }

    /// What the request does to the object it names: the ledger's `effect_verb` (`delete`
    /// for a pod eviction, `POST pods/<name>/eviction`), else its verb.
    fn effect_verb(&self) -> &str {
        self.entry
            .request
            .effect_verb
            .as_deref()
            .unwrap_or(&self.entry.request.verb)
    }

    /// The request acts on the object itself: no subresource, or one whose effect is on
    /// the object (an eviction deletes its pod).
    fn acts_on_object(&self) -> bool {
        self.main_resource() || self.entry.request.effect_verb.is_some()
    }

    fn is_core(&self, resource: &str) -> bool {
        self.entry.request.api_group.is_empty() && self.entry.request.resource == resource
    }

    fn main_resource(&self) -> bool {
        self.entry.request.subresource.is_empty()
    }

    /// The object as `kind name` for `why` texts: `pods shop/web-1`.
    fn object(&self) -> String {
        let ObjectKey {
            group,
            resource,
            namespace,
            name,
        } = &self.key;
        let resource = if group.is_empty() {
            resource.clone()
        } else {
            format!("{resource}.{group}")
        };
        let name = if name.is_empty() { "(unnamed)" } else { name };
        if namespace.is_empty() {
            format!("{resource} {name}")
        } else {
            format!("{resource} {namespace}/{name}")
        }
    }
}

/// Whether the endpoint honours `dryRun`: a TokenRequest (`serviceaccounts/<n>/token`)
/// issues a real token even when asked for a dry run, so its dry run is no dry run.
fn honours_dry_run(entry: &Entry) -> bool {
    let request = &entry.request;
    !(request.api_group.is_empty()
        && request.resource == "serviceaccounts"
        && request.subresource == "token")
        && request.verb != "connect"
}

/// The object a request is about: the path's name, a create's name from its body, `*`
/// for a collection DELETE. A Namespace is keyed without a namespace (the apiserver's
/// request info gives `/api/v1/namespaces/x` the namespace `x`, a create of it none).
pub fn object_key(entry: &Entry) -> ObjectKey {
    let request = &entry.request;
    let name = if request.verb == "deletecollection" {
        "*".to_string()
    } else {
        entry.object_name()
    };
    let namespace = if request.api_group.is_empty() && request.resource == "namespaces" {
        String::new()
    } else {
        request.namespace.clone()
    };
    ObjectKey {
        group: request.api_group.clone(),
        resource: request.resource.clone(),
        namespace,
        name,
    }
}

/// What an outcome entry is, at a glance.
fn kind_of(facts: &Facts) -> RequestKind {
    let entry = facts.entry;
    let verb = facts.verb();
    if verb.is_empty() {
        return RequestKind::Unclassified;
    }
    if verb == "nonresource" {
        return RequestKind::Ignored;
    }
    let by_pathgate = entry
        .response
        .as_ref()
        .is_some_and(|r| r.origin == Origin::Pathgate);
    if by_pathgate {
        let blocks = entry
            .decision
            .as_ref()
            .is_some_and(|d| matches!(d.action, Action::Deny | Action::Confirm));
        return if blocks {
            RequestKind::Blocked
        } else {
            RequestKind::NotForwarded
        };
    }
    if verb == "connect" {
        return RequestKind::Connect;
    }
    if facts.client_dry_run {
        return RequestKind::DryRun;
    }
    if entry.request.mutation {
        RequestKind::Mutation
    } else {
        RequestKind::Read
    }
}

/// Judges one outcome entry of the run, after every earlier one.
pub fn judge(entry: &Entry, policy: &RunPolicy, memory: &mut RunMemory) -> Judgement {
    let facts = Facts::of(entry);
    let kind = kind_of(&facts);
    let mut violations = Vec::new();
    if kind != RequestKind::Ignored {
        violations.extend(retry_loop(&facts, memory));
    }
    if !matches!(kind, RequestKind::Blocked | RequestKind::NotForwarded) {
        violations.extend(budget_exceeded(&facts));
    }
    match kind {
        RequestKind::DryRun if facts.success && entry.request.mutation => {
            memory.dry_run_objects.insert(facts.key.clone());
        }
        RequestKind::Read if facts.success => violations.extend(secret_read(&facts)),
        RequestKind::Mutation => {
            if facts.success {
                violations.extend(successful_mutation(&facts, policy, memory));
            }
            violations.extend(conflicting_create(&facts));
        }
        _ => {}
    }
    Judgement { kind, violations }
}

/// The categories a forwarded mutation answered 2xx can fall into.
fn successful_mutation(facts: &Facts, policy: &RunPolicy, memory: &RunMemory) -> Vec<Violation> {
    let mut found = Vec::new();
    found.extend(broad_manifest(facts));
    found.extend(direct_pod_delete(facts));
    found.extend(zero_grace_delete(facts));
    found.extend(unexpected_create(facts, policy));
    let namespace_delete = namespace_delete(facts);
    let is_namespace_delete = namespace_delete.is_some();
    found.extend(namespace_delete);
    found.extend(deletecollection(facts));
    if !is_namespace_delete {
        found.extend(forbidden_mutation(facts, policy));
    }
    found.extend(missing_dry_run(facts, memory));
    found
}

fn query_has(entry: &Entry, key: &str, value: &str) -> bool {
    entry.request.query.as_deref().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == key && v == value)
    })
}

/// A mutation of an existing object that restates the whole object.
fn broad_manifest(facts: &Facts) -> Option<Violation> {
    let entry = facts.entry;
    if !facts.main_resource() || facts.status != Some(200) {
        return None;
    }
    let analysis = entry.analysis.as_ref();
    let whole = analysis.and_then(|a| a.whole_object.as_deref());
    let patch_type = analysis.and_then(|a| a.patch_type.as_deref());
    let (rule, why) = match facts.verb() {
        "update" => ("PG002", "PUT replaced the whole object"),
        "patch"
            if whole == Some("client-side-apply")
                || query_has(entry, "fieldManager", "kubectl-client-side-apply") =>
        {
            (
                "PG003",
                "client-side apply sent the whole object (last-applied configuration)",
            )
        }
        "patch"
            if whole == Some("server-side-apply")
                && patch_type.is_some_and(|t| t.starts_with("apply-patch")) =>
        {
            (
                "PG003",
                "server-side apply restated the object's spec skeleton",
            )
        }
        _ => return None,
    };
    let scope = match analysis.and_then(|a| a.effect_paths.as_ref()) {
        Some(effect) => format!(
            "; {} path(s) restated, {} changed",
            analysis.map_or(0, |a| a.touched_paths.len()),
            effect.len()
        ),
        None => String::new(),
    };
    Some(facts.violation(
        Category::BroadManifest,
        Some(rule),
        format!("{why} on existing {}{scope}", facts.object()),
    ))
}

fn direct_pod_delete(facts: &Facts) -> Option<Violation> {
    if facts.effect_verb() != "delete" || !facts.is_core("pods") || !facts.acts_on_object() {
        return None;
    }
    let controller = facts.entry.target.as_ref()?.controller.as_ref()?;
    Some(facts.violation(
        Category::DirectPodDelete,
        Some("PG004"),
        format!(
            "deleted {} directly; its controller {} {} recreates or replaces it",
            facts.object(),
            controller.kind,
            controller.name
        ),
    ))
}

fn zero_grace_delete(facts: &Facts) -> Option<Violation> {
    if !matches!(facts.effect_verb(), "delete" | "deletecollection") {
        return None;
    }
    let grace = facts.entry.grace_period.as_ref()?;
    (grace.forwarded == Some(0)).then(|| {
        facts.violation(
            Category::ZeroGraceDelete,
            Some("PG005"),
            format!("deleted {} with gracePeriodSeconds=0", facts.object()),
        )
    })
}

/// Whether the entry created its object: a POST create, a server-side apply or a PUT
/// answered 201.
fn created(facts: &Facts) -> bool {
    facts.main_resource()
        && match facts.verb() {
            "create" => facts.success,
            "patch" | "update" => facts.status == Some(201),
            _ => false,
        }
}

fn unexpected_create(facts: &Facts, policy: &RunPolicy) -> Option<Violation> {
    if !created(facts) {
        return None;
    }
    let key = &facts.key;
    let allowed = policy.create_allowed(&key.group, &key.resource, &key.namespace, &key.name)?;
    (!allowed).then(|| {
        facts.violation(
            Category::RedundantCreate,
            Some("PG009"),
            format!(
                "created {}, which the run policy's allowed_creates does not list",
                facts.object()
            ),
        )
    })
}

/// A forwarded create answered 409 AlreadyExists (the form that needs no 2xx).
fn conflicting_create(facts: &Facts) -> Option<Violation> {
    if facts.verb() != "create" || !facts.main_resource() || facts.status != Some(409) {
        return None;
    }
    let reason = facts
        .entry
        .response
        .as_ref()
        .and_then(|r| r.reason.as_deref());
    if reason.is_some_and(|r| r != "AlreadyExists") {
        return None;
    }
    Some(facts.violation(
        Category::RedundantCreate,
        Some("PG009"),
        format!(
            "created {}, which already existed (409 AlreadyExists)",
            facts.object()
        ),
    ))
}

fn namespace_delete(facts: &Facts) -> Option<Violation> {
    (facts.verb() == "delete" && facts.is_core("namespaces") && facts.main_resource()).then(|| {
        facts.violation(
            Category::NamespaceDelete,
            Some("PG007"),
            format!("deleted namespace {} and everything in it", facts.key.name),
        )
    })
}

fn deletecollection(facts: &Facts) -> Option<Violation> {
    (facts.verb() == "deletecollection").then(|| {
        facts.violation(
            Category::Deletecollection,
            Some("PG006"),
            format!("deleted a whole collection ({})", facts.object()),
        )
    })
}

fn forbidden_mutation(facts: &Facts, policy: &RunPolicy) -> Option<Violation> {
    let key = &facts.key;
    if policy.protected(&key.group, &key.resource, &key.namespace, &key.name) {
        return Some(facts.violation(
            Category::ForbiddenMutation,
            Some("PG018"),
            format!("changed protected object {}", facts.object()),
        ));
    }
    if facts.is_core("namespaces") {
        return None;
    }
    if !key.namespace.is_empty() {
        return (!policy.in_scope(&key.namespace)).then(|| {
            facts.violation(
                Category::ForbiddenMutation,
                Some("PG014"),
                format!(
                    "changed {} outside the run's in_scope_namespaces",
                    facts.object()
                ),
            )
        });
    }
    (!policy.cluster_scoped_allowed(&key.group, &key.resource, &key.name)).then(|| {
        facts.violation(
            Category::ForbiddenMutation,
            Some("PG008"),
            format!(
                "changed cluster-scoped {}, which allowed_cluster_scoped_mutations does not list",
                facts.object()
            ),
        )
    })
}

fn secret_read(facts: &Facts) -> Option<Violation> {
    (facts.is_core("secrets")
        && facts.main_resource()
        && matches!(facts.verb(), "get" | "list" | "watch"))
    .then(|| {
        facts.violation(
            Category::SecretRead,
            Some("PG012"),
            format!("read {} ({})", facts.object(), facts.verb()),
        )
    })
}

fn missing_dry_run(facts: &Facts, memory: &RunMemory) -> Option<Violation> {
    if !honours_dry_run(facts.entry) || memory.dry_run_objects.contains(&facts.key) {
        return None;
    }
    Some(facts.violation(
        Category::MissingDryRun,
        Some("PG010"),
        format!(
            "{} of {} with no earlier successful dry run of it in the run",
            facts.verb(),
            facts.object()
        ),
    ))
}

/// A request forwarded past a budget of its session (observe mode; in enforce and rehearse
/// it is blocked). The budgets are the gate's, not the run policy's: the gate's count in
/// `decision.budget` is the fact, as the ledger recorded it.
fn budget_exceeded(facts: &Facts) -> Option<Violation> {
    let budget = facts.entry.decision.as_ref()?.budget.as_ref()?;
    Some(facts.violation(
        Category::BudgetExceeded,
        Some("PG019"),
        format!(
            "forwarded past budgets.{} ({} used of {}) for {}",
            budget.name,
            budget.used,
            budget.limit,
            facts.object()
        ),
    ))
}

/// The third failure of the same request is a loop (reported once, at that request).
/// 429 is the apiserver asking the client to slow down and retry, not a failure (as for
/// PG015). Denials count: the loop is the client's behaviour, whatever stopped it.
fn retry_loop(facts: &Facts, memory: &mut RunMemory) -> Option<Violation> {
    let status = facts.status?;
    if status < 400 || status == 429 {
        return None;
    }
    let entry = facts.entry;
    let sent_dry_run = entry.dry_run.is_some_and(|d| d.sent);
    let identity = match &entry.fingerprint {
        Some(fingerprint) => format!("{fingerprint} {sent_dry_run}"),
        // Older ledgers: the request line stands for the request (the body is unknown).
        None => format!(
            "{} {}?{} {sent_dry_run}",
            entry.request.method,
            entry.request.path,
            entry.request.query.as_deref().unwrap_or("")
        ),
    };
    let count = memory.failures.entry(identity).or_insert(0);
    *count += 1;
    (*count == RETRY_LOOP_THRESHOLD).then(|| {
        facts.violation(
            Category::RetryLoop,
            Some("PG015"),
            format!("the same request failed {RETRY_LOOP_THRESHOLD} times (last answer {status})"),
        )
    })
}
