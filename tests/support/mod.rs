//! What the test files share: one way to run a test body against each response slot
//! ([`for_each_slot!`]), the small helpers every file needs, and the reference
//! [`model`].
//!
//! A test body is a generic function `fn name<S: Slot<R>>()`; `for_each_slot!` lists
//! the names once and instantiates each as `counted::name` (the default `CountedSlot`)
//! and `arc_swap::name` (`ArcSwapSlot`).

#![allow(dead_code)]

pub mod model;

use exactly_once::{ProcessGuard, RequestNr, SessionState, Slot, Triage};
use model::Decided;

/// Instantiates each listed generic test function `fn name<S: Slot<R>>()` as a `#[test]`
/// once per response slot: `counted::name` and `arc_swap::name`. `R` is the response
/// type, given first: `for_each_slot!(Vec<u8> => first_test, second_test);`. A generic
/// test left out of the list is caught as dead code.
#[allow(unused_macros)]
macro_rules! for_each_slot {
    ($response:ty => $($test:ident),+ $(,)?) => {
        /// The tests on `SessionState<_, CountedSlot<_>>` (the default slot).
        mod counted {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $test() {
                    super::$test::<::exactly_once::CountedSlot<$response>>();
                }
            )+
        }

        /// The tests on `SessionState<_, ArcSwapSlot<_>>`.
        mod arc_swap {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $test() {
                    super::$test::<::exactly_once::ArcSwapSlot<$response>>();
                }
            )+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use for_each_slot;

/// The response type of most tests: its text names its request.
pub type Response = Vec<u8>;

/// The response to request `m` (see [`Response`]).
pub fn response(m: u64) -> Response {
    format!("response to {m}").into_bytes()
}

/// `m` as a request number; panics if it is not one.
pub fn nr(m: u64) -> RequestNr {
    RequestNr::new(m).expect("a valid request number")
}

/// Triages `m`, expecting `Process`.
pub fn process<T, S: Slot<T>>(s: &SessionState<T, S>, m: u64) -> ProcessGuard<'_, T, S> {
    match s.triage(nr(m)) {
        Triage::Process(guard) => guard,
        other => panic!("triage({m}) on {s:?}: expected Process, got {other:?}"),
    }
}

/// Triages `m` and says what the triage decided. A `Process` guard is dropped here,
/// abandoning the request: use it where `Process` is not the expected answer.
pub fn triaged<T, S: Slot<T>>(s: &SessionState<T, S>, m: u64) -> Decided {
    Decided::of(&s.triage(nr(m)))
}

/// A session in `Ready(n)` through the typed API, each request `m` answered by
/// `answer(m)`.
pub fn ready_at<T, S: Slot<T>>(n: u64, answer: impl Fn(u64) -> T) -> SessionState<T, S> {
    let s = SessionState::new();
    for m in 1..=n {
        let _ = process(&s, m).complete(answer(m));
    }
    s
}

/// Whether a waiter has stopped spinning and sleeps on the session's futex (the PARKED
/// flag of the state word). The word is private; its `Debug` is the one public window
/// onto the flag, so this is the one place that reads it.
pub fn is_parked<T, S: Slot<T>>(s: &SessionState<T, S>) -> bool {
    format!("{s:?}").contains(" parked")
}
