//! Async waiters cost a publisher no futex system call: a transition that only async
//! waiters wait for notifies their event (an uncontended lock and the wakers) and
//! never calls `FUTEX_WAKE`; a cancelled waiter leaves nothing to pay for. Counted with
//! `strace` on a child run of this binary, between markers (`getppid` calls).
#![cfg(all(feature = "async", target_os = "linux"))]
#![allow(missing_docs)]

use exactly_once::{RequestNr, SessionState, Triage};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use std::{env, thread};

#[path = "support/strace.rs"]
mod strace;
use strace::{futex_wakes_between_markers, marker};

const CHILD: &str = "EXACTLY_ONCE_ASYNC_STRACE_CHILD";
const ROUNDS: u64 = 20;
const WAITERS: usize = 4;
/// More polls than a wait yields before it registers.
const POLLS_TO_REGISTER: usize = 16;

fn nr(n: u64) -> RequestNr {
    RequestNr::new(n).unwrap()
}

/// A waker that does nothing, so that waking makes no system call of its own.
struct Silent;

impl Wake for Silent {
    fn wake(self: Arc<Self>) {}
}

fn poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(Silent));
    Pin::new(f).poll(&mut Context::from_waker(&waker))
}

/// Scenario 1: `ROUNDS` times, `WAITERS` registered async waiters and a publish.
/// Scenario 2: `ROUNDS` times, a waiter registers and is dropped, then a publish.
/// Scenario 3, the control: a blocking waiter really parked in another thread.
#[test]
fn child_scenarios() {
    if env::var_os(CHILD).is_none() {
        return;
    }
    let s = SessionState::<u64>::new();
    let process = |m: u64| match s.triage(nr(m)) {
        Triage::Process(guard) => guard,
        other => panic!("not Process: {other:?}"),
    };
    marker();
    for m in 1..=ROUNDS {
        let guard = process(m);
        let mut waits: Vec<_> = (0..WAITERS).map(|_| s.wait_async(nr(m))).collect();
        for wait in &mut waits {
            (0..POLLS_TO_REGISTER).for_each(|_| assert!(poll(wait).is_pending()));
        }
        guard.publish(m);
        for wait in &mut waits {
            assert!(matches!(poll(wait), Poll::Ready(Ok(r)) if *r == m));
        }
    }
    marker();
    for m in ROUNDS + 1..=2 * ROUNDS {
        let guard = process(m);
        let mut wait = s.wait_async(nr(m));
        (0..POLLS_TO_REGISTER).for_each(|_| assert!(poll(&mut wait).is_pending()));
        drop(wait);
        guard.publish(m);
    }
    marker();
    let guard = process(2 * ROUNDS + 1);
    thread::scope(|scope| {
        let waiter = scope.spawn(|| s.wait(nr(2 * ROUNDS + 1)).map(|r| *r));
        thread::sleep(Duration::from_millis(100));
        guard.publish(7);
        assert_eq!(waiter.join().unwrap(), Ok(7));
    });
    marker();
}

#[test]
fn async_waiters_cost_the_publisher_no_futex_wake() {
    if env::var_os(CHILD).is_some() {
        return;
    }
    let Some(stretches) = futex_wakes_between_markers(CHILD) else {
        return;
    };
    assert_eq!(stretches.len(), 3, "markers not found: {stretches:?}");
    assert_eq!(
        stretches[0], 0,
        "publishes to async waiters made futex wakes: {stretches:?}"
    );
    assert_eq!(
        stretches[1], 0,
        "publishes after cancelled waiters made futex wakes: {stretches:?}"
    );
    assert!(
        stretches[2] >= 1,
        "the control saw no wake of a parked waiter: {stretches:?}"
    );
}
