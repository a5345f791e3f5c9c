//! The seed ported to async Rust the ordinary way: its state under a
//! `tokio::sync::Mutex`, its condition variable a `tokio::sync::Notify`.
//!
//! Line for line the algorithm of `src/baseline.rs` (the benchmarks never wait for a
//! number that is not triaged yet). `wait_get_response` enables its `Notified` before
//! it looks at the state, which is how `Notify` stands in for a condvar without losing
//! a wake-up.

use std::fmt;
use std::sync::Arc;
use tokio::sync::{Mutex, Notify};

/// The seed's state on tokio's async mutex.
pub struct TokioSeed<T> {
    state: Mutex<SeedState<T>>,
    response_ready: Notify,
}

struct SeedState<T> {
    cur_request: u64,
    answered: bool,
    response: Option<Arc<T>>,
}

impl<T> TokioSeed<T> {
    /// The seed's `__init__`: request 0 counts as answered.
    pub fn new() -> Self {
        TokioSeed {
            state: Mutex::new(SeedState {
                cur_request: 0,
                answered: true,
                response: None,
            }),
            response_ready: Notify::new(),
        }
    }

    /// The seed's `triage_request`: `(should_process, should_send)`.
    pub async fn triage_request(&self, request_nr: u64) -> (bool, bool) {
        let mut s = self.state.lock().await;
        let should_process = s.answered && s.cur_request < request_nr;
        if should_process {
            s.cur_request = request_nr;
            s.answered = false;
            s.response = None;
        }
        (should_process, s.cur_request == request_nr)
    }

    /// The seed's `set_response`: stores the response and wakes all.
    pub async fn set_response(&self, response: Arc<T>) {
        let mut s = self.state.lock().await;
        s.response = Some(response);
        s.answered = true;
        self.response_ready.notify_waiters();
    }

    /// The seed's `wait_get_response`.
    pub async fn wait_get_response(&self, request_nr: u64) -> Option<Arc<T>> {
        loop {
            let notified = self.response_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.state.lock().await;
                if s.cur_request > request_nr {
                    return None;
                }
                if s.answered && s.cur_request == request_nr {
                    return s.response.clone();
                }
            }
            notified.await;
        }
    }
}

impl<T> Default for TokioSeed<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for TokioSeed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokioSeed")
    }
}
