//! The transition table as tests: one test per cell, then every promise around it
//! (complete, abandon, gone, deadlines, parking, panics, request numbers, the seed's own
//! calls, `status`/`Debug`, sizes and auto traits), and the baseline's own tests.
//!
//! Each session test is a generic function over the response slot, run once per slot
//! by `for_each_slot!` (`counted::*` on `SessionState<Vec<u8>>`, `arc_swap::*` on
//! `ArcSwapSessionState<Vec<u8>>`). Tests that do not touch a session (the baseline,
//! `RequestNr` alone) run once.
//!
//! No test can hang the suite: every waiting thread waits with a deadline (or, for the
//! seed's deadline-less `wait_get_response`, reports through a channel that the test
//! reads with a timeout), and every thread is joined.

#![allow(missing_docs)]

mod support;

use exactly_once::baseline::{Baseline, SeedState};
use exactly_once::{
    ArcSwapSessionState, ArcSwapSlot, InvalidRequestNr, Phase, ProcessGuard, RequestNr,
    SessionState, SetResponseError, Slot, Status, TryGetError, WaitError, WaitTimeoutError,
};
use std::sync::{mpsc, Arc};
use std::thread::{self, Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};
use support::model::Decided;
use support::{for_each_slot, is_parked, nr, process, response, triaged, Response};

type Session<S> = SessionState<Response, S>;
type Waited = Result<Arc<Response>, WaitTimeoutError>;

/// The bound on every wait that is expected to return: far above any real latency.
const GENEROUS: Duration = Duration::from_secs(10);
/// How long a thread must stay blocked to count as parked.
const PARK_CHECK: Duration = Duration::from_millis(50);

fn status(request: u64, phase: Phase) -> Status {
    Status { request, phase }
}

/// A session in `Ready(n)` through the typed API, each request answered by `response`.
fn ready_at<S: Slot<Response>>(n: u64) -> Session<S> {
    support::ready_at(n, response)
}

/// A session in `Ready(n)` through the seed's calls.
fn seed_ready_at<S: Slot<Response>>(n: u64) -> Session<S> {
    let s = Session::<S>::new();
    for m in 1..=n {
        assert_eq!(s.triage_request(m), Ok((true, true)));
        assert_eq!(s.set_response(response(m)), Ok(()));
    }
    s
}

/// A baseline in `Ready(n)`.
fn baseline_ready_at(n: u64) -> Baseline<Response> {
    let b = Baseline::new();
    for m in 1..=n {
        assert_eq!(b.triage_request(m), (true, true));
        b.set_response(response(m));
    }
    b
}

fn spawn_waiter<'scope, 'env, S: Slot<Response>>(
    scope: &'scope Scope<'scope, 'env>,
    s: &'env Session<S>,
    m: u64,
) -> ScopedJoinHandle<'scope, Waited> {
    scope.spawn(move || s.wait_timeout(nr(m), GENEROUS))
}

/// Waits until the session's PARKED flag is set, up to `GENEROUS`.
fn await_parked<S: Slot<Response>>(s: &Session<S>) {
    let give_up = Instant::now() + GENEROUS;
    while !is_parked(s) {
        assert!(Instant::now() < give_up, "no waiter parked: {s:?}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until some waiter has set the session's PARKED flag (it has stopped spinning
/// and sleeps on the futex), then checks that none of `waiters` has returned.
fn assert_parked<S: Slot<Response>>(s: &Session<S>, waiters: &[&ScopedJoinHandle<'_, Waited>]) {
    await_parked(s);
    thread::sleep(PARK_CHECK);
    for w in waiters {
        assert!(!w.is_finished(), "a waiter returned while {s:?}");
    }
}

fn join<T>(handle: ScopedJoinHandle<'_, T>) -> T {
    handle.join().expect("the thread panicked")
}

fn failing_handler() -> Response {
    panic!("the handler failed (this panic is part of the test)")
}

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

// The auto traits, checked at compile time for the named types of the crate.
const _: () = {
    let _ = assert_send_sync::<SessionState<Vec<u8>>>;
    let _ = assert_send_sync::<ArcSwapSessionState<Vec<u8>>>;
    let _ = assert_send::<ProcessGuard<'static, Vec<u8>>>;
    let _ = assert_send::<ProcessGuard<'static, Vec<u8>, ArcSwapSlot<Vec<u8>>>>;
};

// ---- The transition table, one test per cell ----

fn a_new_session_is_ready_0_and_request_1_can_start<S: Slot<Response>>() {
    let s = Session::<S>::new();
    assert_eq!(s.status(), status(0, Phase::Ready));
    assert_eq!(s.try_get(nr(1)), Err(TryGetError::Pending));
    let guard = process(&s, 1);
    assert_eq!((guard.previous(), guard.skipped()), (0, 0));
    let _ = guard.complete(response(1));
}

fn ready_n_with_m_below_n_is_stale<S: Slot<Response>>() {
    let s = ready_at::<S>(3);
    assert_eq!(triaged(&s, 2), Decided::Stale);
    assert_eq!(triaged(&s, 1), Decided::Stale);
    assert_eq!(s.status(), status(3, Phase::Ready));
    assert_eq!(&*s.try_get(nr(3)).unwrap(), &response(3));
}

fn ready_n_with_m_equal_n_is_resend_and_the_outcome_is_there<S: Slot<Response>>() {
    let s = ready_at::<S>(3);
    assert_eq!(triaged(&s, 3), Decided::Resend);
    assert_eq!(&*s.try_get(nr(3)).unwrap(), &response(3));
    assert_eq!(&*s.wait_timeout(nr(3), GENEROUS).unwrap(), &response(3));
    assert_eq!(triaged(&s, 3), Decided::Resend);
    assert_eq!(s.status(), status(3, Phase::Ready));
}

fn ready_n_with_m_n_plus_1_is_process_and_moves_to_processing_m<S: Slot<Response>>() {
    let s = ready_at::<S>(3);
    let guard = process(&s, 4);
    assert_eq!(guard.request(), nr(4));
    assert_eq!((guard.previous(), guard.skipped()), (3, 0));
    assert_eq!(s.status(), status(4, Phase::Processing));
    assert_eq!(s.try_get(nr(4)), Err(TryGetError::Pending));
    assert_eq!(s.try_get(nr(3)), Err(TryGetError::Gone));
    let _ = guard.complete(response(4));
    assert_eq!(s.status(), status(4, Phase::Ready));
}

fn ready_n_with_m_above_n_plus_1_is_process_reported_as_a_gap<S: Slot<Response>>() {
    let s = ready_at::<S>(3);
    let guard = process(&s, 7);
    assert_eq!(guard.request(), nr(7));
    assert_eq!(guard.previous(), 3);
    assert_eq!(guard.skipped(), 3);
    assert!(guard.skipped() > 0);
    assert_eq!(s.status(), status(7, Phase::Processing));
    assert_eq!(s.try_get(nr(5)), Err(TryGetError::Gone));
    let _ = guard.complete(response(7));
    assert_eq!(&*s.try_get(nr(7)).unwrap(), &response(7));
}

fn processing_n_with_m_below_n_is_stale<S: Slot<Response>>() {
    let s = ready_at::<S>(2);
    let guard = process(&s, 3);
    assert_eq!(triaged(&s, 2), Decided::Stale);
    assert_eq!(triaged(&s, 1), Decided::Stale);
    assert_eq!(s.status(), status(3, Phase::Processing));
    let _ = guard.complete(response(3));
}

fn processing_n_with_m_equal_n_is_resend_and_the_waiter_gets_the_response_after_complete<
    S: Slot<Response>,
>() {
    let s = ready_at::<S>(2);
    thread::scope(|scope| {
        let guard = process(&s, 3);
        assert_eq!(triaged(&s, 3), Decided::Resend);
        assert_eq!(s.try_get(nr(3)), Err(TryGetError::Pending));
        let waiter = spawn_waiter(scope, &s, 3);
        assert_parked(&s, &[&waiter]);
        let published = guard.complete(response(3));
        let got = join(waiter).expect("the response");
        assert!(Arc::ptr_eq(&got, &published));
    });
}

fn processing_n_with_m_n_plus_1_is_busy<S: Slot<Response>>() {
    let s = ready_at::<S>(2);
    let guard = process(&s, 3);
    assert_eq!(triaged(&s, 4), Decided::Busy { current: 3 });
    assert_eq!(s.status(), status(3, Phase::Processing));
    assert_eq!(s.try_get(nr(4)), Err(TryGetError::Pending));
    let _ = guard.complete(response(3));
    assert_eq!(&*s.try_get(nr(3)).unwrap(), &response(3));
}

fn processing_n_with_m_above_n_plus_1_is_busy<S: Slot<Response>>() {
    let s = ready_at::<S>(2);
    let guard = process(&s, 3);
    assert_eq!(triaged(&s, 9), Decided::Busy { current: 3 });
    assert_eq!(triaged(&s, RequestNr::MAX), Decided::Busy { current: 3 });
    assert_eq!(s.status(), status(3, Phase::Processing));
    let _ = guard.complete(response(3));
    // After the Busy triages, the next number still starts normally.
    let guard = process(&s, 4);
    assert_eq!(guard.previous(), 3);
    let _ = guard.complete(response(4));
}

fn ready_n_after_an_abandon_follows_the_same_row<S: Slot<Response>>() {
    let s = ready_at::<S>(2);
    process(&s, 3).abandon();
    assert_eq!(triaged(&s, 2), Decided::Stale);
    assert_eq!(triaged(&s, 3), Decided::Resend);
    let guard = process(&s, 5);
    assert_eq!((guard.previous(), guard.skipped()), (3, 1));
    let _ = guard.complete(response(5));
}

// ---- Complete ----

fn complete_returns_the_response_and_every_waiter_gets_the_same_arc<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    thread::scope(|scope| {
        let guard = process(&s, 2);
        let waiters: Vec<_> = (0..4).map(|_| spawn_waiter(scope, &s, 2)).collect();
        assert_parked(&s, &waiters.iter().collect::<Vec<_>>());
        let published = guard.complete(response(2));
        assert_eq!(&*published, &response(2));
        for w in waiters {
            assert!(Arc::ptr_eq(&join(w).unwrap(), &published));
        }
        assert!(Arc::ptr_eq(&s.try_get(nr(2)).unwrap(), &published));
        assert!(Arc::ptr_eq(&s.wait(nr(2)).unwrap(), &published));
        let seed = s.wait_get_response(2).unwrap().unwrap();
        assert!(Arc::ptr_eq(&seed, &published));
    });
    assert_eq!(s.status(), status(2, Phase::Ready));
}

fn complete_accepts_an_arc_and_publishes_that_very_arc<S: Slot<Response>>() {
    let s = Session::<S>::new();
    let mine = Arc::new(response(1));
    let published = process(&s, 1).complete(Arc::clone(&mine));
    assert!(Arc::ptr_eq(&published, &mine));
    assert!(Arc::ptr_eq(&s.try_get(nr(1)).unwrap(), &mine));
}

fn the_old_response_is_released_once_the_next_request_is_completed<S: Slot<Response>>() {
    let s = Session::<S>::new();
    let published = process(&s, 1).complete(response(1));
    assert_eq!(Arc::strong_count(&published), 2, "ours and the session's");
    let guard = process(&s, 2);
    let _ = guard.complete(response(2));
    // CountedSlot drops it at the triage of 2; ArcSwapSlot keeps it until the
    // next publish. Both have let go of it by now.
    assert_eq!(Arc::strong_count(&published), 1);
}

// ---- Abandon ----

fn explicit_abandon_wakes_every_waiter_with_abandoned<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    thread::scope(|scope| {
        let guard = process(&s, 2);
        let waiters: Vec<_> = (0..3).map(|_| spawn_waiter(scope, &s, 2)).collect();
        assert_parked(&s, &waiters.iter().collect::<Vec<_>>());
        guard.abandon();
        for w in waiters {
            assert_eq!(join(w), Err(WaitTimeoutError::Abandoned));
        }
    });
    assert_eq!(s.status(), status(2, Phase::Abandoned));
    assert_eq!(s.try_get(nr(2)), Err(TryGetError::Abandoned));
    assert_eq!(s.wait(nr(2)), Err(WaitError::Abandoned));
}

fn dropping_the_guard_abandons_like_abandon<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    thread::scope(|scope| {
        let guard = process(&s, 2);
        let waiter = spawn_waiter(scope, &s, 2);
        assert_parked(&s, &[&waiter]);
        drop(guard);
        assert_eq!(join(waiter), Err(WaitTimeoutError::Abandoned));
    });
    assert_eq!(s.status(), status(2, Phase::Abandoned));
    assert_eq!(s.try_get(nr(2)), Err(TryGetError::Abandoned));
}

fn an_abandoned_request_is_resend_and_never_processed_again<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    drop(process(&s, 2));
    for _ in 0..3 {
        assert_eq!(triaged(&s, 2), Decided::Resend);
        assert_eq!(s.try_get(nr(2)), Err(TryGetError::Abandoned));
        assert_eq!(s.triage_request(2), Ok((false, true)));
    }
    assert_eq!(triaged(&s, 1), Decided::Stale);
    assert_eq!(s.wait_get_response(2), Ok(None));
    assert_eq!(s.status(), status(2, Phase::Abandoned));
}

fn after_an_abandon_the_next_number_is_processed<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    process(&s, 2).abandon();
    let guard = process(&s, 3);
    assert_eq!((guard.previous(), guard.skipped()), (2, 0));
    assert_eq!(s.try_get(nr(2)), Err(TryGetError::Gone));
    let _ = guard.complete(response(3));
    assert_eq!(&*s.try_get(nr(3)).unwrap(), &response(3));
    assert_eq!(s.status(), status(3, Phase::Ready));
}

// ---- Gone ----

fn a_waiter_for_n_gets_gone_once_the_session_moved_to_n_plus_1<S: Slot<Response>>() {
    let s = ready_at::<S>(2);
    let guard = process(&s, 3);
    assert_eq!(s.wait_timeout(nr(2), GENEROUS), Err(WaitTimeoutError::Gone));
    assert_eq!(s.wait(nr(2)), Err(WaitError::Gone));
    let _ = guard.complete(response(3));
    assert_eq!(s.wait_timeout(nr(2), GENEROUS), Err(WaitTimeoutError::Gone));
    assert_eq!(s.wait_get_response(2), Ok(None));
}

fn try_get_of_an_older_number_is_gone<S: Slot<Response>>() {
    let s = ready_at::<S>(4);
    for m in 1..4 {
        assert_eq!(s.try_get(nr(m)), Err(TryGetError::Gone));
    }
    assert_eq!(&*s.try_get(nr(4)).unwrap(), &response(4));
    assert_eq!(s.try_get(nr(5)), Err(TryGetError::Pending));
}

fn a_waiter_for_5_parked_at_ready_3_gets_gone_when_triage_6_moves_past_it<S: Slot<Response>>() {
    let s = ready_at::<S>(3);
    thread::scope(|scope| {
        let waiter = spawn_waiter(scope, &s, 5);
        assert_parked(&s, &[&waiter]);
        let guard = process(&s, 6);
        assert_eq!(join(waiter), Err(WaitTimeoutError::Gone));
        let _ = guard.complete(response(6));
    });
}

fn a_waiter_for_n_plus_1_sleeps_through_the_completion_of_n<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    thread::scope(|scope| {
        let guard = process(&s, 2);
        let waiter = spawn_waiter(scope, &s, 3);
        assert_parked(&s, &[&waiter]);
        let _ = guard.complete(response(2));
        assert_parked(&s, &[&waiter]);
        let guard = process(&s, 3);
        assert_parked(&s, &[&waiter]);
        let published = guard.complete(response(3));
        assert!(Arc::ptr_eq(&join(waiter).unwrap(), &published));
    });
}

// ---- Deadlines ----

fn wait_timeout_times_out_in_roughly_the_given_time_while_processing<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    let guard = process(&s, 2);
    let timeout = Duration::from_millis(100);
    let started = Instant::now();
    assert_eq!(
        s.wait_timeout(nr(2), timeout),
        Err(WaitTimeoutError::TimedOut)
    );
    let took = started.elapsed();
    assert!(took >= timeout, "returned early, after {took:?}");
    assert!(took < timeout + Duration::from_secs(5), "took {took:?}");
    // And for a number not triaged yet.
    let started = Instant::now();
    assert_eq!(
        s.wait_timeout(nr(3), timeout),
        Err(WaitTimeoutError::TimedOut)
    );
    assert!(started.elapsed() >= timeout);
    let _ = guard.complete(response(2));
}

fn wait_timeout_returns_the_response_completed_before_the_deadline_from_another_thread<
    S: Slot<Response>,
>() {
    let s = ready_at::<S>(1);
    thread::scope(|scope| {
        let guard = process(&s, 2);
        let processor = scope.spawn(move || {
            thread::sleep(PARK_CHECK);
            guard.complete(response(2))
        });
        let got = s.wait_timeout(nr(2), GENEROUS).expect("the response");
        assert!(Arc::ptr_eq(&got, &join(processor)));
    });
}

fn wait_until_in_the_past_times_out_immediately_when_pending<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    let guard = process(&s, 2);
    let past = Instant::now()
        .checked_sub(Duration::from_secs(1))
        .unwrap_or_else(Instant::now);
    let started = Instant::now();
    assert_eq!(s.wait_until(nr(2), past), Err(WaitTimeoutError::TimedOut));
    assert_eq!(s.wait_until(nr(3), past), Err(WaitTimeoutError::TimedOut));
    assert_eq!(
        s.wait_timeout(nr(2), Duration::ZERO),
        Err(WaitTimeoutError::TimedOut)
    );
    // "Immediately": no park for the deadline; the bound only allows for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let _ = guard.complete(response(2));
}

fn wait_until_in_the_past_still_returns_a_settled_outcome<S: Slot<Response>>() {
    let s = ready_at::<S>(2);
    let past = Instant::now();
    thread::sleep(Duration::from_millis(1));
    assert_eq!(&*s.wait_until(nr(2), past).unwrap(), &response(2));
    assert_eq!(s.wait_until(nr(1), past), Err(WaitTimeoutError::Gone));
    process(&s, 3).abandon();
    assert_eq!(s.wait_until(nr(3), past), Err(WaitTimeoutError::Abandoned));
    assert_eq!(
        s.wait_timeout(nr(3), Duration::ZERO),
        Err(WaitTimeoutError::Abandoned)
    );
}

fn wait_timeout_without_a_representable_deadline_still_returns_a_settled_outcome<
    S: Slot<Response>,
>() {
    let s = ready_at::<S>(2);
    assert_eq!(
        &*s.wait_timeout(nr(2), Duration::MAX).unwrap(),
        &response(2)
    );
    assert_eq!(
        s.wait_timeout(nr(1), Duration::MAX),
        Err(WaitTimeoutError::Gone)
    );
}

// ---- Waiting for a number not triaged yet (the seed busy-loops) ----

fn waiting_for_a_number_never_triaged_parks_until_it_is_triaged_and_completed<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    thread::scope(|scope| {
        let waiter = spawn_waiter(scope, &s, 2);
        assert_parked(&s, &[&waiter]);
        let guard = process(&s, 2);
        assert_parked(&s, &[&waiter]);
        let published = guard.complete(response(2));
        assert!(Arc::ptr_eq(&join(waiter).unwrap(), &published));
    });
}

fn waiting_for_a_number_never_triaged_gets_gone_when_the_session_jumps_past_it<
    S: Slot<Response>,
>() {
    let s = Session::<S>::new();
    thread::scope(|scope| {
        let waiter = spawn_waiter(scope, &s, 2);
        assert_parked(&s, &[&waiter]);
        let guard = process(&s, 4);
        assert_eq!(join(waiter), Err(WaitTimeoutError::Gone));
        let _ = guard.complete(response(4));
    });
}

fn seed_wait_get_response_for_a_number_not_triaged_parks_instead_of_spinning<
    S: Slot<Response> + 'static,
>() {
    let s = Arc::new(Session::<S>::new());
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let s = Arc::clone(&s);
        thread::spawn(move || {
            let _ = tx.send(s.wait_get_response(1));
        })
    };
    await_parked(&*s);
    assert_eq!(
        rx.recv_timeout(PARK_CHECK),
        Err(mpsc::RecvTimeoutError::Timeout)
    );
    assert_eq!(s.triage_request(1), Ok((true, true)));
    assert_eq!(
        rx.recv_timeout(PARK_CHECK),
        Err(mpsc::RecvTimeoutError::Timeout)
    );
    assert_eq!(s.set_response(response(1)), Ok(()));
    let got = rx.recv_timeout(GENEROUS).expect("the waiter was released");
    assert_eq!(got.unwrap().as_deref(), Some(&response(1)));
    waiter.join().expect("the waiter panicked");
}

// ---- A panic inside processing ----

fn a_panic_inside_processing_abandons_and_releases_every_waiter<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    thread::scope(|scope| {
        let guard = process(&s, 2);
        let waiters: Vec<_> = (0..4).map(|_| spawn_waiter(scope, &s, 2)).collect();
        assert_parked(&s, &waiters.iter().collect::<Vec<_>>());
        let handler = move || guard.complete(failing_handler());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler));
        assert!(result.is_err(), "the handler was meant to panic");
        for w in waiters {
            assert_eq!(join(w), Err(WaitTimeoutError::Abandoned));
        }
    });
    assert_eq!(s.status(), status(2, Phase::Abandoned));
    assert_eq!(triaged(&s, 2), Decided::Resend);
    let _ = process(&s, 3).complete(response(3));
}

fn a_panicking_processor_thread_does_not_hang_waiters_in_other_threads<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    thread::scope(|scope| {
        let guard = process(&s, 2);
        let waiters: Vec<_> = (0..4).map(|_| spawn_waiter(scope, &s, 2)).collect();
        let resender = scope.spawn(|| {
            assert_eq!(triaged(&s, 2), Decided::Resend);
            s.wait_timeout(nr(2), GENEROUS)
        });
        assert_parked(&s, &waiters.iter().collect::<Vec<_>>());
        let processor = scope.spawn(move || {
            thread::sleep(PARK_CHECK);
            guard.complete(failing_handler())
        });
        assert!(
            processor.join().is_err(),
            "the processor was meant to panic"
        );
        for w in waiters {
            assert_eq!(join(w), Err(WaitTimeoutError::Abandoned));
        }
        assert_eq!(join(resender), Err(WaitTimeoutError::Abandoned));
    });
    assert_eq!(s.try_get(nr(2)), Err(TryGetError::Abandoned));
}

// ---- Request numbers ----

fn request_nr_zero_is_rejected<S: Slot<Response>>() {
    assert_eq!(RequestNr::new(0), Err(InvalidRequestNr::Zero));
    assert_eq!(RequestNr::try_from(0), Err(InvalidRequestNr::Zero));
    let s = Session::<S>::new();
    assert_eq!(s.triage_request(0), Err(InvalidRequestNr::Zero));
    assert_eq!(s.wait_get_response(0), Err(InvalidRequestNr::Zero));
    assert_eq!(s.status(), status(0, Phase::Ready));
}

#[test]
fn request_nr_above_max_is_rejected_never_wrapped() {
    assert_eq!(RequestNr::MAX, (1 << 48) - 1);
    assert_eq!(RequestNr::MAX, (1 << 48) - 1);
    for n in [RequestNr::MAX + 1, RequestNr::MAX + 2, 1 << 63, u64::MAX] {
        assert_eq!(RequestNr::new(n), Err(InvalidRequestNr::TooLarge(n)));
        assert_eq!(RequestNr::try_from(n), Err(InvalidRequestNr::TooLarge(n)));
    }
    let err = RequestNr::new(u64::MAX).unwrap_err().to_string();
    assert!(err.contains(&RequestNr::MAX.to_string()), "{err}");
}

#[test]
fn request_nr_first_and_next() {
    assert_eq!(RequestNr::FIRST, nr(1));
    assert_eq!(nr(1).next(), Ok(nr(2)));
    assert_eq!(nr(RequestNr::MAX - 1).next(), Ok(nr(RequestNr::MAX)));
    assert_eq!(
        nr(RequestNr::MAX).next(),
        Err(InvalidRequestNr::TooLarge(RequestNr::MAX + 1))
    );
    assert_eq!(u64::from(nr(7)), 7);
    assert_eq!(format!("{:?} {}", nr(7), nr(7)), "#7 7");
}

fn request_nr_max_works_end_to_end_reached_by_a_gap<S: Slot<Response>>() {
    let max = RequestNr::MAX;
    let s = Session::<S>::new();
    let guard = process(&s, max);
    assert_eq!((guard.previous(), guard.skipped()), (0, max - 1));
    assert_eq!(s.status(), status(max, Phase::Processing));
    assert_eq!(triaged(&s, max), Decided::Resend);
    assert_eq!(triaged(&s, max - 1), Decided::Stale);
    let published = guard.complete(response(max));
    assert!(Arc::ptr_eq(&s.try_get(nr(max)).unwrap(), &published));
    assert!(Arc::ptr_eq(
        &s.wait_timeout(nr(max), GENEROUS).unwrap(),
        &published
    ));
    assert_eq!(triaged(&s, max), Decided::Resend);
    assert_eq!(s.status(), status(max, Phase::Ready));
    assert_eq!(s.try_get(nr(max - 1)), Err(TryGetError::Gone));
    assert_eq!(s.triage_request(max), Ok((false, true)));
    assert_eq!(
        s.triage_request(max + 1),
        Err(InvalidRequestNr::TooLarge(max + 1))
    );
    assert_eq!(
        s.wait_get_response(max).unwrap().as_deref(),
        Some(&response(max))
    );
    assert!(nr(max).next().is_err());
}

fn request_nr_max_follows_max_minus_1<S: Slot<Response>>() {
    let max = RequestNr::MAX;
    let s = Session::<S>::new();
    let _ = process(&s, max - 1).complete(response(max - 1));
    let guard = process(&s, max);
    assert_eq!((guard.previous(), guard.skipped()), (max - 1, 0));
    let _ = guard.complete(response(max));
    assert_eq!(&*s.try_get(nr(max)).unwrap(), &response(max));
    assert_eq!(s.try_get(nr(max - 1)), Err(TryGetError::Gone));
    drop(process(&Session::<S>::new(), max));
}

fn seed_calls_with_zero_or_too_large_numbers_return_err_never_panic<S: Slot<Response>>() {
    let s = seed_ready_at::<S>(2);
    for n in [0, RequestNr::MAX + 1, 1 << 63, u64::MAX] {
        let expected = RequestNr::new(n).unwrap_err();
        assert_eq!(s.triage_request(n), Err(expected));
        assert_eq!(s.wait_get_response(n), Err(expected));
    }
    assert_eq!(s.status(), status(2, Phase::Ready));
    assert_eq!(s.triage_request(3), Ok((true, true)));
    for n in [0, RequestNr::MAX + 1, u64::MAX] {
        assert!(s.triage_request(n).is_err());
        assert!(s.wait_get_response(n).is_err());
    }
    assert_eq!(s.status(), status(3, Phase::Processing));
    assert_eq!(s.set_response(response(3)), Ok(()));
}

// ---- The seed's own calls ----

fn seed_triage_request_returns_the_seeds_tuples_for_every_table_cell<S: Slot<Response>>() {
    // (state, m, the seed's tuple); n = 3 throughout.
    let ready = [
        (2, (false, false)),
        (3, (false, true)),
        (4, (true, true)),
        (6, (true, true)),
    ];
    for (m, expected) in ready {
        let s = seed_ready_at::<S>(3);
        let b = baseline_ready_at(3);
        assert_eq!(b.triage_request(m), expected, "baseline, Ready(3), m = {m}");
        assert_eq!(s.triage_request(m), Ok(expected), "Ready(3), m = {m}");
    }
    let processing = [
        (2, (false, false)),
        (3, (false, true)),
        (4, (false, false)),
        (6, (false, false)),
    ];
    for (m, expected) in processing {
        let s = seed_ready_at::<S>(2);
        let b = baseline_ready_at(2);
        assert_eq!(s.triage_request(3), Ok((true, true)));
        assert_eq!(b.triage_request(3), (true, true));
        assert_eq!(
            b.triage_request(m),
            expected,
            "baseline, Processing(3), m = {m}"
        );
        assert_eq!(s.triage_request(m), Ok(expected), "Processing(3), m = {m}");
        // The same tuples while a typed guard holds the request.
        let t = ready_at::<S>(2);
        let guard = process(&t, 3);
        assert_eq!(
            t.triage_request(m),
            Ok(expected),
            "guarded Processing(3), m = {m}"
        );
        let _ = guard.complete(response(3));
    }
}

fn seed_set_response_after_triage_request_is_delivered_by_wait_get_response<S: Slot<Response>>() {
    let s = Session::<S>::new();
    assert_eq!(s.triage_request(1), Ok((true, true)));
    assert_eq!(s.status(), status(1, Phase::Processing));
    assert_eq!(s.try_get(nr(1)), Err(TryGetError::Pending));
    assert_eq!(s.set_response(response(1)), Ok(()));
    assert_eq!(s.status(), status(1, Phase::Ready));
    assert_eq!(
        s.wait_get_response(1).unwrap().as_deref(),
        Some(&response(1))
    );
    assert_eq!(&*s.try_get(nr(1)).unwrap(), &response(1));
    // A typed triage sees the seed's request like any other.
    assert_eq!(triaged(&s, 1), Decided::Resend);
    let _ = process(&s, 2).complete(response(2));
}

fn seed_set_response_wakes_a_waiter_of_the_request<S: Slot<Response>>() {
    let s = seed_ready_at::<S>(1);
    assert_eq!(s.triage_request(2), Ok((true, true)));
    thread::scope(|scope| {
        let waiter = spawn_waiter(scope, &s, 2);
        assert_parked(&s, &[&waiter]);
        assert_eq!(s.set_response(response(2)), Ok(()));
        assert_eq!(&*join(waiter).unwrap(), &response(2));
    });
}

fn seed_set_response_while_ready_is_not_processing_and_the_delivered_response_stays<
    S: Slot<Response>,
>() {
    let s = Session::<S>::new();
    assert_eq!(
        s.set_response(response(0)),
        Err(SetResponseError::NotProcessing)
    );
    let s = seed_ready_at::<S>(1);
    assert_eq!(
        s.set_response(response(99)),
        Err(SetResponseError::NotProcessing)
    );
    assert_eq!(
        s.wait_get_response(1).unwrap().as_deref(),
        Some(&response(1))
    );
    let s = ready_at::<S>(1);
    assert_eq!(
        s.set_response(response(99)),
        Err(SetResponseError::NotProcessing)
    );
    assert_eq!(&*s.try_get(nr(1)).unwrap(), &response(1));
}

fn seed_set_response_while_a_typed_guard_owns_the_request_is_claimed<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    let guard = process(&s, 2);
    assert_eq!(s.set_response(response(99)), Err(SetResponseError::Claimed));
    assert_eq!(s.try_get(nr(2)), Err(TryGetError::Pending));
    assert_eq!(s.status(), status(2, Phase::Processing));
    let _ = guard.complete(response(2));
    assert_eq!(&*s.try_get(nr(2)).unwrap(), &response(2));
}

fn seed_second_set_response_for_the_same_request_is_not_processing<S: Slot<Response>>() {
    let s = Session::<S>::new();
    assert_eq!(s.triage_request(1), Ok((true, true)));
    assert_eq!(s.set_response(response(1)), Ok(()));
    assert_eq!(
        s.set_response(response(2)),
        Err(SetResponseError::NotProcessing)
    );
    assert_eq!(
        s.wait_get_response(1).unwrap().as_deref(),
        Some(&response(1))
    );
}

fn seed_wait_get_response_of_an_older_number_is_none<S: Slot<Response>>() {
    let s = seed_ready_at::<S>(3);
    assert_eq!(s.wait_get_response(1), Ok(None));
    assert_eq!(s.wait_get_response(2), Ok(None));
    assert_eq!(s.triage_request(4), Ok((true, true)));
    assert_eq!(s.wait_get_response(3), Ok(None));
    assert_eq!(s.set_response(response(4)), Ok(()));
    assert_eq!(s.wait_get_response(3), Ok(None));
    assert_eq!(
        s.wait_get_response(4).unwrap().as_deref(),
        Some(&response(4))
    );
}

// ---- The publishing thread's read-back of its own response ----

fn seed_wait_get_response_on_the_publishing_thread_returns_the_very_response_published<
    S: Slot<Response>,
>() {
    let s = seed_ready_at::<S>(1);
    assert_eq!(s.triage_request(2), Ok((true, true)));
    let published = Arc::new(response(2));
    assert_eq!(s.set_response(Arc::clone(&published)), Ok(()));
    let read = s.wait_get_response(2).unwrap().unwrap();
    assert!(Arc::ptr_eq(&read, &published));
    // Again (the copy was handed over; this read is a counted one), and from another
    // thread, which keeps no copy.
    let again = s.wait_get_response(2).unwrap().unwrap();
    assert!(Arc::ptr_eq(&again, &published));
    let elsewhere = thread::scope(|scope| scope.spawn(|| s.wait_get_response(2)).join());
    assert!(Arc::ptr_eq(
        &elsewhere.unwrap().unwrap().unwrap(),
        &published
    ));
}

fn seed_read_back_after_the_session_moved_on_is_none_not_the_kept_copy<S: Slot<Response>>() {
    let s = seed_ready_at::<S>(1);
    assert_eq!(s.triage_request(2), Ok((true, true)));
    assert_eq!(s.set_response(response(2)), Ok(()));
    // Another thread starts and answers 3 before this thread reads 2 back.
    thread::scope(|scope| {
        scope.spawn(|| {
            let _ = process(&s, 3).complete(response(3));
        });
    });
    assert_eq!(s.wait_get_response(2), Ok(None));
    // Abandoned in between: no response, whatever was kept.
    assert_eq!(s.triage_request(4), Ok((true, true)));
    assert_eq!(s.set_response(response(4)), Ok(()));
    thread::scope(|scope| {
        scope.spawn(|| process(&s, 5).abandon());
    });
    assert_eq!(s.wait_get_response(4), Ok(None));
    assert_eq!(s.wait_get_response(5), Ok(None));
}

fn seed_read_back_answers_only_the_session_and_number_it_was_published_for<S: Slot<Response>>() {
    let a = seed_ready_at::<S>(1);
    let b = ready_at::<S>(1);
    assert_eq!(a.triage_request(2), Ok((true, true)));
    assert_eq!(a.set_response(response(2)), Ok(()));
    let _ = process(&b, 2).complete(b"b's own 2".to_vec());
    // Another session at the same number gets its own response; the copy stays for
    // the session it answers.
    assert_eq!(
        b.wait_get_response(2).unwrap().as_deref(),
        Some(&b"b's own 2".to_vec())
    );
    assert_eq!(a.wait_get_response(1), Ok(None));
    assert_eq!(
        a.wait_get_response(2).unwrap().as_deref(),
        Some(&response(2))
    );
}

/// A session built, dropped, and another built in the same memory, with another
/// response type: the copy kept for the first is never taken as the second's.
fn seed_read_back_in_a_new_session_at_the_address_of_a_dropped_one_reads_the_new_one<
    S: Slot<Response>,
>() {
    use std::mem::MaybeUninit;
    type Other = SessionState<String>;
    assert_eq!(
        std::mem::size_of::<Other>(),
        std::mem::size_of::<Session<S>>()
    );
    assert!(std::mem::align_of::<Other>() <= std::mem::align_of::<Session<S>>());
    let mut memory = Box::new(MaybeUninit::<Session<S>>::uninit());
    let first: &mut Session<S> = memory.write(seed_ready_at::<S>(1));
    assert_eq!(first.triage_request(2), Ok((true, true)));
    assert_eq!(first.set_response(response(2)), Ok(()));
    let place = memory.as_mut_ptr();
    // SAFETY: `first` lives at `place` and is not used after this.
    unsafe { std::ptr::drop_in_place(place) };
    let place = place.cast::<Other>();
    // SAFETY: `place` is allocated, aligned and large enough for an `Other` (checked
    // above), and holds nothing live.
    unsafe { place.write(Other::new()) };
    // SAFETY: initialised just above; dropped below before the memory is freed.
    let second = unsafe { &*place };
    for m in 1..=2 {
        let _ = process(second, m).complete(format!("second's {m}"));
    }
    assert_eq!(
        second.wait_get_response(2).unwrap().as_deref(),
        Some(&"second's 2".to_string())
    );
    // SAFETY: `second` is not used after this.
    unsafe { std::ptr::drop_in_place(place) };
}

/// A response whose `Drop` panics for request 1.
struct Loud(u64);

impl Drop for Loud {
    fn drop(&mut self) {
        if self.0 == 1 && !thread::panicking() {
            panic!("drop of response 1");
        }
    }
}

/// The kept copy holds the response until this thread's next `set_response` (or read
/// back, or exit); a panic in its `Drop` there comes after the new response is
/// published, so nothing is left processing.
fn seed_kept_copy_is_released_by_the_next_set_response_even_when_its_drop_panics<S: Slot<Loud>>() {
    let s = SessionState::<Loud, S>::new();
    let t = SessionState::<Loud, S>::new();
    assert_eq!(s.triage_request(1), Ok((true, true)));
    assert_eq!(s.set_response(Loud(1)), Ok(()));
    // Moving `s` on drops its copy in the slot, not this thread's: no panic yet.
    let _ = process(&s, 2).complete(Loud(2));
    assert_eq!(t.triage_request(1), Ok((true, true)));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.set_response(Loud(7))));
    assert!(
        caught.is_err(),
        "the kept copy's drop ran in the next set_response"
    );
    assert_eq!(t.status(), status(1, Phase::Ready));
    assert_eq!(t.wait_get_response(1).unwrap().unwrap().0, 7);
}

/// A response that counts its drops.
struct Counted(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A session dropped right after its `set_response`: the publishing thread's copy keeps
/// the response until that thread's next seed call, on any session, or its exit.
fn seed_kept_copy_of_a_dropped_session_goes_at_the_threads_next_seed_call_or_exit<
    S: Slot<Counted> + 'static,
>() {
    let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = || drops.load(std::sync::atomic::Ordering::SeqCst);
    let s = SessionState::<Counted, S>::new();
    assert_eq!(s.triage_request(1), Ok((true, true)));
    assert_eq!(s.set_response(Counted(Arc::clone(&drops))), Ok(()));
    drop(s);
    assert_eq!(count(), 0, "kept by this thread");
    let other = SessionState::<Counted, S>::new();
    let unrelated = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    assert_eq!(other.triage_request(1), Ok((true, true)));
    assert_eq!(other.set_response(Counted(unrelated)), Ok(()));
    assert_eq!(count(), 1, "released by the next set_response");
    // And by a read of another session (here a number it has moved past).
    assert_eq!(other.triage_request(2), Ok((true, true)));
    assert_eq!(other.set_response(Counted(Arc::clone(&drops))), Ok(()));
    let third = SessionState::<Counted, S>::new();
    let _ = process(&third, 1).complete(Counted(Arc::default()));
    let _ = process(&third, 2).complete(Counted(Arc::default()));
    assert!(matches!(third.wait_get_response(1), Ok(None)));
    drop(other);
    assert_eq!(count(), 2, "released by the read of another session");
    // Joined natively (a scoped thread's end is signalled before its thread-locals go).
    let response = Counted(Arc::clone(&drops));
    thread::spawn(move || {
        let s = SessionState::<Counted, S>::new();
        assert_eq!(s.triage_request(1), Ok((true, true)));
        assert_eq!(s.set_response(response), Ok(()));
    })
    .join()
    .unwrap();
    assert_eq!(count(), 3, "released when the thread exited");
}

#[test]
fn seed_kept_copy_of_a_dropped_session_goes_at_the_threads_next_seed_call_or_exit_counted() {
    seed_kept_copy_of_a_dropped_session_goes_at_the_threads_next_seed_call_or_exit::<
        exactly_once::CountedSlot<Counted>,
    >();
}

#[test]
fn seed_kept_copy_of_a_dropped_session_goes_at_the_threads_next_seed_call_or_exit_arc_swap() {
    seed_kept_copy_of_a_dropped_session_goes_at_the_threads_next_seed_call_or_exit::<
        ArcSwapSlot<Counted>,
    >();
}

#[test]
fn seed_kept_copy_is_released_by_the_next_set_response_even_when_its_drop_panics_counted() {
    seed_kept_copy_is_released_by_the_next_set_response_even_when_its_drop_panics::<
        exactly_once::CountedSlot<Loud>,
    >();
}

#[test]
fn seed_kept_copy_is_released_by_the_next_set_response_even_when_its_drop_panics_arc_swap() {
    seed_kept_copy_is_released_by_the_next_set_response_even_when_its_drop_panics::<
        ArcSwapSlot<Loud>,
    >();
}

// ---- status() and Debug ----

fn status_and_debug_after_each_kind_of_transition<S: Slot<Response>>() {
    let s = Session::<S>::new();
    let shows = |text: &str, st: Status| {
        assert_eq!(format!("{s:?}"), format!("SessionState({text})"));
        assert_eq!(s.status(), st);
    };
    shows("Ready(0)", status(0, Phase::Ready));

    let guard = process(&s, 1);
    assert_eq!(
        format!("{guard:?}"),
        "ProcessGuard { request: #1, previous: 0 }"
    );
    shows("Processing(1)", status(1, Phase::Processing));
    assert_eq!(triaged(&s, 1), Decided::Resend);
    assert_eq!(triaged(&s, 2), Decided::Busy { current: 1 });
    shows("Processing(1)", status(1, Phase::Processing));
    let _ = guard.complete(response(1));
    shows("Ready(1)", status(1, Phase::Ready));
    assert_eq!(triaged(&s, 1), Decided::Resend);
    shows("Ready(1)", status(1, Phase::Ready));

    let triage = s.triage(nr(2));
    assert_eq!(
        format!("{triage:?}"),
        "Process(ProcessGuard { request: #2, previous: 1 })"
    );
    drop(triage);
    shows("Abandoned(2)", status(2, Phase::Abandoned));
    assert_eq!(triaged(&s, 1), Decided::Stale);
    shows("Abandoned(2)", status(2, Phase::Abandoned));

    let guard = process(&s, 5);
    shows("Processing(5)", status(5, Phase::Processing));
    let _ = guard.complete(response(5));
    shows("Ready(5)", status(5, Phase::Ready));

    assert_eq!(s.triage_request(6), Ok((true, true)));
    shows("Processing(6) unguarded", status(6, Phase::Processing));
    assert_eq!(s.set_response(response(6)), Ok(()));
    shows("Ready(6)", status(6, Phase::Ready));
}

fn debug_never_blocks_and_shows_a_parked_waiter<S: Slot<Response>>() {
    let s = ready_at::<S>(1);
    thread::scope(|scope| {
        let guard = process(&s, 2);
        let waiter = spawn_waiter(scope, &s, 2);
        assert_parked(&s, &[&waiter]);
        assert_eq!(format!("{s:?}"), "SessionState(Processing(2) parked)");
        // From another thread, while the waiter sleeps and the guard is held.
        let shown = join(scope.spawn(|| format!("{s:?} {:?}", s.status())));
        assert!(shown.starts_with("SessionState(Processing(2)"), "{shown}");
        assert_eq!(
            format!("{guard:?}"),
            "ProcessGuard { request: #2, previous: 1 }"
        );
        let _ = guard.complete(response(2));
        assert!(join(waiter).is_ok());
    });
    assert_eq!(format!("{s:?}"), "SessionState(Ready(2))");
}

fn triage_debug_names_the_decision_and_the_guard<S: Slot<Response>>() {
    let s = ready_at::<S>(2);
    let shown = |m: u64| format!("{:?}", s.triage(nr(m)));
    assert_eq!(shown(1), "Stale");
    assert_eq!(shown(2), "Resend");
    let guard = process(&s, 3);
    assert_eq!(shown(4), "Busy { current: 3 }");
    assert_eq!(shown(3), "Resend");
    let _ = guard.complete(response(3));
    assert_eq!(
        shown(5),
        "Process(ProcessGuard { request: #5, previous: 3 })"
    );
}

// ---- Auto traits and size ----

fn session_is_send_and_sync_and_the_guard_is_send<S: Slot<Response> + 'static>()
where
    Session<S>: Send + Sync,
    ProcessGuard<'static, Response, S>: Send,
{
    assert_send_sync::<Session<S>>();
    assert_send_sync::<Arc<Session<S>>>();
    assert_send::<ProcessGuard<'static, Response, S>>();
}

fn session_fits_in_32_bytes<S: Slot<Response>>() {
    let size = std::mem::size_of::<Session<S>>();
    println!(
        "size_of::<{}>() = {size}",
        std::any::type_name::<Session<S>>()
    );
    assert!(size <= 32, "{size} bytes");
}

// ---- The baseline ----

fn seed(cur_request: u64, answered: bool) -> SeedState {
    SeedState {
        cur_request,
        answered,
    }
}

#[test]
fn baseline_is_send_and_sync() {
    assert_send_sync::<Baseline<Response>>();
}

#[test]
fn baseline_debug_is_the_seeds_str() {
    let b = baseline_ready_at(2);
    assert_eq!(format!("{b:?}"), "SessionState(2, true)");
    assert_eq!(b.triage_request(3), (true, true));
    assert_eq!(format!("{b:?}"), "SessionState(3, false)");
    assert_eq!(b.state(), seed(3, false));
    b.set_response(response(3));
    assert_eq!(format!("{b:?}"), "SessionState(3, true)");
    assert_eq!(b.state(), seed(3, true));
}

#[test]
fn baseline_reproduces_the_seed_on_a_short_script() {
    let b = Baseline::<Response>::new();
    let s = SessionState::<Response>::new();
    // (the seed's results; the lock-free session's, where they differ)
    assert_eq!(b.state(), seed(0, true));
    assert_eq!(b.wait_get_response(0), None);
    for (m, expected) in [(1, (true, true)), (1, (false, true)), (2, (false, false))] {
        assert_eq!(b.triage_request(m), expected);
        assert_eq!(s.triage_request(m), Ok(expected));
    }
    assert_eq!(b.state(), seed(1, false));
    b.set_response(response(1));
    assert_eq!(s.set_response(response(1)), Ok(()));
    assert_eq!(b.wait_get_response(1).as_deref(), Some(&response(1)));
    assert_eq!(
        s.wait_get_response(1).unwrap().as_deref(),
        Some(&response(1))
    );
    // A gap is processed; the older response is gone.
    for (m, expected) in [(1, (false, true)), (3, (true, true)), (2, (false, false))] {
        assert_eq!(b.triage_request(m), expected);
        assert_eq!(s.triage_request(m), Ok(expected));
    }
    assert_eq!(b.wait_get_response(1), None);
    assert_eq!(s.wait_get_response(1), Ok(None));
    b.set_response(response(3));
    assert_eq!(s.set_response(response(3)), Ok(()));
    assert_eq!(b.wait_get_response(3).as_deref(), Some(&response(3)));
    assert_eq!(
        s.wait_get_response(3).unwrap().as_deref(),
        Some(&response(3))
    );
    // The documented divergence: the seed overwrites a delivered response.
    b.set_response(response(33));
    assert_eq!(
        s.set_response(response(33)),
        Err(SetResponseError::NotProcessing)
    );
    assert_eq!(b.wait_get_response(3).as_deref(), Some(&response(33)));
    assert_eq!(
        s.wait_get_response(3).unwrap().as_deref(),
        Some(&response(3))
    );
    assert_eq!(b.state(), seed(3, true));
}

#[test]
fn baseline_would_block_matches_the_seeds_loop_conditions() {
    // The seed's loops: `while cur <= m: while response is None: wait()`,
    // then return if `cur == m`, else loop again (forever, if answered).
    let seed_blocks = |cur: u64, answered: bool, m: u64| cur <= m && !(answered && cur == m);
    for (cur, answered) in [(3, true), (3, false)] {
        let b = baseline_ready_at(if answered { 3 } else { 2 });
        if !answered {
            assert_eq!(b.triage_request(3), (true, true));
        }
        for m in 1..=6 {
            let expected = seed_blocks(cur, answered, m);
            assert_eq!(
                b.would_block(m),
                expected,
                "cur {cur}, answered {answered}, m {m}"
            );
            // Ready(3): only m > 3 blocks (the seed spins there, holding its lock).
            // Processing(3): m >= 3 blocks; m < 3 returns None at once.
            assert_eq!(expected, if answered { m > 3 } else { m >= 3 });
            if !expected {
                let got = b.wait_get_response(m);
                let returns = if answered && m == 3 {
                    Some(response(3))
                } else {
                    None
                };
                assert_eq!(got.as_deref(), returns.as_ref());
            }
        }
    }
    // The one blocking case that does not hang the seed forever: a waiter for
    // the request in processing, released by set_response.
    let b = Arc::new(baseline_ready_at(2));
    assert_eq!(b.triage_request(3), (true, true));
    assert!(b.would_block(3));
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let b = Arc::clone(&b);
        thread::spawn(move || {
            let _ = tx.send(b.wait_get_response(3));
        })
    };
    assert_eq!(
        rx.recv_timeout(PARK_CHECK),
        Err(mpsc::RecvTimeoutError::Timeout)
    );
    b.set_response(response(3));
    assert!(!b.would_block(3));
    let got = rx.recv_timeout(GENEROUS).expect("the waiter was released");
    assert_eq!(got.as_deref(), Some(&response(3)));
    waiter.join().expect("the waiter panicked");
}

for_each_slot!(Response =>
    a_new_session_is_ready_0_and_request_1_can_start,
    ready_n_with_m_below_n_is_stale,
    ready_n_with_m_equal_n_is_resend_and_the_outcome_is_there,
    ready_n_with_m_n_plus_1_is_process_and_moves_to_processing_m,
    ready_n_with_m_above_n_plus_1_is_process_reported_as_a_gap,
    processing_n_with_m_below_n_is_stale,
    processing_n_with_m_equal_n_is_resend_and_the_waiter_gets_the_response_after_complete,
    processing_n_with_m_n_plus_1_is_busy,
    processing_n_with_m_above_n_plus_1_is_busy,
    ready_n_after_an_abandon_follows_the_same_row,
    complete_returns_the_response_and_every_waiter_gets_the_same_arc,
    complete_accepts_an_arc_and_publishes_that_very_arc,
    the_old_response_is_released_once_the_next_request_is_completed,
    explicit_abandon_wakes_every_waiter_with_abandoned,
    dropping_the_guard_abandons_like_abandon,
    an_abandoned_request_is_resend_and_never_processed_again,
    after_an_abandon_the_next_number_is_processed,
    a_waiter_for_n_gets_gone_once_the_session_moved_to_n_plus_1,
    try_get_of_an_older_number_is_gone,
    a_waiter_for_5_parked_at_ready_3_gets_gone_when_triage_6_moves_past_it,
    a_waiter_for_n_plus_1_sleeps_through_the_completion_of_n,
    wait_timeout_times_out_in_roughly_the_given_time_while_processing,
    wait_timeout_returns_the_response_completed_before_the_deadline_from_another_thread,
    wait_until_in_the_past_times_out_immediately_when_pending,
    wait_until_in_the_past_still_returns_a_settled_outcome,
    wait_timeout_without_a_representable_deadline_still_returns_a_settled_outcome,
    waiting_for_a_number_never_triaged_parks_until_it_is_triaged_and_completed,
    waiting_for_a_number_never_triaged_gets_gone_when_the_session_jumps_past_it,
    seed_wait_get_response_for_a_number_not_triaged_parks_instead_of_spinning,
    a_panic_inside_processing_abandons_and_releases_every_waiter,
    a_panicking_processor_thread_does_not_hang_waiters_in_other_threads,
    request_nr_zero_is_rejected,
    request_nr_max_works_end_to_end_reached_by_a_gap,
    request_nr_max_follows_max_minus_1,
    seed_calls_with_zero_or_too_large_numbers_return_err_never_panic,
    seed_triage_request_returns_the_seeds_tuples_for_every_table_cell,
    seed_set_response_after_triage_request_is_delivered_by_wait_get_response,
    seed_set_response_wakes_a_waiter_of_the_request,
    seed_set_response_while_ready_is_not_processing_and_the_delivered_response_stays,
    seed_set_response_while_a_typed_guard_owns_the_request_is_claimed,
    seed_second_set_response_for_the_same_request_is_not_processing,
    seed_wait_get_response_of_an_older_number_is_none,
    seed_wait_get_response_on_the_publishing_thread_returns_the_very_response_published,
    seed_read_back_after_the_session_moved_on_is_none_not_the_kept_copy,
    seed_read_back_answers_only_the_session_and_number_it_was_published_for,
    seed_read_back_in_a_new_session_at_the_address_of_a_dropped_one_reads_the_new_one,
    status_and_debug_after_each_kind_of_transition,
    debug_never_blocks_and_shows_a_parked_waiter,
    session_is_send_and_sync_and_the_guard_is_send,
    session_fits_in_32_bytes,
    triage_debug_names_the_decision_and_the_guard,
);
