//! The ping-pong hand-off between two threads (`benches/handoff.rs` times it under
//! criterion, `benches/handoff_rounds.rs` in alternating rounds), and a load that
//! keeps every core but one busy.
//!
//! The seed hangs when asked to wait for a number that is not triaged yet, so every
//! wait here is for a number its publisher has already triaged: each direction
//! alternates between two sessions, and each thread triages the next round's number
//! before publishing the current one.

use super::{Implementation, Response};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// `rounds` round trips between two fresh threads through fresh sessions; the time
/// the leading thread measured.
pub fn round_trips<I: Implementation>(rounds: u64) -> Duration {
    let a_to_b: [I; 2] = Default::default();
    let b_to_a: [I; 2] = Default::default();
    let start = Barrier::new(2);
    thread::scope(|scope| {
        scope.spawn(|| play(&b_to_a, &a_to_b, rounds, false, &start));
        play(&a_to_b, &b_to_a, rounds, true, &start)
    })
}

/// One side of the ping-pong: publishes round `k` on `own[k % 2]` and waits for round
/// `k` on `other[k % 2]` — the leader publishes first, the echo waits first.
fn play<I: Implementation>(
    own: &[I; 2],
    other: &[I; 2],
    rounds: u64,
    leads: bool,
    start: &Barrier,
) -> Duration {
    let response: Response = Arc::new(7);
    let mut triaged = [None, Some(own[1].process(1))];
    start.wait();
    let began = Instant::now();
    for k in 1..=rounds {
        let (this, next) = ((k % 2) as usize, ((k + 1) % 2) as usize);
        if !leads {
            black_box(other[this].wait_for(k));
        }
        // The other side has read round k - 1 from own[next]: this triage cannot take
        // a response from under it, and is done before it can wait for round k + 1.
        triaged[next] = Some(own[next].process(k + 1));
        let processing = triaged[this].take().expect("triaged a round ahead");
        I::complete(processing, Arc::clone(&response));
        if leads {
            black_box(other[this].wait_for(k));
        }
    }
    began.elapsed()
}

/// One thread spinning on each core but one, until dropped.
pub struct BusyCores {
    stop: Arc<AtomicBool>,
    spinners: Vec<thread::JoinHandle<()>>,
}

impl BusyCores {
    /// Starts the spinners.
    pub fn start() -> Self {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let spinners = (1..cores)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        BusyCores { stop, spinners }
    }
}

impl Drop for BusyCores {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for spinner in self.spinners.drain(..) {
            let _ = spinner.join();
        }
    }
}
