//! What the launcher writes besides certificates: kubeconfigs, the audit policy, the static
//! token file, and the agent's RBAC objects (see `docs/control-plane.md` for the design).
//!
//! Kubeconfigs are written as JSON (a subset of YAML that every client reads) with the
//! credentials embedded, so one file is enough to reach the cluster.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::pki::{AGENT_GROUP, AGENT_USER};

/// Namespaces where the agent has full rights over workloads, configuration and secrets.
/// They are created by the launcher; the agent cannot create or delete namespaces itself.
pub const AGENT_NAMESPACES: &[&str] = &["agent-sandbox", "agent-work"];

/// The ClusterRole giving the agent read access outside its namespaces (never to secrets).
pub const AGENT_READER_ROLE: &str = "pathgate:agent-reader";
/// The ClusterRole bound, per agent namespace, to give the agent full rights there.
pub const AGENT_EDITOR_ROLE: &str = "pathgate:agent-editor";

/// How a kubeconfig's user authenticates.
pub(crate) enum Credential<'a> {
    /// A client certificate and key (PEM).
    ClientCertificate { cert_pem: &'a str, key_pem: &'a str },
    /// A static bearer token.
    Token(&'a str),
}

/// A kubeconfig with one cluster, one user and one context, everything embedded.
pub(crate) fn kubeconfig(
    server: &str,
    ca_pem: &str,
    user: &str,
    credential: Credential<'_>,
    namespace: Option<&str>,
) -> String {
    let user_entry = match credential {
        Credential::ClientCertificate { cert_pem, key_pem } => json!({
            "client-certificate-data": STANDARD.encode(cert_pem),
            "client-key-data": STANDARD.encode(key_pem),
        }),
        Credential::Token(token) => json!({ "token": token }),
    };
    let mut context = json!({ "cluster": "pathgate-test", "user": user });
    if let Some(namespace) = namespace {
        context["namespace"] = json!(namespace);
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "pathgate-test",
            "cluster": {
                "server": server,
                "certificate-authority-data": STANDARD.encode(ca_pem),
            },
        }],
        "users": [{ "name": user, "user": user_entry }],
        "contexts": [{ "name": user, "context": context }],
        "current-context": user,
    });
    serde_json::to_string_pretty(&config).expect("a JSON value always serialises") + "\n"
}

/// Every request at `Metadata` (who, what, when, outcome, `auditID`; no bodies). The
/// `RequestReceived` stage is omitted: it repeats the same ids before the outcome is known.
pub(crate) const AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  - level: Metadata
";

/// The apiserver's `--token-auth-file`: `token,user,uid,"group1,group2"` per line.
pub(crate) fn token_auth_file(entries: &[(&str, &str, &str)]) -> String {
    entries
        .iter()
        .map(|(token, user, group)| format!("{token},{user},{user},\"{group}\"\n"))
        .collect()
}

/// The agent's RBAC as one `v1/List` for `kubectl apply -f -`.
pub(crate) fn agent_rbac() -> Value {
    let read = json!(["get", "list", "watch"]);
    // Read-only everywhere, secrets excluded: RBAC cannot say "all but secrets", so the core
    // resources are listed and the other groups (none of which hold secrets) are wildcards.
    let reader = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": { "name": AGENT_READER_ROLE },
        "rules": [
            {
                "apiGroups": [""],
                "resources": [
                    "pods", "pods/log", "pods/status", "services", "endpoints", "configmaps",
                    "events", "namespaces", "nodes", "persistentvolumeclaims",
                    "persistentvolumes", "serviceaccounts", "replicationcontrollers",
                    "resourcequotas", "limitranges", "podtemplates"
                ],
                "verbs": read,
            },
            {
                "apiGroups": [
                    "apps", "batch", "autoscaling", "policy", "networking.k8s.io",
                    "discovery.k8s.io", "storage.k8s.io", "apiextensions.k8s.io",
                    "events.k8s.io", "coordination.k8s.io", "scheduling.k8s.io",
                    "node.k8s.io", "rbac.authorization.k8s.io"
                ],
                "resources": ["*"],
                "verbs": read,
            }
        ],
    });
    // Full rights inside a namespace, RBAC excluded (no self-escalation) and `namespaces`
    // excluded (a RoleBinding would otherwise let the agent delete its own namespace).
    let editor = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": { "name": AGENT_EDITOR_ROLE },
        "rules": [
            {
                "apiGroups": [""],
                "resources": [
                    "pods", "pods/log", "pods/status", "pods/exec", "pods/attach",
                    "pods/portforward", "pods/eviction", "pods/ephemeralcontainers",
                    "services", "services/proxy", "endpoints", "configmaps", "secrets",
                    "events", "persistentvolumeclaims", "serviceaccounts",
                    "serviceaccounts/token", "replicationcontrollers",
                    "replicationcontrollers/scale", "resourcequotas", "limitranges",
                    "podtemplates"
                ],
                "verbs": ["*"],
            },
            {
                "apiGroups": [
                    "apps", "batch", "autoscaling", "policy", "networking.k8s.io",
                    "discovery.k8s.io", "coordination.k8s.io", "events.k8s.io"
                ],
                "resources": ["*"],
                "verbs": ["*"],
            }
        ],
    });
    let subjects = json!([{
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Group",
        "name": AGENT_GROUP,
    }]);
    let mut items = vec![
        reader,
        editor,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": { "name": AGENT_READER_ROLE },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": AGENT_READER_ROLE,
            },
            "subjects": subjects,
        }),
    ];
    for namespace in AGENT_NAMESPACES {
        items.push(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": { "pathgate.dev/agent": AGENT_USER },
            },
        }));
        items.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": { "name": AGENT_EDITOR_ROLE, "namespace": namespace },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": AGENT_EDITOR_ROLE,
            },
            "subjects": subjects,
        }));
    }
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_quotes_groups() {
        assert_eq!(
            token_auth_file(&[("t0k", "agent", "pathgate:agents")]),
            "t0k,agent,agent,\"pathgate:agents\"\n"
        );
    }

    #[test]
    fn kubeconfig_embeds_credentials_and_namespace() {
        let config: Value = serde_json::from_str(&kubeconfig(
            "https://127.0.0.1:1",
            "CA",
            "agent",
            Credential::Token("secret"),
            Some("agent-sandbox"),
        ))
        .unwrap();
        assert_eq!(config["users"][0]["user"]["token"], "secret");
        assert_eq!(
            config["clusters"][0]["cluster"]["certificate-authority-data"],
            STANDARD.encode("CA")
        );
        assert_eq!(
            config["contexts"][0]["context"]["namespace"],
            "agent-sandbox"
        );
        assert_eq!(config["current-context"], "agent");
    }

    #[test]
    fn agent_roles_never_grant_secrets_cluster_wide_nor_rbac_writes() {
        let rbac = agent_rbac();
        let items = rbac["items"].as_array().unwrap();
        let reader = items
            .iter()
            .find(|item| {
                item["metadata"]["name"] == AGENT_READER_ROLE && item["kind"] == "ClusterRole"
            })
            .unwrap();
        for rule in reader["rules"].as_array().unwrap() {
            let resources = rule["resources"].as_array().unwrap();
            assert!(!resources.contains(&json!("secrets")));
            if rule["apiGroups"] == json!([""]) {
                assert!(!resources.contains(&json!("*")));
            }
            assert_eq!(rule["verbs"], json!(["get", "list", "watch"]));
        }
        let editor = items
            .iter()
            .find(|item| {
                item["metadata"]["name"] == AGENT_EDITOR_ROLE && item["kind"] == "ClusterRole"
            })
            .unwrap();
        for rule in editor["rules"].as_array().unwrap() {
            let groups = rule["apiGroups"].as_array().unwrap();
            assert!(!groups.contains(&json!("rbac.authorization.k8s.io")));
            assert!(!rule["resources"]
                .as_array()
                .unwrap()
                .contains(&json!("namespaces")));
        }
        let bound_namespaces: Vec<&str> = items
            .iter()
            .filter(|item| item["kind"] == "RoleBinding")
            .map(|item| item["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(bound_namespaces, AGENT_NAMESPACES);
    }
}
