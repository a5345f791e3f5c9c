//! The lock-free session state, the triage and its processing guard.

mod owned;

pub use owned::{OwnedProcessGuard, OwnedTriage};

use crate::request::RequestNr;
use crate::slot::{CountedSlot, Slot};
use crate::state::{Refusal, StateWord, Word};
#[cfg(feature = "async")]
use crate::sync::planted_bug;
use crate::wait::blocking::Parker;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// Exactly-once processing of one client session's numbered requests.
///
/// Share it between the handler threads of one session (`Arc<SessionState<T>>`). Each
/// handler that has read request `m` calls [`triage`](Self::triage) and acts on the
/// [`Triage`] it gets; see the crate docs for the whole protocol.
///
/// `S` picks the response slot: [`CountedSlot`] (default) or
/// [`ArcSwapSlot`](crate::ArcSwapSlot).
pub struct SessionState<T, S: Slot<T> = CountedSlot<T>> {
    pub(crate) word: StateWord,
    pub(crate) parker: Parker,
    pub(crate) slot: S,
    #[cfg(feature = "async")]
    pub(crate) async_waiters: crate::wait::waiters::AsyncWaiters,
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
///
/// It borrows its session; [`SessionState::triage_owned`] hands out an
/// [`OwnedProcessGuard`] that holds it by `Arc`, to move into a spawned task.
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

impl<T, S: Slot<T>> SessionState<T, S> {
    /// A new session in `Ready(0)`: request 1 can start.
    pub fn new() -> Self {
        SessionState {
            word: StateWord::new(),
            parker: Parker::new(),
            slot: S::empty(),
            #[cfg(feature = "async")]
            async_waiters: crate::wait::waiters::AsyncWaiters::new(),
            _response: PhantomData,
        }
    }

    /// Decides what the thread that has just read request `m` must do (see the table
    /// in the crate docs).
    #[inline(always)]
    pub fn triage(&self, m: RequestNr) -> Triage<'_, T, S> {
        match self.start(m) {
            Ok(guard) => Triage::Process(guard),
            Err(Refusal::Resend) => Triage::Resend,
            Err(Refusal::Stale) => Triage::Stale,
            Err(Refusal::Busy { current }) => Triage::Busy { current },
        }
    }

    /// Moves the session to `Processing(m)` if the table says so. If no reader is
    /// inside its window of the previous response, that response is dropped here, under
    /// the returned guard (a panic in its `Drop` abandons `m`), so that its memory goes
    /// as soon as the next request starts. Otherwise it is left to the readers: they
    /// leave while `m` is processed, and the guard drains them and drops it when it
    /// publishes or abandons. Either way a triage takes a bounded number of steps
    /// whatever the readers do.
    #[inline(always)]
    pub(crate) fn start(&self, m: RequestNr) -> Result<ProcessGuard<'_, T, S>, Refusal> {
        let previous = self.word.start(m.get(), false, |w| self.wake_waiters(w))?;
        self.wake_waiters(previous);
        let guard = ProcessGuard {
            session: self,
            request: m,
            previous: previous.request(),
        };
        if previous.readers() == 0 {
            // SAFETY: the guard owns `Processing(m)` and no reader was inside when it
            // began; none can enter until `m` is settled.
            drop(unsafe { self.slot.take() });
        }
        Ok(guard)
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

    /// Wakes whoever waits for a change of the word, given the word a transition
    /// replaced. Every transition that can settle a waiter's outcome calls this once.
    #[inline]
    pub(crate) fn wake_waiters(&self, previous: Word) {
        if previous.is_parked() {
            self.parker.wake();
        }
        #[cfg(feature = "async")]
        if previous.has_async_waiters()
            && !(previous.is_parked() && planted_bug!(ForgetAsyncWhenParked))
        {
            self.async_waiters.wake_all();
        }
    }

    /// Publishes the response of `m`, which `guard` owns: the readers still inside
    /// their window of the previous response leave, and the slot is written and what
    /// it held dropped while the guard still abandons on a panic.
    #[inline(always)]
    pub(crate) fn publish(guard: ProcessGuard<'_, T, S>, response: Arc<T>) {
        // The guard's duty (abandon on a panic) passes to `publish_claimed`'s own.
        let (session, m) = (guard.session, guard.request.get());
        std::mem::forget(guard);
        session.publish_claimed(m, response);
    }

    /// [`publish`](Self::publish) for the `Processing(m)` this thread has just claimed
    /// (the seed's `set_response`), with no guard value moved in: on this path the
    /// guard's three words went through the stack in pieces of different widths, which
    /// the processor cannot forward from its store buffer (see `seed_compat::read_back`).
    /// A panic in dropping the previous response abandons `m`, as the guard's would.
    #[inline(always)]
    pub(crate) fn publish_claimed(&self, m: u64, response: Arc<T>) {
        let abandon_on_unwind = AbandonOnUnwind { session: self, m };
        self.drain_readers();
        // SAFETY: this thread owns `Processing(m)` (its claim won) and the readers have
        // left; none can enter until `m` is settled.
        drop(unsafe { self.slot.take() });
        // SAFETY: as above; the cell is empty now.
        drop(unsafe { self.slot.put(response) });
        std::mem::forget(abandon_on_unwind);
        let previous = self.word.complete(m);
        self.wake_waiters(previous);
    }

    /// Waits for the readers of the previous response that were inside their window
    /// when `Processing(m)` began (none can enter since) to leave: the owner's next
    /// transition clears their count, and the slot is the owner's only after it.
    #[inline]
    fn drain_readers(&self) {
        if S::COUNTS_READERS && self.word.load().readers() > 0 {
            self.word.drain_readers();
        }
    }

    #[inline]
    fn abandon(&self, m: u64) {
        self.drain_readers();
        let previous = self.word.abandon(m);
        self.wake_waiters(previous);
    }

    /// A guard for the `Processing(m)` this thread has just claimed (the seed's
    /// `set_response`; `claimed` is the word the claim replaced). As for a guard from
    /// `start`, its publish drains the readers and drops the old response.
    #[inline]
    pub(crate) fn claimed(&self, claimed: Word) -> ProcessGuard<'_, T, S> {
        ProcessGuard {
            session: self,
            request: RequestNr::new(claimed.request()).expect("a claimed request is valid"),
            previous: claimed.request() - 1,
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
    /// table processes a gap, as the original does, and this makes it observable.
    pub fn skipped(&self) -> u64 {
        self.request.get() - self.previous - 1
    }

    /// Publishes the response, wakes every waiter, and returns the response so that
    /// this thread can send it without reading it back. A panic in the conversion
    /// abandons the request.
    #[inline(always)]
    pub fn complete(self, response: impl Into<Arc<T>>) -> Arc<T> {
        let response = response.into();
        SessionState::publish(self, Arc::clone(&response));
        response
    }

    /// As [`complete`](Self::complete), without handing the response back: saves the
    /// reference-count round trip when this thread does not send it itself.
    #[inline(always)]
    pub fn publish(self, response: impl Into<Arc<T>>) {
        let response = response.into();
        SessionState::publish(self, response);
    }

    /// Gives the request up: it gets no response and is never processed again; every
    /// waiter wakes with `Abandoned`. Dropping the guard does the same.
    pub fn abandon(self) {
        drop(self);
    }
}

/// Abandons request `m` if dropped: armed while `publish_claimed` drops what the slot
/// held, disarmed (forgotten) before the publish.
struct AbandonOnUnwind<'s, T, S: Slot<T>> {
    session: &'s SessionState<T, S>,
    m: u64,
}

impl<T, S: Slot<T>> Drop for AbandonOnUnwind<'_, T, S> {
    fn drop(&mut self) {
        self.session.abandon(self.m);
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    fn nr(m: u64) -> RequestNr {
        RequestNr::new(m).expect("a valid request number")
    }

    /// A reader stopped inside its window of request 1's response (here: entered by
    /// hand, as a reader preempted between `enter` and `leave`) does not hold up the
    /// triage of 2; the publish of 2 waits for it, and drops 1's response after it.
    #[test]
    fn a_triage_does_not_wait_for_a_reader_inside_its_window_but_the_publish_does() {
        let session = SessionState::<u32>::new();
        let Triage::Process(guard) = session.triage(nr(1)) else {
            panic!("1 starts")
        };
        guard.publish(10);
        session.word.enter(1).expect("a reader of 1 enters");
        let published = AtomicBool::new(false);
        thread::scope(|scope| {
            let (triaged, took) = mpsc::channel();
            let session = &session;
            let published = &published;
            scope.spawn(move || {
                let Triage::Process(guard) = session.triage(nr(2)) else {
                    panic!("2 starts")
                };
                triaged.send(()).expect("the test waits");
                guard.publish(20);
                // ORDERING: relaxed; the scope's join orders it for the last assert.
                published.store(true, Ordering::Relaxed);
            });
            let in_time = took.recv_timeout(Duration::from_secs(10));
            // Let the reader go in any case, so that a failure does not hang the test.
            let still_inside = !published.load(Ordering::Relaxed);
            session.word.leave();
            assert!(in_time.is_ok(), "the triage waited for the reader");
            assert!(still_inside, "published while a reader was inside");
        });
        assert!(published.load(Ordering::Relaxed));
        assert_eq!(session.try_get(nr(2)).map(|r| *r), Ok(20));
    }
}
