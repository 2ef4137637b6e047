//! Proof that the test control plane is a real Kubernetes apiserver: objects are created,
//! patched by each patch type with that type's real semantics, deleted; dry runs store
//! nothing; the agent's RBAC holds; the audit log records the `Audit-ID` a client sent.
//!
//! Each behaviour is checked through the built kubectl and through the Rust client
//! (`testcluster::testing::api`). These test the control plane pathgate is tested against,
//! not pathgate, so they live with the crate that starts it; `cargo xtask test` runs them
//! with the rest of the workspace against the same cluster.

use std::fs;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use testcluster::testing::api::{
    ApiClient, Identity, APPLY_PATCH_YAML, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH,
};
use testcluster::testing::{
    admin, admin_json, cluster, eventually, kubectl, kubectl_err, kubectl_ok, kubectl_with_stdin,
    kubectl_with_stdin_ok, unique_name, unique_namespace,
};

/// A Deployment with one container; nothing runs it (no controller-manager), but the
/// apiserver validates, defaults and stores it like any other.
fn deployment(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "web", "image": "registry.invalid/web:1" }] },
            },
        },
    })
}

fn container_names(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("a pod template has containers")
        .iter()
        .map(|container| container["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kubectl_and_the_apiserver_report_the_pinned_release() {
    let pinned = testcluster::Versions::read(&testcluster::workspace_root().join("controlplane"))
        .expect("controlplane/ pins the versions")
        .kubernetes;
    let version: Value = serde_json::from_str(&kubectl_ok(&admin(), &["version", "-o", "json"]))
        .expect("kubectl version -o json prints JSON");
    assert_eq!(version["clientVersion"]["gitVersion"], json!(pinned));
    assert_eq!(version["serverVersion"]["gitVersion"], json!(pinned));
    assert_eq!(cluster().kubernetes_version, pinned);
}

#[test]
fn both_admin_kubeconfigs_are_system_masters() {
    for kubeconfig in [
        cluster().dir.admin_kubeconfig(),
        cluster().dir.admin_token_kubeconfig(),
    ] {
        let review: Value =
            serde_json::from_str(&kubectl_ok(&kubeconfig, &["auth", "whoami", "-o", "json"]))
                .unwrap();
        assert_eq!(
            review["status"]["userInfo"]["username"],
            "admin",
            "{}",
            kubeconfig.display()
        );
        assert!(review["status"]["userInfo"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:masters")));
    }
}

#[test]
fn kubectl_creates_patches_and_deletes_a_configmap() {
    let namespace = unique_namespace("harness-kubectl-cm");
    let ns = namespace.as_str();
    let get = || admin_json(&["get", "configmap", "settings", "-n", ns]);
    kubectl_ok(
        &admin(),
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            ns,
            "--from-literal=mode=created",
        ],
    );
    assert_eq!(get()["data"], json!({ "mode": "created" }));

    kubectl_ok(
        &admin(),
        &[
            "patch",
            "configmap",
            "settings",
            "-n",
            ns,
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/data/mode","value":"json-patched"}]"#,
        ],
    );
    assert_eq!(get()["data"]["mode"], "json-patched");

    kubectl_ok(
        &admin(),
        &[
            "patch",
            "configmap",
            "settings",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"data":{"merged":"yes"}}"#,
        ],
    );
    kubectl_ok(
        &admin(),
        &[
            "patch",
            "configmap",
            "settings",
            "-n",
            ns,
            "--type=strategic",
            "-p",
            r#"{"data":{"strategic":"yes"}}"#,
        ],
    );
    assert_eq!(
        get()["data"],
        json!({ "mode": "json-patched", "merged": "yes", "strategic": "yes" })
    );

    let applied = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "settings", "namespace": ns },
        "data": { "applied": "yes" },
    });
    kubectl_with_stdin_ok(
        &admin(),
        &[
            "apply",
            "--server-side",
            "--field-manager=harness",
            "-f",
            "-",
        ],
        &applied.to_string(),
    );
    // kubectl hides managedFields unless asked.
    let after_apply = admin_json(&[
        "get",
        "configmap",
        "settings",
        "-n",
        ns,
        "--show-managed-fields",
    ]);
    assert_eq!(after_apply["data"]["applied"], "yes");
    assert_eq!(
        after_apply["data"]["merged"], "yes",
        "apply keeps fields other managers own"
    );
    assert!(after_apply["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|entry| entry["manager"] == "harness" && entry["operation"] == "Apply"));

    kubectl_ok(&admin(), &["delete", "configmap", "settings", "-n", ns]);
    let stderr = kubectl_err(&admin(), &["get", "configmap", "settings", "-n", ns]);
    assert!(stderr.contains("NotFound"), "{stderr}");
}

#[test]
fn kubectl_patch_types_have_their_real_semantics_on_a_deployment() {
    let namespace = unique_namespace("harness-kubectl-deploy");
    let ns = namespace.as_str();
    let get = || admin_json(&["get", "deployment", "web", "-n", ns]);
    kubectl_with_stdin_ok(
        &admin(),
        &["create", "-f", "-"],
        &deployment("web", ns).to_string(),
    );

    // Strategic merge merges the containers list by name: the new container is added.
    kubectl_ok(
        &admin(),
        &[
            "patch",
            "deployment",
            "web",
            "-n",
            ns,
            "--type=strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"registry.invalid/sidecar:1"}]}}}}"#,
        ],
    );
    assert_eq!(container_names(&get()), ["sidecar", "web"]);

    kubectl_ok(
        &admin(),
        &[
            "patch",
            "deployment",
            "web",
            "-n",
            ns,
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
        ],
    );
    assert_eq!(get()["spec"]["replicas"], 3);

    // A JSON merge patch replaces lists whole: the same shape of patch drops "web".
    kubectl_ok(
        &admin(),
        &[
            "patch",
            "deployment",
            "web",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"solo","image":"registry.invalid/solo:1"}]}}}}"#,
        ],
    );
    assert_eq!(container_names(&get()), ["solo"]);

    // Server-side apply tracks ownership: replicas belongs to kubectl-patch now.
    let mut applied = deployment("web", ns);
    applied["spec"]["replicas"] = json!(5);
    applied["spec"]["template"]["spec"]["containers"][0]["name"] = json!("solo");
    let conflict = kubectl_with_stdin(
        &admin(),
        &[
            "apply",
            "--server-side",
            "--field-manager=harness",
            "-f",
            "-",
        ],
        &applied.to_string(),
    );
    assert!(
        !conflict.status.success(),
        "apply over another manager's field must conflict"
    );
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("conflict"));
    kubectl_with_stdin_ok(
        &admin(),
        &[
            "apply",
            "--server-side",
            "--field-manager=harness",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &applied.to_string(),
    );
    assert_eq!(get()["spec"]["replicas"], 5);

    kubectl_ok(
        &admin(),
        &["delete", "deployment", "web", "-n", ns, "--wait=false"],
    );
    let stderr = kubectl_err(&admin(), &["get", "deployment", "web", "-n", ns]);
    assert!(stderr.contains("NotFound"), "{stderr}");
}

#[test]
fn kubectl_server_dry_run_leaves_no_object_behind() {
    let namespace = unique_namespace("harness-kubectl-dry");
    let ns = namespace.as_str();
    let printed = kubectl_ok(
        &admin(),
        &[
            "create",
            "configmap",
            "ghost",
            "-n",
            ns,
            "--from-literal=a=b",
            "--dry-run=server",
            "-o",
            "json",
        ],
    );
    let printed: Value = serde_json::from_str(&printed).unwrap();
    // The server answered (it filled in a uid and a creation time) but stored nothing.
    assert!(printed["metadata"]["uid"].is_string(), "{printed}");
    let stderr = kubectl_err(&admin(), &["get", "configmap", "ghost", "-n", ns]);
    assert!(stderr.contains("NotFound"), "{stderr}");
}

#[test]
fn a_pod_can_be_created_without_a_controller_manager() {
    // ServiceAccount admission would reject this pod until a controller created the
    // `default` service account; the launcher disables it so pod tests work.
    let namespace = unique_namespace("harness-pod");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "lonely", "namespace": namespace },
        "spec": { "containers": [{ "name": "main", "image": "registry.invalid/main:1" }] },
    });
    kubectl_with_stdin_ok(&admin(), &["create", "-f", "-"], &pod.to_string());
    let stored = admin_json(&["get", "pod", "lonely", "-n", &namespace]);
    // No scheduler, no kubelet: the pod is stored and stays Pending.
    assert_eq!(stored["status"]["phase"], "Pending");
    assert!(stored["spec"]["nodeName"].is_null());
}

#[test]
fn the_agent_is_confined_by_its_rbac_through_kubectl() {
    for kubeconfig in [
        cluster().dir.agent_kubeconfig(),
        cluster().dir.agent_token_kubeconfig(),
    ] {
        let agent = kubeconfig.as_path();
        let review: Value =
            serde_json::from_str(&kubectl_ok(agent, &["auth", "whoami", "-o", "json"])).unwrap();
        assert_eq!(
            review["status"]["userInfo"]["username"],
            testcluster::AGENT_USER
        );
        assert!(review["status"]["userInfo"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!(testcluster::AGENT_GROUP)));

        // Forbidden: writes outside its namespaces, secrets outside them, namespaces.
        let name = unique_name("agent-cm");
        for args in [
            vec![
                "create",
                "configmap",
                &name,
                "-n",
                "default",
                "--from-literal=a=b",
            ],
            vec!["get", "secrets", "-n", "default"],
            vec!["get", "secrets", "--all-namespaces"],
            vec!["create", "namespace", &name],
            vec!["delete", "namespace", "agent-sandbox", "--wait=false"],
            vec![
                "create",
                "clusterrolebinding",
                &name,
                "--clusterrole=cluster-admin",
                "--user=agent",
            ],
        ] {
            let stderr = kubectl_err(agent, &args);
            assert!(
                stderr.contains("forbidden"),
                "kubectl {}: {stderr}",
                args.join(" ")
            );
        }

        // Allowed: reading outside, everything (secrets included) inside its namespaces.
        kubectl_ok(
            agent,
            &["get", "pods,configmaps,deployments", "-n", "default"],
        );
        for namespace in testcluster::AGENT_NAMESPACES {
            kubectl_ok(
                agent,
                &[
                    "create",
                    "configmap",
                    &name,
                    "-n",
                    namespace,
                    "--from-literal=a=b",
                ],
            );
            kubectl_ok(
                agent,
                &[
                    "create",
                    "secret",
                    "generic",
                    &name,
                    "-n",
                    namespace,
                    "--from-literal=a=b",
                ],
            );
            kubectl_ok(agent, &["get", "secret", &name, "-n", namespace]);
            kubectl_ok(
                agent,
                &["delete", "configmap,secret", &name, "-n", namespace],
            );
        }
        // The default namespace of the agent kubeconfigs is its sandbox.
        let output = kubectl(
            agent,
            &["config", "view", "--minify", "-o", "jsonpath={..namespace}"],
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            testcluster::AGENT_NAMESPACES[0]
        );
    }
}

#[tokio::test]
async fn the_agent_is_confined_by_its_rbac_through_the_rust_client() {
    for identity in [Identity::AgentCertificate, Identity::AgentToken] {
        let agent = ApiClient::new(identity);
        let name = unique_name("agent-rust");
        let configmap = |namespace: &str| {
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": name, "namespace": namespace },
                "data": { "a": "b" },
            })
        };
        let denied = agent
            .post_json(
                "/api/v1/namespaces/default/configmaps",
                &configmap("default"),
            )
            .await;
        denied.expect_status(StatusCode::FORBIDDEN);
        assert_eq!(denied.json()["reason"], "Forbidden", "{identity:?}");
        agent
            .get("/api/v1/namespaces/kube-system/secrets")
            .await
            .expect_status(StatusCode::FORBIDDEN);
        agent
            .get("/api/v1/namespaces/default/configmaps")
            .await
            .expect_status(StatusCode::OK);

        let path = "/api/v1/namespaces/agent-work/configmaps";
        agent
            .post_json(path, &configmap("agent-work"))
            .await
            .expect_status(StatusCode::CREATED);
        agent
            .delete(&format!("{path}/{name}"))
            .await
            .expect_status(StatusCode::OK);
    }
}

#[tokio::test]
async fn the_rust_client_creates_patches_and_deletes_a_configmap() {
    let namespace = unique_namespace("harness-rust-cm");
    for identity in [Identity::AdminCertificate, Identity::AdminToken] {
        let client = ApiClient::new(identity);
        let name = unique_name("settings");
        let collection = format!("/api/v1/namespaces/{namespace}/configmaps");
        let object = format!("{collection}/{name}");
        let created = client
            .post_json(
                &collection,
                &json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": { "name": name },
                    "data": { "mode": "created" },
                }),
            )
            .await;
        created.expect_status(StatusCode::CREATED);
        assert_eq!(created.json()["metadata"]["namespace"], json!(namespace));

        let patched = client
            .patch(
                &object,
                JSON_PATCH,
                r#"[{"op":"replace","path":"/data/mode","value":"json-patched"}]"#,
            )
            .await;
        patched.expect_status(StatusCode::OK);
        assert_eq!(patched.json()["data"]["mode"], "json-patched");

        client
            .patch(
                &object,
                MERGE_PATCH,
                r#"{"data":{"merged":"yes","mode":null}}"#,
            )
            .await
            .expect_status(StatusCode::OK);
        let strategic = client
            .patch(
                &object,
                STRATEGIC_MERGE_PATCH,
                r#"{"data":{"strategic":"yes"}}"#,
            )
            .await;
        strategic.expect_status(StatusCode::OK);
        // `null` in a merge patch deletes the key.
        assert_eq!(
            strategic.json()["data"],
            json!({ "merged": "yes", "strategic": "yes" })
        );

        let applied = client
            .patch(
                &format!("{object}?fieldManager=harness-rust"),
                APPLY_PATCH_YAML,
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  applied: \"yes\"\n"),
            )
            .await;
        applied.expect_status(StatusCode::OK);
        let applied = applied.json();
        assert_eq!(applied["data"]["applied"], "yes");
        assert!(applied["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["manager"] == "harness-rust" && entry["operation"] == "Apply"));

        client.delete(&object).await.expect_status(StatusCode::OK);
        let gone = client.get(&object).await;
        gone.expect_status(StatusCode::NOT_FOUND);
        assert_eq!(gone.json()["reason"], "NotFound");
    }
}

#[tokio::test]
async fn the_rust_client_patch_types_have_their_real_semantics_on_a_deployment() {
    let namespace = unique_namespace("harness-rust-deploy");
    let client = ApiClient::new(Identity::AdminCertificate);
    let collection = format!("/apis/apps/v1/namespaces/{namespace}/deployments");
    let object = format!("{collection}/web");
    client
        .post_json(&collection, &deployment("web", &namespace))
        .await
        .expect_status(StatusCode::CREATED);

    let sidecar = r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"registry.invalid/sidecar:1"}]}}}}"#;
    let strategic = client.patch(&object, STRATEGIC_MERGE_PATCH, sidecar).await;
    strategic.expect_status(StatusCode::OK);
    assert_eq!(container_names(&strategic.json()), ["sidecar", "web"]);

    let json_patched = client
        .patch(
            &object,
            JSON_PATCH,
            r#"[{"op":"add","path":"/spec/replicas","value":2}]"#,
        )
        .await;
    json_patched.expect_status(StatusCode::OK);
    assert_eq!(json_patched.json()["spec"]["replicas"], 2);

    let merged = client.patch(&object, MERGE_PATCH, sidecar).await;
    merged.expect_status(StatusCode::OK);
    assert_eq!(container_names(&merged.json()), ["sidecar"]);

    // Server-side apply as a new manager over a field another manager set: 409 Conflict.
    let apply_body =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 4\n";
    let conflict = client
        .patch(
            &format!("{object}?fieldManager=harness-rust"),
            APPLY_PATCH_YAML,
            apply_body,
        )
        .await;
    conflict.expect_status(StatusCode::CONFLICT);
    let forced = client
        .patch(
            &format!("{object}?fieldManager=harness-rust&force=true"),
            APPLY_PATCH_YAML,
            apply_body,
        )
        .await;
    forced.expect_status(StatusCode::OK);
    assert_eq!(forced.json()["spec"]["replicas"], 4);

    client.delete(&object).await.expect_status(StatusCode::OK);
    client
        .get(&object)
        .await
        .expect_status(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dry_run_all_leaves_no_object_behind() {
    let namespace = unique_namespace("harness-dry-run");
    let client = ApiClient::new(Identity::AdminCertificate);
    let collection = format!("/api/v1/namespaces/{namespace}/configmaps");
    let configmap = |name: &str, value: &str| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": name },
            "data": { "value": value },
        })
    };

    // A dry-run create is answered like a real one and stores nothing.
    let dry_create = client
        .post_json(
            &format!("{collection}?dryRun=All"),
            &configmap("ghost", "x"),
        )
        .await;
    dry_create.expect_status(StatusCode::CREATED);
    assert_eq!(dry_create.json()["metadata"]["name"], "ghost");
    client
        .get(&format!("{collection}/ghost"))
        .await
        .expect_status(StatusCode::NOT_FOUND);

    // A dry-run patch and delete of a real object leave it as it was.
    client
        .post_json(&collection, &configmap("real", "original"))
        .await
        .expect_status(StatusCode::CREATED);
    let object = format!("{collection}/real");
    let dry_patch = client
        .patch(
            &format!("{object}?dryRun=All"),
            MERGE_PATCH,
            r#"{"data":{"value":"changed"}}"#,
        )
        .await;
    dry_patch.expect_status(StatusCode::OK);
    assert_eq!(dry_patch.json()["data"]["value"], "changed");
    client
        .delete(&format!("{object}?dryRun=All"))
        .await
        .expect_status(StatusCode::OK);
    let stored = client.get(&object).await;
    stored.expect_status(StatusCode::OK);
    assert_eq!(stored.json()["data"]["value"], "original");

    let list = client.get(&collection).await.json();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["real"]);
}

#[tokio::test]
async fn the_audit_log_records_the_audit_id_the_client_sent() {
    let audit_id = unique_name("pathgate-harness-audit");
    let client = ApiClient::new(Identity::AdminCertificate);
    let response = client
        .request(
            Method::GET,
            "/api/v1/namespaces/default",
            None,
            Default::default(),
            &[("Audit-ID", &audit_id)],
        )
        .await;
    response.expect_status(StatusCode::OK);
    assert_eq!(
        response
            .headers
            .get("Audit-ID")
            .and_then(|v| v.to_str().ok()),
        Some(audit_id.as_str()),
        "the apiserver adopts a well-formed inbound Audit-ID"
    );

    let audit_log = cluster().dir.audit_log();
    let event = eventually(Duration::from_secs(10), "the audit event", || {
        fs::read_to_string(&audit_log)
            .ok()?
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| event["auditID"] == json!(audit_id))
    });
    assert_eq!(event["requestURI"], "/api/v1/namespaces/default");
    assert_eq!(event["verb"], "get");
    assert_eq!(event["user"]["username"], "admin");
    assert_eq!(event["level"], "Metadata");
    assert_eq!(event["responseStatus"]["code"], 200);
}

#[test]
fn a_cluster_started_by_a_test_is_stopped_when_the_test_panics() {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::{getpgid, Pid};
    use std::panic::{catch_unwind, AssertUnwindSafe};

    let source = testcluster::ControlPlaneSource::of_workspace().expect("controlplane/ pins");
    let binaries = source
        .cached()
        .unwrap_or_else(|| panic!("no control-plane binaries: run `cargo xtask test` first"));
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("cluster");

    let mut pids = Vec::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let cluster = testcluster::Cluster::start(&dir, &binaries, &source.versions)
            .unwrap_or_else(|error| panic!("{error}"));
        let pid_file = fs::read_to_string(cluster.info().dir.pid_file()).unwrap();
        for line in pid_file.lines() {
            let pid = Pid::from_raw(line.split_once(' ').unwrap().1.parse().unwrap());
            // Each server leads its own process group, out of reach of a terminal's Ctrl-C.
            assert_eq!(getpgid(Some(pid)), Ok(pid), "{line}");
            pids.push(pid);
        }
        panic!("deliberate panic with a running cluster");
    }));

    assert!(outcome.is_err(), "the closure panicked");
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver were recorded");
    for pid in pids {
        assert_eq!(
            kill(pid, None),
            Err(Errno::ESRCH),
            "{pid} was stopped and reaped"
        );
    }
    assert!(
        !dir.join("env").exists(),
        "a stopped cluster no longer advertises itself"
    );
    assert!(
        testcluster::RunningCluster::load(&dir).is_err(),
        "nothing can find the stopped cluster"
    );
}
