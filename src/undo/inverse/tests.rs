use serde_json::{json, Value};

use super::*;

/// Applies `ops` to `document` as the apiserver would: through an RFC 6902 implementation.
fn apply(document: &Value, ops: &[Op]) -> Value {
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::to_value(ops).unwrap()).expect("the ops are RFC 6902");
    let mut out = document.clone();
    json_patch::patch(&mut out, &patch).expect("the patch applies");
    out
}

fn deployment(image: &str, replicas: u64, rv: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": rv,
                     "generation": 2, "creationTimestamp": "2026-12-01T00:00:00Z",
                     "labels": {"app": "web"}, "managedFields": [{"manager": "kubectl"}]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image,
                                  "imagePullPolicy": "IfNotPresent",
                                  "terminationMessagePath": "/dev/termination-log"}]}}},
        "status": {"replicas": replicas, "observedGeneration": 2}
    })
}

#[test]
fn a_changed_image_and_replica_count_are_restored_leaf_by_leaf() {
    let pre = deployment("nginx:1.25", 2, "100");
    let post = deployment("nginx:1.27", 5, "140");
    let ops = inverse(View::Object, &pre, &post);
    assert_eq!(
        ops,
        [
            Op::Replace {
                path: "/spec/replicas".into(),
                value: json!(2)
            },
            Op::Replace {
                path: "/spec/template/spec/containers/0/image".into(),
                value: json!("nginx:1.25")
            },
        ],
        "no op on status, resourceVersion, managedFields or the defaulted container fields"
    );
    let restored = apply(&post, &ops);
    assert_eq!(
        View::Object.comparable(&restored),
        View::Object.comparable(&pre)
    );
}

#[test]
fn a_list_whose_length_changed_is_replaced_whole_and_equal_length_lists_by_index() {
    let pre = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}],
                              "args": ["--a", "--b"]}});
    let post = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}],
                               "args": ["--a", "--c"]}});
    let ops = inverse(View::Object, &pre, &post);
    assert_eq!(
        ops,
        [
            Op::Replace {
                path: "/spec/args/1".into(),
                value: json!("--b")
            },
            Op::Replace {
                path: "/spec/ports".into(),
                value: json!([{"port": 80, "protocol": "TCP"}])
            },
        ]
    );
    assert_eq!(apply(&post, &ops), pre);
}

#[test]
fn map_keys_added_by_the_run_are_removed_and_keys_it_removed_are_added_back() {
    let pre = json!({"metadata": {"name": "c", "labels": {"tier": "db"},
                                  "annotations": {"example.com/owner": "team-a", "note": "x"}},
                     "data": {"a": "1", "b": "2"}});
    let post = json!({"metadata": {"name": "c", "labels": {"tier": "db", "agent": "yes"},
                                   "annotations": {"note": "x"}},
                      "data": {"a": "1", "b": "3", "c": "new"}});
    let ops = inverse(View::Object, &pre, &post);
    assert_eq!(
        ops,
        [
            Op::Replace {
                path: "/data/b".into(),
                value: json!("2")
            },
            Op::Remove {
                path: "/data/c".into()
            },
            Op::Add {
                path: "/metadata/annotations/example.com~1owner".into(),
                value: json!("team-a")
            },
            Op::Remove {
                path: "/metadata/labels/agent".into()
            },
        ]
    );
    assert_eq!(apply(&post, &ops), pre);
}

#[test]
fn a_field_the_run_removed_is_re_added_whole() {
    let resources = json!({"limits": {"cpu": "500m", "memory": "256Mi"}});
    let mut pre = deployment("nginx:1.25", 2, "1");
    pre["spec"]["template"]["spec"]["containers"][0]["resources"] = resources.clone();
    let post = deployment("nginx:1.25", 2, "2");
    let ops = inverse(View::Object, &pre, &post);
    assert_eq!(
        ops,
        [Op::Add {
            path: "/spec/template/spec/containers/0/resources".into(),
            value: resources
        }]
    );
}

#[test]
fn server_defaulted_fields_both_images_hold_are_untouched_and_concurrent_changes_survive() {
    // A Service replaced by a manifest without clusterIP: the server kept the IP, so both
    // images hold it and the inverse must not write it.
    let pre = json!({"metadata": {"name": "api", "resourceVersion": "7"},
                     "spec": {"clusterIP": "10.0.0.12", "clusterIPs": ["10.0.0.12"],
                              "sessionAffinity": "None", "type": "ClusterIP",
                              "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
                              "selector": {"app": "api"}}});
    let mut post = pre.clone();
    post["metadata"]["resourceVersion"] = json!("9");
    post["spec"]["selector"] = json!({"app": "api-v2"});
    let ops = inverse(View::Object, &pre, &post);
    assert_eq!(
        ops,
        [Op::Replace {
            path: "/spec/selector/app".into(),
            value: json!("api")
        }]
    );
    assert!(ops.iter().all(|op| !op.path().contains("clusterIP")));
    // Someone else labels the Service after the run: the forced inverse keeps the label.
    let mut concurrent = post.clone();
    concurrent["metadata"]["labels"] = json!({"owner": "ops"});
    let restored = apply(&concurrent, &ops);
    assert_eq!(restored["metadata"]["labels"], json!({"owner": "ops"}));
    assert_eq!(restored["spec"]["selector"], json!({"app": "api"}));
}

#[test]
fn an_unchanged_window_has_no_inverse_and_status_is_never_compared_on_the_object() {
    let pre = deployment("nginx:1.25", 2, "1");
    let mut post = deployment("nginx:1.25", 2, "9");
    post["status"] = json!({"replicas": 0, "conditions": []});
    post["metadata"]["managedFields"] = json!([]);
    assert!(inverse(View::Object, &pre, &post).is_empty());
    // The status subresource's view compares status only.
    let ops = inverse(View::Status, &pre, &post);
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert!(ops.iter().all(|op| op.path().starts_with("/status")));
}

#[test]
fn a_scale_view_compares_the_scale_spec_only() {
    let scale = |replicas: u64, rv: &str| {
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
               "metadata": {"name": "web", "resourceVersion": rv},
               "spec": {"replicas": replicas}, "status": {"replicas": replicas, "selector": "app=web"}})
    };
    let ops = inverse(View::Scale, &scale(2, "1"), &scale(6, "4"));
    assert_eq!(
        ops,
        [Op::Replace {
            path: "/spec/replicas".into(),
            value: json!(2)
        }]
    );
}

#[test]
fn a_conflict_names_the_run_s_fields_someone_changed_since_and_only_those() {
    let pre = deployment("nginx:1.25", 2, "100");
    let post = deployment("nginx:1.27", 5, "140");
    let ops = inverse(View::Object, &pre, &post);
    let mut current = deployment("nginx:1.28", 5, "151");
    current["metadata"]["labels"]["extra"] = json!("x");
    let fields = conflicting_fields(View::Object, &ops, &post, &current);
    assert_eq!(
        fields,
        [FieldDiff {
            path: "/spec/template/spec/containers/0/image".into(),
            run_left: Some(json!("nginx:1.27")),
            current: Some(json!("nginx:1.28")),
        }]
    );
    let changed = changed_fields(View::Object, &post, &current);
    let paths: Vec<_> = changed.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/metadata/labels/extra",
            "/spec/template/spec/containers/0/image"
        ]
    );
}

#[test]
fn pointer_tokens_are_escaped() {
    assert_eq!(escape("a/b~c"), "a~1b~0c");
    let pre = json!({"metadata": {"annotations": {"a/b~c": "1"}}});
    let post = json!({"metadata": {"annotations": {"a/b~c": "2"}}});
    let ops = inverse(View::Object, &pre, &post);
    assert_eq!(apply(&post, &ops), pre);
}

#[test]
fn the_inverse_writes_exactly_where_the_ledger_s_effect_paths_point() {
    let pairs = [
        (
            deployment("nginx:1.25", 2, "1"),
            deployment("nginx:1.27", 5, "2"),
        ),
        (
            json!({"spec": {"ports": [{"port": 80}], "args": ["--a", "--b"]}}),
            json!({"spec": {"ports": [{"port": 80}, {"port": 443}], "args": ["--a", "--c"]}}),
        ),
        (
            json!({"metadata": {"labels": {"a": "1"}, "annotations": {"x/y": "1"}}, "data": {"k": "v"}}),
            json!({"metadata": {"labels": {"a": "2", "b": "3"}}, "data": {}}),
        ),
    ];
    for (pre, post) in pairs {
        let ops = inverse(View::Object, &pre, &post);
        let effect = crate::policy::effect_paths(&pre, &post);
        let under = |leaf: &str, op: &str| leaf == op || leaf.starts_with(&format!("{op}/"));
        for leaf in &effect {
            assert!(
                ops.iter().any(|op| under(leaf, op.path())),
                "{leaf} changed but no op restores it: {ops:?}"
            );
        }
        for op in &ops {
            assert!(
                effect.iter().any(|leaf| under(leaf, op.path())),
                "{} is written but nothing changed there: {effect:?}",
                op.path()
            );
        }
    }
}
