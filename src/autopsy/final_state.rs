//! The final state of a run, established independently of its path: given by the caller,
//! the exit code of a command, or declarative checks against the cluster.
//!
//! Owns the check file model, the evaluation of a check against what the cluster
//! returned (pure), and the result types. Fetching objects is [`super::checks`]'s.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::jsonpath::{JsonPath, JsonPathError};

/// The final state as the verdict reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum FinalState {
    /// No final-state source was given: the verdict judges the path only and counts the
    /// final state as right.
    Unchecked,
    /// `--final-state pass|fail`.
    Given { passed: bool },
    /// `--verify CMD`: exit code 0 is a pass.
    Command {
        command: String,
        /// `None` when the command was killed by a signal or could not start.
        exit_code: Option<i32>,
        passed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// `--checks FILE`: every check must hold.
    Checks {
        file: PathBuf,
        passed: bool,
        results: Vec<CheckResult>,
    },
}

impl FinalState {
    /// Whether the final state is wrong (a run with this state is a `fail`).
    pub fn failed(&self) -> bool {
        match self {
            FinalState::Unchecked => false,
            FinalState::Given { passed }
            | FinalState::Command { passed, .. }
            | FinalState::Checks { passed, .. } => !passed,
        }
    }
}

/// A check file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChecksError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: PathBuf, reason: String },
    #[error("{file}: {key}: {reason}")]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

/// The checks file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecksFile {
    checks: Vec<CheckFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFile {
    /// What the check asserts, in words (reports show it); defaults to the object.
    description: Option<String>,
    /// `v1`, `apps/v1`...
    api_version: String,
    /// Plural resource name (`deployments`).
    resource: String,
    #[serde(default)]
    namespace: String,
    name: String,
    expect: Option<Expectation>,
    jsonpath: Option<String>,
    equals: Option<String>,
}

/// What a check expects of its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expectation {
    /// The object exists (and is not being deleted).
    Exists,
    /// The object does not exist.
    Absent,
    /// The object exists with a `metadata.deletionTimestamp`.
    Deleting,
}

/// One declarative check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    /// The object's apiserver path.
    pub path: String,
    pub expectation: Expectation,
    /// With `Exists`: the value the JSONPath must print.
    pub jsonpath: Option<(JsonPath, String)>,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub path: String,
    pub passed: bool,
    /// What was expected, in words (`exists`, `{.spec.replicas} == 3`).
    pub expected: String,
    /// What was found (`absent`, `exists`, `deleting`, the JSONPath's value, an error).
    pub found: String,
}

/// What the cluster answered for a check's object.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Present(serde_json::Value),
    Absent,
    /// Anything else (an error status, unreachable): the check fails with this text.
    Error(String),
}

impl Check {
    /// Evaluates the check against what the cluster answered.
    pub fn evaluate(&self, observed: &Observed) -> CheckResult {
        let expected = match (&self.expectation, &self.jsonpath) {
            (_, Some((path, value))) => format!("{} == {value}", path.as_str()),
            (Expectation::Exists, None) => "exists".to_string(),
            (Expectation::Absent, None) => "absent".to_string(),
            (Expectation::Deleting, None) => "has a deletionTimestamp".to_string(),
        };
        let (passed, found) = match observed {
            Observed::Error(error) => (false, error.clone()),
            Observed::Absent => (
                self.expectation == Expectation::Absent,
                "absent".to_string(),
            ),
            Observed::Present(object) => {
                let deleting = object.pointer("/metadata/deletionTimestamp").is_some();
                let state = if deleting { "deleting" } else { "exists" };
                match (&self.expectation, &self.jsonpath) {
                    (Expectation::Absent, _) => (false, state.to_string()),
                    (Expectation::Deleting, _) => (deleting, state.to_string()),
                    (Expectation::Exists, None) => (!deleting, state.to_string()),
                    (Expectation::Exists, Some((path, value))) => match path.evaluate(object) {
                        Some(text) => (&text == value, text),
                        None => (false, format!("{} not found", path.as_str())),
                    },
                }
            }
        };
        CheckResult {
            name: self.name.clone(),
            path: self.path.clone(),
            passed,
            expected,
            found,
        }
    }
}

/// Reads a checks file (YAML or JSON).
pub fn load_checks(file: &Path) -> Result<Vec<Check>, ChecksError> {
    let text = std::fs::read_to_string(file).map_err(|e| ChecksError::Read {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse_checks(&text, file)
}

/// Parses checks text; `file` names it in errors.
pub fn parse_checks(text: &str, file: &Path) -> Result<Vec<Check>, ChecksError> {
    let invalid = |key: String, reason: String| ChecksError::Invalid {
        file: file.to_path_buf(),
        key,
        reason,
    };
    let raw: ChecksFile = serde_yaml::from_str(text).map_err(|error| {
        let (key, reason) = super::policy::split_serde_message(&error.to_string());
        invalid(key, reason)
    })?;
    if raw.checks.is_empty() {
        return Err(invalid(
            "checks".into(),
            "no checks: a final state nothing asserts is not checked".into(),
        ));
    }
    raw.checks
        .into_iter()
        .enumerate()
        .map(|(index, check)| {
            check_of(check)
                .map_err(|(key, reason)| invalid(format!("checks[{index}].{key}"), reason))
        })
        .collect()
}

fn check_of(file: CheckFile) -> Result<Check, (&'static str, String)> {
    let path = object_path(
        &file.api_version,
        &file.resource,
        &file.namespace,
        &file.name,
    )?;
    let jsonpath = match (file.jsonpath, file.equals) {
        (Some(path), Some(value)) => Some((
            JsonPath::parse(&path).map_err(|e: JsonPathError| ("jsonpath", e.to_string()))?,
            value,
        )),
        (None, None) => None,
        (Some(_), None) => return Err(("equals", "jsonpath needs the value it must equal".into())),
        (None, Some(_)) => return Err(("jsonpath", "equals needs a jsonpath".into())),
    };
    let expectation = match (file.expect, &jsonpath) {
        (Some(Expectation::Exists) | None, Some(_)) => Expectation::Exists,
        (Some(other), Some(_)) => {
            return Err((
                "expect",
                format!("{other:?} cannot be combined with jsonpath (the object must exist)")
                    .to_lowercase(),
            ))
        }
        (Some(expectation), None) => expectation,
        (None, None) => {
            return Err((
                "expect",
                "give expect (exists, absent, deleting) or jsonpath + equals".into(),
            ))
        }
    };
    let description = file
        .description
        .unwrap_or_else(|| format!("{}/{}", file.resource, file.name));
    Ok(Check {
        name: description,
        path,
        expectation,
        jsonpath,
    })
}

/// The apiserver path of a named object: `/api/v1/...` for the core group, `/apis/<group>/<version>/...`
/// otherwise.
fn object_path(
    api_version: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<String, (&'static str, String)> {
    let segment_ok = |text: &str| !text.is_empty() && !text.contains(['/', '?', '#', '%']);
    let prefix = match api_version.split_once('/') {
        None if segment_ok(api_version) => format!("/api/{api_version}"),
        Some((group, version)) if segment_ok(group) && segment_ok(version) => {
            format!("/apis/{group}/{version}")
        }
        _ => {
            return Err((
                "api_version",
                format!("{api_version:?} is not v1 or group/version"),
            ))
        }
    };
    if !segment_ok(resource) {
        return Err((
            "resource",
            format!("{resource:?} is not a plural resource name"),
        ));
    }
    if !segment_ok(name) {
        return Err(("name", format!("{name:?} is not an object name")));
    }
    if namespace.is_empty() {
        return Ok(format!("{prefix}/{resource}/{name}"));
    }
    if !segment_ok(namespace) {
        return Err(("namespace", format!("{namespace:?} is not a namespace")));
    }
    Ok(format!("{prefix}/namespaces/{namespace}/{resource}/{name}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Result<Vec<Check>, ChecksError> {
        parse_checks(text, Path::new("checks.yaml"))
    }

    #[test]
    fn checks_build_core_and_group_paths() {
        let checks = parse(
            "checks:\n- {api_version: apps/v1, resource: deployments, namespace: shop, name: web, jsonpath: '{.spec.replicas}', equals: '3'}\n- {api_version: v1, resource: namespaces, name: shop, expect: exists, description: the namespace stays}\n",
        )
        .unwrap();
        assert_eq!(
            checks[0].path,
            "/apis/apps/v1/namespaces/shop/deployments/web"
        );
        assert_eq!(checks[0].name, "deployments/web");
        assert_eq!(checks[0].expectation, Expectation::Exists);
        assert_eq!(checks[1].path, "/api/v1/namespaces/shop");
        assert_eq!(checks[1].name, "the namespace stays");
    }

    #[test]
    fn bad_checks_name_the_key_and_the_reason() {
        let cases = [
            ("checks: []\n", "checks", "no checks"),
            ("checks:\n- {api_version: v1, resource: pods, name: p}\n", "checks[0].expect", "give expect"),
            ("checks:\n- {api_version: v1, resource: pods, name: p, jsonpath: '{.a}'}\n", "checks[0].equals", "needs the value"),
            ("checks:\n- {api_version: v1, resource: pods, name: p, expect: absent, jsonpath: '{.a}', equals: x}\n", "checks[0].expect", "cannot be combined"),
            ("checks:\n- {api_version: a/b/c, resource: pods, name: p, expect: absent}\n", "checks[0].api_version", "group/version"),
            ("checks:\n- {api_version: v1, resource: pods, name: 'a/b', expect: absent}\n", "checks[0].name", "not an object name"),
            ("checks:\n- {api_version: v1, resource: pods, name: p, expect: gone}\n", "checks[0].expect", "unknown variant"),
            ("checks:\n- {api_version: v1, resource: pods, nam: p}\n", "checks[0]", "unknown field `nam`"),
        ];
        for (text, key, reason) in cases {
            match parse(text) {
                Err(ChecksError::Invalid {
                    file,
                    key: got,
                    reason: why,
                }) => {
                    assert_eq!(file, Path::new("checks.yaml"));
                    assert_eq!(got, key, "{text}");
                    assert!(why.contains(reason), "{text}: {why}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn evaluation_reports_what_was_found() {
        let check = |text: &str| parse(text).unwrap().remove(0);
        let exists = check(
            "checks:\n- {api_version: v1, resource: pods, namespace: s, name: p, expect: exists}\n",
        );
        let absent = check(
            "checks:\n- {api_version: v1, resource: pods, namespace: s, name: p, expect: absent}\n",
        );
        let deleting = check("checks:\n- {api_version: v1, resource: pods, namespace: s, name: p, expect: deleting}\n");
        let replicas = check("checks:\n- {api_version: apps/v1, resource: deployments, namespace: s, name: w, jsonpath: '{.spec.replicas}', equals: '3'}\n");
        let live = Observed::Present(json!({"metadata": {"name": "p"}, "spec": {"replicas": 3}}));
        let going =
            Observed::Present(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        let cases = [
            (&exists, &live, true, "exists"),
            (&exists, &Observed::Absent, false, "absent"),
            (&exists, &going, false, "deleting"),
            (&absent, &Observed::Absent, true, "absent"),
            (&absent, &live, false, "exists"),
            (&deleting, &going, true, "deleting"),
            (&deleting, &live, false, "exists"),
            (&replicas, &live, true, "3"),
            (
                &replicas,
                &Observed::Present(json!({"spec": {"replicas": 2}})),
                false,
                "2",
            ),
            (
                &replicas,
                &Observed::Present(json!({"spec": {}})),
                false,
                "{.spec.replicas} not found",
            ),
            (
                &replicas,
                &Observed::Error("403 Forbidden".into()),
                false,
                "403 Forbidden",
            ),
        ];
        for (check, observed, passed, found) in cases {
            let result = check.evaluate(observed);
            assert_eq!(
                (result.passed, result.found.as_str()),
                (passed, found),
                "{} on {observed:?}",
                result.expected
            );
        }
    }
}
