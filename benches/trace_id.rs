//! What an unpredictable trace id costs: `TraceId::random` (the thread's ChaCha12
//! generator) and the `traceparent` built with it, against the SplitMix64 generator they
//! replaced (kept below as the reference, measured in the same run).
//!
//! `cargo bench --bench trace_id`; compare the `chacha12` and `splitmix64` lines of each
//! group.

use std::cell::Cell;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pathgate::trace::{self, TraceId};

/// The generator pathgate used before: a per-thread SplitMix64 seeded once from the
/// operating system. Fast, and predictable from one output.
fn splitmix_fill(bytes: &mut [u8]) {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut seed = [0u8; 8];
            getrandom::fill(&mut seed).expect("operating system random source");
            u64::from_le_bytes(seed)
        });
    }
    STATE.with(|state| {
        for chunk in bytes.chunks_mut(8) {
            let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(next);
            let mut z = next;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    });
}

/// The reference's trace id and `traceparent`, as pathgate built them per request.
fn splitmix_request() -> (String, String) {
    let mut id = [0u8; 16];
    splitmix_fill(&mut id);
    let mut span = [0u8; 8];
    splitmix_fill(&mut span);
    let id = trace::hex(&id);
    let parent = format!("00-{id}-{}-01", trace::hex(&span));
    (id, parent)
}

fn trace_ids(c: &mut Criterion) {
    let mut ids = c.benchmark_group("trace_id");
    ids.bench_function("chacha12", |b| b.iter(|| black_box(TraceId::random())));
    ids.bench_function("splitmix64", |b| {
        b.iter(|| {
            let mut bytes = [0u8; 16];
            splitmix_fill(&mut bytes);
            black_box(bytes)
        })
    });
    ids.finish();

    // What a request spends: the id, its hex and the traceparent pathgate sends upstream.
    let mut request = c.benchmark_group("per_request");
    request.bench_function("chacha12", |b| {
        b.iter(|| {
            let id = TraceId::random();
            black_box((id.to_hex(), trace::traceparent(None, id)))
        })
    });
    request.bench_function("splitmix64", |b| b.iter(|| black_box(splitmix_request())));
    request.finish();
}

criterion_group!(benches, trace_ids);
criterion_main!(benches);
