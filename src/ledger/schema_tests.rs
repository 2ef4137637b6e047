//! The documented schema, the examples and the `Entry` type agree.
//!
//! `docs/ledger.schema.json` is checked with a small validator for the keywords it uses
//! (an unknown keyword fails the test, so the schema cannot drift into unchecked
//! territory). Every example must validate, deserialize into [`Entry`] and serialize back
//! to the same JSON; entries built in code must validate too, so the schema describes what
//! pathgate actually writes.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::images::ImageRecord;
use super::testing;
use super::*;

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

fn schema() -> Value {
    let text = std::fs::read_to_string(docs().join("ledger.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Validates `value` against `schema`; returns every violation with its JSON pointer.
pub(crate) fn validate(
    root: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    errors: &mut Vec<String>,
) {
    let Some(keywords) = schema.as_object() else {
        errors.push(format!("{at}: schema is not an object"));
        return;
    };
    for (keyword, argument) in keywords {
        match keyword.as_str() {
            "$schema" | "$id" | "title" | "description" | "$defs" => {}
            "$ref" => {
                let pointer = argument.as_str().unwrap().trim_start_matches('#');
                let target = root
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {pointer}"));
                validate(root, target, value, at, errors);
            }
            "type" => {
                let allowed: Vec<&str> = match argument {
                    Value::String(one) => vec![one.as_str()],
                    Value::Array(many) => many.iter().map(|t| t.as_str().unwrap()).collect(),
                    _ => panic!("bad type keyword at {at}"),
                };
                let actual = match value {
                    Value::Null => "null",
                    Value::Bool(_) => "boolean",
                    Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
                    Value::Number(_) => "number",
                    Value::String(_) => "string",
                    Value::Array(_) => "array",
                    Value::Object(_) => "object",
                };
                let ok = allowed.contains(&actual)
                    || (actual == "integer" && allowed.contains(&"number"));
                if !ok {
                    errors.push(format!("{at}: {actual} is not {allowed:?}"));
                }
            }
            "const" => {
                if value != argument {
                    errors.push(format!("{at}: {value} is not {argument}"));
                }
            }
            "enum" => {
                if !argument.as_array().unwrap().contains(value) {
                    errors.push(format!("{at}: {value} not in {argument}"));
                }
            }
            "minimum" => {
                if let (Some(actual), Some(minimum)) = (value.as_f64(), argument.as_f64()) {
                    if actual < minimum {
                        errors.push(format!("{at}: {actual} < {minimum}"));
                    }
                }
            }
            "format" => {
                assert_eq!(argument, "date-time", "only date-time is checked");
                if let Some(text) = value.as_str() {
                    if time::OffsetDateTime::parse(
                        text,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .is_err()
                    {
                        errors.push(format!("{at}: {text} is not RFC 3339"));
                    }
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in argument.as_array().unwrap() {
                        if !object.contains_key(name.as_str().unwrap()) {
                            errors.push(format!("{at}: missing required {name}"));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(object) = value.as_object() {
                    for (name, child) in object {
                        if let Some(child_schema) = argument.get(name) {
                            validate(root, child_schema, child, &format!("{at}/{name}"), errors);
                        }
                    }
                }
            }
            "additionalProperties" => {
                assert_eq!(argument, &Value::Bool(false), "only false is supported");
                if let Some(object) = value.as_object() {
                    let known = keywords.get("properties").and_then(Value::as_object);
                    for name in object.keys() {
                        if !known.is_some_and(|known| known.contains_key(name)) {
                            errors.push(format!("{at}: unknown property {name}"));
                        }
                    }
                }
            }
            "items" => {
                if let Some(items) = value.as_array() {
                    for (index, item) in items.iter().enumerate() {
                        validate(root, argument, item, &format!("{at}/{index}"), errors);
                    }
                }
            }
            "oneOf" => {
                let matching = argument
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|branch| {
                        let mut branch_errors = Vec::new();
                        validate(root, branch, value, at, &mut branch_errors);
                        branch_errors.is_empty()
                    })
                    .count();
                if matching != 1 {
                    errors.push(format!("{at}: {matching} oneOf branches match {value}"));
                }
            }
            other => panic!("schema keyword {other:?} at {at} is not checked by this test"),
        }
    }
}

fn violations(value: &Value) -> Vec<String> {
    let schema = schema();
    let mut errors = Vec::new();
    validate(&schema, &schema, value, "", &mut errors);
    errors
}

fn examples() -> Vec<(String, Value)> {
    let mut examples = Vec::new();
    for item in std::fs::read_dir(docs().join("examples")).unwrap() {
        let path = item.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.starts_with("ledger-") && name.ends_with(".json") {
            let text = std::fs::read_to_string(&path).unwrap();
            examples.push((name, serde_json::from_str(&text).unwrap()));
        }
    }
    examples.sort_by(|a, b| a.0.cmp(&b.0));
    examples
}

#[test]
fn every_example_validates_and_round_trips_through_entry() {
    let examples = examples();
    assert!(examples.len() >= 6, "examples missing: {}", examples.len());
    for (name, value) in examples {
        let errors = violations(&value);
        assert!(errors.is_empty(), "{name} violates the schema: {errors:#?}");
        let entry: Entry = serde_json::from_value(value.clone())
            .unwrap_or_else(|error| panic!("{name} is not an Entry: {error}"));
        let back = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            back, value,
            "{name} does not round-trip (a field unknown to Entry, or not canonical)"
        );
    }
}

#[test]
fn entries_built_in_code_validate() {
    let mut entry = testing::mutation("4bf92f3577b34da6a3ce929d0e0e4736");
    entry.analysis = Some(AnalysisRecord {
        patch_type: Some("strategic-merge-patch".into()),
        touched_paths: vec!["/spec/replicas".into()],
        effect_paths: Some(vec!["/spec/replicas".into()]),
        whole_object: None,
        body_format: "json".into(),
        opaque_reason: None,
        object_name: Some("web".into()),
    });
    entry.fingerprint = Some("0f".repeat(32));
    entry.target = Some(TargetRecord {
        found: true,
        controller: Some(OwnerRecord {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-5d9c7".into(),
        }),
        resource_version: Some("41".into()),
        uid: Some("u-0".into()),
        pre_image: Some(ImageRecord::Stored {
            digest: format!("sha256:{}", "c3".repeat(32)),
            bytes: 812,
            encrypted: false,
        }),
    });
    entry.decision.as_mut().unwrap().rewrites = vec![
        RewriteRecord::AddDryRun,
        RewriteRecord::SetGracePeriod { from: None, to: 1 },
        RewriteRecord::AddLimit { limit: 500 },
    ];
    entry.post_image = Some(ImageRecord::Withheld {
        reason: crate::ledger::images::Withheld::Secret,
    });
    entry.object = Some(ObjectRecord {
        name: Some("web".into()),
        namespace: Some("shop".into()),
        uid: Some("u".into()),
        resource_version: Some("1".into()),
        generation: Some(2),
    });
    entry.error = Some(ErrorRecord {
        side: Side::Client,
        kind: ErrorKind::TooLarge,
        message: "body over 3 MiB".into(),
    });
    entry.watch_events = Some(3);
    entry.ledger_dropped = Some(2);
    entry.body = Some(capture_body(
        "configmaps",
        Some("application/json"),
        b"{\"a\":1}",
        100,
    ));
    for entry in [entry.clone(), testing::read("r"), {
        let mut intent = entry;
        intent.phase = Phase::Intent;
        intent.ended_at = None;
        intent.duration_ms = None;
        intent.response = None;
        intent
    }] {
        let value = serde_json::to_value(&entry).unwrap();
        let errors = violations(&value);
        assert!(errors.is_empty(), "{errors:#?}\n{value:#}");
        let back: Entry = serde_json::from_value(value).unwrap();
        assert_eq!(back, entry);
    }
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    let (_, mut value) = examples().remove(0);
    value["surprise"] = Value::Bool(true);
    value["request"]["verb"] = "destroy".into();
    value["started_at"] = "yesterday".into();
    value.as_object_mut().unwrap().remove("trace_id");
    let errors = violations(&value).join("\n");
    for expected in [
        "unknown property surprise",
        "destroy",
        "yesterday",
        "missing required \"trace_id\"",
    ] {
        assert!(
            errors.contains(expected),
            "{expected} not reported in:\n{errors}"
        );
    }
}

#[test]
fn every_schema_property_is_documented_in_ledger_md() {
    let manual = std::fs::read_to_string(docs().join("ledger.md")).unwrap();
    let schema = schema();
    let mut names: Vec<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for definition in schema["$defs"].as_object().unwrap().values() {
        if let Some(properties) = definition.get("properties").and_then(Value::as_object) {
            names.extend(properties.keys().cloned());
        }
    }
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| {
            !manual.contains(&format!("`{name}`")) && !manual.contains(&format!(".{name}`"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "fields not documented in docs/ledger.md: {missing:?}"
    );
}
