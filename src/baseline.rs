//! A faithful `Mutex` + `Condvar` port of the seed: the reference model.
//!
//! This is MUSCLE3's `SessionState` as it is, hangs included, ported line for line to
//! one `std::sync::Mutex` and one `Condvar`. The lock-free
//! [`SessionState`](crate::SessionState) is tested against it (differential tests and
//! fuzzing) and benchmarked against it. Do not use it in a server: it has the seed's
//! traps, kept on purpose so that the model stays the seed's:
//! - `wait_get_response(m)` for an `m` above the current request while a response is
//!   present loops forever holding the lock, hanging the whole session;
//! - a waiter for an older number wakes only at the next `set_response`;
//! - request numbers are not validated, and a processor that dies leaves every waiter
//!   parked forever.
//!
//! One difference a generic port cannot avoid: the seed starts with an empty `bytes()`
//! response for request 0; here request 0 is "answered" with no value, so
//! `wait_get_response(0)` on a new session returns `None`.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The seed's state: the current request and, iff it is answered, its response.
pub struct Baseline<T> {
    state: Mutex<Locked<T>>,
    response_ready: Condvar,
}

/// What the seed's `__str__` shows: the current request and whether it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedState {
    /// The seed's `_cur_request`: the newest request triaged for processing.
    pub cur_request: u64,
    /// The seed's `_response is not None`: request `cur_request` has its response.
    pub answered: bool,
}

struct Locked<T> {
    cur_request: u64,
    /// The seed's `_response is not None`.
    answered: bool,
    response: Option<Arc<T>>,
}

impl<T> Baseline<T> {
    /// The seed's `__init__`: request 0 counts as answered.
    pub fn new() -> Self {
        Baseline {
            state: Mutex::new(Locked {
                cur_request: 0,
                answered: true,
                response: None,
            }),
            response_ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Locked<T>> {
        // A poisoned lock only means a panic elsewhere; the state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The seed's `triage_request`: `(should_process, should_send)`.
    pub fn triage_request(&self, request_nr: u64) -> (bool, bool) {
        let mut s = self.lock();
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
        let mut s = self.lock();
        s.response = Some(response.into());
        s.answered = true;
        self.response_ready.notify_all();
    }

    /// The seed's `wait_get_response`, hangs included (see the module docs).
    pub fn wait_get_response(&self, request_nr: u64) -> Option<Arc<T>> {
        let mut s = self.lock();
        while s.cur_request <= request_nr {
            while !s.answered {
                s = self
                    .response_ready
                    .wait(s)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if s.cur_request == request_nr {
                return s.response.clone();
            }
        }
        None
    }

    /// The current request and whether it is answered, read under the lock (blocks while
    /// another thread holds it, like every call of the seed).
    pub fn state(&self) -> SeedState {
        let s = self.lock();
        SeedState {
            cur_request: s.cur_request,
            answered: s.answered,
        }
    }

    /// Whether `wait_get_response(request_nr)` would block or spin right now. Not in the
    /// seed: it lets single-threaded differential tests avoid the seed's hangs.
    pub fn would_block(&self, request_nr: u64) -> bool {
        let s = self.lock();
        s.cur_request <= request_nr && !(s.answered && s.cur_request == request_nr)
    }
}

impl<T> Default for Baseline<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Baseline<T> {
    /// The seed's `__str__`. Never blocks: a held lock prints as such.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state.try_lock() {
            Ok(s) => write!(f, "SessionState({}, {})", s.cur_request, s.answered),
            Err(_) => f.write_str("SessionState(<locked>)"),
        }
    }
}
