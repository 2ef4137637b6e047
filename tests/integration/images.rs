//! Pre- and post-images of real kubectl mutations through pathgate on the real apiserver:
//! each outcome names the object as it was just before (its resourceVersion the one before
//! the change) and as the apiserver answered; a Secret's image is never on disk in clear,
//! withheld without a key and sealed with one; refused requests leave none, and a dry run
//! only the object it was measured against, which the same request sent for real takes.

use std::path::Path;

use pathgate::ledger::images::{images_dir, ImageSettings, ImageStore, SecretKey};
use pathgate::ledger::LedgerSettings;
use serde_json::Value;
use testcluster::RunningCluster;

use crate::gateway::{cluster, failed, kubectl, kubectl_in, namespace, ok, GatewayBuilder};
use crate::recording::spool_entries;

/// Observe mode: everything is forwarded (a deletecollection too), so every kind of
/// mutation reaches the apiserver and gets its images.
const OBSERVE: &str = "mode: observe\n";

/// The one outcome entry of a mutation for which `pick` holds.
fn outcome_where(spool: &Path, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let matching: Vec<Value> = spool_entries(spool)
        .into_iter()
        .filter(|e| e["phase"] == "outcome" && e["request"]["mutation"] == true && pick(e))
        .collect();
    assert_eq!(matching.len(), 1, "one {what}: {matching:#?}");
    matching.into_iter().next().unwrap()
}

/// The one outcome entry of a `verb` of `resource` named `name` (no subresource).
fn outcome(spool: &Path, verb: &str, resource: &str, name: &str) -> Value {
    outcome_where(spool, &format!("{verb} {resource} {name:?}"), |e| {
        let r = &e["request"];
        r["verb"] == verb
            && r["resource"] == resource
            && r["subresource"] == ""
            && r["name"] == name
    })
}

/// A ConfigMap manifest (JSON: kubectl sends it, and reads the answer, as JSON).
fn config_map(name: &str, labels: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{{labels}}}}},"data":{{"k":"v"}}}}"#
    )
}

/// The image an entry's record names, read back from the store (verified by digest).
fn image(store: &ImageStore, record: &Value) -> Value {
    let digest = record["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("a stored image: {record}"));
    store.get(digest).unwrap_or_else(|e| panic!("{e}"))
}

fn get_json(output: &std::process::Output) -> Value {
    serde_json::from_str(&ok(output)).unwrap()
}

fn rv(object: &Value) -> &str {
    object["metadata"]["resourceVersion"].as_str().unwrap()
}

/// The pre-image is the object as GET before the change; the post-image is the answer.
fn assert_images(store: &ImageStore, entry: &Value, before: &Value) -> (Value, Value) {
    let target = &entry["target"];
    let pre = image(store, &target["pre_image"]);
    assert_eq!(&pre, before, "the pre-image is the object as it was");
    assert_eq!(target["resource_version"], rv(before));
    assert_eq!(target["uid"], before["metadata"]["uid"]);
    let post = image(store, &entry["post_image"]);
    assert_eq!(
        post["metadata"]["resourceVersion"],
        entry["object"]["resource_version"]
    );
    assert_ne!(rv(&post), rv(before), "the answer is the object after");
    (pre, post)
}

fn deployment(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}"}},
"spec":{{"replicas":1,"selector":{{"matchLabels":{{"app":"{name}"}}}},
"template":{{"metadata":{{"labels":{{"app":"{name}"}}}},
"spec":{{"containers":[{{"name":"web","image":"nginx:1.27"}}]}}}}}}}}"#
    )
}

/// A gateway under `policy` whose ledger is a fresh spool, an admin kubeconfig of
/// `session` through it, and a fresh namespace (`prefix-...`).
struct Imaging {
    spool: tempfile::TempDir,
    gateway: crate::gateway::Gateway,
    kc: std::path::PathBuf,
    ns: String,
}

async fn imaging(cluster: &RunningCluster, policy: &str, session: &str, prefix: &str) -> Imaging {
    let spool = tempfile::tempdir().unwrap();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml(policy)
        .ledger(LedgerSettings::new(spool.path()))
        .start()
        .await;
    let token = cluster.admin_token().unwrap();
    let kc = gateway.kubeconfig_with_token("admin", Some(&token), Some(session));
    let ns = namespace(cluster, prefix).await;
    Imaging {
        spool,
        gateway,
        kc,
        ns,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mutation_names_the_object_before_it_and_the_answer_after_it() {
    let cluster = cluster();
    let Imaging {
        spool,
        gateway,
        kc,
        ns,
    } = imaging(&cluster, OBSERVE, "images-run", "pg-images").await;
    let kn = kubectl_in(&cluster, &kc, &ns);
    let store = ImageStore::open_read_only(&images_dir(spool.path()), None).unwrap();

    // A create: nothing before, the created object after.
    ok(&kn
        .run_stdin(&["create", "-f", "-"], &config_map("c1", ""))
        .await);
    let created = outcome(spool.path(), "create", "configmaps", "");
    assert!(created["target"]["pre_image"].is_null(), "{created}");
    let before = get_json(
        &kn.run(&[
            "get",
            "configmap",
            "c1",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await,
    );
    assert_eq!(image(&store, &created["post_image"]), before);
    assert_eq!(created["object"]["name"], "c1");
    assert_eq!(created["object"]["namespace"], ns.as_str());

    // A merge patch (its pre-image is the effect fetch's GET).
    ok(&kn
        .run(&[
            "patch",
            "configmap",
            "c1",
            "--type=merge",
            "-p",
            r#"{"data":{"m":"1"}}"#,
        ])
        .await);
    let patched = outcome(spool.path(), "patch", "configmaps", "c1");
    let (_, post) = assert_images(&store, &patched, &before);
    let after = get_json(
        &kn.run(&[
            "get",
            "configmap",
            "c1",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await,
    );
    assert_eq!(post, after, "the post-image is the apiserver's answer");

    // A server-side apply of a partial manifest (the gate's PG003 GET is reused).
    let partial =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c1"},"data":{"k":"applied"}}"#;
    ok(&kn
        .run_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=agent",
                "-f",
                "-",
            ],
            partial,
        )
        .await);
    let applied = outcome_where(spool.path(), "server-side apply", |e| {
        e["analysis"]["patch_type"] == "apply-patch-yaml"
    });
    let (_, post) = assert_images(&store, &applied, &after);
    assert_eq!(post["data"]["k"], "applied");

    // A bare pod's delete (the gate's PG004 GET is reused).
    ok(&kn
        .run_stdin(&["create", "-f", "-"], &crate::gateway::pod_manifest("p1"))
        .await);
    let pod = get_json(
        &kn.run(&["get", "pod", "p1", "-o", "json", "--show-managed-fields"])
            .await,
    );
    ok(&kn.run(&["delete", "pod", "p1", "--wait=false"]).await);
    let deleted = outcome(spool.path(), "delete", "pods", "p1");
    assert_eq!(image(&store, &deleted["target"]["pre_image"]), pod);
    assert_eq!(deleted["target"]["resource_version"], rv(&pod));

    // An eviction deletes its pod: the pod before.
    ok(&kn
        .run_stdin(&["create", "-f", "-"], &crate::gateway::pod_manifest("p2"))
        .await);
    let pod = get_json(
        &kn.run(&["get", "pod", "p2", "-o", "json", "--show-managed-fields"])
            .await,
    );
    let eviction = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"p2","namespace":"{ns}"}}}}"#
    );
    let evict = format!("/api/v1/namespaces/{ns}/pods/p2/eviction");
    ok(&crate::gateway::kubectl_stdin(
        &cluster,
        &kc,
        &["create", "--raw", &evict, "-f", "-"],
        Some(&eviction),
    )
    .await);
    let evicted = outcome_where(spool.path(), "eviction", |e| {
        e["request"]["subresource"] == "eviction"
    });
    assert_eq!(image(&store, &evicted["target"]["pre_image"]), pod);
    assert!(
        evicted["post_image"].is_null(),
        "the answer is a Status: {evicted}"
    );

    // A scale through the scale subresource: the Scale object before.
    ok(&kn
        .run_stdin(&["apply", "--server-side", "-f", "-"], &deployment("web"))
        .await);
    let scale_before = get_json(
        &kubectl(
            &cluster,
            &kc,
            &[
                "get",
                "--raw",
                &format!("/apis/apps/v1/namespaces/{ns}/deployments/web/scale"),
            ],
        )
        .await,
    );
    ok(&kn
        .run(&["scale", "deployment", "web", "--replicas=3"])
        .await);
    let scaled = outcome_where(spool.path(), "scale", |e| {
        e["request"]["subresource"] == "scale"
    });
    let (pre, post) = assert_images(&store, &scaled, &scale_before);
    assert_eq!(
        (pre["kind"].as_str(), pre["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(1))
    );
    assert_eq!(post["spec"]["replicas"], 3);

    // A deletecollection by label: the list of what it deleted, each item with its kind.
    for name in ["b1", "b2"] {
        ok(&kn
            .run_stdin(
                &["create", "-f", "-"],
                &config_map(name, r#""batch":"yes""#),
            )
            .await);
    }
    ok(&kn
        .run_stdin(&["create", "-f", "-"], &config_map("keep", ""))
        .await);
    let listed = get_json(
        &kn.run(&[
            "get",
            "configmaps",
            "-l",
            "batch=yes",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await,
    );
    ok(&kubectl(
        &cluster,
        &kc,
        &[
            "delete",
            "--raw",
            &format!("/api/v1/namespaces/{ns}/configmaps?labelSelector=batch%3Dyes"),
        ],
    )
    .await);
    let collection = outcome_where(spool.path(), "deletecollection", |e| {
        e["request"]["verb"] == "deletecollection"
    });
    let list = image(&store, &collection["target"]["pre_image"]);
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b1", "b2"], "the labelled ones, not `keep`");
    for (item, listed) in items.iter().zip(listed["items"].as_array().unwrap()) {
        assert_eq!(
            (item["kind"].as_str(), item["apiVersion"].as_str()),
            (Some("ConfigMap"), Some("v1"))
        );
        assert_eq!(item["metadata"], listed["metadata"], "as they were");
        assert_eq!(item["data"], listed["data"]);
    }
    ok(&kn.run(&["get", "configmap", "keep"]).await);

    let metrics = &gateway.running.as_ref().unwrap().metrics;
    let stored = metrics.pre_images.with_label_values(&["stored"]).get();
    assert!(stored >= 10, "pre- and post-images counted: {stored}");
    assert!(metrics.pre_image_bytes.get() > 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_and_refused_requests_leave_no_image() {
    let cluster = cluster();
    let Imaging {
        spool,
        gateway,
        kc,
        ns,
    } = imaging(
        &cluster,
        "mode: enforce\nsafety_gates:\n  dry_run_default: false\n",
        "images-dry",
        "pg-images-dry",
    )
    .await;
    let kn = kubectl_in(&cluster, &kc, &ns);
    ok(&kn
        .run_stdin(
            &["create", "--dry-run=server", "-f", "-"],
            &config_map("c1", ""),
        )
        .await);
    ok(&kubectl(
        &cluster,
        &cluster.dir.admin_kubeconfig(),
        &["-n", &ns, "create", "configmap", "c1"],
    )
    .await);
    ok(&kn
        .run(&[
            "patch",
            "configmap",
            "c1",
            "--dry-run=server",
            "-p",
            r#"{"data":{"a":"1"}}"#,
        ])
        .await);
    // PG006 denies a deletecollection in enforce mode: refused, so never imaged.
    failed(
        &kubectl(
            &cluster,
            &kc,
            &[
                "delete",
                "--raw",
                &format!("/api/v1/namespaces/{ns}/configmaps"),
            ],
        )
        .await,
    );
    let mutations: Vec<Value> = spool_entries(spool.path())
        .into_iter()
        .filter(|e| e["phase"] == "outcome" && e["request"]["mutation"] == true)
        .collect();
    assert_eq!(mutations.len(), 3, "{mutations:#?}");
    for entry in &mutations {
        assert!(entry["post_image"].is_null(), "{entry}");
        assert!(entry["target"]["pre_image"].is_null(), "{entry}");
    }
    // Only the patch's dry run stored an image: the object it was measured against, for
    // the same patch sent for real (no entry names it).
    let files: Vec<_> = std::fs::read_dir(images_dir(spool.path()))
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|path| !path.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let kept: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(kept["metadata"]["name"], "c1");
    assert!(
        kept["data"].is_null(),
        "the object before the patch: {kept}"
    );
    gateway.stop().await;
}

/// Whether the apiserver's audit log has an event with this `auditID` (the log is
/// written before the apiserver answers: `--audit-log-mode=blocking`).
fn audited(audit_log: &Path, audit_id: &str) -> bool {
    let needle = format!("\"auditID\":\"{audit_id}\"");
    std::fs::read_to_string(audit_log)
        .unwrap()
        .lines()
        .any(|line| line.contains(&needle))
}

/// The one outcome of a patch of ConfigMap `name`, dry run or not.
fn patch_outcome(spool: &Path, name: &str, dry_run: bool) -> Value {
    outcome_where(spool, &format!("patch {name} (dry run: {dry_run})"), |e| {
        e["request"]["verb"] == "patch"
            && e["request"]["name"] == name
            && e["dry_run"]["forwarded"] == dry_run
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_after_its_dry_run_takes_the_dry_runs_pre_image_without_reading_it_again() {
    let cluster = cluster();
    let Imaging {
        spool,
        gateway,
        kc,
        ns,
    } = imaging(&cluster, OBSERVE, "images-careful", "pg-images-careful").await;
    let kn = kubectl_in(&cluster, &kc, &ns);
    let admin = cluster.dir.admin_kubeconfig();
    let direct = kubectl_in(&cluster, &admin, &ns);
    let store = ImageStore::open_read_only(&images_dir(spool.path()), None).unwrap();
    let get = ["get", "configmap", "-o", "json", "--show-managed-fields"];
    ok(&direct.run(&["create", "configmap", "c1"]).await);
    ok(&direct.run(&["create", "configmap", "c2"]).await);

    // The careful path: the real patch is answered as its dry run predicted.
    let before = get_json(&direct.run(&[&get[..], &["c1"]].concat()).await);
    let patch = ["patch", "configmap", "c1", "-p", r#"{"data":{"a":"1"}}"#];
    ok(&kn.run(&[&patch[..], &["--dry-run=server"]].concat()).await);
    ok(&kn.run(&patch).await);
    let dry = patch_outcome(spool.path(), "c1", true);
    let real = patch_outcome(spool.path(), "c1", false);
    assert!(dry["target"]["pre_image"].is_null(), "{dry}");
    assert_images(&store, &real, &before);
    assert_eq!(
        real["analysis"]["effect_paths"],
        serde_json::json!(["/data/a"])
    );
    let audit_log = cluster.dir.audit_log();
    let facts = |entry: &Value| format!("{}-facts", entry["trace_id"].as_str().unwrap());
    assert!(
        audited(&audit_log, &facts(&dry)),
        "the dry run read the object"
    );
    assert!(
        !audited(&audit_log, &facts(&real)),
        "the real patch read nothing before it was forwarded"
    );

    // Another client changes the object between the dry run and the real patch: the dry
    // run's image is not the object just before the real patch, and the entry says so.
    let patch = ["patch", "configmap", "c2", "-p", r#"{"data":{"a":"1"}}"#];
    ok(&kn.run(&[&patch[..], &["--dry-run=server"]].concat()).await);
    ok(&direct
        .run(&["label", "configmap", "c2", "changed=in-between"])
        .await);
    ok(&kn.run(&patch).await);
    let real = patch_outcome(spool.path(), "c2", false);
    let target = &real["target"];
    assert_eq!(
        target["pre_image"],
        serde_json::json!({"withheld": "unconfirmed"})
    );
    assert!(target["resource_version"].is_null(), "{real}");
    assert_eq!(target["found"], true);
    assert!(real["analysis"]["effect_paths"].is_null(), "{real}");
    assert!(
        !real["post_image"].is_null(),
        "the answer is still imaged: {real}"
    );

    // Deleted and re-created alike in between: the same content (which the digest sees),
    // another object (which the uid shows).
    ok(&direct.run(&["create", "configmap", "c3"]).await);
    let patch = ["patch", "configmap", "c3", "-p", r#"{"data":{"a":"1"}}"#];
    ok(&kn.run(&[&patch[..], &["--dry-run=server"]].concat()).await);
    ok(&direct.run(&["delete", "configmap", "c3"]).await);
    ok(&direct.run(&["create", "configmap", "c3"]).await);
    ok(&kn.run(&patch).await);
    let real = patch_outcome(spool.path(), "c3", false);
    let target = &real["target"];
    assert_eq!(
        target["pre_image"],
        serde_json::json!({"withheld": "unconfirmed"})
    );
    assert!(target["uid"].is_null(), "not the dry run's object: {real}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_create_answered_in_protobuf_names_its_object_but_keeps_no_post_image() {
    let cluster = cluster();
    let Imaging {
        spool,
        gateway,
        kc,
        ns,
    } = imaging(&cluster, OBSERVE, "images-typed", "pg-images-typed").await;
    let kn = kubectl_in(&cluster, &kc, &ns);
    ok(&kn
        .run(&["create", "configmap", "typed", "--from-literal=k=v"])
        .await);
    let created = outcome(spool.path(), "create", "configmaps", "");
    assert_eq!(
        created["request"]["content_type"], "application/vnd.kubernetes.protobuf",
        "kubectl's typed create speaks protobuf: {created}"
    );
    let live = get_json(&kn.run(&["get", "configmap", "typed", "-o", "json"]).await);
    let object = &created["object"];
    assert_eq!(object["uid"], live["metadata"]["uid"], "{created}");
    assert_eq!(
        object["resource_version"],
        live["metadata"]["resourceVersion"]
    );
    assert_eq!(object["name"], "typed");
    assert_eq!(object["namespace"], ns.as_str());
    assert!(
        created["post_image"].is_null(),
        "no JSON answer to image: {created}"
    );

    // A protobuf Status answer gives its reason.
    failed(
        &kn.run(&["create", "configmap", "typed", "--from-literal=k=v"])
            .await,
    );
    let refused = outcome_where(spool.path(), "the second create", |e| {
        e["request"]["verb"] == "create" && e["response"]["status_code"] == 409
    });
    assert_eq!(refused["response"]["reason"], "AlreadyExists", "{refused}");
    gateway.stop().await;
}

/// Every file under `dir`, as bytes.
fn every_file(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for item in std::fs::read_dir(dir).unwrap() {
        let path = item.unwrap().path();
        if path.is_dir() {
            files.extend(every_file(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            files.push((path, bytes));
        }
    }
    files
}

fn assert_nowhere(dir: &Path, needles: &[&str]) {
    for (path, bytes) in every_file(dir) {
        for needle in needles {
            let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
            assert!(!found, "{needle:?} is in {}", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_withheld_without_a_key_and_sealed_with_one() {
    use base64::Engine;
    let cluster = cluster();
    let token = cluster.admin_token().unwrap();
    let ns = namespace(&cluster, "pg-images-secret").await;
    let value = format!("s3cr3t-{}", crate::gateway::unique("v"));
    let encoded = base64::engine::general_purpose::STANDARD.encode(&value);
    let new_value = format!("n3w-{value}");
    let new_encoded = base64::engine::general_purpose::STANDARD.encode(&new_value);
    let patch = format!(r#"{{"stringData":{{"password":"{new_value}"}}}}"#);
    ok(&kubectl(
        &cluster,
        &cluster.dir.admin_kubeconfig(),
        &[
            "-n",
            &ns,
            "create",
            "secret",
            "generic",
            "db",
            &format!("--from-literal=password={value}"),
        ],
    )
    .await);

    // Without a key: withheld, and the value is in no file under the ledger dir.
    let spool = tempfile::tempdir().unwrap();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml(OBSERVE)
        .ledger(LedgerSettings::new(spool.path()))
        .start()
        .await;
    let kc = gateway.kubeconfig_with_token("admin", Some(&token), Some("images-secret"));
    let kn = kubectl_in(&cluster, &kc, &ns);
    ok(&kn
        .run(&["patch", "secret", "db", "--type=merge", "-p", &patch])
        .await);
    let entry = outcome(spool.path(), "patch", "secrets", "db");
    assert_eq!(
        entry["target"]["pre_image"]["withheld"], "secret",
        "{entry}"
    );
    assert_eq!(entry["post_image"]["withheld"], "secret", "{entry}");
    gateway.stop().await;
    assert_nowhere(spool.path(), &[&value, &encoded, &new_value, &new_encoded]);

    // With a key: sealed; it opens with the key to the Secret as it was.
    let spool = tempfile::tempdir().unwrap();
    let key_file = spool.path().join("images.key");
    std::fs::write(&key_file, "5a".repeat(32)).unwrap();
    let mut settings = LedgerSettings::new(spool.path().join("ledger"));
    settings.pre_images = Some(ImageSettings {
        secret_key_file: Some(key_file),
        ..ImageSettings::default()
    });
    let ledger_dir = settings.dir.clone();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml(OBSERVE)
        .ledger(settings)
        .start()
        .await;
    let kc = gateway.kubeconfig_with_token("admin", Some(&token), Some("images-sealed"));
    let kn = kubectl_in(&cluster, &kc, &ns);
    let before = get_json(
        &kn.run(&["get", "secret", "db", "-o", "json", "--show-managed-fields"])
            .await,
    );
    let newer = format!(r#"{{"stringData":{{"password":"{value}"}}}}"#);
    ok(&kn
        .run(&["patch", "secret", "db", "--type=merge", "-p", &newer])
        .await);
    let entry = outcome(&ledger_dir, "patch", "secrets", "db");
    assert_eq!(entry["target"]["pre_image"]["encrypted"], true, "{entry}");
    assert_eq!(entry["post_image"]["encrypted"], true, "{entry}");
    gateway.stop().await;
    assert_nowhere(
        spool.path().join("ledger").as_path(),
        &[&value, &encoded, &new_value, &new_encoded],
    );

    let images = images_dir(&ledger_dir);
    let sealed = ImageStore::open_read_only(&images, None).unwrap();
    let digest = entry["target"]["pre_image"]["digest"].as_str().unwrap();
    assert!(sealed.get(digest).is_err(), "no key, no Secret");
    let key = SecretKey::from_hex(&"5a".repeat(32)).unwrap();
    let store = ImageStore::open_read_only(&images, Some(key)).unwrap();
    let pre = store.get(digest).unwrap();
    assert_eq!(pre, before, "the Secret as it was");
    assert_eq!(pre["data"]["password"], new_encoded.as_str());
    let post = image(&store, &entry["post_image"]);
    assert_eq!(post["data"]["password"], encoded.as_str());
}

/// Fault injection against the fake upstream (the real apiserver cannot be made to fail
/// one GET): a target that cannot be read has no `target` and so no pre-image, and a
/// store that cannot be written says so in the entry.
#[tokio::test]
async fn a_failed_read_leaves_no_pre_image_and_a_failed_write_says_unavailable() {
    use crate::support::fake_apiserver::{Canned, FakeApiserver};
    use std::sync::atomic::{AtomicBool, Ordering};
    let get_fails = std::sync::Arc::new(AtomicBool::new(true));
    let fails = get_fails.clone();
    let object = |rv: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default", "uid": "u-1", "resourceVersion": rv},
            "data": {"k": rv}})
    };
    let fake = FakeApiserver::answering(move |request| match request.method.as_str() {
        "GET" if fails.load(Ordering::SeqCst) => Canned::json(500, serde_json::json!({})),
        "GET" => Canned::json(200, object("1")),
        _ => Canned::json(200, object("2")),
    })
    .await;
    let spool = tempfile::tempdir().unwrap();
    let gateway = GatewayBuilder::new(fake.kubeconfig())
        .policy_yaml(OBSERVE)
        .ledger(LedgerSettings::new(spool.path()))
        .start()
        .await;
    let client = crate::gateway::https_client_http1(&gateway.ca);
    let patch = |n: usize| {
        http::Request::patch(format!(
            "{}/s/faults-{n}/api/v1/namespaces/default/configmaps/c",
            gateway.url
        ))
        .header("authorization", "Bearer client-token")
        .header("content-type", "application/merge-patch+json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"data":{"k":"2"}}"#,
        )))
        .unwrap()
    };
    let session = |n: usize| {
        let name = format!("faults-{n}");
        outcome_where(spool.path(), &name, |e| e["session"] == name.as_str())
    };

    let (status, _, _) = crate::gateway::send(&client, patch(1)).await;
    assert_eq!(status, 200);
    let entry = session(1);
    assert!(
        entry["target"].is_null(),
        "the GET failed: no guess: {entry}"
    );
    let gets = fake
        .received()
        .iter()
        .filter(|r| r.method == http::Method::GET)
        .count();
    assert_eq!(
        gets, 1,
        "the image uses the effect fetch's answer, not a GET of its own"
    );
    let store = ImageStore::open_read_only(&images_dir(spool.path()), None).unwrap();
    assert_eq!(image(&store, &entry["post_image"]), object("2"));

    // The store's directory replaced by a file: nothing can be written in it.
    get_fails.store(false, Ordering::SeqCst);
    // (Moved away, not removed: the store's spare thread may be adding files to it.)
    let dir = images_dir(spool.path());
    std::fs::rename(&dir, spool.path().join("images.moved")).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let (status, _, _) = crate::gateway::send(&client, patch(2)).await;
    assert_eq!(
        status, 200,
        "the mutation is answered whatever the store does"
    );
    let entry = session(2);
    assert_eq!(entry["target"]["found"], true);
    assert_eq!(
        entry["target"]["pre_image"]["withheld"], "unavailable",
        "{entry}"
    );
    // The post-image's record was made beside its write: it names an image that is not
    // there, which a reader sees as missing.
    assert!(entry["post_image"]["digest"].is_string(), "{entry}");
    let metrics = &gateway.running.as_ref().unwrap().metrics;
    assert!(metrics.pre_images.with_label_values(&["withheld"]).get() >= 2);
    gateway.stop().await;
}
