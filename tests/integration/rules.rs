//! The rule catalog through pathgate with kubectl against the real control plane: every
//! decision names its rule and reaches the agent as a `Status` or a `Warning`.

use crate::gateway::{cluster, kubectl, kubectl_stdin, namespace, ok, GatewayBuilder};

/// Enforce mode without the dry-run gate, so each test isolates its own rule.
const ENFORCE: &str = "mode: enforce\nsafety_gates:\n  dry_run_default: false\n";

fn pod(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"busybox"}}]}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg005_force_delete_is_rewritten_to_the_minimum_grace_and_kubectl_says_why() {
    let cluster = cluster();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml(ENFORCE)
        .start()
        .await;
    let kc = gateway.kubeconfig_with_token("admin", Some(&cluster.admin_token().unwrap()), None);
    let ns = namespace(&cluster, "pg005").await;
    ok(&kubectl_stdin(
        &cluster,
        &kc,
        &["-n", &ns, "create", "-f", "-"],
        Some(&pod("victim")),
    )
    .await);
    let out = kubectl(
        &cluster,
        &kc,
        &[
            "-n",
            &ns,
            "delete",
            "pod",
            "victim",
            "--grace-period=0",
            "--force",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out);
    assert!(
        stderr.contains("Warning: pathgate PG005"),
        "kubectl shows the rewrite: {stderr}"
    );
    let records = gateway.collected.all();
    let delete = records
        .iter()
        .find(|r| r.method == "DELETE" && r.path.ends_with("/pods/victim"))
        .expect("the delete was recorded");
    let decision = delete.decision.as_ref().unwrap();
    assert!(decision.findings.iter().any(|f| f.rule == "PG005"));
    assert!(
        delete
            .forwarded_query
            .as_deref()
            .unwrap_or("")
            .contains("gracePeriodSeconds=30"),
        "forwarded {:?}",
        delete.forwarded_query
    );
    gateway.stop().await;
}
