//! Example entries for tests and benchmarks (this crate's unit tests, its integration tests
//! and its benches share them): a request's entry as the proxy starts it, the request
//! classified from its method and path by [`crate::classify`], so an example cannot name a
//! verb or resource its path does not have. pathgate itself never builds entries this way.

use time::OffsetDateTime;

use super::{AuthMode, Client, Entry, Request};

/// The client `agent`, authenticated as `auth_mode`, nothing else known.
pub fn client(auth_mode: AuthMode) -> Client {
    Client {
        user: Some("agent".into()),
        groups: vec![],
        token_fingerprint: None,
        auth_mode,
        remote_addr: None,
    }
}

/// The request `method` `path_and_query` (`/api/v1/namespaces/a/pods/p?dryRun=All`).
///
/// # Panics
/// When the path does not classify (an example must be a valid request).
pub fn request(method: &str, path_and_query: &str) -> Request {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let method: http::Method = method.parse().expect("an HTTP method");
    let info = crate::classify::request_info(&method, path, query, &http::HeaderMap::new())
        .unwrap_or_else(|e| panic!("{method} {path_and_query} does not classify: {e}"));
    Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.map(str::to_string),
        verb: info.verb.as_str().to_string(),
        mutation: info.is_mutation(),
        api_group: info.api_group,
        api_version: info.api_version,
        resource: info.resource,
        subresource: info.subresource,
        namespace: info.namespace,
        name: info.name,
        content_type: None,
        scope: None,
        effect_verb: None,
    }
}

/// A started entry of `session` (`agent`, passthrough) for `method` `path_and_query`.
pub fn entry(
    trace_id: impl Into<String>,
    session: impl Into<String>,
    started: OffsetDateTime,
    method: &str,
    path_and_query: &str,
) -> Entry {
    Entry::new(
        trace_id,
        session,
        client(AuthMode::Passthrough),
        started,
        request(method, path_and_query),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_example_request_is_classified_from_its_path() {
        let r = request(
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/web/scale?dryRun=All",
        );
        assert_eq!(r.verb, "patch");
        assert!(r.mutation);
        assert_eq!(
            (
                r.api_group.as_str(),
                r.api_version.as_str(),
                r.namespace.as_str()
            ),
            ("apps", "v1", "shop")
        );
        assert_eq!(
            (r.resource.as_str(), r.subresource.as_str()),
            ("deployments", "scale")
        );
        assert_eq!(r.name, "web");
        assert_eq!(r.query.as_deref(), Some("dryRun=All"));
        let list = request("GET", "/api/v1/namespaces/default/configmaps");
        assert_eq!((list.verb.as_str(), list.mutation), ("list", false));
    }
}
