//! Effect scope: the leaf paths that actually differ between an object before and after a
//! mutation (pre-image from a GET, post-image from a dry run or the response), and what a
//! session's dry run of a mutation teaches about the same request sent for real
//! ([`Rehearsal`]).

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Metadata the apiserver maintains itself or that restates the payload rather than the
/// effect; a change there is not something the agent chose to change.
const IGNORED: [&str; 8] = [
    "/metadata/resourceVersion",
    "/metadata/managedFields",
    "/metadata/generation",
    "/metadata/uid",
    "/metadata/creationTimestamp",
    "/metadata/selfLink",
    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
    "/status",
];

/// Upper bound of paths reported: a diff of two huge objects must not allocate without
/// bound; past the limit the list ends with a `/...` marker so the count is still "more
/// than the limit".
const MAX_PATHS: usize = 1024;

/// The leaf paths (JSON pointers, RFC 6901 escaping) that differ between `before` and
/// `after`, server-maintained metadata and `/status` excluded. A leaf is a scalar, an
/// empty object or an empty array; a path present on one side only is reported by its
/// leaves on that side. Arrays are compared index by index.
pub fn effect_paths(before: &Value, after: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    diff(before, after, &mut String::new(), &mut paths);
    paths
}

/// What a session's successful server dry run of a patch or update measured: the effect
/// the same request has when sent for real, as long as the object does not change first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rehearsal {
    /// The dry run's effect: [`effect_paths`] of the pre-image and the dry run's answer.
    pub effect_paths: Vec<String>,
    /// [`effect_digest`] of the dry run's answer: the real answer has the same digest when
    /// the object was unchanged in between, which confirms the effect.
    pub post_image: [u8; 32],
}

/// What the effect of a forwarded patch or update is measured against, known before it
/// is forwarded.
#[derive(Debug, Clone, Default)]
pub enum EffectBasis {
    /// Nothing: not a patch or update of an object, or its target could not be fetched.
    #[default]
    Unmeasured,
    /// The target as fetched before forwarding.
    PreImage(Value),
    /// The session's dry run of the same request (no fetch needed).
    Rehearsed(Arc<Rehearsal>),
}

impl EffectBasis {
    /// The effect of the mutation whose successful answer is `after`; `None` when it
    /// cannot be known (a rehearsed request whose object changed since its dry run).
    pub fn measure(&self, after: &Value) -> Option<Vec<String>> {
        match self {
            EffectBasis::Unmeasured => None,
            EffectBasis::PreImage(before) => Some(effect_paths(before, after)),
            EffectBasis::Rehearsed(rehearsal) => (effect_digest(after) == rehearsal.post_image)
                .then(|| rehearsal.effect_paths.clone()),
        }
    }
}

/// A SHA-256 of `object` without the fields [`effect_paths`] ignores: two answers with the
/// same digest differ in nothing an effect would report. Object keys are visited in
/// sorted order (serde_json's map), so equal objects hash equal.
pub fn effect_digest(object: &Value) -> [u8; 32] {
    let mut hasher = Sha256::new();
    digest(object, &mut String::new(), &mut hasher);
    hasher.finalize().into()
}

fn digest(value: &Value, path: &mut String, hasher: &mut Sha256) {
    if IGNORED.contains(&path.as_str()) {
        return;
    }
    match value {
        Value::Object(map) => {
            hasher.update(b"{");
            for (key, item) in map {
                let len = path.len();
                push_segment(path, key);
                hasher.update((key.len() as u64).to_le_bytes());
                hasher.update(key.as_bytes());
                digest(item, path, hasher);
                path.truncate(len);
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&index.to_string());
                digest(item, path, hasher);
                path.truncate(len);
            }
            hasher.update(b"]");
        }
        scalar => {
            let text = scalar.to_string();
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
    }
}

fn diff(before: &Value, after: &Value, path: &mut String, out: &mut Vec<String>) {
    if out.len() >= MAX_PATHS || IGNORED.contains(&path.as_str()) {
        return;
    }
    match (before, after) {
        (Value::Object(a), Value::Object(b)) if !a.is_empty() || !b.is_empty() => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let len = path.len();
                push_segment(path, key);
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff(x, y, path, out),
                    (Some(only), None) | (None, Some(only)) => leaves(only, path, out),
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) if !a.is_empty() || !b.is_empty() => {
            for index in 0..a.len().max(b.len()) {
                let len = path.len();
                path.push('/');
                path.push_str(&index.to_string());
                match (a.get(index), b.get(index)) {
                    (Some(x), Some(y)) => diff(x, y, path, out),
                    (Some(only), None) | (None, Some(only)) => leaves(only, path, out),
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        (x, y) if x == y => {}
        _ => push_path(path, out),
    }
}

/// Every leaf under `value` (the side of a path the other side lacks).
fn leaves(value: &Value, path: &mut String, out: &mut Vec<String>) {
    if out.len() >= MAX_PATHS || IGNORED.contains(&path.as_str()) {
        return;
    }
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                let len = path.len();
                push_segment(path, key);
                leaves(item, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&index.to_string());
                leaves(item, path, out);
                path.truncate(len);
            }
        }
        _ => push_path(path, out),
    }
}

fn push_path(path: &str, out: &mut Vec<String>) {
    if out.len() + 1 == MAX_PATHS {
        out.push("/...".to_string());
    } else if out.len() < MAX_PATHS {
        out.push(if path.is_empty() {
            "/".to_string()
        } else {
            path.to_string()
        });
    }
}

fn push_segment(path: &mut String, key: &str) {
    path.push('/');
    path.push_str(&key.replace('~', "~0").replace('/', "~1"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rehearsal_confirms_its_effect_only_on_the_answer_it_predicted() {
        let dry_run_answer = json!({
            "metadata": {"name": "app", "resourceVersion": "7", "managedFields": [{"time": "10:00"}]},
            "data": {"mode": "fast", "level": "info"}
        });
        let rehearsal = Arc::new(Rehearsal {
            effect_paths: vec!["/data/mode".into()],
            post_image: effect_digest(&dry_run_answer),
        });
        let basis = EffectBasis::Rehearsed(rehearsal);
        // The real answer differs only in what the apiserver maintains itself.
        let real = json!({
            "metadata": {"name": "app", "resourceVersion": "8", "managedFields": [{"time": "10:01"}]},
            "data": {"level": "info", "mode": "fast"}
        });
        assert_eq!(basis.measure(&real), Some(vec!["/data/mode".to_string()]));
        // Someone changed the object between the dry run and the request: unknown.
        let changed = json!({
            "metadata": {"name": "app", "resourceVersion": "9"},
            "data": {"mode": "fast", "level": "debug"}
        });
        assert_eq!(basis.measure(&changed), None);
        assert_eq!(EffectBasis::Unmeasured.measure(&real), None);
        let before =
            json!({"metadata": {"name": "app"}, "data": {"mode": "slow", "level": "info"}});
        assert_eq!(
            EffectBasis::PreImage(before).measure(&real),
            Some(vec!["/data/mode".to_string()])
        );
    }

    #[test]
    fn digests_tell_values_and_shapes_apart() {
        assert_ne!(
            effect_digest(&json!({"a": "1"})),
            effect_digest(&json!({"a": 1}))
        );
        assert_ne!(
            effect_digest(&json!({"a": ["b"]})),
            effect_digest(&json!({"a": "b"}))
        );
        assert_ne!(
            effect_digest(&json!({"ab": ""})),
            effect_digest(&json!({"a": "b"}))
        );
        assert_eq!(
            effect_digest(&json!({"a": 1, "status": {"x": 1}})),
            effect_digest(&json!({"a": 1, "status": {"x": 2}}))
        );
    }

    #[test]
    fn one_image_change_is_one_path_even_when_the_template_is_restated() {
        let before = json!({
            "metadata": {"name": "web", "resourceVersion": "1", "generation": 1},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}
            ]}}},
            "status": {"replicas": 2}
        });
        let after = json!({
            "metadata": {"name": "web", "resourceVersion": "2", "generation": 2},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.26", "ports": [{"containerPort": 80}]}
            ]}}},
            "status": {"replicas": 1}
        });
        assert_eq!(
            effect_paths(&before, &after),
            vec!["/spec/template/spec/containers/0/image"]
        );
    }

    #[test]
    fn added_and_removed_subtrees_report_their_leaves() {
        let before = json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"x": [1, 2]}});
        let after = json!({"metadata": {"labels": {}}, "spec": {"x": [1], "y": {"z": true}}});
        assert_eq!(
            effect_paths(&before, &after),
            vec!["/metadata/labels/a~1b", "/spec/x/1", "/spec/y/z"]
        );
    }

    #[test]
    fn identical_objects_have_no_effect() {
        let object = json!({"spec": {"a": [1, {"b": null}], "c": {}}});
        assert!(effect_paths(&object, &object).is_empty());
    }

    #[test]
    fn the_path_list_is_bounded() {
        let before = json!({"data": (0..5000).map(|i| (i.to_string(), json!(i))).collect::<serde_json::Map<_, _>>()});
        let after = json!({"data": {}});
        let paths = effect_paths(&before, &after);
        assert_eq!(paths.len(), MAX_PATHS);
        assert_eq!(paths.last().map(String::as_str), Some("/..."));
    }
}
