//! Fault injection for tests and soak runs: a [`FaultHook`] that breaks connections.

use super::client::{Direction, FaultHook};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A hook that shuts the client's socket down before a send or receive with
/// probability `rate`, drawing from a generator seeded with `seed` (the same seed gives
/// the same sequence of draws).
pub fn random_shutdowns(rate: f64, seed: u64) -> FaultHook {
    let state = AtomicU64::new(seed);
    Arc::new(move |stream, _: Direction| {
        if unit_draw(&state) < rate {
            let _ = stream.shutdown(Shutdown::Both);
        }
    })
}

/// The next draw in [0, 1) of a SplitMix64 generator.
fn unit_draw(state: &AtomicU64) -> f64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    // ORDERING: each draw takes its own step of the sequence; nothing else is ordered.
    let mut z = state
        .fetch_add(GAMMA, Ordering::Relaxed)
        .wrapping_add(GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "a statistical test: 10,000 draws, too slow under Miri")]
    fn draws_are_uniform_enough_and_repeatable() {
        let a = AtomicU64::new(42);
        let draws: Vec<f64> = (0..10_000).map(|_| unit_draw(&a)).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let below = draws.iter().filter(|&&d| d < 0.1).count();
        assert!((800..1200).contains(&below), "{below} of 10000 below 0.1");
        let b = AtomicU64::new(42);
        assert_eq!(unit_draw(&b), draws[0]);
    }
}
