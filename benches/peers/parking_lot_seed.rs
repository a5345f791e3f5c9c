//! The seed on parking_lot: `exactly_once::baseline::Baseline` with parking_lot's
//! `Mutex` and `Condvar` in place of std's, and nothing else changed.
//!
//! Line for line the algorithm of `src/baseline.rs` (its traps included; the benchmarks
//! never wait for a number that is not triaged yet). The one behavioural difference is
//! the point of having this peer: parking_lot's `notify_all` looks at the condvar's
//! state first and makes no system call when nobody waits, where std's futex condvar
//! makes one on every call. parking_lot has no poisoning, so the `unwrap_or_else`s of
//! the std port have no counterpart.

use parking_lot::{Condvar, Mutex};
use std::fmt;
use std::sync::Arc;

/// The seed's state on parking_lot.
pub struct ParkingLotSeed<T> {
    state: Mutex<SeedState<T>>,
    response_ready: Condvar,
}

struct SeedState<T> {
    cur_request: u64,
    /// The seed's `_response is not None`.
    answered: bool,
    response: Option<Arc<T>>,
}

impl<T> ParkingLotSeed<T> {
    /// The seed's `__init__`: request 0 counts as answered.
    pub fn new() -> Self {
        ParkingLotSeed {
            state: Mutex::new(SeedState {
                cur_request: 0,
                answered: true,
                response: None,
            }),
            response_ready: Condvar::new(),
        }
    }

    /// The seed's `triage_request`: `(should_process, should_send)`.
    pub fn triage_request(&self, request_nr: u64) -> (bool, bool) {
        let mut s = self.state.lock();
        let should_process = s.answered && s.cur_request < request_nr;
        if should_process {
            s.cur_request = request_nr;
            s.answered = false;
            s.response = None;
        }
        (should_process, s.cur_request == request_nr)
    }

    /// The seed's `set_response`: stores the response (whatever the state) and wakes all.
    pub fn set_response(&self, response: impl Into<Arc<T>>) {
        let mut s = self.state.lock();
        s.response = Some(response.into());
        s.answered = true;
        self.response_ready.notify_all();
    }

    /// The seed's `wait_get_response`, hangs included.
    pub fn wait_get_response(&self, request_nr: u64) -> Option<Arc<T>> {
        let mut s = self.state.lock();
        while s.cur_request <= request_nr {
            while !s.answered {
                self.response_ready.wait(&mut s);
            }
            if s.cur_request == request_nr {
                return s.response.clone();
            }
        }
        None
    }

    /// Whether `wait_get_response(request_nr)` would block or spin right now (the std
    /// port's non-blocking probe).
    pub fn would_block(&self, request_nr: u64) -> bool {
        let s = self.state.lock();
        s.cur_request <= request_nr && !(s.answered && s.cur_request == request_nr)
    }
}

impl<T> Default for ParkingLotSeed<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for ParkingLotSeed<T> {
    /// The seed's `__str__`. Never blocks: a held lock prints as such.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state.try_lock() {
            Some(s) => write!(f, "SessionState({}, {})", s.cur_request, s.answered),
            None => f.write_str("SessionState(<locked>)"),
        }
    }
}
