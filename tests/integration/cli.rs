//! The `pathgate` binary as a user runs it: certs, kubeconfig, serve, and SIGTERM drain.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::gateway::{cluster, kubectl, ok};

fn pathgate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .args(args)
        .output()
        .unwrap()
}

/// `pathgate certs init --dir <dir>/certs`, which must succeed; returns the certs dir.
fn certs_init(dir: &std::path::Path) -> std::path::PathBuf {
    let certs = dir.join("certs");
    let out = pathgate(&["certs", "init", "--dir", certs.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    certs
}

#[test]
fn certs_init_refuses_to_overwrite_and_writes_private_keys_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs_arg = certs.to_str().unwrap();
    let out = pathgate(&[
        "certs",
        "init",
        "--dir",
        certs_arg,
        "--san",
        "pathgate.local",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(certs.join("server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = pathgate(&["certs", "init", "--dir", certs_arg]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let forced = pathgate(&["certs", "init", "--dir", certs_arg, "--force"]);
    assert!(forced.status.success());
}

/// A flag gets the check its key gets, before anything starts: `--max-body-bytes 0` is
/// refused like `server.max_body_bytes: 0`, naming the flag, with exit code 1.
#[test]
fn serve_refuses_a_flag_outside_its_bound_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pathgate.yaml");
    std::fs::write(&file, "server: {max_body_bytes: 0}\n").unwrap();
    let upstream = ["serve", "--upstream-kubeconfig", "/nonexistent/kubeconfig"];
    for (extra, message) in [
        (
            vec!["--max-body-bytes", "0"],
            "--max-body-bytes: 0 is out of range; use 1024 to 268435456".to_string(),
        ),
        (
            vec!["--workers", "0"],
            "--workers: 0 is out of range; use 1 to 256".to_string(),
        ),
        (
            vec!["--config", file.to_str().unwrap()],
            format!(
                "{}: server.max_body_bytes: 0 is out of range; use 1024 to 268435456",
                file.display()
            ),
        ),
    ] {
        let out = pathgate(&[&upstream[..], &extra[..]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(&message), "{extra:?}: {stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
    }
}

#[test]
fn serve_refuses_unsafe_sidecar_and_unsupported_kubeconfigs() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_init(dir.path());
    let kubeconfig = dir.path().join("kc");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1', proxy-url: 'http://127.0.0.1:3128', insecure-skip-tls-verify: true}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\n").unwrap();
    let cert = certs.join("server.crt");
    let key = certs.join("server.key");
    let base = |listen: &str, auth: &str| {
        vec![
            "serve".to_string(),
            "--upstream-kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
            "--listen".into(),
            listen.into(),
            "--auth".into(),
            auth.into(),
            "--admin-listen".into(),
            "off".into(),
        ]
    };
    let args = base("0.0.0.0:0", "sidecar");
    let out = pathgate(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sidecar") && stderr.contains("client-ca"),
        "{stderr}"
    );

    let args = base("127.0.0.1:0", "passthrough");
    let out = pathgate(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("proxy-url is not supported") && stderr.contains("kc"),
        "{stderr}"
    );
}

/// The next line kubectl printed, within 30 s.
async fn next_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> String {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("kubectl -w printed a line within 30 s")
        .unwrap()
        .expect("kubectl -w is still running")
}

/// SIGTERM with a watch open: pathgate ends the watch cleanly (its ledger entry says
/// `drained`, not cut by the drain timeout), finishes, and exits 0. The watch is known to
/// be open because it delivered an event through pathgate before the signal; no sleep, and
/// no wall-clock assertion (the guard only keeps a hang from blocking the run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_ends_watches_cleanly() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_init(dir.path());
    let log_path = dir.path().join("pathgate.log");
    let ledger = dir.path().join("ledger");
    let (mut child, port) = crate::gateway::serve_process(
        &cluster,
        &certs,
        // The other binary tests run the default single-threaded runtime; this one the
        // work-stealing one, so both drain the same way. A watch the drain does not end
        // is cut at the drain timeout, which the log and the ledger then say.
        &[
            "--drain-timeout".as_ref(),
            "20".as_ref(),
            "--workers".as_ref(),
            "2".as_ref(),
            "--ledger-dir".as_ref(),
            ledger.as_os_str(),
        ],
        Some(&log_path),
    )
    .await;
    let kc = dir.path().join("agent.kubeconfig");
    let out = pathgate(&[
        "kubeconfig",
        "--server",
        &format!("https://127.0.0.1:{port}"),
        "--session",
        "drain-test",
        "--ca",
        certs.join("ca.crt").to_str().unwrap(),
        "--token",
        &cluster.admin_token().unwrap(),
        "--out",
        kc.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns = crate::gateway::namespace(&cluster, "pg-drain").await;
    let admin = cluster.dir.admin_kubeconfig();
    let create = |name: &'static str| {
        let (cluster, admin, ns) = (cluster.clone(), admin.clone(), ns.clone());
        async move {
            ok(&kubectl(&cluster, &admin, &["-n", &ns, "create", "configmap", name]).await);
        }
    };
    create("listed").await;
    let mut watch = tokio::process::Command::new(&cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["get", "configmaps", "-n", &ns, "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    // kubectl prints the list, then watches from the list's resourceVersion: an object
    // created after the list was printed can only reach it through the open watch.
    assert_eq!(next_line(&mut lines).await, "configmap/listed");
    create("watched").await;
    assert_eq!(next_line(&mut lines).await, "configmap/watched");
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("pathgate exits after SIGTERM (guard against a hang)")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("drained"), "{log}");
    assert!(!log.contains("drain timeout reached"), "{log}");
    let watches: Vec<_> = crate::recording::spool_entries(&ledger)
        .into_iter()
        .filter(|e| e["phase"] == "outcome" && e["request"]["verb"] == "watch")
        .collect();
    assert_eq!(watches.len(), 1, "{watches:?}");
    assert_eq!(watches[0]["response"]["end"], "drained", "{}", watches[0]);
    assert!(
        watches[0]["watch_events"].as_u64() >= Some(1),
        "{}",
        watches[0]
    );
    let _ = watch.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reloads_on_sighup_and_an_invalid_file_keeps_the_old_policy() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_init(dir.path());
    let config = dir.path().join("pathgate.yaml");
    std::fs::write(
        &config,
        "mode: enforce\nsafety_gates:\n  dry_run_default: true\n",
    )
    .unwrap();
    let log_path = dir.path().join("pathgate.log");
    let (mut child, port) = crate::gateway::serve_process(
        &cluster,
        &certs,
        &["--config".as_ref(), config.as_os_str()],
        Some(&log_path),
    )
    .await;
    let kc = dir.path().join("kc");
    assert!(pathgate(&[
        "kubeconfig",
        "--server",
        &format!("https://127.0.0.1:{port}"),
        "--ca",
        certs.join("ca.crt").to_str().unwrap(),
        "--token",
        &cluster.admin_token().unwrap(),
        "--out",
        kc.to_str().unwrap(),
    ])
    .status
    .success());
    let ns = crate::gateway::namespace(&cluster, "pg-reload").await;

    // enforce + dry_run_default: a create without a prior dry run is refused.
    let out = kubectl(&cluster, &kc, &["-n", &ns, "create", "configmap", "first"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && stderr.contains("PG010"),
        "{stderr}"
    );

    // SIGHUP after switching to observe: the same request passes, flagged.
    std::fs::write(
        &config,
        "mode: observe\nsafety_gates:\n  dry_run_default: true\n",
    )
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = kubectl(&cluster, &kc, &["-n", &ns, "create", "configmap", "second"]).await;
        if out.status.success() {
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("PG010"),
                "observe still warns"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the policy never reloaded");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // An invalid file is refused with file, key and reason; observe stays in force.
    std::fs::write(
        &config,
        "mode: observe\nsafety_gates:\n  max_patch_keys: lots\n",
    )
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if log.contains("max_patch_keys") {
            assert!(log.contains("pathgate.yaml"), "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "no reload error logged:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ok(&kubectl(&cluster, &kc, &["-n", &ns, "create", "configmap", "third"]).await);
    child.kill().await.unwrap();
}
