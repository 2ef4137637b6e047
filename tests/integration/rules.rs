//! The rule catalog through pathgate with kubectl against the real control plane: every
//! decision names its rule and reaches the agent as a `Status` or a `Warning`.
//!
//! Each test drives one rule the way an agent would (kubectl through a kubeconfig that
//! points at pathgate; raw HTTP only where kubectl cannot say it), then checks three things:
//! what the agent saw (kubectl's stderr, or the raw response), what the cluster holds
//! afterwards (read directly from the apiserver with the admin kubeconfig, not through
//! pathgate), and the decision pathgate recorded. Every test works in its own namespace.
//!
//! The control plane runs no controllers, scheduler or kubelet: pods are stored but never
//! run, so a pod bound to a node that does not exist keeps a graceful deletion pending
//! forever (which makes a grace period visible in the cluster), and a deleted namespace
//! stays `Terminating`.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use pathgate::policy::{Action, Finding};
use pathgate::proxy::{AuthMode, Exchange};
use testcluster::RunningCluster;

use crate::gateway::{
    cluster, failed, kubectl, kubectl_stdin, namespace, ok, send, unique, Gateway, GatewayBuilder,
};

/// Enforce mode without the dry-run rule, so each test isolates its own rule (with
/// `dry_run_default: false` PG010 would still flag every mutation).
const ENFORCE: &str = "mode: enforce\nrules:\n  PG010: off\n";

/// One test's pathgate, its kubeconfig (admin token, passthrough) and its namespace.
struct Rig {
    cluster: RunningCluster,
    gateway: Gateway,
    /// kubectl through pathgate.
    kc: PathBuf,
    /// kubectl straight to the apiserver, for setup and for checking the cluster.
    admin: PathBuf,
    ns: String,
}

impl Rig {
    async fn start(policy: &str, prefix: &str) -> Rig {
        Rig::start_with(
            GatewayBuilder::new(cluster().dir.admin_kubeconfig()),
            policy,
            prefix,
        )
        .await
    }

    async fn start_with(builder: GatewayBuilder, policy: &str, prefix: &str) -> Rig {
        let cluster = cluster();
        let gateway = builder.policy_yaml(policy).start().await;
        let kc = gateway.kubeconfig_with_token(
            "admin",
            Some(&cluster.admin_token().unwrap()),
            Some(&unique("session")),
        );
        let ns = namespace(&cluster, prefix).await;
        let admin = cluster.dir.admin_kubeconfig();
        Rig {
            cluster,
            gateway,
            kc,
            admin,
            ns,
        }
    }

    /// kubectl through pathgate, in the test's namespace.
    async fn kubectl(&self, args: &[&str]) -> Output {
        kubectl(&self.cluster, &self.kc, &with_ns(&self.ns, args)).await
    }

    /// kubectl through pathgate with a manifest on stdin, in the test's namespace.
    async fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        kubectl_stdin(
            &self.cluster,
            &self.kc,
            &with_ns(&self.ns, args),
            Some(stdin),
        )
        .await
    }

    /// Setup and checks straight against the apiserver (admin), in the test's namespace.
    async fn admin(&self, args: &[&str]) -> Output {
        kubectl(&self.cluster, &self.admin, &with_ns(&self.ns, args)).await
    }

    async fn admin_stdin(&self, args: &[&str], stdin: &str) -> String {
        ok(&kubectl_stdin(
            &self.cluster,
            &self.admin,
            &with_ns(&self.ns, args),
            Some(stdin),
        )
        .await)
    }

    /// An object as the apiserver holds it, or `None` when it does not exist.
    async fn object(&self, kind: &str, name: &str) -> Option<serde_json::Value> {
        let out = self.admin(&["get", kind, name, "-o", "json"]).await;
        if out.status.success() {
            Some(serde_json::from_slice(&out.stdout).expect("kubectl -o json prints JSON"))
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("NotFound"),
                "admin get {kind} {name}: {stderr}"
            );
            None
        }
    }

    /// A kubeconfig through pathgate in a fresh session (same admin token).
    fn session_kubeconfig(&self, name: &str) -> PathBuf {
        self.gateway.kubeconfig_with_token(
            name,
            Some(&self.cluster.admin_token().unwrap()),
            Some(&unique(name)),
        )
    }

    /// A raw request through pathgate with the admin token.
    async fn raw(
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
        let request = request.body(Full::new(body.into())).unwrap();
        send(&self.gateway.client(), request).await
    }

    /// Recorded exchanges matching `pred`, waiting briefly for reads (which are recorded
    /// when their stream ends, possibly just after kubectl exits).
    async fn exchanges(&self, what: &str, pred: impl Fn(&Exchange) -> bool) -> Vec<Exchange> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<Exchange> = self
                .gateway
                .collected
                .all()
                .into_iter()
                .filter(|e| pred(e))
                .collect();
            if !found.is_empty() {
                return found;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self
                    .gateway
                    .collected
                    .all()
                    .iter()
                    .map(|e| format!("{} {} -> {}", e.method, e.path, e.status_code))
                    .collect();
                panic!(
                    "pathgate recorded no {what}; it recorded:\n{}",
                    seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last recorded exchange with this method and a path ending in `suffix`.
    async fn last(&self, method: &str, suffix: &str) -> Exchange {
        self.exchanges(&format!("{method} ...{suffix}"), |e| {
            e.method == method && e.path.ends_with(suffix)
        })
        .await
        .pop()
        .unwrap()
    }

    async fn stop(self) {
        self.gateway.stop().await;
    }
}

fn with_ns<'a>(ns: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    all
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The finding of `rule` in the exchange's decision; panics naming what was decided.
fn finding<'a>(exchange: &'a Exchange, rule: &str) -> &'a Finding {
    let decision = exchange
        .decision
        .as_ref()
        .unwrap_or_else(|| panic!("{} {} has no decision", exchange.method, exchange.path));
    decision
        .findings
        .iter()
        .find(|f| f.rule == rule)
        .unwrap_or_else(|| {
            panic!(
                "{} {} has no {rule} finding; decision: {decision:#?}",
                exchange.method, exchange.path
            )
        })
}

fn rule_ids(exchange: &Exchange) -> Vec<&'static str> {
    exchange
        .decision
        .as_ref()
        .map(|d| d.rule_ids())
        .unwrap_or_default()
}

fn action(exchange: &Exchange) -> Action {
    exchange.decision.as_ref().expect("a decision").action
}

/// The confirmation token in a 403 message (`pathgate.dev/confirm=<token>`).
fn confirm_token(message: &str) -> String {
    let start = message
        .find("pathgate.dev/confirm=")
        .unwrap_or_else(|| panic!("no token in: {message}"))
        + "pathgate.dev/confirm=".len();
    let token: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    assert_eq!(token.len(), 32, "a 128-bit hex token in: {message}");
    token
}

use crate::gateway::pod_manifest as pod;

/// A pod bound to a node that does not exist: nothing ever confirms its containers
/// stopped, so a graceful delete leaves it in the cluster with a deletion timestamp, while
/// a zero-grace delete removes it at once.
fn bound_pod(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"nodeName":"ghost-node","containers":[{{"name":"c","image":"busybox"}}]}}}}"#
    )
}

fn deployment(name: &str, image: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: web
        image: {image}
        ports:
        - containerPort: 80
"#
    )
}

fn deployment_image(object: &serde_json::Value) -> &str {
    object
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(|v| v.as_str())
        .expect("a Deployment has a container image")
}

// PG001 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg001_merge_patch_of_more_leaves_than_max_patch_keys_is_flagged_and_applied() {
    let rig = Rig::start(ENFORCE, "pg001").await;
    ok(&rig
        .admin(&["create", "configmap", "settings", "--from-literal=keep=1"])
        .await);

    let out = rig
        .kubectl(&[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"a":"1","b":"2","c":"3","d":"4"}}"#,
        ])
        .await;
    ok(&out);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("Warning: pathgate PG001 broad-patch:")
            && stderr.contains("4 leaf paths (safety_gates.max_patch_keys is 3)"),
        "kubectl shows the flag: {stderr}"
    );

    let data = rig.object("configmap", "settings").await.unwrap()["data"].clone();
    assert_eq!(
        data,
        serde_json::json!({"keep":"1","a":"1","b":"2","c":"3","d":"4"}),
        "a flag forwards the patch"
    );
    let patch = rig.last("PATCH", "/configmaps/settings").await;
    assert_eq!(finding(&patch, "PG001").action, Action::Flag);
    assert_eq!(action(&patch), Action::Flag);
    assert_eq!(patch.status_code, 200);

    // Three keys is within the limit: no finding.
    let out = rig
        .kubectl(&[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"a":"x","b":"y","c":"z"}}"#,
        ])
        .await;
    ok(&out);
    assert!(!stderr_of(&out).contains("PG001"), "{}", stderr_of(&out));
    let narrow = rig.last("PATCH", "/configmaps/settings").await;
    assert!(
        !rule_ids(&narrow).contains(&"PG001"),
        "{:?}",
        rule_ids(&narrow)
    );
    rig.stop().await;
}

/// A merge patch restating four keys (above max_patch_keys 3) that changes one: judged on
/// its payload until the session's dry run of the same patch measured its effect; the dry
/// run tells kubectl that effect, and the real patch is then judged on it, without
/// pathgate fetching the object again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg001_judges_a_patch_on_the_effect_its_dry_run_measured() {
    let rig = Rig::start(ENFORCE, "pg001-effect").await;
    ok(&rig
        .admin(&[
            "create",
            "configmap",
            "settings",
            "--from-literal=a=1",
            "--from-literal=b=2",
            "--from-literal=c=3",
            "--from-literal=d=4",
        ])
        .await);
    let patch = |d: &str| format!(r#"{{"data":{{"a":"1","b":"2","c":"3","d":"{d}"}}}}"#);

    // No dry run: the effect is not known before the patch, so its payload is judged.
    let body = patch("5");
    let unrehearsed = rig
        .kubectl(&[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            &body,
        ])
        .await;
    ok(&unrehearsed);
    assert!(
        stderr_of(&unrehearsed).contains("PG001 broad-patch")
            && stderr_of(&unrehearsed).contains("touches 4 leaf paths"),
        "{}",
        stderr_of(&unrehearsed)
    );
    let recorded = rig.last("PATCH", "/configmaps/settings").await;
    assert_eq!(recorded.effect_paths, Some(vec!["/data/d".to_string()]));

    // The dry run measures the effect and says so.
    let body = patch("6");
    let dry = rig
        .kubectl(&[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            &body,
            "--dry-run=server",
        ])
        .await;
    ok(&dry);
    assert!(
        stderr_of(&dry).contains("Warning: pathgate: this dry run would change 1 field: /data/d"),
        "{}",
        stderr_of(&dry)
    );

    // The same patch for real: judged on that effect (one path), not flagged, applied.
    let real = rig
        .kubectl(&[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            &body,
        ])
        .await;
    ok(&real);
    assert!(!stderr_of(&real).contains("PG001"), "{}", stderr_of(&real));
    let recorded = rig.last("PATCH", "/configmaps/settings").await;
    assert!(recorded.analysis.as_ref().is_some_and(|a| !a.dry_run));
    assert!(
        !rule_ids(&recorded).contains(&"PG001"),
        "{:?}",
        rule_ids(&recorded)
    );
    assert_eq!(recorded.effect_paths, Some(vec!["/data/d".to_string()]));
    assert_eq!(
        recorded.target, None,
        "the dry run's measurement was reused, no GET"
    );
    let data = rig.object("configmap", "settings").await.unwrap()["data"].clone();
    assert_eq!(data["d"], "6");

    // The rehearsal was consumed: sending it again is judged on its payload once more.
    let again = rig
        .kubectl(&[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            &body,
        ])
        .await;
    ok(&again);
    assert!(
        stderr_of(&again).contains("PG001 broad-patch"),
        "{}",
        stderr_of(&again)
    );
    rig.stop().await;
}

/// A server-side apply of a whole Deployment manifest that changes one image: PG003 flags
/// its payload either way, and once the session's dry run measured the effect the flag
/// names it, as does the dry run's own warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg003_names_the_effect_its_dry_run_measured() {
    let rig = Rig::start(ENFORCE, "pg003-effect").await;
    rig.admin_stdin(
        &["apply", "--server-side", "-f", "-"],
        &deployment("web", "nginx:1.26", 1),
    )
    .await;
    let manifest = deployment("web", "nginx:1.27", 1);
    let apply = ["apply", "--server-side", "-f", "-"];

    let dry = rig
        .kubectl_stdin(&[&apply[..], &["--dry-run=server"]].concat(), &manifest)
        .await;
    ok(&dry);
    let image = "/spec/template/spec/containers/0/image";
    assert!(
        stderr_of(&dry).contains(&format!("this dry run would change 1 field: {image}")),
        "{}",
        stderr_of(&dry)
    );
    let real = rig.kubectl_stdin(&apply, &manifest).await;
    ok(&real);
    assert!(
        stderr_of(&real).contains("PG003 full-manifest-apply")
            && stderr_of(&real).contains(&format!("although it changes 1 leaf path(s): {image}")),
        "{}",
        stderr_of(&real)
    );
    let patch = rig.last("PATCH", "/deployments/web").await;
    assert_eq!(finding(&patch, "PG003").action, Action::Flag);
    assert_eq!(patch.effect_paths, Some(vec![image.to_string()]));
    let object = rig.object("deployment", "web").await.unwrap();
    assert_eq!(deployment_image(&object), "nginx:1.27");
    rig.stop().await;
}

// PG002 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg002_kubectl_replace_of_a_deployment_is_denied_and_the_cluster_keeps_it() {
    let rig = Rig::start(ENFORCE, "pg002").await;
    rig.admin_stdin(&["create", "-f", "-"], &deployment("web", "nginx:1.26", 1))
        .await;
    let live = ok(&rig.admin(&["get", "deployment", "web", "-o", "json"]).await);
    let changed = live.replace("nginx:1.26", "nginx:1.27");

    let out = rig.kubectl_stdin(&["replace", "-f", "-"], &changed).await;
    let stderr = failed(&out);
    assert!(
        stderr.contains("Error from server (Forbidden)")
            && stderr.contains("PG002 full-replace")
            && stderr.contains("kubectl patch deployments web"),
        "kubectl shows the denial and how to comply: {stderr}"
    );

    let object = rig.object("deployment", "web").await.unwrap();
    assert_eq!(
        deployment_image(&object),
        "nginx:1.26",
        "nothing was replaced"
    );
    let put = rig.last("PUT", "/deployments/web").await;
    assert_eq!(finding(&put, "PG002").action, Action::Deny);
    assert_eq!(action(&put), Action::Deny);
    assert_eq!(put.status_code, 403);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_still_carries_the_warnings_of_other_rules() {
    // PG010 flags, PG002 denies: kubectl prints both.
    let rig = Rig::start("mode: enforce\nrules:\n  PG010: flag\n", "refusal-warnings").await;
    rig.admin_stdin(&["create", "-f", "-"], &deployment("web", "nginx:1.26", 1))
        .await;
    let live = ok(&rig.admin(&["get", "deployment", "web", "-o", "json"]).await);
    let out = rig
        .kubectl_stdin(
            &["replace", "-f", "-"],
            &live.replace("nginx:1.26", "nginx:1.27"),
        )
        .await;
    let stderr = failed(&out);
    assert!(stderr.contains("Warning: pathgate PG010"), "{stderr}");
    assert!(stderr.contains("PG002"), "{stderr}");
    rig.stop().await;
}

// PG003 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg003_kubectl_apply_of_a_whole_existing_deployment_is_flagged_and_applied() {
    let rig = Rig::start(ENFORCE, "pg003").await;
    // The first apply creates the object: a new object needs all its fields, no finding.
    let out = rig
        .kubectl_stdin(&["apply", "-f", "-"], &deployment("web", "nginx:1.26", 1))
        .await;
    ok(&out);
    assert!(!stderr_of(&out).contains("PG003"), "{}", stderr_of(&out));
    let create = rig.last("POST", "/deployments").await;
    assert!(!rule_ids(&create).contains(&"PG003"));

    // The second apply restates the whole manifest to change one image.
    let out = rig
        .kubectl_stdin(&["apply", "-f", "-"], &deployment("web", "nginx:1.27", 1))
        .await;
    ok(&out);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("Warning: pathgate PG003 full-manifest-apply:")
            && stderr.contains("client-side apply"),
        "kubectl shows the flag: {stderr}"
    );
    let object = rig.object("deployment", "web").await.unwrap();
    assert_eq!(deployment_image(&object), "nginx:1.27", "a flag forwards");
    let patch = rig.last("PATCH", "/deployments/web").await;
    assert_eq!(finding(&patch, "PG003").action, Action::Flag);
    assert_eq!(patch.status_code, 200);

    // Server-side apply of the whole object is the same finding.
    let out = rig
        .kubectl_stdin(
            &["apply", "--server-side", "-f", "-"],
            &deployment("web", "nginx:1.28", 1),
        )
        .await;
    ok(&out);
    assert!(
        stderr_of(&out)
            .contains("Warning: pathgate PG003 full-manifest-apply: this server-side apply"),
        "{}",
        stderr_of(&out)
    );
    let object = rig.object("deployment", "web").await.unwrap();
    assert_eq!(deployment_image(&object), "nginx:1.28");
    let applies = rig
        .exchanges("server-side applies", |e| {
            e.method == "PATCH" && e.query.as_deref().unwrap_or("").contains("force=false")
        })
        .await;
    assert!(applies
        .iter()
        .all(|e| finding(e, "PG003").action == Action::Flag));
    // kubectl then re-saves the last-applied annotation (an apply patch carrying only it):
    // bookkeeping, not a whole manifest.
    let resave = rig
        .exchanges("kubectl's last-applied re-save", |e| {
            e.method == "PATCH"
                && e.query
                    .as_deref()
                    .unwrap_or("")
                    .contains("fieldManager=kubectl-last-applied")
        })
        .await;
    assert!(
        resave.iter().all(|e| rule_ids(e).is_empty()),
        "{:?}",
        resave.iter().map(rule_ids).collect::<Vec<_>>()
    );
    rig.stop().await;
}

// PG004 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg004_deleting_a_pod_owned_by_a_replicaset_is_denied_naming_the_owner() {
    let rig = Rig::start(ENFORCE, "pg004").await;
    // A Deployment's ReplicaSet is named <deployment>-<pod-template-hash>.
    let replicaset = r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-5d9c7b
  labels: {app: web, pod-template-hash: 5d9c7b}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web, pod-template-hash: 5d9c7b}
  template:
    metadata:
      labels: {app: web, pod-template-hash: 5d9c7b}
    spec:
      containers: [{name: web, image: nginx}]
"#;
    rig.admin_stdin(&["create", "-f", "-"], replicaset).await;
    let uid = rig.object("replicaset", "web-5d9c7b").await.unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let owned = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"web-5d9c7b-x2x9z","labels":{{"app":"web","pod-template-hash":"5d9c7b"}},
        "ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d9c7b","uid":"{uid}","controller":true,"blockOwnerDeletion":true}}]}},
        "spec":{{"containers":[{{"name":"web","image":"nginx"}}]}}}}"#
    );
    rig.admin_stdin(&["create", "-f", "-"], &owned).await;
    rig.admin_stdin(&["create", "-f", "-"], &pod("standalone"))
        .await;

    let out = rig.kubectl(&["delete", "pod", "web-5d9c7b-x2x9z"]).await;
    let stderr = failed(&out);
    assert!(
        stderr.contains("Error from server (Forbidden)")
            && stderr.contains("PG004 direct-pod-delete")
            && stderr.contains("ReplicaSet/web-5d9c7b")
            && stderr.contains(&format!(
                "kubectl rollout restart deployment/web -n {}",
                rig.ns
            )),
        "kubectl shows the denial naming the owner: {stderr}"
    );
    assert!(
        rig.object("pod", "web-5d9c7b-x2x9z").await.is_some(),
        "the owned pod is still there"
    );
    let delete = rig.last("DELETE", "/pods/web-5d9c7b-x2x9z").await;
    assert_eq!(finding(&delete, "PG004").action, Action::Deny);
    assert_eq!(delete.status_code, 403);

    // A pod without a controller is deleted normally.
    ok(&rig.kubectl(&["delete", "pod", "standalone"]).await);
    assert!(rig.object("pod", "standalone").await.is_none());
    let plain = rig.last("DELETE", "/pods/standalone").await;
    assert!(
        !rule_ids(&plain).contains(&"PG004"),
        "{:?}",
        rule_ids(&plain)
    );
    rig.stop().await;
}

// PG005 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg005_force_delete_is_rewritten_to_the_minimum_grace_and_kubectl_says_why() {
    let rig = Rig::start(ENFORCE, "pg005").await;
    rig.admin_stdin(&["create", "-f", "-"], &bound_pod("victim"))
        .await;
    let out = rig
        .kubectl(&[
            "delete",
            "pod",
            "victim",
            "--grace-period=0",
            "--force",
            "--wait=false",
        ])
        .await;
    ok(&out);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(
            "Warning: pathgate PG005 zero-grace-delete: gracePeriodSeconds=0 (kubectl --force)"
        ) && stderr.contains("pathgate sets it to 30 seconds"),
        "kubectl shows the rewrite: {stderr}"
    );
    // The pod is deleted gracefully: it waits for a kubelet that never comes.
    let object = rig
        .object("pod", "victim")
        .await
        .expect("a graceful delete keeps the bound pod until its kubelet confirms");
    assert!(object["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(object["metadata"]["deletionGracePeriodSeconds"], 30);

    let delete = rig.last("DELETE", "/pods/victim").await;
    let decision = delete.decision.as_ref().unwrap();
    assert_eq!(finding(&delete, "PG005").action, Action::Rewrite);
    assert_eq!(decision.action, Action::Rewrite);
    assert!(
        delete
            .forwarded_query
            .as_deref()
            .unwrap_or("")
            .contains("gracePeriodSeconds=30"),
        "forwarded {:?}",
        delete.forwarded_query
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg005_observe_mode_forwards_a_force_delete_unchanged_and_records_the_rewrite() {
    let rig = Rig::start("mode: observe\nrules:\n  PG010: off\n", "pg005-observe").await;
    rig.admin_stdin(&["create", "-f", "-"], &bound_pod("victim"))
        .await;
    let out = rig
        .kubectl(&[
            "delete",
            "pod",
            "victim",
            "--grace-period=0",
            "--force",
            "--wait=false",
        ])
        .await;
    ok(&out);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("Warning: pathgate PG005 zero-grace-delete:")
            && stderr.contains("in enforce mode pathgate would set it to 30 seconds")
            && stderr.contains("(observe mode: enforce would rewrite it; forwarded unchanged.)"),
        "kubectl shows what enforce would have done: {stderr}"
    );
    // Forwarded with zero grace: the bound pod is gone at once.
    assert!(
        rig.object("pod", "victim").await.is_none(),
        "observe mode forwarded the force delete unchanged"
    );
    let delete = rig.last("DELETE", "/pods/victim").await;
    let decision = delete.decision.as_ref().unwrap();
    assert_eq!(decision.action, Action::Flag);
    assert_eq!(decision.enforce_action, Action::Rewrite);
    assert!(decision.rewrites.is_empty());
    assert_eq!(delete.forwarded_query, delete.query, "query unchanged");
    assert_eq!(delete.status_code, 200);
    rig.stop().await;
}

// PG006 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg006_deletecollection_is_denied_while_kubectl_delete_all_deletes_by_name() {
    let rig = Rig::start(ENFORCE, "pg006").await;
    for name in ["a", "b"] {
        ok(&rig.admin(&["create", "configmap", name]).await);
    }
    let collection = format!("/api/v1/namespaces/{}/configmaps", rig.ns);

    // kubectl can send a deletecollection only as a raw DELETE of the collection.
    let out = kubectl(&rig.cluster, &rig.kc, &["delete", "--raw", &collection]).await;
    let stderr = failed(&out);
    assert!(
        stderr.contains("Error from server (Forbidden)")
            && stderr.contains("PG006 deletecollection")
            && stderr.contains(&format!("deletes all configmaps in namespace {}", rig.ns)),
        "kubectl shows the denial: {stderr}"
    );
    // With a JSON DeleteOptions body, as client-go's DeleteCollection sends it.
    let (status, _, body) = rig
        .raw(
            "DELETE",
            &format!("{collection}?labelSelector=app%3Dweb"),
            &[("content-type", "application/json")],
            r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#,
        )
        .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let message: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(message["reason"], "Forbidden");
    assert!(message["message"]
        .as_str()
        .unwrap()
        .contains("that matches the selector"));
    let names = ok(&rig.admin(&["get", "configmaps", "-o", "name"]).await);
    assert!(
        names.contains("configmap/a") && names.contains("configmap/b"),
        "nothing was deleted: {names}"
    );
    let denied = rig
        .exchanges("deletecollections", |e| {
            e.method == "DELETE" && e.path == collection
        })
        .await;
    assert_eq!(denied.len(), 2);
    for exchange in &denied {
        assert_eq!(finding(exchange, "PG006").action, Action::Deny);
        assert_eq!(exchange.status_code, 403);
    }

    // `kubectl delete configmaps --all` lists, then deletes each object by name.
    let out = rig.kubectl(&["delete", "configmaps", "--all"]).await;
    ok(&out);
    assert!(!stderr_of(&out).contains("PG006"), "{}", stderr_of(&out));
    assert_eq!(
        ok(&rig.admin(&["get", "configmaps", "-o", "name"]).await),
        ""
    );
    let by_name = rig
        .exchanges("deletes by name", |e| {
            e.method == "DELETE" && e.path.starts_with(&format!("{collection}/"))
        })
        .await;
    assert_eq!(by_name.len(), 2);
    assert!(by_name.iter().all(|e| !rule_ids(e).contains(&"PG006")));
    rig.stop().await;
}

// PG007 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg007_protected_namespace_delete_is_confirmed_with_kubectl_annotate() {
    // The template policy (dry runs required), with this test's namespace protected: the
    // full documented sequence.
    let prefix = unique("pg007kc");
    let policy = format!("mode: enforce\nprotected_namespaces: [\"{prefix}-*\"]\n");
    let rig = Rig::start(&policy, &prefix).await;
    let ns = rig.ns.clone();
    let delete = ["delete", "namespace", ns.as_str(), "--wait=false"];

    let dry = [&delete[..], &["--dry-run=server"]].concat();
    let out = kubectl(&rig.cluster, &rig.kc, &dry).await;
    ok(&out);
    assert!(
        stderr_of(&out).contains("PG007 namespace-delete")
            && stderr_of(&out).contains("the real request would need confirmation"),
        "the dry run is flagged: {}",
        stderr_of(&out)
    );

    let out = kubectl(&rig.cluster, &rig.kc, &delete).await;
    let refused = failed(&out);
    assert!(
        refused.contains("Error from server (Forbidden): pathgate needs confirmation")
            && refused.contains("PG007 namespace-delete")
            && refused.contains(&format!(
                "kubectl annotate namespace {ns} pathgate.dev/confirm="
            )),
        "kubectl shows the token and how to pass it: {refused}"
    );
    let token = confirm_token(&refused);
    let phase =
        |object: &serde_json::Value| object["status"]["phase"].as_str().unwrap().to_string();
    let namespace_object = || async {
        let out = kubectl(
            &rig.cluster,
            &rig.admin,
            &["get", "namespace", &ns, "-o", "json"],
        )
        .await;
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(phase(&namespace_object().await), "Active");

    let annotation = format!("pathgate.dev/confirm={token}");
    let out = kubectl(
        &rig.cluster,
        &rig.kc,
        &["annotate", "namespace", &ns, &annotation, "--overwrite"],
    )
    .await;
    ok(&out);
    assert!(
        !stderr_of(&out).contains("PG010"),
        "the annotate needs no dry run"
    );

    let out = kubectl(&rig.cluster, &rig.kc, &delete).await;
    ok(&out);
    assert!(
        stderr_of(&out).contains("(Confirmed with a one-time token.)"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(phase(&namespace_object().await), "Terminating");
    let path = format!("/api/v1/namespaces/{ns}");
    let deletes = rig
        .exchanges("namespace deletes", |e| {
            e.method == "DELETE" && e.path == path
        })
        .await;
    assert_eq!(deletes.len(), 3, "dry run, refusal, confirmed delete");
    assert_eq!(action(&deletes[1]), Action::Confirm);
    assert_eq!(deletes[1].status_code, 403);
    let confirmed = deletes[2].decision.as_ref().unwrap();
    assert!(confirmed.confirmed);
    assert_eq!(deletes[2].status_code, 200);
    assert_eq!(finding(&deletes[2], "PG007").action, Action::Flag);

    // The token worked once: the same delete again is refused with a fresh token.
    let out = kubectl(&rig.cluster, &rig.kc, &delete).await;
    let again = failed(&out);
    assert!(
        again.contains("PG007")
            && again.contains("the confirmation token presented is not valid")
            && !again.contains(&token),
        "a used token does not work twice, and kubectl says so: {again}"
    );
    let last = rig.last("DELETE", &path).await;
    assert_eq!(action(&last), Action::Confirm);
    assert!(!last.decision.as_ref().unwrap().confirmed);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg007_protected_namespace_delete_is_confirmed_with_the_header_once() {
    let prefix = unique("pg007hd");
    let policy =
        format!("mode: enforce\nrules:\n  PG010: off\nprotected_namespaces: [\"{prefix}-*\"]\n");
    let rig = Rig::start(&policy, &prefix).await;
    let path = format!("/api/v1/namespaces/{}", rig.ns);
    let options = r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#;
    let json = ("content-type", "application/json");

    let (status, _, body) = rig.raw("DELETE", &path, &[json], options).await;
    assert_eq!(status, 403);
    let status_body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status_body["reason"], "Forbidden");
    let message = status_body["message"].as_str().unwrap();
    assert!(message.contains("X-Pathgate-Confirm: "), "{message}");
    let token = confirm_token(message);

    // Another request does not redeem it (the token is bound to this request).
    let other = format!("/api/v1/namespaces/{}", unique(&prefix));
    let (status, _, _) = rig
        .raw(
            "DELETE",
            &other,
            &[json, ("x-pathgate-confirm", &token)],
            options,
        )
        .await;
    assert_eq!(
        status, 403,
        "a token confirms only the request it was issued for"
    );

    let (status, headers, body) = rig
        .raw(
            "DELETE",
            &path,
            &[json, ("x-pathgate-confirm", &token)],
            options,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let warnings: Vec<&str> = headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("Confirmed with a one-time token")),
        "{warnings:?}"
    );
    let namespace = rig
        .admin(&["get", "namespace", &rig.ns, "-o", "json"])
        .await;
    let namespace: serde_json::Value = serde_json::from_slice(&namespace.stdout).unwrap();
    assert_eq!(namespace["status"]["phase"], "Terminating");
    let confirmed = rig.last("DELETE", &path).await;
    assert!(confirmed.decision.as_ref().unwrap().confirmed);

    // Reused: refused, with a note that the old token did not work and a new one.
    let (status, _, body) = rig
        .raw(
            "DELETE",
            &path,
            &[json, ("x-pathgate-confirm", &token)],
            options,
        )
        .await;
    assert_eq!(status, 403);
    let message = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.to_lowercase().contains("did not work") || message.contains("not valid"),
        "{message}"
    );
    assert_ne!(confirm_token(&message), token);
    let reused = rig.last("DELETE", &path).await;
    assert_eq!(action(&reused), Action::Confirm);
    assert!(!reused.decision.as_ref().unwrap().confirmed);
    rig.stop().await;
}

// PG008 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg008_creating_a_clusterrole_is_flagged_and_created() {
    let rig = Rig::start(ENFORCE, "pg008").await;
    let name = unique("pg008-reader");
    let out = kubectl(
        &rig.cluster,
        &rig.kc,
        &[
            "create",
            "clusterrole",
            &name,
            "--verb=get",
            "--resource=pods",
        ],
    )
    .await;
    ok(&out);
    assert!(
        stderr_of(&out).contains("Warning: pathgate PG008 cluster-scoped-mutation:")
            && stderr_of(&out).contains("changes permissions for the whole cluster"),
        "{}",
        stderr_of(&out)
    );
    ok(&kubectl(&rig.cluster, &rig.admin, &["get", "clusterrole", &name]).await);
    let create = rig.last("POST", "/clusterroles").await;
    assert_eq!(finding(&create, "PG008").action, Action::Flag);
    assert_eq!(create.status_code, 201);
    rig.stop().await;
}

// PG009 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg009_creating_an_existing_configmap_is_flagged_and_the_original_stays() {
    let rig = Rig::start(ENFORCE, "pg009").await;
    ok(&rig
        .kubectl(&["create", "configmap", "cfg", "--from-literal=a=first"])
        .await);
    let first = rig.last("POST", "/configmaps").await;
    assert!(!rule_ids(&first).contains(&"PG009"));

    let out = rig
        .kubectl(&["create", "configmap", "cfg", "--from-literal=a=second"])
        .await;
    let stderr = failed(&out);
    assert!(
        stderr.contains("Warning: pathgate PG009 redundant-create:")
            && stderr.contains("AlreadyExists"),
        "kubectl shows the flag and the apiserver's answer: {stderr}"
    );
    let object = rig.object("configmap", "cfg").await.unwrap();
    assert_eq!(object["data"]["a"], "first");
    let second = rig.last("POST", "/configmaps").await;
    assert_eq!(finding(&second, "PG009").action, Action::Flag);
    assert_eq!(second.status_code, 409);
    rig.stop().await;
}

// PG010 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg010_apply_needs_the_same_server_dry_run_earlier_in_the_session() {
    let rig = Rig::start(
        "mode: enforce\nsafety_gates:\n  dry_run_default: true\n",
        "pg010",
    )
    .await;
    let manifest = deployment("web", "nginx:1.26", 1);

    // A fresh session: the apply alone is refused.
    let alone = rig.session_kubeconfig("alone");
    let out = kubectl_stdin(
        &rig.cluster,
        &alone,
        &["-n", &rig.ns, "apply", "-f", "-"],
        Some(&manifest),
    )
    .await;
    let stderr_alone = failed(&out);
    assert!(
        stderr_alone.contains("Error from server (Forbidden)")
            && stderr_alone.contains("PG010 missing-dry-run")
            && stderr_alone.contains("--dry-run=server"),
        "{stderr_alone}"
    );
    assert!(rig.object("deployment", "web").await.is_none());
    let refused = rig.last("POST", "/deployments").await;
    assert_eq!(finding(&refused, "PG010").action, Action::Deny);

    // Another session: dry run first, then the same apply passes.
    let out = rig
        .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &manifest)
        .await;
    ok(&out);
    assert!(rig.object("deployment", "web").await.is_none(), "a dry run");
    let out = rig.kubectl_stdin(&["apply", "-f", "-"], &manifest).await;
    ok(&out);
    assert!(!stderr_of(&out).contains("PG010"), "{}", stderr_of(&out));
    let object = rig.object("deployment", "web").await.expect("created");
    assert_eq!(deployment_image(&object), "nginx:1.26");
    let creates = rig
        .exchanges("creates", |e| {
            e.method == "POST" && e.path.ends_with("/deployments")
        })
        .await;
    let passed = creates.last().unwrap();
    assert_eq!(passed.status_code, 201);
    assert_ne!(passed.session, refused.session);
    assert!(
        !rule_ids(passed).contains(&"PG010"),
        "{:?}",
        rule_ids(passed)
    );

    // Updating the existing object: kubectl computes the patch against the live object,
    // which the dry run did not change, so the dry run and the apply send the same patch.
    let changed = deployment("web", "nginx:1.27", 1);
    let out = rig.kubectl_stdin(&["apply", "-f", "-"], &changed).await;
    assert!(
        failed(&out).contains("PG010 missing-dry-run"),
        "{}",
        stderr_of(&out)
    );
    let out = rig
        .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &changed)
        .await;
    ok(&out);
    let object = rig.object("deployment", "web").await.unwrap();
    assert_eq!(deployment_image(&object), "nginx:1.26", "a dry run");
    let out = rig.kubectl_stdin(&["apply", "-f", "-"], &changed).await;
    ok(&out);
    assert!(!stderr_of(&out).contains("PG010"), "{}", stderr_of(&out));
    let object = rig.object("deployment", "web").await.unwrap();
    assert_eq!(deployment_image(&object), "nginx:1.27");
    let patches = rig
        .exchanges("apply patches", |e| {
            e.method == "PATCH" && e.path.ends_with("/deployments/web")
        })
        .await;
    assert_eq!(patches.len(), 3, "refused, dry run, applied");
    assert_eq!(finding(&patches[0], "PG010").action, Action::Deny);
    assert_eq!(patches[0].fingerprint, patches[2].fingerprint);
    assert_eq!(patches[1].fingerprint, patches[2].fingerprint);
    assert_eq!(patches[2].status_code, 200);
    rig.stop().await;
}

// PG011 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg011_unbounded_list_gets_the_configured_limit() {
    let rig = Rig::start(
        "mode: enforce\nschema_enforcement:\n  discovery_payload_limit: 2\n",
        "pg011",
    )
    .await;
    for name in ["a", "b", "c"] {
        ok(&rig.admin(&["create", "configmap", name]).await);
    }
    let collection = format!("/api/v1/namespaces/{}/configmaps", rig.ns);
    let out = kubectl(&rig.cluster, &rig.kc, &["get", "--raw", &collection]).await;
    let list: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert!(
        stderr_of(&out).contains("Warning: pathgate PG011 unbounded-list:")
            && stderr_of(&out).contains("pathgate added limit=2"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "the first page");
    assert!(
        list["metadata"]["continue"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "the rest is behind metadata.continue"
    );
    let listed = rig
        .exchanges("the raw list", |e| {
            e.method == "GET" && e.path == collection && e.query.is_none()
        })
        .await;
    assert_eq!(finding(&listed[0], "PG011").action, Action::Rewrite);
    assert_eq!(listed[0].forwarded_query.as_deref(), Some("limit=2"));

    // kubectl get pages with limit=500 itself (and follows continue): not flagged.
    let out = rig.kubectl(&["get", "configmaps", "-o", "name"]).await;
    assert_eq!(ok(&out).lines().count(), 3);
    assert!(!stderr_of(&out).contains("PG011"), "{}", stderr_of(&out));
    rig.stop().await;
}

// PG012 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg012_reading_a_secret_is_flagged() {
    let rig = Rig::start(ENFORCE, "pg012").await;
    ok(&rig
        .admin(&[
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=hunter2",
        ])
        .await);
    let out = rig.kubectl(&["get", "secret", "db", "-o", "json"]).await;
    let secret: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert!(
        stderr_of(&out).contains("Warning: pathgate PG012 secret-read:")
            && stderr_of(&out).contains(&format!("secret db in namespace {}", rig.ns)),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(
        secret["data"]["password"], "aHVudGVyMg==",
        "a flag forwards"
    );
    let get = rig.last("GET", "/secrets/db").await;
    assert_eq!(finding(&get, "PG012").action, Action::Flag);
    assert_eq!(get.status_code, 200);
    rig.stop().await;
}

// PG013 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg013_exec_is_classified_and_flagged_even_when_no_kubelet_answers() {
    let rig = Rig::start(ENFORCE, "pg013").await;
    rig.admin_stdin(&["create", "-f", "-"], &bound_pod("shell"))
        .await;
    let out = rig.kubectl(&["exec", "shell", "--", "true"]).await;
    // There is no kubelet behind ghost-node: the apiserver answers the exec with an error.
    failed(&out);
    let execs = rig
        .exchanges("the exec", |e| e.path.ends_with("/pods/shell/exec"))
        .await;
    for exec in &execs {
        let info = exec.info.as_ref().unwrap();
        assert_eq!(info.verb, pathgate::classify::Verb::Connect);
        assert_eq!(finding(exec, "PG013").action, Action::Flag);
        assert!(
            exec.warnings
                .iter()
                .any(|w| w.contains("PG013 exec-attach-portforward")),
            "the answer carries the Warning: {:?}",
            exec.warnings
        );
        assert!(exec.status_code >= 400, "no kubelet: {}", exec.status_code);
    }
    assert!(
        rig.object("pod", "shell").await.is_some(),
        "the pod is untouched"
    );
    rig.stop().await;
}

// PG014 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg014_mutations_outside_mutation_namespaces_are_denied() {
    let policy = "mode: enforce\nrules:\n  PG010: off\nmutation_namespaces: [\"agent-*\"]\n";
    let rig = Rig::start(policy, "pg014").await;
    let sandbox = namespace(&rig.cluster, "agent-pg014").await;

    let out = rig.kubectl(&["create", "configmap", "cfg"]).await;
    let stderr_out = failed(&out);
    // kubectl's typed create prints a refusal as `error: failed to create configmap: <message>`.
    assert!(
        stderr_out.contains(
            "failed to create configmap: pathgate denied this request: PG014 out-of-scope-mutation"
        ) && stderr_out.contains(&format!(
            "namespace {} is not in mutation_namespaces",
            rig.ns
        )) && stderr_out.contains("agent-*"),
        "{stderr_out}"
    );
    assert!(rig.object("configmap", "cfg").await.is_none());
    let refused = rig
        .last("POST", &format!("/namespaces/{}/configmaps", rig.ns))
        .await;
    assert_eq!(finding(&refused, "PG014").action, Action::Deny);

    // Inside the sandbox the same command passes.
    let out = kubectl(
        &rig.cluster,
        &rig.kc,
        &["-n", &sandbox, "create", "configmap", "cfg"],
    )
    .await;
    ok(&out);
    assert!(!stderr_of(&out).contains("PG014"));
    ok(&kubectl(
        &rig.cluster,
        &rig.admin,
        &["-n", &sandbox, "get", "configmap", "cfg"],
    )
    .await);
    let allowed = rig
        .last("POST", &format!("/namespaces/{sandbox}/configmaps"))
        .await;
    assert!(!rule_ids(&allowed).contains(&"PG014"));
    assert_eq!(allowed.status_code, 201);

    // Cluster-scoped objects are outside every namespace.
    let role = unique("pg014-role");
    let out = kubectl(
        &rig.cluster,
        &rig.kc,
        &[
            "create",
            "clusterrole",
            &role,
            "--verb=get",
            "--resource=pods",
        ],
    )
    .await;
    assert!(failed(&out).contains("PG014"), "{}", stderr_of(&out));
    assert!(
        !kubectl(&rig.cluster, &rig.admin, &["get", "clusterrole", &role])
            .await
            .status
            .success()
    );
    rig.stop().await;
}

// PG015 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg015_the_third_identical_failure_is_flagged_as_a_retry_loop() {
    let rig = Rig::start(ENFORCE, "pg015").await;
    // The apiserver refuses this name (422 Invalid) every time.
    let bad =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"},"data":{"a":"b"}}"#;
    let mut outputs = Vec::new();
    for _ in 0..4 {
        outputs.push(rig.kubectl_stdin(&["create", "-f", "-"], bad).await);
    }
    for (attempt, out) in outputs.iter().enumerate() {
        let stderr = failed(out);
        assert!(stderr.contains("Invalid"), "attempt {attempt}: {stderr}");
        assert_eq!(
            stderr.contains("Warning: pathgate PG015 retry-loop:"),
            attempt >= 2,
            "attempt {attempt}: {stderr}"
        );
    }
    assert!(stderr_of(&outputs[2]).contains("failed 3 times"));
    let creates = rig
        .exchanges("creates", |e| {
            e.method == "POST" && e.path.ends_with("/configmaps")
        })
        .await;
    assert_eq!(creates.len(), 4);
    assert!(creates.iter().all(|e| e.status_code == 422));
    assert!(!rule_ids(&creates[1]).contains(&"PG015"));
    // The third is flagged on its response, the fourth before it is forwarded.
    assert_eq!(finding(&creates[2], "PG015").action, Action::Flag);
    assert_eq!(finding(&creates[3], "PG015").action, Action::Flag);
    let names = ok(&rig.admin(&["get", "configmaps", "-o", "name"]).await);
    assert_eq!(names, "", "nothing was created");
    rig.stop().await;
}

/// A read's fingerprint is computed only when its session needs it (its failures, here):
/// repeated 404s are still one retry loop, the ledger still names each failure's
/// fingerprint, and a success in between still clears the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg015_a_read_retried_after_not_found_is_a_retry_loop_with_a_late_fingerprint() {
    let rig = Rig::start(ENFORCE, "pg015-read").await;
    let get = ["get", "configmap", "retried", "-o", "name"];
    let mut outputs = Vec::new();
    for _ in 0..3 {
        outputs.push(rig.kubectl(&get).await);
    }
    for (attempt, out) in outputs.iter().enumerate() {
        let stderr = failed(out);
        assert!(stderr.contains("NotFound"), "attempt {attempt}: {stderr}");
        assert_eq!(
            stderr.contains("Warning: pathgate PG015 retry-loop:"),
            attempt >= 2,
            "attempt {attempt}: {stderr}"
        );
    }
    let is_read = |e: &Exchange| e.method == "GET" && e.path.ends_with("/configmaps/retried");
    let failures = rig.exchanges("reads", is_read).await;
    assert_eq!(failures.len(), 3);
    let entries: Vec<_> = failures
        .iter()
        .cloned()
        .map(pathgate::proxy::entry_of)
        .collect();
    let first = entries[0]
        .fingerprint
        .clone()
        .expect("a failed read's entry names it");
    assert_eq!(first.len(), 64);
    assert!(entries
        .iter()
        .all(|e| e.fingerprint.as_ref() == Some(&first)));

    // A success clears the failures: the next 404 counts from one again.
    ok(&rig.admin(&["create", "configmap", "retried"]).await);
    ok(&rig.kubectl(&get).await);
    ok(&rig.admin(&["delete", "configmap", "retried"]).await);
    let again = rig.kubectl(&get).await;
    assert!(!failed(&again).contains("PG015"), "{}", stderr_of(&again));
    let reads = rig.exchanges("reads", is_read).await;
    let codes: Vec<u16> = reads.iter().map(|e| e.status_code).collect();
    assert_eq!(codes, [404, 404, 404, 200, 404]);
    let success = pathgate::proxy::entry_of(reads[3].clone());
    assert_eq!(
        success.fingerprint, None,
        "a successful read's entry stays small"
    );
    rig.stop().await;
}

// PG016 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg016_an_undecodable_body_is_flagged() {
    let rig = Rig::start(ENFORCE, "pg016").await;
    let collection = format!("/api/v1/namespaces/{}/configmaps", rig.ns);
    let (status, headers, body) = rig
        .raw(
            "POST",
            &collection,
            &[("content-type", "application/json")],
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"#,
        )
        .await;
    assert!(
        status.is_client_error(),
        "the apiserver refuses it too: {status} {}",
        String::from_utf8_lossy(&body)
    );
    let warnings: Vec<&str> = headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("pathgate PG016 opaque-body")),
        "{warnings:?}"
    );
    let create = rig.last("POST", &collection).await;
    assert_eq!(finding(&create, "PG016").action, Action::Flag);
    assert_eq!(
        ok(&rig.admin(&["get", "configmaps", "-o", "name"]).await),
        ""
    );

    // A DeleteOptions body pathgate cannot read could hide a zero grace period: denied.
    ok(&rig.admin(&["create", "configmap", "keep"]).await);
    let (status, _, body) = rig
        .raw(
            "DELETE",
            &format!("{collection}/keep"),
            &[("content-type", "application/vnd.kubernetes.protobuf")],
            &b"k8s\x00\xff\xff\xff"[..],
        )
        .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let delete = rig.last("DELETE", "/configmaps/keep").await;
    assert_eq!(finding(&delete, "PG016").action, Action::Flag);
    assert_eq!(finding(&delete, "PG005").action, Action::Deny);
    assert!(rig.object("configmap", "keep").await.is_some());
    rig.stop().await;
}

// PG017 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg017_impersonation_passes_through_in_passthrough_and_is_refused_in_sidecar() {
    // Passthrough: the client's own token carries the header; the apiserver decides.
    let rig = Rig::start(ENFORCE, "pg017").await;
    ok(&rig.admin(&["create", "configmap", "cfg"]).await);
    let out = rig
        .kubectl(&[
            "get",
            "configmap",
            "cfg",
            "--as=someone-else",
            "--as-group=system:masters",
        ])
        .await;
    ok(&out);
    assert!(!stderr_of(&out).contains("PG017"), "{}", stderr_of(&out));
    let get = rig.last("GET", "/configmaps/cfg").await;
    assert!(!rule_ids(&get).contains(&"PG017"));
    assert_eq!(get.status_code, 200);
    rig.stop().await;

    // Sidecar: pathgate's own identity would carry it: refused before anything else.
    let rig = Rig::start_with(
        GatewayBuilder::new(cluster().dir.admin_kubeconfig()).auth(AuthMode::Sidecar),
        ENFORCE,
        "pg017-sidecar",
    )
    .await;
    ok(&rig.admin(&["create", "configmap", "cfg"]).await);
    let out = rig.kubectl(&["get", "configmap", "cfg"]).await;
    ok(&out);
    let out = rig
        .kubectl(&[
            "delete",
            "configmap",
            "cfg",
            "--as=someone-else",
            "--wait=false",
        ])
        .await;
    let stderr = failed(&out);
    assert!(
        stderr.contains("Error from server (Forbidden)") && stderr.contains("PG017"),
        "{stderr}"
    );
    assert!(
        rig.object("configmap", "cfg").await.is_some(),
        "not deleted"
    );
    let delete = rig.last("DELETE", "/configmaps/cfg").await;
    assert_eq!(delete.status_code, 403);
    assert!(delete
        .error
        .as_ref()
        .is_some_and(|(_, _, m)| m.contains("PG017")));
    // Recorded as a decision, so the ledger and the per-rule metrics count it.
    let decision = delete.decision.as_ref().expect("a decision is recorded");
    assert_eq!(decision.action, pathgate::policy::Action::Deny);
    assert!(decision.findings.iter().any(|f| f.rule == "PG017"));

    // Observe mode never forwards them either.
    let rig = Rig::start_with(
        GatewayBuilder::new(cluster().dir.admin_kubeconfig()).auth(AuthMode::Sidecar),
        "mode: observe\n",
        "pg017-observe",
    )
    .await;
    ok(&rig.admin(&["create", "configmap", "kept"]).await);
    // Discovery first, without --as (with it, discovery itself is refused).
    ok(&rig.kubectl(&["get", "configmap", "kept"]).await);
    let stderr = failed(
        &rig.kubectl(&[
            "delete",
            "configmap",
            "kept",
            "--as=someone-else",
            "--wait=false",
        ])
        .await,
    );
    assert!(stderr.contains("PG017"), "{stderr}");
    assert!(rig.object("configmap", "kept").await.is_some());
    rig.stop().await;
}

// Required scenarios across rules --------------------------------------------------------

// PG018 -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg018_protected_objects_are_neither_patched_scaled_nor_deleted_and_others_pass() {
    // The namespace is the test's own (`pg018-<unique>`); the pattern protects `app-*`
    // ConfigMaps in it.
    let policy = "mode: enforce\nrules:\n  PG010: off\nprotected_objects:\n\
                  - {resource: configmaps, namespace: 'pg018-*', name: 'app-*'}\n\
                  - {group: apps, resource: deployments, namespace: 'pg018-*', name: db}\n";
    let rig = Rig::start(policy, "pg018").await;
    for name in ["app-settings", "settings"] {
        ok(&rig
            .admin(&["create", "configmap", name, "--from-literal=mode=prod"])
            .await);
    }

    let out = rig
        .kubectl(&[
            "patch",
            "configmap",
            "app-settings",
            "-p",
            r#"{"data":{"mode":"debug"}}"#,
        ])
        .await;
    let stderr = failed(&out);
    assert!(
        stderr.contains("Error from server (Forbidden)")
            && stderr.contains("pathgate denied this request: PG018 protected-object:")
            && stderr.contains("protected_objects[0] {group: *, resource: configmaps")
            && stderr.contains("ask an operator"),
        "kubectl prints the rule, the pattern and the way on: {stderr}"
    );
    let refused = rig.last("PATCH", "/configmaps/app-settings").await;
    assert_eq!(finding(&refused, "PG018").action, Action::Deny);
    assert_eq!(refused.status_code, 403);

    let out = rig.kubectl(&["delete", "configmap", "app-settings"]).await;
    let stderr = failed(&out);
    assert!(
        stderr.contains("Error from server (Forbidden)") && stderr.contains("PG018"),
        "{stderr}"
    );
    let object = rig
        .object("configmap", "app-settings")
        .await
        .expect("the protected ConfigMap is still there");
    assert_eq!(object["data"]["mode"], "prod", "and unchanged");
    assert!(object["metadata"]["deletionTimestamp"].is_null());

    // A create named by its (protobuf) body is a change of a protected object too.
    let out = rig.kubectl(&["create", "configmap", "app-new"]).await;
    assert!(failed(&out).contains("PG018"), "{}", stderr_of(&out));
    assert!(rig.object("configmap", "app-new").await.is_none());

    // A server dry run changes nothing and passes, with what the real request would meet.
    let out = rig
        .kubectl(&[
            "patch",
            "configmap",
            "app-settings",
            "--dry-run=server",
            "-p",
            r#"{"data":{"mode":"debug"}}"#,
        ])
        .await;
    ok(&out);
    assert!(
        stderr_of(&out).contains("Warning: pathgate PG018 protected-object:")
            && stderr_of(&out).contains("would be denied"),
        "{}",
        stderr_of(&out)
    );
    let object = rig.object("configmap", "app-settings").await.unwrap();
    assert_eq!(object["data"]["mode"], "prod");

    // A subresource changes the object it hangs off: kubectl scale is PATCH .../db/scale.
    rig.admin_stdin(&["create", "-f", "-"], &deployment("db", "postgres:16", 1))
        .await;
    let out = rig
        .kubectl(&["scale", "deployment", "db", "--replicas=0"])
        .await;
    assert!(failed(&out).contains("PG018"), "{}", stderr_of(&out));
    let scaled = rig.last("PATCH", "/deployments/db/scale").await;
    assert_eq!(finding(&scaled, "PG018").action, Action::Deny);
    let db = rig.object("deployment", "db").await.unwrap();
    assert_eq!(db["spec"]["replicas"], 1);

    // An unprotected ConfigMap beside it passes.
    let out = rig
        .kubectl(&[
            "patch",
            "configmap",
            "settings",
            "-p",
            r#"{"data":{"mode":"debug"}}"#,
        ])
        .await;
    ok(&out);
    assert!(!stderr_of(&out).contains("PG018"), "{}", stderr_of(&out));
    let object = rig.object("configmap", "settings").await.unwrap();
    assert_eq!(object["data"]["mode"], "debug");
    let passed = rig.last("PATCH", "/configmaps/settings").await;
    assert!(!rule_ids(&passed).contains(&"PG018"));
    assert_eq!(passed.status_code, 200);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_set_image_passes_as_a_scoped_patch() {
    let rig = Rig::start(ENFORCE, "setimage").await;
    rig.admin_stdin(&["create", "-f", "-"], &deployment("web", "nginx:1.26", 1))
        .await;
    let out = rig
        .kubectl(&["set", "image", "deployment/web", "web=nginx:1.27"])
        .await;
    ok(&out);
    assert!(!stderr_of(&out).contains("pathgate"), "{}", stderr_of(&out));
    let object = rig.object("deployment", "web").await.unwrap();
    assert_eq!(deployment_image(&object), "nginx:1.27");
    let patch = rig.last("PATCH", "/deployments/web").await;
    assert_eq!(patch.status_code, 200);
    let analysis = patch.analysis.as_ref().unwrap();
    assert!(analysis.whole_object.is_none());
    assert_eq!(
        analysis.touched_paths.len(),
        1,
        "{:?}",
        analysis.touched_paths
    );
    assert_eq!(rule_ids(&patch), Vec::<&str>::new());
    assert_eq!(action(&patch), Action::Allow);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearse_mode_reports_success_and_changes_nothing() {
    let rig = Rig::start("mode: rehearse\n", "rehearse").await;
    rig.admin_stdin(&["create", "-f", "-"], &deployment("web", "nginx:1.26", 1))
        .await;
    ok(&rig.admin(&["create", "configmap", "cfg"]).await);
    let notice = "Warning: pathgate rehearse mode: this mutation was forwarded with dryRun=All";

    let out = rig
        .kubectl(&["scale", "deployment", "web", "--replicas=5"])
        .await;
    assert!(ok(&out).contains("deployment.apps/web scaled"));
    assert!(stderr_of(&out).contains(notice), "{}", stderr_of(&out));
    let out = rig
        .kubectl(&["set", "image", "deployment/web", "web=nginx:1.27"])
        .await;
    assert!(ok(&out).contains("image updated"));
    assert!(stderr_of(&out).contains(notice), "{}", stderr_of(&out));
    // kubectl delete waits for the object to go away, which a rehearsal never makes
    // happen: the Warning says to pass --wait=false.
    let out = rig
        .kubectl(&["delete", "configmap", "cfg", "--wait=false"])
        .await;
    assert!(ok(&out).contains("deleted"));
    assert!(
        stderr_of(&out).contains(notice) && stderr_of(&out).contains("pass --wait=false"),
        "{}",
        stderr_of(&out)
    );
    let out = rig
        .kubectl(&["create", "configmap", "fresh", "--from-literal=a=b"])
        .await;
    assert!(ok(&out).contains("created"));
    assert!(stderr_of(&out).contains(notice), "{}", stderr_of(&out));

    let object = rig.object("deployment", "web").await.unwrap();
    assert_eq!(object["spec"]["replicas"], 1);
    assert_eq!(deployment_image(&object), "nginx:1.26");
    assert!(rig.object("configmap", "cfg").await.is_some());
    assert!(rig.object("configmap", "fresh").await.is_none());

    let mutations: Vec<Exchange> = rig
        .exchanges("mutations", |e| {
            matches!(e.method.as_str(), "PATCH" | "POST" | "DELETE")
        })
        .await;
    assert_eq!(mutations.len(), 4);
    for mutation in &mutations {
        let decision = mutation.decision.as_ref().unwrap();
        assert_eq!(
            decision.action,
            Action::Rewrite,
            "{} {}",
            mutation.method,
            mutation.path
        );
        assert!(decision
            .rewrites
            .contains(&pathgate::policy::Rewrite::AddDryRun));
        assert!(
            mutation
                .forwarded_query
                .as_deref()
                .unwrap_or("")
                .contains("dryRun=All"),
            "{:?}",
            mutation.forwarded_query
        );
        assert!(mutation.status_code < 300);
    }

    // Rules still act as in enforce: a replace is still denied.
    let live = ok(&rig.admin(&["get", "deployment", "web", "-o", "json"]).await);
    let out = rig
        .kubectl_stdin(
            &["replace", "-f", "-"],
            &live.replace("nginx:1.26", "nginx:1.28"),
        )
        .await;
    assert!(failed(&out).contains("PG002"));
    rig.stop().await;
}

/// A protobuf DeleteOptions body (`k8s\0` envelope), as client-go sends it when configured
/// for protobuf: `gracePeriodSeconds` when given, `propagationPolicy: Background`.
fn protobuf_delete_options(grace: Option<u8>) -> Vec<u8> {
    fn field(number: u8, bytes: &[u8], out: &mut Vec<u8>) {
        out.push(number << 3 | 2);
        out.push(u8::try_from(bytes.len()).unwrap());
        out.extend_from_slice(bytes);
    }
    let mut options = Vec::new();
    if let Some(grace) = grace {
        options.extend_from_slice(&[1 << 3, grace]);
    }
    field(4, b"Background", &mut options);
    let mut type_meta = Vec::new();
    field(1, b"meta.k8s.io/v1", &mut type_meta);
    field(2, b"DeleteOptions", &mut type_meta);
    let mut body = b"k8s\x00".to_vec();
    field(1, &type_meta, &mut body);
    field(2, &options, &mut body);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_protobuf_options_cannot_be_rewritten_is_refused_not_forwarded() {
    // The apiserver reads a DELETE's options from its body and then ignores the query:
    // a dryRun or grace period added only to the query would not happen.
    let protobuf = [
        ("content-type", "application/vnd.kubernetes.protobuf"),
        ("accept", "application/json"),
    ];

    // Rehearse mode: forwarding it would really delete.
    let rig = Rig::start("mode: rehearse\n", "pb-rehearse").await;
    ok(&rig.admin(&["create", "configmap", "keep"]).await);
    let (status, _, body) = rig
        .raw(
            "DELETE",
            &format!("/api/v1/namespaces/{}/configmaps/keep", rig.ns),
            &protobuf,
            protobuf_delete_options(None),
        )
        .await;
    let message = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{message}");
    assert!(
        message.contains("pathgate must set dryRun=All (rehearse mode)")
            && message.contains("Send DeleteOptions as JSON"),
        "{message}"
    );
    assert!(
        rig.object("configmap", "keep").await.is_some(),
        "nothing deleted"
    );
    let delete = rig.last("DELETE", "/configmaps/keep").await;
    assert_eq!(action(&delete), Action::Deny);
    assert_eq!(delete.status_code, 403);
    rig.stop().await;

    // Enforce mode, PG005: forwarding it would delete with zero grace.
    let rig = Rig::start(ENFORCE, "pb-grace").await;
    rig.admin_stdin(&["create", "-f", "-"], &bound_pod("victim"))
        .await;
    let (status, _, body) = rig
        .raw(
            "DELETE",
            &format!("/api/v1/namespaces/{}/pods/victim", rig.ns),
            &protobuf,
            protobuf_delete_options(Some(0)),
        )
        .await;
    let message = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{message}");
    assert!(
        message.contains("gracePeriodSeconds=30 (PG005 zero-grace-delete)"),
        "{message}"
    );
    let pod = rig.object("pod", "victim").await.expect("not deleted");
    assert!(pod["metadata"]["deletionTimestamp"].is_null());
    let delete = rig.last("DELETE", "/pods/victim").await;
    assert_eq!(action(&delete), Action::Deny);
    assert_eq!(finding(&delete, "PG005").action, Action::Rewrite);

    // The same request with JSON options is rewritten and forwarded.
    let (status, headers, _) = rig
        .raw(
            "DELETE",
            &format!("/api/v1/namespaces/{}/pods/victim", rig.ns),
            &[("content-type", "application/json")],
            r#"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0}"#,
        )
        .await;
    assert_eq!(status, 200);
    assert!(headers
        .get_all("warning")
        .iter()
        .any(|w| w.to_str().unwrap().contains("PG005")));
    let pod = rig
        .object("pod", "victim")
        .await
        .expect("deleted gracefully");
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
    rig.stop().await;
}
