//! What running a request in a task of its own costs (`proxy::handler::handle` does it for
//! requests with a body: a connection permit, a tracked `tokio::spawn` and a oneshot
//! channel for the answer, so that a client that goes away cannot cancel a forwarded
//! mutation), against awaiting the same work inline, as reads still are. Measured on a current-thread runtime (pathgate's default single
//! worker) and on a two-worker runtime.
//!
//! `cargo bench --bench request_task`; compare `spawned` with `inline` in each group.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::Arc;

use tokio::sync::{oneshot, Semaphore};
use tokio_util::task::TaskTracker;

/// Stands in for a request's pipeline: a future of realistic size (the handler's state
/// machine holds a few KiB) that yields once, as a request waiting on its upstream does.
async fn request(input: u64) -> u64 {
    let state = [input; 256];
    tokio::task::yield_now().await;
    black_box(&state).iter().sum()
}

async fn spawned(permits: &Arc<Semaphore>, tracker: &TaskTracker, input: u64) -> u64 {
    let permit = Arc::clone(permits).acquire_owned().await.unwrap();
    let (reply, answer) = oneshot::channel();
    tracker.spawn(async move {
        let _permit = permit;
        let _ = reply.send(request(input).await);
    });
    answer.await.unwrap_or_default()
}

fn request_task(c: &mut Criterion) {
    let runtimes = [
        (
            "current_thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
        (
            "two_workers",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ),
    ];
    for (name, runtime) in &runtimes {
        let tracker = TaskTracker::new();
        let mut group = c.benchmark_group(*name);
        // Each sample's loop runs inside a task, as the handler runs in a connection's.
        group.bench_function("inline", |b| {
            b.iter_custom(|iterations| {
                runtime
                    .block_on(runtime.spawn(async move {
                        let start = Instant::now();
                        for i in 0..iterations {
                            black_box(request(i).await);
                        }
                        start.elapsed()
                    }))
                    .unwrap()
            })
        });
        group.bench_function("spawned", |b| {
            b.iter_custom(|iterations| {
                let tracker = tracker.clone();
                let permits = Arc::new(Semaphore::new(200));
                runtime
                    .block_on(runtime.spawn(async move {
                        let start = Instant::now();
                        for i in 0..iterations {
                            black_box(spawned(&permits, &tracker, i).await);
                        }
                        start.elapsed()
                    }))
                    .unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, request_task);
criterion_main!(benches);
