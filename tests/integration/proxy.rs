//! `pathgate serve` in front of the real control plane: everything kubectl does still
//! works, every auth mode, and pathgate's own answers are Kubernetes `Status` objects.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use pathgate::proxy::AuthMode;

use crate::gateway::{
    cluster, failed, kubectl, kubectl_in, kubectl_stdin, namespace, ok, send, GatewayBuilder,
};

fn deployment(name: &str, image: &str) -> String {
    format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}"}},
"spec":{{"replicas":1,"selector":{{"matchLabels":{{"app":"{name}"}}}},
"template":{{"metadata":{{"labels":{{"app":"{name}"}}}},
"spec":{{"containers":[{{"name":"web","image":"{image}"}}]}}}}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_and_writes_through_pathgate_with_a_token() {
    let cluster = cluster();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .start()
        .await;
    let admin_token = cluster.admin_token().unwrap();
    let kc = gateway.kubeconfig_with_token("admin", Some(&admin_token), Some("run-7"));
    let ns = namespace(&cluster, "pg-proxy").await;
    let kn = kubectl_in(&cluster, &kc, &ns);

    // get / list
    assert!(ok(&kubectl(&cluster, &kc, &["get", "namespaces"]).await).contains(&ns));
    // create + get
    ok(&kn
        .run(&["create", "configmap", "c1", "--from-literal=k=v"])
        .await);
    let got = ok(&kn
        .run(&["get", "configmap", "c1", "-o", "jsonpath={.data.k}"])
        .await);
    assert_eq!(got, "v");

    // client-side and server-side apply
    let manifest = deployment("web", "nginx:1.27");
    ok(&kn.run_stdin(&["apply", "-f", "-"], &manifest).await);
    let manifest2 = deployment("web2", "nginx:1.27");
    ok(&kn
        .run_stdin(&["apply", "--server-side", "-f", "-"], &manifest2)
        .await);

    // patch of every type
    ok(&kn
        .run(&[
            "patch",
            "configmap",
            "c1",
            "--type=merge",
            "-p",
            r#"{"data":{"m":"1"}}"#,
        ])
        .await);
    ok(&kn
        .run(&[
            "patch",
            "configmap",
            "c1",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/data/j","value":"2"}]"#,
        ])
        .await);
    ok(&kn.run(&["patch", "deployment", "web", "--type=strategic", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}"#]).await);
    ok(&kn
        .run(&["set", "image", "deployment/web", "web=nginx:1.29"])
        .await);
    let image = ok(&kn
        .run(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await);
    assert_eq!(image, "nginx:1.29");
    let data = ok(&kn
        .run(&["get", "configmap", "c1", "-o", "jsonpath={.data}"])
        .await);
    assert!(
        data.contains("\"m\":\"1\"") && data.contains("\"j\":\"2\""),
        "{data}"
    );

    // replace
    let current = ok(&kn.run(&["get", "configmap", "c1", "-o", "json"]).await);
    let replaced = current.replace("\"k\": \"v\"", "\"k\": \"replaced\"");
    ok(&kn.run_stdin(&["replace", "-f", "-"], &replaced).await);
    let got = ok(&kn
        .run(&["get", "configmap", "c1", "-o", "jsonpath={.data.k}"])
        .await);
    assert_eq!(got, "replaced");

    // wait for a condition another writer makes true
    let waiter = {
        let cluster = cluster.clone();
        let kc = kc.clone();
        let ns = ns.clone();
        tokio::spawn(async move {
            kubectl(
                &cluster,
                &kc,
                &[
                    "-n",
                    &ns,
                    "wait",
                    "--for=jsonpath={.data.ready}=yes",
                    "configmap/c1",
                    "--timeout=60s",
                ],
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    ok(&kn
        .run(&[
            "patch",
            "configmap",
            "c1",
            "--type=merge",
            "-p",
            r#"{"data":{"ready":"yes"}}"#,
        ])
        .await);
    ok(&waiter.await.unwrap());

    // delete with grace period and cascade
    ok(&kn
        .run(&["delete", "configmap", "c1", "--grace-period=5"])
        .await);
    ok(&kn
        .run(&[
            "delete",
            "deployment",
            "web",
            "--cascade=foreground",
            "--wait=false",
        ])
        .await);
    ok(&kn
        .run(&[
            "delete",
            "deployment",
            "web2",
            "--cascade=orphan",
            "--wait=false",
        ])
        .await);
    let left = ok(&kn
        .run(&["get", "configmap", "c1", "--ignore-not-found", "-o", "name"])
        .await);
    assert_eq!(left.trim(), "");

    // every request was recorded in the kubeconfig's session, with the prefix stripped
    let records = gateway.collected.all();
    assert!(records.len() > 20, "{} records", records.len());
    assert!(
        records.iter().all(|r| r.session == "run-7"),
        "sessions: {:?}",
        records.iter().map(|r| &r.session).collect::<Vec<_>>()
    );
    assert!(records.iter().all(|r| !r.path.starts_with("/s/")));
    assert!(records
        .iter()
        .any(|r| r.method == "PATCH" && r.path.ends_with("/configmaps/c1")));
    // Every answer the apiserver gave carries its Audit-ID, and that is pathgate's trace id
    // (the apiserver adopted the one pathgate sent); the audit log shows each of them.
    let answered: Vec<_> = records.iter().filter(|r| r.status_code != 0).collect();
    assert!(answered.len() > 20, "{} answered", answered.len());
    for record in &answered {
        assert_eq!(
            record.audit_id.as_deref(),
            Some(&record.trace_id.to_hex()[..]),
            "{} {}: the apiserver's Audit-ID is pathgate's trace id",
            record.method,
            record.path
        );
    }
    let patch = answered
        .iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with("/configmaps/c1"))
        .unwrap();
    let needle = format!("\"auditID\":\"{}\"", patch.trace_id.to_hex());
    crate::support::eventually(
        Duration::from_secs(15),
        "the PATCH in the audit log",
        || {
            std::fs::read_to_string(cluster.dir.audit_log())
                .ok()
                .filter(|text| text.contains(&needle))
        },
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_reach_kubectl_through_pathgate() {
    let cluster = cluster();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .start()
        .await;
    let kc = gateway.kubeconfig_with_token("admin", Some(&cluster.admin_token().unwrap()), None);
    let ns = namespace(&cluster, "pg-watch").await;
    let mut watch = tokio::process::Command::new(&cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&kc)
        .args([
            "-n",
            &ns,
            "get",
            "configmaps",
            "-w",
            "--output-watch-events",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    ok(&kubectl(
        &cluster,
        &cluster.dir.admin_kubeconfig(),
        &["-n", &ns, "create", "configmap", "watched"],
    )
    .await);
    let stdout = watch.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("watched") {
                return line;
            }
        }
        panic!("watch ended without the event");
    })
    .await
    .expect("the ADDED event reached kubectl within 20s");
    assert!(seen.contains("ADDED"), "{seen}");
    watch.kill().await.unwrap();
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_list_of_a_thousand_configmaps_discovery_and_explain() {
    let cluster = cluster();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .start()
        .await;
    let kc = gateway.kubeconfig_with_token("admin", Some(&cluster.admin_token().unwrap()), None);
    let ns = namespace(&cluster, "pg-list").await;
    let items: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i:04}"}},"data":{{"i":"{i}"}}}}"#))
        .collect();
    let list = format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
        items.join(",")
    );
    // Created directly on the apiserver: this test is about reading through pathgate.
    ok(&kubectl_stdin(
        &cluster,
        &cluster.dir.admin_kubeconfig(),
        &["-n", &ns, "create", "-f", "-", "-o", "name"],
        Some(&list),
    )
    .await);

    let names = ok(&kubectl(
        &cluster,
        &kc,
        &[
            "-n",
            &ns,
            "get",
            "configmaps",
            "--chunk-size=100",
            "-o",
            "name",
        ],
    )
    .await);
    let count = names
        .lines()
        .filter(|l| l.starts_with("configmap/cm-"))
        .count();
    assert_eq!(count, 1000);
    let lists: Vec<_> = gateway
        .collected
        .all()
        .into_iter()
        .filter(|r| r.path.ends_with(&format!("/namespaces/{ns}/configmaps")))
        .collect();
    assert_eq!(lists.len(), 10, "ten pages of 100");
    assert!(lists
        .iter()
        .all(|r| r.query.as_deref().is_some_and(|q| q.contains("limit=100"))));
    assert!(
        lists
            .iter()
            .filter(|r| r.query.as_deref().is_some_and(|q| q.contains("continue=")))
            .count()
            == 9
    );

    let resources = ok(&kubectl(&cluster, &kc, &["api-resources"]).await);
    assert!(resources.contains("deployments") && resources.contains("configmaps"));
    let explain = ok(&kubectl(&cluster, &kc, &["explain", "deployment.spec.replicas"]).await);
    assert!(explain.contains("replicas"), "{explain}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_keeps_the_clients_identity_and_its_limits() {
    let cluster = cluster();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .start()
        .await;
    let agent = gateway.kubeconfig_with_token("agent", Some(&cluster.agent_token().unwrap()), None);
    // Read-only outside its namespaces, and never Secrets there.
    ok(&kubectl(&cluster, &agent, &["get", "configmaps", "-n", "default"]).await);
    let denied = failed(&kubectl(&cluster, &agent, &["get", "secrets", "-n", "kube-system"]).await);
    assert!(
        denied.contains("Forbidden") && denied.contains("\"agent\""),
        "{denied}"
    );
    let denied = failed(
        &kubectl(
            &cluster,
            &agent,
            &["-n", "default", "create", "configmap", "nope"],
        )
        .await,
    );
    assert!(denied.to_lowercase().contains("forbidden"), "{denied}");
    // Full rights in its own namespace.
    let name = crate::gateway::unique("pt");
    ok(&kubectl(
        &cluster,
        &agent,
        &["-n", "agent-sandbox", "create", "configmap", &name],
    )
    .await);
    ok(&kubectl(
        &cluster,
        &agent,
        &["-n", "agent-sandbox", "delete", "configmap", &name],
    )
    .await);
    // No token: the apiserver sees an anonymous user; pathgate adds nothing of its own.
    // (kubectl without credentials would prompt for a password, so this one is raw.)
    let client = gateway.client();
    let (status, _, body) = send(
        &client,
        http::Request::get(format!("{}/api/v1/namespaces", gateway.url))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("system:anonymous"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_uses_its_own_credentials_and_refuses_client_impersonation() {
    let cluster = cluster();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .auth(AuthMode::Sidecar)
        .start()
        .await;
    // The client has no credentials at all; pathgate's admin identity is used.
    let kc = gateway.kubeconfig_with_token("client", Some("not-a-cluster-token"), None);
    ok(&kubectl(&cluster, &kc, &["get", "secrets", "-n", "kube-system"]).await);
    let whoami = ok(&kubectl(
        &cluster,
        &kc,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    )
    .await);
    assert_eq!(whoami, "admin");
    // kubectl --as sends Impersonate-User: never forwarded under pathgate's credentials.
    let denied = failed(
        &kubectl(
            &cluster,
            &kc,
            &["--as=system:kube-controller-manager", "get", "namespaces"],
        )
        .await,
    );
    assert!(
        denied.contains("PG017") && denied.contains("Forbidden"),
        "{denied}"
    );
    let client = gateway.client();
    let request = http::Request::get(format!("{}/api/v1/namespaces", gateway.url))
        .header("impersonate-group", "system:masters")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = send(&client, request).await;
    assert_eq!(status, 403);
    let status_body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status_body["kind"], "Status");
    assert_eq!(status_body["reason"], "Forbidden");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonate_turns_the_client_certificate_into_the_users_identity() {
    let cluster = cluster();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .auth(AuthMode::Impersonate)
        .start()
        .await;
    let kc = gateway.kubeconfig_with_cert(testcluster::AGENT_USER, Some(testcluster::AGENT_GROUP));
    let whoami = ok(&kubectl(&cluster, &kc, &["auth", "whoami", "-o", "json"]).await);
    let whoami: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(
        whoami["status"]["userInfo"]["username"],
        testcluster::AGENT_USER
    );
    assert!(whoami["status"]["userInfo"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g == testcluster::AGENT_GROUP));
    let denied = failed(&kubectl(&cluster, &kc, &["get", "secrets", "-n", "kube-system"]).await);
    assert!(denied.contains("Forbidden"), "{denied}");
    ok(&kubectl(&cluster, &kc, &["get", "secrets", "-n", "agent-sandbox"]).await);
    // Without a client certificate the request is refused before it goes upstream.
    let anonymous = gateway.kubeconfig_with_token("anon", Some("x"), None);
    let err = failed(&kubectl(&cluster, &anonymous, &["get", "namespaces"]).await);
    assert!(
        err.contains("Unauthorized") || err.contains("certificate"),
        "{err}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_get_413_and_trace_ids_come_back() {
    let cluster = cluster();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .start()
        .await;
    let client = gateway.client();
    let token = cluster.admin_token().unwrap();
    let big = vec![b'a'; 3 * 1024 * 1024 + 1];
    let request = http::Request::post(format!(
        "{}/api/v1/namespaces/default/configmaps",
        gateway.url
    ))
    .header("authorization", format!("Bearer {token}"))
    .header("content-type", "application/json")
    .body(Full::new(Bytes::from(big)))
    .unwrap();
    let (status, headers, body) = send(&client, request).await;
    assert_eq!(status, 413);
    let status_body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status_body["kind"], "Status");
    assert_eq!(status_body["reason"], "RequestEntityTooLarge");
    assert!(headers.contains_key("x-execution-trace"));

    let request = http::Request::get(format!("{}/api/v1/namespaces/default", gateway.url))
        .header("authorization", format!("Bearer {token}"))
        .header("x-execution-trace", "spoofed-by-client")
        .header("audit-id", "spoofed-by-client")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = send(&client, request).await;
    assert_eq!(status, 200);
    let trace = headers["x-execution-trace"].to_str().unwrap();
    assert_eq!(trace.len(), 32);
    assert_ne!(trace, "spoofed-by-client");
    assert_eq!(
        headers["audit-id"].to_str().unwrap(),
        trace,
        "the apiserver adopted pathgate's id"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_a_503_status_and_readyz_says_so() {
    let cluster = cluster();
    // The admin kubeconfig with the server moved to a port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = listener.local_addr().unwrap().port();
    drop(listener);
    let text = std::fs::read_to_string(cluster.dir.admin_kubeconfig()).unwrap();
    let moved = text.replace(
        &format!("127.0.0.1:{}", cluster.port),
        &format!("127.0.0.1:{dead_port}"),
    );
    assert_ne!(text, moved);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.kubeconfig");
    std::fs::write(&path, moved).unwrap();
    let gateway = GatewayBuilder::new(&path).start().await;
    let kc = gateway.kubeconfig_with_token("admin", Some("t"), None);
    let err = failed(
        &kubectl(
            &cluster,
            &kc,
            &["get", "namespaces", "--request-timeout=10s"],
        )
        .await,
    );
    assert!(
        err.contains("unreachable") || err.contains("ServiceUnavailable") || err.contains("503"),
        "{err}"
    );
    let client = gateway.client();
    let (status, _, body) = send(
        &client,
        http::Request::get(format!("{}/api/v1/namespaces", gateway.url))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503);
    let status_body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status_body["reason"], "ServiceUnavailable");
    let readyz = reqwest_like_get(&format!("{}/readyz", gateway.admin_url())).await;
    assert_eq!(readyz.0, 503, "{}", readyz.1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer() {
    let cluster = cluster();
    // A policy and a ledger, as `pathgate serve` runs: the metrics are observed from the
    // ledger's entries, and every request gets a decision.
    let spool = tempfile::tempdir().unwrap();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml("mode: observe\n")
        .ledger(pathgate::ledger::LedgerSettings::new(spool.path()))
        .start()
        .await;
    let kc = gateway.kubeconfig_with_token("admin", Some(&cluster.admin_token().unwrap()), None);
    ok(&kubectl(&cluster, &kc, &["get", "namespaces"]).await);
    let (status, _) = reqwest_like_get(&format!("{}/healthz", gateway.admin_url())).await;
    assert_eq!(status, 200);
    let (status, body) = reqwest_like_get(&format!("{}/readyz", gateway.admin_url())).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = reqwest_like_get(&format!("{}/metrics", gateway.admin_url())).await;
    assert_eq!(status, 200);
    // The list kubectl just sent is counted, in Prometheus' text format.
    let listed = body
        .lines()
        .find(|line| {
            line.starts_with("pathgate_requests_total{")
                && line.contains(r#"verb="list""#)
                && line.contains(r#"decision="allow""#)
        })
        .unwrap_or_else(|| panic!("no counted list in:\n{body}"));
    let count: f64 = listed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{listed}");
    assert!(
        body.contains("# TYPE pathgate_requests_total counter"),
        "{body}"
    );
    gateway.stop().await;
}

/// A plain-HTTP GET (the admin listener), returning status and body text.
async fn reqwest_like_get(url: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let response = client
        .request(
            http::Request::get(url)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_with_client_tokens_admits_only_those_tokens() {
    let cluster = cluster();
    let mut builder = GatewayBuilder::new(cluster.dir.admin_kubeconfig()).auth(AuthMode::Sidecar);
    builder.settings.client_tokens = vec!["agent-shared-secret".into()];
    let gateway = builder.start().await;
    let good = gateway.kubeconfig_with_token("good", Some("agent-shared-secret"), None);
    ok(&kubectl(&cluster, &good, &["get", "namespaces"]).await);
    let bad = gateway.kubeconfig_with_token("bad", Some("guessed"), None);
    let err = failed(&kubectl(&cluster, &bad, &["get", "namespaces"]).await);
    assert!(
        err.contains("Unauthorized") || err.contains("logged in"),
        "{err}"
    );
    gateway.stop().await;
}
