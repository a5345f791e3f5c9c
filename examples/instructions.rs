//! The hot paths, each run a given number of times on one thread, for
//! `scripts/instructions`, which counts their instructions under callgrind.
//!
//! ```sh
//! cargo run --release --example instructions -- cycle counted 100000
//! ```
//!
//! The script runs each path twice with different counts and divides the difference in
//! instructions by the difference in counts, so start-up and argument parsing cancel out.
//!
//! - `cycle`: triage of the next number, publish, read the response back (`try_get`).
//! - `resend`: triage of the answered current number (says resend), then `try_get`.
//! - `publish`: triage of the next number and publish, no read.
//! - `seed`: the cycle through MUSCLE3's calls: `triage_request`, `set_response`,
//!   `wait_get_response`.

use clap::{Parser, ValueEnum};
use exactly_once::{ArcSwapSessionState, RequestNr, SessionState, Slot, Triage};
use std::hint::black_box;
use std::sync::Arc;

/// Runs one hot path of the session state machine a given number of times.
#[derive(Parser, Debug)]
struct Args {
    /// Which path.
    #[arg(value_enum)]
    path: Path,
    /// Which response slot.
    #[arg(value_enum)]
    slot: SlotKind,
    /// How many times.
    iterations: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Path {
    Cycle,
    Resend,
    Publish,
    Seed,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SlotKind {
    /// `SessionState<u64>`: the counted slot.
    Counted,
    /// `ArcSwapSessionState<u64>`.
    Arcswap,
}

fn nr(m: u64) -> RequestNr {
    RequestNr::new(m).expect("a valid request number")
}

/// Triage of `m`, which must be processable, and publish.
#[inline(always)]
fn publish<S: Slot<u64>>(session: &SessionState<u64, S>, m: u64, response: &Arc<u64>) {
    match session.triage(black_box(nr(m))) {
        Triage::Process(guard) => guard.publish(Arc::clone(response)),
        other => panic!("triage({m}) gave {other:?}"),
    }
}

#[inline(never)]
fn cycles<S: Slot<u64>>(session: &SessionState<u64, S>, iterations: u64) {
    let response = Arc::new(7);
    for m in 1..=iterations {
        publish(session, m, &response);
        black_box(session.try_get(nr(m)).expect("settled"));
    }
}

#[inline(never)]
fn resends<S: Slot<u64>>(session: &SessionState<u64, S>, iterations: u64) {
    publish(session, 1, &Arc::new(7));
    for _ in 0..iterations {
        let triage = session.triage(black_box(nr(1)));
        assert!(matches!(triage, Triage::Resend), "{triage:?}");
        black_box(session.try_get(nr(1)).expect("settled"));
    }
}

#[inline(never)]
fn publishes<S: Slot<u64>>(session: &SessionState<u64, S>, iterations: u64) {
    let response = Arc::new(7);
    for m in 1..=iterations {
        publish(session, m, &response);
    }
}

#[inline(never)]
fn seed_cycles<S: Slot<u64>>(session: &SessionState<u64, S>, iterations: u64) {
    let response = Arc::new(7);
    for m in 1..=iterations {
        let triage = session
            .triage_request(black_box(m))
            .expect("a valid number");
        assert_eq!(triage, (true, true));
        session
            .set_response(Arc::clone(&response))
            .expect("processing");
        black_box(session.wait_get_response(m).expect("a valid number"));
    }
}

fn run<S: Slot<u64>>(session: &SessionState<u64, S>, args: &Args) {
    match args.path {
        Path::Cycle => cycles(session, args.iterations),
        Path::Resend => resends(session, args.iterations),
        Path::Publish => publishes(session, args.iterations),
        Path::Seed => seed_cycles(session, args.iterations),
    }
}

fn main() {
    let args = Args::parse();
    match args.slot {
        SlotKind::Counted => run(&SessionState::<u64>::default(), &args),
        SlotKind::Arcswap => run(&ArcSwapSessionState::<u64>::default(), &args),
    }
}
