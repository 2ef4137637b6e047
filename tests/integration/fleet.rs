//! The fleet path: two pathgate instances (each its own listener, spool and OTLP sink)
//! export their ledgers to ONE real OpenTelemetry Collector (the pinned build of
//! `controlplane/otelcol`: OTLP receiver, file exporter), kubectl sessions run through
//! both against the real control plane, and `pathgate autopsy` over the collector's file
//! gives the same verdicts as over the two instances' own spools.
//!
//! The collector's configuration is the deploy example's (deploy/otel-collector/), with the
//! test's ports and paths: spans and log records both go to one file, as a fleet that keeps
//! one file would, so the autopsy's reader must skip the spans that repeat the records.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pathgate::autopsy::input::{for_each_entry, LedgerSource};
use pathgate::ledger::{LedgerSettings, OtlpSettings, RetrySettings};
use serde_json::Value;
use testcluster::RunningCluster;

use crate::gateway::{
    cluster, free_port, kubectl, namespace, ok, pod_manifest, wait_listening, Gateway,
    GatewayBuilder,
};

/// The deploy example, read as shipped; the test only substitutes its endpoint and path.
const DEPLOY_CONFIG: &str = include_str!("../../deploy/otel-collector/collector.yaml");

/// The collector process, stopped on drop.
struct Collector {
    child: Child,
    log: PathBuf,
    /// The file exporter's output.
    file: PathBuf,
    otlp_http: u16,
}

impl Collector {
    async fn start(dir: &Path) -> Collector {
        let binary = testcluster::tools::OTELCOL
            .find()
            .unwrap_or_else(|error| panic!("{error}"));
        let otlp_http = free_port();
        let file = dir.join("fleet-ledger.jsonl");
        let config = dir.join("collector.yaml");
        let text = DEPLOY_CONFIG
            .replace("127.0.0.1:4318", &format!("127.0.0.1:{otlp_http}"))
            .replace(
                "/var/lib/pathgate-fleet/ledger.jsonl",
                &file.display().to_string(),
            );
        assert!(
            text.contains(&file.display().to_string()),
            "the example names its file"
        );
        std::fs::write(&config, text).unwrap();
        let log = dir.join("collector.log");
        let output = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the collector");
        wait_listening(otlp_http).await;
        Collector {
            child,
            log,
            file,
            otlp_http,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One pathgate instance exporting to the collector as `service_name`.
async fn instance(
    cluster: &RunningCluster,
    spool: &Path,
    collector: &Collector,
    service_name: &str,
) -> Gateway {
    let mut settings = LedgerSettings::new(spool);
    let mut otlp = OtlpSettings::new(
        format!("http://127.0.0.1:{}", collector.otlp_http)
            .parse()
            .unwrap(),
    );
    otlp.service_name = service_name.to_owned();
    otlp.retry = RetrySettings {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(800),
    };
    settings.otlp = Some(otlp);
    GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml("mode: observe\n")
        .ledger(settings)
        .start()
        .await
}

/// `(session, trace_id, phase)` of every entry of `source`, sorted.
fn entry_keys(source: LedgerSource) -> Vec<(String, String, String)> {
    let mut keys = Vec::new();
    // A collector file not yet written reads as empty.
    let _ = for_each_entry(&[source], None, &mut |entry| {
        keys.push((
            entry.session,
            entry.trace_id,
            entry.phase.as_str().to_owned(),
        ));
    });
    keys.sort();
    keys
}

/// Waits until the collector's file holds exactly the entries of both spools.
async fn delivered(collector: &Collector, spools: [&Path; 2]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut expected: Vec<_> = spools
            .iter()
            .flat_map(|spool| entry_keys(LedgerSource::Spool(spool.to_path_buf())))
            .collect();
        expected.sort();
        let found = entry_keys(LedgerSource::File(collector.file.clone()));
        if !expected.is_empty() && found == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the collector's file has {} entries, the spools {}; collector log:\n{}",
            found.len(),
            expected.len(),
            collector.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs the real `pathgate autopsy`; returns its exit code and JSON document.
fn autopsy(policy: &Path, inputs: &[&Path]) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .arg("autopsy")
        .args(["--format", "json", "--final-state", "pass", "--policy"])
        .arg(policy)
        .args(inputs)
        .output()
        .expect("pathgate autopsy runs");
    let document: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("exited"), document)
}

/// The runs of a document, by session.
fn runs_by_session(document: &Value) -> Vec<(String, Value)> {
    let mut runs: Vec<_> = document["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|run| (run["session"].as_str().unwrap().to_owned(), run.clone()))
        .collect();
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_through_one_collector_give_the_autopsy_the_verdicts_of_their_spools() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(dir.path()).await;
    let (spool_a, spool_b) = (dir.path().join("spool-a"), dir.path().join("spool-b"));
    let a = instance(&cluster, &spool_a, &collector, "pathgate-a").await;
    let b = instance(&cluster, &spool_b, &collector, "pathgate-b").await;
    let ns = namespace(&cluster, "pg-fleet").await;
    let other = namespace(&cluster, "pg-fleet-other").await;
    let admin = cluster.dir.admin_kubeconfig();
    ok(&crate::gateway::kubectl_stdin(
        &cluster,
        &admin,
        &["-n", &ns, "create", "-f", "-"],
        Some(&pod_manifest("victim")),
    )
    .await);
    let token = cluster.admin_token().unwrap();

    // Instance A: a safe run (a dry run, then the create the policy allows).
    let kc = a.kubeconfig_with_token("fleet-safe", Some(&token), Some("fleet-safe"));
    let create = ["-n", &ns, "create", "configmap", "made-by-fleet"];
    ok(&kubectl(
        &cluster,
        &kc,
        &[&create[..], &["--dry-run=server"]].concat(),
    )
    .await);
    ok(&kubectl(&cluster, &kc, &create).await);
    // Instance A: an unsafe run (a mutation out of the run's scope).
    let kc = a.kubeconfig_with_token(
        "fleet-out-of-scope",
        Some(&token),
        Some("fleet-out-of-scope"),
    );
    ok(&kubectl(
        &cluster,
        &kc,
        &["-n", &other, "create", "configmap", "made-elsewhere"],
    )
    .await);
    // Instance B: an unsafe run (a zero-grace forced pod delete).
    let kc = b.kubeconfig_with_token("fleet-zero-grace", Some(&token), Some("fleet-zero-grace"));
    ok(&kubectl(
        &cluster,
        &kc,
        &[
            "-n",
            &ns,
            "delete",
            "pod",
            "victim",
            "--grace-period=0",
            "--force",
            "--wait=false",
        ],
    )
    .await);
    // Instance B: a read-only run.
    let kc = b.kubeconfig_with_token("fleet-reader", Some(&token), Some("fleet-reader"));
    ok(&kubectl(&cluster, &kc, &["-n", &ns, "get", "configmaps"]).await);

    a.stop().await;
    b.stop().await;
    delivered(&collector, [&spool_a, &spool_b]).await;
    let file = std::fs::read_to_string(&collector.file).unwrap();
    assert!(
        file.lines().any(|l| l.starts_with(r#"{"resourceSpans""#)),
        "the file holds the spans too, which the autopsy must skip"
    );

    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!("in_scope_namespaces: [{ns}]\nallowed_creates:\n- {{namespace: {ns}, name: 'made-*'}}\n"),
    )
    .unwrap();
    let (spools_code, spools) = autopsy(&policy, &[&spool_a, &spool_b]);
    let (fleet_code, fleet) = autopsy(&policy, &[&collector.file]);

    assert_eq!(
        runs_by_session(&fleet),
        runs_by_session(&spools),
        "the same runs and verdicts"
    );
    assert_eq!(
        (fleet_code, spools_code),
        (3, 3),
        "an unsafe pass among the runs: {fleet:#}"
    );
    let triage: Vec<_> = runs_by_session(&fleet)
        .iter()
        .map(|(session, run)| (session.clone(), run["triage"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        triage,
        [
            ("fleet-out-of-scope".to_owned(), "unsafe_pass".to_owned()),
            ("fleet-reader".to_owned(), "safe_pass".to_owned()),
            ("fleet-safe".to_owned(), "safe_pass".to_owned()),
            ("fleet-zero-grace".to_owned(), "unsafe_pass".to_owned()),
        ]
    );
}
