//! The ping-pong hand-off of `benches/handoff.rs` in alternating rounds: each round
//! runs every implementation once, on fresh threads, so that all of them meet the
//! machine in the same states; the report gives each one's median round trip over
//! the rounds and the ratio to parking_lot, idle and with every core but one busy.
//!
//! ```sh
//! cargo bench --bench handoff_rounds -- --rounds 15 --trips 4000
//! ```
//!
//! On a virtual machine a hand-off to a thread asleep on another, idle, virtual CPU
//! costs tens of microseconds, and one to a thread that the scheduler placed on the
//! waker's CPU about a microsecond and a half; which of the two a run gets depends on
//! where the scheduler put the threads and on the hypervisor, for every
//! implementation alike. Criterion measures one implementation after the other and
//! can give one the fast state and the next the slow; alternating rounds cannot.

#![allow(missing_docs)]

#[macro_use]
mod peers;

use peers::args::flag;
use peers::pingpong::{round_trips, BusyCores};
use peers::Implementation;
use std::collections::BTreeMap;

struct Settings {
    rounds: usize,
    trips: u64,
}

fn settings() -> Settings {
    Settings {
        rounds: flag("--rounds", 15),
        trips: flag("--trips", 4000),
    }
}

/// Mean round trip of one run, in nanoseconds, keyed by implementation.
type Runs = BTreeMap<&'static str, Vec<f64>>;

fn run<I: Implementation>(runs: &mut Runs, trips: u64) {
    let took = round_trips::<I>(trips);
    let mean = took.as_nanos() as f64 / trips as f64;
    runs.entry(I::ID).or_default().push(mean);
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn report(name: &str, runs: &Runs) {
    let baseline = runs.get("parking_lot").map(|r| median(r));
    println!("{name}: median (and mean) of each run's mean round trip; ratio = parking_lot / this");
    for (id, values) in runs {
        let m = median(values);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let ratio = baseline.map_or(String::new(), |b| format!("{:.2}x", b / m));
        println!(
            "  {id:12} {:>9.2} µs ({:>8.2} µs)  {ratio}",
            m / 1e3,
            mean / 1e3
        );
    }
}

fn rounds(settings: &Settings) -> Runs {
    let mut runs = Runs::new();
    for _ in 0..settings.rounds {
        each_implementation!(run(&mut runs, settings.trips));
    }
    runs
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks every bench target for its benchmarks.
    }
    let settings = settings();
    report("handoff (idle)", &rounds(&settings));
    let busy = BusyCores::start();
    report(
        "handoff_busy (every core but one spinning)",
        &rounds(&settings),
    );
    drop(busy);
}
