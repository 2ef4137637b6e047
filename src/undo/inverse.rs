//! The inverse of one object's net change (pure): from the first pre-image and the last
//! post-image of a window, the RFC 6902 operations that take the post-image back to the
//! pre-image in exactly the fields that differ between the two, and nothing else.
//!
//! Only the two images count. A field the server set (a Service's `clusterIP`, a
//! container's `terminationMessagePath`) that both images hold with one value is not
//! touched; a concurrent change to a field the run did not change survives the patch.
//! Server-managed metadata and `status` are never compared ([`View::comparable`]).
//!
//! Maps are compared key by key, lists of equal length element by element (so a changed
//! image of container 0 is one `replace` of `/spec/template/spec/containers/0/image`), a
//! list whose length changed is replaced whole at its path: elements have no identity an
//! RFC 6902 patch could name, and an index into a list someone else reordered would
//! restore the wrong element.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `metadata` keys the apiserver owns: never restored, never compared.
pub const SERVER_MANAGED_METADATA: [&str; 8] = [
    "resourceVersion",
    "generation",
    "managedFields",
    "creationTimestamp",
    "uid",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// One RFC 6902 operation (the subset an inverse needs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Test { path: String, value: Value },
    Add { path: String, value: Value },
    Remove { path: String },
    Replace { path: String, value: Value },
}

impl Op {
    /// The JSON pointer the operation acts on.
    pub fn path(&self) -> &str {
        match self {
            Op::Test { path, .. }
            | Op::Add { path, .. }
            | Op::Remove { path }
            | Op::Replace { path, .. } => path,
        }
    }
}

/// Which part of an object a mutation wrote, and so which part of its images is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// The object itself: everything but `status` and server-managed metadata.
    Object,
    /// The `status` subresource: `status` only.
    Status,
    /// The `scale` subresource (an `autoscaling/v1` `Scale`): `spec` only.
    Scale,
}

impl View {
    /// The view of a request's subresource; `None` for one that is not an object view.
    pub fn of_subresource(subresource: &str) -> Option<View> {
        match subresource {
            "" => Some(View::Object),
            "status" => Some(View::Status),
            "scale" => Some(View::Scale),
            _ => None,
        }
    }

    /// The subresource a step of this view is sent to (`""`: the object's own path).
    pub fn subresource(self) -> &'static str {
        match self {
            View::Object => "",
            View::Status => "status",
            View::Scale => "scale",
        }
    }

    /// The part of `image` this view compares.
    pub fn comparable(self, image: &Value) -> Value {
        let keep_only = |key: &str| {
            let mut kept = Map::new();
            if let Some(value) = image.get(key) {
                kept.insert(key.to_string(), value.clone());
            }
            Value::Object(kept)
        };
        match self {
            View::Status => keep_only("status"),
            View::Scale => keep_only("spec"),
            View::Object => {
                let mut object = image.clone();
                if let Some(map) = object.as_object_mut() {
                    map.remove("status");
                }
                strip_server_metadata(&mut object);
                object
            }
        }
    }
}

/// Removes [`SERVER_MANAGED_METADATA`] from an object's `metadata`.
pub fn strip_server_metadata(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in SERVER_MANAGED_METADATA {
            metadata.remove(key);
        }
    }
}

/// The operations that turn `post` back into `pre` within `view`, in a stable order (map
/// keys sorted). Empty when the window left the view as it found it.
pub fn inverse(view: View, pre: &Value, post: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    diff(&view.comparable(pre), &view.comparable(post), "", &mut ops);
    ops
}

/// Appends the operations taking `post` to `pre` at `path`.
fn diff(pre: &Value, post: &Value, path: &str, ops: &mut Vec<Op>) {
    if pre == post {
        return;
    }
    match (pre, post) {
        (Value::Object(pre), Value::Object(post)) => diff_maps(pre, post, path, ops),
        (Value::Array(pre), Value::Array(post)) if pre.len() == post.len() => {
            for (index, (pre, post)) in pre.iter().zip(post).enumerate() {
                diff(pre, post, &format!("{path}/{index}"), ops);
            }
        }
        _ => ops.push(Op::Replace {
            path: path.to_string(),
            value: pre.clone(),
        }),
    }
}

fn diff_maps(pre: &Map<String, Value>, post: &Map<String, Value>, path: &str, ops: &mut Vec<Op>) {
    let mut keys: Vec<&String> = pre.keys().chain(post.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let at = format!("{path}/{}", escape(key));
        match (pre.get(key), post.get(key)) {
            (Some(pre), Some(post)) => diff(pre, post, &at, ops),
            (Some(pre), None) => ops.push(Op::Add {
                path: at,
                value: pre.clone(),
            }),
            (None, Some(_)) => ops.push(Op::Remove { path: at }),
            (None, None) => {}
        }
    }
}

/// A map key as a JSON pointer reference token (RFC 6901: `~` is `~0`, `/` is `~1`).
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// One field of a conflict: what the run left there and what is there now (`None`:
/// absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    pub path: String,
    pub run_left: Option<Value>,
    pub current: Option<Value>,
}

/// The fields `ops` would write whose current value is not what the run left: what a
/// conflict shows (the run's fields a later writer changed).
pub fn conflicting_fields(view: View, ops: &[Op], post: &Value, current: &Value) -> Vec<FieldDiff> {
    let (post, current) = (view.comparable(post), view.comparable(current));
    ops.iter()
        .filter(|op| !matches!(op, Op::Test { .. }))
        .filter_map(|op| {
            let run_left = post.pointer(op.path()).cloned();
            let now = current.pointer(op.path()).cloned();
            (run_left != now).then(|| FieldDiff {
                path: op.path().to_string(),
                run_left,
                current: now,
            })
        })
        .collect()
}

/// Every leaf where `current` differs from `left` within `view` (for a conflict on an
/// object the run created: what someone changed since).
pub fn changed_fields(view: View, left: &Value, current: &Value) -> Vec<FieldDiff> {
    let (left, current) = (view.comparable(left), view.comparable(current));
    let mut ops = Vec::new();
    diff(&left, &current, "", &mut ops);
    ops.iter()
        .map(|op| FieldDiff {
            path: op.path().to_string(),
            run_left: left.pointer(op.path()).cloned(),
            current: current.pointer(op.path()).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
