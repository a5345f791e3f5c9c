//! MUSCLE3's three calls, for code ported from it and for differential tests.
//!
//! They return what MUSCLE3's `SessionState` returns wherever that class does not hang,
//! with three deliberate differences, each where the original is unsafe to rely on:
//! - numbers are validated (0 and numbers above [`RequestNr::MAX`] are errors);
//! - `set_response` publishes only into a request started by `triage_request` that has
//!   no response yet; the original would overwrite a response already delivered;
//! - `wait_get_response` for a number not triaged yet parks instead of spinning, and
//!   returns `None` for an abandoned request.
//!
//! What these calls cannot protect against: `set_response` does not name its request,
//! so a thread that calls it late answers whichever unguarded request is current. The
//! typed API ([`SessionState::triage`] and its guard) binds each publish to its request
//! and abandons on panic; prefer it.

use crate::error::{InvalidRequestNr, SetResponseError};
use crate::request::RequestNr;
use crate::session::SessionState;
use crate::slot::Slot;
use crate::state::Refusal;
use std::sync::Arc;

impl<T, S: Slot<T>> SessionState<T, S> {
    /// MUSCLE3's `triage_request`: `(should_process, should_send)`.
    ///
    /// `(true, true)` leaves the request in processing with no guard: answer it with
    /// [`set_response`](Self::set_response). Nothing abandons it if the caller dies.
    /// (The previous response is released by that `set_response`, or by whoever
    /// publishes next if the request is never answered.)
    #[inline]
    pub fn triage_request(&self, m: u64) -> Result<(bool, bool), InvalidRequestNr> {
        let m = RequestNr::new(m)?;
        Ok(
            match self.word.start(m.get(), true, |w| self.wake_waiters(w)) {
                Ok(previous) => {
                    self.wake_waiters(previous);
                    (true, true)
                }
                Err(Refusal::Resend) => (false, true),
                Err(_) => (false, false),
            },
        )
    }

    /// MUSCLE3's `set_response`: publishes the response of the request being
    /// processed and wakes every waiter. A panic in the conversion, or in the `Drop`
    /// of the previous response, abandons the request.
    #[inline]
    pub fn set_response(&self, response: impl Into<Arc<T>>) -> Result<(), SetResponseError> {
        match self.word.claim() {
            Ok(claimed) => {
                let guard = self.claimed(claimed);
                SessionState::publish(guard, response.into());
                Ok(())
            }
            Err(seen) if seen.is_ready() => Err(SetResponseError::NotProcessing),
            Err(_) => Err(SetResponseError::Claimed),
        }
    }

    /// MUSCLE3's `wait_get_response`: the response of `m`, or `None` when the session
    /// has moved past it (or it was abandoned). Waits without deadline.
    #[inline]
    pub fn wait_get_response(&self, m: u64) -> Result<Option<Arc<T>>, InvalidRequestNr> {
        let m = RequestNr::new(m)?;
        Ok(self.wait(m).ok())
    }
}
