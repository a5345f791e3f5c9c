//! Differential property tests: random single-threaded operation sequences applied to
//! the lock-free `SessionState` and to the seed's `Mutex`+`Condvar` port
//! (`exactly_once::baseline::Baseline`), comparing every observable result. Each
//! property runs against both response slots (`counted::*`, `arc_swap::*`).
//!
//! - Model A: the seed's three calls on both sides.
//! - Model B: the typed API (`triage` + guard) on the lock-free side, the seed's calls
//!   on the baseline.
//! - Model C: abandons (the seed has none), against a small in-test model: every number
//!   is processed at most once, and an abandoned request stays abandoned.
//!
//! The seed hangs where `wait_get_response` would block single-threaded, so a wait is
//! only performed where `Baseline::would_block` says it returns; where it would block,
//! the lock-free side must report the request as pending.

#![allow(missing_docs)]

use exactly_once::baseline::Baseline;
use exactly_once::{
    ArcSwapSlot, CountedSlot, Phase, ProcessGuard, RequestNr, SessionState, SetResponseError, Slot,
    Triage, TryGetError, WaitTimeoutError,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::HashSet;
use std::time::Instant;

const MAX: u64 = RequestNr::MAX;

/// A request number, chosen relative to the session's current number when applied.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// `current + offset`, clamped to `1..=MAX`.
    Near(i8),
    /// `current + gap`, clamped to `MAX`.
    Gap(u64),
    /// Any valid number.
    Anywhere(u64),
}

impl Target {
    fn resolve(self, current: u64) -> u64 {
        let m = match self {
            Target::Near(offset) => i128::from(current) + i128::from(offset),
            Target::Gap(gap) => i128::from(current) + i128::from(gap),
            Target::Anywhere(m) => i128::from(m),
        };
        m.clamp(1, i128::from(MAX)) as u64
    }
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        12 => (-2i8..=3).prop_map(Target::Near),
        2 => (2u64..=1000).prop_map(Target::Gap),
        1 => (1u64..=MAX).prop_map(Target::Anywhere),
        1 => (MAX - 3..=MAX).prop_map(Target::Anywhere),
    ]
}

/// Numbers both the seed-compatible calls must reject (the seed would accept them).
fn invalid_number() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(MAX + 1), Just(u64::MAX), (MAX + 1..=u64::MAX)]
}

/// Operations of models A and B.
#[derive(Clone, Debug)]
enum Op {
    Triage(Target),
    TriageInvalid(u64),
    /// Model A: the seed's `set_response`; model B: `complete` through the guard.
    Respond(u32),
    Wait(Target),
    WaitInvalid(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => target().prop_map(Op::Triage),
        1 => invalid_number().prop_map(Op::TriageInvalid),
        5 => any::<u32>().prop_map(Op::Respond),
        5 => target().prop_map(Op::Wait),
        1 => invalid_number().prop_map(Op::WaitInvalid),
    ]
}

fn nr(n: u64) -> RequestNr {
    RequestNr::new(n).expect("a valid request number")
}

/// The baseline's `(cur_request, answered)`, read from its `Debug` (the seed's `__str__`).
fn baseline_state(b: &Baseline<u32>) -> (u64, bool) {
    let shown = format!("{b:?}");
    let inner = shown
        .strip_prefix("SessionState(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected baseline Debug {shown}"));
    let (cur, answered) = inner.split_once(", ").expect("two fields");
    (
        cur.parse().expect("a number"),
        answered.parse().expect("a bool"),
    )
}

/// Both sides agree on the current number and on whether it is answered.
fn compare_state<S: Slot<u32>>(
    lf: &SessionState<u32, S>,
    base: &Baseline<u32>,
) -> Result<u64, TestCaseError> {
    let (cur, answered) = baseline_state(base);
    let status = lf.status();
    prop_assert_eq!(status.request, cur, "{:?} vs {:?}", lf, base);
    prop_assert_eq!(
        status.phase != Phase::Processing,
        answered,
        "{:?} vs {:?}",
        lf,
        base
    );
    Ok(cur)
}

/// Waits for `m` on both sides where the seed would return, and checks that the
/// lock-free side reports "pending" where the seed would block (or spin forever).
fn compare_wait<S: Slot<u32>>(
    lf: &SessionState<u32, S>,
    base: &Baseline<u32>,
    m: u64,
) -> Result<(), TestCaseError> {
    let settled = lf.try_get(nr(m));
    if base.would_block(m) {
        prop_assert_eq!(settled, Err(TryGetError::Pending), "m = {}, {:?}", m, base);
        return Ok(());
    }
    prop_assert_ne!(
        settled.clone(),
        Err(TryGetError::Pending),
        "m = {}, {:?}",
        m,
        base
    );
    let expected = base.wait_get_response(m).map(|r| *r);
    prop_assert_eq!(settled.ok().map(|r| *r), expected, "try_get({})", m);
    let got = lf.wait_get_response(m).expect("a valid number").map(|r| *r);
    prop_assert_eq!(got, expected, "wait_get_response({})", m);
    Ok(())
}

/// Model A: the seed's calls on both sides.
fn seed_calls_match_the_baseline<S: Slot<u32>>(ops: &[Op]) -> Result<(), TestCaseError> {
    let lf = SessionState::<u32, S>::new();
    let base = Baseline::<u32>::new();
    for op in ops {
        let current = compare_state(&lf, &base)?;
        match *op {
            Op::Triage(t) => {
                let m = t.resolve(current);
                prop_assert_eq!(
                    lf.triage_request(m),
                    Ok(base.triage_request(m)),
                    "m = {}",
                    m
                );
            }
            Op::TriageInvalid(m) => {
                prop_assert_eq!(lf.triage_request(m), Err(RequestNr::new(m).unwrap_err()));
            }
            Op::Respond(v) => match lf.set_response(v) {
                Ok(()) => base.set_response(v),
                Err(SetResponseError::NotProcessing) => {
                    // Documented divergence: the seed would overwrite the response it
                    // holds. It must be holding one.
                    prop_assert!(baseline_state(&base).1, "{:?}", base);
                }
                Err(e) => prop_assert!(false, "set_response: {:?} with no guards", e),
            },
            Op::Wait(t) => compare_wait(&lf, &base, t.resolve(current))?,
            Op::WaitInvalid(m) => {
                prop_assert_eq!(lf.wait_get_response(m), Err(RequestNr::new(m).unwrap_err()));
            }
        }
    }
    compare_state(&lf, &base)?;
    Ok(())
}

/// Model B: the typed API on the lock-free side, the seed's calls on the baseline.
fn typed_api_matches_the_baseline<S: Slot<u32>>(ops: &[Op]) -> Result<(), TestCaseError> {
    let lf = SessionState::<u32, S>::new();
    let base = Baseline::<u32>::new();
    let mut guard: Option<ProcessGuard<'_, u32, S>> = None;
    for op in ops {
        let current = compare_state(&lf, &base)?;
        match *op {
            Op::Triage(t) => {
                let m = t.resolve(current);
                let expected = base.triage_request(m);
                let got = match lf.triage(nr(m)) {
                    Triage::Process(g) => {
                        prop_assert!(guard.is_none(), "two guards alive");
                        prop_assert_eq!(g.request(), nr(m));
                        prop_assert_eq!(g.previous(), current);
                        prop_assert_eq!(g.skipped(), m - current - 1);
                        guard = Some(g);
                        (true, true)
                    }
                    Triage::Resend => (false, true),
                    Triage::Stale => (false, false),
                    Triage::Busy { current: busy } => {
                        let held = guard.as_ref().map(|g| g.request().get());
                        prop_assert_eq!(Some(busy), held, "Busy without a guard");
                        (false, false)
                    }
                };
                prop_assert_eq!(got, expected, "m = {}", m);
            }
            Op::TriageInvalid(m) => {
                prop_assert_eq!(lf.triage_request(m), Err(RequestNr::new(m).unwrap_err()));
            }
            Op::Respond(v) => match guard.take() {
                Some(g) => {
                    let published = g.complete(v);
                    prop_assert_eq!(*published, v);
                    base.set_response(v);
                }
                // Every started request had a guard, so with none held the session is
                // Ready and the seed's call has nothing to answer.
                None => prop_assert_eq!(lf.set_response(v), Err(SetResponseError::NotProcessing)),
            },
            Op::Wait(t) => compare_wait(&lf, &base, t.resolve(current))?,
            Op::WaitInvalid(m) => {
                prop_assert_eq!(lf.wait_get_response(m), Err(RequestNr::new(m).unwrap_err()));
            }
        }
    }
    compare_state(&lf, &base)?;
    if let Some(g) = guard {
        let _ = g.complete(0);
    }
    Ok(())
}

/// Operations of model C.
#[derive(Clone, Debug)]
enum AbandonOp {
    Triage(Target),
    Complete(u32),
    Abandon,
    DropGuard,
    TryGet(Target),
    WaitExpired(Target),
}

fn abandon_op() -> impl Strategy<Value = AbandonOp> {
    prop_oneof![
        8 => target().prop_map(AbandonOp::Triage),
        3 => any::<u32>().prop_map(AbandonOp::Complete),
        2 => Just(AbandonOp::Abandon),
        2 => Just(AbandonOp::DropGuard),
        4 => target().prop_map(AbandonOp::TryGet),
        2 => target().prop_map(AbandonOp::WaitExpired),
    ]
}

/// The newest request's outcome in the in-test model.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// Request 0 of a new session: done, with nothing to send.
    Initial,
    Processing,
    Response(u32),
    Abandoned,
}

/// The in-test model of SPEC §2, abandons included.
struct Model {
    n: u64,
    outcome: Outcome,
}

impl Model {
    fn triage(&self, m: u64) -> String {
        if m < self.n {
            "Stale".into()
        } else if m == self.n {
            "Resend".into()
        } else if self.outcome == Outcome::Processing {
            format!("Busy {{ current: {} }}", self.n)
        } else {
            "Process".into()
        }
    }

    fn try_get(&self, m: u64) -> Result<u32, TryGetError> {
        if m < self.n {
            return Err(TryGetError::Gone);
        }
        match self.outcome {
            _ if m > self.n => Err(TryGetError::Pending),
            Outcome::Processing => Err(TryGetError::Pending),
            Outcome::Response(v) => Ok(v),
            Outcome::Abandoned => Err(TryGetError::Abandoned),
            Outcome::Initial => unreachable!("m >= 1 = n + 1"),
        }
    }

    fn phase(&self) -> Phase {
        match self.outcome {
            Outcome::Processing => Phase::Processing,
            Outcome::Abandoned => Phase::Abandoned,
            Outcome::Initial | Outcome::Response(_) => Phase::Ready,
        }
    }
}

/// Model C: abandoned requests are never processed twice.
fn abandoned_requests_are_never_processed_twice<S: Slot<u32>>(
    ops: &[AbandonOp],
) -> Result<(), TestCaseError> {
    let lf = SessionState::<u32, S>::new();
    let mut model = Model {
        n: 0,
        outcome: Outcome::Initial,
    };
    let mut processed = HashSet::new();
    let mut guard: Option<ProcessGuard<'_, u32, S>> = None;
    for op in ops {
        prop_assert_eq!(lf.status().request, model.n);
        prop_assert_eq!(lf.status().phase, model.phase());
        match *op {
            AbandonOp::Triage(t) => {
                let m = t.resolve(model.n);
                let expected = model.triage(m);
                match lf.triage(nr(m)) {
                    Triage::Process(g) => {
                        prop_assert_eq!(expected, "Process", "m = {}", m);
                        prop_assert!(processed.insert(m), "{} processed twice", m);
                        prop_assert_eq!(g.previous(), model.n);
                        model = Model {
                            n: m,
                            outcome: Outcome::Processing,
                        };
                        guard = Some(g);
                    }
                    other => prop_assert_eq!(format!("{other:?}"), expected, "m = {}", m),
                }
            }
            AbandonOp::Complete(v) => {
                if let Some(g) = guard.take() {
                    let _ = g.complete(v);
                    model.outcome = Outcome::Response(v);
                }
            }
            AbandonOp::Abandon | AbandonOp::DropGuard => {
                if let Some(g) = guard.take() {
                    if matches!(op, AbandonOp::Abandon) {
                        g.abandon();
                    } else {
                        drop(g);
                    }
                    model.outcome = Outcome::Abandoned;
                    prop_assert_eq!(lf.try_get(nr(model.n)), Err(TryGetError::Abandoned));
                    prop_assert_eq!(lf.triage_request(model.n), Ok((false, true)));
                }
            }
            AbandonOp::TryGet(t) => {
                let m = t.resolve(model.n);
                let got = lf.try_get(nr(m)).map(|r| *r);
                prop_assert_eq!(got, model.try_get(m), "m = {}", m);
            }
            AbandonOp::WaitExpired(t) => {
                let m = t.resolve(model.n);
                let got = lf.wait_until(nr(m), Instant::now()).map(|r| *r);
                let expected = model.try_get(m).map_err(|e| match e {
                    TryGetError::Pending => WaitTimeoutError::TimedOut,
                    TryGetError::Abandoned => WaitTimeoutError::Abandoned,
                    TryGetError::Gone => WaitTimeoutError::Gone,
                });
                prop_assert_eq!(got, expected, "m = {}", m);
            }
        }
    }
    Ok(())
}

/// `cases` normally; a handful under Miri, which runs each case thousands of times slower
/// (and cannot write proptest's regression files under its isolation).
fn config(cases: u32) -> ProptestConfig {
    if cfg!(miri) {
        ProptestConfig {
            cases: 6,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    } else {
        ProptestConfig {
            cases,
            ..ProptestConfig::default()
        }
    }
}

macro_rules! differential_for_slot {
    ($module:ident, $slot:ty) => {
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(config(512))]

                #[test]
                fn model_a_seed_calls_match_the_baseline(
                    ops in prop::collection::vec(op(), 1..60)
                ) {
                    seed_calls_match_the_baseline::<$slot>(&ops)?;
                }

                #[test]
                fn model_b_typed_api_matches_the_baseline(
                    ops in prop::collection::vec(op(), 1..60)
                ) {
                    typed_api_matches_the_baseline::<$slot>(&ops)?;
                }
            }

            proptest! {
                #![proptest_config(config(256))]

                #[test]
                fn model_c_abandoned_requests_are_never_processed_twice(
                    ops in prop::collection::vec(abandon_op(), 1..60)
                ) {
                    abandoned_requests_are_never_processed_twice::<$slot>(&ops)?;
                }
            }
        }
    };
}

differential_for_slot!(counted, CountedSlot<u32>);
differential_for_slot!(arc_swap, ArcSwapSlot<u32>);
