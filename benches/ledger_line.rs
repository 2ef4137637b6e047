//! The cost of turning one ledger entry into its spool line, on the request path: the
//! ledger's own writer (`pathgate::ledger::write_line`) against `serde_json::to_writer` of
//! the same entry (the schema's reference; the two write the same bytes, which this bench
//! checks before measuring). The entry is the one a small GET through pathgate produces
//! (about 1 KB). Reproduce with:
//!
//! ```sh
//! cargo bench --bench ledger_line -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pathgate::ledger::{
    examples, write_line, Action, AnalysisRecord, AuthMode, Client, DecisionRecord, Entry, Mode,
    Origin, ResponseEnd, ResponseRecord,
};

/// A small GET's entry, as the load benchmark's spool holds it.
fn small_get() -> Entry {
    let started = time::OffsetDateTime::now_utc();
    let mut entry = Entry::new(
        "94b8a43a00db5178da266edffc116ad2",
        "token-sha256_d4c1fbf464f5b339",
        Client {
            user: None,
            token_fingerprint: Some("sha256:d4c1fbf464f5b339".into()),
            remote_addr: Some("127.0.0.1:38536".into()),
            ..examples::client(AuthMode::Passthrough)
        },
        started,
        examples::request("GET", "/api/v1/namespaces/default/configmaps/small"),
    );
    entry.analysis = Some(AnalysisRecord {
        patch_type: None,
        touched_paths: vec![],
        effect_paths: None,
        whole_object: None,
        body_format: "none".into(),
        opaque_reason: None,
        object_name: None,
    });
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
        status_code: 200,
        reason: None,
        audit_id: Some("00000000-0000-4000-8000-000000000000".into()),
        origin: Origin::Upstream,
        end: Some(ResponseEnd::Complete),
        body_inspected: None,
    });
    entry.bytes_out = 312;
    entry.finish(started + time::Duration::microseconds(535));
    entry
}

fn ledger_line(c: &mut Criterion) {
    let entry = small_get();
    let mut fast = Vec::new();
    write_line(&mut fast, &entry).expect("a writable entry");
    let mut reference = serde_json::to_vec(&entry).expect("a serializable entry");
    reference.push(b'\n');
    assert_eq!(fast, reference, "write_line and serde_json disagree");

    let mut group = c.benchmark_group("ledger_line");
    let mut buffer = Vec::with_capacity(4096);
    group.bench_function("write_line", |b| {
        b.iter(|| {
            buffer.clear();
            write_line(&mut buffer, black_box(&entry)).unwrap();
            black_box(buffer.len())
        })
    });
    group.bench_function("reference_serde_json", |b| {
        b.iter(|| {
            buffer.clear();
            serde_json::to_writer(&mut buffer, black_box(&entry)).unwrap();
            buffer.push(b'\n');
            black_box(buffer.len())
        })
    });
    group.finish();
}

criterion_group!(benches, ledger_line);
criterion_main!(benches);
