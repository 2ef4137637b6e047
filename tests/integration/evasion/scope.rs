//! Cluster-scoped objects judged by a namespace the client wrote.
//!
//! The probe: `POST /apis/rbac.authorization.k8s.io/v1/clusterrolebindings` with
//! `metadata.namespace: <an allowed namespace>` in the body (the apiserver clears it) was
//! taken as in scope by PG014 and created a binding to `cluster-admin`; the same worked for
//! other cluster-scoped kinds by create, merge patch and server-side apply. Scope now comes
//! from the resource (pathgate's table of built-in resources, or the path for resources it
//! does not know), never from the body. Each test checks the cluster with the admin
//! kubeconfig afterwards: the object must not exist (or must be unchanged).
//!
//! Also home of [`Rig`], the pathgate-in-front-of-the-control-plane setup the other evasion
//! modules of this class share.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use pathgate::proxy::Exchange;
use testcluster::RunningCluster;

use crate::gateway::{
    cluster, kubectl, kubectl_stdin, namespace, ok, send, unique, Gateway, GatewayBuilder,
};

/// One test's pathgate (passthrough, admin token, its own session) and its namespace.
pub(super) struct Rig {
    pub cluster: RunningCluster,
    pub gateway: Gateway,
    /// kubectl through pathgate.
    pub kc: PathBuf,
    /// kubectl straight to the apiserver, for setup and checks.
    pub admin: PathBuf,
    /// A fresh namespace; the policy text may name it as the one in scope.
    pub ns: String,
}

impl Rig {
    /// Starts pathgate with the policy `policy(ns)` for a fresh namespace `ns`.
    pub async fn start(prefix: &str, policy: impl Fn(&str) -> String) -> Rig {
        Rig::start_with(prefix, policy, |builder| builder).await
    }

    /// [`Rig::start`] with a change to the gateway (a real ledger, say).
    pub async fn start_with(
        prefix: &str,
        policy: impl Fn(&str) -> String,
        edit: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    ) -> Rig {
        let cluster = cluster();
        let ns = namespace(&cluster, prefix).await;
        let builder = GatewayBuilder::new(cluster.dir.admin_kubeconfig()).policy_yaml(&policy(&ns));
        let gateway = edit(builder).start().await;
        let kc = gateway.kubeconfig_with_token(
            "admin",
            Some(&cluster.admin_token().unwrap()),
            Some(&unique("session")),
        );
        let admin = cluster.dir.admin_kubeconfig();
        Rig {
            cluster,
            gateway,
            kc,
            admin,
            ns,
        }
    }

    /// kubectl through pathgate.
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        kubectl(&self.cluster, &self.kc, args).await
    }

    /// kubectl through pathgate with `stdin`.
    pub async fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        kubectl_stdin(&self.cluster, &self.kc, args, Some(stdin)).await
    }

    /// kubectl straight to the apiserver (admin).
    pub async fn admin(&self, args: &[&str]) -> Output {
        kubectl(&self.cluster, &self.admin, args).await
    }

    /// Setup straight to the apiserver (admin): creates the manifest on stdin in the rig's
    /// namespace (cluster-scoped objects ignore it).
    pub async fn admin_apply(&self, manifest: &str) {
        let args = ["-n", self.ns.as_str(), "create", "-f", "-"];
        ok(&kubectl_stdin(&self.cluster, &self.admin, &args, Some(manifest)).await);
    }

    /// An object as the apiserver holds it (admin), or `None` when it does not exist.
    pub async fn object(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.admin(&all).await;
        if out.status.success() {
            return Some(serde_json::from_slice(&out.stdout).expect("kubectl -o json prints JSON"));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("NotFound"), "admin get {args:?}: {stderr}");
        None
    }

    /// A raw request through pathgate with the admin token.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (http::StatusCode, http::HeaderMap, Bytes) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.gateway.url))
            .header(
                "authorization",
                format!("Bearer {}", self.cluster.admin_token().unwrap()),
            );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send(
            &self.gateway.client(),
            request.body(Full::new(body.into())).unwrap(),
        )
        .await
    }

    /// The last recorded exchange with this method and a path ending in `suffix`.
    pub async fn last(&self, method: &str, suffix: &str) -> Exchange {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .gateway
                .collected
                .all()
                .into_iter()
                .rfind(|e| e.method == method && e.path.ends_with(suffix));
            if let Some(exchange) = found {
                return exchange;
            }
            assert!(
                Instant::now() < deadline,
                "pathgate recorded no {method} ...{suffix}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.gateway.stop().await;
    }
}

/// The rule ids of an exchange's decision.
pub(super) fn rules(exchange: &Exchange) -> Vec<&'static str> {
    exchange
        .decision
        .as_ref()
        .map(|d| d.rule_ids())
        .unwrap_or_default()
}

/// Enforce mode with PG014 scoped to the rig's namespace; PG010 off so that each test
/// isolates scope.
fn scoped(ns: &str) -> String {
    format!("mode: enforce\nrules:\n  PG010: off\nmutation_namespaces: [\"{ns}\"]\n")
}

/// A user no credential of the test cluster names.
const PROBE_USER: &str = "pathgate-probe-nobody";

const CRB_PATH: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";

/// A ClusterRoleBinding of `role` to `user`, with `metadata.namespace` when given.
fn binding(name: &str, namespace: Option<&str>, role: &str, user: &str) -> serde_json::Value {
    let mut binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    });
    if let Some(namespace) = namespace {
        binding["metadata"]["namespace"] = namespace.into();
    }
    binding
}

fn assert_denied_by_pg014(status: http::StatusCode, body: &Bytes) {
    let message = String::from_utf8_lossy(body);
    assert_eq!(status, 403, "{message}");
    assert!(
        message.contains("PG014 out-of-scope-mutation") && message.contains("is cluster-scoped"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusterrolebinding_with_an_allowed_body_namespace_is_denied_by_create_patch_and_apply() {
    let rig = Rig::start("scope-crb", scoped).await;
    let name = unique("agent-admin");

    // Create, as the probe sent it: raw JSON with the allowed namespace in the body.
    // The subject is a user nobody authenticates as: should this test ever fail, the
    // binding it leaves behind lends cluster-admin to no one (the probe bound the agent).
    let body = binding(&name, Some(&rig.ns), "cluster-admin", PROBE_USER).to_string();
    let (status, _, answer) = rig
        .raw(
            "POST",
            CRB_PATH,
            &[("content-type", "application/json")],
            body.clone(),
        )
        .await;
    assert_denied_by_pg014(status, &answer);
    assert!(
        String::from_utf8_lossy(&answer).contains(&format!(
            "the metadata.namespace {} in the body does not place it",
            rig.ns
        )),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let create = rig.last("POST", "/clusterrolebindings").await;
    assert_eq!(rules(&create), ["PG008", "PG014"]);
    // The same through kubectl create -f.
    let out = rig.kubectl_stdin(&["create", "-f", "-"], &body).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PG014"));
    // An update (PUT) that would create it.
    let (status, _, answer) = rig
        .raw(
            "PUT",
            &format!("{CRB_PATH}/{name}"),
            &[("content-type", "application/json")],
            body.clone(),
        )
        .await;
    assert_denied_by_pg014(status, &answer);
    // Server-side apply, raw and through kubectl.
    let (status, _, answer) = rig
        .raw(
            "PATCH",
            &format!("{CRB_PATH}/{name}?fieldManager=probe&force=true"),
            &[("content-type", "application/apply-patch+yaml")],
            body.clone(),
        )
        .await;
    assert_denied_by_pg014(status, &answer);
    let out = rig
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], &body)
        .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PG014"));
    assert!(
        rig.object(&["clusterrolebinding", &name]).await.is_none(),
        "no binding was created"
    );

    // Merge patch of an existing binding (view) that would add the agent as a subject.
    rig.admin_apply(&binding(&name, None, "view", "nobody").to_string())
        .await;
    let patch = format!(
        r#"{{"metadata":{{"namespace":"{}"}},"subjects":[{{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"{PROBE_USER}"}}]}}"#,
        rig.ns
    );
    let (status, _, answer) = rig
        .raw(
            "PATCH",
            &format!("{CRB_PATH}/{name}"),
            &[("content-type", "application/merge-patch+json")],
            patch,
        )
        .await;
    assert_denied_by_pg014(status, &answer);
    let live = rig.object(&["clusterrolebinding", &name]).await.unwrap();
    assert_eq!(live["subjects"][0]["name"], "nobody", "unchanged: {live}");
    ok(&rig.admin(&["delete", "clusterrolebinding", &name]).await);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cluster_scoped_kind_with_an_allowed_body_namespace_is_denied() {
    let rig = Rig::start("scope-kinds", scoped).await;
    let name = unique("probe");
    let ns = rig.ns.clone();
    let meta = serde_json::json!({"name": name, "namespace": ns});
    // (collection path, kubectl resource, body)
    let kinds = [
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "clusterrole",
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        ),
        (
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            "priorityclass",
            serde_json::json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": meta, "value": 1000}),
        ),
        (
            "/apis/storage.k8s.io/v1/storageclasses",
            "storageclass",
            serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": meta, "provisioner": "example.com/probe"}),
        ),
        (
            "/api/v1/persistentvolumes",
            "persistentvolume",
            serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/probe"}}}),
        ),
        (
            "/api/v1/nodes",
            "node",
            serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": meta}),
        ),
        (
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
            "validatingwebhookconfiguration",
            serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": meta, "webhooks": []}),
        ),
        (
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            "customresourcedefinition",
            serde_json::json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{name}s.probe.example.com"), "namespace": ns},
                "spec": {"group": "probe.example.com", "scope": "Cluster",
                    "names": {"plural": format!("{name}s"), "singular": name, "kind": "Probe"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object"}}}]}}),
        ),
    ];
    for (path, resource, body) in &kinds {
        let object_name = body["metadata"]["name"].as_str().unwrap().to_string();
        let (status, _, answer) = rig
            .raw(
                "POST",
                path,
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
        assert_denied_by_pg014(status, &answer);
        // Merge patch and server-side apply name the object in the path.
        for content_type in [
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ] {
            let (status, _, answer) = rig
                .raw(
                    "PATCH",
                    &format!("{path}/{object_name}?fieldManager=probe"),
                    &[("content-type", content_type)],
                    body.to_string(),
                )
                .await;
            assert_denied_by_pg014(status, &answer);
        }
        assert!(
            rig.object(&[resource, &object_name]).await.is_none(),
            "{resource} {object_name} was not created"
        );
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_scoped_resource_under_a_namespaced_path_is_out_of_scope() {
    let rig = Rig::start("scope-path", scoped).await;
    let name = unique("probe");
    let body = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": []});
    let (status, _, answer) = rig
        .raw(
            "POST",
            &format!(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/clusterroles",
                rig.ns
            ),
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    assert_denied_by_pg014(status, &answer);
    assert!(rig.object(&["clusterrole", &name]).await.is_none());

    // Namespaced objects in the allowed namespace still pass; a body naming the allowed
    // namespace does not move a create at a path without one into it.
    ok(&rig
        .kubectl(&["-n", &rig.ns, "create", "configmap", "in-scope"])
        .await);
    let (status, _, answer) = rig
        .raw(
            "POST",
            "/api/v1/configmaps",
            &[("content-type", "application/json")],
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"nowhere","namespace":"{}"}}}}"#, rig.ns),
        )
        .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("PG014"));
    assert!(rig
        .object(&["-n", &rig.ns, "configmap", "nowhere"])
        .await
        .is_none());
    rig.stop().await;
}
