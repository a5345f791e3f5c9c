//! Waiting for a request's outcome: the settled check every wait shares, and the
//! deadlines. How a thread blocks (spin, `PARKED`, futex) is in [`blocking`]; how a
//! task awaits (feature `async`) is in `future` and `waiters`.

pub(crate) mod blocking;
#[cfg(feature = "async")]
pub(crate) mod future;
#[cfg(feature = "async")]
pub(crate) mod waiters;

use crate::error::{TryGetError, WaitError, WaitTimeoutError};
use crate::request::RequestNr;
use crate::session::SessionState;
use crate::slot::Slot;
use crate::state::Word;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The outcome of a request once it is settled.
#[derive(Debug)]
pub(crate) enum Settled<T> {
    /// Its response.
    Response(Arc<T>),
    /// Its processor dropped out: it has no response.
    Abandoned,
    /// The session has moved past it.
    Gone,
}

impl<T> Settled<T> {
    /// The outcome as a deadline wait returns it.
    pub(crate) fn into_result(self) -> Result<Arc<T>, WaitTimeoutError> {
        match self {
            Settled::Response(r) => Ok(r),
            Settled::Abandoned => Err(WaitTimeoutError::Abandoned),
            Settled::Gone => Err(WaitTimeoutError::Gone),
        }
    }
}

/// What one value of the word says about a request's outcome.
pub(crate) enum Look<T> {
    /// The outcome is known.
    Settled(Settled<T>),
    /// Not yet: the request is being processed, or not triaged yet.
    Pending,
    /// The word moved on while the response was being read: look again.
    Moved,
    /// The response is there, but a triage has closed the door to new readers (the
    /// word it was seen in is given): wait for the word to change.
    AtTheDoor(Word),
}

impl<T, S: Slot<T>> SessionState<T, S> {
    /// The outcome of request `m` if it is settled, without waiting for it to be
    /// processed. (With the counted slot it may wait briefly for a triage that has
    /// just closed the door to the response's readers to start the next request.)
    #[inline]
    pub fn try_get(&self, m: RequestNr) -> Result<Arc<T>, TryGetError> {
        match self.read_at_once(m.get()) {
            Some(response) => Ok(response),
            None => self.try_get_general(m.get()),
        }
    }

    /// `try_get` where the one-attempt read did not do.
    #[inline(never)]
    fn try_get_general(&self, m: u64) -> Result<Arc<T>, TryGetError> {
        match self.settled_now(m) {
            Some(Settled::Response(r)) => Ok(r),
            Some(Settled::Abandoned) => Err(TryGetError::Abandoned),
            Some(Settled::Gone) => Err(TryGetError::Gone),
            None => Err(TryGetError::Pending),
        }
    }

    /// Waits, parked, for the outcome of request `m`: its response, `Abandoned`, or
    /// `Gone` once the session has moved past `m`. Waiting for a request that has not
    /// been triaged yet waits for it to be triaged and settled.
    ///
    /// This has no deadline: use [`wait_timeout`](Self::wait_timeout) unless the
    /// request's processor is known to be making progress.
    #[inline]
    pub fn wait(&self, m: RequestNr) -> Result<Arc<T>, WaitError> {
        match self.read_at_once(m.get()) {
            Some(response) => Ok(response),
            None => self.wait_general(m.get()),
        }
    }

    /// `wait` where the one-attempt read did not do.
    #[inline(never)]
    fn wait_general(&self, m: u64) -> Result<Arc<T>, WaitError> {
        match self.wait_blocking(m, None) {
            Ok(r) => Ok(r),
            Err(WaitTimeoutError::Abandoned) => Err(WaitError::Abandoned),
            Err(WaitTimeoutError::Gone) => Err(WaitError::Gone),
            Err(WaitTimeoutError::TimedOut) => unreachable!("a wait without deadline timed out"),
        }
    }

    /// As [`wait`](Self::wait), giving up after `timeout`.
    pub fn wait_timeout(
        &self,
        m: RequestNr,
        timeout: Duration,
    ) -> Result<Arc<T>, WaitTimeoutError> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_until(m, deadline),
            None => self.wait(m).map_err(WaitTimeoutError::from),
        }
    }

    /// As [`wait`](Self::wait), giving up at `deadline`.
    pub fn wait_until(&self, m: RequestNr, deadline: Instant) -> Result<Arc<T>, WaitTimeoutError> {
        match self.read_at_once(m.get()) {
            Some(response) => Ok(response),
            None => self.wait_blocking(m.get(), Some(deadline)),
        }
    }

    /// The last look once the deadline has passed: a settled outcome still wins.
    pub(crate) fn outcome_at_deadline(&self, m: u64) -> Result<Arc<T>, WaitTimeoutError> {
        self.settled_now(m)
            .map_or(Err(WaitTimeoutError::TimedOut), Settled::into_result)
    }

    /// The outcome of `m` now, or `None` while it is pending (reading the word again
    /// when it moved on while the response was being read). Where a triage has closed
    /// the door to the response's readers, this waits for that triage to move on:
    /// a few spins, then parked on the futex (the triage wakes it).
    #[inline]
    pub(crate) fn settled_now(&self, m: u64) -> Option<Settled<T>> {
        loop {
            match self.look_now(m) {
                Look::Settled(settled) => return Some(settled),
                Look::AtTheDoor(seen) => self.wait_at_the_door(seen),
                Look::Pending | Look::Moved => return None,
            }
        }
    }

    /// The outcome of `m` now, never waiting: settled, pending, or turned away at a
    /// door a triage has closed (never `Moved`: the word is read again then). For
    /// callers that must not block a thread, such as a future's `poll`.
    #[inline]
    pub(crate) fn look_now(&self, m: u64) -> Look<T> {
        loop {
            match self.look(m, self.word.load()) {
                Look::Moved => continue,
                other => return other,
            }
        }
    }

    /// The outcome of `m` given the word `seen`.
    #[inline]
    pub(crate) fn look(&self, m: u64, seen: Word) -> Look<T> {
        let n = seen.request();
        if n > m {
            return Look::Settled(Settled::Gone);
        }
        if n < m || !seen.is_ready() {
            return Look::Pending;
        }
        if seen.is_abandoned() {
            return Look::Settled(Settled::Abandoned);
        }
        match self.read_response(m, seen) {
            Ok(Some(response)) => Look::Settled(Settled::Response(response)),
            Err(now) if now.is_at_the_door_for(m) => Look::AtTheDoor(now),
            Ok(None) | Err(_) => Look::Moved,
        }
    }

    /// The response of `m` in one attempt, for the common case of a word that nobody
    /// else is changing: `None` whenever anything is in the way (no response of `m`
    /// yet or any more, a closed door, a race), and the general path decides.
    #[inline(always)]
    pub(crate) fn read_at_once(&self, m: u64) -> Option<Arc<T>> {
        let seen = self.word.load();
        if S::COUNTS_READERS {
            if !self.word.try_enter(seen, m) {
                return None;
            }
            // SAFETY: registered as a reader of `Ready(m)`: the slot is not written
            // until this thread `leave`s.
            let response = unsafe { self.slot.get() };
            self.word.leave();
            response
        } else {
            if !seen.has_response_of(m) {
                return None;
            }
            self.read_response(m, seen).ok().flatten()
        }
    }

    /// Clones the response of `m` (the word was `seen` as `Ready(m)`), or returns the
    /// word that turned the reader away: no longer `Ready(m)`, or the door closed.
    #[inline]
    fn read_response(&self, m: u64, seen: Word) -> Result<Option<Arc<T>>, Word> {
        if S::COUNTS_READERS {
            self.word.enter_from(seen, m)?;
            // SAFETY: registered as a reader of `Ready(m)`: the slot is not written
            // until this thread `leave`s.
            let response = unsafe { self.slot.get() };
            self.word.leave();
            Ok(response)
        } else {
            // SAFETY: a non-counting slot may be read at any time.
            let response = unsafe { self.slot.get() };
            // The slot may already hold a later request's response: keep it only if
            // the word still says `Ready(m)`. (The slot's acquire load makes a later
            // publish's `start` visible to this load.)
            let still = self.word.load();
            if still.has_response_of(m) {
                Ok(response)
            } else {
                Err(still)
            }
        }
    }
}
