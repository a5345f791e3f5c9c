//! Loom models of the races that tests cannot reach: every interleaving (up to the
//! preemption bound in `LOOM_MAX_PREEMPTIONS`, unbounded if unset) of the hard cases.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom`.
#![cfg(loom)]

mod support;

use exactly_once::{SessionState, Slot, Triage, TryGetError, WaitError, WaitTimeoutError};
use loom::thread;
use std::time::{Duration, Instant};
use support::{for_each_slot, nr, process};

/// A session that outlives every loom thread of one execution (loom threads need
/// `'static`; the few bytes leaked per execution are the price).
fn session<S: Slot<u32> + 'static>() -> &'static SessionState<u32, S> {
    Box::leak(Box::new(SessionState::new()))
}

/// A leaked session in `Ready(m)`, request `m` answered with `response`.
fn answered<S: Slot<u32> + 'static>(m: u64, response: u32) -> &'static SessionState<u32, S> {
    let answer = |k| if k == m { response } else { 0 };
    Box::leak(Box::new(support::ready_at(m, answer)))
}

/// Model 1: The processor completes while a re-request waits: the waiter gets exactly that.
fn completes_while_a_resend_waits<S: Slot<u32> + 'static>() {
    loom::model(|| {
        let s = session::<S>();
        let guard = process(s, 1);
        let processor = thread::spawn(move || drop(guard.complete(7)));
        assert!(matches!(s.triage(nr(1)), Triage::Resend));
        assert_eq!(*s.wait(nr(1)).unwrap(), 7);
        processor.join().unwrap();
    });
}

/// Model 2: Two waiters and one completer: no lost wake-up, both get the response.
fn two_waiters_one_completer<S: Slot<u32> + 'static>() {
    loom::model(|| {
        let s = session::<S>();
        let guard = process(s, 1);
        let waiter = thread::spawn(move || *s.wait(nr(1)).unwrap());
        let processor = thread::spawn(move || drop(guard.complete(7)));
        assert_eq!(*s.wait(nr(1)).unwrap(), 7);
        assert_eq!(waiter.join().unwrap(), 7);
        processor.join().unwrap();
    });
}

/// Model 3: A late waiter of n while the client moves on to n+1: it gets n's response or
/// `Gone`, never n+1's.
fn late_waiter_never_gets_the_next_response<S: Slot<u32> + 'static>() {
    loom::model(|| {
        let s = answered::<S>(1, 10);
        let waiter = thread::spawn(move || s.wait(nr(1)).map(|r| *r));
        drop(process(s, 2).complete(20));
        let got = waiter.join().unwrap();
        assert!(matches!(got, Ok(10) | Err(WaitError::Gone)), "{got:?}");
    });
}

/// Model 4: The processor abandons (drops its guard) while a waiter waits.
fn abandon_releases_the_waiter<S: Slot<u32> + 'static>() {
    loom::model(|| {
        let s = session::<S>();
        let guard = process(s, 1);
        let processor = thread::spawn(move || drop(guard));
        assert_eq!(s.wait(nr(1)), Err(WaitError::Abandoned));
        processor.join().unwrap();
        assert!(matches!(s.triage(nr(1)), Triage::Resend));
    });
}

/// Model 5: A reader of n's response racing triage(n+1) and complete(n+1): no use after free
/// (loom checks every access to the counted slot's cell), no wrong response.
fn reader_races_the_next_request<S: Slot<u32> + 'static>() {
    loom::model(|| {
        let s = answered::<S>(1, 10);
        let reader = thread::spawn(move || s.try_get(nr(1)).map(|r| *r));
        let processor = thread::spawn(move || drop(process(s, 2).complete(20)));
        let got = reader.join().unwrap();
        assert!(matches!(got, Ok(10) | Err(TryGetError::Gone)), "{got:?}");
        processor.join().unwrap();
        assert_eq!(*s.try_get(nr(2)).unwrap(), 20);
    });
}

/// Model 6: A deadline wait racing the completion (under loom the deadline expires at the
/// park): the response or `TimedOut`, nothing else, and nothing left parked.
fn deadline_wait_races_completion<S: Slot<u32> + 'static>() {
    loom::model(|| {
        let s = session::<S>();
        let guard = process(s, 1);
        let processor = thread::spawn(move || drop(guard.complete(7)));
        let deadline = Instant::now() + Duration::from_secs(3600);
        let got = s.wait_until(nr(1), deadline).map(|r| *r);
        assert!(
            matches!(got, Ok(7) | Err(WaitTimeoutError::TimedOut)),
            "{got:?}"
        );
        processor.join().unwrap();
        assert_eq!(*s.wait(nr(1)).unwrap(), 7);
    });
}

/// Model 7: Two threads triage the same new number: exactly one processes, both answer.
fn two_triages_of_the_same_number<S: Slot<u32> + 'static>() {
    loom::model(|| {
        let s = answered::<S>(1, 10);
        let handler = move || match s.triage(nr(2)) {
            Triage::Process(guard) => (true, *guard.complete(20)),
            Triage::Resend => (false, *s.wait(nr(2)).unwrap()),
            other => panic!("{other:?}"),
        };
        let other = thread::spawn(handler);
        let (processed_here, got_here) = handler();
        let (processed_there, got_there) = other.join().unwrap();
        assert!(processed_here ^ processed_there, "exactly one Process");
        assert_eq!((got_here, got_there), (20, 20));
    });
}

/// The seed's calls: `set_response` racing a waiter parked on a number not yet triaged.
fn seed_calls_wake_a_waiter_for_a_future_number<S: Slot<u32> + 'static>() {
    loom::model(|| {
        let s = session::<S>();
        let waiter = thread::spawn(move || s.wait_get_response(1).unwrap().map(|r| *r));
        assert_eq!(s.triage_request(1).unwrap(), (true, true));
        s.set_response(7).unwrap();
        assert_eq!(waiter.join().unwrap(), Some(7));
    });
}

for_each_slot!(u32 =>
    completes_while_a_resend_waits,
    two_waiters_one_completer,
    late_waiter_never_gets_the_next_response,
    abandon_releases_the_waiter,
    reader_races_the_next_request,
    deadline_wait_races_completion,
    two_triages_of_the_same_number,
    seed_calls_wake_a_waiter_for_a_future_number,
);
