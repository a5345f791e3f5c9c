//! Workloads 1 and 2, on one thread, for every implementation:
//!
//! 1. `cycle`: the uncontended request cycle — triage, publish, read the response back
//!    as a resending handler would (`try_get` / the seed's `wait_get_response`); the
//!    bare-atomics floor runs here as the lower bound.
//! 2. `resend_ready`: a re-request of the answered current request (triage says
//!    resend, then read); `resend_processing`: a re-request while the request is still
//!    being processed (triage says resend, and the non-blocking probe says pending:
//!    `try_get` gives `Pending`, the locks' `would_block` says so).
//! 1. `seed_cycle`: the same cycle through the original's three calls
//!    (`triage_request`, `set_response`, `wait_get_response`) on every implementation.
//!
//! `cargo bench --bench cycle`; `cargo run --release --example bench_report` tabulates.

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

#[macro_use]
mod peers;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use peers::floor::BareAtomicsFloor;
use peers::{Cycle, Implementation, Response, SeedCalls};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

type Group<'c> = BenchmarkGroup<'c, WallTime>;

fn request_cycle<I: Cycle>(group: &mut Group<'_>) {
    timed_cycles(group, I::ID, peers::cycle::<I>);
}

fn seed_cycle<I: SeedCalls>(group: &mut Group<'_>) {
    timed_cycles(group, I::ID, peers::seed_cycle::<I>);
}

/// Times `cycle` on a fresh session, one request number per iteration.
fn timed_cycles<I: Default>(
    group: &mut Group<'_>,
    id: &str,
    cycle: fn(&I, u64, &Response) -> Response,
) {
    let response: Response = Arc::new(7);
    group.bench_function(id, |b| {
        let session = I::default();
        let mut m = 0;
        b.iter(|| {
            m += 1;
            black_box(cycle(&session, black_box(m), &response))
        })
    });
}

fn resend_ready<I: Implementation>(group: &mut Group<'_>) {
    let session = I::default();
    peers::cycle(&session, 1, &Arc::new(7));
    group.bench_function(I::ID, |b| {
        b.iter(|| {
            session.triage_resend(black_box(1));
            black_box(session.read(1))
        })
    });
}

fn resend_processing<I: Implementation>(group: &mut Group<'_>) {
    let session = I::default();
    let processing = session.process(1);
    group.bench_function(I::ID, |b| {
        b.iter(|| {
            session.triage_resend(black_box(1));
            assert!(session.is_pending(black_box(1)));
        })
    });
    I::complete(processing, Arc::new(7));
}

fn group<'c>(c: &'c mut Criterion, name: &str, measure: Duration) -> Group<'c> {
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(measure);
    group
}

fn workloads(c: &mut Criterion) {
    let mut cycle = group(c, "cycle", Duration::from_secs(3));
    each_implementation!(request_cycle(&mut cycle));
    request_cycle::<BareAtomicsFloor>(&mut cycle);
    cycle.finish();

    let mut seed = group(c, "seed_cycle", Duration::from_secs(3));
    each_implementation!(seed_cycle(&mut seed));
    seed.finish();

    let mut ready = group(c, "resend_ready", Duration::from_secs(2));
    each_implementation!(resend_ready(&mut ready));
    ready.finish();

    let mut processing = group(c, "resend_processing", Duration::from_secs(2));
    each_implementation!(resend_processing(&mut processing));
    processing.finish();
}

criterion_group! {
    name = benches;
    config = peers::criterion();
    targets = workloads
}
criterion_main!(benches);
