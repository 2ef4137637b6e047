//! Pre- and post-images on the request path: which mutations are imaged ([`plan`]), what
//! is read of their target before forwarding ([`source`]), and the store writes, off the
//! event loop and beside what the request waits for anyway.
//!
//! - The pre-image's GET (or a deletecollection's LIST) runs beside the intent, or reuses
//!   the GET the gate or the effect fetch already made ([`source`]).
//! - Its write (and `fdatasync`) starts when the request is forwarded ([`start`]) and is
//!   joined before the outcome is recorded ([`settle`]): it overlaps the upstream request.
//! - The post-image (the buffered answer) is staged before the outcome is recorded and
//!   written while the outcome's own fsync runs ([`settle`], [`beside`]).
//!
//! Owns: the request path's use of [`ImageStore`]. Does not own: the store's format and
//! bounds (`ledger::images`), or the entry fields (`record`).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::exchange::Exchange;
use super::gate::{self, Fetched};
use super::Proxy;
use crate::classify::{RequestInfo, Verb};
use crate::ledger::images::{is_secret, list_image, ImageRecord, ImageStore, Withheld};
use crate::ledger::TargetRecord;
use crate::trace::TraceId;

/// What a forwarded mutation's pre-image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Plan {
    /// The object (or its `status` / `scale` subresource) GET on `path`.
    Object { path: String },
    /// The collection a deletecollection would delete: LIST `path?query`.
    Collection { path: String, query: String },
    /// A create: nothing existed before; only the answer is imaged.
    Create,
}

/// The pre-image of a request (docs/ledger.md, "Pre-images"): `None` for what undo cannot
/// revert (other subresources: exec, token, binding, proxy...), reads, and requests the
/// path does not place (no version, a name pathgate would not put in a path). The caller
/// leaves out dry runs and refused requests.
pub(super) fn plan(info: &RequestInfo, query: Option<&str>, max_list_items: usize) -> Option<Plan> {
    if !info.is_mutation() {
        return None;
    }
    let object = || object_path(info);
    let subresource = info.subresource.as_str();
    match info.verb {
        Verb::Create if subresource.is_empty() => Some(Plan::Create),
        Verb::Create if info.is_pod_eviction() => object().map(|path| Plan::Object { path }),
        Verb::Update | Verb::Patch | Verb::Delete if subresource.is_empty() => {
            object().map(|path| Plan::Object { path })
        }
        Verb::Update | Verb::Patch if matches!(subresource, "status" | "scale") => {
            object().map(|path| Plan::Object {
                path: format!("{path}/{subresource}"),
            })
        }
        Verb::DeleteCollection if subresource.is_empty() => Some(Plan::Collection {
            path: info.path.clone(),
            query: list_query(query, max_list_items),
        }),
        _ => None,
    }
}

/// The path of the object a request names (the gate's target path), without a
/// subresource.
pub(super) fn object_path(info: &RequestInfo) -> Option<String> {
    crate::policy::target_path(info, &crate::classify::Analysis::default())
}

/// The LIST of what a deletecollection deletes: its selectors, and a limit one past the
/// bound, so a longer collection is seen as such without reading it all.
fn list_query(query: Option<&str>, max_list_items: usize) -> String {
    let kept = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(key, _)| key == "labelSelector" || key == "fieldSelector");
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .append_pair("limit", &(max_list_items + 1).to_string())
        .finish()
}

/// What the pre-image is made from: the plan and what was read of its target.
pub(super) struct Source {
    plan: Plan,
    fetched: Option<Fetched>,
}

/// Reads the plan's target unless a GET of the same path already read it (`known`: the
/// gate's, or the effect fetch's answer).
pub(super) async fn source(
    proxy: &Proxy,
    plan: Plan,
    known: Option<(String, Fetched)>,
    authorization: Option<&HeaderValue>,
    trace_id: TraceId,
) -> Source {
    let path_and_query = match &plan {
        Plan::Create => {
            return Source {
                plan,
                fetched: None,
            }
        }
        Plan::Object { path } => match known {
            Some((known_path, fetched)) if known_path == *path => {
                return Source {
                    plan,
                    fetched: Some(fetched),
                };
            }
            _ => path.clone(),
        },
        Plan::Collection { path, query } => format!("{path}?{query}"),
    };
    let fetched = gate::get(&proxy.upstream, &path_and_query, authorization, trace_id).await;
    Source {
        plan,
        fetched: Some(fetched),
    }
}

/// The images of one forwarded request: the pre-image being written, and whether its
/// answer is imaged too.
pub(super) struct Pending {
    store: Arc<ImageStore>,
    secret: bool,
    pre: Option<JoinHandle<PreImaged>>,
}

/// What the pre-image's write returns for the entry.
struct PreImaged {
    target: Option<TargetRecord>,
    image: Option<ImageRecord>,
}

impl PreImaged {
    /// Nothing known of the target (its read failed): no `target`, no image.
    const UNKNOWN: PreImaged = PreImaged {
        target: None,
        image: None,
    };
}

/// Starts writing the pre-image, on the blocking pool, as the request is forwarded.
pub(super) fn start(proxy: &Proxy, source: Option<Source>, info: &RequestInfo) -> Option<Pending> {
    let store = proxy.images.clone()?;
    let source = source?;
    let secret = is_secret(&info.api_group, &info.resource);
    let pre = match source.fetched {
        None => None,
        Some(fetched) => {
            let store = Arc::clone(&store);
            let collection = matches!(source.plan, Plan::Collection { .. });
            Some(tokio::task::spawn_blocking(move || {
                pre_image(&store, fetched, collection, secret)
            }))
        }
    };
    Some(Pending { store, secret, pre })
}

/// The pre-image's record and the `target` it shows (blocking: parses and writes).
fn pre_image(store: &ImageStore, fetched: Fetched, collection: bool, secret: bool) -> PreImaged {
    let body = match fetched {
        Fetched::Found(body) => body,
        Fetched::Absent => {
            return PreImaged {
                target: Some(TargetRecord::from_object(None)),
                image: None,
            }
        }
        Fetched::Failed => return PreImaged::UNKNOWN,
    };
    let Ok(object) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return PreImaged::UNKNOWN;
    };
    let target = Some(TargetRecord::from_object(Some(&object)));
    let image = if collection {
        collection_image(store, object, secret)
    } else {
        store.put(&body, secret)
    };
    PreImaged {
        target,
        image: Some(image),
    }
}

/// A LIST answer as a `List` whose items name their own `apiVersion` and `kind` (a LIST
/// leaves them out of its items), bounded by `max_list_items`.
fn collection_image(store: &ImageStore, mut list: serde_json::Value, secret: bool) -> ImageRecord {
    let max = store.limits().map_or(0, |l| l.max_list_items);
    let api_version = list["apiVersion"].clone();
    let kind = list["kind"]
        .as_str()
        .and_then(|k| k.strip_suffix("List"))
        .map(str::to_owned);
    let more = list["metadata"]["continue"]
        .as_str()
        .is_some_and(|c| !c.is_empty());
    let serde_json::Value::Array(mut items) = list["items"].take() else {
        return ImageRecord::Withheld {
            reason: Withheld::Unavailable,
        };
    };
    if more {
        return ImageRecord::Withheld {
            reason: Withheld::TooLarge,
        };
    }
    for item in &mut items {
        if let (Some(fields), Some(kind)) = (item.as_object_mut(), &kind) {
            fields
                .entry("apiVersion")
                .or_insert_with(|| api_version.clone());
            fields.entry("kind").or_insert_with(|| kind.clone().into());
        }
    }
    match list_image(items, max) {
        Ok(image) => store.put(
            &serde_json::to_vec(&image).expect("JSON serialises"),
            secret,
        ),
        Err(reason) => ImageRecord::Withheld { reason },
    }
}

/// Joins the pre-image into the exchange (its record into `target`), and stages the
/// post-image of `answer` (the object the apiserver answered with, `None` for anything
/// else): its record is in the exchange on return, and the returned write is awaited
/// [`beside`] the outcome's record.
pub(super) async fn settle(
    pending: Option<Pending>,
    exchange: &mut Exchange,
    answer: Option<Bytes>,
) -> Option<JoinHandle<ImageRecord>> {
    let pending = pending?;
    if let Some(pre) = pending.pre {
        let imaged = pre.await.unwrap_or(PreImaged {
            target: None,
            image: Some(ImageRecord::Withheld {
                reason: Withheld::Unavailable,
            }),
        });
        merge_target(exchange, imaged);
    }
    let answer = answer?;
    let (announce, announced) = oneshot::channel();
    let (store, secret) = (pending.store, pending.secret);
    let write = tokio::task::spawn_blocking(move || {
        store.put_announcing(&answer, secret, |record| {
            let _ = announce.send(record.clone());
        })
    });
    exchange.post_image = Some(announced.await.unwrap_or(ImageRecord::Withheld {
        reason: Withheld::Unavailable,
    }));
    Some(write)
}

/// The pre-image's `target` joins the gate's: the gate's GET (when it made one) decided,
/// so its `found` and `controller` stand; the image and the identity are added.
fn merge_target(exchange: &mut Exchange, imaged: PreImaged) {
    let target = match (exchange.target.take(), imaged.target) {
        (Some(mut gate), Some(fetched)) => {
            gate.resource_version = gate.resource_version.or(fetched.resource_version);
            gate.uid = gate.uid.or(fetched.uid);
            Some(gate)
        }
        (gate, fetched) => gate.or(fetched),
    };
    exchange.target = target;
    // A pre-image lives in `target`: with no record of the target there is none.
    exchange.pre_image = exchange.target.as_ref().and(imaged.image);
}

/// Awaits `recording` (the outcome's durable record) and the post-image's write together.
pub(super) async fn beside<T>(
    recording: impl Future<Output = T>,
    write: Option<JoinHandle<ImageRecord>>,
) -> T {
    let Some(write) = write else {
        return recording.await;
    };
    let (recorded, _) = tokio::join!(recording, write);
    recorded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: &str, path: &str, query: Option<&str>) -> RequestInfo {
        let method: http::Method = method.parse().unwrap();
        crate::classify::request_info(&method, path, query, &http::HeaderMap::new()).unwrap()
    }

    fn plan_of(method: &str, path: &str, query: Option<&str>) -> Option<Plan> {
        plan(&info(method, path, query), query, 500)
    }

    fn object(path: &str) -> Option<Plan> {
        Some(Plan::Object { path: path.into() })
    }

    #[test]
    fn every_mutation_undo_can_revert_is_imaged_from_the_object_it_changes() {
        let cm = "/api/v1/namespaces/shop/configmaps/web";
        for method in ["PUT", "PATCH", "DELETE"] {
            assert_eq!(plan_of(method, cm, None), object(cm), "{method}");
        }
        let deployment = "/apis/apps/v1/namespaces/shop/deployments/web";
        for sub in ["status", "scale"] {
            let path = format!("{deployment}/{sub}");
            assert_eq!(plan_of("PATCH", &path, None), object(&path), "{sub}");
            assert_eq!(plan_of("PUT", &path, None), object(&path), "{sub}");
        }
        assert_eq!(
            plan_of("POST", "/api/v1/namespaces/shop/pods/web-1/eviction", None),
            object("/api/v1/namespaces/shop/pods/web-1"),
            "an eviction deletes its pod"
        );
        assert_eq!(
            plan_of("DELETE", "/api/v1/namespaces/shop", None),
            object("/api/v1/namespaces/shop"),
            "a namespace is a cluster-scoped object"
        );
        assert_eq!(
            plan_of("POST", "/api/v1/namespaces/shop/configmaps", None),
            Some(Plan::Create)
        );
    }

    #[test]
    fn what_undo_cannot_revert_and_reads_are_not_imaged() {
        for (method, path) in [
            ("GET", "/api/v1/namespaces/shop/configmaps/web"),
            ("GET", "/api/v1/namespaces/shop/configmaps"),
            ("POST", "/api/v1/namespaces/shop/pods/web-1/exec"),
            ("POST", "/api/v1/namespaces/shop/serviceaccounts/ci/token"),
            ("POST", "/api/v1/namespaces/shop/pods/web-1/binding"),
            (
                "PUT",
                "/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval",
            ),
            (
                "PATCH",
                "/api/v1/namespaces/shop/pods/web-1/ephemeralcontainers",
            ),
            (
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            ),
        ] {
            assert_eq!(plan_of(method, path, None), None, "{method} {path}");
        }
    }

    #[test]
    fn a_deletecollection_lists_with_its_selectors_and_one_past_the_bound() {
        let query = "labelSelector=app%3Dweb&fieldSelector=metadata.name%21%3Dkeep&dryRun=All&gracePeriodSeconds=0";
        let plan = plan_of("DELETE", "/api/v1/namespaces/shop/configmaps", Some(query));
        assert_eq!(
            plan,
            Some(Plan::Collection {
                path: "/api/v1/namespaces/shop/configmaps".into(),
                query: "labelSelector=app%3Dweb&fieldSelector=metadata.name%21%3Dkeep&limit=501"
                    .into()
            })
        );
    }

    fn store(max_list_items: usize) -> (tempfile::TempDir, ImageStore) {
        let dir = tempfile::tempdir().unwrap();
        let limits = crate::ledger::images::ImageLimits {
            max_list_items,
            ..Default::default()
        };
        let store =
            ImageStore::open(dir.path(), limits, None, crate::metrics::Metrics::new()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_collection_image_names_each_items_kind_and_keeps_the_bound() {
        let (_dir, store) = store(2);
        let list = |n: usize, more: &str| {
            let items: Vec<_> = (0..n)
                .map(|i| serde_json::json!({"metadata": {"name": format!("cm-{i}")}}))
                .collect();
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMapList",
                "metadata": {"resourceVersion": "9", "continue": more}, "items": items})
        };
        let record = collection_image(&store, list(2, ""), false);
        let image = store.get(record.digest().unwrap()).unwrap();
        assert_eq!(image["kind"], "List");
        assert_eq!(image["items"][1]["kind"], "ConfigMap");
        assert_eq!(image["items"][1]["apiVersion"], "v1");
        assert_eq!(image["items"][1]["metadata"]["name"], "cm-1");
        let too_large = ImageRecord::Withheld {
            reason: Withheld::TooLarge,
        };
        assert_eq!(collection_image(&store, list(3, ""), false), too_large);
        assert_eq!(
            collection_image(&store, list(2, "token"), false),
            too_large,
            "a list the apiserver cut short is longer than the bound"
        );
    }

    fn new_exchange() -> Exchange {
        Exchange::new(
            TraceId::random(),
            "127.0.0.1:1".parse().unwrap(),
            crate::proxy::AuthMode::Passthrough,
            &http::Method::PATCH,
            &http::Uri::from_static("/"),
            &http::HeaderMap::new(),
        )
    }

    #[test]
    fn the_gates_target_decides_and_the_image_adds_its_identity() {
        let mut exchange = new_exchange();
        exchange.target = Some(TargetRecord {
            found: true,
            ..TargetRecord::default()
        });
        let image = ImageRecord::Withheld {
            reason: Withheld::Secret,
        };
        let fetched = TargetRecord::from_object(Some(
            &serde_json::json!({"metadata": {"resourceVersion": "5", "uid": "u"}}),
        ));
        merge_target(
            &mut exchange,
            PreImaged {
                target: Some(fetched),
                image: Some(image.clone()),
            },
        );
        let target = exchange.target.as_ref().unwrap();
        assert_eq!(target.resource_version.as_deref(), Some("5"));
        assert_eq!(exchange.pre_image, Some(image.clone()));

        let mut failed = new_exchange();
        merge_target(
            &mut failed,
            PreImaged {
                target: None,
                image: Some(image),
            },
        );
        assert_eq!(failed.pre_image, None, "no target record, no pre-image");
    }
}
