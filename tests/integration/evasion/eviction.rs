//! Pod evictions that walk around the pod-delete rules.
//!
//! The probe: `POST .../pods/<pod>/eviction` with `deleteOptions.gracePeriodSeconds: 0`
//! removed a ReplicaSet-owned pod at once, recorded as `allow`. An eviction deletes its pod
//! (`EvictionREST.Create` deletes it with the eviction's deleteOptions once the disruption
//! budgets allow), so every rule that judges pod deletes judges it: PG004 (owner), PG005
//! (grace), PG010 (dry run first), PG014 (scope), in JSON and protobuf bodies alike, and the
//! ledger records it as a pod delete (`request.effect_verb: delete`).
//!
//! The control plane runs no controllers or kubelet: owned pods get their ownerReferences
//! by hand, and each pod is bound to a node that does not exist, so a graceful deletion
//! leaves it in place with a deletion timestamp while a zero-grace one removes it at once.

use super::scope::{rules, Rig};
use crate::gateway::unique;

/// A pod bound to a missing node; owned by ReplicaSet `web-5d9c7b` as controller when
/// `owned`.
fn pod(name: &str, owned: bool) -> String {
    let owner = if owned {
        r#","labels":{"pod-template-hash":"5d9c7b"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d9c7b","uid":"7d1e1c52-6f1a-4d4e-9a57-0c3f4d1a2b3c","controller":true,"blockOwnerDeletion":true}]"#
    } else {
        ""
    };
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"{owner}}},"spec":{{"nodeName":"ghost-node","containers":[{{"name":"c","image":"busybox"}}]}}}}"#
    )
}

/// A JSON Eviction with these deleteOptions (`null`: none).
fn eviction_json(name: &str, ns: &str, options: &str) -> String {
    format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{name}","namespace":"{ns}"}},"deleteOptions":{options}}}"#
    )
}

/// A protobuf Eviction (`k8s\0` envelope, policy/v1) as kubectl's typed client sends it:
/// metadata (name, namespace) and deleteOptions with `gracePeriodSeconds` and, for a dry
/// run, `dryRun: ["All"]`.
fn eviction_protobuf(name: &str, ns: &str, grace: Option<u8>, dry_run: bool) -> Vec<u8> {
    fn field(number: u8, bytes: &[u8], out: &mut Vec<u8>) {
        out.push(number << 3 | 2);
        out.push(u8::try_from(bytes.len()).unwrap());
        out.extend_from_slice(bytes);
    }
    let mut meta = Vec::new();
    field(1, name.as_bytes(), &mut meta);
    field(3, ns.as_bytes(), &mut meta);
    let mut options = Vec::new();
    if let Some(grace) = grace {
        options.extend_from_slice(&[1 << 3, grace]);
    }
    if dry_run {
        field(5, b"All", &mut options);
    }
    let mut eviction = Vec::new();
    field(1, &meta, &mut eviction);
    field(2, &options, &mut eviction);
    let mut type_meta = Vec::new();
    field(1, b"policy/v1", &mut type_meta);
    field(2, b"Eviction", &mut type_meta);
    let mut body = b"k8s\x00".to_vec();
    field(1, &type_meta, &mut body);
    field(2, &eviction, &mut body);
    body
}

/// Request headers of one body format.
type Headers = [(&'static str, &'static str)];

const JSON: [(&str, &str); 1] = [("content-type", "application/json")];
const PROTOBUF: [(&str, &str); 2] = [
    ("content-type", "application/vnd.kubernetes.protobuf"),
    ("accept", "application/json"),
];

fn evict_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods/{name}/eviction")
}

/// The pod's deletion state as the apiserver holds it: `None` when it is gone, else its
/// `deletionGracePeriodSeconds` (null while not being deleted).
async fn deletion(rig: &Rig, name: &str) -> Option<serde_json::Value> {
    let pod = rig.object(&["-n", &rig.ns, "pod", name]).await?;
    Some(pod["metadata"]["deletionGracePeriodSeconds"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicting_a_replicaset_owned_pod_with_zero_grace_is_denied_and_the_pod_stays() {
    let rig = Rig::start("evict-owned", |_| {
        "mode: enforce\nrules:\n  PG010: off\n".to_string()
    })
    .await;
    let ns = rig.ns.clone();
    rig.admin_apply(&pod("web-5d9c7b-x2x9z", true)).await;
    let path = evict_path(&ns, "web-5d9c7b-x2x9z");

    let body = eviction_json("web-5d9c7b-x2x9z", &ns, r#"{"gracePeriodSeconds":0}"#);
    let (status, _, answer) = rig.raw("POST", &path, &JSON, body).await;
    let message = String::from_utf8_lossy(&answer);
    assert_eq!(status, 403, "{message}");
    assert!(
        message.contains("PG004 direct-pod-delete")
            && message.contains("managed by ReplicaSet/web-5d9c7b")
            && message.contains("evicting (deleting) it"),
        "{message}"
    );
    let exchange = rig.last("POST", "/eviction").await;
    assert_eq!(rules(&exchange), ["PG004", "PG005"]);
    // Recorded as the pod delete it is.
    let record = pathgate::ledger::Request::from_info(
        (**exchange.info.as_ref().unwrap()).clone(),
        None,
        Some("application/json"),
    );
    assert_eq!(
        (
            record.verb.as_str(),
            record.effect_verb.as_deref(),
            record.scope.as_deref()
        ),
        ("create", Some("delete"), Some("namespaced"))
    );

    // Without deleteOptions, and as protobuf (how kubectl's typed client sends evictions).
    let (status, _, _) = rig
        .raw(
            "POST",
            &path,
            &JSON,
            eviction_json("web-5d9c7b-x2x9z", &ns, "null"),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = rig
        .raw(
            "POST",
            &path,
            &PROTOBUF,
            eviction_protobuf("web-5d9c7b-x2x9z", &ns, Some(0), false),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        deletion(&rig, "web-5d9c7b-x2x9z").await,
        Some(serde_json::Value::Null),
        "the pod is still there and not being deleted"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicting_an_unowned_pod_with_zero_grace_is_rewritten_to_the_minimum() {
    let rig = Rig::start("evict-grace", |_| {
        "mode: enforce\nrules:\n  PG010: off\n".to_string()
    })
    .await;
    let ns = rig.ns.clone();
    rig.admin_apply(&pod("solo", false)).await;
    rig.admin_apply(&pod("solo-pb", false)).await;

    let body = eviction_json("solo", &ns, r#"{"gracePeriodSeconds":0}"#);
    let (status, headers, answer) = rig.raw("POST", &evict_path(&ns, "solo"), &JSON, body).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    assert!(headers
        .get_all("warning")
        .iter()
        .any(|w| w.to_str().unwrap().contains("PG005 zero-grace-delete")));
    assert_eq!(
        deletion(&rig, "solo").await,
        Some(serde_json::json!(30)),
        "evicted with the minimum grace period, not at once"
    );

    // A protobuf eviction cannot be rewritten: refused rather than forwarded with zero grace.
    let (status, _, answer) = rig
        .raw(
            "POST",
            &evict_path(&ns, "solo-pb"),
            &PROTOBUF,
            eviction_protobuf("solo-pb", &ns, Some(0), false),
        )
        .await;
    let message = String::from_utf8_lossy(&answer);
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("Send the Eviction as JSON"), "{message}");
    assert_eq!(
        deletion(&rig, "solo-pb").await,
        Some(serde_json::Value::Null)
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_out_of_scope_is_denied() {
    let allowed = unique("elsewhere");
    let rig = Rig::start("evict-scope", |_| {
        format!("mode: enforce\nrules:\n  PG010: off\nmutation_namespaces: [\"{allowed}\"]\n")
    })
    .await;
    let ns = rig.ns.clone();
    rig.admin_apply(&pod("victim", false)).await;
    let (status, _, answer) = rig
        .raw(
            "POST",
            &evict_path(&ns, "victim"),
            &PROTOBUF,
            eviction_protobuf("victim", &ns, None, false),
        )
        .await;
    let message = String::from_utf8_lossy(&answer);
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("PG014 out-of-scope-mutation"), "{message}");
    assert_eq!(
        deletion(&rig, "victim").await,
        Some(serde_json::Value::Null)
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_needs_its_dry_run_and_the_dry_run_evicts_nothing() {
    let rig = Rig::start("evict-dry", |_| "mode: enforce\n".to_string()).await;
    let ns = rig.ns.clone();
    for name in ["json", "pb"] {
        rig.admin_apply(&pod(name, false)).await;
    }
    let json = |dry: bool| {
        eviction_json(
            "json",
            &ns,
            if dry {
                r#"{"gracePeriodSeconds":45,"dryRun":["All"]}"#
            } else {
                r#"{"gracePeriodSeconds":45}"#
            },
        )
    };
    let pb = |dry| eviction_protobuf("pb", &ns, Some(45), dry);
    let requests: [(&str, &Headers, Vec<u8>, Vec<u8>); 2] = [
        (
            "json",
            &JSON,
            json(true).into_bytes(),
            json(false).into_bytes(),
        ),
        ("pb", &PROTOBUF, pb(true), pb(false)),
    ];
    for (name, headers, dry, real) in requests {
        let path = evict_path(&ns, name);
        let (status, _, answer) = rig.raw("POST", &path, headers, real.clone()).await;
        let message = String::from_utf8_lossy(&answer);
        assert_eq!(status, 403, "{name}: {message}");
        assert!(
            message.contains("PG010 missing-dry-run") && message.contains("eviction"),
            "{message}"
        );
        let (status, _, answer) = rig.raw("POST", &path, headers, dry).await;
        assert_eq!(status, 201, "{name}: {}", String::from_utf8_lossy(&answer));
        assert_eq!(
            deletion(&rig, name).await,
            Some(serde_json::Value::Null),
            "{name}: the dry run evicted nothing"
        );
        let (status, _, answer) = rig.raw("POST", &path, headers, real).await;
        assert_eq!(status, 201, "{name}: {}", String::from_utf8_lossy(&answer));
        assert_eq!(
            deletion(&rig, name).await,
            Some(serde_json::json!(45)),
            "{name}: evicted"
        );
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_is_recorded_in_the_ledger_as_a_pod_delete() {
    let spool = tempfile::tempdir().unwrap();
    let rig = Rig::start_with(
        "evict-ledger",
        |_| "mode: enforce\nrules:\n  PG010: off\n".to_string(),
        |builder| builder.ledger(pathgate::ledger::LedgerSettings::new(spool.path())),
    )
    .await;
    let ns = rig.ns.clone();
    rig.admin_apply(&pod("solo", false)).await;
    let body = eviction_json("solo", &ns, r#"{"gracePeriodSeconds":0}"#);
    let (status, headers, answer) = rig.raw("POST", &evict_path(&ns, "solo"), &JSON, body).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    let trace_id = headers
        .get(pathgate::trace::EXECUTION_TRACE_HEADER)
        .expect("pathgate stamps its trace id")
        .to_str()
        .unwrap()
        .to_string();
    rig.stop().await;

    let entries = crate::recording::spool_entries(spool.path());
    let entry = entries
        .iter()
        .rfind(|e| e["trace_id"] == trace_id.as_str() && e["phase"] == "outcome")
        .unwrap_or_else(|| panic!("no outcome entry for {trace_id} in {entries:?}"));
    let request = &entry["request"];
    assert_eq!(
        (&request["verb"], &request["effect_verb"], &request["scope"]),
        (&"create".into(), &"delete".into(), &"namespaced".into()),
        "{entry}"
    );
    assert_eq!(
        entry["grace_period"],
        serde_json::json!({"sent": 0, "forwarded": 30})
    );
    assert_eq!(entry["decision"]["findings"][0]["rule"], "PG005", "{entry}");
}
