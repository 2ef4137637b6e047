//! Table tests for [`analyse`], with request bodies shaped as kubectl sends them.

use super::*;
use crate::classify::protobuf::encode::*;
use crate::classify::tree::MAX_NESTING;
use crate::classify::{request_info, MAX_TOUCHED_PATHS};

const JSON: &str = "application/json";
const SMP: &str = "application/strategic-merge-patch+json";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fn run(method: &str, url: &str, content_type: Option<&str>, body: &[u8]) -> Analysis {
    let method = http::Method::from_bytes(method.as_bytes()).unwrap();
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let info = request_info(&method, path, query, &http::HeaderMap::new())
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    analyse(&info, query, content_type, body)
}

fn sorted(paths: &[String]) -> Vec<&str> {
    let mut paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    paths.sort_unstable();
    paths
}

const DEPLOYMENT_YAML: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
        resources:
          limits:
            memory: 128Mi
"#;

#[test]
fn kubectl_set_image_is_one_path() {
    let body = br#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"image":"nginx:1.26","name":"web"}]}}}}"#;
    let a = run(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl-set",
        Some(SMP),
        body,
    );
    assert_eq!(a.patch_type, Some(PatchType::StrategicMergePatch));
    assert_eq!(a.body_format, BodyFormat::Json);
    assert_eq!(
        a.touched_paths,
        ["/spec/template/spec/containers/name=web/image"]
    );
    assert_eq!(a.payload_leaves, 1);
    assert!(a.paths_known);
    assert_eq!(a.whole_object, None);
    assert_eq!(a.opaque_reason, None);
    assert_eq!(a.field_manager.as_deref(), Some("kubectl-set"));
    assert!(!a.dry_run);
}

#[test]
fn kubectl_scale_patches_the_scale_subresource() {
    let a = run(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        Some(MERGE),
        br#"{"spec":{"replicas":3}}"#,
    );
    assert_eq!(a.patch_type, Some(PatchType::MergePatch));
    assert_eq!(a.touched_paths, ["/spec/replicas"]);
    assert_eq!(a.whole_object, None);
    // Media-type parameters are cut at ';' as the apiserver cuts them.
    let a = run(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        Some("application/merge-patch+json; charset=utf-8"),
        br#"{"spec":{"replicas":3}}"#,
    );
    assert_eq!(a.touched_paths, ["/spec/replicas"]);
}

#[test]
fn kubectl_apply_client_side_patch_carries_last_applied() {
    let last_applied = r#"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"name\":\"web\",\"namespace\":\"default\"},\"spec\":{\"replicas\":3}}\n"#;
    let body = format!(
        r#"{{"metadata":{{"annotations":{{"kubectl.kubernetes.io/last-applied-configuration":"{last_applied}"}}}},"spec":{{"replicas":3}}}}"#
    );
    let a = run(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web",
        Some(SMP),
        body.as_bytes(),
    );
    assert_eq!(a.whole_object, Some(WholeObject::ClientSideApply));
    assert_eq!(
        a.touched_paths,
        ["/spec/replicas"],
        "the annotation is bookkeeping"
    );
    let object = a.object.unwrap();
    assert!(object.has_last_applied());
    let value = object.annotation(paths::LAST_APPLIED).unwrap();
    assert!(
        value.starts_with("(omitted:"),
        "the blob is not kept: {value}"
    );
}

#[test]
fn kubectl_apply_creating_an_object_is_client_side_apply_too() {
    let body = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"password\":\"aHVudGVyMg==\"}}"},"name":"db","namespace":"default"},"data":{"password":"aHVudGVyMg=="}}"#;
    let a = run(
        "POST",
        "/api/v1/namespaces/default/secrets",
        Some(JSON),
        body,
    );
    assert_eq!(a.whole_object, Some(WholeObject::ClientSideApply));
    assert_eq!(a.touched_paths, ["/data/password"]);
    let object = a.object.unwrap();
    assert_eq!(object.name.as_deref(), Some("db"));
    assert!(
        !object
            .annotation(paths::LAST_APPLIED)
            .unwrap()
            .contains("aHVudGVyMg"),
        "no secret data in the analysis"
    );
}

#[test]
fn server_side_apply_of_a_whole_deployment() {
    let a = run(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl&fieldValidation=Strict&force=false",
        Some(APPLY),
        DEPLOYMENT_YAML.as_bytes(),
    );
    assert_eq!(a.patch_type, Some(PatchType::ApplyPatchYaml));
    assert_eq!(a.body_format, BodyFormat::Yaml);
    assert_eq!(a.whole_object, Some(WholeObject::ServerSideApply));
    assert_eq!(a.field_manager.as_deref(), Some("kubectl"));
    assert!(!a.force);
    assert_eq!(
        sorted(&a.touched_paths),
        [
            "/metadata/labels/app",
            "/spec/replicas",
            "/spec/selector/matchLabels/app",
            "/spec/template/metadata/labels/app",
            "/spec/template/spec/containers/name=web/image",
            "/spec/template/spec/containers/name=web/ports/containerPort=80",
            "/spec/template/spec/containers/name=web/resources/limits/memory",
        ]
    );
    assert_eq!(a.payload_leaves, 7);
    let object = a.object.unwrap();
    assert_eq!(
        (object.kind.as_deref(), object.name.as_deref()),
        (Some("Deployment"), Some("web"))
    );
}

#[test]
fn targeted_server_side_apply_is_not_a_whole_object() {
    let body = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.26"}]}}}}"#;
    let a = run(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=agent&force=true",
        Some(APPLY),
        body,
    );
    assert_eq!(a.whole_object, None);
    assert_eq!(a.body_format, BodyFormat::Yaml);
    assert_eq!(
        a.touched_paths,
        ["/spec/template/spec/containers/name=web/image"]
    );
    assert!(a.force);

    // Ten leaves without a selector: a whole ConfigMap restated.
    let data: Vec<String> = (0..SSA_WHOLE_OBJECT_MIN_LEAVES)
        .map(|i| format!("\"k{i}\":\"v\""))
        .collect();
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c"}},"data":{{{}}}}}"#,
        data.join(",")
    );
    let a = run(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c?fieldManager=agent",
        Some(APPLY),
        body.as_bytes(),
    );
    assert_eq!(a.whole_object, Some(WholeObject::ServerSideApply));
    // One fewer is targeted.
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c"}},"data":{{{}}}}}"#,
        data[1..].join(",")
    );
    let a = run(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c?fieldManager=agent",
        Some(APPLY),
        body.as_bytes(),
    );
    assert_eq!(a.whole_object, None);
}

#[test]
fn kubectl_resaving_last_applied_after_server_side_apply_is_not_a_whole_object() {
    // `kubectl apply --server-side -f deploy.yaml` on a Deployment once applied client-side
    // sends, after the apply itself, this apply patch with fieldManager=kubectl-last-applied.
    let last_applied = r#"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\",\"namespace\":\"shop\"},\"spec\":{\"replicas\":1}}"#;
    let body = format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"annotations":{{"kubectl.kubernetes.io/last-applied-configuration":"{last_applied}"}},"name":"web","namespace":"shop"}}}}"#
    );
    let a = run(
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/web?fieldManager=kubectl-last-applied&fieldValidation=Strict",
        Some(APPLY),
        body.as_bytes(),
    );
    assert!(a.object.as_ref().unwrap().has_last_applied());
    assert_eq!(a.whole_object, None);
    assert_eq!(a.opaque_reason, None);

    // The same annotation in a strategic merge patch is classic client-side apply.
    let a = run(
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/web?fieldManager=kubectl-client-side-apply",
        Some(SMP),
        body.as_bytes(),
    );
    assert_eq!(a.whole_object, Some(WholeObject::ClientSideApply));
}

#[test]
fn kubectl_delete_force_and_grace_period() {
    // kubectl delete pod web --force --grace-period=0
    let a = run(
        "DELETE",
        "/api/v1/namespaces/default/pods/web",
        Some(JSON),
        br#"{"gracePeriodSeconds":0,"propagationPolicy":"Background"}"#,
    );
    let options = a.delete_options.clone().unwrap();
    assert_eq!(options.grace_period_seconds, Some(0));
    assert_eq!(options.propagation_policy.as_deref(), Some("Background"));
    assert_eq!(options.source, "body");
    assert!(!options.query_ignored);
    assert_eq!(a.body_format, BodyFormat::Json);
    assert_eq!(a.opaque_reason, None);
    assert!(a.touched_paths.is_empty());

    // kubectl delete pod web --grace-period=0 (no --force) sends 1.
    let a = run(
        "DELETE",
        "/api/v1/namespaces/default/pods/web",
        Some(JSON),
        br#"{"gracePeriodSeconds":1,"propagationPolicy":"Background"}"#,
    );
    assert_eq!(a.delete_options.unwrap().grace_period_seconds, Some(1));

    // Plain kubectl delete.
    let a = run(
        "DELETE",
        "/api/v1/namespaces/default/pods/web",
        Some(JSON),
        br#"{"propagationPolicy":"Background"}"#,
    );
    assert_eq!(a.delete_options.unwrap().grace_period_seconds, None);
}

#[test]
fn delete_body_replaces_the_query_entirely() {
    let a = run(
        "DELETE",
        "/api/v1/namespaces/default/pods/web?dryRun=All&gracePeriodSeconds=30",
        Some(JSON),
        br#"{"propagationPolicy":"Background"}"#,
    );
    let options = a.delete_options.unwrap();
    assert!(
        !a.dry_run,
        "the apiserver ignores the query when a body is sent"
    );
    assert_eq!(options.grace_period_seconds, None);
    assert!(options.query_ignored);

    let a = run("DELETE", "/api/v1/namespaces/default/pods/web?gracePeriodSeconds=0&dryRun=All&propagationPolicy=Foreground", None, b"");
    let options = a.delete_options.unwrap();
    assert_eq!(
        (options.source, options.grace_period_seconds),
        ("query", Some(0))
    );
    assert_eq!(options.propagation_policy.as_deref(), Some("Foreground"));
    assert!(a.dry_run);
    assert_eq!(a.body_format, BodyFormat::None);

    let a = run("DELETE", "/api/v1/namespaces/default/pods/web", Some(JSON), br#"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"],"preconditions":{"uid":"5f1c"}}"#);
    assert!(a.dry_run);
    assert_eq!(
        a.delete_options.unwrap().precondition_uid.as_deref(),
        Some("5f1c")
    );

    // A body-less DELETE with nothing at all.
    let a = run("DELETE", "/api/v1/namespaces/default/pods/web", None, b"");
    assert_eq!(a.delete_options.unwrap().source, "none");

    // YAML DeleteOptions.
    let a = run(
        "DELETE",
        "/api/v1/namespaces/default/pods/web",
        Some("application/yaml"),
        b"gracePeriodSeconds: 0\n",
    );
    assert_eq!(a.delete_options.unwrap().grace_period_seconds, Some(0));
}

#[test]
fn deletecollection_reads_options_and_selectors() {
    let a = run(
        "DELETE",
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb",
        Some(JSON),
        br#"{"propagationPolicy":"Background"}"#,
    );
    assert!(a.has_selector);
    assert_eq!(
        a.delete_options.unwrap().propagation_policy.as_deref(),
        Some("Background")
    );
}

#[test]
fn undecodable_delete_options_are_opaque_not_defaults() {
    for (content_type, body) in [
        (Some(JSON), &br#"{"gracePeriodSeconds":"0"}"#[..]),
        (Some(JSON), &br#"{"kind":"Pod"}"#[..]),
        (Some(JSON), &b"{not json"[..]),
        (Some("application/cbor"), &b"\xa0"[..]),
        (Some("text/plain"), &b"grace=0"[..]),
        (Some(PROTOBUF), &b"k8s\x00\x12\x05"[..]),
    ] {
        let a = run(
            "DELETE",
            "/api/v1/namespaces/default/pods/web",
            content_type,
            body,
        );
        assert!(a.opaque_reason.is_some(), "{content_type:?} {body:?}");
        assert_eq!(a.delete_options, None, "{content_type:?} {body:?}");
        assert!(!a.dry_run);
    }
    let a = run(
        "DELETE",
        "/api/v1/namespaces/default/pods/web?gracePeriodSeconds=x",
        None,
        b"",
    );
    assert!(a.opaque_reason.is_some());
}

#[test]
fn protobuf_delete_options() {
    let mut raw = Vec::new();
    put_uint(1, 0, &mut raw);
    put_string(4, "Background", &mut raw);
    let body = wrap("meta.k8s.io/v1", "DeleteOptions", &raw);
    let a = run(
        "DELETE",
        "/api/v1/namespaces/default/pods/web",
        Some(PROTOBUF),
        &body,
    );
    assert_eq!(a.body_format, BodyFormat::Protobuf);
    assert_eq!(a.opaque_reason, None);
    let options = a.delete_options.unwrap();
    assert_eq!(options.grace_period_seconds, Some(0));
    assert_eq!(options.propagation_policy.as_deref(), Some("Background"));
}

#[test]
fn kubectl_rollout_undo_replaces_the_template_in_one_op() {
    let body = br#"[{"op":"replace","path":"/spec/template","value":{"metadata":{"labels":{"app":"web","pod-template-hash":"5d8f"}},"spec":{"containers":[{"name":"web","image":"nginx:1.25","ports":[{"containerPort":80,"protocol":"TCP"}],"resources":{},"terminationMessagePath":"/dev/termination-log","imagePullPolicy":"IfNotPresent"}],"restartPolicy":"Always","dnsPolicy":"ClusterFirst"}}},{"op":"replace","path":"/metadata/annotations","value":{"deployment.kubernetes.io/revision":"3"}}]"#;
    let a = run(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web",
        Some(JSON_PATCH),
        body,
    );
    assert_eq!(a.patch_type, Some(PatchType::JsonPatch));
    assert_eq!(a.touched_paths, ["/spec/template", "/metadata/annotations"]);
    assert!(
        a.payload_leaves >= 10,
        "the template is restated: {}",
        a.payload_leaves
    );
    assert_eq!(a.whole_object, None);
    assert_eq!(a.object, None);
}

#[test]
fn replace_status_and_scale() {
    let deployment =
        serde_json::to_vec(&serde_yaml::from_str::<serde_json::Value>(DEPLOYMENT_YAML).unwrap())
            .unwrap();
    let a = run(
        "PUT",
        "/apis/apps/v1/namespaces/default/deployments/web",
        Some(JSON),
        &deployment,
    );
    assert_eq!(a.whole_object, Some(WholeObject::Replace));
    assert_eq!(a.touched_paths.len(), 7);

    let scale = br#"{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":5},"status":{"replicas":2}}"#;
    let a = run(
        "PUT",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        Some(JSON),
        scale,
    );
    assert_eq!(a.whole_object, None);
    assert_eq!(a.touched_paths, ["/spec/replicas"]);

    let status = br#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web"},"spec":{"replicas":9},"status":{"readyReplicas":2}}"#;
    let a = run(
        "PUT",
        "/apis/apps/v1/namespaces/default/deployments/web/status",
        Some(JSON),
        status,
    );
    assert_eq!(a.whole_object, None);
    assert_eq!(a.touched_paths, ["/status/readyReplicas"]);

    // A PUT is a replace even when its body cannot be read.
    let a = run(
        "PUT",
        "/apis/apps/v1/namespaces/default/deployments/web",
        Some("application/cbor"),
        b"\xa0",
    );
    assert_eq!(a.whole_object, Some(WholeObject::Replace));
    assert!(a.opaque_reason.is_some());
}

fn protobuf_config_map(annotation: Option<(&str, &str)>) -> Vec<u8> {
    let mut meta = Vec::new();
    put_string(1, "settings", &mut meta);
    put_string(3, "default", &mut meta);
    if let Some((k, v)) = annotation {
        put_entry(12, k, v, &mut meta);
    }
    let mut object = Vec::new();
    put_bytes(1, &meta, &mut object);
    put_entry(2, "mode", "fast", &mut object);
    wrap("v1", "ConfigMap", &object)
}

#[test]
fn kubectl_create_configmap_sends_protobuf_that_is_not_opaque() {
    let a = run(
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create&fieldValidation=Strict",
        Some(PROTOBUF),
        &protobuf_config_map(None),
    );
    assert_eq!(a.body_format, BodyFormat::Protobuf);
    assert_eq!(a.opaque_reason, None);
    assert!(!a.paths_known);
    assert!(a.touched_paths.is_empty());
    assert_eq!(a.whole_object, None);
    let object = a.object.unwrap();
    assert_eq!(
        (
            object.kind.as_deref(),
            object.name.as_deref(),
            object.namespace.as_deref()
        ),
        (Some("ConfigMap"), Some("settings"), Some("default"))
    );

    let a = run(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(PROTOBUF),
        &protobuf_config_map(Some((paths::LAST_APPLIED, "{}"))),
    );
    assert_eq!(a.whole_object, Some(WholeObject::ClientSideApply));

    let mut corrupt = protobuf_config_map(None);
    corrupt.truncate(corrupt.len() - 3);
    let a = run(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(PROTOBUF),
        &corrupt,
    );
    assert!(a.opaque_reason.is_some());
    assert_eq!(a.object, None);
}

#[test]
fn kubectl_auth_can_i_is_a_question_read_from_protobuf() {
    let mut attributes = Vec::new();
    put_string(2, "delete", &mut attributes);
    put_string(5, "pods", &mut attributes);
    let mut spec = Vec::new();
    put_bytes(1, &attributes, &mut spec);
    let mut review = Vec::new();
    put_bytes(1, &[], &mut review);
    put_bytes(2, &spec, &mut review);
    let body = wrap(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &review,
    );
    let method = http::Method::POST;
    let info = request_info(
        &method,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        None,
        &http::HeaderMap::new(),
    )
    .unwrap();
    assert!(!info.is_mutation());
    let a = analyse(&info, None, Some(PROTOBUF), &body);
    assert_eq!(a.opaque_reason, None);
    assert_eq!(
        a.object.unwrap().kind.as_deref(),
        Some("SelfSubjectAccessReview")
    );
}

#[test]
fn evictions_carry_delete_options() {
    let body = br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web","namespace":"default"},"deleteOptions":{"gracePeriodSeconds":0}}"#;
    let a = run(
        "POST",
        "/api/v1/namespaces/default/pods/web/eviction",
        Some(JSON),
        body,
    );
    assert_eq!(a.delete_options.unwrap().grace_period_seconds, Some(0));
    assert!(a.touched_paths.is_empty());
    assert!(!a.dry_run);

    let body = br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web"},"deleteOptions":{"dryRun":["All"]}}"#;
    assert!(
        run(
            "POST",
            "/api/v1/namespaces/default/pods/web/eviction",
            Some(JSON),
            body
        )
        .dry_run
    );
    let body = br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web"}}"#;
    let a = run(
        "POST",
        "/api/v1/namespaces/default/pods/web/eviction?dryRun=All",
        Some(JSON),
        body,
    );
    assert!(a.dry_run);
    assert_eq!(a.delete_options.unwrap().source, "none");

    // kubectl drain sends the eviction as protobuf.
    let mut meta = Vec::new();
    put_string(1, "web", &mut meta);
    let mut options = Vec::new();
    put_uint(1, 30, &mut options);
    let mut eviction = Vec::new();
    put_bytes(1, &meta, &mut eviction);
    put_bytes(2, &options, &mut eviction);
    let a = run(
        "POST",
        "/api/v1/namespaces/default/pods/web/eviction",
        Some(PROTOBUF),
        &wrap("policy/v1", "Eviction", &eviction),
    );
    assert_eq!(a.opaque_reason, None);
    assert_eq!(a.delete_options.unwrap().grace_period_seconds, Some(30));
    assert_eq!(a.object.unwrap().name.as_deref(), Some("web"));
}

#[test]
fn create_identity_and_yaml() {
    let body = br#"apiVersion: v1
kind: Pod
metadata:
  generateName: web-
  namespace: default
  ownerReferences:
  - apiVersion: apps/v1
    kind: ReplicaSet
    name: web-5d8f
    uid: 0a1b
    controller: true
spec:
  containers:
  - name: web
    image: nginx
"#;
    let a = run(
        "POST",
        "/api/v1/namespaces/default/pods?dryRun=All",
        Some("application/yaml"),
        body,
    );
    assert!(a.dry_run);
    assert_eq!(a.body_format, BodyFormat::Yaml);
    assert_eq!(
        sorted(&a.touched_paths),
        [
            "/metadata/ownerReferences/uid=0a1b/apiVersion",
            "/metadata/ownerReferences/uid=0a1b/controller",
            "/metadata/ownerReferences/uid=0a1b/kind",
            "/metadata/ownerReferences/uid=0a1b/name",
            "/spec/containers/name=web/image",
        ]
    );
    let object = a.object.unwrap();
    assert_eq!(object.generate_name.as_deref(), Some("web-"));
    assert_eq!(
        object.controller().map(|o| o.name.as_str()),
        Some("web-5d8f")
    );
}

#[test]
fn dry_run_needs_every_value_all() {
    let body = br#"{"spec":{"replicas":1}}"#;
    let url = "/apis/apps/v1/namespaces/default/deployments/web";
    assert!(run("PATCH", &format!("{url}?dryRun=All"), Some(MERGE), body).dry_run);
    assert!(!run("PATCH", &format!("{url}?dryRun=all"), Some(MERGE), body).dry_run);
    assert!(!run("PATCH", &format!("{url}?dryRun="), Some(MERGE), body).dry_run);
    assert!(!run("PATCH", url, Some(MERGE), body).dry_run);
}

#[test]
fn opaque_bodies() {
    let url = "/apis/apps/v1/namespaces/default/deployments/web";
    let rows: &[(&str, Option<&str>, &[u8], &str)] = &[
        (
            "PATCH",
            Some("application/apply-patch+cbor"),
            b"\xa0",
            "CBOR",
        ),
        (
            "PATCH",
            Some("Application/Merge-Patch+JSON"),
            b"{}",
            "media type",
        ),
        (
            "PATCH",
            Some("application/merge-patch+json ; charset=utf-8"),
            b"{}",
            "media type",
        ),
        ("PATCH", None, b"{}", "media type"),
        ("PATCH", Some("application/json"), b"{}", "media type"),
        ("PATCH", Some(MERGE), b"{\"spec\":", "invalid JSON"),
        ("PATCH", Some(MERGE), b"[1]", "not an object"),
        ("PATCH", Some(JSON_PATCH), br#"{"op":"add"}"#, "JSON patch"),
        ("PATCH", Some(APPLY), b"a: [", "invalid YAML"),
        (
            "PATCH",
            Some(APPLY),
            b"---\na: 1\n---\nb: 2\n",
            "more than one YAML document",
        ),
        ("PATCH", Some(SMP), b"", "no body"),
        ("POST", Some("application/cbor"), b"\xa0", "CBOR"),
        ("POST", Some("text/plain"), b"hello", "media type"),
        ("POST", Some(PROTOBUF), b"{\"kind\":\"Pod\"}", "protobuf"),
    ];
    for &(method, content_type, body, reason) in rows {
        let url = if method == "POST" {
            "/apis/apps/v1/namespaces/default/deployments"
        } else {
            url
        };
        let a = run(method, url, content_type, body);
        let got = a
            .opaque_reason
            .clone()
            .unwrap_or_else(|| panic!("{method} {content_type:?} {body:?} should be opaque"));
        assert!(got.contains(reason), "{method} {content_type:?}: {got}");
        assert!(!a.paths_known);
        assert!(a.touched_paths.is_empty());
    }
    // Patch type is still reported for CBOR apply.
    let a = run("PATCH", url, Some("application/apply-patch+cbor"), b"\xa0");
    assert_eq!(a.patch_type, Some(PatchType::ApplyPatchCbor));
    assert_eq!(a.body_format, BodyFormat::Cbor);
    // A create without Content-Type is JSON, the apiserver's default.
    let a = run(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        None,
        br#"{"data":{"a":"b"}}"#,
    );
    assert_eq!((a.body_format, a.opaque_reason), (BodyFormat::Json, None));
}

#[test]
fn list_limits_and_selectors() {
    let a = run("GET", "/api/v1/pods?limit=500", None, b"");
    assert_eq!((a.list_limit, a.has_selector), (Some(500), false));
    let a = run(
        "GET",
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb&limit=0",
        None,
        b"",
    );
    assert_eq!((a.list_limit, a.has_selector), (None, true));
    let a = run("GET", "/api/v1/pods?fieldSelector=&limit=-1", None, b"");
    assert_eq!((a.list_limit, a.has_selector), (None, false));
    let a = run(
        "GET",
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=1",
        None,
        b"",
    );
    assert!(a.has_selector);
    // Reads carry no mutation facts.
    assert_eq!(
        (a.dry_run, a.whole_object, a.opaque_reason.clone()),
        (false, None, None)
    );
    assert!(a.paths_known);
}

/// A small deterministic generator (xorshift): the test needs varied bytes, not a crate.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn never_panics_on_random_or_truncated_bodies() {
    let requests: &[(&str, &str)] = &[
        ("PATCH", "/apis/apps/v1/namespaces/default/deployments/web"),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/web/status",
        ),
        ("POST", "/api/v1/namespaces/default/configmaps"),
        ("POST", "/api/v1/namespaces/default/pods/web/eviction"),
        ("PUT", "/api/v1/namespaces/default/configmaps/c"),
        ("DELETE", "/api/v1/namespaces/default/pods/web"),
        ("DELETE", "/api/v1/namespaces/default/pods"),
    ];
    let content_types = [
        Some(JSON),
        Some(SMP),
        Some(MERGE),
        Some(JSON_PATCH),
        Some(APPLY),
        Some("application/apply-patch+cbor"),
        Some(PROTOBUF),
        Some("application/yaml"),
        Some("application/cbor"),
        None,
    ];
    let mut valid: Vec<Vec<u8>> = vec![
        DEPLOYMENT_YAML.as_bytes().to_vec(),
        protobuf_config_map(Some(("a", "b"))),
        br#"[{"op":"replace","path":"/spec/template","value":{"a":[{"name":"x","b":1}]}}]"#.to_vec(),
        br#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"image":"nginx","name":"web","$patch":"delete"}]}}}}"#.to_vec(),
        br#"{"gracePeriodSeconds":0,"propagationPolicy":"Background","preconditions":{"uid":"x"}}"#.to_vec(),
    ];
    let mut raw = Vec::new();
    put_uint(1, 0, &mut raw);
    valid.push(wrap("v1", "DeleteOptions", &raw));
    let mut gen = Bytes(0x9e37_79b9_7f4a_7c15);
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for body in &valid {
        for cut in 0..=body.len() {
            bodies.push(body[..cut].to_vec());
        }
        for _ in 0..50 {
            let mut mutated = body.clone();
            let at = (gen.next() as usize) % mutated.len().max(1);
            if let Some(b) = mutated.get_mut(at) {
                *b = gen.next() as u8;
            }
            bodies.push(mutated);
        }
    }
    for len in [1, 4, 5, 16, 64, 300] {
        for _ in 0..20 {
            let mut body = gen.fill(len);
            if gen.next() % 2 == 0 {
                let mut with_magic = protobuf::MAGIC.to_vec();
                with_magic.append(&mut body);
                body = with_magic;
            }
            bodies.push(body);
        }
    }
    let mut analysed = 0;
    for (method, url) in requests {
        let info = request_info(
            &http::Method::from_bytes(method.as_bytes()).unwrap(),
            url,
            None,
            &http::HeaderMap::new(),
        )
        .unwrap();
        for content_type in content_types {
            for body in &bodies {
                let a = analyse(
                    &info,
                    Some("dryRun=All&gracePeriodSeconds=3"),
                    content_type,
                    body,
                );
                assert!(a.touched_paths.len() <= MAX_TOUCHED_PATHS);
                if a.opaque_reason.is_some() {
                    assert!(a.touched_paths.is_empty());
                }
                analysed += 1;
            }
        }
    }
    assert!(analysed > 10_000, "{analysed}");
}

/// Every way a body reaches a parser: the patch types, create and update bodies, DeleteOptions
/// and evictions, as JSON and as YAML.
const BODY_PATHS: [(&str, &str, &str); 9] = [
    (
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        JSON_PATCH,
    ),
    ("PATCH", "/api/v1/namespaces/default/configmaps/c", MERGE),
    ("PATCH", "/api/v1/namespaces/default/configmaps/c", SMP),
    ("PATCH", "/api/v1/namespaces/default/configmaps/c", APPLY),
    ("POST", "/api/v1/namespaces/default/configmaps", JSON),
    ("PUT", "/api/v1/namespaces/default/configmaps/c", YAML),
    ("DELETE", "/api/v1/namespaces/default/pods/web", JSON),
    ("DELETE", "/api/v1/namespaces/default/pods/web", YAML),
    ("POST", "/api/v1/namespaces/default/pods/web/eviction", YAML),
];

const YAML: &str = "application/yaml";

#[test]
fn bodies_nested_past_the_bound_are_refused_naming_it() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    let block = |n: usize| "- ".repeat(n) + "1";
    for (method, url, content_type) in BODY_PATHS {
        let yaml = content_type == YAML || content_type == APPLY;
        for at_bound in [nested(MAX_NESTING), objects(MAX_NESTING)] {
            let a = run(method, url, Some(content_type), at_bound.as_bytes());
            assert_eq!(
                a.refusal, None,
                "{method} {content_type}: {:?}",
                a.opaque_reason
            );
        }
        let mut past = vec![
            nested(MAX_NESTING + 1),
            objects(MAX_NESTING + 1),
            nested(70_000),
            "[".repeat(100_000),
            objects(100_000),
        ];
        if yaml {
            past.extend([block(MAX_NESTING + 1), block(100_000), "[\n".repeat(70_000)]);
        }
        for body in past {
            let started = std::time::Instant::now();
            let a = run(method, url, Some(content_type), body.as_bytes());
            let refusal = a.refusal.unwrap_or_else(|| {
                panic!(
                    "{method} {content_type} {}: {:?}",
                    &body[..20],
                    a.opaque_reason
                )
            });
            assert!(refusal.contains("more than 127 levels deep"), "{refusal}");
            assert!(a.opaque_reason.is_some());
            // Generous for a debug build on a loaded machine; the probe's body took seconds.
            assert!(
                started.elapsed() < std::time::Duration::from_millis(250),
                "{method} {content_type}: {:?}",
                started.elapsed()
            );
        }
    }
}

/// What the apiserver reads from a YAML DeleteOptions body (established against
/// go.yaml.in/yaml/v2 + sigs.k8s.io/yaml's `YAMLToJSON` and the case-sensitive JSON
/// decoding of `k8s.io/apimachinery`'s json serializer).
#[derive(Debug, PartialEq)]
enum Read {
    Grace(Option<i64>),
    Opaque,
    Refused,
}

fn delete_with(content_type: &str, body: &str) -> (Read, Analysis) {
    let a = run(
        "DELETE",
        "/api/v1/namespaces/default/pods/web",
        Some(content_type),
        body.as_bytes(),
    );
    let read = match (&a.refusal, &a.delete_options) {
        (Some(_), _) => Read::Refused,
        (None, Some(options)) => Read::Grace(options.grace_period_seconds),
        (None, None) => Read::Opaque,
    };
    (read, a)
}

#[test]
fn yaml_delete_options_read_as_the_apiserver_reads_them_or_are_refused() {
    use Read::*;
    for (body, expected) in [
        ("gracePeriodSeconds: 0", Grace(Some(0))),
        ("gracePeriodSeconds: 0x0", Grace(Some(0))),
        ("gracePeriodSeconds: 0X0", Grace(Some(0))),
        ("gracePeriodSeconds: 00", Grace(Some(0))),
        ("gracePeriodSeconds: 0o0", Grace(Some(0))),
        ("gracePeriodSeconds: 0b0", Grace(Some(0))),
        ("gracePeriodSeconds: 0_0", Grace(Some(0))),
        ("gracePeriodSeconds: -0", Grace(Some(0))),
        ("gracePeriodSeconds: +0", Grace(Some(0))),
        ("gracePeriodSeconds: 0.0", Grace(Some(0))),
        ("gracePeriodSeconds: -0.0", Grace(Some(0))),
        ("gracePeriodSeconds: 0.", Grace(Some(0))),
        ("gracePeriodSeconds: 0e5", Grace(Some(0))),
        ("gracePeriodSeconds: 1e3", Grace(Some(1000))),
        ("gracePeriodSeconds: 010", Grace(Some(8))),
        ("gracePeriodSeconds: 08", Grace(Some(8))),
        ("gracePeriodSeconds: 0x1e", Grace(Some(30))),
        ("gracePeriodSeconds:", Grace(None)),
        ("gracePeriodSeconds: ~", Grace(None)),
        ("gracePeriodSeconds: Null", Grace(None)),
        ("{gracePeriodSeconds: 0}", Grace(Some(0))),
        ("{\"gracePeriodSeconds\": 0.0}", Grace(Some(0))),
        ("{\"gracePeriodSeconds\": 1e1}", Grace(Some(10))),
        (
            "  {\"gracePeriodSeconds\": 30, \"gracePeriodSeconds\": 0}",
            Grace(Some(0)),
        ),
        // Go decodes DeleteOptions case-sensitively (sigs.k8s.io/json): these are unknown
        // fields, ignored by the apiserver.
        ("GracePeriodSeconds: 0", Grace(None)),
        ("graceperiodseconds: 0", Grace(None)),
        ("GRACEPERIODSECONDS: 0", Grace(None)),
        ("grace_period_seconds: 0", Grace(None)),
        // Strings and fractions are no int64: the apiserver answers 400.
        ("gracePeriodSeconds: '0'", Opaque),
        ("gracePeriodSeconds: \"0\"", Opaque),
        ("gracePeriodSeconds: 0.5", Opaque),
        ("gracePeriodSeconds: .inf", Opaque),
        ("gracePeriodSeconds: [0]", Opaque),
        ("gracePeriodSeconds: 0s", Opaque),
        ("kind: Pod\ngracePeriodSeconds: 0", Opaque),
        // The probe and its variants.
        ("<<: {gracePeriodSeconds: 0}", Refused),
        ("<<:\n  gracePeriodSeconds: 0\n", Refused),
        (
            "propagationPolicy: Background\n<<: [{gracePeriodSeconds: 0}]",
            Refused,
        ),
        ("defaults: &d {gracePeriodSeconds: 0}\n<<: *d", Refused),
        ("gracePeriodSeconds: &g 0", Refused),
        ("a: &g 0\ngracePeriodSeconds: *g", Refused),
        ("gracePeriodSeconds: !!int 0", Refused),
        ("gracePeriodSeconds: !!float 0", Refused),
        ("gracePeriodSeconds: !!str 30", Refused),
        ("!!map {gracePeriodSeconds: 0}", Refused),
        ("gracePeriodSeconds: 30\ngracePeriodSeconds: 0", Refused),
        ("gracePeriodSeconds: 30\n'gracePeriodSeconds': 0", Refused),
        (
            "gracePeriodSeconds: 30\n---\ngracePeriodSeconds: 0",
            Refused,
        ),
        (
            "gracePeriodSeconds: 30\u{2028}gracePeriodSeconds: 0",
            Refused,
        ),
        ("gracePeriodSeconds: 30\u{85}gracePeriodSeconds: 0", Refused),
        ("{\"gracePeriodSeconds\": 30,\u{2029}\"x\": 0}", Refused),
        ("? gracePeriodSeconds\n: 0\n? [x]\n: 1", Refused),
        ("gracePeriodSeconds: 0\nx: \"\u{FFFD}\"", Grace(Some(0))),
    ] {
        let (read, a) = delete_with(YAML, body);
        assert_eq!(read, expected, "{body:?}: {:?}", a.opaque_reason);
        if read == Refused {
            let refusal = a.refusal.unwrap();
            assert!(
                refusal.starts_with("pathgate refuses this request"),
                "{refusal}"
            );
            assert!(refusal.contains("application/json"), "{refusal}");
        }
    }
}

#[test]
fn yaml_delete_options_booleans_and_lists_are_yaml_1_1() {
    for (body, orphan) in [
        ("orphanDependents: yes", Some(true)),
        ("orphanDependents: Y", Some(true)),
        ("orphanDependents: on", Some(true)),
        ("orphanDependents: TRUE", Some(true)),
        ("orphanDependents: off", Some(false)),
        ("orphanDependents: n", Some(false)),
        ("orphanDependents: 'yes'", None),
    ] {
        let (_, a) = delete_with(YAML, body);
        assert_eq!(
            a.delete_options.as_ref().and_then(|o| o.orphan_dependents),
            orphan,
            "{body}: {:?}",
            a.opaque_reason
        );
    }
    let (_, a) = delete_with(YAML, "dryRun: [All]\npropagationPolicy: Foreground\n");
    assert!(a.dry_run);
    let (_, a) = delete_with(YAML, "dryRun:\n- All\n");
    assert!(a.dry_run);
    let (_, a) = delete_with(YAML, "dryRun: !!seq [All]");
    assert!(
        a.refusal.is_some(),
        "a tag hides nothing, but is refused all the same"
    );
}

#[test]
fn json_delete_options_are_case_sensitive_and_typed() {
    use Read::*;
    for (body, expected) in [
        (r#"{"gracePeriodSeconds":0}"#, Grace(Some(0))),
        // Go reads `-0` as 0; serde_json hands it over as the float -0.0, which cannot be
        // told from `-0.0` (refused by Go): opaque, the side that judges nothing harmless.
        (r#"{"gracePeriodSeconds":-0}"#, Opaque),
        (r#"{"GracePeriodSeconds":0}"#, Grace(None)),
        (r#"{"graceperiodseconds":0}"#, Grace(None)),
        (
            r#"{"gracePeriodSeconds":30,"gracePeriodSeconds":0}"#,
            Grace(Some(0)),
        ),
        // Go's encoding/json refuses these for an int64 field.
        (r#"{"gracePeriodSeconds":0.0}"#, Opaque),
        (r#"{"gracePeriodSeconds":1e3}"#, Opaque),
        (r#"{"gracePeriodSeconds":"0"}"#, Opaque),
        (r#"{"gracePeriodSeconds":9223372036854775808}"#, Opaque),
    ] {
        let (read, a) = delete_with(JSON, body);
        assert_eq!(read, expected, "{body}: {:?}", a.opaque_reason);
    }
    // Go's decoder reads invalid UTF-8 in a string as U+FFFD (and would apply grace 0);
    // UTF-16 YAML is read by go-yaml: both are refused, not left to the rules as opaque.
    for (content_type, body) in [
        (JSON, &b"{\"gracePeriodSeconds\":0,\"x\":\"\xff\"}"[..]),
        (YAML, &b"\xff\xfeg\x00r\x00"[..]),
    ] {
        let a = run(
            "DELETE",
            "/api/v1/namespaces/default/pods/web",
            Some(content_type),
            body,
        );
        assert!(
            a.refusal
                .as_deref()
                .is_some_and(|r| r.contains("not UTF-8")),
            "{content_type}: {a:?}"
        );
    }
}

#[test]
fn evictions_and_apply_patches_in_yaml_are_refused_when_ambiguous() {
    let eviction = "apiVersion: policy/v1\nkind: Eviction\nmetadata: {name: web}\n\
                    deleteOptions:\n  <<: {gracePeriodSeconds: 0}\n";
    let a = run(
        "POST",
        "/api/v1/namespaces/default/pods/web/eviction",
        Some(YAML),
        eviction.as_bytes(),
    );
    assert!(a.refusal.is_some(), "{a:?}");
    for body in [
        // The identity the analysis reads (name, namespace, kind) hidden behind a merge key,
        // an alias or a tag.
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  <<: {name: c, namespace: kube-system}\n",
        "apiVersion: v1\nkind: ConfigMap\nmeta: &m {name: c}\nmetadata: *m\n",
        "apiVersion: v1\nkind: !!str ConfigMap\nmetadata: {name: c}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nkind: Secret\n",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: c}\nspec:\n  <<: {replicas: 0}\n",
    ] {
        let a = run(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/c",
            Some(APPLY),
            body.as_bytes(),
        );
        assert!(a.refusal.is_some(), "{body}: {a:?}");
        assert_eq!(a.object, None);
    }
    // The same object without the constructs is read in full.
    let a = run(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl",
        Some(APPLY),
        DEPLOYMENT_YAML.as_bytes(),
    );
    assert_eq!(a.refusal, None);
    assert_eq!(a.object.unwrap().name.as_deref(), Some("web"));
}

#[test]
fn everyday_kubectl_patches_are_narrow() {
    // (command, url, content type, body, touched paths)
    let rows: &[(&str, &str, &str, &str, &[&str])] = &[
        (
            "kubectl rollout restart deployment/web",
            "/apis/apps/v1/namespaces/default/deployments/web",
            SMP,
            r#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2025-01-01T00:00:00Z"}}}}}"#,
            &["/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt"],
        ),
        (
            "kubectl label pod web tier=frontend",
            "/api/v1/namespaces/default/pods/web",
            MERGE,
            r#"{"metadata":{"labels":{"tier":"frontend"}}}"#,
            &["/metadata/labels/tier"],
        ),
        (
            "kubectl label pod web tier-",
            "/api/v1/namespaces/default/pods/web",
            MERGE,
            r#"{"metadata":{"labels":{"tier":null}}}"#,
            &["/metadata/labels/tier"],
        ),
        (
            "kubectl cordon node-1",
            "/api/v1/nodes/node-1",
            SMP,
            r#"{"spec":{"unschedulable":true}}"#,
            &["/spec/unschedulable"],
        ),
        (
            "kubectl debug web --image=busybox",
            "/api/v1/namespaces/default/pods/web/ephemeralcontainers",
            SMP,
            r#"{"spec":{"ephemeralContainers":[{"name":"debugger-x1","image":"busybox","stdin":true,"tty":true}]}}"#,
            &[
                "/spec/ephemeralContainers/name=debugger-x1/image",
                "/spec/ephemeralContainers/name=debugger-x1/stdin",
                "/spec/ephemeralContainers/name=debugger-x1/tty",
            ],
        ),
        (
            "kubectl set env deployment/web LOG=debug",
            "/apis/apps/v1/namespaces/default/deployments/web",
            SMP,
            r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"$setElementOrder/env":[{"name":"LOG"}],"env":[{"name":"LOG","value":"debug"}],"name":"web"}]}}}}"#,
            &["/spec/template/spec/containers/name=web/env/name=LOG/value"],
        ),
        (
            "kubectl patch --type=json remove a finalizer",
            "/api/v1/namespaces/default/configmaps/c",
            JSON_PATCH,
            r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#,
            &["/metadata/finalizers/0"],
        ),
    ];
    for (command, url, content_type, body, want) in rows {
        let a = run("PATCH", url, Some(content_type), body.as_bytes());
        assert_eq!(a.opaque_reason, None, "{command}");
        assert_eq!(sorted(&a.touched_paths), *want, "{command}");
        assert_eq!(a.whole_object, None, "{command}");
    }
}
