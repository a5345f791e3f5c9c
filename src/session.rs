//! The lock-free session state and its processing guard.

use crate::error::{TryGetError, WaitError, WaitTimeoutError};
use crate::request::RequestNr;
use crate::slot::{CountedSlot, Slot};
use crate::state::{decide, Decision, StateWord, Word};
use crate::sync::{Futex, SpinBeforeParking};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exactly-once processing of one client session's numbered requests.
///
/// Share it between the handler threads of one session (`Arc<SessionState<T>>`). Each
/// handler that has read request `m` calls [`triage`](Self::triage) and acts on the
/// [`Triage`] it gets; see the crate docs for the whole protocol.
///
/// `S` picks the response slot: [`CountedSlot`] (default) or
/// [`ArcSwapSlot`](crate::ArcSwapSlot).
pub struct SessionState<T, S: Slot<T> = CountedSlot<T>> {
    word: StateWord,
    futex: Futex,
    slot: S,
    #[cfg(feature = "async")]
    async_waiters: crate::wait::waiters::AsyncWaiters,
    _response: PhantomData<fn() -> Arc<T>>,
}

/// What a handler thread must do with the request it has just read.
#[must_use = "a triage result says whether to process, resend or drop the request"]
pub enum Triage<'s, T, S: Slot<T> = CountedSlot<T>> {
    /// This thread, and no other ever, processes the request: publish its response
    /// through the guard (dropping the guard abandons the request).
    Process(ProcessGuard<'s, T, S>),
    /// The request is (being) processed already: wait for its outcome and send that.
    Resend,
    /// An old request the client has already moved past: neither process nor send.
    Stale,
    /// The client sent a newer request while `current` is still being processed: a
    /// protocol violation; drop the connection.
    Busy {
        /// The request still being processed.
        current: u64,
    },
}

/// The right, and the duty, to settle one request: [`complete`](Self::complete) it with
/// a response or [`abandon`](Self::abandon) it. Dropping the guard, also by a panic
/// unwinding through the handler, abandons the request and wakes every waiter.
#[must_use = "dropping the guard abandons the request"]
pub struct ProcessGuard<'s, T, S: Slot<T> = CountedSlot<T>> {
    session: &'s SessionState<T, S>,
    request: RequestNr,
    previous: u64,
}

/// What a session is doing, from one read of its state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The newest request accepted (0 before the first).
    pub request: u64,
    /// Whether its outcome is known yet.
    pub phase: Phase,
}

/// The phase of the newest request of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// A processor owns it.
    Processing,
    /// Its response is held until the client sends the next request.
    Ready,
    /// Its processor dropped out; it has no response and is never processed again.
    Abandoned,
}

pub(crate) enum Settled<T> {
    Response(Arc<T>),
    Abandoned,
    Gone,
}

impl<T, S: Slot<T>> SessionState<T, S> {
    /// A new session in `Ready(0)`: request 1 can start.
    pub fn new() -> Self {
        SessionState {
            word: StateWord::new(),
            futex: Futex::new(),
            slot: S::empty(),
            #[cfg(feature = "async")]
            async_waiters: crate::wait::waiters::AsyncWaiters::new(),
            _response: PhantomData,
        }
    }

    /// Decides what the thread that has just read request `m` must do (SPEC §2 table).
    pub fn triage(&self, m: RequestNr) -> Triage<'_, T, S> {
        match self.start(m) {
            Ok(previous) => Triage::Process(ProcessGuard {
                session: self,
                request: m,
                previous,
            }),
            Err((Decision::Resend, _)) => Triage::Resend,
            Err((Decision::Stale, _)) => Triage::Stale,
            Err((Decision::Busy | Decision::Start, seen)) => Triage::Busy {
                current: seen.request(),
            },
        }
    }

    /// Moves the session to `Processing(m)` if the table says so, and makes the slot
    /// this thread's. Returns the previous request number, or what to do instead and
    /// the word that decided it.
    pub(crate) fn start(&self, m: RequestNr) -> Result<u64, (Decision, Word)> {
        let m = m.get();
        let mut seen = self.word.load();
        loop {
            match decide(seen, m) {
                Decision::Start => {}
                other => return Err((other, seen)),
            }
            match self.word.start(seen, m) {
                Ok(previous) => {
                    self.wake_if_parked(previous);
                    if previous.readers() > 0 {
                        self.word.drain_readers();
                    }
                    // SAFETY: this thread made the word `Processing(m)` and the readers
                    // that were inside have left; none can enter until `m` is settled.
                    unsafe { self.slot.take() };
                    return Ok(previous.request());
                }
                Err(now) => seen = now,
            }
        }
    }

    /// The outcome of request `m` if it is settled, without waiting.
    pub fn try_get(&self, m: RequestNr) -> Result<Arc<T>, TryGetError> {
        match self.settled_now(m.get()) {
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
    pub fn wait(&self, m: RequestNr) -> Result<Arc<T>, WaitError> {
        match self.wait_inner(m.get(), None) {
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
        self.wait_inner(m.get(), Some(deadline))
    }

    /// What the session is doing now.
    pub fn status(&self) -> Status {
        let w = self.word.load();
        let phase = match (w.is_ready(), w.is_abandoned()) {
            (false, _) => Phase::Processing,
            (true, false) => Phase::Ready,
            (true, true) => Phase::Abandoned,
        };
        Status {
            request: w.request(),
            phase,
        }
    }

    fn wait_inner(&self, m: u64, deadline: Option<Instant>) -> Result<Arc<T>, WaitTimeoutError> {
        let mut spin = SpinBeforeParking::new();
        loop {
            // The epoch is read before the word (see `Futex`): a transition after this
            // read bumps it, so the park below cannot sleep through that transition.
            let epoch = self.futex.epoch();
            let seen = self.word.load();
            match self.settled(m, seen) {
                Some(Some(settled)) => return settled.into_result(),
                Some(None) => continue,
                None => {}
            }
            if spin.spin() {
                continue;
            }
            let timed_out = match deadline {
                Some(deadline) if Instant::now() >= deadline => true,
                _ if self.word.park(seen).is_err() => continue,
                None => {
                    self.futex.wait(epoch);
                    false
                }
                Some(deadline) => !self.futex.wait_until(epoch, deadline),
            };
            if timed_out {
                return self.outcome_at_deadline(m);
            }
        }
    }

    /// The last look once the deadline has passed: a settled outcome still wins.
    fn outcome_at_deadline(&self, m: u64) -> Result<Arc<T>, WaitTimeoutError> {
        self.settled_now(m)
            .map_or(Err(WaitTimeoutError::TimedOut), Settled::into_result)
    }

    /// The outcome of `m` now (`None` while pending), reading the word again when it
    /// moved on while the response was being read.
    pub(crate) fn settled_now(&self, m: u64) -> Option<Settled<T>> {
        loop {
            match self.settled(m, self.word.load()) {
                Some(Some(settled)) => return Some(settled),
                Some(None) => continue,
                None => return None,
            }
        }
    }

    /// The outcome of `m` given the word `seen`: `None` while pending, `Some(None)` when
    /// the word moved on while the response was being read (read the word again).
    #[inline]
    fn settled(&self, m: u64, seen: Word) -> Option<Option<Settled<T>>> {
        let n = seen.request();
        if n > m {
            return Some(Some(Settled::Gone));
        }
        if n < m || !seen.is_ready() {
            return None;
        }
        if seen.is_abandoned() {
            return Some(Some(Settled::Abandoned));
        }
        Some(self.read_response(m, seen).map(Settled::Response))
    }

    /// Clones the response of `m` (the word was `seen` as `Ready(m)`), or `None` if
    /// the word is no longer `Ready(m)`.
    #[inline]
    fn read_response(&self, m: u64, seen: Word) -> Option<Arc<T>> {
        if S::COUNTS_READERS {
            self.word.enter_from(seen, m).ok()?;
            // SAFETY: registered as a reader of `Ready(m)`: the slot is not written
            // until this thread `leave`s.
            let response = unsafe { self.slot.get() };
            self.word.leave();
            response
        } else {
            // SAFETY: a non-counting slot may be read at any time.
            let response = unsafe { self.slot.get() };
            // The slot may already hold a later request's response: keep it only if
            // the word still says `Ready(m)`. (The slot's acquire load makes a later
            // publish's `start` visible to this load.)
            let still = self.word.load();
            (still.request() == m && still.has_response())
                .then_some(response)
                .flatten()
        }
    }

    #[inline]
    fn wake_if_parked(&self, previous: Word) {
        if previous.is_parked() {
            self.futex.wake_all();
        }
        #[cfg(feature = "async")]
        if previous.has_async_waiters() {
            self.async_waiters.wake_all();
        }
    }

    /// Publishes the response of `m`, which this thread owns in `Processing(m)`.
    #[inline]
    pub(crate) fn publish(&self, m: u64, response: Arc<T>) {
        // SAFETY: the caller owns `Processing(m)` and the slot was reclaimed in `start`.
        unsafe { self.slot.put(response) };
        let previous = self.word.complete(m);
        self.wake_if_parked(previous);
    }

    #[inline]
    pub(crate) fn abandon(&self, m: u64) {
        let previous = self.word.abandon(m);
        self.wake_if_parked(previous);
    }

    pub(crate) fn word(&self) -> &StateWord {
        &self.word
    }

    #[cfg(feature = "async")]
    pub(crate) fn async_waiters(&self) -> &crate::wait::waiters::AsyncWaiters {
        &self.async_waiters
    }
}

impl<T> Settled<T> {
    pub(crate) fn into_result(self) -> Result<Arc<T>, WaitTimeoutError> {
        match self {
            Settled::Response(r) => Ok(r),
            Settled::Abandoned => Err(WaitTimeoutError::Abandoned),
            Settled::Gone => Err(WaitTimeoutError::Gone),
        }
    }
}

impl<'s, T, S: Slot<T>> ProcessGuard<'s, T, S> {
    /// The request this guard settles.
    pub fn request(&self) -> RequestNr {
        self.request
    }

    /// The newest request before this one; `request() - 1` unless the client skipped.
    pub fn previous(&self) -> u64 {
        self.previous
    }

    /// How many request numbers the client skipped to send this one (0 normally): the
    /// table processes a gap, as the seed does, and this makes it observable.
    pub fn skipped(&self) -> u64 {
        self.request.get() - self.previous - 1
    }

    /// Publishes the response, wakes every waiter, and returns the response so that
    /// this thread can send it without reading it back.
    pub fn complete(self, response: impl Into<Arc<T>>) -> Arc<T> {
        let response = response.into();
        self.publish(Arc::clone(&response));
        response
    }

    /// As [`complete`](Self::complete), without handing the response back: saves the
    /// reference-count round trip when this thread does not send it itself.
    pub fn publish(self, response: impl Into<Arc<T>>) {
        let this = std::mem::ManuallyDrop::new(self);
        this.session.publish(this.request.get(), response.into());
    }

    /// Gives the request up: it gets no response and is never processed again; every
    /// waiter wakes with `Abandoned`. Dropping the guard does the same.
    pub fn abandon(self) {
        drop(self);
    }
}

impl<T, S: Slot<T>> Drop for ProcessGuard<'_, T, S> {
    fn drop(&mut self) {
        self.session.abandon(self.request.get());
    }
}

impl<T, S: Slot<T>> Default for SessionState<T, S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, S: Slot<T>> fmt::Debug for SessionState<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SessionState").field(&self.word).finish()
    }
}

impl<T, S: Slot<T>> fmt::Debug for ProcessGuard<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessGuard")
            .field("request", &self.request)
            .field("previous", &self.previous)
            .finish()
    }
}

impl<T, S: Slot<T>> fmt::Debug for Triage<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Triage::Process(guard) => f.debug_tuple("Process").field(guard).finish(),
            Triage::Resend => f.write_str("Resend"),
            Triage::Stale => f.write_str("Stale"),
            Triage::Busy { current } => f.debug_struct("Busy").field("current", current).finish(),
        }
    }
}
