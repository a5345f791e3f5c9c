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
//! `set_response` keeps a copy of the response for the calling thread, which its own
//! `wait_get_response` of the same request (the original's handler makes that call
//! next, to send the response) takes after checking that the session still holds that
//! response, instead of registering as a reader. The thread's next call of either
//! releases the copy if it was not taken; until then, or until the thread exits, the
//! copy keeps the response alive, also past its session (one response per thread).
//! Hence these calls need `T: 'static`, and a response's `Drop` may run on the
//! publishing thread, in that later call or among its thread-locals' destructors.
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

mod read_back;

impl<T: 'static, S: Slot<T>> SessionState<T, S> {
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
    /// of the previous response, abandons the request. (A panic in the `Drop` of the
    /// copy this thread kept of its previous response comes after the publish.)
    ///
    /// The response must own what it holds (`T: 'static`): the calling thread keeps a
    /// copy for its own `wait_get_response`, which may outlive the session.
    ///
    /// ```compile_fail
    /// # use exactly_once::SessionState;
    /// let text = String::from("borrowed");
    /// let session = SessionState::<&str>::new();
    /// session.triage_request(1).unwrap();
    /// session.set_response(&*text).unwrap(); // borrows `text`: refused
    /// # drop(text);
    /// ```
    ///
    /// ```
    /// # use exactly_once::SessionState;
    /// let session = SessionState::<&'static str>::new();
    /// session.triage_request(1).unwrap();
    /// session.set_response("owned").unwrap();
    /// assert_eq!(session.wait_get_response(1).unwrap().as_deref(), Some(&"owned"));
    /// ```
    #[inline]
    pub fn set_response(&self, response: impl Into<Arc<T>>) -> Result<(), SetResponseError> {
        match self.word.claim() {
            Ok(claimed) => {
                let m = claimed.request();
                // Converted while nothing else is done: a panic here abandons `m`.
                let response = {
                    let guard = self.claimed(claimed);
                    let response = response.into();
                    std::mem::forget(guard);
                    response
                };
                let copy = Arc::clone(&response);
                self.publish_claimed(m, response);
                read_back::keep(self.address(), m, copy);
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
        if let Some(response) = self.read_back(m.get()) {
            return Ok(Some(response));
        }
        Ok(self.wait(m).ok())
    }

    /// The copy of `m`'s response this thread kept when it published it, if this
    /// session still holds that very response as the response of `m`: the word shows
    /// `Ready(m)` with a response before and after the slot is found holding the copy's
    /// address. Numbers only grow and the slot changes only while a request is
    /// processed, so the slot held `m`'s response throughout; the copy keeps its
    /// allocation alive, so the same address is the same response.
    #[inline]
    fn read_back(&self, m: u64) -> Option<Arc<T>> {
        let holds = |response: *const ()| {
            self.word.load().has_response_of(m)
                && self.slot.holds(response.cast())
                && self.word.load().has_response_of(m)
        };
        // SAFETY: `holds` is true only if this session's slot, of `T`s, held the copy's
        // address (while the copy kept that allocation alive).
        let response = unsafe { read_back::take_if(self.address(), m, holds) }?;
        // SAFETY: per `take_if`, a count of an `Arc<T>` that moves to us.
        Some(unsafe { Arc::from_raw(response.cast::<T>()) })
    }

    /// This session's address, the hint a kept copy carries.
    #[inline]
    fn address(&self) -> usize {
        self as *const Self as usize
    }
}
