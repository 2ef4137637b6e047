//! Bodies that stall pathgate's parsers or that pathgate would decode differently than the
//! apiserver does (see `evasion/mod.rs`).
//!
//! - **Parser stalls**: a 140 KB `application/apply-patch+yaml` body of 70,000 nested `[`
//!   held a worker for 12–26 s (100,000: over 60 s) while every other client waited, and in
//!   passthrough mode it needs no credentials. Such a body is refused (400, naming the
//!   bound) before the apiserver sees it, at once, and another client's GET through the same
//!   pathgate is answered promptly while the attack runs.
//! - **Decoding differences**: a DELETE body `<<: {gracePeriodSeconds: 0}` sent as
//!   `application/yaml` was read as "no grace period" while the apiserver applied 0. Merge
//!   keys, anchors, aliases, tags, repeated keys and extra documents are refused (400);
//!   so are bodies that are not UTF-8 (Go reads invalid bytes in a JSON string as U+FFFD).
//!   YAML 1.1 spellings (`0x0`, `0.0`, `1e3`) are read as the apiserver reads them, which
//!   each test checks against the pod the apiserver holds afterwards. Field names are
//!   case-sensitive on both sides.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use pathgate::proxy::Exchange;
use testcluster::RunningCluster;

use crate::gateway::{cluster, kubectl, namespace, ok, send, Gateway, GatewayBuilder};

/// Enforce mode without the dry-run rule (it would flag every mutation here).
const ENFORCE: &str = "mode: enforce\nrules:\n  PG010: off\n";

/// How long a refused body or another client's GET may take. Loose for a debug build on a
/// loaded 2-core machine; the probe's body held the worker for 12 s and more.
const PROMPT: Duration = Duration::from_secs(2);

struct Rig {
    cluster: RunningCluster,
    gateway: Gateway,
    ns: String,
}

impl Rig {
    async fn start(prefix: &str) -> Rig {
        let cluster = cluster();
        let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
            .policy_yaml(ENFORCE)
            .start()
            .await;
        let ns = namespace(&cluster, prefix).await;
        Rig {
            cluster,
            gateway,
            ns,
        }
    }

    /// A raw request through pathgate, with the admin token unless `anonymous`.
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
        anonymous: bool,
    ) -> (StatusCode, String) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.gateway.url))
            .header("content-type", content_type)
            .header("accept", "application/json");
        if !anonymous {
            request = request.header(
                "authorization",
                format!("Bearer {}", self.cluster.admin_token().unwrap()),
            );
        }
        let request = request.body(Full::new(body.into())).unwrap();
        let (status, _, body) = send(&self.gateway.client(), request).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Creates a pod bound to a node that does not exist: a graceful delete stays pending
    /// (no kubelet confirms it), so the grace period the apiserver applied stays visible.
    async fn bound_pod(&self, name: &str) {
        let manifest = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"nodeName":"ghost-node","containers":[{{"name":"c","image":"busybox"}}]}}}}"#
        );
        let (status, body) = self
            .send(
                "POST",
                &format!("/api/v1/namespaces/{}/pods", self.ns),
                "application/json",
                manifest,
                false,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// The pod as the apiserver holds it (read with the admin kubeconfig, not through
    /// pathgate); `None` once it is gone.
    async fn pod(&self, name: &str) -> Option<serde_json::Value> {
        let admin = self.cluster.dir.admin_kubeconfig();
        let out = kubectl(
            &self.cluster,
            &admin,
            &["get", "pod", name, "-n", &self.ns, "-o", "json"],
        )
        .await;
        if out.status.success() {
            return Some(serde_json::from_slice(&out.stdout).unwrap());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("NotFound"), "{stderr}");
        None
    }

    /// Sends a DELETE of `pod` with this DeleteOptions body.
    async fn delete(&self, pod: &str, content_type: &str, body: &str) -> (StatusCode, String) {
        let path = format!("/api/v1/namespaces/{}/pods/{pod}", self.ns);
        self.send("DELETE", &path, content_type, body.to_owned(), false)
            .await
    }

    /// The last exchange pathgate recorded for a path ending in `suffix`.
    fn recorded(&self, method: &str, suffix: &str) -> Exchange {
        self.gateway
            .collected
            .all()
            .into_iter()
            .rev()
            .find(|e| e.method == method && e.path.ends_with(suffix))
            .unwrap_or_else(|| panic!("pathgate recorded no {method} ...{suffix}"))
    }

    async fn stop(self) {
        self.gateway.stop().await;
    }
}

fn nested(n: usize) -> String {
    "[".repeat(n) + &"]".repeat(n)
}

/// GETs a list through pathgate in a loop until `stop` is set; returns the slowest answer.
async fn slowest_get(rig: &Rig, stop: &std::sync::atomic::AtomicBool) -> (Duration, usize) {
    let path = format!("/api/v1/namespaces/{}/configmaps", rig.ns);
    let (mut slowest, mut count) = (Duration::ZERO, 0);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) || count == 0 {
        let started = Instant::now();
        let mut request = http::Request::get(format!("{}{path}", rig.gateway.url))
            .header(
                "authorization",
                format!("Bearer {}", rig.cluster.admin_token().unwrap()),
            )
            .body(Full::new(Bytes::new()))
            .unwrap();
        request
            .headers_mut()
            .insert("accept", "application/json".parse().unwrap());
        let (status, _, _) = send(&rig.gateway.client(), request).await;
        assert_eq!(status, StatusCode::OK);
        slowest = slowest.max(started.elapsed());
        count += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (slowest, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_yaml_apply_without_credentials_is_refused_at_once_and_stalls_no_one() {
    let rig = Rig::start("parsers-nested").await;
    let target = format!("/api/v1/namespaces/{}/configmaps/c", rig.ns);
    let stop = std::sync::atomic::AtomicBool::new(false);
    // The probe's body (140 KB, 70,000 levels), the 100,000-level one, and variants in
    // block style, in flow mappings, and in JSON bodies.
    let bodies: Vec<(&str, String)> = vec![
        ("application/apply-patch+yaml", nested(70_000)),
        ("application/apply-patch+yaml", "[".repeat(100_000)),
        ("application/apply-patch+yaml", "- ".repeat(70_000) + "1"),
        (
            "application/apply-patch+yaml",
            "x: ".to_owned() + &"{".repeat(70_000),
        ),
        ("application/apply-patch+yaml", "[\n".repeat(70_000)),
        ("application/merge-patch+json", nested(70_000)),
        ("application/json-patch+json", "[".repeat(100_000)),
        (
            "application/strategic-merge-patch+json",
            "{\"a\":".repeat(50_000) + "1" + &"}".repeat(50_000),
        ),
    ];
    let attack = async {
        let mut slowest = Duration::ZERO;
        for _round in 0..3 {
            for (content_type, body) in &bodies {
                let started = Instant::now();
                let (status, message) = rig
                    .send("PATCH", &target, content_type, body.clone(), true)
                    .await;
                let took = started.elapsed();
                assert_eq!(status, StatusCode::BAD_REQUEST, "{content_type}: {message}");
                assert!(
                    message.contains("\"kind\":\"Status\"")
                        && message.contains("more than 127 levels deep"),
                    "{content_type}: {message}"
                );
                assert!(took < PROMPT, "{content_type} took {took:?}");
                slowest = slowest.max(took);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        slowest
    };
    let (slowest_refusal, (slowest_get, gets)) = tokio::join!(attack, slowest_get(&rig, &stop));
    assert!(
        slowest_get < PROMPT,
        "another client's GET waited {slowest_get:?} (of {gets}) while the bodies were sent"
    );
    eprintln!(
        "slowest refusal {slowest_refusal:?}, slowest concurrent GET {slowest_get:?} of {gets}"
    );
    let refused = rig.recorded("PATCH", "/configmaps/c");
    assert_eq!(refused.status_code, 400);
    let analysis = refused.analysis.as_ref().expect("the analysis is recorded");
    assert!(analysis.refusal.is_some() && analysis.opaque_reason.is_some());
    let out = kubectl(
        &rig.cluster,
        &rig.cluster.dir.admin_kubeconfig(),
        &["get", "configmap", "c", "-n", &rig.ns],
    )
    .await;
    assert!(!out.status.success(), "nothing reached the apiserver");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_yaml_bodies_are_read_off_the_event_loop_while_others_are_answered() {
    let rig = Rig::start("parsers-large").await;
    // Flow-style YAML is the slowest to read per byte, and this one is legal: pathgate reads
    // it in full. The resource does not exist, so the apiserver answers 404 without reading
    // the body: what the senders wait for is pathgate's reading. Four at once would hold
    // both of the runtime's workers if that reading ran on them.
    let entries: Vec<String> = (0..60_000).map(|i| format!("k{i}: v")).collect();
    let body = format!(
        "apiVersion: v1\nkind: Widget\nmetadata: {{name: big}}\ndata: {{{}}}\n",
        entries.join(", ")
    );
    assert!(body.len() > 500_000);
    let path = format!(
        "/api/v1/namespaces/{}/widgets/big?fieldManager=test",
        rig.ns
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let one = || async {
        let started = Instant::now();
        let (status, message) = rig
            .send(
                "PATCH",
                &path,
                "application/apply-patch+yaml",
                body.clone(),
                false,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{message}");
        started.elapsed()
    };
    let senders = async {
        let mut answers = Vec::new();
        for _round in 0..2 {
            let (a, b, c, d) = tokio::join!(one(), one(), one(), one());
            answers.extend([a, b, c, d]);
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        answers
    };
    let (answers, (slowest_get, gets)) = tokio::join!(senders, slowest_get(&rig, &stop));
    eprintln!(
        "large bodies answered in {answers:?}; slowest concurrent GET {slowest_get:?} of {gets}"
    );
    assert!(
        slowest_get < PROMPT,
        "another client's GET waited {slowest_get:?} while large bodies were read"
    );
    let read = rig.recorded("PATCH", "/widgets/big");
    let analysis = read.analysis.as_ref().unwrap();
    assert_eq!(analysis.refusal, None);
    assert!(analysis.payload_leaves >= 60_000, "every entry was read");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_merge_keys_anchors_and_tags_cannot_hide_a_zero_grace_pod_delete() {
    let rig = Rig::start("parsers-merge").await;
    rig.bound_pod("victim").await;
    for body in [
        // The probe.
        "<<: {gracePeriodSeconds: 0}\n",
        // Its variants: block merge, merge of a list, merge of an alias, a plain alias,
        // tags, a repeated key, a second document, a YAML 1.1 line break.
        "propagationPolicy: Background\n<<:\n  gracePeriodSeconds: 0\n",
        "<<: [{propagationPolicy: Background}, {gracePeriodSeconds: 0}]\n",
        "defaults: &d {gracePeriodSeconds: 0}\n<<: *d\n",
        "zero: &z 0\ngracePeriodSeconds: *z\n",
        "gracePeriodSeconds: !!int 0\n",
        "!!map {gracePeriodSeconds: 0}\n",
        "gracePeriodSeconds: 30\ngracePeriodSeconds: 0\n",
        "gracePeriodSeconds: 0\n---\ngracePeriodSeconds: 30\n",
        "gracePeriodSeconds: 30\u{2028}gracePeriodSeconds: 0\n",
    ] {
        let (status, message) = rig.delete("victim", "application/yaml", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {message}");
        assert!(
            message.contains("pathgate refuses this request")
                && message.contains("application/json"),
            "{body:?}: {message}"
        );
        let pod = rig.pod("victim").await.expect("the pod was not deleted");
        assert!(
            pod["metadata"]["deletionTimestamp"].is_null(),
            "{body:?} started a deletion"
        );
    }
    // An eviction carrying the same options is a pod delete too.
    let eviction = "apiVersion: policy/v1\nkind: Eviction\nmetadata: {name: victim}\n\
                    deleteOptions:\n  <<: {gracePeriodSeconds: 0}\n";
    let (status, message) = rig
        .send(
            "POST",
            &format!("/api/v1/namespaces/{}/pods/victim/eviction", rig.ns),
            "application/yaml",
            eviction,
            false,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    let pod = rig
        .pod("victim")
        .await
        .expect("the eviction did not happen");
    assert!(pod["metadata"]["deletionTimestamp"].is_null());
    // Invalid UTF-8 in a JSON string: Go's decoder reads it as U+FFFD and would apply 0.
    let (status, message) = rig
        .send(
            "DELETE",
            &format!("/api/v1/namespaces/{}/pods/victim", rig.ns),
            "application/json",
            Bytes::from_static(b"{\"gracePeriodSeconds\":0,\"note\":\"\xff\"}"),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    assert!(message.contains("not UTF-8"), "{message}");
    let pod = rig.pod("victim").await.expect("the pod was not deleted");
    assert!(pod["metadata"]["deletionTimestamp"].is_null());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_1_1_spellings_of_zero_grace_are_read_as_zero_and_never_forwarded() {
    let rig = Rig::start("parsers-zero").await;
    rig.bound_pod("victim").await;
    // go-yaml v2 reads each as 0 (0.0 and 0e5 are floats that json.Marshal writes as 0).
    for spelling in [
        "0x0", "00", "0o0", "0b0", "0_0", "+0", "-0", "0.0", "0e5", "-0.0",
    ] {
        let body = format!("gracePeriodSeconds: {spelling}\npropagationPolicy: Background\n");
        let (status, message) = rig.delete("victim", "application/yaml", &body).await;
        // PG005 would raise the grace period, which pathgate can do only in a JSON body.
        assert_eq!(status, StatusCode::FORBIDDEN, "{spelling}: {message}");
        assert!(
            message.contains("PG005") && message.contains("Send DeleteOptions as JSON"),
            "{spelling}: {message}"
        );
        let pod = rig.pod("victim").await.expect("the pod was not deleted");
        assert!(
            pod["metadata"]["deletionTimestamp"].is_null(),
            "{spelling} started a deletion"
        );
        let delete = rig.recorded("DELETE", "/pods/victim");
        let options = delete.analysis.as_ref().unwrap().delete_options.as_ref();
        assert_eq!(
            options.and_then(|o| o.grace_period_seconds),
            Some(0),
            "{spelling}"
        );
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_pathgate_reads_is_the_one_the_apiserver_applies() {
    let rig = Rig::start("parsers-agree").await;
    // (content type, body, the grace period both read). A case variant of the field name is
    // an unknown field to the apiserver's case-sensitive decoder: the pod's own 30 s apply.
    let cases = [
        ("application/yaml", "gracePeriodSeconds: 0x2d\n", Some(45)),
        ("application/yaml", "gracePeriodSeconds: 1e2\n", Some(100)),
        ("application/yaml", "gracePeriodSeconds: 070\n", Some(56)),
        (
            "application/yaml",
            "{\"gracePeriodSeconds\": 40.0}\n",
            Some(40),
        ),
        ("application/yaml", "GracePeriodSeconds: 0\n", None),
        ("application/yaml", "graceperiodseconds: 0\n", None),
        ("application/json", r#"{"GracePeriodSeconds":0}"#, None),
        ("application/json", r#"{"graceperiodseconds":0}"#, None),
        ("application/json", r#"{"GRACEPERIODSECONDS":0}"#, None),
    ];
    for (i, (content_type, body, grace)) in cases.into_iter().enumerate() {
        let pod = format!("victim-{i}");
        rig.bound_pod(&pod).await;
        let (status, message) = rig.delete(&pod, content_type, body).await;
        assert_eq!(status, StatusCode::OK, "{body:?}: {message}");
        let read = rig.recorded("DELETE", &format!("/pods/{pod}"));
        let options = read.analysis.as_ref().unwrap().delete_options.as_ref();
        assert_eq!(
            options.and_then(|o| o.grace_period_seconds),
            grace,
            "{body:?}"
        );
        let held = rig
            .pod(&pod)
            .await
            .expect("a graceful delete keeps the pod");
        assert_eq!(
            held["metadata"]["deletionGracePeriodSeconds"],
            grace.unwrap_or(30),
            "{body:?}: the apiserver applied another grace period than pathgate read"
        );
    }
    ok(&kubectl(
        &rig.cluster,
        &rig.cluster.dir.admin_kubeconfig(),
        &["get", "pods", "-n", &rig.ns],
    )
    .await);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_resolves_anchors_and_merge_keys_itself_so_its_applies_pass() {
    // The refusals concern raw YAML bodies: kubectl reads a manifest's anchors and merge keys
    // on the client and sends JSON, which pathgate reads as usual.
    let rig = Rig::start("parsers-kubectl").await;
    let kc = rig.gateway.kubeconfig_with_token(
        "admin",
        Some(&rig.cluster.admin_token().unwrap()),
        Some(&crate::gateway::unique("session")),
    );
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: anchored\n\
                    data:\n  base: &b shared\n  copy: *b\n  <<: {merged: yes-it-is}\n";
    let out = crate::gateway::kubectl_stdin(
        &rig.cluster,
        &kc,
        &["apply", "--server-side", "-n", &rig.ns, "-f", "-"],
        Some(manifest),
    )
    .await;
    ok(&out);
    let applied = rig.recorded("PATCH", "/configmaps/anchored");
    assert_eq!(applied.analysis.as_ref().unwrap().refusal, None);
    let out = kubectl(
        &rig.cluster,
        &rig.cluster.dir.admin_kubeconfig(),
        &[
            "get",
            "configmap",
            "anchored",
            "-n",
            &rig.ns,
            "-o",
            "jsonpath={.data.copy}",
        ],
    )
    .await;
    assert_eq!(ok(&out), "shared");
    rig.stop().await;
}
