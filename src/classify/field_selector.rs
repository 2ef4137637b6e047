//! Just enough of the apiserver's field-selector grammar to answer one question: does a
//! LIST/WATCH name a single object through `fieldSelector=metadata.name=<name>`?
//!
//! The apiserver copies that name into its request info (so RBAC `resourceNames` rules apply
//! to such lists); a selector that does not parse leaves the name empty. The grammar is the
//! one of `k8s.io/apimachinery/pkg/fields`: comma-separated terms (a backslash escapes the
//! next character from splitting), each `field=value`, `field==value` or `field!=value`, the
//! first operator found from the left splitting the term, and values unescaped with only
//! `\\`, `\,` and `\=` allowed.

/// The name required by `metadata.name=<name>` (or `==`) in `selector`, when the whole selector
/// parses. Terms are sorted first, as the apiserver sorts them, so with several `metadata.name`
/// terms the bytewise-smallest term wins, as it does there.
pub(crate) fn required_name(selector: &str) -> Option<String> {
    if selector.is_empty() {
        return None;
    }
    let mut terms = split_terms(selector);
    terms.sort_unstable();
    let mut found = None;
    for term in terms {
        if term.is_empty() {
            continue;
        }
        let (field, op, raw_value) = split_term(term)?;
        let value = unescape_value(raw_value)?;
        if found.is_none() && field == "metadata.name" && op != "!=" {
            found = Some(value);
        }
    }
    found
}

/// Whether the apiserver would accept `name` as a path segment (it copies a selector's name
/// into the request info only then): not `.` or `..`, and no `/` or `%`.
pub(crate) fn is_valid_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

fn split_terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::with_capacity(1);
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

fn unescape_value(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return None;
            }
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '=' => return None,
            c => out.push(c),
        }
    }
    (!escaped).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_name_of_a_single_object_selector() {
        let cases: &[(&str, Option<&str>)] = &[
            ("metadata.name=name1", Some("name1")),
            ("metadata.name==name1", Some("name1")),
            ("metadata.name!=name1", None),
            ("foo=bar", None),
            ("status.phase=Running,metadata.name=web", Some("web")),
            // The apiserver's own test: an unparsable term loses the name.
            ("metadata.name=name1,foo", None),
            ("metadata.name=a\\,b", Some("a,b")),
            ("metadata.name=a\\x", None),
            ("metadata.name=a=b", None),
            ("metadata.name=a\\", None),
            ("metadata.name=b,metadata.name=a", Some("a")),
            ("", None),
            (",,metadata.name=x,", Some("x")),
        ];
        for (selector, want) in cases {
            assert_eq!(
                required_name(selector).as_deref(),
                *want,
                "selector {selector:?}"
            );
        }
    }

    #[test]
    fn path_segment_names() {
        assert!(is_valid_path_segment_name("web-0"));
        assert!(!is_valid_path_segment_name("."));
        assert!(!is_valid_path_segment_name(".."));
        assert!(!is_valid_path_segment_name("a/b"));
        assert!(!is_valid_path_segment_name("a%2f"));
    }
}
