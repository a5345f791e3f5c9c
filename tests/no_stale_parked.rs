//! A waiter that timed out leaves no wake-up to pay for: the next transition makes no
//! futex system call, because nobody is parked. Counted with `strace` on a child run
//! of this binary, between markers (`getppid` calls) that fence each scenario.
#![cfg(target_os = "linux")]

use exactly_once::{RequestNr, SessionState, Triage, WaitTimeoutError};
use std::time::Duration;
use std::{env, thread};

#[path = "support/strace.rs"]
mod strace;
use strace::{futex_wakes_between_markers, marker};

const CHILD: &str = "EXACTLY_ONCE_STRACE_CHILD";
const ROUNDS: u64 = 20;

fn nr(n: u64) -> RequestNr {
    RequestNr::new(n).unwrap()
}

/// Scenario 1: on one thread, `ROUNDS` times: a deadline wait on a request being
/// processed times out (it parked, so `PARKED` stays set), then the request completes.
/// Scenario 2, the control: a waiter really parked in another thread is woken.
#[test]
fn child_scenarios() {
    if env::var_os(CHILD).is_none() {
        return;
    }
    let s = SessionState::<u64>::new();
    marker();
    for m in 1..=ROUNDS {
        let Triage::Process(guard) = s.triage(nr(m)) else {
            panic!("not Process")
        };
        let waited = s.wait_timeout(nr(m), Duration::from_micros(200));
        assert_eq!(waited, Err(WaitTimeoutError::TimedOut));
        drop(guard.complete(m));
    }
    marker();
    let Triage::Process(guard) = s.triage(nr(ROUNDS + 1)) else {
        panic!("not Process")
    };
    thread::scope(|scope| {
        let waiter = scope.spawn(|| s.wait(nr(ROUNDS + 1)).map(|r| *r));
        thread::sleep(Duration::from_millis(100));
        drop(guard.complete(7));
        assert_eq!(waiter.join().unwrap(), Ok(7));
    });
    marker();
}

#[test]
fn a_timed_out_waiter_leaves_no_futex_wake_to_the_next_transition() {
    if env::var_os(CHILD).is_some() {
        return;
    }
    let Some(stretches) = futex_wakes_between_markers(CHILD) else {
        return;
    };
    assert_eq!(stretches.len(), 2, "markers not found: {stretches:?}");
    assert_eq!(
        stretches[0], 0,
        "{ROUNDS} completions after timed-out waits made futex wakes: {stretches:?}"
    );
    assert!(
        stretches[1] >= 1,
        "the control saw no wake of a parked waiter: {stretches:?}"
    );
}
