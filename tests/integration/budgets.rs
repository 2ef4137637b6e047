//! PG019 session-budget through pathgate with real kubectl against the real control plane:
//! what kubectl prints past each budget (and how long it takes: client-go retries a 429
//! only when it carries `Retry-After`), what pathgate recorded, what the cluster holds
//! afterwards (read with the admin kubeconfig, not through pathgate), and what the autopsy
//! makes of a run that hit its budget. Every test works in its own namespace and session.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use pathgate::policy::{Action, Budget};
use pathgate::proxy::Exchange;
use serde_json::Value;
use testcluster::RunningCluster;

use crate::gateway::{
    cluster, failed, kubectl, kubectl_stdin, namespace, ok, send, unique, Gateway, GatewayBuilder,
};

/// Every mutation needs no dry run first (PG010 off), so that only budgets refuse.
const ENFORCE: &str = "mode: enforce\nrules:\n  PG010: off\n";

/// One test's pathgate (collecting exchanges, or writing a ledger), a kubeconfig through
/// it in a session of its own, and a namespace holding ConfigMap `app`.
struct Rig {
    cluster: RunningCluster,
    gateway: Gateway,
    kc: PathBuf,
    ns: String,
}

impl Rig {
    async fn start(policy: &str, budgets: &str) -> Rig {
        Rig::start_with(
            GatewayBuilder::new(cluster().dir.admin_kubeconfig()),
            policy,
            budgets,
        )
        .await
    }

    async fn start_with(builder: GatewayBuilder, policy: &str, budgets: &str) -> Rig {
        let cluster = cluster();
        let gateway = builder
            .policy_yaml(&format!("{policy}budgets:\n{budgets}"))
            .start()
            .await;
        let kc = gateway.kubeconfig_with_token(
            "agent",
            Some(&cluster.admin_token().unwrap()),
            Some(&unique("budget-session")),
        );
        let ns = namespace(&cluster, "pg-budget").await;
        let configmap = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"app","namespace":"{ns}"}},"data":{{"n":"0"}}}}"#
        );
        let admin = cluster.dir.admin_kubeconfig();
        ok(&kubectl_stdin(&cluster, &admin, &["create", "-f", "-"], Some(&configmap)).await);
        Rig {
            cluster,
            gateway,
            kc,
            ns,
        }
    }

    /// kubectl through pathgate in the test's namespace; stdin is closed.
    async fn kubectl(&self, args: &[&str]) -> Output {
        let args = [&["-n", self.ns.as_str()][..], args].concat();
        kubectl(&self.cluster, &self.kc, &args).await
    }

    /// `kubectl patch configmap app` setting `data.n`.
    async fn patch(&self, n: &str, extra: &[&str]) -> Output {
        let body = format!(r#"{{"data":{{"n":"{n}"}}}}"#);
        let args = [
            &["patch", "configmap", "app", "--type=merge", "-p", &body][..],
            extra,
        ]
        .concat();
        self.kubectl(&args).await
    }

    /// `data.n` of ConfigMap `app` as the apiserver holds it.
    async fn stored_n(&self) -> String {
        let admin = self.cluster.dir.admin_kubeconfig();
        ok(&kubectl(
            &self.cluster,
            &admin,
            &[
                "-n",
                &self.ns,
                "get",
                "configmap",
                "app",
                "-o",
                "jsonpath={.data.n}",
            ],
        )
        .await)
    }

    /// Recorded exchanges of `method` on a path ending in `suffix`, waiting briefly for
    /// reads (recorded when their stream ends, possibly just after kubectl exits).
    async fn recorded(&self, method: &str, suffix: &str, at_least: usize) -> Vec<Exchange> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<Exchange> = self
                .gateway
                .collected
                .all()
                .into_iter()
                .filter(|e| e.method == method && e.path.ends_with(suffix))
                .collect();
            if found.len() >= at_least || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A raw GET of ConfigMap `app` through pathgate, in session `budget-raw`.
    async fn raw_get(&self) -> (http::StatusCode, http::HeaderMap, Bytes) {
        let path = format!("/api/v1/namespaces/{}/configmaps/app", self.ns);
        let request = http::Request::get(format!("{}{path}", self.gateway.url))
            .header(
                "authorization",
                format!("Bearer {}", self.cluster.admin_token().unwrap()),
            )
            .header("x-pathgate-session", "budget-raw")
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(&self.gateway.client(), request).await
    }
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn pg019(exchange: &Exchange) -> (Action, Option<(Budget, u64, u64)>) {
    let decision = exchange.decision.as_ref().expect("a decision");
    let finding = decision
        .findings
        .iter()
        .find(|f| f.rule == "PG019")
        .unwrap_or_else(|| panic!("no PG019 finding: {decision:#?}"));
    let budget = decision.budget.map(|b| (b.budget, b.limit, b.used));
    (finding.action, budget)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_third_kubectl_patch_past_two_mutations_is_refused_429_at_once() {
    let rig = Rig::start(ENFORCE, "  mutations: 2\n").await;
    ok(&rig.patch("1", &[]).await);
    ok(&rig.patch("2", &[]).await);

    let started = Instant::now();
    let third = rig.patch("3", &[]).await;
    let elapsed = started.elapsed();
    let stderr = failed(&third);
    assert_eq!(third.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "Error from server (TooManyRequests): pathgate denied this request: PG019 \
             session-budget: this session has used 2 of its 2 mutations (budgets.mutations)"
        ),
        "{stderr}"
    );
    // No Retry-After for a budget of the whole session: client-go does not retry.
    assert!(elapsed < Duration::from_secs(8), "kubectl took {elapsed:?}");
    let suffix = format!("/namespaces/{}/configmaps/app", rig.ns);
    let patches = rig.recorded("PATCH", &suffix, 3).await;
    let refused: Vec<&Exchange> = patches.iter().filter(|e| e.status_code == 429).collect();
    assert_eq!(refused.len(), 1, "one refusal, no retries: {patches:#?}");
    assert_eq!(patches.len(), 3);
    assert_eq!(
        pg019(refused[0]),
        (Action::Deny, Some((Budget::Mutations, 2, 2)))
    );
    assert_eq!(refused[0].status_reason.as_deref(), Some("TooManyRequests"));
    assert_eq!(
        rig.stored_n().await,
        "2",
        "the refused patch changed nothing"
    );

    // A dry run spends no mutation: it still passes, and changes nothing.
    ok(&rig.patch("4", &["--dry-run=server"]).await);
    assert_eq!(rig.stored_n().await, "2");
    // Another session has a budget of its own.
    let other = rig.gateway.kubeconfig_with_token(
        "other",
        Some(&rig.cluster.admin_token().unwrap()),
        Some(&unique("budget-other")),
    );
    let body = r#"{"data":{"n":"5"}}"#;
    let args = [
        "-n",
        &rig.ns,
        "patch",
        "configmap",
        "app",
        "--type=merge",
        "-p",
        body,
    ];
    ok(&kubectl(&rig.cluster, &other, &args).await);
    assert_eq!(rig.stored_n().await, "5");
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_bytes_budget_refuses_the_kubectl_get_after_the_one_that_crossed_it() {
    let rig = Rig::start(ENFORCE, "  read_bytes: 100\n").await;
    let listed = ok(&rig.kubectl(&["get", "configmaps", "-o", "json"]).await);
    let suffix = format!("/namespaces/{}/configmaps", rig.ns);
    let list = rig.recorded("GET", &suffix, 1).await;
    assert_eq!(list.len(), 1, "one list");
    let read = list[0].bytes_out;
    assert!(
        read > 100 && read as usize >= listed.len() / 2,
        "{read} bytes read"
    );

    let started = Instant::now();
    let get = rig.kubectl(&["get", "configmap", "app"]).await;
    let stderr = failed(&get);
    assert!(
        stderr.contains(&format!(
            "Error from server (TooManyRequests): pathgate denied this request: PG019 \
             session-budget: this session has read {read} bytes from the apiserver \
             (budgets.read_bytes is 100)"
        )),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(8), "no retries");
    let refused = rig.recorded("GET", &format!("{suffix}/app"), 1).await;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0].status_code, 429);
    assert_eq!(
        pg019(&refused[0]),
        (Action::Deny, Some((Budget::ReadBytes, 100, read)))
    );
    // kubectl patch GETs its object before patching: that read is refused too, so the
    // patch is never sent and nothing changes.
    let stderr = failed(&rig.patch("1", &[]).await);
    assert!(
        stderr.contains("Error from server (TooManyRequests)")
            && stderr.contains("budgets.read_bytes"),
        "{stderr}"
    );
    assert_eq!(rig.stored_n().await, "0");
    assert!(rig
        .recorded("PATCH", &format!("{suffix}/app"), 0)
        .await
        .is_empty());
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_budget_answers_retry_after_and_kubectl_waits_and_succeeds() {
    let rig = Rig::start(ENFORCE, "  requests_per_window: 1\n  window_seconds: 5\n").await;
    // The raw client sees the header and the Status details.
    let (first, _, _) = rig.raw_get().await;
    assert_eq!(first, 200);
    let (status, headers, body) = rig.raw_get().await;
    assert_eq!(status, 429);
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "Retry-After {retry_after}");
    let status_body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status_body["reason"], "TooManyRequests");
    assert_eq!(status_body["code"], 429);
    assert_eq!(status_body["details"]["retryAfterSeconds"], retry_after);
    let message = status_body["message"].as_str().unwrap();
    assert!(
        message.contains("PG019 session-budget: this session has made 1 requests in its sliding window (budgets.requests_per_window is 1)"),
        "{message}"
    );

    // kubectl: the second get within the window is refused once, waited for, and retried.
    ok(&rig
        .kubectl(&["get", "configmap", "app", "-o", "name"])
        .await);
    let started = Instant::now();
    let second = ok(&rig
        .kubectl(&["get", "configmap", "app", "-o", "name"])
        .await);
    assert_eq!(second.trim(), "configmap/app");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "kubectl waited for the window: {:?}",
        started.elapsed()
    );
    let suffix = format!("/namespaces/{}/configmaps/app", rig.ns);
    let gets: Vec<Exchange> = rig
        .recorded("GET", &suffix, 5)
        .await
        .into_iter()
        .filter(|e| e.session != "budget-raw")
        .collect();
    let statuses: Vec<u16> = gets.iter().map(|e| e.status_code).collect();
    assert_eq!(statuses, vec![200, 429, 200], "{gets:#?}");
    let (action, budget) = pg019(&gets[1]);
    assert_eq!(action, Action::Deny);
    assert_eq!(budget, Some((Budget::RequestsPerWindow, 1, 1)));
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_flags_a_breach_and_forwards_it() {
    let rig = Rig::start("mode: observe\n", "  mutations: 1\n").await;
    ok(&rig.patch("1", &[]).await);
    let second = rig.patch("2", &[]).await;
    ok(&second);
    let stderr = stderr_of(&second);
    assert!(
        stderr.contains(
            "Warning: pathgate PG019 session-budget: this session has used 1 of its 1 mutations"
        ),
        "{stderr}"
    );
    assert_eq!(rig.stored_n().await, "2", "observe forwards the breach");
    let suffix = format!("/namespaces/{}/configmaps/app", rig.ns);
    let patches = rig.recorded("PATCH", &suffix, 2).await;
    assert_eq!(
        pg019(patches.last().unwrap()),
        (Action::Flag, Some((Budget::Mutations, 1, 1)))
    );
    rig.gateway.stop().await;
}

/// `pathgate autopsy` of a spool in `format`; returns the exit code and stdout.
fn autopsy(spool: &std::path::Path, format: &str) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .args(["autopsy", "--final-state", "pass", "--format", format])
        .arg(spool)
        .output()
        .expect("pathgate autopsy runs");
    (
        output.status.code().expect("exited"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The one run of an autopsy's JSON document.
fn only_run(document: &str) -> Value {
    let value: Value = serde_json::from_str(document).expect("autopsy JSON");
    let runs = value["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{value:#}");
    runs[0].clone()
}

/// Through a gateway writing a ledger: a dry run, then three patches with `mutations: 2`.
async fn recorded_run(policy: &str) -> tempfile::TempDir {
    let spool = tempfile::tempdir().unwrap();
    let builder = GatewayBuilder::new(cluster().dir.admin_kubeconfig())
        .ledger(pathgate::ledger::LedgerSettings::new(spool.path()));
    let rig = Rig::start_with(builder, policy, "  mutations: 2\n").await;
    ok(&rig.patch("0", &["--dry-run=server"]).await);
    ok(&rig.patch("1", &[]).await);
    ok(&rig.patch("2", &[]).await);
    let _ = rig.patch("3", &[]).await;
    rig.gateway.stop().await;
    spool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autopsy_reports_a_refused_breach_as_blocked_and_a_forwarded_one_as_unsafe() {
    let enforced = recorded_run(ENFORCE).await;
    let (code, json) = autopsy(enforced.path(), "json");
    let run = only_run(&json);
    assert_eq!(run["triage"], "safe_pass", "{run:#}");
    assert_eq!(code, 0);
    let blocked = run["blocked"].as_array().unwrap();
    assert_eq!(blocked.len(), 1, "{run:#}");
    assert_eq!(blocked[0]["rules"], serde_json::json!(["PG019"]));
    assert_eq!(blocked[0]["status"], 429);
    let breaches = run["budget_breaches"].as_array().unwrap();
    assert_eq!(breaches.len(), 1, "{run:#}");
    assert_eq!(breaches[0]["budget"], "mutations");
    assert_eq!(
        (breaches[0]["limit"].as_u64(), breaches[0]["used"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(breaches[0]["refused"], true);
    assert_eq!(breaches[0]["trace_id"], blocked[0]["trace_id"]);
    let (_, text) = autopsy(enforced.path(), "text");
    assert!(
        text.contains(
            "budget mutations exceeded (refused, 2 used of 2): PATCH /api/v1/namespaces/"
        ),
        "{text}"
    );

    let observed = recorded_run("mode: observe\nrules:\n  PG010: off\n").await;
    let (code, json) = autopsy(observed.path(), "json");
    let run = only_run(&json);
    assert_eq!(run["triage"], "unsafe_pass", "{run:#}");
    assert_eq!(code, 3);
    let violations: Vec<&str> = run["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["category"].as_str().unwrap())
        .collect();
    assert_eq!(violations, vec!["budget_exceeded"], "{run:#}");
    assert_eq!(run["violations"][0]["rule_id"], "PG019");
    assert_eq!(run["budget_breaches"][0]["refused"], false);
    assert!(run["blocked"].as_array().unwrap().is_empty());
    let (_, text) = autopsy(observed.path(), "text");
    assert!(
        text.contains("violation budget_exceeded [PG019]: PATCH ")
            && text.contains("budget mutations exceeded (forwarded, 2 used of 2)"),
        "{text}"
    );
}
