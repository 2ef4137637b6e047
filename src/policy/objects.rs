//! Object patterns: `{group, resource, namespace, name}` with globs, the one vocabulary for
//! "this object must not be touched".
//!
//! Shared by the gate (`protected_objects` in serve's configuration, rule PG018) and the
//! autopsy's run policy (`protected_objects`, `allowed_creates`,
//! `allowed_cluster_scoped_mutations`), so what the autopsy judges and what the gate
//! enforces are one model. Owns the glob, the pattern, its file form and the checks every
//! pattern passes; each caller adds its own keys and errors (file, key, reason).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A glob over one identity field: `*` matches any run of characters, `?` one character,
/// everything else itself. An absent field in a file is `*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Glob(String);

impl Glob {
    /// The glob that matches every value.
    pub fn any() -> Glob {
        Glob("*".into())
    }

    /// A glob from its text.
    pub fn new(pattern: impl Into<String>) -> Glob {
        Glob(pattern.into())
    }

    /// Whether `value` matches the whole pattern.
    pub fn matches(&self, value: &str) -> bool {
        glob_match(self.0.as_bytes(), value.as_bytes())
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for Glob {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Iterative glob matching with one backtrack point (the last `*`): linear in practice,
/// never exponential, no recursion (a hostile pattern cannot blow the stack).
pub(crate) fn glob_match(pattern: &[u8], value: &[u8]) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, v));
                p += 1;
            }
            Some(&c) if c == b'?' || c == value[v] => {
                p += 1;
                v += 1;
            }
            _ => match star {
                Some((star_p, star_v)) => {
                    p = star_p + 1;
                    v = star_v + 1;
                    star = Some((star_p, star_v + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// An object identity pattern: API group (`""` is the core group), resource (plural),
/// namespace (`""` for cluster-scoped objects) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectPattern {
    pub group: Glob,
    pub resource: Glob,
    pub namespace: Glob,
    pub name: Glob,
}

impl ObjectPattern {
    /// Whether the object `(group, resource, namespace, name)` matches. A `name` of `*`
    /// (a collection DELETE) matches every name pattern: it may have removed the object.
    pub fn matches(&self, group: &str, resource: &str, namespace: &str, name: &str) -> bool {
        let name = (name != "*").then_some(name);
        self.could_match(group, resource, Some(namespace), name)
    }

    /// Whether a request on `(group, resource, namespace, name)` could touch a matching
    /// object, where `None` is a field the request leaves open (a collection's names, the
    /// namespaces of a collection request without one): an open field matches every glob.
    pub fn could_match(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        self.group.matches(group)
            && self.resource.matches(resource)
            && namespace.is_none_or(|ns| self.namespace.matches(ns))
            && name.is_none_or(|n| self.name.matches(n))
    }

    /// Validates a pattern as written: at least one field, no `/` in any field.
    pub fn from_file(file: ObjectPatternFile) -> Result<ObjectPattern, &'static str> {
        if file.group.is_none()
            && file.resource.is_none()
            && file.namespace.is_none()
            && file.name.is_none()
        {
            return Err("a pattern needs at least one of group, resource, namespace, name (an empty pattern would match every object)");
        }
        Ok(ObjectPattern {
            group: glob_field(file.group, "group")?,
            resource: glob_field(file.resource, "resource")?,
            namespace: glob_field(file.namespace, "namespace")?,
            name: glob_field(file.name, "name")?,
        })
    }

    /// The pattern as a file entry, every field explicit; it validates back to itself.
    pub fn to_file(&self) -> ObjectPatternFile {
        let field = |glob: &Glob| Some(glob.as_str().to_string());
        ObjectPatternFile {
            group: field(&self.group),
            resource: field(&self.resource),
            namespace: field(&self.namespace),
            name: field(&self.name),
        }
    }
}

/// `{group: "", resource: configmaps, namespace: shop, name: app-*}`, as messages show it.
impl fmt::Display for ObjectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |glob: &Glob| match glob.as_str() {
            "" => "\"\"".to_string(),
            text => text.to_string(),
        };
        write!(
            f,
            "{{group: {}, resource: {}, namespace: {}, name: {}}}",
            show(&self.group),
            show(&self.resource),
            show(&self.namespace),
            show(&self.name)
        )
    }
}

/// `{group, resource, namespace, name}` as written; an absent key matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectPatternFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One field's glob; `None` is `*`.
pub fn glob_field(value: Option<String>, key: &'static str) -> Result<Glob, &'static str> {
    match value {
        None => Ok(Glob::any()),
        Some(text) if text.contains('/') => Err(match key {
            "resource" => "resource is a plural name without a subresource (pods, not pods/log)",
            _ => "a name, namespace or group never contains '/'",
        }),
        Some(text) => Ok(Glob::new(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_fields_match_every_glob() {
        let pattern = ObjectPattern {
            group: Glob::new(""),
            resource: Glob::new("configmaps"),
            namespace: Glob::new("shop"),
            name: Glob::new("app-*"),
        };
        assert!(pattern.could_match("", "configmaps", Some("shop"), Some("app-1")));
        assert!(pattern.could_match("", "configmaps", Some("shop"), None));
        assert!(pattern.could_match("", "configmaps", None, None));
        assert!(!pattern.could_match("", "configmaps", Some("prod"), None));
        assert!(!pattern.could_match("", "secrets", None, None));
        assert!(pattern.matches("", "configmaps", "shop", "*"));
        assert!(!pattern.matches("", "configmaps", "shop", "web"));
    }

    #[test]
    fn a_pattern_loads_back_from_its_file_form_and_displays_empty_fields() {
        let file = ObjectPatternFile {
            group: Some(String::new()),
            resource: Some("configmaps".into()),
            ..ObjectPatternFile::default()
        };
        let pattern = ObjectPattern::from_file(file).unwrap();
        assert_eq!(
            ObjectPattern::from_file(pattern.to_file()),
            Ok(pattern.clone())
        );
        assert_eq!(
            pattern.to_string(),
            "{group: \"\", resource: configmaps, namespace: *, name: *}"
        );
    }
}
