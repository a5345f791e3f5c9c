//! A planted bug that the loom harness must catch: wakes that skip the futex epoch
//! bump lose the wake-up of a waiter between its check and its park, and loom reports
//! the deadlock. Its own test binary, because the switch is process-wide.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_planted`.
#![cfg(loom)]

mod support;

use exactly_once::SessionState;
use loom::thread;
use support::{nr, process};

#[test]
#[should_panic(expected = "deadlock")]
fn lost_wakeup_is_caught() {
    exactly_once::planted_bugs::skip_epoch_bump(true);
    loom::model(|| {
        let s: &'static SessionState<u32> = Box::leak(Box::new(SessionState::new()));
        let guard = process(s, 1);
        let processor = thread::spawn(move || drop(guard.complete(7)));
        assert_eq!(*s.wait(nr(1)).unwrap(), 7);
        processor.join().unwrap();
    });
}
