//! Workloads 4 and 5: hand-offs to parked threads, for every implementation.
//!
//! 4. `handoff`: ping-pong between two threads through sessions; one iteration is a
//!    round trip (A publishes `k`, B wakes and publishes `k` back, A wakes).
//! 5. `wake/W`: one thread publishes request `m` while W threads are parked waiting
//!    for it; one iteration lasts from the publish until the last waiter has returned.
//!
//! `handoff_busy` and `wake_busy/1` run the same with one background thread spinning on
//! each core but one: a machine with no core to spare, where a waiter that spins holds
//! the core its publisher needs.
//!
//! The seed hangs when asked to wait for a number that is not triaged yet, so every
//! wait here is for a number its publisher has already triaged. In the ping-pong each
//! direction therefore alternates between two sessions, and each thread triages the
//! next round's number before publishing the current one: the waiter never waits
//! ahead of the triage, and the publisher never triages past a response the waiter
//! has not read yet. Every implementation runs exactly these calls.
//!
//! `cargo bench --bench handoff`.

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

#[macro_use]
mod peers;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
};
use peers::pingpong::{round_trips, BusyCores};
use peers::{Implementation, Response};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const WAITERS: [usize; 3] = [1, 4, 16];

type Group<'c> = BenchmarkGroup<'c, WallTime>;

fn handoff<I: Implementation>(group: &mut Group<'_>) {
    group.bench_function(I::ID, |b| b.iter_custom(round_trips::<I>));
}

fn wake<I: Implementation>(group: &mut Group<'_>, waiters: usize) {
    group.bench_with_input(BenchmarkId::new(I::ID, waiters), &waiters, |b, &w| {
        b.iter_custom(|iters| wake_parked::<I>(w, iters))
    });
}

/// A waiter thread as the publisher sees it: whether it is about to wait, and its
/// kernel thread id, to tell from `/proc` when it is asleep.
struct Waiter {
    armed: AtomicBool,
    tid: AtomicU64,
    returned_at: AtomicU64,
}

fn wake_parked<I: Implementation>(waiters: usize, iters: u64) -> Duration {
    let session = I::default();
    let response: Response = Arc::new(7);
    let gate = Barrier::new(waiters + 1);
    let done = Barrier::new(waiters + 1);
    let epoch = Instant::now();
    let since_epoch = || epoch.elapsed().as_nanos() as u64;
    let states: Vec<Waiter> = (0..waiters)
        .map(|_| Waiter {
            armed: AtomicBool::new(false),
            tid: AtomicU64::new(0),
            returned_at: AtomicU64::new(0),
        })
        .collect();
    thread::scope(|scope| {
        for me in &states {
            let (session, gate, done) = (&session, &gate, &done);
            scope.spawn(move || {
                me.tid.store(own_tid().unwrap_or(0), Ordering::Relaxed);
                for m in 1..=iters {
                    gate.wait();
                    me.armed.store(true, Ordering::SeqCst);
                    black_box(session.wait_for(m));
                    me.returned_at.store(since_epoch(), Ordering::Relaxed);
                    me.armed.store(false, Ordering::SeqCst);
                    done.wait();
                }
            });
        }
        let mut total = Duration::ZERO;
        for m in 1..=iters {
            let processing = session.process(m);
            gate.wait();
            wait_until_asleep(&states);
            let published_at = since_epoch();
            I::complete(processing, Arc::clone(&response));
            done.wait();
            let last = states.iter().map(|w| w.returned_at.load(Ordering::Relaxed));
            total += Duration::from_nanos(last.max().unwrap_or(0) - published_at);
        }
        total
    })
}

/// Returns once every waiter is armed and asleep in the kernel (its only blocking call
/// once armed is the wait under test). Without `/proc`, sleeps a millisecond instead.
fn wait_until_asleep(waiters: &[Waiter]) {
    // Twice in a row: a waiter briefly asleep on a lock port's mutex, on its way to
    // the condvar, is seen awake the second time.
    for _ in 0..2 {
        for w in waiters {
            loop {
                let armed = w.armed.load(Ordering::SeqCst);
                match asleep(w.tid.load(Ordering::Relaxed)) {
                    None => return thread::sleep(Duration::from_millis(1)),
                    Some(true) if armed => break,
                    Some(_) => thread::yield_now(),
                }
            }
        }
    }
}

/// This thread's kernel id, from the `/proc/thread-self` link (`<pid>/task/<tid>`).
fn own_tid() -> Option<u64> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Whether thread `tid` of this process is sleeping (`S` in its `stat`).
fn asleep(tid: u64) -> Option<bool> {
    if tid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.trim_start().starts_with('S'))
}

/// The settings of the hand-off groups: round trips are tens of microseconds.
fn handoff_group<'c>(c: &'c mut Criterion, name: &str) -> Group<'c> {
    let mut group = c.benchmark_group(name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

/// The settings of the wake groups: each iteration parks and wakes real threads.
fn wake_group<'c>(c: &'c mut Criterion, name: &str) -> Group<'c> {
    let mut group = c.benchmark_group(name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    group
}

fn workloads(c: &mut Criterion) {
    let mut group = handoff_group(c, "handoff");
    each_implementation!(handoff(&mut group));
    group.finish();

    let mut group = wake_group(c, "wake");
    for w in WAITERS {
        each_implementation!(wake(&mut group, w));
    }
    group.finish();

    let busy = BusyCores::start();
    let mut group = handoff_group(c, "handoff_busy");
    each_implementation!(handoff(&mut group));
    group.finish();

    let mut group = wake_group(c, "wake_busy");
    each_implementation!(wake(&mut group, 1));
    group.finish();
    drop(busy);
}

criterion_group! {
    name = benches;
    config = peers::criterion();
    targets = workloads
}
criterion_main!(benches);
