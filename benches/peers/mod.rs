//! The peers every benchmark compares, behind one trait, so that each workload is
//! written once and run against all of them.
//!
//! | id            | what                                                              |
//! |---------------|-------------------------------------------------------------------|
//! | `counted`     | `SessionState<u64>`: the lock-free word with the counted slot     |
//! | `arcswap`     | `ArcSwapSessionState<u64>`: the same word with `ArcSwapOption`    |
//! | `std`         | `exactly_once::baseline::Baseline`: the seed on std Mutex+Condvar |
//! | `parking_lot` | [`parking_lot_seed::ParkingLotSeed`]: the seed on parking_lot's M+C |
//! | `floor`       | [`floor::BareAtomicsFloor`]: NOT an implementation, a lower bound |
//!
//! Each workload calls the trait below and nothing else, in the implementation's
//! natural API: the typed triage and guard for the lock-free state, the seed's three
//! calls for the two locks. Shared by the bench binaries and `examples/bench_report.rs`
//! through `mod peers;` / `#[path]`.

// Every bench binary, and the report, uses a different part of this module.
#![allow(dead_code, unused_macros)]

pub mod args;
pub mod floor;
pub mod parking_lot_seed;
pub mod pingpong;

use exactly_once::baseline::Baseline;
use exactly_once::{ArcSwapSessionState, RequestNr, SessionState, Triage, TryGetError};
use floor::BareAtomicsFloor;
use parking_lot_seed::ParkingLotSeed;
use std::sync::Arc;

/// Runs one workload, `$workload::<I>(args)`, for each of the four implementations, in
/// the report's order. (The floor is not among them: it has only [`Cycle`].)
macro_rules! each_implementation {
    ($workload:ident($($arg:expr),* $(,)?)) => {{
        $workload::<exactly_once::SessionState<u64>>($($arg),*);
        $workload::<exactly_once::ArcSwapSessionState<u64>>($($arg),*);
        $workload::<exactly_once::baseline::Baseline<u64>>($($arg),*);
        $workload::<$crate::peers::parking_lot_seed::ParkingLotSeed<u64>>($($arg),*);
    }};
}

/// The response every workload publishes: a shared, already allocated value, so that
/// allocation is not part of any measurement.
pub type Response = Arc<u64>;

/// The operations of the uncontended request cycle (workload 1); the floor has only
/// these.
pub trait Cycle: Default {
    /// Criterion's function id and the report's key; directory-safe.
    const ID: &'static str;

    /// The right to publish one request: the lock-free guard; the locks need none.
    type Processing<'a>
    where
        Self: 'a;

    /// Triage of `m`, which the caller knows is processable (panics otherwise).
    fn process(&self, m: u64) -> Self::Processing<'_>;

    /// Publishes the response of the request `processing` was handed out for.
    fn complete(processing: Self::Processing<'_>, response: Response);

    /// The response of `m`, which the caller knows is settled (panics otherwise),
    /// read back as a resending handler would, without blocking machinery where the
    /// implementation has a non-blocking read.
    fn read(&self, m: u64) -> Response;
}

/// Everything the other workloads need; the floor does not implement it.
pub trait Implementation: Cycle + Send + Sync {
    /// Triage of `m`, which the caller knows is the current request: must say "resend".
    fn triage_resend(&self, m: u64);

    /// Whether the outcome of the current request `m` is still pending, without blocking.
    fn is_pending(&self, m: u64) -> bool;

    /// Waits, parked, for the response of `m` (which must be triaged already: the
    /// seed hangs otherwise).
    fn wait_for(&self, m: u64) -> Response;
}

/// Workload 1: triage, publish, read back.
#[inline(always)]
pub fn cycle<I: Cycle>(session: &I, m: u64, response: &Response) -> Response {
    let processing = session.process(m);
    I::complete(processing, Arc::clone(response));
    session.read(m)
}

/// Triage and publish, no read back (workload 3, and the part of workload 1 before
/// the read).
#[inline(always)]
pub fn publish<I: Cycle>(session: &I, m: u64, response: &Response) {
    let processing = session.process(m);
    I::complete(processing, Arc::clone(response));
}

/// The criterion settings every bench binary starts from: fewer bootstrap resamples
/// than criterion's default (the analysis otherwise takes longer than many
/// measurements on two cores), no plots. Each group sets its own times.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .nresamples(20_000)
        .without_plots()
}

fn request(m: u64) -> RequestNr {
    RequestNr::new(m).expect("benchmarks use valid request numbers")
}

macro_rules! lock_free {
    ($ty:ty, $slot:ty, $id:literal) => {
        impl Cycle for $ty {
            const ID: &'static str = $id;
            type Processing<'a> = exactly_once::ProcessGuard<'a, u64, $slot>;

            #[inline(always)]
            fn process(&self, m: u64) -> Self::Processing<'_> {
                match self.triage(request(m)) {
                    Triage::Process(guard) => guard,
                    other => panic!("{}: triage({m}) gave {other:?}", Self::ID),
                }
            }

            #[inline(always)]
            fn complete(processing: Self::Processing<'_>, response: Response) {
                // This workload reads the response back, as a resending handler would,
                // so it publishes without taking a copy (as the locks' `set_response`).
                processing.publish(response);
            }

            #[inline(always)]
            fn read(&self, m: u64) -> Response {
                self.try_get(request(m)).expect("the response is settled")
            }
        }

        impl Implementation for $ty {
            #[inline(always)]
            fn triage_resend(&self, m: u64) {
                let triage = self.triage(request(m));
                assert!(matches!(triage, Triage::Resend), "{}: {triage:?}", Self::ID);
            }

            #[inline(always)]
            fn is_pending(&self, m: u64) -> bool {
                matches!(self.try_get(request(m)), Err(TryGetError::Pending))
            }

            #[inline(always)]
            fn wait_for(&self, m: u64) -> Response {
                self.wait(request(m)).expect("the response arrives")
            }
        }
    };
}

lock_free!(SessionState<u64>, exactly_once::CountedSlot<u64>, "counted");
lock_free!(
    ArcSwapSessionState<u64>,
    exactly_once::ArcSwapSlot<u64>,
    "arcswap"
);

/// The seed's calls, identical for both lock ports.
macro_rules! seed {
    ($ty:ty, $id:literal) => {
        impl Cycle for $ty {
            const ID: &'static str = $id;
            type Processing<'a> = &'a Self;

            #[inline(always)]
            fn process(&self, m: u64) -> &Self {
                assert_eq!(self.triage_request(m), (true, true), "{}", Self::ID);
                self
            }

            #[inline(always)]
            fn complete(processing: &Self, response: Response) {
                processing.set_response(response);
            }

            #[inline(always)]
            fn read(&self, m: u64) -> Response {
                self.wait_get_response(m).expect("the response is settled")
            }
        }

        impl Implementation for $ty {
            #[inline(always)]
            fn triage_resend(&self, m: u64) {
                assert_eq!(self.triage_request(m), (false, true), "{}", Self::ID);
            }

            #[inline(always)]
            fn is_pending(&self, m: u64) -> bool {
                self.would_block(m)
            }

            #[inline(always)]
            fn wait_for(&self, m: u64) -> Response {
                self.wait_get_response(m).expect("the response arrives")
            }
        }
    };
}

seed!(Baseline<u64>, "std");
seed!(ParkingLotSeed<u64>, "parking_lot");

impl Cycle for BareAtomicsFloor {
    const ID: &'static str = "floor";
    type Processing<'a> = floor::Processing<'a>;

    #[inline(always)]
    fn process(&self, m: u64) -> floor::Processing<'_> {
        self.start(m)
    }

    #[inline(always)]
    fn complete(processing: floor::Processing<'_>, response: Response) {
        processing.complete(response);
    }

    #[inline(always)]
    fn read(&self, m: u64) -> Response {
        self.get(m)
    }
}

/// The original's three calls, which every implementation has: the cycle through
/// them is what code ported from MUSCLE3 runs first.
pub trait SeedCalls: Implementation {
    /// `triage_request(m)`, which the caller knows says "process".
    fn seed_triage(&self, m: u64);
    /// `set_response(response)`.
    fn seed_set(&self, response: Response);
    /// `wait_get_response(m)`, which the caller knows is answered.
    fn seed_get(&self, m: u64) -> Response;
}

/// The cycle through the original's calls: triage, set the response, read it back.
#[inline(always)]
pub fn seed_cycle<I: SeedCalls>(session: &I, m: u64, response: &Response) -> Response {
    session.seed_triage(m);
    session.seed_set(Arc::clone(response));
    session.seed_get(m)
}

macro_rules! seed_calls {
    ($ty:ty, $($unwrap:tt)*) => {
        impl SeedCalls for $ty {
            #[inline(always)]
            fn seed_triage(&self, m: u64) {
                let triage = self.triage_request(m)$($unwrap)*;
                assert_eq!(triage, (true, true), "{}", Self::ID);
            }

            #[inline(always)]
            fn seed_set(&self, response: Response) {
                let _ = self.set_response(response);
            }

            #[inline(always)]
            fn seed_get(&self, m: u64) -> Response {
                self.wait_get_response(m)$($unwrap)*.expect("the response is settled")
            }
        }
    };
}

seed_calls!(SessionState<u64>, .expect("a valid number"));
seed_calls!(ArcSwapSessionState<u64>, .expect("a valid number"));
seed_calls!(Baseline<u64>,);
seed_calls!(ParkingLotSeed<u64>,);
