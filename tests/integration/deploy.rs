//! The manifests in `deploy/` are valid for the real apiserver (server-side dry run).

use serde::Deserialize;

use crate::gateway::{cluster, kubectl, ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_manifests_pass_a_server_side_dry_run() {
    let cluster = cluster();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/sidecar/pathgate-sidecar.yaml"
    );
    let out = ok(&kubectl(
        &cluster,
        &cluster.dir.admin_kubeconfig(),
        &["apply", "--dry-run=server", "-f", path],
    )
    .await);
    for kind in [
        "serviceaccount/agent",
        "role.rbac.authorization.k8s.io/agent",
        "configmap/pathgate-config",
        "deployment.apps/agent",
    ] {
        assert!(out.contains(kind), "{kind} missing from:\n{out}");
    }
}

#[test]
fn the_sidecar_config_is_a_valid_pathgate_config() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/sidecar/pathgate-sidecar.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let config_map = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .find(|doc| doc["kind"] == "ConfigMap")
        .expect("the manifest has the pathgate ConfigMap");
    let embedded = config_map["data"]["pathgate.yaml"].as_str().unwrap();
    let config = pathgate::config::Config::from_yaml(embedded, std::path::Path::new(path))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.server.auth,
        Some(pathgate::config::AuthMode::Sidecar)
    );
    assert_eq!(config.server.in_cluster, Some(true));
    config.server.check().unwrap();
}
