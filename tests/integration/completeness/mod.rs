//! Ledger completeness against the apiserver's audit log, under faults.
//!
//! Clients mutate ConfigMaps through the real `pathgate serve` binary (sidecar mode: the
//! apiserver sees pathgate's own identity, the cluster's `admin`; `on_failure:
//! fail-closed-mutations`) while the run, on a schedule, aborts requests a few
//! milliseconds after sending them ([`load`]), `kill -9`s pathgate and restarts it on the
//! same spool, takes the webhook sink down (refusing, then blackholing) and brings it back,
//! and fills the spool's filesystem to the last byte, then frees it ([`faults`]). Then
//! [`check`]: every mutation the audit log shows from pathgate's identity in the run's
//! namespace has an outcome with the same trace id (= `auditID`), or an intent when
//! pathgate died with it in flight; every refused mutation is absent from the audit log;
//! every answered one is recorded; the webhook received every spool entry.
//!
//! The short run is a test; the long one (`fault_run`, ignored by default) is the fault run
//! of docs/reliability.md:
//!
//! ```sh
//! PATHGATE_CLUSTER_DIR=/tmp/cluster cargo test --test integration completeness::fault_run -- --ignored --nocapture
//! ```

mod check;
mod faults;
mod load;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use check::{Answer, Audited, Completeness};
use faults::{Pathgate, Sink, SinkMode, Tmpfs};

/// What a run does, in seconds from the start of the load.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub seconds: u64,
    pub clients: usize,
    pub kills_at: Vec<u64>,
    /// The webhook receiver's outage.
    pub sink_outage: Option<SinkOutage>,
    /// The spool's filesystem is full from..until.
    pub disk_full: Option<(u64, u64)>,
    pub tmpfs_megabytes: u32,
}

/// The webhook receiver answers 503 from `from`, holds every request unanswered from
/// `blackhole_from`, and accepts again from `until` (seconds into the load).
#[derive(Debug, Clone, Copy)]
pub struct SinkOutage {
    pub from: u64,
    pub blackhole_from: u64,
    pub until: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Kill,
    Sink(SinkMode),
    Fill,
    Free,
}

impl FaultPlan {
    fn schedule(&self) -> Vec<(u64, Event)> {
        let mut events: Vec<(u64, Event)> =
            self.kills_at.iter().map(|at| (*at, Event::Kill)).collect();
        if let Some(outage) = self.sink_outage {
            events.extend([
                (outage.from, Event::Sink(SinkMode::Refuse)),
                (outage.blackhole_from, Event::Sink(SinkMode::Blackhole)),
                (outage.until, Event::Sink(SinkMode::Accept)),
            ]);
        }
        if let Some((from, until)) = self.disk_full {
            events.extend([(from, Event::Fill), (until, Event::Free)]);
        }
        events.sort_by_key(|(at, _)| *at);
        events
    }

    fn sink_outage_seconds(&self) -> u64 {
        self.sink_outage.map_or(0, |o| o.until - o.from)
    }
}

/// Everything a run produced, for the check and for the figures.
pub struct FaultRun {
    pub plan: FaultPlan,
    pub namespace: String,
    pub audited: Vec<Audited>,
    pub spool: Vec<serde_json::Value>,
    pub answers: Vec<Answer>,
    pub delivered: HashSet<String>,
    pub sent: usize,
    pub aborted: usize,
    pub failed: usize,
    /// When outcomes could be lost: each kill (an instant) and the full disk (from the
    /// start of the fill until the filler is removed: the spool's last partly written
    /// page still takes a few small writes once the filesystem is full).
    pub fault_windows: Vec<(OffsetDateTime, OffsetDateTime)>,
    /// Spool entries the webhook had not received when it recovered.
    pub undelivered_at_recovery: usize,
    /// From the sink's recovery (or the load's end) until it held every entry.
    pub catch_up: Duration,
    pub spool_dir: std::path::PathBuf,
    /// Holds the spool's filesystem until the run is dropped.
    _disk: Tmpfs,
}

const ENFORCE: &str = "mode: enforce\nsafety_gates:\n  dry_run_default: false\n";

/// The longest an intent may precede the fault that cut its outcome: the clients' answer
/// timeout plus the durable timeout, with room.
const IN_FLIGHT_BOUND: Duration = Duration::from_secs(15);

fn pathgate_args(dir: &Path, spool: &Path, sink_port: u16) -> Vec<OsString> {
    let cluster = crate::gateway::cluster();
    let config = dir.join("pathgate.yaml");
    std::fs::write(
        &config,
        format!(
            "{ENFORCE}ledger:\n  dir: {}\n  on_failure: fail-closed-mutations\n  \
             durable_timeout_ms: 2000\n  webhook:\n    url: http://127.0.0.1:{sink_port}/ledger\n    \
             timeout_ms: 1000\n",
            spool.display()
        ),
    )
    .unwrap();
    let certs = dir.join("certs");
    [
        "serve".into(),
        "--config".into(),
        config.into_os_string(),
        "--auth".into(),
        "sidecar".into(),
        "--upstream-kubeconfig".into(),
        cluster.dir.admin_kubeconfig().into_os_string(),
        "--admin-listen".into(),
        "off".into(),
        "--tls-cert".into(),
        certs.join("server.crt").into_os_string(),
        "--tls-key".into(),
        certs.join("server.key").into_os_string(),
        "--workers".into(),
        "2".into(),
    ]
    .into()
}

/// Runs `plan` against the test cluster and gathers what the check needs.
pub async fn run(plan: FaultPlan, work: &Path) -> FaultRun {
    let cluster = crate::gateway::cluster();
    let certs = pathgate::tls::init_certs(&work.join("certs"), &[], false).unwrap();
    let disk = Tmpfs::mount(plan.tmpfs_megabytes);
    let spool_dir = disk.path().join("spool");
    let sink = Sink::start().await;
    let port = crate::gateway::free_port();
    let args = pathgate_args(work, &spool_dir, sink.port);
    let mut pathgate = Pathgate::start(args, port, work.join("pathgate.log")).await;
    let namespace = crate::gateway::namespace(&cluster, "pg-complete").await;
    let target = load::Target {
        addr: ([127, 0, 0, 1], port).into(),
        ca: certs.ca_cert.clone(),
        namespace: namespace.clone(),
    };
    let tally = Arc::new(load::Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(plan.seconds);
    let clients: Vec<_> = (0..plan.clients)
        .map(|index| tokio::spawn(load::client(index, target.clone(), deadline, tally.clone())))
        .collect();
    let driven = drive(&plan, started, &mut pathgate, &sink, &disk, &spool_dir).await;
    for client in clients {
        client.await.unwrap();
    }
    let (undelivered_at_recovery, catch_up) = match driven.catching_up {
        Some(task) => task.await.unwrap(),
        None => (0, Duration::ZERO),
    };
    let delivered = wait_delivered(&spool_dir, &sink).await;
    pathgate.stop().await;
    // The audit backend writes in blocking mode; give the last events a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = std::fs::read_to_string(cluster.dir.audit_log()).unwrap();
    let audited = check::audited_mutations(&log, testcluster::ADMIN_USER, &namespace, "configmaps");
    let answers = std::mem::take(&mut *tally.answers.lock().unwrap());
    FaultRun {
        plan,
        namespace,
        audited,
        spool: spool_entries(&spool_dir),
        answers,
        delivered,
        sent: tally.sent.load(Ordering::Relaxed),
        aborted: tally.aborted.load(Ordering::Relaxed),
        failed: tally.failed.load(Ordering::Relaxed),
        fault_windows: driven.fault_windows,
        undelivered_at_recovery,
        catch_up,
        spool_dir,
        _disk: disk,
    }
}

/// What carrying out the schedule left behind.
struct Driven {
    fault_windows: Vec<(OffsetDateTime, OffsetDateTime)>,
    /// Counts what the sink lacked when it recovered and times its catching up.
    catching_up: Option<tokio::task::JoinHandle<(usize, Duration)>>,
}

/// Carries out the plan's faults at their times from `started`.
async fn drive(
    plan: &FaultPlan,
    started: Instant,
    pathgate: &mut Pathgate,
    sink: &Sink,
    disk: &Tmpfs,
    spool_dir: &Path,
) -> Driven {
    let mut fault_windows = Vec::new();
    let mut fill_started = None;
    let mut catching_up = None;
    for (at, event) in plan.schedule() {
        tokio::time::sleep_until((started + Duration::from_secs(at)).into()).await;
        eprintln!("fault run: {at} s: {event:?}");
        match event {
            Event::Kill => {
                let now = OffsetDateTime::now_utc();
                fault_windows.push((now, now));
                pathgate.kill_and_restart().await;
            }
            Event::Sink(mode) => {
                sink.set(mode);
                if mode == SinkMode::Accept {
                    let lacking = undelivered(spool_dir, sink);
                    catching_up = Some(tokio::spawn(catch_up(sink.received.clone(), lacking)));
                }
            }
            Event::Fill => {
                fill_started = Some(OffsetDateTime::now_utc());
                disk.fill();
            }
            Event::Free => {
                disk.free();
                let freed = OffsetDateTime::now_utc();
                fault_windows.push((fill_started.take().unwrap_or(freed), freed));
            }
        }
    }
    Driven {
        fault_windows,
        catching_up,
    }
}

/// The spool's entries; none when the directory is gone.
fn spool_entries(dir: &Path) -> Vec<serde_json::Value> {
    if dir.exists() {
        crate::recording::spool_entries(dir)
    } else {
        Vec::new()
    }
}

/// The spool entries (`trace_id/phase`) the receiver does not hold.
fn undelivered(spool: &Path, sink: &Sink) -> Vec<String> {
    let received = sink.received();
    check::spool_keys(&spool_entries(spool))
        .into_iter()
        .filter(|key| !received.contains(key))
        .collect()
}

/// Waits (up to two minutes) until the receiver holds every entry of `lacking`; returns
/// how many there were and how long that took.
async fn catch_up(
    received: Arc<Mutex<HashSet<String>>>,
    lacking: Vec<String>,
) -> (usize, Duration) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let holds_all = || {
        let received = received.lock().unwrap();
        lacking.iter().all(|key| received.contains(key))
    };
    while !holds_all() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (lacking.len(), started.elapsed())
}

/// Waits (up to two minutes: the sink's backoff reaches 30 s) until the receiver holds
/// every spool entry, and returns what it holds.
async fn wait_delivered(spool: &Path, sink: &Sink) -> HashSet<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !undelivered(spool, sink).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sink.received()
}

impl FaultRun {
    pub fn check(&self) -> Completeness {
        check::check(&self.audited, &self.spool, &self.answers, &self.delivered)
    }

    /// Intents without an outcome that started neither within a fault window nor up to
    /// [`IN_FLIGHT_BOUND`] before one: not explained by a fault.
    pub fn unexplained_intents(&self, report: &Completeness) -> Vec<String> {
        let format = time::format_description::well_known::Rfc3339;
        report
            .intent_only
            .iter()
            .filter(|(_, started)| {
                let Ok(started) = OffsetDateTime::parse(started, &format) else {
                    return true;
                };
                !self
                    .fault_windows
                    .iter()
                    .any(|(from, until)| started <= *until && *from - started <= IN_FLIGHT_BOUND)
            })
            .map(|(trace_id, _)| trace_id.clone())
            .collect()
    }

    /// The run's figures, one Markdown table.
    pub fn figures(&self, report: &Completeness) -> String {
        let plan = &self.plan;
        let disk_full = plan.disk_full.map_or(0, |(from, until)| until - from);
        let by_verb: Vec<String> = report
            .audited_by_verb
            .iter()
            .map(|(class, count)| format!("{class}: {count}"))
            .collect();
        let by_verb = by_verb.join(", ");
        let intent_only: Vec<String> = report
            .intent_only_by_verb
            .iter()
            .map(|(class, count)| format!("{class}: {count}"))
            .collect();
        let intent_only = format!("{} ({})", report.intent_only.len(), intent_only.join(", "));
        let rows = [
            (
                "load",
                format!(
                    "{} s, {} clients, namespace {}",
                    plan.seconds, plan.clients, self.namespace
                ),
            ),
            ("mutations sent", self.sent.to_string()),
            ("of which aborted by the client", self.aborted.to_string()),
            (
                "no answer (pathgate down, connection lost)",
                self.failed.to_string(),
            ),
            (
                "pathgate kill -9 and restart",
                plan.kills_at.len().to_string(),
            ),
            (
                "webhook sink down",
                format!("{} s", plan.sink_outage_seconds()),
            ),
            ("spool disk full", format!("{disk_full} s")),
            (
                "entries the sink lacked when it recovered",
                self.undelivered_at_recovery.to_string(),
            ),
            (
                "time until the sink held them all",
                format!("{:.1} s", self.catch_up.as_secs_f64()),
            ),
            ("mutations in the audit log", report.audited.to_string()),
            ("by verb and status", by_verb),
            ("with an outcome entry", report.with_outcome.to_string()),
            (
                "with an intent only (in flight at a kill or the fill)",
                intent_only,
            ),
            (
                "**missing from the ledger**",
                report.missing.len().to_string(),
            ),
            (
                "outcomes of mutations whose client had left",
                report.client_aborted_outcomes.to_string(),
            ),
            ("answers received", report.answered.to_string()),
            (
                "answered without an outcome or the ledger's warning",
                report.answered_unrecorded.len().to_string(),
            ),
            (
                "answered with the ledger's outcome warning",
                report.answered_with_warning.to_string(),
            ),
            (
                "refused (fail-closed, disk full)",
                report.refused.to_string(),
            ),
            (
                "refused but in the audit log",
                report.refused_but_audited.len().to_string(),
            ),
            ("spool entries", report.spool_entries.to_string()),
            (
                "outcomes from the apiserver missing from its audit log",
                report.unaudited_outcomes.len().to_string(),
            ),
            (
                "spool entries the sink never received",
                report.undelivered.len().to_string(),
            ),
        ];
        let mut table = String::from("| | |\n|---|---|\n");
        for (what, value) in rows {
            table.push_str(&format!("| {what} | {value} |\n"));
        }
        table
    }

    /// Panics with the figures unless nothing was lost and every fault left its trace.
    pub fn assert_complete(&self, report: &Completeness) {
        let figures = self.figures(report);
        assert!(
            report.is_complete(),
            "entries lost:\n{figures}\n{report:#?}"
        );
        let unexplained = self.unexplained_intents(report);
        assert!(
            unexplained.is_empty(),
            "intents without an outcome and without a fault: {unexplained:?} (intents: {:?}, faults: {:?})\n{figures}",
            report.intent_only,
            self.fault_windows,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audited_mutation_is_in_the_ledger_through_kills_aborts_a_sink_outage_and_a_full_disk(
) {
    let work = tempfile::tempdir().unwrap();
    let plan = FaultPlan {
        seconds: 24,
        clients: 4,
        kills_at: vec![6, 14],
        sink_outage: Some(SinkOutage {
            from: 3,
            blackhole_from: 9,
            until: 16,
        }),
        disk_full: Some((18, 21)),
        tmpfs_megabytes: 256,
    };
    let run = run(plan, work.path()).await;
    let report = run.check();
    eprintln!("{}", run.figures(&report));
    run.assert_complete(&report);
    // Each fault bit: aborts reached pathgate, the full disk refused mutations, the sink
    // lacked entries when it came back, and the kills cut connections.
    assert!(
        run.aborted > 0 && run.failed > 0,
        "{}",
        run.figures(&report)
    );
    assert!(report.refused > 0, "{}", run.figures(&report));
    assert!(run.undelivered_at_recovery > 0, "{}", run.figures(&report));
    assert!(report.with_outcome > 100, "{}", run.figures(&report));
}

/// The check fails when the ledger loses entries: the same kind of run without faults,
/// held against a spool with one request's entries removed, then against none (the ledger
/// directory removed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_finds_a_mutation_the_ledger_lost() {
    let work = tempfile::tempdir().unwrap();
    let plan = FaultPlan {
        seconds: 3,
        clients: 2,
        kills_at: vec![],
        sink_outage: None,
        disk_full: None,
        tmpfs_megabytes: 64,
    };
    let mut run = run(plan, work.path()).await;
    let report = run.check();
    run.assert_complete(&report);
    assert!(report.audited > 10, "{}", run.figures(&report));

    let lost = run.audited[report.audited / 2].audit_id.clone();
    run.spool.retain(|entry| entry["trace_id"] != lost.as_str());
    let report = run.check();
    assert_eq!(report.missing, vec![lost.clone()]);
    assert!(!report.is_complete());

    std::fs::remove_dir_all(&run.spool_dir).unwrap();
    run.spool = spool_entries(&run.spool_dir);
    let report = run.check();
    assert_eq!(report.missing.len(), report.audited);
    assert!(!report.is_complete());
}

/// The documented fault run (docs/reliability.md): five minutes, six kills, the sink down
/// for three minutes, the disk full for thirty seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "five minutes: the fault run of docs/reliability.md (run with --ignored)"]
async fn fault_run() {
    let work = tempfile::tempdir().unwrap();
    let plan = FaultPlan {
        seconds: 300,
        clients: 6,
        kills_at: vec![25, 65, 105, 145, 185, 280],
        sink_outage: Some(SinkOutage {
            from: 40,
            blackhole_from: 130,
            until: 220,
        }),
        disk_full: Some((235, 265)),
        tmpfs_megabytes: 1024,
    };
    let run = run(plan, work.path()).await;
    let report = run.check();
    println!("{}", run.figures(&report));
    run.assert_complete(&report);
}
