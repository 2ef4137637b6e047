//! Who sends a request: the connection's verified certificate and the bearer token it
//! carries, resolved once per token into a [`ClientIdentity`] and a default session name.
//!
//! Owns: token fingerprints (never the token), the constant-time check of client tokens
//! (sidecar mode's token file), and the per-connection cache of the last identity. Does not
//! own: what the identity may do (policy) or the upstream credentials (`handler`).

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::headers;

/// What the TLS layer knows about a connection.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// The `X-Forwarded-For` sent upstream: the peer's address, formatted once.
    pub(super) forwarded_for: HeaderValue,
    /// Permits for the requests this connection has in flight, whether their client still
    /// waits or not (see [`super::handler::handle`]).
    pub(super) requests: Arc<tokio::sync::Semaphore>,
    /// User (CN) and groups (O) of a verified client certificate.
    pub certificate: Option<(String, Vec<String>)>,
    /// The identity resolved for the last `Authorization` value seen on this connection: a
    /// client sends the same token on every request of a connection, so its SHA-256 and
    /// the default session name are computed once per token, not once per request.
    resolved: std::sync::Mutex<Option<(Option<HeaderValue>, Resolved)>>,
}

/// A client's identity and the session name it defaults to.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    pub(super) identity: Arc<ClientIdentity>,
    pub(super) session_name: Option<String>,
}

impl ConnectionInfo {
    pub fn new(peer: SocketAddr, certificate: Option<(String, Vec<String>)>) -> Self {
        Self {
            peer,
            forwarded_for: headers::forwarded_for(peer),
            requests: Arc::new(tokio::sync::Semaphore::new(REQUESTS_PER_CONNECTION)),
            certificate,
            resolved: std::sync::Mutex::new(None),
        }
    }

    /// Who sends `authorization` on this connection, from the cache when it is unchanged.
    pub(super) fn resolve(&self, authorization: Option<&HeaderValue>) -> Resolved {
        let mut cached = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((value, resolved)) = &*cached {
            if value.as_ref() == authorization {
                return resolved.clone();
            }
        }
        let mut identity = ClientIdentity::default();
        if let Some((user, groups)) = &self.certificate {
            identity.user = Some(user.clone());
            identity.groups = groups.clone();
        }
        identity.token_fingerprint = authorization.and_then(token_fingerprint);
        let resolved = Resolved {
            session_name: identity.session_name(),
            identity: Arc::new(identity),
        };
        *cached = Some((authorization.cloned(), resolved.clone()));
        resolved
    }
}

/// Who the client is, as far as pathgate knows. Never holds a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientIdentity {
    pub user: Option<String>,
    pub groups: Vec<String>,
    /// First 16 hex digits of the SHA-256 of the client's bearer token.
    pub token_fingerprint: Option<String>,
}

impl ClientIdentity {
    /// A name for the default session: the user, else the token fingerprint.
    fn session_name(&self) -> Option<String> {
        self.user
            .clone()
            .or_else(|| {
                self.token_fingerprint
                    .as_ref()
                    .map(|f| format!("token-{f}"))
            })
            .map(|name| {
                name.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect::<String>()
            })
            .filter(|name| crate::session::is_valid_id(name))
    }
}

fn token_fingerprint(authorization: &HeaderValue) -> Option<String> {
    let value = authorization.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(crate::ledger::token_fingerprint(token.trim()))
}

pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// Constant-time comparison of a presented token against the accepted ones.
pub(super) fn token_accepted(presented: &str, accepted: &[String]) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let mut found = false;
    for token in accepted {
        let candidate = Sha256::digest(token.as_bytes());
        let differ = presented
            .iter()
            .zip(candidate.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        found |= differ == 0;
    }
    found
}

/// The most requests one connection has in flight, their clients waiting or not: hyper's
/// default HTTP/2 stream limit. Without it, a client that resets each stream right after
/// sending it (HTTP/2 "rapid reset") would leave any number of requests running upstream.
pub(super) const REQUESTS_PER_CONNECTION: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_fingerprints_never_contain_the_token() {
        let fp = token_fingerprint(&HeaderValue::from_static("Bearer s3cret-token")).unwrap();
        assert_eq!(fp.len(), "sha256:".len() + 16);
        assert!(!fp.contains("s3cret"));
        assert_ne!(
            fp,
            token_fingerprint(&HeaderValue::from_static("Bearer other")).unwrap()
        );
        assert!(token_fingerprint(&HeaderValue::from_static("Basic abc")).is_none());
    }

    #[test]
    fn a_connection_resolves_each_token_it_carries_not_only_the_first() {
        let connection = ConnectionInfo::new("127.0.0.1:1".parse().unwrap(), None);
        let alice = HeaderValue::from_static("Bearer alice-token");
        let bob = HeaderValue::from_static("Bearer bob-token");
        let first = connection.resolve(Some(&alice));
        assert_eq!(
            first.identity.token_fingerprint,
            token_fingerprint(&alice),
            "computed from the token"
        );
        assert_eq!(
            connection.resolve(Some(&alice)).identity,
            first.identity,
            "reused while the token is unchanged"
        );
        let second = connection.resolve(Some(&bob));
        assert_eq!(second.identity.token_fingerprint, token_fingerprint(&bob));
        assert_ne!(second.session_name, first.session_name);
        let anonymous = connection.resolve(None);
        assert_eq!(anonymous.identity.token_fingerprint, None);
        assert_eq!(anonymous.session_name, None);
    }

    #[test]
    fn client_tokens_are_compared_exactly() {
        let accepted = vec!["alpha".to_string(), "beta".to_string()];
        assert!(token_accepted("beta", &accepted));
        assert!(!token_accepted("bet", &accepted));
        assert!(!token_accepted("", &accepted));
    }

    #[test]
    fn default_session_names_are_valid_ids() {
        let identity = ClientIdentity {
            user: Some("system:serviceaccount:ns:agent".into()),
            ..Default::default()
        };
        let name = identity.session_name().unwrap();
        assert!(crate::session::is_valid_id(&name), "{name}");
    }
}
