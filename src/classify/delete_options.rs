//! DeleteOptions as the apiserver reads them for a DELETE (and a deletecollection).
//!
//! The apiserver does **not** merge the query and the body: when the request has a non-empty
//! body, DeleteOptions are decoded from the body alone and every DeleteOptions query parameter
//! is ignored; only a body-less DELETE reads them from the query
//! (`k8s.io/apiserver/pkg/endpoints/handlers/delete.go`). kubectl always sends a body
//! (`{"propagationPolicy":"Background"}` at least), so a proxy that adds `?dryRun=All` or
//! `?gracePeriodSeconds=30` to a kubectl DELETE changes nothing: a rewrite must edit the body.
//! [`DeleteOptions::query_ignored`] says when a request carries such ignored parameters.
//!
//! Body fields are typed as Go decodes them (case-sensitive names; `gracePeriodSeconds` an
//! integer, `orphanDependents` a boolean, ...; `null` is absent); a body whose `kind` is not
//! `DeleteOptions`, or whose fields have the wrong types, is refused by the apiserver and
//! reported here as undecodable (opaque), never as defaults.

use super::object::DeleteOptions;
use super::query::{dry_run_values, go_bool, Query};
use super::tree::Node;

/// The query parameters the apiserver reads into DeleteOptions.
const QUERY_PARAMETERS: [&str; 5] = [
    "gracePeriodSeconds",
    "propagationPolicy",
    "orphanDependents",
    "dryRun",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
];

/// Whether the query carries any DeleteOptions parameter.
pub(crate) fn query_has_options(query: &Query) -> bool {
    QUERY_PARAMETERS.iter().any(|key| query.has(key))
}

/// DeleteOptions of a body-less DELETE, from its query.
pub(crate) fn from_query(query: &Query) -> Result<DeleteOptions, String> {
    let mut options = DeleteOptions {
        source: if query_has_options(query) {
            "query"
        } else {
            "none"
        },
        ..DeleteOptions::default()
    };
    if let Some(value) = query.first("gracePeriodSeconds") {
        options.grace_period_seconds = Some(value.parse::<i64>().map_err(|_| {
            format!(
                "query gracePeriodSeconds={value:?} is not an integer (the apiserver answers 400)"
            )
        })?);
    }
    options.propagation_policy = query.first("propagationPolicy").map(str::to_owned);
    options.orphan_dependents = query.first("orphanDependents").map(go_bool);
    options.ignore_store_read_error_with_cluster_breaking_potential = query
        .first("ignoreStoreReadErrorWithClusterBreakingPotential")
        .map(go_bool);
    options.dry_run = dry_run_values(query.all("dryRun"));
    Ok(options)
}

/// DeleteOptions from a decoded JSON (or YAML) body.
pub(crate) fn from_json(object: &Node<'_>) -> Result<DeleteOptions, String> {
    if !object.is_object() {
        return Err("the DeleteOptions body is not a JSON object".to_owned());
    }
    if let Some(kind) = object.get("kind") {
        match kind {
            Node::Null => {}
            Node::String(k) if k.is_empty() || k == "DeleteOptions" => {}
            Node::String(k) => return Err(format!("the body is a {k:?}, not DeleteOptions")),
            _ => return Err("the body's kind is not a string".to_owned()),
        }
    }
    let mut options = DeleteOptions {
        source: "body",
        ..DeleteOptions::default()
    };
    options.grace_period_seconds = typed(
        object.get("gracePeriodSeconds"),
        "gracePeriodSeconds",
        |v| v.as_i64(),
    )?;
    options.orphan_dependents = typed(
        object.get("orphanDependents"),
        "orphanDependents",
        Node::as_bool,
    )?;
    options.propagation_policy =
        typed(object.get("propagationPolicy"), "propagationPolicy", |v| {
            v.as_str().map(str::to_owned)
        })?;
    options.ignore_store_read_error_with_cluster_breaking_potential = typed(
        object.get("ignoreStoreReadErrorWithClusterBreakingPotential"),
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        Node::as_bool,
    )?;
    if let Some(preconditions) = object.get("preconditions").filter(|v| !v.is_null()) {
        if !preconditions.is_object() {
            return Err("preconditions is not an object".to_owned());
        }
        options.precondition_uid = typed(preconditions.get("uid"), "preconditions.uid", |v| {
            v.as_str().map(str::to_owned)
        })?;
        options.precondition_resource_version = typed(
            preconditions.get("resourceVersion"),
            "preconditions.resourceVersion",
            |v| v.as_str().map(str::to_owned),
        )?;
    }
    if let Some(dry_run) = object.get("dryRun").filter(|v| !v.is_null()) {
        let values = dry_run.as_array().ok_or("dryRun is not a list")?;
        let values = values
            .iter()
            .map(|v| v.as_str().ok_or("dryRun holds a non-string"))
            .collect::<Result<Vec<_>, _>>()?;
        options.dry_run = dry_run_values(values.into_iter());
    }
    Ok(options)
}

/// A field that is absent or `null` (None), or of the expected type.
fn typed<'n, 'a: 'n, T>(
    value: Option<&'n Node<'a>>,
    name: &str,
    read: impl Fn(&'n Node<'a>) -> Option<T>,
) -> Result<Option<T>, String> {
    match value {
        None | Some(Node::Null) => Ok(None),
        Some(v) => read(v)
            .map(Some)
            .ok_or_else(|| format!("{name} has the wrong type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tree;
    use serde_json::{json, Value};

    fn from_json(value: &Value) -> Result<DeleteOptions, String> {
        let body = value.to_string();
        super::from_json(&tree::from_json(body.as_bytes()).unwrap())
    }

    #[test]
    fn query_options() {
        let q = Query::parse(Some(
            "gracePeriodSeconds=0&propagationPolicy=Foreground&dryRun=All&orphanDependents=",
        ))
        .unwrap();
        let o = from_query(&q).unwrap();
        assert_eq!(o.grace_period_seconds, Some(0));
        assert_eq!(o.propagation_policy.as_deref(), Some("Foreground"));
        assert_eq!(o.orphan_dependents, Some(true), "empty is true, as in Go");
        assert!(o.dry_run);
        assert_eq!(o.source, "query");

        let o = from_query(&Query::parse(None).unwrap()).unwrap();
        assert_eq!(
            (o.source, o.grace_period_seconds, o.dry_run),
            ("none", None, false)
        );

        assert!(from_query(&Query::parse(Some("gracePeriodSeconds=soon")).unwrap()).is_err());
    }

    #[test]
    fn body_options_are_typed_like_go() {
        let o = from_json(&json!({
            "kind": "DeleteOptions", "apiVersion": "v1",
            "gracePeriodSeconds": 0, "propagationPolicy": "Background",
            "preconditions": {"uid": "u-1", "resourceVersion": null},
            "dryRun": ["All"], "unknownField": 1
        }))
        .unwrap();
        assert_eq!(o.grace_period_seconds, Some(0));
        assert_eq!(o.propagation_policy.as_deref(), Some("Background"));
        assert_eq!(o.precondition_uid.as_deref(), Some("u-1"));
        assert_eq!(o.precondition_resource_version, None);
        assert!(o.dry_run);
        assert_eq!(o.source, "body");

        let o = from_json(&json!({"gracePeriodSeconds": null, "GracePeriodSeconds": 0})).unwrap();
        assert_eq!(
            o.grace_period_seconds, None,
            "field names are case-sensitive"
        );

        for bad in [
            json!([]),
            json!({"kind": "Pod"}),
            json!({"gracePeriodSeconds": "0"}),
            json!({"gracePeriodSeconds": 1.5}),
            json!({"gracePeriodSeconds": 1e3}),
            json!({"orphanDependents": "true"}),
            json!({"dryRun": "All"}),
            json!({"dryRun": [1]}),
            json!({"preconditions": "x"}),
        ] {
            assert!(from_json(&bad).is_err(), "{bad}");
        }
    }
}
