//! `pathgate tail` as a terminal program: the real `pathgate serve` writes its ledger while
//! real kubectl requests go through it to the real apiserver, and `pathgate tail` runs in a
//! pseudo-terminal (nix's `openpty`: the child's stdout and stderr are the terminal's
//! slave side, the test reads what the terminal shows from the master side), in a pipe,
//! and with `NO_COLOR`.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use testcluster::RunningCluster;

use crate::gateway::{cluster, failed, kubectl, ok, unique};

const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";

/// Enforce, with a dry run required before each mutation (PG010 denies a create without
/// one); every mutation written as an intent before it is forwarded and as an outcome
/// after (the view shows one line for the two); and the smallest segment size the
/// configuration allows, so a test can make the spool rotate.
const POLICY: &str = "mode: enforce\nsafety_gates:\n  dry_run_default: true\nledger:\n  on_failure: fail-closed-mutations\n  max_segment_bytes: 65536\n";

/// `pathgate serve` with a ledger directory, and a kubeconfig for one session through it.
struct Served {
    _child: tokio::process::Child,
    dir: tempfile::TempDir,
    port: u16,
    ca: PathBuf,
    session: String,
    kubeconfig: PathBuf,
}

impl Served {
    async fn start(cluster: &RunningCluster) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let certs = pathgate::tls::init_certs(&dir.path().join("certs"), &[], false).unwrap();
        let config = dir.path().join("pathgate.yaml");
        std::fs::write(&config, POLICY).unwrap();
        let ledger = dir.path().join("ledger");
        let (child, port) = crate::gateway::serve_process(
            cluster,
            &dir.path().join("certs"),
            &[
                "--config".as_ref(),
                config.as_os_str(),
                "--ledger-dir".as_ref(),
                ledger.as_os_str(),
            ],
            Some(&dir.path().join("pathgate.log")),
        )
        .await;
        let session = unique("tail");
        let kubeconfig = kubeconfig(&dir, port, &certs.ca_cert, cluster, &session);
        Served {
            _child: child,
            port,
            ca: certs.ca_cert,
            session,
            kubeconfig,
            dir,
        }
    }

    fn ledger(&self) -> PathBuf {
        self.dir.path().join("ledger")
    }

    fn kubeconfig_for(&self, cluster: &RunningCluster, session: &str) -> PathBuf {
        kubeconfig(&self.dir, self.port, &self.ca, cluster, session)
    }
}

fn kubeconfig(
    dir: &tempfile::TempDir,
    port: u16,
    ca: &Path,
    cluster: &RunningCluster,
    session: &str,
) -> PathBuf {
    let out = dir.path().join(format!("{session}.kubeconfig"));
    pathgate::agent_kubeconfig::AgentKubeconfig {
        server: format!("https://127.0.0.1:{port}"),
        session: Some(session.to_owned()),
        ca: ca.to_owned(),
        token: Some(cluster.admin_token().unwrap()),
        ..Default::default()
    }
    .write(&out)
    .unwrap();
    out
}

/// `pathgate tail` with stdout and stderr on a pseudo-terminal of `columns` columns.
struct Terminal {
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    /// Reads the master side until the terminal closes.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Terminal {
    fn spawn(args: &[&str], columns: u16, no_color: bool) -> Terminal {
        use nix::fcntl::OFlag;
        // Opened close-on-exec (openpty(3) is not): a process another test spawns at the
        // same moment must not inherit either side and keep the terminal open.
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .expect("a pseudo-terminal");
        nix::pty::grantpt(&master).unwrap();
        nix::pty::unlockpt(&master).unwrap();
        let slave_path = nix::pty::ptsname_r(&master).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&slave_path)
            .unwrap();
        let size = rustix::termios::Winsize {
            ws_row: 50,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&slave, size).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_pathgate"));
        command
            .arg("tail")
            .args(args)
            .env("TERM", "xterm-256color")
            .env_remove("COLUMNS")
            .stdin(Stdio::null())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        if no_color {
            command.env("NO_COLOR", "1");
        } else {
            command.env_remove("NO_COLOR");
        }
        let child = command.spawn().expect("pathgate tail runs");
        // The command holds the parent's copies of the slave side: once it is dropped and
        // the child exits, the master reads EIO and the reader below ends.
        drop(command);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let shown = screen.clone();
        let mut master = master;
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read @ 1..) = master.read(&mut buffer) {
                shown.lock().unwrap().extend_from_slice(&buffer[..read]);
            }
        });
        Terminal {
            child,
            screen,
            reader: Some(reader),
        }
    }

    /// What the terminal has shown so far, line by line (the terminal's `\r\n` undone).
    fn lines(&self) -> Vec<String> {
        let screen = self.screen.lock().unwrap();
        String::from_utf8_lossy(&screen)
            .split('\n')
            .map(|line| line.trim_end_matches('\r').to_owned())
            .filter(|line| !line.is_empty())
            .collect()
    }

    /// The first line shown that contains every one of `parts` (colours removed before
    /// matching), waiting up to 10 s for it.
    async fn wait_for_line(&self, parts: &[&str]) -> String {
        self.wait_for(parts, |_| true).await
    }

    /// [`Self::wait_for_line`], for a line whose visible text also satisfies `also`.
    async fn wait_for(&self, parts: &[&str], also: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.lines().into_iter().find(|line| {
                let seen = visible(line);
                parts.iter().all(|part| seen.contains(part)) && also(&seen)
            }) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed a line with {parts:?}; it shows:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the child to exit by itself, then for the terminal to hand over all it
    /// showed.
    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "pathgate tail did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `line` without its SGR codes.
fn visible(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('\x1b') {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        rest = &rest[rest.find('m').map_or(rest.len(), |end| end + 1)..];
    }
    out.push_str(rest);
    out
}

/// `pathgate tail ARGS` with stdout piped: (stdout, stderr, success).
fn piped(args: &[&str], env: &[(&str, &str)]) -> (String, String, bool) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pathgate"));
    command.arg("tail").args(args).env_remove("NO_COLOR");
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// GETs of one ConfigMap through the session prefix, without kubectl (enough of them to
/// fill a 64 KiB segment quickly).
async fn raw_gets(served: &Served, cluster: &RunningCluster, ns: &str, count: usize) {
    let client = crate::gateway::https_client(&served.ca);
    let token = cluster.admin_token().unwrap();
    for n in 0..count {
        let uri = format!(
            "https://127.0.0.1:{}/s/{}/api/v1/namespaces/{ns}/configmaps/filler-{n}",
            served.port, served.session
        );
        let request = http::Request::get(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, _, _) = crate::gateway::send(&client, request).await;
        assert_eq!(status, http::StatusCode::NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_shows_each_request_as_it_is_made_coloured_on_a_terminal_across_rotation() {
    let cluster = cluster();
    let served = Served::start(&cluster).await;
    let ns = crate::gateway::namespace(&cluster, "pg-tail").await;
    let ledger = served.ledger();
    let mut terminal = Terminal::spawn(
        &[
            "--follow",
            "--session",
            &served.session,
            ledger.to_str().unwrap(),
        ],
        200,
        false,
    );
    let kc = &served.kubeconfig;

    ok(&kubectl(&cluster, kc, &["-n", &ns, "get", "configmaps"]).await);
    let list = terminal
        .wait_for_line(&["list ", "200 allow", &format!("configmaps {ns}/*")])
        .await;
    assert!(list.starts_with(DIM), "a read is dim: {list:?}");
    assert!(!list.contains(BOLD), "{list:?}");

    let stderr = failed(&kubectl(&cluster, kc, &["-n", &ns, "create", "configmap", "demo"]).await);
    assert!(stderr.contains("PG010"), "{stderr}");
    let denied = terminal
        // kubectl's create body is protobuf; the ledger names its object all the same.
        .wait_for_line(&[
            "create ",
            "403 deny",
            "PG010",
            &format!("configmaps {ns}/demo"),
        ])
        .await;
    assert!(denied.starts_with(BOLD), "a mutation is bold: {denied:?}");
    assert!(
        denied.contains(&format!("{RED}deny")),
        "a denial is red: {denied:?}"
    );
    assert!(denied.ends_with("\x1b[0m"), "{denied:?}");
    assert!(
        !denied.contains("[error"),
        "the refusal is the decision: {denied:?}"
    );

    let args = ["-n", &ns, "create", "configmap", "demo", "--dry-run=server"];
    ok(&kubectl(&cluster, kc, &args).await);
    let dry_run = terminal
        .wait_for_line(&["create ", "201 ", "[dry-run]"])
        .await;
    assert!(dry_run.contains(&format!("{CYAN}[dry-run]")), "{dry_run:?}");
    ok(&kubectl(&cluster, kc, &["-n", &ns, "create", "configmap", "demo"]).await);
    let created = terminal
        .wait_for(&["create ", "201 allow"], |line| {
            !line.contains("[dry-run]")
        })
        .await;

    // Another session's requests are not this view's.
    let other = served.kubeconfig_for(&cluster, "someone-else");
    ok(&kubectl(&cluster, &other, &["-n", &ns, "get", "configmap", "demo"]).await);

    // Past 64 KiB the writer starts a new segment; the view follows it.
    raw_gets(&served, &cluster, &ns, 100).await;
    terminal.wait_for_line(&["get ", "404", "filler-99"]).await;
    let segments = pathgate::ledger::list_segments(&ledger).unwrap();
    assert!(segments.len() >= 2, "the spool rotated: {segments:?}");
    let missing = "after-rotation";
    failed(&kubectl(&cluster, kc, &["-n", &ns, "get", "configmap", missing]).await);
    terminal
        .wait_for_line(&["get ", "404", &format!("configmaps {ns}/{missing}")])
        .await;

    let lines = terminal.lines();
    assert!(
        !lines
            .iter()
            .map(|line| visible(line))
            .any(|line| line.contains(" 200 ") && line.contains(&format!("configmaps {ns}/demo"))),
        "someone-else's GET is not shown:\n{}",
        lines.join("\n")
    );
    let creates: Vec<String> = lines
        .iter()
        .map(|line| visible(line))
        .filter(|line| line.contains(" create "))
        .collect();
    assert_eq!(
        creates.len(),
        3,
        "one line per create, intent and outcome paired:\n{}",
        creates.join("\n")
    );
    assert!(
        !creates.iter().any(|line| line.contains("[intent]")),
        "{creates:?}"
    );
    let order: Vec<usize> = [&list, &denied, &dry_run, &created]
        .iter()
        .map(|wanted| lines.iter().position(|line| line == *wanted).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|pair| pair[0] < pair[1]),
        "in the order made: {order:?}"
    );
    for n in 0..100 {
        let filler = format!("configmaps {ns}/filler-{n}");
        assert_eq!(
            lines
                .iter()
                .filter(|line| line.ends_with(&format!("{filler}\x1b[0m")))
                .count(),
            1,
            "{filler} once"
        );
    }

    // Ctrl-C ends it by the signal, with nothing else on the screen.
    let shown = lines.len();
    let pid = nix::unistd::Pid::from_raw(terminal.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = terminal.wait_exit().await;
    assert_eq!(status.signal(), Some(nix::libc::SIGINT), "{status}");
    let after = terminal.lines();
    assert_eq!(after.len(), shown, "printed on exit: {:?}", &after[shown..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_no_color_narrow_and_json_views_of_a_session_and_a_closed_pipe_ends_it() {
    let cluster = cluster();
    let served = Served::start(&cluster).await;
    let ns = crate::gateway::namespace(&cluster, "pg-tail").await;
    let kc = &served.kubeconfig;
    let long_name = format!("a-configmap-with-a-long-name-{}", "x".repeat(40));
    failed(&kubectl(&cluster, kc, &["-n", &ns, "create", "configmap", "denied"]).await);
    // Forwarded, so written as an intent and an outcome.
    let dry_run = [
        "-n",
        &ns,
        "create",
        "configmap",
        "denied",
        "--dry-run=server",
    ];
    ok(&kubectl(&cluster, kc, &dry_run).await);
    failed(&kubectl(&cluster, kc, &["-n", &ns, "get", "configmap", &long_name]).await);
    ok(&kubectl(&cluster, kc, &["-n", &ns, "get", "configmaps"]).await);
    let ledger = served.ledger();
    let ledger_arg = ledger.to_str().unwrap();
    let session = served.session.as_str();

    // The read is in the spool within the writer's 10 ms tick; wait for it anyway.
    let deadline = Instant::now() + Duration::from_secs(10);
    let plain = loop {
        let (out, stderr, success) =
            piped(&["--session", session, ledger_arg], &[("TERM", "xterm")]);
        assert!(success, "{stderr}");
        if out.contains(" list ") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "the list never reached the spool:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!plain.contains('\x1b'), "no colour in a pipe:\n{plain}");
    assert!(
        plain.lines().any(|line| line.contains("create ")
            && line.contains("403 deny")
            && line.contains("PG010")
            && line.ends_with(&format!("configmaps {ns}/denied"))),
        "{plain}"
    );
    assert!(!plain.contains('…'), "a pipe gets whole lines:\n{plain}");

    let (always, _, _) = piped(
        &["--color", "always", "--session", session, ledger_arg],
        &[("NO_COLOR", "1")],
    );
    assert!(
        always.contains(BOLD) && always.contains(RED),
        "--color always wins over NO_COLOR:\n{always}"
    );

    // NO_COLOR on a terminal: no colour; the terminal's 80 columns still bound each line.
    let mut terminal = Terminal::spawn(&["--session", session, ledger_arg], 80, true);
    assert!(terminal.wait_exit().await.success());
    let lines = terminal.lines();
    assert!(
        lines.iter().any(|line| line.contains(" list ")),
        "{}",
        lines.join("\n")
    );
    assert!(
        !lines.iter().any(|line| line.contains('\x1b')),
        "NO_COLOR:\n{}",
        lines.join("\n")
    );
    let long = lines.iter().find(|line| line.contains(" 404 ")).unwrap();
    assert_eq!(long.chars().count(), 80, "{long:?}");
    assert!(long.contains('…') && long.ends_with("xxxxxxx"), "{long:?}");

    // --json: the session's entries as the spool holds them.
    let (json, stderr, success) = piped(&["--json", "--session", session, ledger_arg], &[]);
    assert!(success, "{stderr}");
    let spool: Vec<String> = pathgate::ledger::list_segments(&ledger)
        .unwrap()
        .iter()
        .flat_map(|(seq, _)| {
            let text =
                std::fs::read_to_string(ledger.join(pathgate::ledger::segment_name(*seq))).unwrap();
            text.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
    let (mut verbs, mut phases) = (Vec::new(), Vec::new());
    for line in json.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(entry["session"], session, "{line}");
        assert_eq!(entry["schema"], "pathgate.ledger/v1");
        assert!(spool.iter().any(|held| held == line), "unchanged: {line}");
        verbs.push(entry["request"]["verb"].as_str().unwrap().to_owned());
        phases.push(entry["phase"].as_str().unwrap().to_owned());
    }
    assert!(
        phases.contains(&"intent".to_owned()),
        "intents too: {phases:?}"
    );
    assert!(
        verbs.contains(&"create".to_owned()) && verbs.contains(&"list".to_owned()),
        "{verbs:?}"
    );

    // `pathgate tail --follow | head -1`: once the reader is gone, tail ends, quietly.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .args(["tail", "--follow", "--session", session, ledger_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    ok(&kubectl(&cluster, kc, &["-n", &ns, "get", "configmaps"]).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "tail --follow outlived its reader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
