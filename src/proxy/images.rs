//! Pre- and post-images on the request path: which mutations are imaged ([`plan`]), what
//! is read of their target before forwarding ([`source`]), and the store writes, off the
//! event loop and beside what the request waits for anyway.
//!
//! - The pre-image's GET (or a deletecollection's LIST) runs beside the intent, or reuses
//!   the GET the gate or the effect fetch already made ([`source`]), or the image the
//!   session's dry run of the same request wrote ([`RehearsedImages`]): the careful path, a dry
//!   run then the real request, reads the object once.
//! - Its write (and `fdatasync`) starts when the request is forwarded ([`start`]) and is
//!   joined before the outcome is recorded ([`settle`]): it overlaps the upstream request.
//! - The post-image (the buffered answer) is staged before the outcome is recorded and
//!   written while the outcome's own fsync runs ([`settle`], [`beside`]).
//! - A dry run's pre-image is written beside the dry run's own record ([`rehearse`]), and
//!   taken by the real request only when the real answer confirms the dry run's prediction
//!   (the same effect digest); otherwise the entry says `withheld: unconfirmed`.
//!
//! Owns: the request path's use of [`ImageStore`]. Does not own: the store's format and
//! bounds (`ledger::images`), or the entry fields (`record`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

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
use crate::policy::{Fingerprint, Rehearsal};
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

/// What the pre-image is made from: the plan and what was read of its target, or the
/// image the session's dry run of the same request wrote.
pub(super) struct Source {
    plan: Plan,
    fetched: Option<Fetched>,
    rehearsed: Option<PreImaged>,
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
        Plan::Create => return Source::of(plan, None),
        Plan::Object { path } => match known {
            Some((known_path, fetched)) if known_path == *path => {
                return Source::of(plan, Some(fetched));
            }
            _ => path.clone(),
        },
        Plan::Collection { path, query } => format!("{path}?{query}"),
    };
    let fetched = gate::get(&proxy.upstream, &path_and_query, authorization, trace_id).await;
    Source::of(plan, Some(fetched))
}

impl Source {
    fn of(plan: Plan, fetched: Option<Fetched>) -> Source {
        Source {
            plan,
            fetched,
            rehearsed: None,
        }
    }

    /// The pre-image the session's dry run of this request wrote, for the object `plan`
    /// names: nothing is read before forwarding.
    pub(super) fn rehearsed(plan: Plan, imaged: PreImaged) -> Source {
        Source {
            plan,
            fetched: None,
            rehearsed: Some(imaged),
        }
    }
}

/// The images of one forwarded request: the pre-image being written, and whether its
/// answer is imaged too.
pub(super) struct Pending {
    store: Arc<ImageStore>,
    secret: bool,
    pre: Option<JoinHandle<PreImaged>>,
    /// The dry run's pre-image, already stored: the entry names it once the answer
    /// confirms the dry run's prediction.
    rehearsed: Option<PreImaged>,
}

/// What the pre-image's write returns for the entry.
#[derive(Debug, Clone)]
pub(super) struct PreImaged {
    target: Option<TargetRecord>,
    image: Option<ImageRecord>,
}

impl PreImaged {
    /// Nothing known of the target (its read failed): no `target`, no image.
    const UNKNOWN: PreImaged = PreImaged {
        target: None,
        image: None,
    };

    /// A dry run's pre-image the real answer did not confirm: the object may have changed
    /// in between, so neither the image nor the version read then stands for the object
    /// just before the real request. The object existed (the dry run found it); its uid
    /// stays when the answer's object has the same (it was not deleted and re-created).
    fn unconfirmed(self, same_object: bool) -> PreImaged {
        let target = self.target.map(|target| TargetRecord {
            resource_version: None,
            uid: target.uid.filter(|_| same_object),
            ..target
        });
        PreImaged {
            target,
            image: Some(ImageRecord::Withheld {
                reason: Withheld::Unconfirmed,
            }),
        }
    }
}

/// Starts writing the pre-image, on the blocking pool, as the request is forwarded.
pub(super) fn start(proxy: &Proxy, source: Option<Source>, info: &RequestInfo) -> Option<Pending> {
    let store = proxy.images.clone()?;
    let source = source?;
    let secret = is_secret(&info.api_group, &info.resource);
    let rehearsed = source.rehearsed;
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
    Some(Pending {
        store,
        secret,
        pre,
        rehearsed,
    })
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

/// What the answer says of the images: the object the apiserver answered with (`None`
/// for anything else), and whether it confirms a dry run's prediction.
#[derive(Default)]
pub(super) struct Answered {
    pub object: Option<Bytes>,
    /// The answer has the effect digest the session's dry run predicted
    /// ([`crate::policy::EffectBasis::measure`] measured the effect from the rehearsal).
    pub confirms_rehearsal: bool,
}

/// Joins the pre-image into the exchange (its record into `target`), and stages the
/// post-image of the answer: its record is in the exchange on return, and the returned
/// write is awaited [`beside`] the outcome's record.
pub(super) async fn settle(
    pending: Option<Pending>,
    exchange: &mut Exchange,
    answered: Answered,
) -> Option<JoinHandle<ImageRecord>> {
    let pending = pending?;
    if let Some(imaged) = pending.rehearsed {
        // The digest leaves the uid out: a delete and a re-create in between is a change.
        let same_object =
            imaged.target.as_ref().and_then(|t| t.uid.as_ref()) == exchange.object_uid.as_ref();
        let imaged = match answered.confirms_rehearsal && same_object {
            true => imaged,
            false => imaged.unconfirmed(same_object),
        };
        merge_target(exchange, imaged);
    }
    if let Some(pre) = pending.pre {
        let imaged = pre.await.unwrap_or(PreImaged {
            target: None,
            image: Some(ImageRecord::Withheld {
                reason: Withheld::Unavailable,
            }),
        });
        merge_target(exchange, imaged);
    }
    let answer = answered.object?;
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

/// Awaits `recording` (the outcome's durable record) and an image's write together.
pub(super) async fn beside<T, W>(
    recording: impl Future<Output = T>,
    write: Option<JoinHandle<W>>,
) -> T {
    let Some(write) = write else {
        return recording.await;
    };
    let (recorded, _) = tokio::join!(recording, write);
    recorded
}

/// Writes a successful dry run's pre-image (`body`, the object its effect was measured
/// against), to be awaited [`beside`] the dry run's record, and remembers it for the same
/// request sent for real in the session ([`RehearsedImages`]), tied to the rehearsal's
/// predicted post-image (its effect digest).
pub(super) fn rehearse(
    proxy: &Proxy,
    exchange: &Exchange,
    body: Bytes,
    post_image: [u8; 32],
) -> Option<JoinHandle<()>> {
    let store = proxy.images.clone()?;
    let info = exchange.info.as_deref()?;
    let path = object_path(info)?;
    let key = (exchange.session.clone(), exchange.fingerprint?);
    let secret = is_secret(&info.api_group, &info.resource);
    let remembered = Arc::clone(&proxy.rehearsed);
    Some(tokio::task::spawn_blocking(move || {
        let imaged = pre_image(&store, Fetched::Found(body), false, secret);
        remembered.remember(key, path, post_image, imaged);
    }))
}

/// The pre-images of dry runs whose real request has not come yet, by session and request
/// fingerprint (at most [`RehearsedImages::MAX_ENTRIES`], the oldest forgotten first). An entry
/// is taken at most once, and only for the rehearsal it was written with: the session
/// forgets its rehearsals when any mutation is sent for real, and a newer dry run of the
/// same request replaces the entry.
#[derive(Debug, Default)]
pub struct RehearsedImages {
    entries: Mutex<HashMap<(String, Fingerprint), Remembered>>,
}

#[derive(Debug)]
struct Remembered {
    path: String,
    post_image: [u8; 32],
    imaged: PreImaged,
    at: Instant,
}

impl RehearsedImages {
    /// Entries kept: each is a few hundred bytes (the image itself is on disk).
    pub const MAX_ENTRIES: usize = 4096;

    fn remember(
        &self,
        key: (String, Fingerprint),
        path: String,
        post_image: [u8; 32],
        imaged: PreImaged,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= Self::MAX_ENTRIES && !entries.contains_key(&key) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        let at = Instant::now();
        entries.insert(
            key,
            Remembered {
                path,
                post_image,
                imaged,
                at,
            },
        );
    }

    /// The pre-image the dry run that measured `rehearsal` wrote for the object at
    /// `path`, taken out of the memory.
    pub(super) fn take(
        &self,
        session: &str,
        fingerprint: Fingerprint,
        rehearsal: &Rehearsal,
        path: &str,
    ) -> Option<PreImaged> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (session.to_string(), fingerprint);
        let entry = entries.get(&key)?;
        if entry.post_image != rehearsal.post_image || entry.path != path {
            return None;
        }
        entries.remove(&key).map(|e| e.imaged)
    }

    /// Forgets what a newer dry run of the same request could not replace (its pre-image
    /// was not written).
    pub(super) fn forget(&self, session: &str, fingerprint: Fingerprint) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(&(session.to_string(), fingerprint));
    }
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

    fn rehearsal(post: u8) -> Rehearsal {
        Rehearsal {
            effect_paths: vec!["/data/a".into()],
            post_image: [post; 32],
        }
    }

    fn imaged(rv: &str) -> PreImaged {
        PreImaged {
            target: Some(TargetRecord {
                found: true,
                resource_version: Some(rv.into()),
                uid: Some("u".into()),
                ..TargetRecord::default()
            }),
            image: Some(ImageRecord::Stored {
                digest: format!("sha256:{rv}"),
                bytes: 1,
                encrypted: false,
            }),
        }
    }

    fn fingerprint(n: u8) -> Fingerprint {
        let info = info(
            "PATCH",
            &format!("/api/v1/namespaces/a/configmaps/c{n}"),
            None,
        );
        let analysis = crate::classify::Analysis::default();
        Fingerprint::of(&info, &analysis, None, &http::HeaderMap::new(), b"{}")
    }

    #[test]
    fn a_dry_runs_image_is_taken_once_and_only_for_its_own_rehearsal_and_object() {
        let remembered = RehearsedImages::default();
        let (path, fp) = ("/api/v1/namespaces/a/configmaps/c1", fingerprint(1));
        remembered.remember(("s".into(), fp), path.into(), [1; 32], imaged("5"));
        assert!(remembered.take("other", fp, &rehearsal(1), path).is_none());
        assert!(
            remembered.take("s", fp, &rehearsal(2), path).is_none(),
            "another prediction: a newer dry run's, not this image's"
        );
        assert!(remembered
            .take("s", fp, &rehearsal(1), "/api/v1/x")
            .is_none());
        let taken = remembered.take("s", fp, &rehearsal(1), path).unwrap();
        assert_eq!(taken.target.unwrap().resource_version.as_deref(), Some("5"));
        assert!(
            remembered.take("s", fp, &rehearsal(1), path).is_none(),
            "once"
        );

        remembered.remember(("s".into(), fp), path.into(), [1; 32], imaged("6"));
        remembered.forget("s", fp);
        assert!(remembered.take("s", fp, &rehearsal(1), path).is_none());
    }

    #[test]
    fn the_memory_of_dry_run_images_is_bounded_and_forgets_the_oldest() {
        let remembered = RehearsedImages::default();
        let path = "/p";
        for n in 0..=RehearsedImages::MAX_ENTRIES {
            let key = (format!("s{n}"), fingerprint(1));
            remembered.remember(key, path.into(), [1; 32], imaged("1"));
        }
        let entries = remembered.entries.lock().unwrap();
        assert_eq!(entries.len(), RehearsedImages::MAX_ENTRIES);
        assert!(!entries.contains_key(&("s0".to_string(), fingerprint(1))));
        assert!(
            entries.contains_key(&(format!("s{}", RehearsedImages::MAX_ENTRIES), fingerprint(1)))
        );
    }

    #[test]
    fn an_unconfirmed_dry_run_image_keeps_the_object_but_not_its_version_or_image() {
        let unconfirmed = imaged("5").unconfirmed(true);
        let target = unconfirmed.target.unwrap();
        assert!(target.found);
        assert_eq!(target.uid.as_deref(), Some("u"));
        assert_eq!(target.resource_version, None);
        let recreated = imaged("5").unconfirmed(false).target.unwrap();
        assert_eq!(recreated.uid, None, "another object of the same name");
        assert_eq!(
            unconfirmed.image,
            Some(ImageRecord::Withheld {
                reason: Withheld::Unconfirmed
            })
        );
    }
}
