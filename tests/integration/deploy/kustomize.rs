//! The kustomize base `deploy/kustomize/base` and the example overlay: both pass the real
//! apiserver's server-side dry run (`kubectl apply -k`), and carry the same sidecar layout
//! as the chart.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{assert_sidecar_layout, container, documents, embedded_config, only, run_ok};
use crate::support::{admin, cluster, kubectl_ok, unique_namespace};

fn kustomize_dir(name: &str) -> PathBuf {
    super::repository().join("deploy/kustomize").join(name)
}

/// `kubectl kustomize DIR` (kubectl's built-in kustomize; no cluster involved).
fn build(dir: &Path) -> String {
    run_ok(Command::new(&cluster().kubectl).arg("kustomize").arg(dir))
}

/// An overlay in a temporary directory that moves `target` into `namespace`, so the dry run
/// needs no shared namespace of the cluster.
fn in_namespace(target: &Path, namespace: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // kustomize takes only relative resource paths: up to `/`, then down to `target`.
    let up = "../".repeat(dir.path().components().count() - 1);
    let relative = format!("{up}{}", target.strip_prefix("/").unwrap().display());
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {namespace}\nresources:\n  - {relative}\n"
        ),
    )
    .unwrap();
    dir
}

#[test]
fn the_kustomize_base_and_the_example_overlay_pass_a_server_side_dry_run() {
    let namespace = unique_namespace("kustomize");
    for (name, extra) in [
        ("base", None),
        (
            "overlays/example",
            Some("persistentvolumeclaim/pathgate-ledger"),
        ),
    ] {
        let overlay = in_namespace(&kustomize_dir(name), &namespace);
        let out = kubectl_ok(
            &admin(),
            &[
                "apply",
                "--dry-run=server",
                "-k",
                overlay.path().to_str().unwrap(),
            ],
        );
        let expected = [
            "serviceaccount/agent",
            "role.rbac.authorization.k8s.io/agent",
            "rolebinding.rbac.authorization.k8s.io/agent",
            "configmap/pathgate",
            "deployment.apps/agent",
        ];
        for object in expected.into_iter().chain(extra) {
            assert!(
                out.contains(&format!("{object} created (server dry run)")),
                "{name}: {object} missing from:\n{out}"
            );
        }
    }
}

#[test]
fn the_kustomize_base_is_the_charts_sidecar_layout() {
    let dir = kustomize_dir("base");
    let docs = documents(&build(&dir));
    assert_sidecar_layout(&docs, &dir, 8443);
    let deployment = only(&docs, "Deployment");
    assert_eq!(deployment["metadata"]["namespace"], "agent-sandbox");
    let config = embedded_config(only(&docs, "ConfigMap"), &dir);
    let scope: Vec<&str> = config
        .policy
        .mutation_namespaces
        .iter()
        .map(|pattern| pattern.as_str())
        .collect();
    assert_eq!(scope, ["agent-sandbox"]);
    assert_eq!(container(deployment, "pathgate")["image"], "pathgate:0.1.0");
}

#[test]
fn the_example_overlay_observes_prints_entries_and_keeps_the_ledger_on_a_claim() {
    let dir = kustomize_dir("overlays/example");
    let docs = documents(&build(&dir));
    assert_sidecar_layout(&docs, &dir, 8443);
    let config = embedded_config(only(&docs, "ConfigMap"), &dir);
    assert_eq!(config.policy.mode, pathgate::policy::Mode::Observe);
    assert!(config.ledger.stdout);
    let deployment = only(&docs, "Deployment");
    let ledger = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|volume| volume["name"] == "ledger")
        .unwrap();
    assert_eq!(
        ledger["persistentVolumeClaim"]["claimName"],
        "pathgate-ledger"
    );
    assert!(ledger["emptyDir"].is_null(), "{ledger:?}");
    assert_eq!(
        container(deployment, "pathgate")["image"],
        "registry.example/pathgate:0.1.0"
    );
    assert_eq!(
        only(&docs, "ConfigMap")["data"]["agent.kubeconfig"],
        only(&documents(&build(&kustomize_dir("base"))), "ConfigMap")["data"]["agent.kubeconfig"],
        "the overlay keeps the base's agent kubeconfig"
    );
}
