//! Wording helpers for findings: how a request's target reads in a message, and the
//! kubectl arguments an agent can paste.

use crate::classify::{Analysis, RequestInfo};

use super::{ConfirmRequest, CONFIRM_ANNOTATION};

/// Groups whose resources kubectl resolves without a group suffix in practice.
const PLAIN_GROUPS: [&str; 6] = [
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "networking.k8s.io",
];

/// The resource as a kubectl argument: `deployments`, `certificates.cert-manager.io`.
pub(super) fn kubectl_resource(info: &RequestInfo) -> String {
    if PLAIN_GROUPS.contains(&info.api_group.as_str()) {
        info.resource.clone()
    } else {
        format!("{}.{}", info.resource, info.api_group)
    }
}

/// ` -n <namespace>` or nothing.
pub(super) fn ns_flag(info: &RequestInfo) -> String {
    if info.namespace.is_empty() {
        String::new()
    } else {
        format!(" -n {}", info.namespace)
    }
}

/// The name the request targets: from the path, or for a create from the body.
pub(super) fn target_name<'a>(info: &'a RequestInfo, analysis: &'a Analysis) -> Option<&'a str> {
    if !info.name.is_empty() {
        Some(&info.name)
    } else {
        analysis
            .object
            .as_ref()
            .and_then(|o| o.name.as_deref())
            .filter(|n| !n.is_empty())
    }
}

/// `Deployment/web in namespace shop`, falling back to the resource when the body did not
/// name the kind, and to `<resource> objects` when there is no name.
pub(super) fn object_label(info: &RequestInfo, analysis: &Analysis) -> String {
    let kind = analysis
        .object
        .as_ref()
        .and_then(|o| o.kind.clone())
        .unwrap_or_else(|| info.resource.clone());
    let mut label = match target_name(info, analysis) {
        Some(name) => format!("{kind}/{name}"),
        None => format!("{} objects", info.resource),
    };
    if !info.subresource.is_empty() {
        label.push_str(&format!(" (subresource {})", info.subresource));
    }
    if !info.namespace.is_empty() {
        label.push_str(&format!(" in namespace {}", info.namespace));
    }
    label
}

/// Up to `max` paths joined, with `and N more`.
pub(super) fn list_paths(paths: &[String], max: usize) -> String {
    let mut shown: Vec<&str> = paths.iter().take(max).map(String::as_str).collect();
    let more = paths.len().saturating_sub(max);
    let extra;
    if more > 0 {
        extra = format!("and {more} more");
        shown.push(&extra);
    }
    shown.join(", ")
}

/// The confirmation part of a `confirm` Status message.
pub(super) fn confirm_instructions(confirm: &ConfirmRequest) -> String {
    let Some(token) = &confirm.token else {
        return "pathgate could not issue a confirmation token; repeat the request to get one."
            .to_string();
    };
    let window = confirm.window_seconds;
    match &confirm.annotate_target {
        Some(target) => format!(
            "To confirm within {window} seconds: run `kubectl annotate {target} \
             {CONFIRM_ANNOTATION}={token} --overwrite`, then repeat the same command unchanged \
             (or resend the same request with header X-Pathgate-Confirm: {token}). The token \
             works once, for this exact request, in this session."
        ),
        None => format!(
            "To confirm within {window} seconds, resend the same request with header \
             X-Pathgate-Confirm: {token}. The token works once, for this exact request, in \
             this session."
        ),
    }
}
