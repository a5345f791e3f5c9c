//! Differential property tests: random single-threaded operation sequences applied to
//! the lock-free `SessionState` and to the seed's `Mutex`+`Condvar` port
//! (`exactly_once::baseline::Baseline`), comparing every observable result. Each
//! property runs against both response slots (`counted::*`, `arc_swap::*`).
//!
//! - Model A: the seed's three calls on both sides.
//! - Model B: the typed API (`triage` + guard) on the lock-free side, the seed's calls
//!   on the baseline.
//! - Model C: abandons (the seed has none), against the reference model of
//!   `tests/support/model.rs` (the one the `ops` fuzz target uses): every number is
//!   processed at most once, and an abandoned request stays abandoned.
//!
//! The seed hangs where `wait_get_response` would block single-threaded, so a wait is
//! only performed where `Baseline::would_block` says it returns; where it would block,
//! the lock-free side must report the request as pending.

#![allow(missing_docs)]

mod support;

use exactly_once::baseline::Baseline;
use exactly_once::{
    ProcessGuard, RequestNr, SessionState, SetResponseError, Slot, Triage, TryGetError,
};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::fmt::Debug;
use std::time::Instant;
use support::model::{seed_view, Decided, Model, Target, MAX};
use support::{for_each_slot, nr};

/// A request number near the session's current one, now and then far from it; always
/// valid once resolved with [`Target::resolve_valid`].
fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        12 => (-2i8..=3).prop_map(Target::Near),
        2 => (0u16..=998).prop_map(Target::Gap),
        1 => (1u64..=MAX).prop_map(Target::Raw),
        1 => (0u8..=3).prop_map(Target::BelowMax),
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
    Respond(u64),
    Wait(Target),
    WaitInvalid(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => target().prop_map(Op::Triage),
        1 => invalid_number().prop_map(Op::TriageInvalid),
        5 => any::<u64>().prop_map(Op::Respond),
        5 => target().prop_map(Op::Wait),
        1 => invalid_number().prop_map(Op::WaitInvalid),
    ]
}

/// Both sides agree on the current number and on whether it is answered; returns the
/// current number.
fn compare_state<S: Slot<u64>>(
    lf: &SessionState<u64, S>,
    base: &Baseline<u64>,
) -> Result<u64, TestCaseError> {
    let seed = base.state();
    prop_assert_eq!(seed_view(lf.status()), seed, "{:?} vs {:?}", lf, base);
    Ok(seed.cur_request)
}

/// Waits for `m` on both sides where the seed would return, and checks that the
/// lock-free side reports "pending" where the seed would block (or spin forever).
fn compare_wait<S: Slot<u64>>(
    lf: &SessionState<u64, S>,
    base: &Baseline<u64>,
    m: RequestNr,
) -> Result<(), TestCaseError> {
    let settled = lf.try_get(m);
    if base.would_block(m.get()) {
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
    let expected = base.wait_get_response(m.get()).map(|r| *r);
    prop_assert_eq!(settled.ok().map(|r| *r), expected, "try_get({})", m);
    let got = lf
        .wait_get_response(m.get())
        .expect("a valid number")
        .map(|r| *r);
    prop_assert_eq!(got, expected, "wait_get_response({})", m);
    Ok(())
}

/// The operations both models A and B apply the same way; false for the others.
fn compare_common<S: Slot<u64>>(
    lf: &SessionState<u64, S>,
    base: &Baseline<u64>,
    op: &Op,
    current: u64,
) -> Result<bool, TestCaseError> {
    match *op {
        Op::TriageInvalid(m) => {
            prop_assert_eq!(lf.triage_request(m), Err(RequestNr::new(m).unwrap_err()));
        }
        Op::Wait(t) => compare_wait(lf, base, t.resolve_valid(current))?,
        Op::WaitInvalid(m) => {
            prop_assert_eq!(lf.wait_get_response(m), Err(RequestNr::new(m).unwrap_err()));
        }
        Op::Triage(_) | Op::Respond(_) => return Ok(false),
    }
    Ok(true)
}

/// Applies `ops` to `lf` and to a new baseline, comparing their states before and after
/// each operation; `apply` performs the triages and responses, the model's own part.
fn compare_with_baseline<S: Slot<u64>>(
    lf: &SessionState<u64, S>,
    ops: &[Op],
    mut apply: impl FnMut(&Baseline<u64>, &Op, u64) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let base = Baseline::<u64>::new();
    for op in ops {
        let current = compare_state(lf, &base)?;
        if !compare_common(lf, &base, op, current)? {
            apply(&base, op, current)?;
        }
    }
    compare_state(lf, &base).map(drop)
}

/// Model A: the seed's calls on both sides.
fn seed_calls_match_the_baseline<S: Slot<u64>>(ops: &[Op]) -> Result<(), TestCaseError> {
    let lf = SessionState::<u64, S>::new();
    compare_with_baseline(&lf, ops, |base, op, current| {
        match *op {
            Op::Triage(t) => {
                let m = t.resolve_valid(current).get();
                prop_assert_eq!(
                    lf.triage_request(m),
                    Ok(base.triage_request(m)),
                    "m = {}",
                    m
                );
            }
            Op::Respond(v) => match lf.set_response(v) {
                Ok(()) => base.set_response(v),
                Err(SetResponseError::NotProcessing) => {
                    // Documented divergence: the seed would overwrite the response it
                    // holds. It must be holding one.
                    prop_assert!(base.state().answered, "{:?}", base);
                }
                Err(e) => prop_assert!(false, "set_response: {:?} with no guards", e),
            },
            _ => unreachable!("compared by compare_common"),
        }
        Ok(())
    })
}

/// Model B: the typed API on the lock-free side, the seed's calls on the baseline.
fn typed_api_matches_the_baseline<S: Slot<u64>>(ops: &[Op]) -> Result<(), TestCaseError> {
    let lf = SessionState::<u64, S>::new();
    let mut guard: Option<ProcessGuard<'_, u64, S>> = None;
    compare_with_baseline(&lf, ops, |base, op, current| {
        match *op {
            Op::Triage(t) => {
                let m = t.resolve_valid(current);
                let expected = base.triage_request(m.get());
                let triage = lf.triage(m);
                let decided = Decided::of(&triage);
                match triage {
                    Triage::Process(g) => {
                        prop_assert!(guard.is_none(), "two guards alive");
                        prop_assert_eq!(g.request(), m);
                        prop_assert_eq!(decided, Decided::Process { previous: current });
                        prop_assert_eq!(g.skipped(), m.get() - current - 1);
                        guard = Some(g);
                    }
                    Triage::Busy { current: busy } => {
                        let held = guard.as_ref().map(|g| g.request().get());
                        prop_assert_eq!(Some(busy), held, "Busy without a guard");
                    }
                    Triage::Resend | Triage::Stale => {}
                }
                prop_assert_eq!(decided.as_seed(), expected, "m = {}", m);
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
            _ => unreachable!("compared by compare_common"),
        }
        Ok(())
    })?;
    if let Some(g) = guard {
        let _ = g.complete(0);
    }
    Ok(())
}

/// Operations of model C.
#[derive(Clone, Debug)]
enum AbandonOp {
    Triage(Target),
    Complete(u64),
    Abandon,
    DropGuard,
    TryGet(Target),
    WaitExpired(Target),
}

fn abandon_op() -> impl Strategy<Value = AbandonOp> {
    prop_oneof![
        8 => target().prop_map(AbandonOp::Triage),
        3 => any::<u64>().prop_map(AbandonOp::Complete),
        2 => Just(AbandonOp::Abandon),
        2 => Just(AbandonOp::DropGuard),
        4 => target().prop_map(AbandonOp::TryGet),
        2 => target().prop_map(AbandonOp::WaitExpired),
    ]
}

/// Model C: abandoned requests are never processed twice.
fn abandoned_requests_are_never_processed_twice<S: Slot<u64>>(
    ops: &[AbandonOp],
) -> Result<(), TestCaseError> {
    let lf = SessionState::<u64, S>::new();
    let mut model = Model::new();
    let mut guard: Option<ProcessGuard<'_, u64, S>> = None;
    for op in ops {
        prop_assert_eq!(lf.status(), model.status());
        match *op {
            AbandonOp::Triage(t) => {
                let m = t.resolve_valid(model.n);
                let triage = lf.triage(m);
                prop_assert_eq!(Decided::of(&triage), model.triage(m.get()), "m = {}", m);
                if let Triage::Process(g) = triage {
                    prop_assert!(model.start(m.get()), "{} processed twice", m);
                    guard = Some(g);
                }
            }
            AbandonOp::Complete(v) => {
                if let Some(g) = guard.take() {
                    let _ = g.complete(v);
                    prop_assert!(model.complete(v), "{} completed twice", model.n);
                }
            }
            AbandonOp::Abandon | AbandonOp::DropGuard => {
                if let Some(g) = guard.take() {
                    if matches!(op, AbandonOp::Abandon) {
                        g.abandon();
                    } else {
                        drop(g);
                    }
                    model.abandon();
                    prop_assert_eq!(lf.try_get(nr(model.n)), Err(TryGetError::Abandoned));
                    prop_assert_eq!(lf.triage_request(model.n), Ok((false, true)));
                }
            }
            AbandonOp::TryGet(t) => {
                let m = t.resolve_valid(model.n);
                let got = lf.try_get(m).map(|r| *r);
                prop_assert_eq!(got, model.try_get(m.get()), "m = {}", m);
            }
            AbandonOp::WaitExpired(t) => {
                let m = t.resolve_valid(model.n);
                let got = lf.wait_until(m, Instant::now()).map(|r| *r);
                prop_assert_eq!(got, model.wait_expired(m.get()), "m = {}", m);
            }
        }
    }
    Ok(())
}

/// Runs `property` on `cases` sequences of 1 to 59 operations drawn from `op`; a
/// failure panics with the shrunk sequence. A handful of cases under Miri, which runs
/// each case thousands of times slower (and cannot write proptest's regression files
/// under its isolation).
fn check<O: Strategy>(
    cases: u32,
    op: O,
    property: impl Fn(&[O::Value]) -> Result<(), TestCaseError>,
) where
    O::Value: Debug,
{
    let config = if cfg!(miri) {
        ProptestConfig {
            cases: 6,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    } else {
        ProptestConfig {
            cases,
            source_file: Some(file!()),
            ..ProptestConfig::default()
        }
    };
    let ops = prop::collection::vec(op, 1..60);
    let mut runner = TestRunner::new(config);
    if let Err(failure) = runner.run(&ops, |ops| property(&ops)) {
        panic!("{failure}\n{runner}");
    }
}

fn model_a_seed_calls_match_the_baseline<S: Slot<u64>>() {
    check(512, op(), seed_calls_match_the_baseline::<S>);
}

fn model_b_typed_api_matches_the_baseline<S: Slot<u64>>() {
    check(512, op(), typed_api_matches_the_baseline::<S>);
}

fn model_c_abandoned_requests_are_never_processed_twice<S: Slot<u64>>() {
    check(
        256,
        abandon_op(),
        abandoned_requests_are_never_processed_twice::<S>,
    );
}

for_each_slot!(u64 =>
    model_a_seed_calls_match_the_baseline,
    model_b_typed_api_matches_the_baseline,
    model_c_abandoned_requests_are_never_processed_twice,
);
