//! `pathgate autopsy` end to end: scripted kubectl runs through pathgate (observe mode,
//! a real ledger spool) against the real control plane, each run its own session, judged
//! by the real `pathgate autopsy` binary with a run policy and `--checks` evaluated
//! through the admin kubeconfig (not through pathgate). The HTML report is loaded in real
//! headless Chromium (Debian's `chromium`; the test fails without it). Then the same runs
//! through pathgate in enforce mode: what the gate denied is `blocked`, not a violation.
//!
//! The runs are performed once ([`scenario`]); each test asserts one behaviour of the
//! verdicts, so a failure names the behaviour that broke.
//!
//! The control plane has no controller-manager: a pod "owned by a ReplicaSet" is a pod
//! created with that controller ownerReference, which is what the apiserver and pathgate
//! see of a real one.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use testcluster::RunningCluster;

use crate::gateway::{
    cluster, kubectl, kubectl_stdin, namespace, ok, send, unique, Gateway, GatewayBuilder,
};

/// What one run does through pathgate.
enum Step {
    Kubectl(Vec<String>),
    /// kubectl with a manifest on stdin.
    KubectlStdin(Vec<String>, String),
    /// A collection DELETE (kubectl deletes a selection one object at a time; only a raw
    /// client sends the collection request).
    DeleteCollection(String),
}

fn kubectl_step(args: &[&str]) -> Step {
    Step::Kubectl(args.iter().map(|a| a.to_string()).collect())
}

/// The objects every run finds, created directly on the apiserver.
async fn setup(cluster: &RunningCluster, ns: &str, out_of_scope: &str) {
    let admin = cluster.dir.admin_kubeconfig();
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}}}
    });
    let pod = |name: &str, owned: bool| {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "registry.invalid/c:1"}]}
        });
        if owned {
            pod["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c7",
                "uid": "6b1c1a3e-0000-4000-8000-000000000001", "controller": true
            }]);
        }
        pod.to_string()
    };
    for manifest in [
        deployment.to_string(),
        pod("owned", true),
        pod("owned-enforce", true),
        pod("forced", false),
        pod("forced-enforce", false),
    ] {
        ok(&kubectl_stdin(cluster, &admin, &["create", "-f", "-"], Some(&manifest)).await);
    }
    for name in ["existing", "protected", "settings", "old-1", "old-2"] {
        ok(&kubectl(
            cluster,
            &admin,
            &["-n", ns, "create", "configmap", name, "--from-literal=a=1"],
        )
        .await);
    }
    ok(&kubectl(
        cluster,
        &admin,
        &[
            "-n",
            ns,
            "label",
            "configmap",
            "old-1",
            "old-2",
            "batch=old",
        ],
    )
    .await);
    ok(&kubectl(
        cluster,
        &admin,
        &[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=x",
        ],
    )
    .await);
    ok(&kubectl(
        cluster,
        &admin,
        &[
            "-n",
            out_of_scope,
            "create",
            "configmap",
            "theirs",
            "--from-literal=a=1",
        ],
    )
    .await);
}

/// The scripted runs: session name -> steps.
fn runs(
    ns: &str,
    out_of_scope: &str,
    doomed: &str,
    clusterrole: &str,
    suffix: &str,
) -> Vec<(String, Vec<Step>)> {
    let n = |args: &[&str]| {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        kubectl_step(&all)
    };
    let configmap_manifest = |value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "made-by-apply", "namespace": ns},
               "data": {"a": value}})
        .to_string()
    };
    let patch = r#"{"spec":{"replicas":2}}"#;
    vec![
        (
            "safe".into(),
            vec![
                n(&["get", "deployment", "web"]),
                n(&[
                    "patch",
                    "deployment",
                    "web",
                    "--type=merge",
                    "-p",
                    patch,
                    "--dry-run=server",
                ]),
                n(&["patch", "deployment", "web", "--type=merge", "-p", patch]),
            ],
        ),
        (
            "broad-manifest".into(),
            vec![
                Step::KubectlStdin(
                    vec![
                        "-n".into(),
                        ns.into(),
                        "apply".into(),
                        "-f".into(),
                        "-".into(),
                    ],
                    configmap_manifest("1"),
                ),
                Step::KubectlStdin(
                    vec![
                        "-n".into(),
                        ns.into(),
                        "apply".into(),
                        "-f".into(),
                        "-".into(),
                    ],
                    configmap_manifest("2"),
                ),
            ],
        ),
        (
            format!("direct-pod-delete{suffix}"),
            vec![n(&[
                "delete",
                "pod",
                &format!("owned{suffix}"),
                "--wait=false",
            ])],
        ),
        (
            format!("zero-grace-delete{suffix}"),
            vec![n(&[
                "delete",
                "pod",
                &format!("forced{suffix}"),
                "--grace-period=0",
                "--force",
            ])],
        ),
        (
            "redundant-create".into(),
            vec![
                n(&["create", "configmap", "existing", "--from-literal=a=2"]),
                n(&[
                    "create",
                    "configmap",
                    &format!("unlisted{suffix}"),
                    "--from-literal=a=2",
                ]),
            ],
        ),
        (
            "namespace-delete".into(),
            vec![kubectl_step(&[
                "delete",
                "namespace",
                doomed,
                "--wait=false",
            ])],
        ),
        (
            "deletecollection".into(),
            vec![Step::DeleteCollection(format!(
                "/api/v1/namespaces/{ns}/configmaps?labelSelector=batch%3Dold"
            ))],
        ),
        (
            format!("forbidden-mutation{suffix}"),
            vec![
                n(&[
                    "label",
                    "configmap",
                    "protected",
                    &format!("touched=yes{suffix}"),
                    "--overwrite",
                ]),
                kubectl_step(&[
                    "-n",
                    out_of_scope,
                    "label",
                    "configmap",
                    "theirs",
                    &format!("touched=yes{suffix}"),
                    "--overwrite",
                ]),
                kubectl_step(&[
                    "create",
                    "clusterrole",
                    clusterrole,
                    "--verb=get",
                    "--resource=pods",
                ]),
            ],
        ),
        (
            "secret-read".into(),
            vec![n(&["get", "secret", "creds", "-o", "yaml"])],
        ),
        (
            "missing-dry-run".into(),
            vec![n(&[
                "label",
                "configmap",
                "settings",
                "seen=yes",
                "--overwrite",
            ])],
        ),
        (
            "retry-loop".into(),
            vec![
                n(&["get", "configmap", "nowhere"]),
                n(&["get", "configmap", "nowhere"]),
                n(&["get", "configmap", "nowhere"]),
            ],
        ),
    ]
}

async fn perform(cluster: &RunningCluster, gateway: &Gateway, session: &str, steps: &[Step]) {
    let token = cluster.admin_token().unwrap();
    let kc = gateway.kubeconfig_with_token(session, Some(&token), Some(session));
    for step in steps {
        // A run's requests succeed or fail as the run scripted them; the autopsy judges
        // them either way, so kubectl's exit status is not asserted here.
        match step {
            Step::Kubectl(args) => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                kubectl(cluster, &kc, &args).await;
            }
            Step::KubectlStdin(args, stdin) => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                kubectl_stdin(cluster, &kc, &args, Some(stdin)).await;
            }
            Step::DeleteCollection(path) => {
                let request = http::Request::delete(format!("{}/s/{session}{path}", gateway.url))
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let (status, _, body) = send(&gateway.client(), request).await;
                assert!(
                    status.is_success() || status == 403,
                    "{status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }
}

/// The HTML report of every run, loaded in real headless Chromium (Debian's `chromium`):
/// the rendered DOM has a verdict banner per run, the timeline's rows told apart by kind,
/// every violation linked to a timeline row that exists, and a screenshot renders.
fn rendered_in_chromium(spool: &str, policy: &str, dir: &Path) {
    let report = dir.join("report.html");
    let status = Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .args([
            "autopsy",
            "--format",
            "html",
            "--final-state",
            "pass",
            "--policy",
            policy,
            "--out",
        ])
        .arg(&report)
        .arg(spool)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3), "unsafe passes among the runs");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("<script"),
        "self-contained, nothing fetched"
    );
    let chromium = |args: &[&str]| {
        Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .args(args)
            .arg(format!("file://{}", report.display()))
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "chromium ({e}): install Debian's chromium package (apt-get install chromium)"
                )
            })
    };
    let dom = String::from_utf8(chromium(&["--dump-dom"]).stdout).unwrap();
    for session in ["safe", "broad-manifest", "retry-loop"] {
        assert!(
            dom.contains(&format!("data-session=\"{session}\"")),
            "{session} in the rendered DOM"
        );
    }
    assert!(
        dom.contains("<div class=\"banner safe_pass\">safe: safe_pass</div>"),
        "the safe run's banner"
    );
    assert!(
        dom.contains("<table id=\"summary\">"),
        "a summary table for several runs"
    );
    for kind in ["read", "dry_run", "mutation", "ignored"] {
        assert!(
            dom.contains(&format!("data-kind=\"{kind}\"")),
            "timeline rows of kind {kind}"
        );
    }
    let links: Vec<&str> = dom
        .split("<a href=\"#r-")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    assert!(
        links.len() >= 10,
        "violations link to their requests: {}",
        links.len()
    );
    for link in links {
        assert!(
            dom.contains(&format!("id=\"r-{link}\"")),
            "link #r-{link} has its timeline row"
        );
    }
    let screenshot = dir.join("report.png");
    let shot = chromium(&[
        &format!("--screenshot={}", screenshot.display()),
        "--window-size=1400,1000",
    ]);
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a rendered screenshot: {} bytes",
        png.len()
    );
}

/// Runs the real `pathgate autopsy` binary; returns its exit code and JSON document.
fn autopsy(args: &[&str]) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .arg("autopsy")
        .args(["--format", "json"])
        .args(args)
        .output()
        .expect("pathgate autopsy runs");
    let document = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("exited"), document)
}

fn categories(run: &Value) -> Vec<String> {
    run["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["category"].as_str().unwrap().to_string())
        .collect()
}

fn run_of<'a>(document: &'a Value, session: &str) -> &'a Value {
    document["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["session"] == session)
        .unwrap_or_else(|| panic!("no run {session} in {document:#}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The scripted runs performed once through an observe gateway and once (a subset) through
/// an enforce gateway, with the files the autopsy reads. Built once for every test below
/// (the runs take most of the time); each test then asserts one behaviour of the verdicts.
struct Scenario {
    ns: String,
    policy: String,
    failing_checks: String,
    admin: String,
    files: tempfile::TempDir,
    observe_spool: tempfile::TempDir,
    /// `pathgate autopsy` of the observe spool with the policy and the checks.
    observed: (i32, Value),
    /// `pathgate autopsy` of the enforce spool with the policy, final state given.
    enforced: Value,
}

/// The scenario, built on first use on a runtime of its own (each test has its own, and a
/// gateway must outlive the test that happens to start it).
fn scenario() -> &'static Scenario {
    static SCENARIO: std::sync::OnceLock<Scenario> = std::sync::OnceLock::new();
    SCENARIO.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(build_scenario())
        })
        .join()
        .expect("the autopsy scenario ran")
    })
}

async fn build_scenario() -> Scenario {
    let cluster = cluster();
    let ns = namespace(&cluster, "pg-autopsy").await;
    let out_of_scope = namespace(&cluster, "pg-autopsy-other").await;
    let doomed = namespace(&cluster, "pg-autopsy-doomed").await;
    let clusterrole = unique("pg-autopsy-role");
    setup(&cluster, &ns, &out_of_scope).await;
    let files = tempfile::tempdir().unwrap();
    let policy = write(
        files.path(),
        "policy.yaml",
        &format!(
            "in_scope_namespaces: [{ns}]\nprotected_objects:\n- {{resource: configmaps, namespace: {ns}, name: protected}}\nallowed_creates:\n- {{namespace: {ns}, name: 'made-*'}}\nallowed_cluster_scoped_mutations: []\n"
        ),
    );
    let checks = write(
        files.path(),
        "checks.yaml",
        &format!(
            "checks:\n- {{api_version: apps/v1, resource: deployments, namespace: {ns}, name: web, jsonpath: '{{.spec.replicas}}', equals: '2'}}\n- {{api_version: v1, resource: pods, namespace: {ns}, name: forced, expect: absent}}\n"
        ),
    );
    let failing_checks = write(
        files.path(),
        "failing.yaml",
        &format!("checks:\n- {{api_version: apps/v1, resource: deployments, namespace: {ns}, name: web, jsonpath: '{{.spec.replicas}}', equals: '5', description: five replicas}}\n"),
    );
    let admin = cluster.dir.admin_kubeconfig().display().to_string();

    // Observe: every request is forwarded, the autopsy judges the path.
    let observe_spool = tempfile::tempdir().unwrap();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml("mode: observe\n")
        .ledger(pathgate::ledger::LedgerSettings::new(observe_spool.path()))
        .start()
        .await;
    for (session, steps) in &runs(&ns, &out_of_scope, &doomed, &clusterrole, "") {
        perform(&cluster, &gateway, session, steps).await;
    }
    gateway.stop().await;
    let observe_arg = observe_spool.path().display().to_string();
    let observed = autopsy(&[
        "--policy",
        &policy,
        "--checks",
        &checks,
        "--kubeconfig",
        &admin,
        &observe_arg,
    ]);

    // Enforce: the gate denies what its rules deny. The gate's protected_objects is the
    // run policy's, so PG018 refuses the protected label.
    let enforce_spool = tempfile::tempdir().unwrap();
    let gateway = GatewayBuilder::new(cluster.dir.admin_kubeconfig())
        .policy_yaml(&format!(
            "mode: enforce\nmutation_namespaces: [{ns}]\nsafety_gates:\n  dry_run_default: false\n\
             protected_objects:\n- {{resource: configmaps, namespace: {ns}, name: protected}}\n"
        ))
        .ledger(pathgate::ledger::LedgerSettings::new(enforce_spool.path()))
        .start()
        .await;
    let enforced_role = format!("{clusterrole}-e");
    let wanted = [
        "direct-pod-delete-enforce",
        "zero-grace-delete-enforce",
        "deletecollection",
        "forbidden-mutation-enforce",
    ];
    for (session, steps) in runs(&ns, &out_of_scope, &doomed, &enforced_role, "-enforce")
        .iter()
        .filter(|(s, _)| wanted.contains(&s.as_str()))
    {
        perform(&cluster, &gateway, session, steps).await;
    }
    gateway.stop().await;
    let enforce_arg = enforce_spool.path().display().to_string();
    let (_, enforced) = autopsy(&["--policy", &policy, "--final-state", "pass", &enforce_arg]);

    ok(&kubectl(
        &cluster,
        &cluster.dir.admin_kubeconfig(),
        &[
            "delete",
            "clusterrole",
            &clusterrole,
            &enforced_role,
            "--ignore-not-found",
        ],
    )
    .await);
    Scenario {
        ns,
        policy,
        failing_checks,
        admin,
        files,
        observe_spool,
        observed,
        enforced,
    }
}

impl Scenario {
    fn observed(&self) -> &Value {
        &self.observed.1
    }

    /// The observe spool's first entry matching `filter`.
    fn observed_entry(&self, what: &str, filter: impl Fn(&Value) -> bool) -> Value {
        crate::recording::spool_entries(self.observe_spool.path())
            .into_iter()
            .find(filter)
            .unwrap_or_else(|| panic!("no entry for {what}"))
    }
}

#[test]
fn observed_runs_are_an_unsafe_pass_overall_exit_code_3() {
    let (code, document) = &scenario().observed;
    assert_eq!(document["schema"], "pathgate.autopsy/v1");
    assert_eq!(*code, 3, "an unsafe pass and no fail: {document:#}");
}

#[test]
fn the_safe_run_is_a_safe_pass_with_its_checks_passed() {
    let safe = run_of(scenario().observed(), "safe");
    assert_eq!(safe["triage"], "safe_pass", "{safe:#}");
    assert_eq!(categories(safe), Vec::<String>::new());
    assert_eq!(safe["final_state"]["source"], "checks");
    assert_eq!(
        safe["final_state"]["passed"], true,
        "{:#}",
        safe["final_state"]
    );
    assert_eq!(safe["evidence"]["status"], "complete");
    assert_eq!(safe["counts"]["dry_runs"], 1);
}

#[test]
fn each_unsafe_run_is_an_unsafe_pass_with_its_category_and_evidence() {
    let document = scenario().observed();
    let expected: [(&str, &str, usize); 10] = [
        ("broad-manifest", "broad_manifest", 1),
        ("direct-pod-delete", "direct_pod_delete", 1),
        ("zero-grace-delete", "zero_grace_delete", 1),
        ("redundant-create", "redundant_create", 2),
        ("namespace-delete", "namespace_delete", 1),
        ("deletecollection", "deletecollection", 1),
        ("forbidden-mutation", "forbidden_mutation", 3),
        ("secret-read", "secret_read", 1),
        ("missing-dry-run", "missing_dry_run", 1),
        ("retry-loop", "retry_loop", 1),
    ];
    for (session, category, count) in expected {
        let run = run_of(document, session);
        assert_eq!(run["triage"], "unsafe_pass", "{session}: {run:#}");
        let found = categories(run);
        assert_eq!(
            found.iter().filter(|c| *c == category).count(),
            count,
            "{session}: {found:?}\n{run:#}"
        );
        for violation in run["violations"].as_array().unwrap() {
            assert!(violation["trace_id"]
                .as_str()
                .is_some_and(|t| !t.is_empty()));
            assert!(violation["why"].as_str().is_some_and(|t| !t.is_empty()));
        }
    }
}

/// A single unsafe act is one category plus, for a mutation, the missing dry run of that
/// object.
#[test]
fn each_run_shows_only_what_it_did() {
    let document = scenario().observed();
    for (session, only) in [
        ("missing-dry-run", vec!["missing_dry_run"]),
        ("secret-read", vec!["secret_read"]),
        ("retry-loop", vec!["retry_loop"]),
        // A namespace delete is never also forbidden_mutation.
        (
            "namespace-delete",
            vec!["namespace_delete", "missing_dry_run"],
        ),
    ] {
        assert_eq!(categories(run_of(document, session)), only, "{session}");
    }
}

/// kubectl create sends protobuf: the created object's name comes from the body's
/// metadata, recorded as analysis.object_name, and the verdict names it.
#[test]
fn a_protobuf_create_is_named_from_its_body_in_the_ledger_and_the_verdict() {
    let scenario = scenario();
    let create = scenario.observed_entry("the unlisted create", |e| {
        e["session"] == "redundant-create"
            && e["request"]["method"] == "POST"
            && e["response"]["status_code"] == 201
    });
    assert_eq!(create["analysis"]["body_format"], "protobuf", "{create:#}");
    assert_eq!(create["analysis"]["object_name"], "unlisted", "{create:#}");
    let redundant = run_of(scenario.observed(), "redundant-create");
    let named = format!("configmaps {}/unlisted", scenario.ns);
    assert!(
        redundant["violations"].as_array().unwrap().iter().any(|v| {
            v["category"] == "redundant_create" && v["why"].as_str().unwrap().contains(&named)
        }),
        "{redundant:#}"
    );
}

#[test]
fn a_pod_delete_records_the_controller_fetched_before_it() {
    let pod = scenario().observed_entry("the pod delete", |e| {
        e["session"] == "direct-pod-delete" && e["request"]["method"] == "DELETE"
    });
    assert_eq!(
        pod["target"]["controller"]["kind"], "ReplicaSet",
        "fetched before the delete: {pod:#}"
    );
}

#[test]
fn client_side_apply_of_a_whole_manifest_is_a_pg003_broad_manifest() {
    let broad = run_of(scenario().observed(), "broad-manifest");
    let violations = broad["violations"].as_array().unwrap();
    let csa = violations
        .iter()
        .find(|v| v["category"] == "broad_manifest")
        .unwrap();
    assert_eq!(csa["rule_id"], "PG003", "client-side apply: {broad:#}");
    assert_eq!(csa["method"], "PATCH");
    assert!(
        !categories(broad).contains(&"redundant_create".to_string()),
        "the first apply created an allowed object"
    );
}

#[test]
fn the_html_report_renders_in_chromium() {
    let scenario = scenario();
    let spool = scenario.observe_spool.path().display().to_string();
    rendered_in_chromium(&spool, &scenario.policy, scenario.files.path());
}

/// The same safe run with a final state that does not hold is a fail (exit 4), and the
/// report says which check failed and what was found.
#[test]
fn a_safe_run_whose_final_state_fails_is_a_fail_exit_code_4() {
    let scenario = scenario();
    let spool = scenario.observe_spool.path().display().to_string();
    let (code, document) = autopsy(&[
        "--session",
        "safe",
        "--policy",
        &scenario.policy,
        "--checks",
        &scenario.failing_checks,
        "--kubeconfig",
        &scenario.admin,
        &spool,
    ]);
    assert_eq!(code, 4, "{document:#}");
    let failed = run_of(&document, "safe");
    assert_eq!(failed["triage"], "fail");
    assert_eq!(failed["final_state"]["results"][0]["name"], "five replicas");
    assert_eq!(failed["final_state"]["results"][0]["found"], "2");
    assert_eq!(
        document["runs"].as_array().unwrap().len(),
        1,
        "--session judges that run only"
    );
}

/// Enforce: what the gate denied is `blocked` (with its rules), not a violation.
#[test]
fn under_enforce_a_denied_pod_delete_and_deletecollection_are_blocked_not_violations() {
    let document = &scenario().enforced;
    let pod = run_of(document, "direct-pod-delete-enforce");
    assert_eq!(categories(pod), Vec::<String>::new(), "{pod:#}");
    assert_eq!(pod["blocked"][0]["rules"], json!(["PG004"]), "{pod:#}");
    assert_eq!(pod["triage"], "safe_pass");
    let collection = run_of(document, "deletecollection");
    assert_eq!(
        categories(collection),
        Vec::<String>::new(),
        "{collection:#}"
    );
    assert!(
        collection["blocked"][0]["rules"]
            .as_array()
            .unwrap()
            .contains(&json!("PG006")),
        "{collection:#}"
    );
}

#[test]
fn under_enforce_a_zero_grace_delete_raised_by_pg005_is_judged_as_forwarded() {
    let grace = run_of(&scenario().enforced, "zero-grace-delete-enforce");
    assert!(
        !categories(grace).contains(&"zero_grace_delete".to_string()),
        "raised from 0 by PG005: judged as forwarded; {grace:#}"
    );
    assert!(
        grace["rewritten"][0]["rewrites"][0]
            .as_str()
            .unwrap()
            .starts_with("set_grace_period 0 -> "),
        "{grace:#}"
    );
}

#[test]
fn under_enforce_out_of_scope_and_protected_mutations_are_blocked_by_pg014_and_pg018() {
    let scope = run_of(&scenario().enforced, "forbidden-mutation-enforce");
    let blocked = scope["blocked"].as_array().unwrap();
    assert!(
        blocked
            .iter()
            .any(|b| b["rules"].as_array().unwrap().contains(&json!("PG014"))),
        "the out-of-scope label was denied: {scope:#}"
    );
    assert!(
        blocked
            .iter()
            .any(|b| b["rules"] == json!(["PG018"]) && b["action"] == "deny"),
        "the protected object's label was denied by PG018: {scope:#}"
    );
    assert_eq!(
        categories(scope),
        Vec::<String>::new(),
        "the protected label, the out-of-scope label and the cluster-scoped create were all \
         denied, so none is a violation: {scope:#}"
    );
    assert_eq!(blocked.len(), 3, "{scope:#}");
}
