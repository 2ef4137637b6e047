//! The autopsy over a large generated spool, against `jq -c 'select(.session=="X")'` over
//! the same files in the same run (the reference: what an operator would run to find one
//! session's entries, without judging anything).
//!
//! Generates `--entries` entries (default 1,000,000) over `--sessions` sessions (default
//! 100) into 64 MiB `ledger-<seq>.jsonl` segments written by the ledger's own line writer:
//! per session a realistic mix of reads, dry runs, patches, deletes and failures. Then, each
//! in a fresh process so its peak RSS is its own:
//!
//! - `autopsy --session`: one session judged (lines of the others skipped after reading
//!   their `session` field);
//! - `autopsy all`: every session judged;
//! - `jq select`: the reference filter, when `jq` is installed.
//!
//! Reports wall time, entries per second and peak RSS (`VmHWM` for the autopsy; GNU
//! `/usr/bin/time`'s maximum RSS for jq, when present). Reproduce with:
//!
//! ```sh
//! cargo bench --bench autopsy                       # 1M entries
//! cargo bench --bench autopsy -- --entries 3000000 --sessions 300
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pathgate::autopsy::{for_each_entry, Autopsy, FinalState, LedgerSource, RunPolicy};
use pathgate::ledger::{
    examples, segment_name, write_line, Action, AnalysisRecord, AuthMode, Client, DecisionRecord,
    Entry, Mode, Origin, Request, ResponseEnd, ResponseRecord, SentForwarded,
};

const SEGMENT_BYTES: usize = 64 << 20;

fn entry(session: &str, sequence: u64, kind: u64) -> Entry {
    let started = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(sequence as i64);
    let (method, verb, status) = match kind {
        0..=6 => ("GET", "get", 200),
        7 => ("PATCH", "patch", 200),
        8 => ("DELETE", "delete", 200),
        _ => ("GET", "get", 404),
    };
    let name = format!("web-{}", sequence % 50);
    let dry_run = if kind == 7 && sequence % 2 == 0 {
        "?dryRun=All"
    } else {
        ""
    };
    let mut entry = Entry::new(
        format!("{sequence:032x}"),
        session,
        Client {
            token_fingerprint: Some("sha256:d4c1fbf464f5b339".into()),
            remote_addr: Some("127.0.0.1:38536".into()),
            ..examples::client(AuthMode::Passthrough)
        },
        started,
        Request {
            content_type: (verb != "get").then(|| "application/merge-patch+json".to_string()),
            scope: Some("namespaced".into()),
            ..examples::request(
                method,
                &format!("/apis/apps/v1/namespaces/shop/deployments/{name}{dry_run}"),
            )
        },
    );
    if verb == "patch" {
        entry.analysis = Some(AnalysisRecord {
            patch_type: Some("merge-patch".into()),
            touched_paths: vec!["/spec/replicas".into()],
            effect_paths: Some(vec!["/spec/replicas".into()]),
            whole_object: None,
            body_format: "json".into(),
            opaque_reason: None,
            object_name: None,
        });
    }
    if verb != "get" {
        entry.dry_run = Some(SentForwarded::unchanged(entry.request.query.is_some()));
        entry.fingerprint = Some(format!("{:064x}", sequence % 7));
    }
    if verb == "delete" {
        entry.grace_period = Some(SentForwarded::unchanged(None));
    }
    entry.decision = Some(DecisionRecord {
        mode: Mode::Observe,
        action: Action::Allow,
        enforce_action: Action::Allow,
        findings: vec![],
        rewrites: vec![],
        confirmed: false,
        budget: None,
    });
    entry.response = Some(ResponseRecord {
        status_code: status,
        reason: None,
        audit_id: Some(format!("{sequence:032x}")),
        origin: Origin::Upstream,
        end: Some(ResponseEnd::Complete),
        body_inspected: None,
    });
    entry.bytes_out = 2048;
    entry.finish(started + time::Duration::microseconds(900));
    entry
}

/// Writes the spool; returns its total size in bytes.
fn generate(dir: &Path, entries: u64, sessions: u64) -> u64 {
    let mut seq = 1;
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(dir.join(segment_name(seq))).unwrap());
    let (mut in_segment, mut total) = (0usize, 0u64);
    let mut line = Vec::with_capacity(4096);
    for sequence in 0..entries {
        let session = format!("bench-{}", sequence % sessions);
        line.clear();
        write_line(
            &mut line,
            &entry(&session, sequence, (sequence / sessions) % 10),
        )
        .unwrap();
        if in_segment + line.len() > SEGMENT_BYTES {
            file.flush().unwrap();
            seq += 1;
            file = std::io::BufWriter::new(
                std::fs::File::create(dir.join(segment_name(seq))).unwrap(),
            );
            in_segment = 0;
        }
        file.write_all(&line).unwrap();
        in_segment += line.len();
        total += line.len() as u64;
    }
    file.flush().unwrap();
    total
}

/// The child process: judges the spool and prints `runs violations peak_rss_kib`.
fn child(dir: &Path, session: Option<&str>) {
    let sessions: Vec<String> = session.into_iter().map(str::to_owned).collect();
    let mut autopsy = Autopsy::new(RunPolicy::default(), sessions.clone(), false);
    let wanted = |s: &str| sessions.iter().any(|w| w == s);
    let filter: Option<&dyn Fn(&str) -> bool> = if session.is_some() {
        Some(&wanted)
    } else {
        None
    };
    for_each_entry(
        &[LedgerSource::Spool(dir.to_path_buf())],
        filter,
        &mut |e| autopsy.push(&e),
    )
    .unwrap();
    let runs = autopsy.finish(&FinalState::Unchecked).unwrap();
    let violations: usize = runs.iter().map(|r| r.violations.len()).sum();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().trim_end_matches(" kB").to_string())
        .unwrap_or_else(|| "?".into());
    println!("{} {violations} {peak}", runs.len());
}

fn timed(mut command: Command) -> (f64, String, String) {
    let start = Instant::now();
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        start.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let session = args.get(3).filter(|s| *s != "-").map(String::as_str);
        return child(Path::new(&args[2]), session);
    }
    let entries = arg(&args, "--entries", 1_000_000);
    let sessions = arg(&args, "--sessions", 100);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let bytes = generate(dir.path(), entries, sessions);
    println!(
        "generated {entries} entries over {sessions} sessions: {:.0} MiB in {:.1}s",
        bytes as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
    let me = std::env::current_exe().unwrap();
    let target = "bench-7";
    let report = |name: &str, seconds: f64, peak: &str| {
        println!(
            "{name:<22} {seconds:>7.2}s {:>10.0} entries/s {:>7.1} MiB/s  peak RSS {peak}",
            entries as f64 / seconds,
            bytes as f64 / (1 << 20) as f64 / seconds
        );
    };
    let mut results = Vec::new();
    for (name, session) in [("autopsy --session", target), ("autopsy all sessions", "-")] {
        let mut command = Command::new(&me);
        command.arg("--child").arg(dir.path()).arg(session);
        let (seconds, stdout, _) = timed(command);
        let fields: Vec<&str> = stdout.split_whitespace().collect();
        report(
            name,
            seconds,
            &format!(
                "{} KiB ({} runs, {} violations)",
                fields[2], fields[0], fields[1]
            ),
        );
        results.push(seconds);
    }
    let segments: Vec<PathBuf> = pathgate::autopsy::input::spool_segments(dir.path()).unwrap();
    let filter = format!("select(.session==\"{target}\")");
    let time_binary = Path::new("/usr/bin/time");
    let jq = if time_binary.exists() {
        let mut command = Command::new(time_binary);
        command
            .args(["-f", "%M"])
            .arg("jq")
            .arg("-c")
            .arg(&filter)
            .args(&segments);
        command
    } else {
        let mut command = Command::new("jq");
        command.arg("-c").arg(&filter).args(&segments);
        command
    };
    if Command::new("jq").arg("--version").output().is_ok() {
        let (seconds, _, stderr) = timed(jq);
        let peak = stderr
            .lines()
            .last()
            .map_or("?".to_string(), |kib| format!("{} KiB", kib.trim()));
        report("jq select (reference)", seconds, &peak);
        println!(
            "ratio: autopsy --session is {:.1}x faster than jq; judging every session {:.1}x",
            seconds / results[0],
            seconds / results[1]
        );
    } else {
        println!("jq not installed: no reference measured");
    }
}
