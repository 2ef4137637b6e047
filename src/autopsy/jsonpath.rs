//! The JSONPath subset of final-state checks: a field path with list indexes, as kubectl
//! writes it (`{.spec.replicas}`, `{.status.conditions[0].type}`,
//! `{.metadata.labels['app\.kubernetes\.io/name']}` is written `['app.kubernetes.io/name']`).
//! Filters, wildcards and ranges are refused at parse time, never half-evaluated.

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

/// Why a path cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPathError {
    #[error("{0:?}: expected a path like {{.spec.replicas}} or {{.items[0].metadata.name}}")]
    Syntax(String),
    #[error("{0:?}: filters, wildcards and ranges are not supported; name one field")]
    Unsupported(String),
}

impl JsonPath {
    /// Parses `{.a.b[0]}` (the braces are optional).
    pub fn parse(text: &str) -> Result<JsonPath, JsonPathError> {
        let syntax = || JsonPathError::Syntax(text.to_string());
        let inner = text.trim();
        let inner = inner
            .strip_prefix('{')
            .map(|rest| rest.strip_suffix('}').ok_or_else(syntax))
            .unwrap_or(Ok(inner))?;
        if inner.contains(['*', '?', '@', ':']) || inner.contains("..") {
            return Err(JsonPathError::Unsupported(text.to_string()));
        }
        let mut steps = Vec::new();
        let mut rest = inner.strip_prefix('$').unwrap_or(inner);
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                if end == 0 {
                    return Err(syntax());
                }
                steps.push(Step::Field(after[..end].to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or_else(syntax)?;
                let key = &after[..end];
                let quoted = key
                    .strip_prefix('\'')
                    .and_then(|k| k.strip_suffix('\''))
                    .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')));
                steps.push(match quoted {
                    Some(field) => Step::Field(field.to_string()),
                    None => Step::Index(key.parse().map_err(|_| syntax())?),
                });
                rest = &after[end + 1..];
            } else {
                return Err(syntax());
            }
        }
        if steps.is_empty() {
            return Err(syntax());
        }
        Ok(JsonPath {
            text: text.trim().to_string(),
            steps,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at the path as kubectl's `-o jsonpath` prints it: a string without
    /// quotes, anything else as compact JSON. `None` when the path does not exist.
    pub fn evaluate(&self, object: &serde_json::Value) -> Option<String> {
        let mut value = object;
        for step in &self.steps {
            value = match step {
                Step::Field(field) => value.get(field.as_str())?,
                Step::Index(index) => value.get(*index)?,
            };
        }
        Some(match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_read_fields_indexes_and_quoted_keys() {
        let object = json!({
            "spec": {"replicas": 3, "paused": false},
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "status": {"conditions": [{"type": "Available"}, {"type": "Progressing"}]}
        });
        let cases = [
            ("{.spec.replicas}", Some("3")),
            (".spec.replicas", Some("3")),
            ("{$.spec.paused}", Some("false")),
            ("{.status.conditions[1].type}", Some("Progressing")),
            ("{.metadata.labels['app.kubernetes.io/name']}", Some("web")),
            (
                "{.metadata.labels[\"app.kubernetes.io/name\"]}",
                Some("web"),
            ),
            ("{.spec}", Some(r#"{"paused":false,"replicas":3}"#)),
            ("{.status.conditions[5].type}", None),
            ("{.spec.missing}", None),
        ];
        for (path, expected) in cases {
            let parsed = JsonPath::parse(path).unwrap();
            assert_eq!(parsed.evaluate(&object).as_deref(), expected, "{path}");
        }
    }

    #[test]
    fn unsupported_and_malformed_paths_are_refused() {
        for path in [
            "{.items[*].name}",
            "{.items[?(@.a)]}",
            "{..name}",
            "{.a[0:2]}",
        ] {
            assert!(
                matches!(JsonPath::parse(path), Err(JsonPathError::Unsupported(_))),
                "{path}"
            );
        }
        for path in ["", "{}", "{.spec", "spec", "{.a[x]}", "{.a[}", "{.a.}"] {
            assert!(
                matches!(JsonPath::parse(path), Err(JsonPathError::Syntax(_))),
                "{path}"
            );
        }
    }
}
