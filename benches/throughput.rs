//! Workload 6: T threads, each driving sessions of its own with the uncontended
//! request cycle (T = 1, 2, and 4 where more than two CPUs are available).
//!
//! Each thread allocates its sessions and its response itself, so nothing it writes
//! shares a cache line with another thread's unless the implementation shares
//! something behind the scenes. One iteration is one cycle on every thread; the time
//! is the wall time of the parallel phase divided by the cycles each thread ran, i.e.
//! the time per cycle per thread. Throughput scaling is `T * time(1) / time(T)`
//! (`examples/bench_report.rs` computes it).
//!
//! `cargo bench --bench throughput`.

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

#[macro_use]
mod peers;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
};
use crossbeam_utils::CachePadded;
use peers::{Implementation, Response};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// Sessions per thread, used round-robin.
const SESSIONS: u64 = 4;

type Group<'c> = BenchmarkGroup<'c, WallTime>;

fn throughput<I: Implementation>(group: &mut Group<'_>, threads: usize) {
    group.bench_with_input(BenchmarkId::new(I::ID, threads), &threads, |b, &t| {
        b.iter_custom(|cycles| parallel_cycles::<I>(t, cycles))
    });
}

fn parallel_cycles<I: Implementation>(threads: usize, cycles: u64) -> Duration {
    let start = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| own_cycles::<I>(cycles, &start)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let began = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("one thread at least");
    let ended = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("one thread at least");
    ended - began
}

fn own_cycles<I: Implementation>(cycles: u64, start: &Barrier) -> (Instant, Instant) {
    // Each on cache lines of its own: two threads' small allocations can otherwise
    // share a line, and which do depends on what ran before.
    let sessions: Vec<CachePadded<I>> = (0..SESSIONS).map(|_| CachePadded::default()).collect();
    let response: Response = Arc::new(7);
    start.wait();
    let began = Instant::now();
    for i in 0..cycles {
        let session = &sessions[(i % SESSIONS) as usize];
        black_box(peers::cycle(&**session, i / SESSIONS + 1, &response));
    }
    (began, Instant::now())
}

fn workloads(c: &mut Criterion) {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("throughput");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500));
    for threads in [1, 2, 4].into_iter().filter(|&t| t <= 2 || cpus > 2) {
        each_implementation!(throughput(&mut group, threads));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = peers::criterion();
    targets = workloads
}
criterion_main!(benches);
