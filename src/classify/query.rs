//! The query string, read the way Go's `net/url` reads it for the apiserver.
//!
//! Go's `url.ParseQuery` splits on `&`, decodes `+` as a space and `%XX` escapes, and
//! *silently drops* a pair whose key contains `;` or whose escapes are invalid. A proxy that
//! kept such a pair (or decoded it differently) would see a parameter the apiserver does not,
//! so these queries are refused here rather than guessed at.

use super::ClassifyError;

/// Decoded `key=value` pairs in their original order (the apiserver reads the first value of
/// most parameters, and every value of list parameters such as `dryRun`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw (still percent-encoded) query string.
    pub(crate) fn parse(raw: Option<&str>) -> Result<Self, ClassifyError> {
        let mut pairs = Vec::new();
        let Some(raw) = raw else {
            return Ok(Self { pairs });
        };
        for pair in raw.split('&') {
            if pair.is_empty() {
                continue;
            }
            if pair.contains(';') {
                return Err(ClassifyError::BadQuery(format!(
                    "{pair:?} contains ';', which the apiserver drops silently"
                )));
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((unescape_query(key)?, unescape_query(value)?));
        }
        Ok(Self { pairs })
    }

    /// The first value of `key`, as the apiserver's parameter codec reads scalars.
    pub(crate) fn first(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` appears at all.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// `key` read as the apiserver reads a boolean query parameter: absent is `None`; the
    /// first value `0` or (any case) `false` is false; anything else, even empty, is true.
    pub(crate) fn go_bool(&self, key: &str) -> Option<bool> {
        self.first(key).map(go_bool)
    }
}

/// The apiserver's reading of a boolean query value (`Convert_Slice_string_To_bool`).
pub(crate) fn go_bool(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("false"))
}

/// `dryRun` values as the apiserver validates them: a dry run only when at least one value is
/// given and every value is `All` (anything else is refused by the apiserver with a 400, so it
/// never runs as a dry run).
pub(crate) fn dry_run_values<'a>(values: impl Iterator<Item = &'a str>) -> bool {
    let mut any = false;
    for value in values {
        if value != "All" {
            return false;
        }
        any = true;
    }
    any
}

fn unescape_query(s: &str) -> Result<String, ClassifyError> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(decode_hex_pair);
                let Some(byte) = hex else {
                    return Err(ClassifyError::BadQuery(format!(
                        "{s:?} has an invalid percent escape"
                    )));
                };
                out.push(byte);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| ClassifyError::BadQuery(format!("{s:?} does not decode to UTF-8")))
}

/// Decodes two ASCII hex digits into a byte.
pub(crate) fn decode_hex_pair(pair: &[u8]) -> Option<u8> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    match pair {
        [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_escapes_and_keeps_order() {
        let q = Query::parse(Some("a=1&labelSelector=app%3Dweb+x&a=2&flag")).unwrap();
        assert_eq!(q.first("a"), Some("1"));
        assert_eq!(q.all("a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(q.first("labelSelector"), Some("app=web x"));
        assert_eq!(q.first("flag"), Some(""));
        assert!(q.has("flag"));
        assert!(!q.has("b"));
    }

    #[test]
    fn refuses_what_go_would_drop() {
        assert!(Query::parse(Some("a=1;b=2")).is_err());
        assert!(Query::parse(Some("a=%zz")).is_err());
        assert!(Query::parse(Some("a=%4")).is_err());
        assert!(Query::parse(Some("a=%ff")).is_err(), "not UTF-8");
    }

    #[test]
    fn go_bool_semantics() {
        for truthy in ["true", "1", "", "yes", "TRUE"] {
            assert!(go_bool(truthy), "{truthy:?}");
        }
        for falsy in ["false", "FALSE", "False", "0"] {
            assert!(!go_bool(falsy), "{falsy:?}");
        }
    }

    #[test]
    fn dry_run_needs_all_values_all() {
        assert!(dry_run_values(["All"].into_iter()));
        assert!(dry_run_values(["All", "All"].into_iter()));
        assert!(!dry_run_values([].into_iter()));
        assert!(!dry_run_values(["all"].into_iter()));
        assert!(!dry_run_values(["All", ""].into_iter()));
    }
}
