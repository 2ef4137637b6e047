//! What `deploy/` and the `Containerfile` ship is valid for the real apiserver and for
//! pathgate itself: the sidecar manifest, the Helm chart ([`chart`]), the kustomize base and
//! overlay ([`kustomize`]) pass a server-side dry run and embed configurations pathgate
//! accepts; the image ([`image`]) is built with a real OCI builder and runs as they expect.
//!
//! The tools come from `cargo xtask test`: helm built from `controlplane/helm`, podman from
//! Debian, the static binary the image holds. A test that misses one fails naming that
//! command; none of them skips.

mod chart;
mod image;
mod kustomize;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

use crate::gateway::{cluster, kubectl, ok};

/// The uid and gid pathgate runs as: the manifests' `runAsUser`/`runAsGroup` and the
/// image's `USER`.
const USER_ID: u64 = 65532;

/// The repository's root.
fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The documents of a multi-document YAML stream (empty documents dropped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{e}:\n{yaml}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The one document of `kind` (panics when there is none or more than one).
fn only<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let mut matching = docs.iter().filter(|doc| doc["kind"] == kind);
    let found = matching
        .next()
        .unwrap_or_else(|| panic!("no {kind} among the documents"));
    assert!(matching.next().is_none(), "more than one {kind}");
    found
}

/// The named container of a Deployment.
fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("the Deployment has containers")
        .iter()
        .find(|container| container["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The pathgate configuration a ConfigMap embeds, loaded and checked as `pathgate serve`
/// would load it (`origin` only names it in errors).
fn embedded_config(config_map: &Value, origin: &Path) -> pathgate::config::Config {
    let text = config_map["data"]["pathgate.yaml"]
        .as_str()
        .expect("the ConfigMap has pathgate.yaml");
    let config =
        pathgate::config::Config::from_yaml(text, origin).unwrap_or_else(|e| panic!("{e}\n{text}"));
    config
        .server
        .check()
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    config
}

/// The kubeconfig a ConfigMap hands the agent.
fn embedded_kubeconfig(config_map: &Value) -> Value {
    let text = config_map["data"]["agent.kubeconfig"]
        .as_str()
        .expect("the ConfigMap has agent.kubeconfig");
    serde_yaml::from_str(text).unwrap()
}

/// What every sidecar layout (chart, kustomize) must agree on: pathgate in sidecar mode with
/// the in-cluster identity on the pod's loopback, its admin port the container's `admin`
/// port, the ledger on the mounted volume, and an agent kubeconfig that reaches that port
/// without ever prompting.
fn assert_sidecar_layout(docs: &[Value], origin: &Path, proxy_port: u16) {
    let deployment = only(docs, "Deployment");
    let config = embedded_config(only(docs, "ConfigMap"), origin);
    assert_eq!(
        config.server.auth,
        Some(pathgate::config::AuthMode::Sidecar)
    );
    assert_eq!(config.server.in_cluster, Some(true));
    let listen = config.server.listen.expect("a listen address");
    assert!(listen.ip().is_loopback(), "{listen} must be loopback");
    assert_eq!(listen.port(), proxy_port);

    let pathgate = container(deployment, "pathgate");
    let admin = config
        .server
        .admin_listen
        .and_then(|a| a.addr())
        .expect("an admin address");
    let admin_port = &pathgate["ports"][0];
    assert_eq!(admin_port["name"], "admin");
    assert_eq!(
        Some(u64::from(admin.port())),
        admin_port["containerPort"].as_u64(),
        "admin_listen {admin} is not the container's admin port"
    );
    let ledger_dir = config.ledger.dir.clone().expect("the ledger is on");
    assert!(
        pathgate["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|mount| mount["mountPath"].as_str().map(Path::new) == Some(&ledger_dir)),
        "the ledger dir {} is not a mounted volume",
        ledger_dir.display()
    );
    let security = &pathgate["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["runAsUser"], USER_ID);

    let kubeconfig = embedded_kubeconfig(only(docs, "ConfigMap"));
    assert_eq!(
        kubeconfig["clusters"][0]["cluster"]["server"],
        format!("https://127.0.0.1:{proxy_port}").as_str()
    );
    assert_eq!(
        kubeconfig["users"][0]["user"],
        serde_yaml::from_str::<Value>("token: pathgate-sidecar-placeholder").unwrap(),
        "the agent's user must be the placeholder token (kubectl prompts for anything less)"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"], false,
        "the agent container must not get a token of its own"
    );
}

/// The helm binary `cargo xtask test` built from `controlplane/helm`.
fn helm() -> PathBuf {
    testcluster::tools::HELM
        .find()
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Runs a tool that must succeed; returns its stdout.
fn run_ok(command: &mut std::process::Command) -> String {
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_manifests_pass_a_server_side_dry_run() {
    let cluster = cluster();
    let path = repository().join("deploy/sidecar/pathgate-sidecar.yaml");
    let out = ok(&kubectl(
        &cluster,
        &cluster.dir.admin_kubeconfig(),
        &["apply", "--dry-run=server", "-f", path.to_str().unwrap()],
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
    let path = repository().join("deploy/sidecar/pathgate-sidecar.yaml");
    let docs = documents(&std::fs::read_to_string(&path).unwrap());
    let config = embedded_config(only(&docs, "ConfigMap"), &path);
    assert_eq!(
        config.server.auth,
        Some(pathgate::config::AuthMode::Sidecar)
    );
    assert_eq!(config.server.in_cluster, Some(true));
}
