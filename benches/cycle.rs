//! One request cycle and the re-request paths, on one thread, for every implementation.
//!
//! One workload definition ([`Implementation`]) runs against each peer, so the ratios
//! printed by criterion compare like with like: `cargo bench --bench cycle`.

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use exactly_once::baseline::Baseline;
use exactly_once::{ArcSwapSessionState, RequestNr, SessionState, Triage};
use std::hint::black_box;
use std::sync::Arc;

type Response = Arc<u64>;

/// The operations a workload needs, each implementation in its natural API.
trait Implementation: Default {
    const NAME: &'static str;
    /// Triage `m` (which must be processable), publish `r`, read it back as a resend would.
    fn cycle(&self, m: u64, r: &Response) -> Response;
    /// Re-request of the current, answered request.
    fn resend(&self, m: u64) -> Response;
}

macro_rules! lock_free {
    ($ty:ty, $name:literal) => {
        impl Implementation for $ty {
            const NAME: &'static str = $name;

            #[inline]
            fn cycle(&self, m: u64, r: &Response) -> Response {
                let m = RequestNr::new(m).unwrap();
                match self.triage(m) {
                    Triage::Process(guard) => drop(guard.complete(Arc::clone(r))),
                    other => panic!("cycle got {other:?}"),
                }
                self.try_get(m).unwrap()
            }

            #[inline]
            fn resend(&self, m: u64) -> Response {
                let m = RequestNr::new(m).unwrap();
                assert!(matches!(self.triage(m), Triage::Resend));
                self.try_get(m).unwrap()
            }
        }
    };
}

lock_free!(SessionState<u64>, "lock-free counted slot");
lock_free!(ArcSwapSessionState<u64>, "lock-free arc-swap slot");

impl Implementation for Baseline<u64> {
    const NAME: &'static str = "std Mutex+Condvar (seed port)";

    #[inline]
    fn cycle(&self, m: u64, r: &Response) -> Response {
        assert_eq!(self.triage_request(m), (true, true));
        self.set_response(Arc::clone(r));
        self.wait_get_response(m).unwrap()
    }

    #[inline]
    fn resend(&self, m: u64) -> Response {
        assert_eq!(self.triage_request(m), (false, true));
        self.wait_get_response(m).unwrap()
    }
}

fn bench_cycle<I: Implementation>(c: &mut Criterion) {
    let response: Response = Arc::new(7);
    c.benchmark_group("cycle")
        .bench_function(BenchmarkId::from_parameter(I::NAME), |b| {
            let session = I::default();
            let mut m = 0;
            b.iter(|| {
                m += 1;
                black_box(session.cycle(m, &response))
            })
        });
    c.benchmark_group("resend_ready")
        .bench_function(BenchmarkId::from_parameter(I::NAME), |b| {
            let session = I::default();
            session.cycle(1, &response);
            b.iter(|| black_box(session.resend(1)))
        });
}

fn all(c: &mut Criterion) {
    bench_cycle::<SessionState<u64>>(c);
    bench_cycle::<ArcSwapSessionState<u64>>(c);
    bench_cycle::<Baseline<u64>>(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
