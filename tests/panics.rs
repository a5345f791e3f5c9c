//! User code that panics while only its own thread can settle the state word: the
//! request it was starting or publishing ends `Abandoned` (every waiter wakes, the next
//! number can start), and the panic reaches the caller.
//!
//! The places user code runs there: the `Into<Arc<T>>` of a response being published
//! (typed `publish`/`complete`, the seed's `set_response`), and the `Drop` of the
//! previous response (at triage with the counted slot, at publish with the arc-swap
//! slot; by the typed API and the seed's calls alike). `Arc` clones and the waits run
//! no user code.

use exactly_once::slot::Slot;
use exactly_once::{
    ArcSwapSlot, CountedSlot, Phase, RequestNr, SessionState, Status, Triage, WaitTimeoutError,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A response whose `Drop` panics once armed.
#[derive(Debug)]
struct Bomb {
    armed: Arc<AtomicBool>,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.armed.swap(false, Ordering::SeqCst) && !thread::panicking() {
            panic!("the previous response's Drop panicked");
        }
    }
}

/// A response whose conversion into `Arc<Bomb>` panics.
struct FailingInto;

impl From<FailingInto> for Arc<Bomb> {
    fn from(_: FailingInto) -> Self {
        panic!("the response's Into panicked")
    }
}

fn bomb() -> (Bomb, Arc<AtomicBool>) {
    let armed = Arc::new(AtomicBool::new(false));
    (
        Bomb {
            armed: Arc::clone(&armed),
        },
        armed,
    )
}

fn nr(m: u64) -> RequestNr {
    RequestNr::new(m).unwrap()
}

fn panics(f: impl FnOnce()) -> bool {
    catch_unwind(AssertUnwindSafe(f)).is_err()
}

/// What every test checks once the panic has propagated: `m` is abandoned, a waiter
/// parked on it (started before the panic) woke with `Abandoned`, and `m + 1` starts.
fn assert_abandoned_and_moves_on<S: Slot<Bomb>>(s: &SessionState<Bomb, S>, m: u64) {
    assert_eq!(
        s.status(),
        Status {
            request: m,
            phase: Phase::Abandoned
        }
    );
    assert_eq!(
        s.wait_timeout(nr(m), Duration::from_secs(5)).map(drop),
        Err(WaitTimeoutError::Abandoned)
    );
    match s.triage(nr(m + 1)) {
        Triage::Process(guard) => drop(guard.complete(bomb().0)),
        other => panic!("after the panic, triage({}) gave {other:?}", m + 1),
    }
}

/// Runs `panicking` (which must panic) on request `m` of `s` while another thread waits
/// for `m`; returns what that waiter got.
fn with_a_waiter<S: Slot<Bomb>>(
    s: &SessionState<Bomb, S>,
    m: u64,
    panicking: impl FnOnce(),
) -> Result<(), WaitTimeoutError> {
    thread::scope(|scope| {
        let waiter = scope.spawn(|| s.wait_timeout(nr(m), Duration::from_secs(10)).map(drop));
        assert!(panics(panicking), "the user code's panic must propagate");
        waiter.join().unwrap()
    })
}

/// A session in `Ready(1)` whose response panics when it is dropped, armed.
fn ready_with_an_armed_bomb<S: Slot<Bomb>>() -> SessionState<Bomb, S> {
    let s = SessionState::new();
    let (response, armed) = bomb();
    match s.triage(nr(1)) {
        Triage::Process(guard) => guard.publish(response),
        other => panic!("{other:?}"),
    }
    armed.store(true, Ordering::SeqCst);
    s
}

fn publish_with_a_panicking_into<S: Slot<Bomb>>() {
    let s = SessionState::<Bomb, S>::new();
    let Triage::Process(guard) = s.triage(nr(1)) else {
        panic!("not Process")
    };
    let waited = with_a_waiter(&s, 1, || guard.publish(FailingInto));
    assert_eq!(waited, Err(WaitTimeoutError::Abandoned));
    assert_abandoned_and_moves_on(&s, 1);
}

fn complete_with_a_panicking_into<S: Slot<Bomb>>() {
    let s = SessionState::<Bomb, S>::new();
    let Triage::Process(guard) = s.triage(nr(1)) else {
        panic!("not Process")
    };
    let waited = with_a_waiter(&s, 1, || drop(guard.complete(FailingInto)));
    assert_eq!(waited, Err(WaitTimeoutError::Abandoned));
    assert_abandoned_and_moves_on(&s, 1);
}

fn set_response_with_a_panicking_into<S: Slot<Bomb>>() {
    let s = SessionState::<Bomb, S>::new();
    assert_eq!(s.triage_request(1), Ok((true, true)));
    let waited = with_a_waiter(&s, 1, || {
        let _ = s.set_response(FailingInto);
    });
    assert_eq!(waited, Err(WaitTimeoutError::Abandoned));
    assert_abandoned_and_moves_on(&s, 1);
}

/// The typed triage and publish of request 2 drop request 1's response somewhere
/// (at triage or at publish, depending on the slot): that panic abandons 2.
fn previous_response_panics_on_drop_typed<S: Slot<Bomb>>() {
    let s = ready_with_an_armed_bomb::<S>();
    let waited = with_a_waiter(&s, 2, || {
        if let Triage::Process(guard) = s.triage(nr(2)) {
            guard.publish(bomb().0);
        }
    });
    assert_eq!(waited, Err(WaitTimeoutError::Abandoned));
    assert_abandoned_and_moves_on(&s, 2);
}

/// The same through the seed's `triage_request` and `set_response`.
fn previous_response_panics_on_drop_seed<S: Slot<Bomb>>() {
    let s = ready_with_an_armed_bomb::<S>();
    let waited = with_a_waiter(&s, 2, || {
        if s.triage_request(2) == Ok((true, true)) {
            s.set_response(bomb().0).unwrap();
        }
    });
    assert_eq!(waited, Err(WaitTimeoutError::Abandoned));
    assert_abandoned_and_moves_on(&s, 2);
}

macro_rules! each_slot {
    ($($test:ident),+ $(,)?) => {
        mod counted {
            $( #[test] fn $test() { super::$test::<super::CountedSlot<super::Bomb>>() } )+
        }
        mod arc_swap {
            $( #[test] fn $test() { super::$test::<super::ArcSwapSlot<super::Bomb>>() } )+
        }
    };
}

each_slot!(
    publish_with_a_panicking_into,
    complete_with_a_panicking_into,
    set_response_with_a_panicking_into,
    previous_response_panics_on_drop_typed,
    previous_response_panics_on_drop_seed,
);
