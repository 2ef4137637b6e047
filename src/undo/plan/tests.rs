use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
use crate::undo::history::After;

/// The store in a map: a digest not in it is missing, one under `sealed` is encrypted.
#[derive(Default)]
struct Store {
    images: HashMap<String, Value>,
    sealed: Vec<String>,
}

impl Images for Store {
    fn load(&self, digest: &str) -> Result<Value, ImageProblem> {
        if self.sealed.iter().any(|d| d == digest) {
            return Err(ImageProblem::Encrypted);
        }
        self.images
            .get(digest)
            .cloned()
            .ok_or(ImageProblem::Missing)
    }
}

impl Store {
    fn put(&mut self, name: &str, image: Value) -> ImageRef {
        self.images.insert(name.to_string(), image);
        ImageRef::Stored {
            digest: name.to_string(),
        }
    }
}

fn object(group: &str, resource: &str, name: &str) -> ObjectRef {
    ObjectRef {
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        namespace: "shop".into(),
        name: name.into(),
    }
}

fn mutation(trace: &str, verb: &str, kind: Kind, object: ObjectRef) -> Mutation {
    Mutation {
        trace_id: trace.into(),
        verb: verb.into(),
        kind,
        object,
        outcome: Outcome::Succeeded,
        before: Before::Absent,
        after: After::default(),
    }
}

fn present(image: ImageRef) -> Before {
    Before::Present {
        image,
        controller: None,
    }
}

fn after(image: Option<ImageRef>, uid: &str, rv: &str) -> After {
    After {
        image,
        uid: Some(uid.into()),
        resource_version: Some(rv.into()),
        between: None,
    }
}

fn deployment(image: &str, replicas: u64, rv: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "shop", "uid": "d-1", "resourceVersion": rv},
           "spec": {"replicas": replicas,
                    "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
           "status": {"replicas": replicas}})
}

#[test]
fn two_changes_of_one_object_are_undone_by_one_patch_from_the_first_pre_image_to_the_last_post_image(
) {
    let mut store = Store::default();
    let web = object("apps", "deployments", "web");
    let v1 = store.put("d-v1", deployment("nginx:1.25", 2, "10"));
    let v2 = store.put("d-v2", deployment("nginx:1.27", 2, "11"));
    let v3 = store.put("d-v3", deployment("nginx:1.27", 5, "12"));
    let mut image = mutation("t-1", "patch", Kind::Change(View::Object), web.clone());
    image.before = present(v1);
    image.after = after(Some(v2.clone()), "d-1", "11");
    let mut scale = mutation("t-2", "patch", Kind::Change(View::Object), web.clone());
    scale.before = present(v2);
    scale.after = after(Some(v3), "d-1", "12");
    let plan = plan(&[image, scale], &store);
    assert!(plan.not_undoable.is_empty(), "{:?}", plan.not_undoable);
    assert_eq!(plan.steps.len(), 1);
    let step = &plan.steps[0];
    assert_eq!(step.traces, ["t-1", "t-2"]);
    assert_eq!(step.path(), "/apis/apps/v1/namespaces/shop/deployments/web");
    assert_eq!(
        step.action,
        Action::Patch {
            view: View::Object,
            resource_version: "12".into(),
            ops: vec![
                Op::Replace {
                    path: "/spec/replicas".into(),
                    value: json!(2)
                },
                Op::Replace {
                    path: "/spec/template/spec/containers/0/image".into(),
                    value: json!("nginx:1.25")
                },
            ],
        }
    );
    assert_eq!(step.left, Some(deployment("nginx:1.27", 5, "12")));
}

#[test]
fn what_the_run_created_is_deleted_under_the_uid_and_resource_version_it_left() {
    // A generateName create: the name is the answer's.
    let mut create = mutation(
        "t-1",
        "create",
        Kind::Create,
        object("", "services", "api-x7k2p"),
    );
    create.after = after(None, "s-1", "77");
    let plan = plan(&[create], &Store::default());
    assert_eq!(
        plan.steps[0].action,
        Action::Delete {
            uid: "s-1".into(),
            resource_version: "77".into()
        }
    );
    assert_eq!(
        plan.steps[0].path(),
        "/api/v1/namespaces/shop/services/api-x7k2p"
    );
}

#[test]
fn a_create_whose_answer_was_not_read_is_deleted_by_its_creation_time() {
    // `kubectl create service` asks for a protobuf answer: the ledger has no uid.
    let mut create = mutation(
        "t-1",
        "create",
        Kind::Create,
        object("", "services", "extra"),
    );
    create.after.between = Some((
        "2026-12-02T02:15:31.2Z".into(),
        "2026-12-02T02:15:31.3Z".into(),
    ));
    let guarded = plan(&[create.clone()], &Store::default());
    assert_eq!(
        guarded.steps[0].action,
        Action::DeleteCreatedBetween {
            from: "2026-12-02T02:15:31.2Z".into(),
            to: "2026-12-02T02:15:31.3Z".into()
        }
    );
    create.after.between = None;
    let unguarded = plan(&[create], &Store::default());
    assert_eq!(unguarded.not_undoable[0].reason, Reason::NoPostImage);
}

#[test]
fn a_deleted_object_is_re_created_without_server_managed_fields_and_a_bare_pod_unbound() {
    let mut store = Store::default();
    let config = store.put(
        "cm",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "settings", "namespace": "shop", "uid": "c-1",
                            "resourceVersion": "5", "creationTimestamp": "2026-12-01T00:00:00Z",
                            "managedFields": [{"manager": "kubectl"}], "labels": {"app": "shop"}},
               "data": {"mode": "safe"}}),
    );
    let pod = store.put(
        "pod",
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "debug", "namespace": "shop", "uid": "p-1", "resourceVersion": "6"},
               "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]},
               "status": {"phase": "Running"}}),
    );
    let mut delete_config = mutation(
        "t-1",
        "delete",
        Kind::Delete,
        object("", "configmaps", "settings"),
    );
    delete_config.before = present(config);
    let mut delete_pod = mutation("t-2", "delete", Kind::Delete, object("", "pods", "debug"));
    delete_pod.before = present(pod);
    let plan = plan(&[delete_config, delete_pod], &store);
    let bodies: Vec<_> = plan
        .steps
        .iter()
        .map(|step| match &step.action {
            Action::Create { body } => (step.path(), body.clone()),
            other => panic!("a re-create, not {other:?}"),
        })
        .collect();
    assert_eq!(
        bodies,
        [
            (
                "/api/v1/namespaces/shop/pods".to_string(),
                json!({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "debug", "namespace": "shop"},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
            ),
            (
                "/api/v1/namespaces/shop/configmaps".to_string(),
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "settings", "namespace": "shop", "labels": {"app": "shop"}},
                       "data": {"mode": "safe"}})
            ),
        ],
        "newest first"
    );
}

#[test]
fn a_controller_owned_pod_is_left_to_its_controller() {
    let mut store = Store::default();
    let pod = store.put(
        "pod",
        json!({"kind": "Pod", "metadata": {"name": "web-1", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c7", "controller": true}]}}),
    );
    let mut evict = mutation("t-1", "create", Kind::Delete, object("", "pods", "web-1"));
    evict.before = present(pod);
    let plan = plan(&[evict], &store);
    assert_eq!(
        plan.steps[0].action,
        Action::LeftToController {
            controller: "ReplicaSet web-5d9c7".into()
        }
    );
    assert!(!plan.steps[0].sends());
}

#[test]
fn a_collection_delete_re_creates_each_item_of_its_list_image() {
    let mut store = Store::default();
    let list = store.put(
        "list",
        json!({"kind": "List", "items": [
            {"metadata": {"name": "a", "namespace": "shop", "uid": "1", "resourceVersion": "3"}, "data": {"k": "a"}},
            {"metadata": {"name": "b", "namespace": "shop", "uid": "2", "resourceVersion": "4"}, "data": {"k": "b"}}]}),
    );
    let mut all = mutation(
        "t-1",
        "deletecollection",
        Kind::DeleteCollection,
        object("", "configmaps", ""),
    );
    all.before = present(list);
    let mut too_many = all.clone();
    too_many.trace_id = "t-2".into();
    too_many.before = present(ImageRef::Withheld {
        reason: "too-large".into(),
    });
    let plan = plan(&[all, too_many], &store);
    let names: Vec<_> = plan.steps.iter().map(|s| s.object.name.as_str()).collect();
    assert_eq!(names, ["b", "a"]);
    assert!(plan.steps.iter().all(
        |s| matches!(&s.action, Action::Create { body } if body["metadata"].get("uid").is_none())
    ));
    assert_eq!(plan.not_undoable.len(), 1);
    assert_eq!(
        plan.not_undoable[0].reason,
        Reason::ImageWithheld("too-large".into())
    );
}

#[test]
fn no_net_change_is_stated_not_sent() {
    let mut store = Store::default();
    let mut create = mutation(
        "t-1",
        "create",
        Kind::Create,
        object("", "configmaps", "tmp"),
    );
    create.after = after(None, "u", "1");
    let mut delete = mutation(
        "t-2",
        "delete",
        Kind::Delete,
        object("", "configmaps", "tmp"),
    );
    delete.before = present(store.put("tmp", json!({"metadata": {"name": "tmp"}})));
    let v1 = store.put("v1", deployment("a", 1, "1"));
    let v2 = store.put("v2", deployment("b", 1, "2"));
    let v3 = store.put("v3", deployment("a", 1, "3"));
    let web = object("apps", "deployments", "web");
    let mut there = mutation("t-3", "patch", Kind::Change(View::Object), web.clone());
    there.before = present(v1);
    there.after = after(Some(v2.clone()), "d-1", "2");
    let mut back = mutation("t-4", "patch", Kind::Change(View::Object), web);
    back.before = present(v2);
    back.after = after(Some(v3), "d-1", "3");
    let plan = plan(&[create, delete, there, back], &store);
    assert_eq!(plan.steps.len(), 2);
    assert!(plan
        .steps
        .iter()
        .all(|s| s.action == Action::NoNetChange && !s.sends()));
}

#[test]
fn what_cannot_be_undone_is_listed_with_its_reason() {
    let mut store = Store::default();
    let secret = ImageRef::Stored {
        digest: "sealed".into(),
    };
    store.sealed.push("sealed".into());
    let pod = object("", "pods", "web-1");
    let cases = [
        (Kind::Connect, Before::Unknown, Reason::InsideContainer),
        (
            Kind::OtherSubresource("token".into()),
            Before::Unknown,
            Reason::Subresource("token".into()),
        ),
        (
            Kind::Change(View::Object),
            Before::Unknown,
            Reason::NoPreImage,
        ),
        (
            Kind::Delete,
            present(ImageRef::Withheld {
                reason: "secret".into(),
            }),
            Reason::ImageWithheld("secret".into()),
        ),
        (
            Kind::Delete,
            present(ImageRef::Stored {
                digest: "evicted".into(),
            }),
            Reason::ImageMissing,
        ),
        (Kind::Delete, present(secret), Reason::ImageEncrypted),
    ];
    for (index, (kind, before, reason)) in cases.into_iter().enumerate() {
        let mut m = mutation("t", "x", kind, pod.clone());
        m.object.name = format!("o-{index}");
        m.before = before;
        let plan = plan(&[m], &store);
        assert!(plan.steps.is_empty(), "{reason:?}: {:?}", plan.steps);
        assert_eq!(plan.not_undoable.len(), 1, "{reason:?}");
        assert_eq!(plan.not_undoable[0].reason, reason);
        assert_eq!(plan.not_undoable[0].message, reason.message());
    }
    assert!(Reason::ImageWithheld("secret".into())
        .message()
        .contains("secret_key_file"));
    // An intent without an outcome is listed once, and what is known still plans.
    let mut unknown = mutation("t-9", "create", Kind::Create, object("", "configmaps", "c"));
    unknown.outcome = Outcome::Unknown;
    let mut known = mutation(
        "t-10",
        "create",
        Kind::Create,
        object("", "configmaps", "d"),
    );
    known.after = after(None, "u-d", "4");
    let plan = plan(&[unknown, known], &store);
    assert_eq!(plan.not_undoable.len(), 1);
    assert_eq!(plan.not_undoable[0].reason, Reason::OutcomeUnknown);
    assert_eq!(plan.not_undoable[0].traces, ["t-9"]);
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.steps[0].object.name, "d");
}

#[test]
fn a_scale_change_is_undone_on_the_scale_subresource() {
    let mut store = Store::default();
    let scale = |replicas: u64, rv: &str| {
        json!({"kind": "Scale", "metadata": {"name": "web", "resourceVersion": rv},
               "spec": {"replicas": replicas}, "status": {"replicas": 1}})
    };
    let mut m = mutation(
        "t-1",
        "patch",
        Kind::Change(View::Scale),
        object("apps", "deployments", "web"),
    );
    m.before = present(store.put("s1", scale(2, "8")));
    m.after = After {
        image: Some(store.put("s2", scale(4, "9"))),
        uid: None,
        resource_version: None,
        between: None,
    };
    let plan = plan(&[m], &store);
    let step = &plan.steps[0];
    assert_eq!(
        step.path(),
        "/apis/apps/v1/namespaces/shop/deployments/web/scale"
    );
    assert!(
        matches!(&step.action, Action::Patch { resource_version, ops, .. } if resource_version == "9" && ops.len() == 1),
        "{:?}",
        step.action
    );
}
