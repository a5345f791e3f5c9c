//! Awaiting a request's outcome from any executor.
//!
//! [`SessionState::wait_async`] is [`SessionState::wait`] as a future: the same
//! outcomes (the response, `Abandoned`, `Gone`), the same happens-before promise (what
//! the processor did before publishing happens-before the future's return of the
//! response), the same wake rules (complete, abandon, and a triage past the request
//! each wake every waiter they settle). Blocking and async waiters can wait on one
//! session at once; each kind is woken only if it is there.
//!
//! # How an async waiter is woken
//!
//! A session holds one `event_listener::Event` (a single pointer; its list is
//! allocated on the first listen) and the state word has an async-waiters bit. A
//! waiter registers a listener, then sets the bit with a compare-and-swap that
//! succeeds only while its request is still pending, then waits on the listener. The
//! transitions that settle outcomes (`start`, `complete`, `abandon`) clear the bit in
//! the same read-modify-write that changes the state, and notify only if it was set.
//! So a publisher that nobody waits for tests a bit, and one that only async waiters
//! wait for makes no futex system call (and one that only blocking waiters wait for
//! notifies no event).
//!
//! No wake-up is lost: the waiter's compare-and-swap is a release that the
//! transition's swap acquires (every change of the word is a read-modify-write, so
//! the release sequence is never broken), hence the listener registered before the
//! mark is in the list the transition's notify walks. If the transition came first,
//! the compare-and-swap fails and the waiter looks at the outcome again.
//!
//! A pending wait first yields to its executor a few times (waking itself at once)
//! before it registers: in a hand-off the publisher is usually a few hundred
//! nanoseconds away, while a registration, its notification and the wake of an idle
//! worker thread cost microseconds. This is the async counterpart of the blocking
//! wait's short spin, and it is what makes the hand-off several times faster than the
//! seed on tokio's `Mutex` + `Notify`.
//!
//! The yields were measured against registering at once (`async_handoff/async` and
//! `must_park/async` of `benches/async.rs`, the two builds run alternately, AMD EPYC,
//! 2 vCPUs shared with other builds): without them the hand-off between two tokio
//! tasks took 1.07 and 1.27 µs against 0.42 and 0.47 µs with them, and a wait that must
//! register on a current-thread runtime 4.7 and 4.4 µs against 6.4 and 7.6 µs (3 yields
//! instead of 8 differed from 8 by less than the noise). A wait that must park pays
//! its yields once, about a microsecond; a hand-off that registers pays a notification
//! and the wake of an idle worker on every round. So the yields stay.
//!
//! # Why `event-listener`
//!
//! Measured with the `mechanism` group of `benches/async.rs` (one thread, Intel Xeon,
//! same run): notifying nobody costs 19.9 ns with `event-listener`'s `Event` and 20.4 ns
//! with tokio's `Notify` (each takes a fence and looks at its list), testing a bit of a
//! word 0.8 ns; one listen + notify + drop costs 84 ns and 69 ns. The costs are close,
//! so the choice rests on size and reach: the `Event` is one pointer whose list is
//! allocated only once someone listens, works on every executor and has a loom mode;
//! `Notify` is 32 bytes (the session would outgrow its 32) and comes with one runtime;
//! `atomic-waker` holds one waker only; a list of our own would have to re-prove what
//! `event-listener` already tests under loom. Either would cost a publisher tens of
//! nanoseconds on every transition, which is why the notification hides behind the
//! word's bit: publishers that nobody waits for never reach it.
//!
//! # Cancel safety
//!
//! Every future here is cancel-safe: dropping it at any await point unlinks its
//! listener, and the last async waiter to leave without being notified clears the
//! word's bit, so no later publisher pays for it. A waiter that leaves never takes a
//! wake-up from another: every notification wakes all listeners. Waiting again
//! after a drop starts from scratch and sees the same outcome.
//!
//! # Deadlines on any runtime
//!
//! [`SessionState::wait_async_with_timer`] races the wait against any future that
//! completes at the deadline (`tokio::time::sleep`, `async_io::Timer`, `smol::Timer`,
//! `futures_timer::Delay`, …): a settled outcome wins over a timer that fires at the
//! same time, and an expired timer yields [`WaitTimeoutError::TimedOut`]. With the
//! `tokio` feature, [`wait_async_until`](SessionState::wait_async_until) and
//! [`wait_async_timeout`](SessionState::wait_async_timeout) take a
//! `tokio::time::Instant` or a `Duration` and use tokio's timer and clock (a paused
//! clock drives them). They make their timer on the first poll that finds the request
//! pending, so creating one needs no runtime; a wait that has to wait must be polled
//! inside a tokio runtime with its time driver enabled.
//!
//! # tokio's cooperative budget
//!
//! With the `tokio` feature every poll of a wait takes a unit of the task's budget, as
//! tokio's own channels and locks do: a task that awaits settled outcomes in a loop
//! yields to its runtime once its budget is spent instead of starving the other tasks
//! of its worker. A poll that returns `Pending` gives its unit back. Outside a tokio
//! runtime the budget is unlimited; `tokio::task::coop::unconstrained` lifts it.
//!
//! # `futures::select!`
//!
//! With the `futures` feature the futures implement `futures_core::FusedFuture`: a
//! future that has returned its outcome says it is terminated, so `futures::select!`
//! takes them without `.fuse()`.

use crate::error::{WaitError, WaitTimeoutError};
use crate::request::RequestNr;
use crate::session::SessionState;
use crate::slot::{CountedSlot, Slot};
use crate::sync::{planted_bug, MODEL_CHECKED};
use crate::wait::Look;
use event_listener::EventListener;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The future of [`SessionState::wait_async`]: the outcome of one request.
///
/// Cancel-safe (see the [`SessionState::wait_async`] docs). `Send` when the session is
/// `Sync`, which it is for `T: Send + Sync`.
#[must_use = "futures do nothing unless polled"]
pub struct WaitFuture<'s, T, S: Slot<T> = CountedSlot<T>> {
    session: &'s SessionState<T, S>,
    registration: Registration,
}

/// The future of [`SessionState::wait_async_owned`]: as [`WaitFuture`], holding the
/// session by `Arc`, so it is `'static` when `T` is.
#[must_use = "futures do nothing unless polled"]
pub struct OwnedWaitFuture<T, S: Slot<T> = CountedSlot<T>> {
    session: Arc<SessionState<T, S>>,
    registration: Registration,
}

pin_project_lite::pin_project! {
    /// A wait raced against a timer: the future of the deadline forms
    /// ([`SessionState::wait_async_with_timer`], and with the `tokio` feature
    /// [`wait_async_until`](SessionState::wait_async_until) and
    /// [`wait_async_timeout`](SessionState::wait_async_timeout)).
    ///
    /// `W` is a [`WaitFuture`] or an [`OwnedWaitFuture`]; `D` is the timer, any future
    /// that completes at the deadline. A settled outcome wins over a timer that fires
    /// at the same time. Cancel-safe.
    #[must_use = "futures do nothing unless polled"]
    pub struct DeadlineFuture<W, D> {
        wait: W,
        #[pin]
        timer: D,
    }
}

/// One async wait's progress: its request and, once registered, its listener.
struct Registration {
    m: u64,
    listener: Option<EventListener>,
    /// Polls left that yield to the executor instead of registering.
    yields_left: u8,
    /// The outcome has been returned: the future is spent (`FusedFuture`).
    finished: bool,
}

/// How many times a pending wait yields to its executor (waking itself at once)
/// before it registers a listener. A hand-off's publisher is usually a few hundred
/// nanoseconds away; a registration, the notification and the cross-thread wake of an
/// idle worker cost microseconds. Under loom every yield is another branch to explore
/// and proves nothing.
const YIELDS_BEFORE_REGISTERING: u8 = if MODEL_CHECKED { 0 } else { 8 };

impl Registration {
    fn new(m: RequestNr) -> Self {
        Registration {
            m: m.get(),
            listener: None,
            yields_left: YIELDS_BEFORE_REGISTERING,
            finished: false,
        }
    }

    /// The outcome of the request once settled, counted against tokio's cooperative
    /// budget (feature `tokio`): a task whose budget is spent yields here, as it would
    /// in tokio's own primitives, even when the outcome is known already; outside a
    /// tokio runtime the budget is unlimited.
    fn poll<T, S: Slot<T>>(
        &mut self,
        session: &SessionState<T, S>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Arc<T>, WaitTimeoutError>> {
        #[cfg(feature = "tokio")]
        let budget = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let outcome = self.poll_unbudgeted(session, cx);
        // Only a poll that returns the outcome spends its unit: on `Pending` (the
        // yields before registering included) `budget` gives it back when dropped.
        if outcome.is_ready() {
            self.finished = true;
            #[cfg(feature = "tokio")]
            budget.made_progress();
        }
        outcome
    }

    /// The outcome of the request once settled; otherwise registers (or stays
    /// registered) to be woken by the transition that changes the word.
    fn poll_unbudgeted<T, S: Slot<T>>(
        &mut self,
        session: &SessionState<T, S>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Arc<T>, WaitTimeoutError>> {
        loop {
            // Never `settled_now`: it parks the thread at a closed door. A waiter at the
            // door registers like a pending one; the triage that closed it wakes it.
            if let Look::Settled(settled) = session.look_now(self.m) {
                // A listener still here was not notified yet: the transition that
                // settled the outcome cleared the bit and is about to notify it.
                self.listener = None;
                return Poll::Ready(settled.into_result());
            }
            if self.listener.is_none() && self.yields_left > 0 {
                self.yields_left -= 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let listener = self
                .listener
                .get_or_insert_with(|| session.async_waiters.listen());
            if !planted_bug!(AsyncSkipMark) && session.word.mark_async_waiters(self.m).is_err() {
                continue;
            }
            match Pin::new(listener).poll(cx) {
                // Woken by a transition: look at the outcome again.
                Poll::Ready(()) => self.listener = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The last look once the deadline has passed: a settled outcome still wins.
    fn outcome_at_deadline<T, S: Slot<T>>(
        &mut self,
        session: &SessionState<T, S>,
    ) -> Result<Arc<T>, WaitTimeoutError> {
        self.leave(session);
        self.finished = true;
        // Not `settled_now` (it may park at a closed door): a response behind a
        // closed door is about to be gone, and the deadline has passed.
        match session.look_now(self.m) {
            Look::Settled(settled) => settled.into_result(),
            _ => Err(WaitTimeoutError::TimedOut),
        }
    }

    fn leave<T, S: Slot<T>>(&mut self, session: &SessionState<T, S>) {
        if let Some(listener) = self.listener.take() {
            session.async_waiters.leave(listener, &session.word);
        }
    }
}

/// The wait futures a [`DeadlineFuture`] can race against a timer. Sealed.
pub trait DeadlineWait: sealed::Sealed {
    /// The response type.
    type Response;
}

mod sealed {
    use super::*;

    pub trait Sealed: Unpin {
        type Response;
        fn poll_outcome(
            &mut self,
            cx: &mut Context<'_>,
        ) -> Poll<Result<Arc<Self::Response>, WaitTimeoutError>>;
        fn outcome_at_deadline(&mut self) -> Result<Arc<Self::Response>, WaitTimeoutError>;
        fn is_finished(&self) -> bool;
    }

    impl<T, S: Slot<T>> Sealed for WaitFuture<'_, T, S> {
        type Response = T;
        fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Result<Arc<T>, WaitTimeoutError>> {
            self.registration.poll(self.session, cx)
        }
        fn outcome_at_deadline(&mut self) -> Result<Arc<T>, WaitTimeoutError> {
            self.registration.outcome_at_deadline(self.session)
        }
        fn is_finished(&self) -> bool {
            self.registration.finished
        }
    }

    impl<T, S: Slot<T>> Sealed for OwnedWaitFuture<T, S> {
        type Response = T;
        fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Result<Arc<T>, WaitTimeoutError>> {
            self.registration.poll(&self.session, cx)
        }
        fn outcome_at_deadline(&mut self) -> Result<Arc<T>, WaitTimeoutError> {
            self.registration.outcome_at_deadline(&self.session)
        }
        fn is_finished(&self) -> bool {
            self.registration.finished
        }
    }
}

impl<T, S: Slot<T>> DeadlineWait for WaitFuture<'_, T, S> {
    type Response = T;
}

impl<T, S: Slot<T>> DeadlineWait for OwnedWaitFuture<T, S> {
    type Response = T;
}

/// A wait without deadline cannot time out.
fn without_deadline<T>(outcome: Result<Arc<T>, WaitTimeoutError>) -> Result<Arc<T>, WaitError> {
    outcome.map_err(|e| match e {
        WaitTimeoutError::Abandoned => WaitError::Abandoned,
        WaitTimeoutError::Gone => WaitError::Gone,
        WaitTimeoutError::TimedOut => unreachable!("a wait without deadline timed out"),
    })
}

impl<T, S: Slot<T>> Future for WaitFuture<'_, T, S> {
    type Output = Result<Arc<T>, WaitError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.registration
            .poll(this.session, cx)
            .map(without_deadline)
    }
}

impl<T, S: Slot<T>> Future for OwnedWaitFuture<T, S> {
    type Output = Result<Arc<T>, WaitError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.registration
            .poll(&this.session, cx)
            .map(without_deadline)
    }
}

impl<W: DeadlineWait, D: Future> Future for DeadlineFuture<W, D> {
    type Output = Result<Arc<<W as sealed::Sealed>::Response>, WaitTimeoutError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(outcome) = this.wait.poll_outcome(cx) {
            return Poll::Ready(outcome);
        }
        match this.timer.poll(cx) {
            Poll::Ready(_) => Poll::Ready(this.wait.outcome_at_deadline()),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `futures::select!` takes these without `.fuse()` (feature `futures`): a future that
/// has returned its outcome says it is terminated.
#[cfg(feature = "futures")]
impl<T, S: Slot<T>> futures_core::FusedFuture for WaitFuture<'_, T, S> {
    fn is_terminated(&self) -> bool {
        self.registration.finished
    }
}

#[cfg(feature = "futures")]
impl<T, S: Slot<T>> futures_core::FusedFuture for OwnedWaitFuture<T, S> {
    fn is_terminated(&self) -> bool {
        self.registration.finished
    }
}

#[cfg(feature = "futures")]
impl<W: DeadlineWait, D: Future> futures_core::FusedFuture for DeadlineFuture<W, D> {
    fn is_terminated(&self) -> bool {
        sealed::Sealed::is_finished(&self.wait)
    }
}

impl<T, S: Slot<T>> Drop for WaitFuture<'_, T, S> {
    fn drop(&mut self) {
        self.registration.leave(self.session);
    }
}

impl<T, S: Slot<T>> Drop for OwnedWaitFuture<T, S> {
    fn drop(&mut self) {
        self.registration.leave(&self.session);
    }
}

/// # Async waits
///
/// These need the `async` feature. They work on any executor (tokio, smol,
/// `futures::executor`, …).
///
/// # Cancel safety
///
/// Every future returned here is cancel-safe: dropping it (in a `select!` branch that
/// lost, on a timeout, with its task) leaves nothing registered that costs a later
/// publisher, takes no wake-up from any other waiter, and loses nothing: waiting again
/// gives the same outcome.
impl<T, S: Slot<T>> SessionState<T, S> {
    /// Waits, without blocking the thread, for the outcome of request `m`: its
    /// response, `Abandoned`, or `Gone` once the session has moved past `m`, exactly as
    /// [`wait`](Self::wait). Waiting for a request that has not been triaged yet waits
    /// for it to be triaged and settled.
    ///
    /// This has no deadline: race it against a timer with
    /// [`wait_async_with_timer`](Self::wait_async_with_timer) unless the request's
    /// processor is known to be making progress.
    pub fn wait_async(&self, m: RequestNr) -> WaitFuture<'_, T, S> {
        WaitFuture {
            session: self,
            registration: Registration::new(m),
        }
    }

    /// As [`wait_async`](Self::wait_async), holding the session by `Arc`: the future
    /// is `'static` when `T` is, for tasks that must own what they wait on.
    pub fn wait_async_owned(self: &Arc<Self>, m: RequestNr) -> OwnedWaitFuture<T, S> {
        OwnedWaitFuture {
            session: Arc::clone(self),
            registration: Registration::new(m),
        }
    }

    /// As [`wait_async`](Self::wait_async), giving up with
    /// [`WaitTimeoutError::TimedOut`] once `timer` completes: pass any runtime's sleep
    /// (`tokio::time::sleep_until(deadline)`, `async_io::Timer::at(deadline)`, …). A
    /// settled outcome wins over a timer that fires at the same time.
    pub fn wait_async_with_timer<D: Future>(
        &self,
        m: RequestNr,
        timer: D,
    ) -> DeadlineFuture<WaitFuture<'_, T, S>, D> {
        DeadlineFuture {
            wait: self.wait_async(m),
            timer,
        }
    }

    /// As [`wait_async_with_timer`](Self::wait_async_with_timer), holding the session by
    /// `Arc`.
    pub fn wait_async_owned_with_timer<D: Future>(
        self: &Arc<Self>,
        m: RequestNr,
        timer: D,
    ) -> DeadlineFuture<OwnedWaitFuture<T, S>, D> {
        DeadlineFuture {
            wait: self.wait_async_owned(m),
            timer,
        }
    }
}

/// # Async waits with tokio's timer
///
/// These need the `tokio` feature. The deadline is on tokio's clock
/// ([`tokio::time::Instant`]), so a runtime whose clock is paused
/// (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`) drives it like any
/// `tokio::time::sleep`.
///
/// The futures make their timer on their first poll that finds the request pending,
/// not when they are created: creating one needs no runtime, and a wait whose outcome
/// is known already never touches the timer. A wait that has to wait must be polled
/// inside a tokio runtime with its time driver enabled.
#[cfg(feature = "tokio")]
impl<T, S: Slot<T>> SessionState<T, S> {
    /// As [`wait_async`](Self::wait_async), giving up at `deadline` (on tokio's
    /// clock; a `std::time::Instant` converts with `.into()`).
    ///
    /// # Panics
    ///
    /// Polling the future while the request is pending panics outside a tokio runtime,
    /// or inside one whose time driver is not enabled (as `tokio::time::sleep` does).
    pub fn wait_async_until(
        &self,
        m: RequestNr,
        deadline: tokio::time::Instant,
    ) -> DeadlineFuture<WaitFuture<'_, T, S>, TokioDeadline> {
        self.wait_async_with_timer(m, TokioDeadline::at(deadline))
    }

    /// As [`wait_async`](Self::wait_async), giving up `timeout` after this call (on
    /// tokio's clock).
    ///
    /// # Panics
    ///
    /// As [`wait_async_until`](Self::wait_async_until).
    pub fn wait_async_timeout(
        &self,
        m: RequestNr,
        timeout: std::time::Duration,
    ) -> DeadlineFuture<WaitFuture<'_, T, S>, TokioDeadline> {
        self.wait_async_with_timer(m, TokioDeadline::after(timeout))
    }

    /// As [`wait_async_until`](Self::wait_async_until), holding the session by `Arc`.
    ///
    /// # Panics
    ///
    /// As [`wait_async_until`](Self::wait_async_until).
    pub fn wait_async_owned_until(
        self: &Arc<Self>,
        m: RequestNr,
        deadline: tokio::time::Instant,
    ) -> DeadlineFuture<OwnedWaitFuture<T, S>, TokioDeadline> {
        self.wait_async_owned_with_timer(m, TokioDeadline::at(deadline))
    }

    /// As [`wait_async_timeout`](Self::wait_async_timeout), holding the session by `Arc`.
    ///
    /// # Panics
    ///
    /// As [`wait_async_until`](Self::wait_async_until).
    pub fn wait_async_owned_timeout(
        self: &Arc<Self>,
        m: RequestNr,
        timeout: std::time::Duration,
    ) -> DeadlineFuture<OwnedWaitFuture<T, S>, TokioDeadline> {
        self.wait_async_owned_with_timer(m, TokioDeadline::after(timeout))
    }
}

#[cfg(feature = "tokio")]
pin_project_lite::pin_project! {
    /// The timer of the tokio deadline forms
    /// ([`wait_async_until`](SessionState::wait_async_until) and friends): completes at
    /// its deadline on tokio's clock, and makes its `tokio::time::Sleep` on its first
    /// poll, so that creating it needs no runtime.
    ///
    /// # Panics
    ///
    /// Polling it panics outside a tokio runtime, or inside one whose time driver is
    /// not enabled.
    #[must_use = "futures do nothing unless polled"]
    pub struct TokioDeadline {
        // `None`: too far away to represent; it never comes.
        deadline: Option<tokio::time::Instant>,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
    }
}

#[cfg(feature = "tokio")]
impl TokioDeadline {
    fn at(deadline: tokio::time::Instant) -> Self {
        TokioDeadline {
            deadline: Some(deadline),
            sleep: None,
        }
    }

    /// `timeout` from now: as `tokio::time::sleep`, the clock is read when the wait
    /// is asked for, not when it is first polled.
    fn after(timeout: std::time::Duration) -> Self {
        TokioDeadline {
            deadline: tokio::time::Instant::now().checked_add(timeout),
            sleep: None,
        }
    }

    /// The deadline, `None` if it is too far away to represent (it never comes).
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.deadline
    }
}

#[cfg(feature = "tokio")]
impl Future for TokioDeadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(deadline) = *this.deadline else {
            // Never: the wait it races is registered to be woken on its own.
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => unreachable!("the sleep was made above"),
        }
    }
}

#[cfg(feature = "tokio")]
impl fmt::Debug for TokioDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioDeadline")
            .field("deadline", &self.deadline)
            .field("started", &self.sleep.is_some())
            .finish()
    }
}

impl<T, S: Slot<T>> fmt::Debug for WaitFuture<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.registration.describe(f, "WaitFuture")
    }
}

impl<T, S: Slot<T>> fmt::Debug for OwnedWaitFuture<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.registration.describe(f, "OwnedWaitFuture")
    }
}

impl<W: fmt::Debug, D> fmt::Debug for DeadlineFuture<W, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineFuture")
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Registration {
    fn describe(&self, f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
        f.debug_struct(name)
            .field("request", &self.m)
            .field("registered", &self.listener.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Triage;
    use futures_lite::future::{block_on, poll_once};

    type Session = SessionState<u32>;

    fn nr(n: u64) -> RequestNr {
        RequestNr::new(n).unwrap()
    }

    fn flagged(s: &Session) -> bool {
        s.word.load().has_async_waiters()
    }

    fn pending_wait(s: &Session, m: u64) -> WaitFuture<'_, u32, CountedSlot<u32>> {
        let mut wait = s.wait_async(nr(m));
        for _ in 0..=YIELDS_BEFORE_REGISTERING {
            assert!(block_on(poll_once(&mut wait)).is_none());
        }
        assert!(wait.registration.listener.is_some());
        wait
    }

    #[test]
    fn a_wait_at_a_closed_door_registers_without_blocking_and_the_start_wakes_it() {
        let s = Session::new();
        let Triage::Process(guard) = s.triage(nr(1)) else {
            panic!("first triage must process")
        };
        guard.publish(1);
        // A triage of request 2 lost its first race and closed the door to the readers
        // of request 1's response.
        assert!(s.word.close_door(2, &drop).is_ok());
        // Each poll returns at once (a thread parked here would hang this test).
        let wait = pending_wait(&s, 1);
        assert!(flagged(&s));
        let Triage::Process(_guard) = s.triage(nr(2)) else {
            panic!("the triage behind the door must process")
        };
        assert!(matches!(block_on(wait), Err(WaitError::Gone)));
    }

    #[test]
    fn nobody_waiting_leaves_the_bit_clear_and_the_event_unallocated() {
        let s = Session::new();
        let Triage::Process(guard) = s.triage(nr(1)) else {
            panic!("first triage must process")
        };
        guard.publish(1);
        assert!(!flagged(&s));
        assert_eq!(s.async_waiters.listeners(), 0);
    }

    #[test]
    fn a_pending_wait_sets_the_bit_and_the_settling_transition_clears_it() {
        let s = Session::new();
        let Triage::Process(guard) = s.triage(nr(1)) else {
            panic!("first triage must process")
        };
        let mut wait = pending_wait(&s, 1);
        assert!(flagged(&s));
        guard.publish(7);
        assert!(!flagged(&s));
        assert_eq!(block_on(poll_once(&mut wait)).unwrap().as_deref(), Ok(&7));
    }

    #[test]
    fn the_last_cancelled_waiter_clears_the_bit_and_earlier_ones_keep_it() {
        let s = Session::new();
        let Triage::Process(_guard) = s.triage(nr(1)) else {
            panic!("first triage must process")
        };
        let first = pending_wait(&s, 1);
        let second = pending_wait(&s, 1);
        drop(first);
        assert!(flagged(&s), "the second waiter still needs the bit");
        drop(second);
        assert!(
            !flagged(&s),
            "nobody listens: no publisher may pay for a notify"
        );
        assert_eq!(s.async_waiters.listeners(), 0);
    }

    #[test]
    fn a_waiter_for_a_later_request_is_woken_by_each_transition_and_marks_again() {
        let s = Session::new();
        let mut wait = pending_wait(&s, 2);
        let Triage::Process(guard) = s.triage(nr(1)) else {
            panic!("first triage must process")
        };
        assert!(!flagged(&s), "start cleared the bit and notified");
        assert!(block_on(poll_once(&mut wait)).is_none());
        assert!(flagged(&s), "still pending: registered and marked again");
        guard.publish(1);
        assert!(block_on(poll_once(&mut wait)).is_none());
        let Triage::Process(guard) = s.triage(nr(2)) else {
            panic!("2 follows 1")
        };
        guard.abandon();
        assert_eq!(
            block_on(poll_once(&mut wait)),
            Some(Err(WaitError::Abandoned))
        );
        assert!(!flagged(&s));
    }
}
