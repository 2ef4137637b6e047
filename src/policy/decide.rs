//! `decide`: every rule of the catalog applied to one classified request, then the mode.
//!
//! Each rule is a small check that returns a [`Hit`] (what it saw, how to comply, the
//! rewrite it would make); the configured action of the rule says what the hit does. The
//! mode then turns the findings into the action actually taken.

use crate::classify::{Analysis, RequestInfo, Scope, Verb, WholeObject};

use super::messages::{kubectl_resource, list_paths, ns_flag, object_label, target_name};
use super::{
    Action, ConfirmRequest, Decision, Facts, Finding, Mode, Policy, RequestContext, Rewrite,
    RuleAction, RuleId, SessionFacts, TargetFact,
};

/// The annotation an agent sets on a request's target object to pass a confirmation token
/// with kubectl, which cannot add request headers.
pub const CONFIRM_ANNOTATION: &str = "pathgate.dev/confirm";

/// Cluster-wide resources whose mutation affects every namespace (PG008), with what they
/// control.
const CLUSTER_CRITICAL: [(&str, &str, &str); 11] = [
    ("", "nodes", "node scheduling and lifecycle"),
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "the API schema",
    ),
    ("rbac.authorization.k8s.io", "clusterroles", "permissions"),
    (
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "permissions",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "admission control",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "admission control",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        "admission control",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
        "admission control",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicies",
        "admission control",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicybindings",
        "admission control",
    ),
    ("apiregistration.k8s.io", "apiservices", "API routing"),
];

/// Subresources that open a stream into a workload (PG013).
const CONNECT_SUBRESOURCES: [&str; 4] = ["exec", "attach", "portforward", "proxy"];

/// A request that can change cluster state (access and token reviews are questions):
/// classify's definition, the one every module uses.
pub(super) fn is_mutation(info: &RequestInfo) -> bool {
    info.is_mutation()
}

fn is_core(info: &RequestInfo, resource: &str) -> bool {
    info.api_group.is_empty() && info.resource == resource
}

/// The one patch an agent must be able to send without a dry run first: setting the
/// confirmation annotation (`kubectl annotate <target> pathgate.dev/confirm=<token>`).
fn is_confirm_annotation_patch(info: &RequestInfo, analysis: &Analysis) -> bool {
    const ESCAPED: &str = "/metadata/annotations/pathgate.dev~1confirm";
    const RAW: &str = "/metadata/annotations/pathgate.dev/confirm";
    info.verb == Verb::Patch
        && analysis.whole_object.is_none()
        && !analysis.touched_paths.is_empty()
        && analysis
            .touched_paths
            .iter()
            .all(|p| p == ESCAPED || p == RAW)
}

/// The namespace a mutation takes effect in, as the apiserver decides it: the name of a
/// Namespace object itself; nothing for a cluster-scoped resource (whatever the path or the
/// body says: the apiserver clears a body's namespace there); else the path's namespace.
/// Never the body's `metadata.namespace`: a field the client writes does not move an object.
fn effective_namespace<'a>(info: &'a RequestInfo, analysis: &'a Analysis) -> &'a str {
    if is_core(info, "namespaces") {
        target_name(info, analysis).unwrap_or("")
    } else if info.scope() == Scope::Cluster {
        ""
    } else {
        &info.namespace
    }
}

/// The client sent a dry run the apiserver honours: nothing will change.
fn honoured_dry_run(info: &RequestInfo, analysis: &Analysis) -> bool {
    analysis.dry_run && info.honours_dry_run()
}

/// The client sent `dryRun` to an endpoint that ignores it: the request acts for real.
fn ignored_dry_run(info: &RequestInfo, analysis: &Analysis) -> bool {
    analysis.dry_run_ignored || (analysis.dry_run && !info.honours_dry_run())
}

/// Everything a rule may look at.
struct Cx<'a> {
    info: &'a RequestInfo,
    analysis: &'a Analysis,
    facts: &'a Facts,
    policy: &'a Policy,
    impersonation: Impersonation,
    session: &'a SessionFacts,
    mutation: bool,
}

/// What PG017 reads of the request's context (the two flags of [`RequestContext`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Impersonation {
    /// The client sent `Impersonate-*` headers.
    pub headers: bool,
    /// The request reaches the apiserver under pathgate's own credentials.
    pub pathgate_credentials: bool,
}

/// What a rule saw.
struct Hit {
    /// What was seen and how to comply (without the `PGxxx name:` prefix).
    text: String,
    /// The rewrite the rule makes when its action is `rewrite`.
    rewrite: Option<Rewrite>,
    /// An action that replaces the configured one for this hit (a rewrite that cannot be
    /// carried out on this request).
    action: Option<Action>,
}

impl Hit {
    fn new(text: String) -> Self {
        Hit {
            text,
            rewrite: None,
            action: None,
        }
    }
}

/// Decides what to do with one request. Pure and deterministic: the same inputs give the
/// same decision. `session` is what the session remembers about this request's
/// fingerprint (see [`super::SessionStore::session_facts`]); `ctx` carries what the proxy
/// knows beyond path and body.
pub fn decide(
    info: &RequestInfo,
    analysis: &Analysis,
    facts: &Facts,
    policy: &Policy,
    ctx: &RequestContext,
    session: &SessionFacts,
) -> Decision {
    let impersonation = Impersonation {
        headers: ctx.impersonation_headers,
        pathgate_credentials: ctx.pathgate_credentials,
    };
    decide_with(info, analysis, facts, policy, impersonation, session)
}

/// [`decide`] with what it reads of the request's context.
pub(super) fn decide_with(
    info: &RequestInfo,
    analysis: &Analysis,
    facts: &Facts,
    policy: &Policy,
    impersonation: Impersonation,
    session: &SessionFacts,
) -> Decision {
    let mut decision = Decision::allow(policy.mode);
    if info.is_discovery || !info.is_resource_request {
        return decision;
    }
    let cx = Cx {
        info,
        analysis,
        facts,
        policy,
        impersonation,
        session,
        mutation: is_mutation(info),
    };
    let client_dry_run = cx.mutation && honoured_dry_run(info, analysis);

    for rule in RuleId::ALL {
        let configured = policy.rule_action(rule);
        let Some(configured_action) = configured.action() else {
            continue;
        };
        let Some(hit) = check(rule, &cx, configured) else {
            continue;
        };
        let mut action = hit.action.unwrap_or(configured_action);
        if action == Action::Rewrite && hit.rewrite.is_none() {
            action = Action::Flag;
        }
        let mut message = format!("{} {}: {}", rule.as_str(), rule.name(), hit.text);
        // A dry run still spends a request of the window: PG019 refuses it like any other.
        if action.blocks() && client_dry_run && rule != RuleId::PG017 && rule != RuleId::PG019 {
            // A dry run changes nothing: let it through and say what the real request
            // would meet, so the agent learns before it acts.
            message.push_str(&format!(
                " (This request is a dry run, so pathgate let it through; the real request \
                 would {}.)",
                if action == Action::Deny {
                    "be denied"
                } else {
                    "need confirmation"
                }
            ));
            action = Action::Flag;
        }
        if action == Action::Confirm && session.confirmed {
            message.push_str(" (Confirmed with a one-time token.)");
            action = Action::Flag;
            decision.confirmed = true;
        }
        if action == Action::Rewrite {
            decision.rewrites.extend(hit.rewrite);
        }
        decision.findings.push(Finding {
            rule,
            action,
            message,
        });
    }

    decision.enforce_action = decision
        .findings
        .iter()
        .map(|f| f.action)
        .max()
        .unwrap_or(Action::Allow);

    match policy.mode {
        Mode::Enforce => decision.action = decision.enforce_action,
        Mode::Observe => apply_observe(&mut decision),
        Mode::Rehearse => apply_rehearse(&mut decision, &cx),
    }
    if decision.action.blocks() {
        decision.rewrites.clear();
    }
    if decision.findings.iter().any(|f| f.rule == RuleId::PG019) {
        decision.budget = session.budget;
    }
    if decision.action == Action::Confirm {
        decision.confirm = Some(ConfirmRequest {
            token: None,
            window_seconds: policy.confirm_window_seconds,
            annotate_target: annotate_target(info, analysis),
        });
    }
    decision
}

fn apply_observe(decision: &mut Decision) {
    let would = decision.enforce_action;
    for finding in &mut decision.findings {
        if finding.action > Action::Flag {
            let would = match finding.action {
                Action::Deny => "deny it",
                Action::Confirm => "ask for confirmation",
                _ => "rewrite it",
            };
            finding.message.push_str(&format!(
                " (observe mode: enforce would {would}; forwarded unchanged.)"
            ));
        }
        finding.action = Action::Flag;
    }
    decision.rewrites.clear();
    decision.action = if decision.findings.is_empty() {
        Action::Allow
    } else {
        Action::Flag
    };
    if would > Action::Flag {
        decision.notices.push(format!(
            "observe mode: enforce would {} this request; it was forwarded unchanged.",
            verb_phrase(would)
        ));
    }
}

fn apply_rehearse(decision: &mut Decision, cx: &Cx<'_>) {
    for finding in &mut decision.findings {
        if finding.action == Action::Confirm {
            // The request is forwarded as a dry run, so there is nothing to confirm; the
            // annotation channel could not work either (the annotate would be a dry run).
            finding.message.push_str(
                " (rehearse mode: enforce would ask for confirmation; forwarded as a dry run.)",
            );
            finding.action = Action::Flag;
        }
    }
    decision.action = decision
        .findings
        .iter()
        .map(|f| f.action)
        .max()
        .unwrap_or(Action::Allow);
    if cx.mutation && !cx.info.honours_dry_run() && decision.action != Action::Deny {
        // Forwarding it "as a dry run" would act for real (a TokenRequest issues a token).
        decision.action = Action::Deny;
        decision.notices.push(format!(
            "rehearse mode: {} ignores dryRun, so it cannot be rehearsed: forwarded with \
             dryRun=All it would still act. pathgate refused it; nothing was sent.",
            endpoint_label(cx.info)
        ));
        return;
    }
    if cx.mutation && !cx.analysis.dry_run && decision.action != Action::Deny {
        decision.rewrites.push(Rewrite::AddDryRun);
        decision.action = decision.action.max(Action::Rewrite);
        let mut notice = "rehearse mode: this mutation was forwarded with dryRun=All; the \
                          apiserver validated and admitted it, but nothing in the cluster \
                          changed."
            .to_string();
        if matches!(cx.info.verb, Verb::Delete | Verb::DeleteCollection) {
            // kubectl delete waits (by default for days) until the object is gone, which
            // a rehearsed delete never makes happen.
            notice.push_str(
                " The object still exists: with kubectl delete pass --wait=false, or kubectl \
                 waits for a deletion that will not happen.",
            );
        }
        decision.notices.push(notice);
    }
}

/// `POST serviceaccounts/<name>/token`, `PATCH deployments`: the endpoint a request goes to.
fn endpoint_label(info: &RequestInfo) -> String {
    if info.subresource.is_empty() {
        format!("{} {}", info.method, kubectl_resource(info))
    } else {
        format!(
            "{} {}/<name>/{}",
            info.method,
            kubectl_resource(info),
            info.subresource
        )
    }
}

/// How a message names what the request does: `eviction` for a pod eviction, else the verb.
fn action_word(info: &RequestInfo) -> &'static str {
    if info.is_pod_eviction() {
        "eviction"
    } else {
        verb_word(info.verb)
    }
}

fn verb_phrase(action: Action) -> &'static str {
    match action {
        Action::Deny => "deny",
        Action::Confirm => "ask for confirmation of",
        Action::Rewrite => "rewrite",
        Action::Flag => "flag",
        Action::Allow => "allow",
    }
}

/// `namespace prod`, `pods web-1 -n shop`: the `kubectl annotate` arguments naming the
/// target, or `None` when the request names no single object.
fn annotate_target(info: &RequestInfo, analysis: &Analysis) -> Option<String> {
    if info.name.is_empty() {
        // A create of a new object (nothing to annotate yet) or a collection request.
        return None;
    }
    let name = target_name(info, analysis)?;
    if is_core(info, "namespaces") {
        return Some(format!("namespace {name}"));
    }
    // A subresource (scale, status, eviction) is annotated on its parent object, which is
    // what the proxy fetches as the target.
    Some(format!(
        "{} {name}{}",
        kubectl_resource(info),
        ns_flag(info)
    ))
}

/// The rule's check. Returns what it saw when it matches this request.
fn check(rule: RuleId, cx: &Cx<'_>, configured: RuleAction) -> Option<Hit> {
    match rule {
        RuleId::PG001 => broad_patch(cx),
        RuleId::PG002 => full_replace(cx),
        RuleId::PG003 => full_manifest_apply(cx),
        RuleId::PG004 => direct_pod_delete(cx),
        RuleId::PG005 => zero_grace_delete(cx, configured),
        RuleId::PG006 => deletecollection(cx),
        RuleId::PG007 => namespace_delete(cx),
        RuleId::PG008 => cluster_scoped_mutation(cx),
        RuleId::PG009 => redundant_create(cx),
        RuleId::PG010 => missing_dry_run(cx, configured),
        RuleId::PG011 => unbounded_list(cx),
        RuleId::PG012 => secret_read(cx),
        RuleId::PG013 => exec_attach_portforward(cx),
        RuleId::PG014 => out_of_scope_mutation(cx),
        RuleId::PG015 => retry_loop(cx),
        RuleId::PG016 => opaque_body(cx),
        RuleId::PG017 => impersonation(cx),
        RuleId::PG018 => protected_object(cx, configured),
        RuleId::PG019 => session_budget(cx),
    }
}

/// PG019: the session memory found the request past one of its session's budgets.
fn session_budget(cx: &Cx<'_>) -> Option<Hit> {
    let breach = cx.session.budget?;
    Some(Hit::new(breach.text()))
}

fn broad_patch(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    if !cx.mutation || !matches!(info.verb, Verb::Patch | Verb::Update) {
        return None;
    }
    let max = cx.policy.safety_gates.max_patch_keys as usize;
    let (paths, measured) = match &cx.facts.effect_paths {
        Some(effect) => (effect, "changes"),
        // A whole-object payload restates every field; its breadth is PG002/PG003's
        // business unless the effect was measured.
        None if cx.analysis.whole_object.is_some() => return None,
        None => (&cx.analysis.touched_paths, "touches"),
    };
    if paths.len() <= max {
        return None;
    }
    let first = paths.first().map(String::as_str).unwrap_or("/spec/...");
    Some(Hit::new(format!(
        "this {} of {} {measured} {} leaf paths (safety_gates.max_patch_keys is {max}){}: {}. \
         Change only the fields the task needs, one concern per request, e.g. kubectl patch \
         {} {}{} --type=json -p '[{{\"op\":\"replace\",\"path\":\"{first}\",\"value\":...}}]'.",
        verb_word(info.verb),
        object_label(info, cx.analysis),
        paths.len(),
        if cx.facts.effect_paths.is_some() {
            ", measured on the object before and after"
        } else {
            ""
        },
        list_paths(paths, 4),
        kubectl_resource(info),
        info.name,
        ns_flag(info),
    )))
}

fn verb_word(verb: Verb) -> &'static str {
    match verb {
        Verb::Patch => "patch",
        Verb::Update => "update",
        Verb::Create => "create",
        Verb::Delete => "delete",
        Verb::DeleteCollection => "deletecollection",
        Verb::Get => "get",
        Verb::List => "list",
        Verb::Watch => "watch",
        Verb::Connect => "connect",
        Verb::NonResource => "request",
    }
}

fn full_replace(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    if info.verb != Verb::Update
        || !info.subresource.is_empty()
        || cx.analysis.whole_object != Some(WholeObject::Replace)
    {
        return None;
    }
    let resource = kubectl_resource(info);
    let ns = ns_flag(info);
    Some(Hit::new(format!(
        "PUT of the whole {} restates every field, including the ones you did not mean to \
         change. Patch only the fields you mean to change, e.g. kubectl patch {resource} {}{ns} \
         --type=strategic -p '{{\"spec\":{{...}}}}', or a focused command such as kubectl \
         set image, kubectl scale or kubectl label (whole replaces need \
         safety_gates.force_full_replace_allowed).",
        object_label(info, cx.analysis),
        info.name,
    )))
}

fn full_manifest_apply(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    let how = match cx.analysis.whole_object {
        Some(WholeObject::ServerSideApply) => "server-side apply",
        Some(WholeObject::ClientSideApply) => "client-side apply (last-applied annotation)",
        _ => return None,
    };
    // Creating an object needs the whole object; only restating an existing one is broad.
    if !matches!(info.verb, Verb::Patch | Verb::Update) || cx.facts.target == TargetFact::Missing {
        return None;
    }
    let effect = match &cx.facts.effect_paths {
        Some(paths) => format!(
            " although it changes {} leaf path(s): {}",
            paths.len(),
            list_paths(paths, 3)
        ),
        None => String::new(),
    };
    Some(Hit::new(format!(
        "this {how} sends the whole {}{effect}. Send only what you mean to change, e.g. \
         kubectl patch {} {}{} --type=strategic -p '<only the changed fields>', or a focused \
         command (kubectl set image, kubectl scale, kubectl label).",
        object_label(info, cx.analysis),
        kubectl_resource(info),
        target_name(info, cx.analysis).unwrap_or("<name>"),
        ns_flag(info),
    )))
}

/// The controller ownerReference of an object, as `(kind, name)`.
fn controller_owner(object: &serde_json::Value) -> Option<(String, String)> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(|c| c.as_bool()) == Some(true))
        .map(|r| {
            let field = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            (field("kind"), field("name"))
        })
}

fn direct_pod_delete(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    // An eviction deletes the pod as surely as a DELETE does (after the disruption-budget
    // check), so it is judged the same way.
    if !info.deletes_pod() {
        return None;
    }
    let TargetFact::Present(pod) = &cx.facts.target else {
        return None;
    };
    let (kind, owner) = controller_owner(pod)?;
    let ns = ns_flag(info);
    let restart = match kind.as_str() {
        "ReplicaSet" => {
            // A Deployment names its ReplicaSets `<deployment>-<pod-template-hash>`.
            let hash = pod
                .pointer("/metadata/labels/pod-template-hash")
                .and_then(|h| h.as_str());
            match hash.and_then(|h| owner.strip_suffix(&format!("-{h}"))) {
                Some(deployment) => {
                    format!("kubectl rollout restart deployment/{deployment}{ns}")
                }
                None => "kubectl rollout restart on the Deployment that owns it".to_string(),
            }
        }
        "StatefulSet" | "DaemonSet" => {
            format!(
                "kubectl rollout restart {}/{owner}{ns}",
                kind.to_lowercase()
            )
        }
        _ => "kubectl rollout restart on its workload".to_string(),
    };
    Some(Hit::new(format!(
        "pod {} in namespace {} is managed by {kind}/{owner} (controller ownerReference); \
         {} it only makes the controller replace it. To act on the workload, delete or \
         scale its owner {kind}/{owner}, or use {restart}.",
        info.name,
        info.namespace,
        if info.is_pod_eviction() {
            "evicting (deleting)"
        } else {
            "deleting"
        },
    )))
}

fn zero_grace_delete(cx: &Cx<'_>, configured: RuleAction) -> Option<Hit> {
    let info = cx.info;
    // An eviction's deleteOptions are the pod delete's options.
    if !matches!(info.effect_verb(), Verb::Delete | Verb::DeleteCollection) {
        return None;
    }
    let min = cx.policy.min_grace_period_seconds;
    if let Some(reason) = &cx.analysis.opaque_reason {
        // The body's DeleteOptions win over the query, and this body cannot be read: the
        // grace period can be neither checked nor rewritten.
        return Some(Hit {
            text: format!(
                "pathgate cannot read the DeleteOptions body ({reason}), so it cannot check or \
                 raise gracePeriodSeconds. Send DeleteOptions as JSON (kubectl does)."
            ),
            rewrite: None,
            action: (configured == RuleAction::Rewrite).then_some(Action::Deny),
        });
    }
    let grace = cx.analysis.delete_options.as_ref()?.grace_period_seconds?;
    if grace >= min {
        return None;
    }
    let what = match grace {
        _ if info.is_pod_eviction() => {
            format!("the eviction's deleteOptions.gracePeriodSeconds={grace}")
        }
        0 => "gracePeriodSeconds=0 (kubectl --force)".to_string(),
        1 => "gracePeriodSeconds=1 (kubectl --grace-period=0 without --force)".to_string(),
        g => format!("gracePeriodSeconds={g}"),
    };
    let who = rewriter(
        cx.policy.mode,
        "pathgate sets",
        "in enforce mode pathgate would set",
    );
    let text = if configured == RuleAction::Rewrite {
        format!(
            "{what} on {} skips graceful shutdown; {who} it to {min} seconds \
             (min_grace_period_seconds) before forwarding. Next time delete without --force/--grace-period, or \
             with --grace-period={min} or more.",
            object_label(info, cx.analysis)
        )
    } else {
        format!(
            "{what} on {} skips graceful shutdown. Delete without --force and with no \
             --grace-period (the object's own grace period applies) or --grace-period={min} or \
             more.",
            object_label(info, cx.analysis)
        )
    };
    Some(Hit {
        text,
        rewrite: Some(Rewrite::SetGracePeriod {
            from: Some(grace),
            to: min,
        }),
        action: None,
    })
}

/// Who makes a rewrite: pathgate, or in `observe` mode nobody (enforce would).
fn rewriter(mode: Mode, acting: &'static str, observing: &'static str) -> &'static str {
    if mode == Mode::Observe {
        observing
    } else {
        acting
    }
}

fn deletecollection(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    if info.verb != Verb::DeleteCollection {
        return None;
    }
    let scope = if info.namespace.is_empty() {
        "across all namespaces".to_string()
    } else {
        format!("in namespace {}", info.namespace)
    };
    Some(Hit::new(format!(
        "this request deletes all {} {scope}{} in one call. Delete the objects you mean by \
         name, one request each: kubectl delete {} <name>{} (kubectl delete -l <selector> \
         does exactly that).",
        info.resource,
        if cx.analysis.has_selector {
            " that matches the selector"
        } else {
            ""
        },
        kubectl_resource(info),
        ns_flag(info),
    )))
}

fn namespace_delete(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    if info.verb != Verb::Delete
        || !is_core(info, "namespaces")
        || !info.subresource.is_empty()
        || !cx.policy.is_protected(&info.name)
    {
        return None;
    }
    Some(Hit::new(format!(
        "namespace {} is protected (protected_namespaces); deleting it deletes every object \
         in it. Delete only the objects the task needs, by name.",
        info.name
    )))
}

fn cluster_scoped_mutation(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    if !cx.mutation {
        return None;
    }
    let critical = CLUSTER_CRITICAL
        .iter()
        .find(|(group, resource, _)| *group == info.api_group && *resource == info.resource);
    let controls = match critical {
        Some((_, _, controls)) => *controls,
        None => {
            // A Namespace is the one cluster-scoped object that is its own scope.
            let cluster = match info.scope() {
                Scope::Cluster => !is_core(info, "namespaces"),
                // A custom resource without a namespace in its path is cluster-scoped (the
                // apiserver routes it by its CRD's scope), or spans all namespaces.
                Scope::Unknown => info.namespace.is_empty(),
                Scope::Namespaced => false,
            };
            if !cluster {
                return None;
            }
            "an object every namespace shares"
        }
    };
    Some(Hit::new(format!(
        "this {} of {} changes {controls} for the whole cluster, not one namespace. Make sure \
         the task needs it; prefer namespaced objects (Role and RoleBinding rather than \
         ClusterRole and ClusterRoleBinding) where they do the job.",
        verb_word(info.verb),
        object_label(info, cx.analysis),
    )))
}

fn redundant_create(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    if info.verb != Verb::Create || !info.subresource.is_empty() {
        return None;
    }
    if !matches!(cx.facts.target, TargetFact::Present(_)) {
        return None;
    }
    Some(Hit::new(redundant_create_text(
        info,
        cx.analysis,
        "already exists",
    )))
}

fn redundant_create_text(info: &RequestInfo, analysis: &Analysis, seen: &str) -> String {
    let name = target_name(info, analysis).unwrap_or("<name>");
    format!(
        "{} {seen}; creating it again fails with 409 AlreadyExists. Look at it first \
         (kubectl get {} {name}{} -o yaml) and patch what differs, or use kubectl apply.",
        object_label(info, analysis),
        kubectl_resource(info),
        ns_flag(info),
    )
}

fn missing_dry_run(cx: &Cx<'_>, configured: RuleAction) -> Option<Hit> {
    let honours = cx.info.honours_dry_run();
    if !cx.mutation
        || honoured_dry_run(cx.info, cx.analysis)
        || (cx.session.dry_run_succeeded && honours)
        || cx.policy.mode == Mode::Rehearse
        || is_confirm_annotation_patch(cx.info, cx.analysis)
    {
        return None;
    }
    if !honours {
        return Some(no_dry_run_possible(cx));
    }
    let then = if configured == RuleAction::Flag {
        "Next time run"
    } else {
        "Run"
    };
    // A DELETE with a body takes its options from the body alone: a dryRun in its query is
    // no dry run, and the agent must learn where to put it.
    let query_ignored = cx
        .analysis
        .delete_options
        .as_ref()
        .is_some_and(|o| o.query_ignored);
    Some(Hit::new(format!(
        "no successful server dry run of this exact {} of {} earlier in this session \
         (safety_gates.dry_run_default). {then} the same command with --dry-run=server first \
         (e.g. kubectl apply -f <file> --dry-run=server; API clients: the same request with \
         ?dryRun=All{}), read the result, then repeat the command unchanged.",
        action_word(cx.info),
        object_label(cx.info, cx.analysis),
        if query_ignored {
            "; this request has a DeleteOptions body, so the apiserver ignores the options in \
             its query: put dryRun: [\"All\"] into the body"
        } else {
            ""
        },
    )))
}

/// PG010 on an endpoint that ignores dryRun: no dry run of it can exist.
fn no_dry_run_possible(cx: &Cx<'_>) -> Hit {
    Hit::new(format!(
        "{} ignores dryRun: the apiserver acts on it even with dryRun=All (a TokenRequest \
         issues a working token){}, so no dry run of it can come first and pathgate judges it \
         as the mutation it is. Do without it, or ask an operator to allow it (rules.PG010: \
         flag).",
        endpoint_label(cx.info),
        if ignored_dry_run(cx.info, cx.analysis) {
            "; this request asked for a dry run it would not get"
        } else {
            ""
        },
    ))
}

fn unbounded_list(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    let analysis = cx.analysis;
    if analysis.has_selector || !info.subresource.is_empty() {
        return None;
    }
    let scope = if info.namespace.is_empty() {
        "across all namespaces".to_string()
    } else {
        format!("in namespace {}", info.namespace)
    };
    let narrow = format!(
        "narrow it with -l <selector>, --field-selector{}",
        if info.namespace.is_empty() {
            " or -n <namespace>"
        } else {
            ""
        }
    );
    match info.verb {
        Verb::List if analysis.list_limit.is_none() => {
            match cx.policy.schema_enforcement.discovery_payload_limit {
                Some(limit) => Some(Hit {
                    text: format!(
                        "LIST of {} {scope} without limit or selector could return every \
                         object; {who} limit={limit} \
                         (schema_enforcement.discovery_payload_limit), so the answer may be \
                         partial: follow metadata.continue for the rest, or {narrow}.",
                        info.resource,
                        who = rewriter(
                            cx.policy.mode,
                            "pathgate added",
                            "in enforce mode pathgate would add"
                        ),
                    ),
                    rewrite: Some(Rewrite::AddLimit { limit }),
                    action: None,
                }),
                None => Some(Hit::new(format!(
                    "LIST of {} {scope} without limit or selector could return every object; \
                     add --chunk-size/limit, or {narrow}.",
                    info.resource
                ))),
            }
        }
        Verb::Watch
            if info.namespace.is_empty() && cx.policy.schema_enforcement.label_selector_filter =>
        {
            Some(Hit {
                text: format!(
                    "WATCH of {} across all namespaces without selector streams every change in \
                     the cluster; {narrow}.",
                    info.resource
                ),
                rewrite: None,
                // A watch cannot be limited; a configured rewrite acts as a flag.
                action: None,
            })
        }
        _ => None,
    }
}

fn secret_read(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    if !matches!(info.verb, Verb::Get | Verb::List | Verb::Watch)
        || !is_core(info, "secrets")
        || !info.subresource.is_empty()
    {
        return None;
    }
    let what = match info.verb {
        Verb::Get => format!("secret {}", info.name),
        Verb::List => "a list of secrets".to_string(),
        _ => "a watch of secrets".to_string(),
    };
    let scope = if info.namespace.is_empty() {
        " across all namespaces".to_string()
    } else {
        format!(" in namespace {}", info.namespace)
    };
    Some(Hit::new(format!(
        "this request reads Secret data ({what}{scope}); pathgate records it with the data \
         redacted. Read secrets only when the task needs their values; to check that one \
         exists use kubectl get secrets <name>{} -o name.",
        ns_flag(info)
    )))
}

fn exec_attach_portforward(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    if info.verb != Verb::Connect || !CONNECT_SUBRESOURCES.contains(&info.subresource.as_str()) {
        return None;
    }
    Some(Hit::new(format!(
        "{} into {} opens a stream whose content the API does not record; pathgate records \
         the session, not what happens inside it. Prefer API reads (kubectl logs, kubectl get, \
         kubectl describe) when they answer the question.",
        info.subresource,
        object_label(info, cx.analysis),
    )))
}

fn out_of_scope_mutation(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    let connect = info.verb == Verb::Connect;
    if !(cx.mutation || connect) || cx.policy.mutation_namespaces.is_empty() {
        return None;
    }
    let namespace = effective_namespace(info, cx.analysis);
    if !namespace.is_empty() && cx.policy.mutation_allowed_in(namespace) {
        return None;
    }
    let allowed: Vec<&str> = cx
        .policy
        .mutation_namespaces
        .iter()
        .map(|p| p.as_str())
        .collect();
    let where_ = if namespace.is_empty() {
        let body_namespace = cx
            .analysis
            .object
            .as_ref()
            .and_then(|o| o.namespace.as_deref())
            .filter(|ns| !ns.is_empty());
        format!(
            "{} is cluster-scoped (or spans all namespaces){}",
            object_label(info, cx.analysis),
            match body_namespace {
                Some(ns) => format!(
                    "; the metadata.namespace {ns} in the body does not place it in a \
                     namespace (the apiserver clears it)"
                ),
                None => String::new(),
            }
        )
    } else {
        format!("namespace {namespace} is not in mutation_namespaces")
    };
    Some(Hit::new(format!(
        "{where_}; this session may change objects only in namespaces matching {}. Work in \
         one of those namespaces, or ask an operator to extend mutation_namespaces.",
        allowed.join(", ")
    )))
}

fn retry_loop(cx: &Cx<'_>) -> Option<Hit> {
    let failures = cx.session.recent_failures;
    let threshold = cx.policy.retry_loop.threshold;
    if failures < threshold {
        return None;
    }
    Some(Hit::new(retry_loop_text(
        failures,
        cx.policy.retry_loop.window_seconds,
    )))
}

fn retry_loop_text(failures: u32, window: u64) -> String {
    format!(
        "this same request failed {failures} times in the last {window} seconds (retry_loop). \
         Repeating it unchanged will fail the same way: read the last error, change the \
         request or what it depends on, then try again."
    )
}

fn opaque_body(cx: &Cx<'_>) -> Option<Hit> {
    if !cx.mutation {
        return None;
    }
    let reason = cx.analysis.opaque_reason.as_ref()?;
    Some(Hit::new(format!(
        "pathgate could not decode this {} body ({reason}), so no rule could check what it \
         changes. Send the object as JSON (Content-Type: application/json; kubectl apply -f \
         and kubectl create -f do).",
        verb_word(cx.info.verb)
    )))
}

/// What PG017 tells the agent; the proxy's own guard (which refuses in every mode) says the
/// same.
pub const IMPERSONATION_REFUSAL: &str = "Impersonate-* headers would act as another user \
     through pathgate's own credentials; pathgate never forwards them. Run without \
     --as/--as-group (and without Impersonate-* headers) under your own identity.";

fn impersonation(cx: &Cx<'_>) -> Option<Hit> {
    if !(cx.impersonation.headers && cx.impersonation.pathgate_credentials) {
        return None;
    }
    Some(Hit::new(IMPERSONATION_REFUSAL.to_string()))
}

/// PG018: the object a mutation changes, as the gate's identity model has it (the same
/// `{group, resource, namespace, name}` the autopsy judges): the namespace from the path
/// and the resource's scope, never the body; the name from the path, or for a create from
/// the body (an unnamed create, `generateName`, is `""`: only a name glob of `*` matches
/// it). A collection DELETE leaves the name open, and the namespace too when its path names
/// none on a resource that may be namespaced: it may delete any matching object.
fn protected_object(cx: &Cx<'_>, configured: RuleAction) -> Option<Hit> {
    let info = cx.info;
    if !cx.mutation || cx.policy.protected_objects.is_empty() {
        return None;
    }
    // Configured `confirm`, the token may travel as the target's confirmation annotation:
    // setting it must not itself need confirmation.
    if configured == RuleAction::Confirm && is_confirm_annotation_patch(info, cx.analysis) {
        return None;
    }
    if let Some(hit) = protected_namespace_contents(cx) {
        return Some(hit);
    }
    let collection = info.verb == Verb::DeleteCollection;
    let namespace = match info.scope() {
        Scope::Cluster => Some(""),
        _ if collection && info.namespace.is_empty() => None,
        _ => Some(info.namespace.as_str()),
    };
    let name = if collection {
        None
    } else {
        Some(target_name(info, cx.analysis).unwrap_or(""))
    };
    let (index, pattern) = cx
        .policy
        .protected_objects
        .iter()
        .enumerate()
        .find(|(_, p)| p.could_match(&info.api_group, &info.resource, namespace, name))?;
    let what = if collection {
        format!(
            "this deletecollection of {} {} could delete objects matching",
            info.resource,
            match namespace {
                Some("") | None => "across namespaces".to_string(),
                Some(ns) => format!("in namespace {ns}"),
            }
        )
    } else {
        format!(
            "this {} of {} changes an object matching",
            action_word(info),
            object_label(info, cx.analysis)
        )
    };
    Some(Hit::new(format!(
        "{what} protected_objects[{index}] {pattern}; this session may not change it. Leave \
         it as it is and work on other objects{}; if the task really needs this change, ask an \
         operator to make it or to narrow protected_objects (a --dry-run=server of it is \
         allowed and changes nothing).",
        if collection {
            ", deleting those by name"
        } else {
            ""
        }
    )))
}

/// Deleting a Namespace deletes every object in it: PG018 refuses it when a pattern names
/// namespaces (a glob other than `""` and `*`) and matches this one, whatever the pattern's
/// group, resource and name. A pattern that leaves the namespace open (`{resource:
/// clusterroles, name: admin}`, or a name protected in every namespace) does not make every
/// namespace undeletable. The Namespace object itself is cluster-scoped and matched as such
/// by the caller.
fn protected_namespace_contents(cx: &Cx<'_>) -> Option<Hit> {
    let info = cx.info;
    if info.verb != Verb::Delete || !is_core(info, "namespaces") || !info.subresource.is_empty() {
        return None;
    }
    let (index, pattern) = cx
        .policy
        .protected_objects
        .iter()
        .enumerate()
        .find(|(_, p)| {
            let names_namespaces = p.namespace.as_str().bytes().any(|b| b != b'*');
            names_namespaces && p.namespace.matches(&info.name)
        })?;
    Some(Hit::new(format!(
        "deleting namespace {} deletes every object in it, and protected_objects[{index}] \
         {pattern} protects objects there; this session may not delete them. Delete only the \
         objects the task needs, by name; if the task really needs the namespace gone, ask an \
         operator.",
        info.name
    )))
}

/// Whether the proxy should GET the request's target object into [`Facts::target`]
/// before deciding: for PG004 (a pod's ownerReferences), PG009 (does the created object
/// exist), PG003 (is a server-side apply a create) and whenever a rule would ask for
/// confirmation (the token may sit in the target's `pathgate.dev/confirm` annotation).
pub fn needs_target(info: &RequestInfo, analysis: &Analysis, policy: &Policy) -> bool {
    if info.is_discovery || !info.is_resource_request || !is_mutation(info) {
        return false;
    }
    if target_name(info, analysis).is_none() {
        return false;
    }
    let on = |rule| policy.rule_action(rule) != RuleAction::Off;
    let pod_delete = info.deletes_pod() && on(RuleId::PG004);
    let create = info.verb == Verb::Create && info.subresource.is_empty() && on(RuleId::PG009);
    let apply = info.verb == Verb::Patch
        && analysis.whole_object == Some(WholeObject::ServerSideApply)
        && on(RuleId::PG003);
    if pod_delete || create || apply {
        return true;
    }
    let ctx = RequestContext {
        session: String::new(),
        fingerprint: super::Fingerprint::from_bytes([0; 32]),
        impersonation_headers: false,
        pathgate_credentials: false,
        confirm_token: None,
    };
    let probe = decide(
        info,
        analysis,
        &Facts::default(),
        policy,
        &ctx,
        &SessionFacts::default(),
    );
    probe.findings.iter().any(|f| f.action == Action::Confirm)
}

/// The apiserver path of the request's target object (what the proxy GETs for
/// [`Facts::target`]); `None` when the request names no single object.
pub fn target_path(info: &RequestInfo, analysis: &Analysis) -> Option<String> {
    let name = target_name(info, analysis)?;
    if name.contains(['/', '?', '#', '%']) || info.api_version.is_empty() {
        return None;
    }
    // Sized once: the path is built for most requests (a read's is dropped unused).
    let parts = [
        &info.api_prefix,
        &info.api_group,
        &info.api_version,
        &info.namespace,
    ];
    let length = parts.iter().map(|p| p.len()).sum::<usize>() + info.resource.len() + name.len();
    let mut path = String::with_capacity(length + "//////namespaces/".len());
    path.push('/');
    path.push_str(&info.api_prefix);
    if !info.api_group.is_empty() {
        path.push('/');
        path.push_str(&info.api_group);
    }
    path.push('/');
    path.push_str(&info.api_version);
    if !info.namespace.is_empty() && !is_core(info, "namespaces") {
        path.push_str("/namespaces/");
        path.push_str(&info.namespace);
    }
    path.push('/');
    path.push_str(&info.resource);
    path.push('/');
    path.push_str(name);
    Some(path)
}

/// Whether a response status counts as a failure for PG015. 429 is the apiserver asking
/// the client to slow down and retry, not the request failing.
pub(super) fn is_failure(status: u16) -> bool {
    status >= 400 && status != 429
}

/// Findings only the response can reveal, always `flag` (the request has already been
/// forwarded): PG009 when a create is answered 409 AlreadyExists, PG015 when this
/// response is the `retry_loop.threshold`-th failure of the same request within the window
/// (`failures_in_window` as returned by [`super::SessionStore::record_outcome`]). Rules
/// that are `off`, and rules `decision` already reported, are skipped.
pub fn findings_from_response(
    info: &RequestInfo,
    analysis: &Analysis,
    policy: &Policy,
    decision: &Decision,
    status: u16,
    failures_in_window: u32,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if info.is_discovery || !info.is_resource_request {
        return findings;
    }
    let wanted = |rule: RuleId| {
        policy.rule_action(rule) != RuleAction::Off
            && !decision.findings.iter().any(|f| f.rule == rule)
    };
    if status == 409
        && info.verb == Verb::Create
        && info.subresource.is_empty()
        && wanted(RuleId::PG009)
    {
        findings.push(Finding {
            rule: RuleId::PG009,
            action: Action::Flag,
            message: format!(
                "PG009 redundant-create: {}",
                redundant_create_text(info, analysis, "already exists (409 AlreadyExists)")
            ),
        });
    }
    if is_failure(status)
        && failures_in_window >= policy.retry_loop.threshold
        && wanted(RuleId::PG015)
    {
        findings.push(Finding {
            rule: RuleId::PG015,
            action: Action::Flag,
            message: format!(
                "PG015 retry-loop: {}",
                retry_loop_text(failures_in_window, policy.retry_loop.window_seconds)
            ),
        });
    }
    findings
}
