//! The seed's own three calls, for its users and for differential tests.
//!
//! They return what MUSCLE3's `SessionState` returns wherever that class does not hang,
//! with three deliberate differences, each where the seed is unsafe to rely on:
//! - numbers are validated (0 and numbers above [`RequestNr::MAX`] are errors);
//! - `set_response` publishes only into a request started by `triage_request` that has
//!   no response yet; the seed would overwrite a response already delivered;
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
use crate::state::Decision;
use std::sync::Arc;

impl<T, S: Slot<T>> SessionState<T, S> {
    /// The seed's `triage_request`: `(should_process, should_send)`.
    ///
    /// `(true, true)` leaves the request in processing with no guard: answer it with
    /// [`set_response`](Self::set_response). Nothing abandons it if the caller dies.
    pub fn triage_request(&self, m: u64) -> Result<(bool, bool), InvalidRequestNr> {
        let m = RequestNr::new(m)?;
        Ok(match self.start(m) {
            Ok(_) => {
                self.word().mark_unguarded();
                (true, true)
            }
            Err((Decision::Resend, _)) => (false, true),
            Err(_) => (false, false),
        })
    }

    /// The seed's `set_response`: publishes the response of the request being
    /// processed and wakes every waiter.
    pub fn set_response(&self, response: impl Into<Arc<T>>) -> Result<(), SetResponseError> {
        match self.word().claim() {
            Ok(m) => {
                self.publish(m, response.into());
                Ok(())
            }
            Err(seen) if seen.is_ready() => Err(SetResponseError::NotProcessing),
            Err(_) => Err(SetResponseError::Claimed),
        }
    }

    /// The seed's `wait_get_response`: the response of `m`, or `None` when the session
    /// has moved past it (or it was abandoned). Waits without deadline.
    pub fn wait_get_response(&self, m: u64) -> Result<Option<Arc<T>>, InvalidRequestNr> {
        let m = RequestNr::new(m)?;
        Ok(self.wait(m).ok())
    }
}
