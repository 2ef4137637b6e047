//! Sessions: which agent run a request belongs to.
//!
//! Owns: the `/s/<session-id>` server-path prefix (stripped before classification), the
//! `X-Pathgate-Session` header, and the rules for a valid id. A request without either
//! lands in the default session (the `--session` flag, else the client's identity), never
//! refused for lacking one: `kubectl get --raw` drops the server path prefix.

/// The header a client may use instead of the path prefix.
pub const SESSION_HEADER: &str = "x-pathgate-session";

/// The longest session id accepted.
pub const MAX_SESSION_LEN: usize = 128;

/// Why a session id was refused (answered with a 400 `Status`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session id {0:?} is invalid: use 1-128 characters from [A-Za-z0-9._-], starting with a letter or digit")]
    InvalidId(String),
}

/// Whether `id` is an acceptable session id.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SESSION_LEN
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Splits a `/s/<id>/rest` path into the session id and the path the apiserver should
/// see. Paths without the prefix are returned unchanged with no session.
pub fn strip_prefix(path: &str) -> Result<(Option<String>, String), SessionError> {
    let Some(rest) = path.strip_prefix("/s/") else {
        return Ok((None, path.to_string()));
    };
    let (id, remainder) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let decoded = percent_encoding::percent_decode_str(id)
        .decode_utf8()
        .map_err(|_| SessionError::InvalidId(id.to_string()))?;
    if !is_valid_id(&decoded) || decoded != id {
        return Err(SessionError::InvalidId(id.to_string()));
    }
    Ok((Some(id.to_string()), remainder.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_stripped_and_kept_as_the_session() {
        assert_eq!(
            strip_prefix("/s/run-42/api/v1/pods").unwrap(),
            (Some("run-42".into()), "/api/v1/pods".into())
        );
        assert_eq!(
            strip_prefix("/s/run-42").unwrap(),
            (Some("run-42".into()), "/".into())
        );
    }

    #[test]
    fn paths_without_prefix_have_no_session() {
        assert_eq!(
            strip_prefix("/api/v1/pods").unwrap(),
            (None, "/api/v1/pods".into())
        );
        assert_eq!(strip_prefix("/so/x").unwrap(), (None, "/so/x".into()));
    }

    #[test]
    fn invalid_ids_are_refused() {
        for path in [
            "/s//api",
            "/s/-x/api",
            "/s/a%2Fb/api",
            "/s/a b/api",
            "/s/ü/api",
        ] {
            assert!(strip_prefix(path).is_err(), "{path}");
        }
        let long = format!("/s/{}/api", "a".repeat(MAX_SESSION_LEN + 1));
        assert!(strip_prefix(&long).is_err());
    }
}
