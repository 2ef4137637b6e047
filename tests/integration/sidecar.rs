//! kubectl through the kubeconfigs a sidecar hands its agent: the one `pathgate kubeconfig`
//! writes without credentials, and the one embedded in `deploy/sidecar/pathgate-sidecar.yaml`.
//!
//! kubectl runs as an agent runs it, with stdin closed: a kubeconfig whose user names no
//! credential makes kubectl ask for a username and, with no terminal, fail with `EOF`
//! before it sends a request. pathgate runs in sidecar mode with the cluster's agent
//! identity upstream, so the placeholder token the kubeconfig carries must be dropped and
//! the request must reach the apiserver as the agent.

use std::path::Path;
use std::process::{Command, Stdio};

use pathgate::proxy::AuthMode;
use serde::Deserialize;

use crate::gateway::{cluster, kubectl, ok, Gateway, GatewayBuilder};

/// pathgate in sidecar mode, presenting the cluster's `agent` identity upstream.
async fn sidecar() -> Gateway {
    GatewayBuilder::new(cluster().dir.agent_kubeconfig())
        .auth(AuthMode::Sidecar)
        .start()
        .await
}

/// Asserts that kubectl, stdin closed, reached the apiserver through pathgate as `agent`.
async fn assert_kubectl_works_without_a_terminal(gateway: &Gateway, kubeconfig: &Path) {
    let cluster = cluster();
    let listed = kubectl(
        &cluster,
        kubeconfig,
        &["-n", "agent-sandbox", "get", "configmaps", "-o", "name"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(
        !stderr.contains("Username") && !stderr.contains("EOF"),
        "kubectl prompted for credentials:\n{stderr}"
    );
    ok(&listed);
    let whoami = ok(&kubectl(&cluster, kubeconfig, &["auth", "whoami", "-o", "json"]).await);
    let review: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(
        review["status"]["userInfo"]["username"], "agent",
        "the apiserver saw pathgate's credentials, not the placeholder: {review}"
    );
    let exchanges = gateway.collected.all();
    assert!(
        exchanges
            .iter()
            .any(|exchange| exchange.path.ends_with("/configmaps") && exchange.status_code == 200),
        "the list went through pathgate: {:?}",
        exchanges.iter().map(|e| &e.path).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_needs_no_terminal_through_a_kubeconfig_written_without_credentials() {
    let gateway = sidecar().await;
    let out = gateway.dir.path().join("sidecar.kubeconfig");
    let written = Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .args([
            "kubeconfig",
            "--server",
            &gateway.url,
            "--session",
            "sidecar-run",
        ])
        .arg("--ca")
        .arg(&gateway.ca)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(written.status.success(), "{written:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("token: pathgate-sidecar-placeholder"),
        "the kubeconfig names a credential:\n{text}"
    );
    assert_kubectl_works_without_a_terminal(&gateway, &out).await;
    assert!(gateway
        .collected
        .all()
        .iter()
        .all(|exchange| exchange.session == "sidecar-run"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_needs_no_terminal_through_the_sidecar_manifests_kubeconfig() {
    let gateway = sidecar().await;
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/sidecar/pathgate-sidecar.yaml"
    );
    let text = std::fs::read_to_string(manifest).unwrap();
    let config_map = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .find(|doc| doc["kind"] == "ConfigMap")
        .expect("the manifest has the pathgate ConfigMap");
    let embedded = config_map["data"]["agent.kubeconfig"]
        .as_str()
        .expect("the ConfigMap carries agent.kubeconfig");
    // What the agent container's envsubst and mounts make of it in the pod: its name in the
    // session, pathgate's CA at the mounted path, pathgate on its loopback port.
    let rendered = embedded
        .replace("${POD_NAME}", "agent-7d9f")
        .replace("https://127.0.0.1:8443", &gateway.url)
        .replace(
            "/etc/pathgate/tls/ca.crt",
            gateway.ca.to_str().expect("a UTF-8 temporary path"),
        );
    assert_ne!(
        rendered, embedded,
        "the manifest's kubeconfig changed shape"
    );
    let out = gateway.dir.path().join("manifest.kubeconfig");
    std::fs::write(&out, rendered).unwrap();
    assert_kubectl_works_without_a_terminal(&gateway, &out).await;
    assert!(gateway
        .collected
        .all()
        .iter()
        .all(|exchange| exchange.session == "agent-7d9f"));
    gateway.stop().await;
}
