//! Workload 3: the cost of publishing while K threads that have once read a response
//! through the same mechanism are alive (K = 0, 16, 256, 1024).
//!
//! For each implementation, K threads (64 KiB stacks) each read one response from a
//! session of their own kind — for the arc-swap slot that registers each of them in
//! arc-swap's process-wide debt list, whatever session they read — then park on a
//! barrier for the whole measurement, while the main thread measures triage + publish
//! on a different session. The threads are released and joined after.
//!
//! This binary must stay its own process and measure K in increasing order: arc-swap's
//! list never shrinks, so an earlier K=1024 would be paid by every later measurement.
//!
//! `cargo bench --bench publish`.

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

#[macro_use]
mod peers;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use peers::{Implementation, Response};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

const PARKED_THREADS: [usize; 4] = [0, 16, 256, 1024];
const STACK: usize = 64 * 1024;

type Group<'c> = BenchmarkGroup<'c, WallTime>;

fn publish_with_parked<I: Implementation>(group: &mut Group<'_>, k: usize) {
    let response: Response = Arc::new(7);
    let touched = I::default();
    peers::publish(&touched, 1, &response);
    let have_read = Barrier::new(k + 1);
    let release = Barrier::new(k + 1);
    thread::scope(|scope| {
        for _ in 0..k {
            thread::Builder::new()
                .stack_size(STACK)
                .spawn_scoped(scope, || {
                    black_box(touched.read(1));
                    have_read.wait();
                    release.wait();
                })
                .expect("spawn a parked thread");
        }
        have_read.wait();
        group.bench_with_input(BenchmarkId::new(I::ID, k), &k, |b, _| {
            let session = I::default();
            let mut m = 0;
            b.iter(|| {
                m += 1;
                peers::publish(&session, black_box(m), &response)
            })
        });
        release.wait();
    });
}

fn workloads(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for k in PARKED_THREADS {
        each_implementation!(publish_with_parked(&mut group, k));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = peers::criterion();
    targets = workloads
}
criterion_main!(benches);
