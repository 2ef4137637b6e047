//! What an image write costs the mutation that waits for it: filling a spare file the
//! store made durable ahead of time (`ledger::images`' spares) against creating the file
//! in the write, as every write did before. Each write stores a new ~700-byte object and is
//! followed by a 2 ms pause (not timed) in which the spare thread tops up, as the time
//! between one agent's mutations allows; under sustained saturation the spares run out and
//! writes create their files again.
//!
//! The stores live under `target/` (the disk the ledger would use, not a tmpfs).
//! `cargo bench --bench image_write`; compare `spare` with `create` (the reference).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pathgate::ledger::images::{ImageLimits, ImageStore};
use pathgate::metrics::Metrics;

fn object(n: u64) -> Vec<u8> {
    let padding = "x".repeat(600);
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c{n}","namespace":"bench","resourceVersion":"{n}"}},"data":{{"v":"{padding}"}}}}"#
    )
    .into_bytes()
}

fn store(root: &std::path::Path, name: &str) -> ImageStore {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    ImageStore::open(&dir, ImageLimits::default(), None, Metrics::new()).expect("open the store")
}

fn writes(store: &ImageStore, first: &mut u64, iterations: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        std::thread::sleep(Duration::from_millis(2));
        *first += 1;
        let bytes = object(*first);
        let started = Instant::now();
        let record = store.put(&bytes, false);
        total += started.elapsed();
        assert!(record.digest().is_some(), "stored: {record:?}");
    }
    total
}

fn image_write(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-image-write");
    std::fs::create_dir_all(&root).expect("the bench directory");
    let spare = store(&root, "spare");
    let create = store(&root, "create").without_spares();
    let mut group = c.benchmark_group("image_write");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    let mut next = 0;
    group.bench_function("spare", |b| {
        b.iter_custom(|iterations| writes(&spare, &mut next, iterations))
    });
    group.bench_function("create", |b| {
        b.iter_custom(|iterations| writes(&create, &mut next, iterations))
    });
    group.finish();
    drop((spare, create));
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group!(benches, image_write);
criterion_main!(benches);
