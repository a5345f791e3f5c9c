//! Loom models of the async wake path: every interleaving (up to the preemption bound
//! in `LOOM_MAX_PREEMPTIONS`) of an async waiter against the transitions that settle
//! it, of a cancelled waiter against a publish, and of a blocking and an async waiter
//! on one session. Each model runs once as written and once with a planted bug that
//! it must catch (a lost wake-up shows up as a loom deadlock).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --features async --test loom_async`.
#![cfg(all(loom, feature = "async"))]
#![allow(missing_docs)]

use exactly_once::planted_bugs::{plant, Bug};
use exactly_once::{OwnedTriage, ProcessGuard, RequestNr, SessionState, Triage, WaitError};
use futures_lite::future::poll_once;
use loom::future::block_on;
use loom::thread;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

type Session = SessionState<u32>;

/// The planted bugs are process-wide: one model at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn nr(n: u64) -> RequestNr {
    RequestNr::new(n).unwrap()
}

/// Runs one execution of a model on a session that outlives its loom threads (which
/// need `'static`), and frees it afterwards: loom checks that the event's list is freed.
fn on_a_session(model: fn(&'static Session)) {
    let raw = Box::into_raw(Box::new(Session::new()));
    // SAFETY: `raw` is live until the `from_raw` below; the model joins every thread it
    // spawns, so no reference to the session outlives `model`.
    model(unsafe { &*raw });
    // SAFETY: as above: nothing refers to the session any more.
    drop(unsafe { Box::from_raw(raw) });
}

fn process(s: &Session, m: u64) -> ProcessGuard<'_, u32> {
    match s.triage(nr(m)) {
        Triage::Process(guard) => guard,
        other => panic!("expected Process, got {other:?}"),
    }
}

/// Runs `model` as written, then with `bug` planted, which loom must catch.
fn passes_and_catches(bug: Bug, model: fn()) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    model();
    plant(Some(bug));
    let caught = catch_unwind(AssertUnwindSafe(model));
    plant(None);
    assert!(
        caught.is_err(),
        "loom did not catch the planted bug {bug:?}"
    );
}

fn async_waiter_racing_complete() {
    loom::model(|| {
        on_a_session(|s| {
            let guard = process(s, 1);
            let processor = thread::spawn(move || guard.publish(7));
            assert_eq!(block_on(s.wait_async(nr(1))).map(|r| *r), Ok(7));
            processor.join().unwrap();
        });
    });
}

fn async_waiter_racing_abandon() {
    loom::model(|| {
        on_a_session(|s| {
            let guard = process(s, 1);
            let processor = thread::spawn(move || guard.abandon());
            assert_eq!(block_on(s.wait_async(nr(1))), Err(WaitError::Abandoned));
            processor.join().unwrap();
        });
    });
}

/// Waiting for 2 in `Ready(1)`, while the client skips to 3: 2 is gone.
fn async_waiter_racing_a_triage_past_its_request() {
    loom::model(|| {
        on_a_session(|s| {
            process(s, 1).publish(1);
            let client = thread::spawn(move || process(s, 3).publish(3));
            assert_eq!(block_on(s.wait_async(nr(2))), Err(WaitError::Gone));
            client.join().unwrap();
        });
    });
}

/// One waiter registers and gives up while another waits and the processor publishes:
/// the one that stays gets the response.
fn cancelled_waiter_racing_a_publish() {
    loom::model(|| {
        on_a_session(|s| {
            let guard = process(s, 1);
            let cancelling = thread::spawn(move || {
                let mut wait = s.wait_async(nr(1));
                let _ = block_on(poll_once(&mut wait));
            });
            let staying = thread::spawn(move || block_on(s.wait_async(nr(1))).map(|r| *r));
            cancelling.join().unwrap();
            guard.publish(7);
            assert_eq!(staying.join().unwrap(), Ok(7));
        });
    });
}

fn blocking_and_async_waiter_on_one_session() {
    loom::model(|| {
        on_a_session(|s| {
            let guard = process(s, 1);
            let blocking = thread::spawn(move || s.wait(nr(1)).map(|r| *r));
            let processor = thread::spawn(move || guard.publish(7));
            assert_eq!(block_on(s.wait_async(nr(1))).map(|r| *r), Ok(7));
            assert_eq!(blocking.join().unwrap(), Ok(7));
            processor.join().unwrap();
        });
    });
}

/// The owned guard, moved to the processor's thread: its publish and its drop (which
/// abandons) wake the waiter as the borrowed guard's do.
fn async_waiter_racing_an_owned_guard(publishes: bool) {
    loom::model(move || {
        let s = Arc::new(Session::new());
        let OwnedTriage::Process(guard) = s.triage_owned(nr(1)) else {
            panic!("first triage must process")
        };
        let processor = thread::spawn(move || {
            if publishes {
                guard.publish(7);
            } else {
                drop(guard);
            }
        });
        let expected = if publishes {
            Ok(7)
        } else {
            Err(WaitError::Abandoned)
        };
        assert_eq!(block_on(s.wait_async(nr(1))).map(|r| *r), expected);
        processor.join().unwrap();
    });
}

#[test]
fn an_async_waiter_racing_an_owned_guard_gets_its_response() {
    passes_and_catches(Bug::AsyncSkipMark, || {
        async_waiter_racing_an_owned_guard(true)
    });
}

#[test]
fn an_async_waiter_racing_a_dropped_owned_guard_gets_abandoned() {
    passes_and_catches(Bug::AsyncSkipMark, || {
        async_waiter_racing_an_owned_guard(false)
    });
}

#[test]
fn an_async_waiter_racing_complete_gets_the_response() {
    passes_and_catches(Bug::AsyncSkipMark, async_waiter_racing_complete);
}

#[test]
fn an_async_waiter_racing_abandon_gets_abandoned() {
    passes_and_catches(Bug::AsyncSkipMark, async_waiter_racing_abandon);
}

#[test]
fn an_async_waiter_racing_a_triage_past_its_request_gets_gone() {
    passes_and_catches(
        Bug::AsyncSkipMark,
        async_waiter_racing_a_triage_past_its_request,
    );
}

#[test]
fn a_cancelled_waiter_takes_no_wake_up_from_one_that_stays() {
    passes_and_catches(
        Bug::AsyncLeaveSkipsRecount,
        cancelled_waiter_racing_a_publish,
    );
}

#[test]
fn a_blocking_and_an_async_waiter_are_both_woken() {
    passes_and_catches(
        Bug::ForgetAsyncWhenParked,
        blocking_and_async_waiter_on_one_session,
    );
}
