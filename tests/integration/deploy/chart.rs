//! The Helm chart `deploy/helm/pathgate`: `helm lint` accepts it and its schema refuses bad
//! values; what `helm template` renders passes the real apiserver's server-side dry run and
//! carries a sidecar configuration pathgate accepts.

use std::process::Command;

use super::{assert_sidecar_layout, container, documents, embedded_config, helm, only, run_ok};
use crate::support::{admin, kubectl_with_stdin_ok, unique_namespace};

fn chart_dir() -> std::path::PathBuf {
    super::repository().join("deploy/helm/pathgate")
}

/// `helm template` of the chart as release `release` in `namespace`, with `--set` values.
pub(super) fn render(release: &str, namespace: &str, values: &[&str]) -> String {
    let mut command = Command::new(helm());
    command
        .args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", namespace]);
    for value in values {
        command.args(["--set", value]);
    }
    run_ok(&mut command)
}

#[test]
fn helm_lint_accepts_the_chart_and_its_schema_refuses_an_unknown_mode_or_sink() {
    run_ok(
        Command::new(helm())
            .args(["lint", "--strict"])
            .arg(chart_dir()),
    );
    for (value, complaint) in [
        ("pathgate.mode=block", "at '/pathgate/mode'"),
        ("ledger.sinks.kafka.brokers=x", "'kafka' not allowed"),
    ] {
        let output = Command::new(helm())
            .arg("lint")
            .arg(chart_dir())
            .args(["--set", value])
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "helm lint accepted {value}");
        assert!(
            printed.contains(complaint),
            "helm lint's complaint about {value} does not name {complaint}:\n{printed}"
        );
    }
}

#[test]
fn the_chart_refuses_server_keys_among_the_policy_values() {
    let output = Command::new(helm())
        .args(["template", "agent"])
        .arg(chart_dir())
        .args(["--set", "pathgate.policy.server.listen=0.0.0.0:8443"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "helm template accepted it");
    assert!(
        printed.contains("pathgate.policy.server: not a policy key"),
        "{printed}"
    );
}

#[test]
fn the_charts_manifests_pass_a_server_side_dry_run() {
    let namespace = unique_namespace("chart");
    let rendered = render(
        "agent",
        &namespace,
        &[
            "tls.generate=true",
            "ledger.volume.emptyDir=null",
            "ledger.volume.persistentVolumeClaim.claimName=ledger",
            "ledger.sinks.otlp.endpoint=http://otel-collector:4318",
            "pathgate.mode=rehearse",
        ],
    );
    let out = kubectl_with_stdin_ok(
        &admin(),
        &["apply", "--dry-run=server", "-n", &namespace, "-f", "-"],
        &rendered,
    );
    for object in [
        "serviceaccount/agent-pathgate",
        "role.rbac.authorization.k8s.io/agent-pathgate",
        "rolebinding.rbac.authorization.k8s.io/agent-pathgate",
        "configmap/agent-pathgate",
        "secret/agent-pathgate-tls",
        "deployment.apps/agent-pathgate",
    ] {
        assert!(
            out.contains(&format!("{object} created (server dry run)")),
            "{object} missing from:\n{out}"
        );
    }
    let docs = documents(&rendered);
    let deployment = only(&docs, "Deployment");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap();
    let ledger = volumes.iter().find(|v| v["name"] == "ledger").unwrap();
    assert_eq!(ledger["persistentVolumeClaim"]["claimName"], "ledger");
    assert!(ledger["emptyDir"].is_null(), "{ledger:?}");
    let config = embedded_config(only(&docs, "ConfigMap"), &chart_dir());
    assert_eq!(config.policy.mode, pathgate::policy::Mode::Rehearse);
    let otlp = config.ledger.otlp.expect("the otlp sink is configured");
    assert_eq!(otlp.endpoint.to_string(), "http://otel-collector:4318/");
    let secret = only(&docs, "Secret");
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(secret["data"][key].is_string(), "the Secret has no {key}");
    }
}

#[test]
fn the_charts_default_sidecar_is_pathgate_in_sidecar_mode_on_loopback_scoped_to_its_namespace() {
    let rendered = render("triage", "agents", &["pathgate.port=9443"]);
    let docs = documents(&rendered);
    assert_sidecar_layout(&docs, &chart_dir(), 9443);

    let config = embedded_config(only(&docs, "ConfigMap"), &chart_dir());
    assert_eq!(config.policy.mode, pathgate::policy::Mode::Enforce);
    let scope: Vec<&str> = config
        .policy
        .mutation_namespaces
        .iter()
        .map(|pattern| pattern.as_str())
        .collect();
    assert_eq!(
        scope,
        ["agents"],
        "PG014 scope defaults to the release namespace"
    );

    let deployment = only(&docs, "Deployment");
    let pathgate = container(deployment, "pathgate");
    let args: Vec<&str> = pathgate["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "serve",
            "--config",
            "/etc/pathgate/config/pathgate.yaml",
            "--session",
            "$(POD_NAME)"
        ]
    );
    assert_eq!(
        pathgate["image"], "pathgate:0.1.0",
        "the chart's appVersion"
    );
    let agent = container(deployment, "agent");
    assert_eq!(agent["env"][0]["name"], "KUBECONFIG");
    let agent_mounts = serde_yaml::to_string(&agent["volumeMounts"]).unwrap();
    assert!(
        !agent_mounts.contains("sa-token") && !agent_mounts.contains("name: tls\n"),
        "the agent must see neither the token nor pathgate's key:\n{agent_mounts}"
    );
    let agent_volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|volume| volume["name"] == agent["volumeMounts"][0]["name"])
        .unwrap();
    let secret_items = &agent_volume["projected"]["sources"][1]["secret"]["items"];
    assert_eq!(
        secret_items,
        &serde_yaml::from_str::<serde_yaml::Value>("[{key: ca.crt, path: pathgate-ca.crt}]")
            .unwrap(),
        "the agent gets pathgate's CA and nothing else of the Secret"
    );
    let role = only(&docs, "Role");
    assert_eq!(role["metadata"]["name"], "triage-pathgate");
    let binding = only(&docs, "RoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "triage-pathgate");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "triage-pathgate"
    );
}
