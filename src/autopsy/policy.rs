//! The run policy: what the wire cannot tell the autopsy about a run (which namespaces
//! the task was about, which objects must not be touched, which creates were expected).
//!
//! Owns the file model (YAML or JSON, unknown keys refused) and its validation into
//! [`RunPolicy`]. The object patterns and their globs are the gate's
//! ([`crate::policy::objects`]: the same model PG018 enforces). It does not own the judging
//! (see [`super::judge`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::objects::{glob_field, Glob, ObjectPattern, ObjectPatternFile};

/// A run policy file that cannot be used: the file, the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file cannot be read.
    #[error("{file}: cannot read: {reason}")]
    Read { file: PathBuf, reason: String },
    /// A key is unknown, mistyped or has a value that cannot be used.
    #[error("{file}: {key}: {reason}")]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

/// The run policy file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    in_scope_namespaces: Option<Vec<String>>,
    #[serde(default)]
    protected_objects: Vec<ObjectPatternFile>,
    /// `None` (absent): creates are not judged; `Some(empty)`: every create is unexpected.
    #[serde(default)]
    allowed_creates: Option<Vec<ObjectPatternFile>>,
    #[serde(default)]
    allowed_cluster_scoped_mutations: Vec<ClusterPatternFile>,
}

/// `{group, resource, name}` of a cluster-scoped object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterPatternFile {
    group: Option<String>,
    resource: Option<String>,
    name: Option<String>,
}

/// The validated run policy. The default judges no scope, protects nothing and does not
/// judge creates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunPolicy {
    /// `None`: every namespace is in scope.
    pub in_scope_namespaces: Option<Vec<Glob>>,
    pub protected_objects: Vec<ObjectPattern>,
    /// `None`: creates are not judged; `Some(list)`: a create not matched is
    /// `redundant_create`.
    pub allowed_creates: Option<Vec<ObjectPattern>>,
    /// Cluster-scoped objects the run may change (the namespace field is `""`).
    pub allowed_cluster_scoped_mutations: Vec<ObjectPattern>,
}

impl RunPolicy {
    /// Reads and validates a policy file (YAML, of which JSON is a subset).
    pub fn load(file: &Path) -> Result<RunPolicy, PolicyError> {
        let text = std::fs::read_to_string(file).map_err(|e| PolicyError::Read {
            file: file.to_path_buf(),
            reason: e.to_string(),
        })?;
        RunPolicy::parse(&text, file)
    }

    /// Parses and validates policy text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<RunPolicy, PolicyError> {
        let blank = text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        });
        let raw: PolicyFile = if blank {
            PolicyFile::default()
        } else {
            serde_yaml::from_str(text).map_err(|error| {
                let (key, reason) = split_serde_message(&error.to_string());
                PolicyError::Invalid {
                    file: file.to_path_buf(),
                    key,
                    reason,
                }
            })?
        };
        let invalid = |key: String, reason: &str| PolicyError::Invalid {
            file: file.to_path_buf(),
            key,
            reason: reason.to_string(),
        };
        let mut in_scope = None;
        if let Some(namespaces) = raw.in_scope_namespaces {
            let mut globs = Vec::new();
            for (index, namespace) in namespaces.into_iter().enumerate() {
                if namespace.is_empty() {
                    return Err(invalid(
                        format!("in_scope_namespaces[{index}]"),
                        "an empty namespace names nothing; cluster-scoped objects are allowed by allowed_cluster_scoped_mutations",
                    ));
                }
                globs.push(Glob::new(namespace));
            }
            in_scope = Some(globs);
        }
        let objects = |key: &str, list: Vec<ObjectPatternFile>| {
            list.into_iter()
                .enumerate()
                .map(|(index, pattern)| {
                    ObjectPattern::from_file(pattern)
                        .map_err(|r| invalid(format!("{key}[{index}]"), r))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let protected_objects = objects("protected_objects", raw.protected_objects)?;
        let allowed_creates = match raw.allowed_creates {
            Some(list) => Some(objects("allowed_creates", list)?),
            None => None,
        };
        let allowed_cluster_scoped_mutations = raw
            .allowed_cluster_scoped_mutations
            .into_iter()
            .enumerate()
            .map(|(index, pattern)| {
                cluster_pattern(pattern)
                    .map_err(|r| invalid(format!("allowed_cluster_scoped_mutations[{index}]"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RunPolicy {
            in_scope_namespaces: in_scope,
            protected_objects,
            allowed_creates,
            allowed_cluster_scoped_mutations,
        })
    }

    /// Whether a namespaced object's namespace is in scope.
    pub fn in_scope(&self, namespace: &str) -> bool {
        match &self.in_scope_namespaces {
            None => true,
            Some(globs) => globs.iter().any(|glob| glob.matches(namespace)),
        }
    }

    /// Whether the object matches a protected pattern.
    pub fn protected(&self, group: &str, resource: &str, namespace: &str, name: &str) -> bool {
        self.protected_objects
            .iter()
            .any(|p| p.matches(group, resource, namespace, name))
    }

    /// Whether a create of this object was expected: `None` when creates are not judged.
    pub fn create_allowed(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<bool> {
        let list = self.allowed_creates.as_ref()?;
        Some(
            list.iter()
                .any(|p| p.matches(group, resource, namespace, name)),
        )
    }

    /// Whether a mutation of this cluster-scoped object is allowed.
    pub fn cluster_scoped_allowed(&self, group: &str, resource: &str, name: &str) -> bool {
        self.allowed_cluster_scoped_mutations
            .iter()
            .any(|p| p.matches(group, resource, "", name))
    }
}

fn cluster_pattern(file: ClusterPatternFile) -> Result<ObjectPattern, &'static str> {
    if file.resource.is_none() {
        return Err("resource is required (e.g. clusterroles, nodes, customresourcedefinitions)");
    }
    Ok(ObjectPattern {
        group: glob_field(file.group, "group")?,
        resource: glob_field(file.resource, "resource")?,
        namespace: Glob::new(""),
        name: glob_field(file.name, "name")?,
    })
}

/// serde_yaml says `protected_objects[0]: unknown field `nam`, expected one of ...` or
/// `in_scope_namespaces: invalid type: ... at line 2 column 3`: the key path before the
/// first `: `, the reason after it, without the position (the key says where).
pub(super) fn split_serde_message(message: &str) -> (String, String) {
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    };
    match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(char::is_whitespace) => {
            (path.to_string(), rest.to_string())
        }
        _ => ("(document)".to_string(), message.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RunPolicy, PolicyError> {
        RunPolicy::parse(text, Path::new("run.yaml"))
    }

    #[test]
    fn globs_match_whole_values() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("web", "web", true),
            ("web", "web-1", false),
            ("web-*", "web-1", true),
            ("web-*", "web-", true),
            ("*-db", "shop-db", true),
            ("*-db", "shop-db-2", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("?", "x", true),
            ("?", "", false),
            ("kube-*", "kube-system", true),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, value, expected) in cases {
            assert_eq!(
                Glob::new(pattern).matches(value),
                expected,
                "{pattern} ~ {value}"
            );
        }
    }

    #[test]
    fn absent_allowed_creates_judges_nothing_and_empty_judges_everything() {
        let absent = parse("in_scope_namespaces: [shop]\n").unwrap();
        assert_eq!(absent.create_allowed("", "configmaps", "shop", "x"), None);
        let empty = parse("allowed_creates: []\n").unwrap();
        assert_eq!(
            empty.create_allowed("", "configmaps", "shop", "x"),
            Some(false)
        );
        let listed =
            parse("allowed_creates:\n- {resource: configmaps, namespace: shop, name: 'cfg-*'}\n")
                .unwrap();
        assert_eq!(
            listed.create_allowed("", "configmaps", "shop", "cfg-1"),
            Some(true)
        );
        assert_eq!(
            listed.create_allowed("", "configmaps", "shop", "other"),
            Some(false)
        );
        assert_eq!(
            listed.create_allowed("", "secrets", "shop", "cfg-1"),
            Some(false)
        );
    }

    #[test]
    fn json_is_accepted_and_scope_uses_globs() {
        let policy = parse(r#"{"in_scope_namespaces": ["shop", "team-*"], "protected_objects": [{"group": "apps", "resource": "deployments", "namespace": "shop", "name": "db"}]}"#).unwrap();
        assert!(policy.in_scope("shop"));
        assert!(policy.in_scope("team-a"));
        assert!(!policy.in_scope("kube-system"));
        assert!(policy.protected("apps", "deployments", "shop", "db"));
        assert!(
            policy.protected("apps", "deployments", "shop", "*"),
            "a collection delete may remove it"
        );
        assert!(!policy.protected("", "configmaps", "shop", "db"));
        assert!(RunPolicy::default().in_scope("anything"));
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_reason() {
        let cases = [
            (
                "protected_objects:\n- {nam: x}\n",
                "protected_objects[0]",
                "unknown field `nam`",
            ),
            (
                "allowed_create: []\n",
                "(document)",
                "unknown field `allowed_create`",
            ),
            (
                "in_scope_namespaces: shop\n",
                "in_scope_namespaces",
                "invalid type",
            ),
            (
                "in_scope_namespaces: ['']\n",
                "in_scope_namespaces[0]",
                "empty namespace",
            ),
            (
                "protected_objects:\n- {}\n",
                "protected_objects[0]",
                "at least one",
            ),
            (
                "allowed_creates:\n- {resource: pods/log}\n",
                "allowed_creates[0]",
                "subresource",
            ),
            (
                "allowed_cluster_scoped_mutations:\n- {name: x}\n",
                "allowed_cluster_scoped_mutations[0]",
                "resource is required",
            ),
        ];
        for (text, key, reason) in cases {
            match parse(text) {
                Err(PolicyError::Invalid {
                    file,
                    key: got_key,
                    reason: got_reason,
                }) => {
                    assert_eq!(file, Path::new("run.yaml"));
                    assert_eq!(got_key, key, "{text}");
                    assert!(got_reason.contains(reason), "{text}: {got_reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_empty_file_is_the_default_policy() {
        assert_eq!(parse("# nothing\n---\n").unwrap(), RunPolicy::default());
    }

    #[test]
    fn cluster_scoped_allowances_match_group_resource_and_name() {
        let policy = parse("allowed_cluster_scoped_mutations:\n- {group: rbac.authorization.k8s.io, resource: clusterroles, name: 'agent-*'}\n").unwrap();
        assert!(policy.cluster_scoped_allowed(
            "rbac.authorization.k8s.io",
            "clusterroles",
            "agent-x"
        ));
        assert!(!policy.cluster_scoped_allowed(
            "rbac.authorization.k8s.io",
            "clusterroles",
            "admin"
        ));
        assert!(!policy.cluster_scoped_allowed("", "nodes", "agent-x"));
    }
}
