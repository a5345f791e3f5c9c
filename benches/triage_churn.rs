//! Workload 8: triage latency under reader churn. R threads hammer reads of the
//! current response (`try_get`, which with the counted slot enters and leaves the
//! reader count in the state word) while one thread triages and publishes the next
//! request, over and over; each triage is timed from the call to the returned guard.
//!
//! Prints p50, p99 and max per R and slot, and leaves them in
//! `target/criterion/triage_churn/<slot>/<R>/latency.json` for `bench_report`.
//! `cargo bench --bench triage_churn`.

use exactly_once::slot::Slot;
use exactly_once::{ArcSwapSlot, CountedSlot, RequestNr, SessionState, Triage};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const READERS: [usize; 4] = [0, 8, 64, 512];
/// Triages timed per run, unless the time limit comes first.
const TRIAGES: usize = 2_000;
const TIME_LIMIT: Duration = Duration::from_secs(3);

fn nr(m: u64) -> RequestNr {
    RequestNr::new(m).expect("a valid request number")
}

/// Latency percentiles in nanoseconds.
struct Latency {
    p50: u64,
    p99: u64,
    max: u64,
    triages: usize,
}

fn main() {
    println!("| slot | R readers | triages | p50 | p99 | max |\n|---|---|---|---|---|---|");
    for readers in READERS {
        report("counted", readers, churn::<CountedSlot<u64>>(readers));
        report("arcswap", readers, churn::<ArcSwapSlot<u64>>(readers));
    }
}

fn churn<S: Slot<u64>>(readers: usize) -> Latency {
    let session = SessionState::<u64, S>::new();
    publish(&session, 1);
    let current = AtomicU64::new(1);
    let stop = AtomicBool::new(false);
    let mut samples = Vec::with_capacity(TRIAGES);
    thread::scope(|scope| {
        for _ in 0..readers {
            scope.spawn(|| {
                // ORDERING: relaxed; the flag and the number only steer the workload.
                while !stop.load(Ordering::Relaxed) {
                    let m = current.load(Ordering::Relaxed);
                    let _ = black_box(session.try_get(nr(m)));
                }
            });
        }
        thread::sleep(Duration::from_millis(20));
        let began = Instant::now();
        let mut m = 1;
        while samples.len() < TRIAGES && began.elapsed() < TIME_LIMIT {
            m += 1;
            samples.push(publish(&session, m));
            current.store(m, Ordering::Relaxed);
        }
        stop.store(true, Ordering::Relaxed);
    });
    percentiles(samples)
}

/// Triages and publishes `m`; returns how long the triage took.
fn publish<S: Slot<u64>>(session: &SessionState<u64, S>, m: u64) -> Duration {
    let began = Instant::now();
    let triage = session.triage(nr(m));
    let took = began.elapsed();
    match triage {
        Triage::Process(guard) => guard.publish(Arc::new(m)),
        other => panic!("triage({m}) gave {other:?}"),
    }
    took
}

fn percentiles(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_nanos() as u64
    };
    Latency {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
        triages: samples.len(),
    }
}

fn report(slot: &str, readers: usize, latency: Latency) {
    let Latency {
        p50,
        p99,
        max,
        triages,
    } = latency;
    println!("| {slot} | {readers} | {triages} | {p50} ns | {p99} ns | {max} ns |");
    let dir = criterion_dir()
        .join("triage_churn")
        .join(slot)
        .join(readers.to_string());
    let json = format!("{{\"p50\":{p50},\"p99\":{p99},\"max\":{max},\"triages\":{triages}}}\n");
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("latency.json"), json))
    {
        eprintln!("could not save {}: {e}", dir.display());
    }
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("criterion")
}
