//! Touched paths: the leaf paths a payload sets or removes, as JSON pointers.
//!
//! Four readings, one per payload kind:
//!
//! - **JSON patch** (RFC 6902): each operation's `path`; `move` also its `from` (removed);
//!   `copy` only its `path` (its `from` is read); `test` touches nothing. The paths are kept
//!   as sent, not expanded: `kubectl rollout undo` replacing `/spec/template` is one path,
//!   and the breadth of its value shows in [`Analysis::payload_leaves`].
//! - **JSON merge patch** (RFC 7386): every leaf; a list is one leaf (merge patch replaces
//!   lists whole); `null` (a removal) is a leaf; an empty object is a leaf (it creates the
//!   field when absent).
//! - **Strategic merge patch**: as merge patch, plus the directives: `$patch: replace` or
//!   `$patch: delete` in a map reports the map itself; `$retainKeys` reports the map (it
//!   clears every key it does not list) besides its leaves; `$deleteFromPrimitiveList/<f>`
//!   reports `<f>`; `$setElementOrder/<f>` reports `<f>` only when the patch does not also
//!   change elements of `<f>` (a two-way merge patch, such as `kubectl set image` sends, always
//!   restates the order next to the change: that is bookkeeping, not a second change). Lists
//!   whose elements merge by key (`containers` by `name`, `volumeMounts` by `mountPath`, ...)
//!   are walked per element; any other list, or a list with a `{"$patch": "replace"}` element,
//!   is one leaf.
//! - **Whole objects** (create, update, server-side apply): every leaf the object sets.
//!   Lists of objects keyed by a known merge key are walked per element; other lists of
//!   objects by index; lists of scalars are one leaf.
//!
//! List elements are written `<mergeKey>=<value>`, escaped as any JSON-pointer segment:
//! `/spec/template/spec/containers/name=web/image`,
//! `/spec/template/spec/containers/name=web/volumeMounts/mountPath=~1data/readOnly`. The
//! segment names the element as the apiserver merges it, whatever its index; it is therefore
//! a selector, not an index into the live list. Unkeyed lists of objects in whole objects use
//! the index (`/spec/rules/0/host`).
//!
//! Paths never reported: identity metadata (`apiVersion`, `kind`, `metadata.name`,
//! `generateName`, `namespace`, `resourceVersion`, `uid`, `generation`, `creationTimestamp`, `selfLink`,
//! `managedFields`), the `kubectl.kubernetes.io/last-applied-configuration` annotation
//! (client-side apply's bookkeeping, reported as [`WholeObject::ClientSideApply`] instead),
//! and `status` unless the request is to the `status` subresource (where only `status` is
//! kept: the apiserver drops the rest of a status write).
//!
//! [`Analysis::payload_leaves`]: super::Analysis::payload_leaves
//! [`WholeObject::ClientSideApply`]: super::WholeObject::ClientSideApply

use std::collections::HashSet;

use serde_json::{Map, Value};

/// At most this many paths are kept (the count in `leaves` goes on): enough for any rule
/// that compares breadth against a small limit, bounded against hostile bodies.
pub const MAX_TOUCHED_PATHS: usize = 1024;

/// The annotation client-side apply keeps its last applied configuration in.
pub(crate) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

const LAST_APPLIED_PATH: &str =
    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration";

const IDENTITY_PATHS: [&str; 11] = [
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/generateName",
    "/metadata/namespace",
    "/metadata/resourceVersion",
    "/metadata/uid",
    "/metadata/generation",
    "/metadata/creationTimestamp",
    "/metadata/selfLink",
    "/metadata/managedFields",
];

/// Up to this many collected paths, duplicates are found by comparison, not hashing.
const LINEAR_DEDUP_PATHS: usize = 32;

/// Collects leaf paths, filtered and bounded.
#[derive(Debug)]
pub(crate) struct Collector {
    paths: Vec<String>,
    /// Every path in `paths`, once there are more than [`LINEAR_DEDUP_PATHS`].
    seen: HashSet<String>,
    /// Leaves reported, after filtering, before the bound and de-duplication.
    pub(crate) leaves: usize,
    status_only: bool,
}

impl Collector {
    /// `status_only`: the request is to the `status` subresource.
    pub(crate) fn new(status_only: bool) -> Self {
        Self {
            paths: Vec::new(),
            seen: HashSet::new(),
            leaves: 0,
            status_only,
        }
    }

    fn keep(&self, path: &str) -> bool {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if IDENTITY_PATHS.iter().any(|p| under(p)) || path == LAST_APPLIED_PATH {
            return false;
        }
        under("/status") == self.status_only
    }

    pub(crate) fn leaf(&mut self, path: &str) {
        if !self.keep(path) {
            return;
        }
        self.leaves += 1;
        if self.paths.len() >= MAX_TOUCHED_PATHS {
            return;
        }
        // Typical bodies touch a few dozen paths: comparing against them is cheaper than
        // hashing every path (and growing a set from empty). Past that, a set keeps
        // de-duplication linear.
        let duplicate = if self.paths.len() < LINEAR_DEDUP_PATHS {
            self.paths.iter().any(|p| p == path)
        } else {
            if self.seen.is_empty() {
                self.seen.reserve(self.paths.len() * 2);
                self.seen.extend(self.paths.iter().cloned());
            }
            !self.seen.insert(path.to_owned())
        };
        if !duplicate {
            self.paths.push(path.to_owned());
        }
    }

    pub(crate) fn into_paths(self) -> Vec<String> {
        self.paths
    }
}

/// Appends `/` + the escaped segment to `path`, returning the length to truncate back to.
fn push_segment(path: &mut String, segment: &str) -> usize {
    let len = path.len();
    path.push('/');
    for c in segment.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
    len
}

/// Merge keys of the well-known keyed lists, by field name (first present key wins).
fn merge_keys(field: &str) -> &'static [&'static str] {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "secrets"
        | "webhooks" => &["name"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "ports" => &["containerPort", "port"],
        "hostAliases" => &["ip"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "topologySpreadConstraints" => &["topologyKey"],
        _ => &[],
    }
}

/// `(merge key, "key=value")` for a keyed list element.
fn element_key(
    element: &Map<String, Value>,
    keys: &[&'static str],
) -> Option<(&'static str, String)> {
    keys.iter().find_map(|key| {
        let value = match element.get(*key)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        Some((*key, format!("{key}={value}")))
    })
}

/// Counts the scalar leaves of a value (an empty object or list counts as one).
pub(crate) fn count_leaves(value: &Value) -> usize {
    match value {
        Value::Object(m) if !m.is_empty() => m.values().map(count_leaves).sum(),
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_object) => {
            a.iter().map(count_leaves).sum()
        }
        _ => 1,
    }
}

/// Whole objects: create, update, server-side apply.
pub(crate) fn walk_object(value: &Value, field: &str, path: &mut String, out: &mut Collector) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let back = push_segment(path, key);
                walk_object(child, key, path, out);
                path.truncate(back);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            let keys = merge_keys(field);
            for (index, item) in items.iter().enumerate() {
                let Value::Object(element) = item else {
                    continue;
                };
                match element_key(element, keys) {
                    Some((key, segment)) => {
                        let back = push_segment(path, &segment);
                        let mut any = false;
                        for (k, child) in element.iter().filter(|(k, _)| k.as_str() != key) {
                            let inner = push_segment(path, k);
                            walk_object(child, k, path, out);
                            path.truncate(inner);
                            any = true;
                        }
                        if !any {
                            out.leaf(path);
                        }
                        path.truncate(back);
                    }
                    None => {
                        let back = push_segment(path, &index.to_string());
                        walk_object(item, "", path, out);
                        path.truncate(back);
                    }
                }
            }
        }
        _ if path.is_empty() => {}
        _ => out.leaf(path),
    }
}

/// JSON merge patch (RFC 7386).
pub(crate) fn walk_merge(value: &Value, path: &mut String, out: &mut Collector) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let back = push_segment(path, key);
                walk_merge(child, path, out);
                path.truncate(back);
            }
        }
        _ if path.is_empty() => {}
        _ => out.leaf(path),
    }
}

/// A keyed list element: the element, its merge key and its `key=value` segment.
type KeyedElement<'a> = (&'a Map<String, Value>, &'static str, String);

/// Strategic merge patch.
pub(crate) fn walk_strategic(value: &Value, field: &str, path: &mut String, out: &mut Collector) {
    match value {
        Value::Object(map) => strategic_map(map, None, path, out),
        Value::Array(items) => {
            let replaces = items
                .iter()
                .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"));
            let keys = merge_keys(field);
            let keyed: Option<Vec<KeyedElement<'_>>> =
                if replaces || keys.is_empty() || items.is_empty() {
                    None
                } else {
                    items
                        .iter()
                        .map(|item| {
                            let element = item.as_object()?;
                            let (key, segment) = element_key(element, keys)?;
                            Some((element, key, segment))
                        })
                        .collect()
                };
            match keyed {
                Some(elements) => {
                    for (element, key, segment) in elements {
                        let back = push_segment(path, &segment);
                        strategic_map(element, Some(key), path, out);
                        path.truncate(back);
                    }
                }
                None => out.leaf(path),
            }
        }
        _ => out.leaf(path),
    }
}

/// One map of a strategic merge patch; `merge_key` is set for a keyed list element (the key
/// identifies the element and is not itself a change).
fn strategic_map(
    map: &Map<String, Value>,
    merge_key: Option<&str>,
    path: &mut String,
    out: &mut Collector,
) {
    match map.get("$patch") {
        None => {}
        Some(Value::String(s)) if s == "merge" => {}
        // replace, delete, or a directive the apiserver will refuse: the map as a whole.
        Some(_) => {
            out.leaf(path);
            return;
        }
    }
    let mut any = false;
    if map.contains_key("$retainKeys") {
        out.leaf(path);
        any = true;
    }
    for (key, child) in map {
        if key == "$patch" || key == "$retainKeys" || Some(key.as_str()) == merge_key {
            continue;
        }
        any = true;
        if let Some(list) = key.strip_prefix("$setElementOrder/") {
            if !map.contains_key(list) {
                let back = push_segment(path, list);
                out.leaf(path);
                path.truncate(back);
            }
            continue;
        }
        if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let back = push_segment(path, list);
            out.leaf(path);
            path.truncate(back);
            continue;
        }
        let back = push_segment(path, key);
        walk_strategic(child, key, path, out);
        path.truncate(back);
    }
    if !any && !path.is_empty() {
        out.leaf(path);
    }
}

/// Why a JSON patch is not one the apiserver would apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPatchError(pub(crate) String);

/// JSON patch (RFC 6902): returns the number of leaves the operations write.
pub(crate) fn json_patch(value: &Value, out: &mut Collector) -> Result<usize, JsonPatchError> {
    let ops = value
        .as_array()
        .ok_or_else(|| JsonPatchError("a JSON patch must be an array of operations".into()))?;
    let mut leaves = 0;
    for (index, op) in ops.iter().enumerate() {
        let bad = |what: &str| JsonPatchError(format!("operation {index}: {what}"));
        let op = op.as_object().ok_or_else(|| bad("not an object"))?;
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no \"op\""))?;
        let pointer = |key: &str| -> Result<&str, JsonPatchError> {
            let p = op
                .get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("no \"{key}\"")))?;
            if is_json_pointer(p) {
                Ok(p)
            } else {
                Err(bad(&format!("{key} {p:?} is not a JSON pointer")))
            }
        };
        match kind {
            "add" | "replace" => {
                let path = pointer("path")?;
                let value = op.get("value").ok_or_else(|| bad("no \"value\""))?;
                out.leaf(path);
                leaves += count_leaves(value);
            }
            "remove" => {
                out.leaf(pointer("path")?);
                leaves += 1;
            }
            "move" => {
                let from = pointer("from")?;
                let path = pointer("path")?;
                out.leaf(from);
                out.leaf(path);
                leaves += 1;
            }
            "copy" => {
                pointer("from")?;
                out.leaf(pointer("path")?);
                leaves += 1;
            }
            "test" => {
                pointer("path")?;
            }
            other => return Err(bad(&format!("unknown op {other:?}"))),
        }
    }
    Ok(leaves)
}

/// RFC 6901: empty, or `/`-prefixed with `~` only as `~0` or `~1`.
fn is_json_pointer(p: &str) -> bool {
    if !(p.is_empty() || p.starts_with('/')) {
        return false;
    }
    let bytes = p.as_bytes();
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b != b'~' || matches!(bytes.get(i + 1), Some(b'0' | b'1')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Paths as a sorted set: object key order depends on serde_json's map features.
    fn set(paths: Vec<String>) -> Vec<String> {
        let mut paths = paths;
        paths.sort();
        paths
    }

    fn merge(v: Value) -> Vec<String> {
        let mut out = Collector::new(false);
        walk_merge(&v, &mut String::new(), &mut out);
        set(out.into_paths())
    }

    fn strategic(v: Value) -> Vec<String> {
        let mut out = Collector::new(false);
        walk_strategic(&v, "", &mut String::new(), &mut out);
        set(out.into_paths())
    }

    fn object(v: Value, status_only: bool) -> Vec<String> {
        let mut out = Collector::new(status_only);
        walk_object(&v, "", &mut String::new(), &mut out);
        set(out.into_paths())
    }

    #[test]
    fn merge_patch_leaves() {
        assert_eq!(
            merge(json!({"spec": {"replicas": 3, "paused": null, "x": [1, 2], "y": {}}})),
            ["/spec/paused", "/spec/replicas", "/spec/x", "/spec/y"]
        );
        assert_eq!(
            merge(json!({"metadata": {"labels": {"app.kubernetes.io/name": "a~b"}}})),
            ["/metadata/labels/app.kubernetes.io~1name"]
        );
        assert!(merge(json!({})).is_empty());
        assert_eq!(
            merge(json!({"a~b": {"c/d": 1}})),
            ["/a~0b/c~1d"],
            "RFC 6901 escaping"
        );
    }

    #[test]
    fn strategic_directives() {
        assert_eq!(
            strategic(json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "side"}],
                "containers": [{"name": "web", "image": "nginx:1.25"}]
            }}}})),
            ["/spec/template/spec/containers/name=web/image"]
        );
        assert_eq!(
            strategic(
                json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}})
            ),
            ["/spec/containers"],
            "a pure reorder is a change of the list"
        );
        assert_eq!(
            strategic(
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}})
            ),
            [
                "/spec/strategy",
                "/spec/strategy/rollingUpdate",
                "/spec/strategy/type"
            ]
        );
        assert_eq!(
            strategic(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})),
            ["/metadata/finalizers"]
        );
        assert_eq!(
            strategic(json!({"spec": {"selector": {"$patch": "replace", "app": "x"}}})),
            ["/spec/selector"]
        );
        assert_eq!(
            strategic(json!({"spec": {"affinity": {"$patch": "delete"}}})),
            ["/spec/affinity"]
        );
        assert_eq!(
            strategic(json!({"spec": {"tolerations": {"$patch": "merge", "a": 1}}})),
            ["/spec/tolerations/a"]
        );
        assert_eq!(
            strategic(json!({"spec": {"containers": [{"name": "side", "$patch": "delete"}]}})),
            ["/spec/containers/name=side"]
        );
        assert_eq!(
            strategic(
                json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "web", "image": "x"}]}})
            ),
            ["/spec/containers"]
        );
        assert_eq!(
            strategic(json!({"spec": {"containers": [{"name": "web"}]}})),
            ["/spec/containers/name=web"],
            "an element with only its key adds (or keeps) the element"
        );
        assert_eq!(
            strategic(json!({"spec": {"tolerations": [{"key": "a", "effect": "NoSchedule"}]}})),
            ["/spec/tolerations"],
            "a list without merge key is replaced whole"
        );
        assert_eq!(
            strategic(
                json!({"spec": {"containers": [{"name": "web", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}]}})
            ),
            [
                "/spec/containers/name=web/ports/containerPort=80/protocol",
                "/spec/containers/name=web/volumeMounts/mountPath=~1data/readOnly"
            ]
        );
        assert_eq!(
            strategic(
                json!({"spec": {"containers": [{"name": "web", "image": "a"}, {"image": "b"}]}})
            ),
            ["/spec/containers"],
            "an element without its key makes the list unkeyable: one leaf"
        );
    }

    #[test]
    fn whole_object_leaves() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7",
                         "labels": {"app": "web"}, "managedFields": [{"manager": "x"}]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "web", "image": "nginx",
                         "args": ["-g", "daemon off;"]}],
                         "volumes": [{"name": "cache", "emptyDir": {}}],
                         "tolerations": [{"key": "a"}]}}},
            "status": {"replicas": 2}
        });
        assert_eq!(
            object(deployment.clone(), false),
            [
                "/metadata/labels/app",
                "/spec/replicas",
                "/spec/selector/matchLabels/app",
                "/spec/template/spec/containers/name=web/args",
                "/spec/template/spec/containers/name=web/image",
                "/spec/template/spec/tolerations/0/key",
                "/spec/template/spec/volumes/name=cache/emptyDir",
            ]
        );
        assert_eq!(object(deployment, true), ["/status/replicas"]);
    }

    #[test]
    fn json_patch_ops() {
        let mut out = Collector::new(false);
        let leaves = json_patch(
            &json!([
                {"op": "replace", "path": "/spec/template", "value": {"spec": {"containers": [{"name": "a", "image": "b"}]}}},
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/b"},
                {"op": "copy", "from": "/metadata/labels/c", "path": "/metadata/labels/d"},
                {"op": "remove", "path": "/spec/paused"},
                {"op": "remove", "path": "/spec/paused"}
            ]),
            &mut out,
        )
        .unwrap();
        assert_eq!(leaves, 2 + 1 + 1 + 1 + 1);
        assert_eq!(
            out.into_paths(),
            [
                "/spec/template",
                "/metadata/labels/a",
                "/metadata/labels/b",
                "/metadata/labels/d",
                "/spec/paused"
            ]
        );
        for bad in [
            json!({"op": "add"}),
            json!([{"op": "add", "path": "/a"}]),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "remove", "path": "a"}]),
            json!([{"op": "remove", "path": "/a~2"}]),
            json!([{"op": "move", "path": "/a"}]),
            json!(["remove"]),
        ] {
            assert!(
                json_patch(&bad, &mut Collector::new(false)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn identity_and_bookkeeping_are_never_paths() {
        let mut out = Collector::new(false);
        for p in [
            "/apiVersion",
            "/metadata/name",
            "/metadata/managedFields/0/manager",
            LAST_APPLIED_PATH,
            "/status",
            "/status/phase",
        ] {
            out.leaf(p);
        }
        out.leaf("/metadata/namespaceX");
        out.leaf("/statusy");
        assert_eq!(out.into_paths(), ["/metadata/namespaceX", "/statusy"]);
    }

    #[test]
    fn paths_are_bounded_but_counted() {
        let mut big = Map::new();
        for i in 0..(MAX_TOUCHED_PATHS + 10) {
            big.insert(format!("k{i}"), json!(i));
        }
        let mut out = Collector::new(false);
        walk_merge(&json!({"data": big}), &mut String::new(), &mut out);
        assert_eq!(out.leaves, MAX_TOUCHED_PATHS + 10);
        assert_eq!(out.into_paths().len(), MAX_TOUCHED_PATHS);
    }

    #[test]
    fn duplicates_are_dropped_below_and_above_the_linear_scan() {
        let mut out = Collector::new(false);
        let n = LINEAR_DEDUP_PATHS * 3;
        // Every path twice, the repeat both right away and after all the others.
        for i in 0..n {
            out.leaf(&format!("/data/k{i}"));
            out.leaf(&format!("/data/k{i}"));
        }
        for i in 0..n {
            out.leaf(&format!("/data/k{i}"));
        }
        assert_eq!(out.leaves, 3 * n);
        let paths = out.into_paths();
        let expected: Vec<String> = (0..n).map(|i| format!("/data/k{i}")).collect();
        assert_eq!(paths, expected, "first occurrences, in order");
    }
}
