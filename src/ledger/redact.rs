//! What the ledger refuses to write: Secret data, credentials in query strings, tokens.
//!
//! Every helper here is pure, so the guarantees are tested without a spool.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::entry::CapturedBody;

/// The placeholder written where a value was removed.
pub const REDACTED: &str = "[redacted]";

/// The annotation in which client-side apply restates the whole object, Secret data included.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Longest query string kept in an entry; the rest is cut (label selectors can be long, but
/// an unbounded field would let one client bloat the spool).
pub const MAX_QUERY_CHARS: usize = 4096;

/// A body with every Secret value removed.
///
/// For the `secrets` resource, and for any object in the body whose `kind` is `Secret`
/// (lists, or a Secret sent to the wrong endpoint): the values under `data` and `stringData`
/// become [`REDACTED`] (key names are kept: which key changed is useful and is not the
/// secret), the last-applied-configuration annotation (a full copy of the Secret) becomes
/// [`REDACTED`], and for JSON-patch arrays every operation's `value` becomes [`REDACTED`].
pub fn redact_body(resource: &str, body: &Value) -> Value {
    let mut body = body.clone();
    if resource == "secrets" {
        redact_secret(&mut body);
    } else {
        redact_embedded_secrets(&mut body);
    }
    body
}

/// Redacts a Secret, a list of Secrets or a patch of a Secret.
fn redact_secret(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let is_patch_op = map.contains_key("op") && map.contains_key("path");
            for (key, child) in map.iter_mut() {
                if key == "data" || key == "stringData" || key == LAST_APPLIED {
                    redact_values(child);
                } else if is_patch_op && (key == "value" || key == "from") {
                    // A JSON patch of a Secret can set data through any path spelling
                    // (`/data/k`, `/data`, `/stringData`); every value is redacted.
                    *child = Value::String(REDACTED.to_owned());
                } else {
                    redact_secret(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secret),
        _ => {}
    }
}

/// Looks for objects of kind `Secret` inside a body that is not itself a Secret request.
fn redact_embedded_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if matches!(map.get("kind"), Some(Value::String(kind)) if kind == "Secret" || kind == "SecretList")
            {
                redact_secret(value);
                return;
            }
            map.values_mut().for_each(redact_embedded_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(redact_embedded_secrets),
        _ => {}
    }
}

/// Replaces every leaf value with [`REDACTED`], keeping object keys.
fn redact_values(value: &mut Value) {
    match value {
        Value::Object(map) => map.values_mut().for_each(redact_values),
        Value::Null => {}
        other => *other = Value::String(REDACTED.to_owned()),
    }
}

/// The query string as the ledger keeps it: parameters whose name suggests a credential
/// (`token`, `access_token`, `password`, `secret` in any case) have their value replaced by
/// [`REDACTED`], the rest is kept byte for byte, and the whole is cut at
/// [`MAX_QUERY_CHARS`]. `None` for an empty query.
pub fn safe_query(query: &str) -> Option<String> {
    if query.is_empty() {
        return None;
    }
    let mut kept: Vec<String> = Vec::new();
    for pair in query.split('&') {
        let (raw_name, raw_value) = match pair.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (pair, None),
        };
        let name: String = form_urlencoded::parse(raw_name.as_bytes())
            .next()
            .map(|(name, _)| name.into_owned())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let sensitive = ["token", "password", "secret"]
            .iter()
            .any(|word| name.contains(word));
        match (sensitive, raw_value) {
            (true, Some(_)) => kept.push(format!("{raw_name}={REDACTED}")),
            _ => kept.push(pair.to_owned()),
        }
    }
    let mut query = kept.join("&");
    if query.len() > MAX_QUERY_CHARS {
        let mut cut = MAX_QUERY_CHARS;
        while !query.is_char_boundary(cut) {
            cut -= 1;
        }
        query.truncate(cut);
        query.push_str("...");
    }
    Some(query)
}

/// `sha256:` and the first 16 hex digits of SHA-256 over a bearer token: enough to tell two
/// clients apart or to match a known token, useless for replaying it.
pub fn token_fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let hex = crate::trace::hex(&digest[..8]);
    format!("sha256:{hex}")
}

/// Captures a request body for the ledger: decoded (JSON, or YAML for apply patches),
/// redacted with [`redact_body`], and left out (`truncated`) when the redacted JSON exceeds
/// `max_bytes`. Bodies that cannot be decoded (protobuf, CBOR) are recorded by size only.
pub fn capture_body(
    resource: &str,
    content_type: Option<&str>,
    body: &[u8],
    max_bytes: usize,
) -> CapturedBody {
    let original_bytes = body.len() as u64;
    let media_type = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let decoded: Option<Value> = if media_type.ends_with("json") {
        serde_json::from_slice(body).ok()
    } else if media_type.ends_with("yaml") {
        serde_yaml::from_slice(body).ok()
    } else {
        None
    };
    let Some(decoded) = decoded else {
        return CapturedBody {
            json: None,
            original_bytes,
            truncated: false,
        };
    };
    let redacted = redact_body(resource, &decoded);
    let size = serde_json::to_vec(&redacted)
        .map(|bytes| bytes.len())
        .unwrap_or(usize::MAX);
    if size > max_bytes {
        CapturedBody {
            json: None,
            original_bytes,
            truncated: true,
        }
    } else {
        CapturedBody {
            json: Some(redacted),
            original_bytes,
            truncated: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(value: &Value) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn secret_data_and_string_data_values_are_removed_keys_kept() {
        let body = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "annotations": {LAST_APPLIED: "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}},
            "data": {"password": "aHVudGVyMg=="},
            "stringData": {"user": "admin-hunter"},
            "type": "Opaque"
        });
        let redacted = redact_body("secrets", &body);
        let out = text(&redacted);
        assert!(!out.contains("aHVudGVyMg=="), "{out}");
        assert!(!out.contains("admin-hunter"), "{out}");
        assert_eq!(redacted["data"]["password"], REDACTED);
        assert_eq!(redacted["stringData"]["user"], REDACTED);
        assert_eq!(redacted["metadata"]["annotations"][LAST_APPLIED], REDACTED);
        assert_eq!(redacted["metadata"]["name"], "db");
        assert_eq!(redacted["type"], "Opaque");
    }

    #[test]
    fn json_patch_of_a_secret_loses_every_value() {
        let body = json!([
            {"op": "replace", "path": "/data/password", "value": "c2VjcmV0"},
            {"op": "add", "path": "/stringData", "value": {"k": "plain-secret"}}
        ]);
        let out = text(&redact_body("secrets", &body));
        assert!(
            !out.contains("c2VjcmV0") && !out.contains("plain-secret"),
            "{out}"
        );
        assert!(out.contains("/data/password"), "paths are kept: {out}");
    }

    #[test]
    fn secrets_inside_other_bodies_are_found_by_kind() {
        let body = json!({"kind": "List", "items": [
            {"kind": "Secret", "data": {"a": "dG9w"}},
            {"kind": "ConfigMap", "data": {"b": "visible"}}
        ]});
        let redacted = redact_body("", &body);
        assert_eq!(redacted["items"][0]["data"]["a"], REDACTED);
        assert_eq!(redacted["items"][1]["data"]["b"], "visible");
    }

    #[test]
    fn non_secret_bodies_are_unchanged() {
        let body = json!({"kind": "ConfigMap", "data": {"b": "visible"}});
        assert_eq!(redact_body("configmaps", &body), body);
    }

    #[test]
    fn credential_query_parameters_are_redacted_and_the_rest_kept_verbatim() {
        assert_eq!(
            safe_query("labelSelector=app%3Dweb&access_token=abc&watch=1&Password=x").as_deref(),
            Some("labelSelector=app%3Dweb&access_token=[redacted]&watch=1&Password=[redacted]")
        );
        assert_eq!(safe_query(""), None);
        let long = "a=".to_owned() + &"x".repeat(MAX_QUERY_CHARS * 2);
        assert_eq!(safe_query(&long).unwrap().len(), MAX_QUERY_CHARS + 3);
    }

    #[test]
    fn token_fingerprint_is_a_short_prefix_and_not_the_token() {
        let fingerprint = token_fingerprint("my-bearer-token");
        assert!(fingerprint.starts_with("sha256:"));
        assert_eq!(fingerprint.len(), "sha256:".len() + 16);
        assert!(!fingerprint.contains("my-bearer-token"));
        assert_eq!(fingerprint, token_fingerprint("my-bearer-token"));
        assert_ne!(fingerprint, token_fingerprint("another-token"));
    }

    #[test]
    fn captured_bodies_are_redacted_and_size_capped() {
        let body = br#"{"kind":"Secret","data":{"k":"c2VjcmV0"}}"#;
        let captured = capture_body("secrets", Some("application/json"), body, 1024);
        assert_eq!(captured.json.as_ref().unwrap()["data"]["k"], REDACTED);
        assert_eq!(captured.original_bytes, body.len() as u64);

        let big = capture_body("configmaps", Some("application/json"), body, 10);
        assert!(big.truncated && big.json.is_none());

        let yaml = capture_body(
            "secrets",
            Some("application/apply-patch+yaml"),
            b"kind: Secret\nstringData:\n  k: plain\n",
            1024,
        );
        assert_eq!(yaml.json.unwrap()["stringData"]["k"], REDACTED);

        let protobuf = capture_body(
            "secrets",
            Some("application/vnd.kubernetes.protobuf"),
            b"k8s\0..",
            1024,
        );
        assert!(protobuf.json.is_none() && !protobuf.truncated);
    }
}
