//! `pathgate undo` end to end on the real control plane: scripted runs of real kubectl
//! through `pathgate run` (observe mode, so a replace goes through and is recorded with
//! its images), then the real binary undoes them through a gateway it starts in front of
//! the cluster, in the session `undo.<ID>`. Objects are compared field by field (spec,
//! data, labels, annotations) with what they were before the run, as admin reads them.
//!
//! The control plane has no kubelet and no scheduler: a bare pod is an object, deleted
//! at once, which is all the apiserver and pathgate see of a real one.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::{
    admin, admin_json, cluster, kubectl_ok, kubectl_with_stdin_ok, unique_name, unique_namespace,
};

/// The parts of an object an undo must restore.
fn restorable(object: &Value) -> Value {
    let metadata = &object["metadata"];
    json!({
        "labels": metadata["labels"],
        "annotations": metadata["annotations"],
        "spec": object["spec"],
        "data": object["data"],
    })
}

/// `restorable` of `kind/name` in `ns`, or `None` when it does not exist.
fn snapshot(ns: &str, object: &str) -> Option<Value> {
    let output = crate::support::kubectl(&admin(), &["-n", ns, "get", object, "-o", "json"]);
    output
        .status
        .success()
        .then(|| restorable(&serde_json::from_slice(&output.stdout).unwrap()))
}

fn snapshots(ns: &str, objects: &[&str]) -> Vec<Option<Value>> {
    objects.iter().map(|o| snapshot(ns, o)).collect()
}

/// Runs `script` (kubectl is "$0") as the agent of `pathgate run` in session `session`,
/// recording into `out/ledger` with pre-images; returns the spool directory.
fn scripted_run(out: &Path, session: &str, script: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .args([
            "run",
            "--format",
            "json",
            "--quiet",
            "--mode",
            "observe",
            "--final-state",
            "pass",
        ])
        .args(["--upstream-kubeconfig", &admin().display().to_string()])
        .args([
            "--out-dir",
            &out.display().to_string(),
            "--session",
            session,
        ])
        .args([
            "--",
            "sh",
            "-c",
            script,
            &cluster().kubectl.display().to_string(),
        ])
        .output()
        .expect("pathgate run runs");
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "pathgate run printed no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let agent = &summary["agent"];
    assert_eq!(
        agent["exit_code"],
        0,
        "the scripted run itself failed: {summary:#}\n{}",
        std::fs::read_to_string(out.join("agent.stderr")).unwrap_or_default()
    );
    out.join("ledger").display().to_string()
}

/// `pathgate undo --format json ARGS` with a gateway it starts in front of the cluster,
/// recording into `undo_ledger`: its exit code and report.
fn undo(session: &str, undo_ledger: &Path, args: &[&str], ledger: &str) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .args(["undo", "--format", "json", "--session", session])
        .args(["--upstream-kubeconfig", &admin().display().to_string()])
        .args(["--ledger-dir", &undo_ledger.display().to_string()])
        .args(args)
        .arg(ledger)
        .output()
        .expect("pathgate undo runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("pathgate undo printed no JSON ({e}); stderr:\n{stderr}"));
    (output.status.code().expect("pathgate undo exits"), report)
}

fn results(report: &Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}: {}",
                s["action"].as_str().unwrap(),
                s["object"]["name"].as_str().unwrap(),
                s["result"].as_str().unwrap()
            )
        })
        .collect()
}

const SETUP: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, labels: {app: web}}
  spec:
    replicas: 2
    selector: {matchLabels: {app: web}}
    template:
      metadata: {labels: {app: web}}
      spec: {containers: [{name: web, image: "nginx:1.25"}]}
- apiVersion: v1
  kind: Service
  metadata: {name: api, annotations: {team: shop}}
  spec: {selector: {app: api}, ports: [{port: 80, targetPort: 8080}]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings, labels: {app: shop}}
  data: {mode: safe}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: features}
  data: {a: "1"}
- apiVersion: v1
  kind: Pod
  metadata: {name: debug, labels: {purpose: debug}}
  spec: {containers: [{name: c, image: "busybox:1.36", command: [sleep, "3600"]}]}
"#;

#[test]
fn undo_restores_what_a_run_patched_replaced_deleted_created_and_applied() {
    let ns = unique_namespace("pg-undo");
    kubectl_with_stdin_ok(&admin(), &["-n", &ns, "create", "-f", "-"], SETUP);
    let objects = [
        "deployment/web",
        "service/api",
        "configmap/settings",
        "configmap/features",
        "pod/debug",
        "service/extra",
        "service/typed",
    ];
    let before = snapshots(&ns, &objects);
    assert!(
        before[5].is_none() && before[6].is_none(),
        "the run creates both Services"
    );
    let dir = tempfile::tempdir().unwrap();
    let session = unique_name("run-undo");
    let script = format!(
        r#"set -e
"$0" -n {ns} patch deployment web -p '{{"spec":{{"replicas":5,"template":{{"spec":{{"containers":[{{"name":"web","image":"nginx:1.27"}}]}}}}}}}}'
"$0" -n {ns} get service api -o json | sed 's/"app": "api"/"app": "api-v2"/' | "$0" replace -f -
"$0" -n {ns} delete configmap settings
"$0" -n {ns} delete pod debug
printf '%s' '{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"extra"}},"spec":{{"ports":[{{"port":81}}]}}}}' | "$0" -n {ns} create -f -
printf '%s' '{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"features","labels":{{"by":"agent"}}}},"data":{{"b":"2"}}}}' | "$0" -n {ns} apply --server-side -f -
"$0" -n {ns} create service clusterip typed --tcp=82:82
"#
    );
    let ledger = scripted_run(&dir.path().join("run"), &session, &script);
    let after_run = snapshots(&ns, &objects);
    for (index, object) in objects.iter().enumerate() {
        assert_ne!(after_run[index], before[index], "the run changed {object}");
    }

    // The dry run verifies every step and changes nothing.
    let undo_ledger = dir.path().join("undo-ledger");
    let (code, report) = undo(&session, &undo_ledger, &[], &ledger);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["outcome"], "verified", "{report:#}");
    // `kubectl create service` asked for a protobuf answer: its uid guards the delete.
    let typed = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["object"]["name"] == "typed")
        .unwrap();
    assert!(
        typed["uid"].as_str().is_some_and(|uid| !uid.is_empty()),
        "{typed:#}"
    );
    assert_eq!(report["not_undoable"], json!([]), "{report:#}");
    assert_eq!(
        snapshots(&ns, &objects),
        after_run,
        "a dry run changes nothing"
    );
    let mut steps = results(&report);
    steps.sort();
    assert_eq!(
        steps,
        [
            "create debug: verified",
            "create settings: verified",
            "delete extra: verified",
            "delete typed: verified",
            "patch api: verified",
            "patch features: verified",
            "patch web: verified",
        ],
        "{report:#}"
    );

    let (code, report) = undo(&session, &undo_ledger, &["--apply"], &ledger);
    assert_eq!(
        (code, &report["outcome"]),
        (0, &json!("applied")),
        "{report:#}"
    );
    let restored = snapshots(&ns, &objects);
    for (index, object) in objects.iter().enumerate() {
        assert_eq!(
            restored[index], before[index],
            "{object} is as it was before the run"
        );
    }

    // The undo is a run of its own in the ledger.
    let output = Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .args([
            "autopsy",
            "--format",
            "json",
            "--session",
            &format!("undo.{session}"),
        ])
        .arg(&undo_ledger)
        .output()
        .unwrap();
    let autopsy: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no autopsy JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let runs = autopsy["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{autopsy:#}");
    assert_eq!(runs[0]["session"], format!("undo.{session}"));
    let counts = &runs[0]["counts"];
    assert!(
        counts["dry_runs"].as_u64().unwrap() >= 7 && counts["mutations"].as_u64().unwrap() >= 7,
        "the dry runs and the steps are in it: {autopsy:#}"
    );
}

#[test]
fn a_later_change_by_another_client_is_a_conflict_not_an_overwrite() {
    let ns = unique_namespace("pg-undo-conflict");
    kubectl_ok(
        &admin(),
        &[
            "-n",
            &ns,
            "create",
            "configmap",
            "settings",
            "--from-literal=mode=safe",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let session = unique_name("run-conflict");
    let ledger = scripted_run(
        &dir.path().join("run"),
        &session,
        &format!(
            r#""$0" -n {ns} patch configmap settings --type=merge -p '{{"data":{{"mode":"fast"}}}}'"#
        ),
    );
    // Another client, after the run, in a field the run did not touch.
    kubectl_ok(
        &admin(),
        &[
            "-n",
            &ns,
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"owner":"ops"}}"#,
        ],
    );
    let data = || admin_json(&["-n", &ns, "get", "configmap", "settings"])["data"].clone();
    let undo_ledger = dir.path().join("undo-ledger");
    let (code, report) = undo(&session, &undo_ledger, &["--apply"], &ledger);
    assert_eq!(code, 3, "{report:#}");
    let step = &report["steps"][0];
    assert_eq!(
        (&step["result"], &step["kind"]),
        (&json!("conflict"), &json!("changed")),
        "{report:#}"
    );
    assert_eq!(
        data(),
        json!({"mode": "fast", "owner": "ops"}),
        "nothing was overwritten"
    );

    let (code, report) = undo(
        &session,
        &undo_ledger,
        &["--apply", "--force-conflicts"],
        &ledger,
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["steps"][0]["forced"], true);
    assert_eq!(
        data(),
        json!({"mode": "safe", "owner": "ops"}),
        "the run's field is restored and the other client's survives"
    );
}

#[test]
fn a_pre_image_evicted_from_the_store_is_stated_in_the_plan_not_skipped() {
    let ns = unique_namespace("pg-undo-evicted");
    kubectl_ok(
        &admin(),
        &[
            "-n",
            &ns,
            "create",
            "configmap",
            "gone",
            "--from-literal=a=1",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let session = unique_name("run-evicted");
    let ledger = scripted_run(
        &dir.path().join("run"),
        &session,
        &format!(r#""$0" -n {ns} delete configmap gone"#),
    );
    // What the store's bounds do to an old image: it is gone.
    let images = Path::new(&ledger).join("images");
    let mut removed = 0;
    for file in std::fs::read_dir(&images).expect("the run kept images") {
        std::fs::remove_file(file.unwrap().path()).unwrap();
        removed += 1;
    }
    assert!(removed > 0, "the delete's pre-image was stored");
    let (code, report) = undo(&session, &dir.path().join("undo-ledger"), &[], &ledger);
    assert_eq!(code, 5, "{report:#}");
    assert_eq!(report["steps"], json!([]), "{report:#}");
    let item = &report["not_undoable"][0];
    assert_eq!(
        (&item["reason"], &item["verb"]),
        (&json!("image_missing"), &json!("delete"))
    );
    assert_eq!(item["object"]["name"], "gone");
    assert!(
        snapshot(&ns, "configmap/gone").is_none(),
        "nothing was re-created"
    );
}

/// A Secret's image is sealed with the gateway's key: an undo without the key says so and
/// restores the rest; with `--secret-key-file` it re-creates the Secret. Both through a
/// running `pathgate serve` (`--kubeconfig`), whose spool then holds the undo session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_running_gateway_a_sealed_secret_is_restored_only_with_its_key() {
    let cluster = crate::gateway::cluster();
    let ns = unique_namespace("pg-undo-secret");
    kubectl_ok(
        &admin(),
        &[
            "-n",
            &ns,
            "create",
            "secret",
            "generic",
            "token",
            "--from-literal=password=hunter2",
        ],
    );
    kubectl_ok(
        &admin(),
        &[
            "-n",
            &ns,
            "create",
            "configmap",
            "settings",
            "--from-literal=mode=safe",
        ],
    );
    let before = snapshots(&ns, &["secret/token", "configmap/settings"]);
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    pathgate::tls::init_certs(&certs, &[], false).unwrap();
    let key = dir.path().join("images.key");
    std::fs::write(&key, "7f".repeat(32)).unwrap();
    let config = dir.path().join("pathgate.yaml");
    std::fs::write(
        &config,
        format!(
            "ledger:\n  pre_images:\n    secret_key_file: {}\n",
            key.display()
        ),
    )
    .unwrap();
    let spool = dir.path().join("spool");
    let (mut serve, port) = crate::gateway::serve_process(
        &cluster,
        &certs,
        &[
            "--auth",
            "sidecar",
            "--mode",
            "observe",
            "--config",
            config.to_str().unwrap(),
            "--ledger-dir",
            spool.to_str().unwrap(),
        ]
        .map(std::ffi::OsStr::new),
        None,
    )
    .await;
    let session = unique_name("run-secret");
    let kubeconfig = dir.path().join("kubeconfig");
    pathgate::agent_kubeconfig::AgentKubeconfig {
        server: format!("https://127.0.0.1:{port}"),
        session: Some(session.clone()),
        ca: certs.join("ca.crt"),
        ..Default::default()
    }
    .write(&kubeconfig)
    .unwrap();
    let agent = kubeconfig.clone();
    let ns_agent = ns.clone();
    tokio::task::spawn_blocking(move || {
        kubectl_ok(&agent, &["-n", &ns_agent, "delete", "secret", "token"]);
        kubectl_ok(
            &agent,
            &[
                "-n",
                &ns_agent,
                "patch",
                "configmap",
                "settings",
                "--type=merge",
                "-p",
                r#"{"data":{"mode":"fast"}}"#,
            ],
        );
    })
    .await
    .unwrap();
    let images = spool.join("images");
    let stored = std::fs::read_dir(&images).unwrap().count();
    assert!(stored >= 3, "the secret's and the configmap's images");
    for file in std::fs::read_dir(&images).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("aHVudGVyMg=="),
            "the secret's value is never stored in clear"
        );
    }
    let spool_arg = spool.display().to_string();
    let undo = move |extra: Vec<String>| {
        let kubeconfig = kubeconfig.clone();
        let spool = spool_arg.clone();
        let session = session.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let output = Command::new(env!("CARGO_BIN_EXE_pathgate"))
                    .args(["undo", "--format", "json", "--session", &session, "--apply"])
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(&extra)
                    .arg(&spool)
                    .output()
                    .unwrap();
                let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
                    panic!("no JSON ({e}): {}", String::from_utf8_lossy(&output.stderr))
                });
                (output.status.code().unwrap(), report)
            })
            .await
            .unwrap()
        }
    };
    // Without the key: the ConfigMap is restored, the Secret is stated, not skipped.
    let (code, report) = undo(vec![]).await;
    assert_eq!(code, 5, "{report:#}");
    assert_eq!(
        report["not_undoable"][0]["reason"], "image_encrypted",
        "{report:#}"
    );
    assert_eq!(report["gateway"], format!("https://127.0.0.1:{port}"));
    assert!(
        report.get("ledger").is_none(),
        "the running gateway records it"
    );
    assert_eq!(snapshot(&ns, "configmap/settings"), before[1]);
    assert!(snapshot(&ns, "secret/token").is_none());
    // With it: the Secret is re-created as it was; the ConfigMap's step is already done.
    let (code, report) = undo(vec!["--secret-key-file".into(), key.display().to_string()]).await;
    assert_eq!(code, 0, "{report:#}");
    let secret = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["object"]["resource"] == "secrets")
        .unwrap();
    assert_eq!(secret["result"], "applied", "{report:#}");
    let configmap = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["object"]["resource"] == "configmaps")
        .unwrap();
    assert_eq!(configmap["result"], "already_reverted", "{report:#}");
    assert_eq!(snapshot(&ns, "secret/token"), before[0]);
    let _ = serve.kill().await;
}

#[test]
fn a_collection_delete_is_undone_item_by_item_from_its_list_image() {
    let ns = unique_namespace("pg-undo-collection");
    for name in ["batch-a", "batch-b"] {
        kubectl_ok(
            &admin(),
            &[
                "-n",
                &ns,
                "create",
                "configmap",
                name,
                &format!("--from-literal=n={name}"),
            ],
        );
        kubectl_ok(
            &admin(),
            &["-n", &ns, "label", "configmap", name, "batch=1"],
        );
    }
    kubectl_ok(
        &admin(),
        &[
            "-n",
            &ns,
            "create",
            "configmap",
            "keep",
            "--from-literal=n=keep",
        ],
    );
    let objects = ["configmap/batch-a", "configmap/batch-b", "configmap/keep"];
    let before = snapshots(&ns, &objects);
    let dir = tempfile::tempdir().unwrap();
    let session = unique_name("run-collection");
    // `delete --raw` drops the session prefix: the request lands in the run's session,
    // the gateway's default.
    let ledger = scripted_run(
        &dir.path().join("run"),
        &session,
        &format!(
            r#""$0" delete --raw '/api/v1/namespaces/{ns}/configmaps?labelSelector=batch%3D1'"#
        ),
    );
    assert_eq!(
        snapshots(&ns, &objects),
        [None, None, before[2].clone()],
        "the run deleted the collection"
    );
    let (code, report) = undo(
        &session,
        &dir.path().join("undo-ledger"),
        &["--apply"],
        &ledger,
    );
    assert_eq!(code, 0, "{report:#}");
    let mut steps = results(&report);
    steps.sort();
    assert_eq!(
        steps,
        ["create batch-a: applied", "create batch-b: applied"],
        "{report:#}"
    );
    assert_eq!(snapshots(&ns, &objects), before);
}

#[test]
fn an_evicted_bare_pod_is_re_created_as_a_pod_delete() {
    let ns = unique_namespace("pg-undo-evict");
    kubectl_with_stdin_ok(
        &admin(),
        &["-n", &ns, "create", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"debug","labels":{"purpose":"debug"}},"spec":{"containers":[{"name":"c","image":"busybox:1.36"}]}}"#,
    );
    let before = snapshot(&ns, "pod/debug");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("eviction.json"),
        format!(r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"debug","namespace":"{ns}"}}}}"#),
    )
    .unwrap();
    let session = unique_name("run-evict");
    let ledger = scripted_run(
        &dir.path().join("run"),
        &session,
        &format!(
            r#""$0" create --raw /api/v1/namespaces/{ns}/pods/debug/eviction -f {}"#,
            dir.path().join("eviction.json").display()
        ),
    );
    assert!(
        snapshot(&ns, "pod/debug").is_none(),
        "the eviction deleted the pod"
    );
    let (code, report) = undo(
        &session,
        &dir.path().join("undo-ledger"),
        &["--apply"],
        &ledger,
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(results(&report), ["create debug: applied"], "{report:#}");
    assert_eq!(snapshot(&ns, "pod/debug"), before);
}

#[test]
fn a_deleted_pod_a_controller_owns_is_left_to_its_controller() {
    let ns = unique_namespace("pg-undo-owned");
    kubectl_with_stdin_ok(
        &admin(),
        &["-n", &ns, "create", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d9c7","uid":"6c1f7b9e-0000-4000-8000-000000000001","controller":true}]},"spec":{"containers":[{"name":"c","image":"busybox:1.36"}]}}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let session = unique_name("run-owned");
    let ledger = scripted_run(
        &dir.path().join("run"),
        &session,
        &format!(r#""$0" -n {ns} delete pod web-1"#),
    );
    let (code, report) = undo(
        &session,
        &dir.path().join("undo-ledger"),
        &["--apply"],
        &ledger,
    );
    assert_eq!(code, 0, "{report:#}");
    let step = &report["steps"][0];
    assert_eq!(
        (&step["action"], &step["controller"], &step["result"]),
        (
            &json!("left_to_controller"),
            &json!("ReplicaSet web-5d9c7"),
            &json!("nothing_to_send")
        ),
        "{report:#}"
    );
    assert!(
        snapshot(&ns, "pod/web-1").is_none(),
        "no orphan copy was made"
    );
}

#[test]
fn since_and_until_undo_only_the_window_of_the_run() {
    let ns = unique_namespace("pg-undo-window");
    for name in ["first", "second"] {
        kubectl_ok(
            &admin(),
            &["-n", &ns, "create", "configmap", name, "--from-literal=v=0"],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let session = unique_name("run-window");
    let ledger = scripted_run(
        &dir.path().join("run"),
        &session,
        &format!(
            r#""$0" -n {ns} patch configmap first --type=merge -p '{{"data":{{"v":"1"}}}}' &&
"$0" -n {ns} patch configmap second --type=merge -p '{{"data":{{"v":"1"}}}}'"#
        ),
    );
    // The trace ids of the two patches, from the spool.
    let mut patches = Vec::new();
    for segment in std::fs::read_dir(&ledger).unwrap() {
        let path = segment.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let entry: Value = serde_json::from_str(line).unwrap();
                if entry["request"]["verb"] == "patch" && entry["phase"] == "outcome" {
                    patches.push(entry["trace_id"].as_str().unwrap().to_string());
                }
            }
        }
    }
    assert_eq!(patches.len(), 2, "{patches:?}");
    let value =
        |name: &str| admin_json(&["-n", &ns, "get", "configmap", name])["data"]["v"].clone();
    let (code, report) = undo(
        &session,
        &dir.path().join("undo-ledger"),
        &["--apply", "--since", &patches[1]],
        &ledger,
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["window"]["since"], json!(patches[1]));
    assert_eq!((value("first"), value("second")), (json!("1"), json!("0")));
    let (code, report) = undo(
        &session,
        &dir.path().join("undo-ledger"),
        &["--apply", "--until", &patches[0]],
        &ledger,
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(results(&report), ["patch first: applied"], "{report:#}");
    assert_eq!((value("first"), value("second")), (json!("0"), json!("0")));
    let output = Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .args(["undo", "--session", &session, "--since", "no-such-trace"])
        .args([
            "--upstream-kubeconfig",
            &admin().display().to_string(),
            &ledger,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--since no-such-trace: no entry of session"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
