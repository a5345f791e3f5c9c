//! The model bodies, shared by `loom_core.rs` (they pass) and `loom_core_planted.rs`
//! (each fails with its bug planted).

use exactly_once::{RequestNr, SessionState, Triage, TryGetError, WaitTimeoutError};
use loom::thread;
use std::time::{Duration, Instant};

fn nr(n: u64) -> RequestNr {
    RequestNr::new(n).unwrap()
}

/// A session that outlives every loom thread of one execution (loom threads need
/// `'static`; the few bytes leaked per execution are the price).
fn answered(m: u64, response: u32) -> &'static SessionState<u32> {
    let s: &'static SessionState<u32> = Box::leak(Box::new(SessionState::new()));
    for k in 1..=m {
        match s.triage(nr(k)) {
            Triage::Process(guard) => drop(guard.complete(if k == m { response } else { 0 })),
            other => panic!("setup triage got {other:?}"),
        }
    }
    s
}

/// A reader of request 1 makes a triage of 2 lose its first compare-and-swap, so it
/// closes the door; another handler of 2 may win the race first, so the door can be
/// closed on a word that no longer starts 2. Whatever the interleaving, exactly one
/// handler processes 2, the reader gets 1's response or `Gone`, and the door ends
/// open: a last reader of 2's response gets it (with the door left closed it would
/// wait for ever, which loom reports).
pub fn door_left_open() {
    loom::model(|| {
        let s = answered(1, 10);
        let reader = thread::spawn(move || s.try_get(nr(1)).map(|r| *r));
        let handler = move || match s.triage(nr(2)) {
            Triage::Process(guard) => {
                drop(guard.complete(20));
                true
            }
            Triage::Resend => false,
            other => panic!("{other:?}"),
        };
        let other = thread::spawn(handler);
        let processed_here = handler();
        let processed_there = other.join().unwrap();
        assert!(processed_here ^ processed_there, "exactly one Process");
        let got = reader.join().unwrap();
        assert!(matches!(got, Ok(10) | Err(TryGetError::Gone)), "{got:?}");
        assert_eq!(s.try_get(nr(2)).map(|r| *r), Ok(20));
    });
}

/// A waiter with a deadline parks and times out (under loom a deadline expires at the
/// park), leaving `PARKED` set; a second waiter parks behind it. The completion must
/// wake the second one: it counted itself before its park, and its park wrote the
/// word even though `PARKED` was set, so the completion sees it counted.
pub fn parked_behind_a_timed_out_waiter() {
    loom::model(|| {
        let s: &'static SessionState<u32> = Box::leak(Box::new(SessionState::new()));
        let Triage::Process(guard) = s.triage(nr(1)) else {
            panic!("not Process")
        };
        let deadline = Instant::now() + Duration::from_secs(3600);
        let timed = thread::spawn(move || s.wait_until(nr(1), deadline).map(|r| *r));
        let patient = thread::spawn(move || s.wait(nr(1)).map(|r| *r));
        drop(guard.complete(7));
        let got = timed.join().unwrap();
        assert!(
            matches!(got, Ok(7) | Err(WaitTimeoutError::TimedOut)),
            "{got:?}"
        );
        assert_eq!(patient.join().unwrap(), Ok(7));
    });
}
