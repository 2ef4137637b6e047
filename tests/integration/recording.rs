//! The ledger and the metrics of a real kubectl session through pathgate: every request
//! in the JSONL spool with its verdict, joined to the apiserver's audit log by trace id,
//! no Secret data on disk, the unsafe-mutation counter read back from a real Prometheus,
//! and no acknowledged mutation lost to `kill -9`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;

use crate::gateway::{
    cluster, kubectl, kubectl_in, kubectl_stdin, namespace, ok, send, GatewayBuilder,
};

const ENFORCE: &str = "mode: enforce\nsafety_gates:\n  dry_run_default: false\n";

/// Every entry of every spool segment in `dir`. Read while pathgate may still be writing,
/// so a last line without its newline (being written) is left out, as the ledger's own
/// readers do; every whole line must be one JSON entry.
pub fn spool_entries(dir: &Path) -> Vec<Value> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|segment| {
            String::from_utf8_lossy(&std::fs::read(segment).unwrap())
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str::<Value>(l).expect("each spool line is one JSON entry")
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn all_spool_text(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect()
}

/// Waits for the apiserver's audit event with this `auditID`.
fn audit_event(audit_log: &Path, audit_id: &str) -> Value {
    crate::support::eventually(Duration::from_secs(15), "the audit event", || {
        std::fs::read_to_string(audit_log)
            .ok()?
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| event["auditID"] == audit_id && event["stage"] == "ResponseComplete")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubectl_session_lands_in_the_jsonl_ledger_joined_to_the_audit_log() {
    let cluster = cluster();
    let spool = tempfile::tempdir().unwrap();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml(ENFORCE)
        .ledger(pathgate::ledger::LedgerSettings::new(spool.path()))
        .start()
        .await;
    let kc = gateway.kubeconfig_with_token(
        "admin",
        Some(&cluster.admin_token().unwrap()),
        Some("ledger-run"),
    );
    let ns = namespace(&cluster, "pg-ledger").await;
    let kn = kubectl_in(&cluster, &kc, &ns);
    ok(&kn
        .run(&["create", "configmap", "cfg", "--from-literal=a=1"])
        .await);
    ok(&kn
        .run(&[
            "patch",
            "configmap",
            "cfg",
            "--type=merge",
            "-p",
            r#"{"data":{"a":"2"}}"#,
        ])
        .await);
    ok(&kn
        .run(&[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=s3cr3t-value-42",
        ])
        .await);
    ok(&kn.run(&["get", "secret", "creds", "-o", "yaml"]).await);
    ok(&kn.run(&["get", "configmaps"]).await);
    ok(&kn
        .run_stdin(
            &["create", "-f", "-"],
            &crate::gateway::pod_manifest("doomed"),
        )
        .await);
    ok(&kn
        .run(&["delete", "pod", "doomed", "--grace-period=0", "--force"])
        .await);
    gateway.stop().await;

    let entries = spool_entries(spool.path());
    assert!(entries.len() >= 8, "{} entries", entries.len());
    for entry in &entries {
        assert_eq!(entry["schema"], "pathgate.ledger/v1");
        assert_eq!(entry["session"], "ledger-run");
        assert!(
            entry["response"]["status_code"].as_u64().is_some(),
            "every request has its outcome: {entry}"
        );
    }
    let find = |method: &str, suffix: &str| -> &Value {
        entries
            .iter()
            .find(|e| {
                e["request"]["method"] == method
                    && e["request"]["path"].as_str().unwrap().ends_with(suffix)
            })
            .unwrap_or_else(|| panic!("no {method} {suffix} entry"))
    };
    let patch = find("PATCH", "/configmaps/cfg");
    // Forwarded; only flagged for the missing dry run (the gate is off in this policy).
    assert_eq!(patch["decision"]["action"], "flag", "{}", patch["decision"]);
    assert_eq!(patch["decision"]["findings"][0]["rule"], "PG010");
    assert_eq!(patch["response"]["status_code"], 200);
    assert_eq!(patch["analysis"]["patch_type"], "merge-patch");
    assert!(patch["object"]["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));
    let delete = find("DELETE", "/pods/doomed");
    assert_eq!(delete["decision"]["action"], "rewrite");
    assert!(delete["decision"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["rule"] == "PG005"));
    assert_eq!(delete["grace_period"]["sent"], 0);
    assert_eq!(delete["grace_period"]["forwarded"], 30);
    // Each sent/forwarded pair is written for the verbs that take the parameter
    // (docs/ledger.md): dry run for writes, grace period for deletes, limit for lists.
    assert_eq!(delete["dry_run"]["sent"], false, "{delete}");
    assert_eq!(patch["dry_run"]["forwarded"], false, "{patch}");
    assert!(
        patch.get("grace_period").is_none() && patch.get("limit").is_none(),
        "{patch}"
    );
    let secret_read = find("GET", "/secrets/creds");
    assert!(secret_read["decision"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["rule"] == "PG012"));
    // A request without a body has no analysis (docs/ledger.md); the patch above has one.
    assert!(
        secret_read.get("analysis").is_none(),
        "a GET has nothing to analyse: {secret_read}"
    );
    // kubectl pages its lists: `limit=500`, forwarded as sent.
    let list = find("GET", "/configmaps");
    assert_eq!(list["request"]["verb"], "list", "{list}");
    assert_eq!(list["limit"]["sent"], 500, "{list}");
    assert_eq!(list["limit"]["forwarded"], 500, "{list}");
    assert!(
        list.get("dry_run").is_none() && list.get("grace_period").is_none(),
        "{list}"
    );
    for absent in ["dry_run", "grace_period", "limit"] {
        assert!(
            secret_read.get(absent).is_none(),
            "a GET takes no {absent}: {secret_read}"
        );
    }

    // The trace id is the apiserver's auditID, for allowed and rewritten requests alike.
    for entry in [patch, delete] {
        let trace_id = entry["trace_id"].as_str().unwrap();
        assert_eq!(entry["response"]["audit_id"], trace_id);
        let event = audit_event(&cluster.dir.audit_log(), trace_id);
        assert_eq!(
            event["requestURI"]
                .as_str()
                .unwrap()
                .split('?')
                .next()
                .unwrap(),
            entry["request"]["path"]
        );
        assert_eq!(
            event["verb"],
            entry["request"]["method"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .replace("put", "update")
        );
    }

    // Secret data never reaches the ledger (neither the value nor its base64).
    use base64::Engine;
    let text = all_spool_text(spool.path());
    assert!(!text.contains("s3cr3t-value-42"));
    assert!(!text.contains(&base64::engine::general_purpose::STANDARD.encode("s3cr3t-value-42")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_the_unsafe_mutation_counter() {
    let cluster = cluster();
    let prometheus = which("prometheus").unwrap_or_else(|| {
        panic!("prometheus is not installed: run `cargo xtask test`, which installs Debian's prometheus package")
    });
    let spool = tempfile::tempdir().unwrap();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml(ENFORCE)
        .ledger(pathgate::ledger::LedgerSettings::new(spool.path()))
        .start()
        .await;
    let admin = gateway.running.as_ref().unwrap().admin_addr.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: pathgate\n  static_configs:\n  - targets: ['{admin}']\n"),
    )
    .unwrap();
    let port = crate::gateway::free_port();
    let mut server = tokio::process::Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let kc = gateway.kubeconfig_with_token("admin", Some(&cluster.admin_token().unwrap()), None);
    let ns = namespace(&cluster, "pg-prom").await;
    ok(&kubectl_stdin(
        &cluster,
        &kc,
        &["-n", &ns, "create", "-f", "-"],
        Some(&crate::gateway::pod_manifest("p")),
    )
    .await);
    ok(&kubectl(
        &cluster,
        &kc,
        &[
            "-n",
            &ns,
            "delete",
            "pod",
            "p",
            "--grace-period=0",
            "--force",
        ],
    )
    .await);

    let query = "sum(pathgate_unsafe_mutations_total{rule=\"PG005\"})";
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query={}",
        percent_encode(query)
    );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        let answer = client
            .request(
                http::Request::get(&url)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await;
        if let Ok(response) = answer {
            use http_body_util::BodyExt;
            let body = response.into_body().collect().await.unwrap().to_bytes();
            if let Ok(json) = serde_json::from_slice::<Value>(&body) {
                if let Some(v) = json["data"]["result"][0]["value"][1].as_str() {
                    let v: f64 = v.parse().unwrap();
                    if v >= 1.0 {
                        break v;
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw the PG005 counter"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(value, 1.0, "one force delete, one unsafe mutation");
    server.kill().await.unwrap();
    gateway.stop().await;
}

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn which(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(binary))
        .find(|p| p.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_mutation_whose_response_was_received() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let certs = pathgate::tls::init_certs(&dir.path().join("certs"), &[], false).unwrap();
    let spool = dir.path().join("spool");
    let config = dir.path().join("pathgate.yaml");
    std::fs::write(&config, ENFORCE).unwrap();
    let (mut child, port) = crate::gateway::serve_process(
        &cluster,
        &dir.path().join("certs"),
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--ledger-dir".as_ref(),
            spool.as_os_str(),
        ],
        None,
    )
    .await;
    let ns = namespace(&cluster, "pg-kill").await;
    let client = crate::gateway::https_client(&certs.ca_cert);
    let token = cluster.admin_token().unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..25 {
        let body =
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"k{i}"}}}}"#);
        let request = http::Request::post(format!(
            "https://127.0.0.1:{port}/api/v1/namespaces/{ns}/configmaps"
        ))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
        let (status, headers, _) = send(&client, request).await;
        assert_eq!(status, 201);
        acknowledged.push(headers["x-execution-trace"].to_str().unwrap().to_string());
    }
    // No drain, no flush: the process dies now.
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let entries = spool_entries(&spool);
    for trace_id in &acknowledged {
        assert!(
            entries.iter().any(|e| e["trace_id"] == trace_id.as_str()
                && e["phase"] == "outcome"
                && e["response"]["status_code"] == 201),
            "acknowledged mutation {trace_id} is missing from the spool after kill -9"
        );
    }
}

/// FAULT INJECTION: the spool lives on a 64 KiB tmpfs that a filler file has filled, so
/// every spool write fails with ENOSPC, as on a full disk. Mounting needs root (this
/// workplace's tests run as root); the guard unmounts.
struct FullDisk {
    dir: tempfile::TempDir,
}

impl FullDisk {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs for the full-disk fault needs root"
        );
        let filler = dir.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        use std::io::Write;
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        FullDisk { dir }
    }

    fn settings(
        &self,
        on_failure: pathgate::ledger::OnFailure,
    ) -> pathgate::ledger::LedgerSettings {
        let mut settings = pathgate::ledger::LedgerSettings::new(self.dir.path().join("spool"));
        settings.on_failure = on_failure;
        settings
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_a_mutation_whose_intent_cannot_be_made_durable() {
    let cluster = cluster();
    let disk = FullDisk::new();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml(ENFORCE)
        .ledger(disk.settings(pathgate::ledger::OnFailure::FailClosedMutations))
        .start()
        .await;
    let kc = gateway.kubeconfig_with_token("admin", Some(&cluster.admin_token().unwrap()), None);
    let ns = namespace(&cluster, "pg-failclosed").await;
    // Reads do not wait for the ledger.
    ok(&kubectl(&cluster, &kc, &["-n", &ns, "get", "configmaps"]).await);
    let out = kubectl(
        &cluster,
        &kc,
        &["-n", &ns, "create", "configmap", "refused"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "the mutation must be refused: {stderr}"
    );
    assert!(stderr.contains("fail-closed-mutations"), "{stderr}");
    let admin = cluster.dir.admin_kubeconfig();
    let left = ok(&kubectl(
        &cluster,
        &admin,
        &[
            "-n",
            &ns,
            "get",
            "configmap",
            "refused",
            "--ignore-not-found",
            "-o",
            "name",
        ],
    )
    .await);
    assert_eq!(left.trim(), "", "it never reached the apiserver");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_forwards_and_returns_the_apiservers_answer_with_a_warning() {
    let cluster = cluster();
    let disk = FullDisk::new();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml(ENFORCE)
        .ledger(disk.settings(pathgate::ledger::OnFailure::FailOpen))
        .start()
        .await;
    let kc = gateway.kubeconfig_with_token("admin", Some(&cluster.admin_token().unwrap()), None);
    let ns = namespace(&cluster, "pg-failopen").await;
    let out = kubectl(&cluster, &kc, &["-n", &ns, "create", "configmap", "kept"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out);
    assert!(
        stderr.contains("could not record this mutation's outcome durably"),
        "{stderr}"
    );
    let admin = cluster.dir.admin_kubeconfig();
    ok(&kubectl(&cluster, &admin, &["-n", &ns, "get", "configmap", "kept"]).await);
    gateway.stop().await;
}
