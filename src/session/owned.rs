//! The owned triage: [`SessionState::triage_owned`] and its [`OwnedProcessGuard`], which
//! holds the session by `Arc` so that it can move into a spawned task or thread.

use super::{ProcessGuard, SessionState, Triage};
use crate::request::RequestNr;
use crate::slot::{CountedSlot, Slot};
use std::fmt;
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::Arc;

/// What a handler must do with the request it has just read: [`Triage`], with an owned
/// guard. The result of [`SessionState::triage_owned`].
#[must_use = "a triage result says whether to process, resend or drop the request"]
pub enum OwnedTriage<T, S: Slot<T> = CountedSlot<T>> {
    /// This handler, and no other ever, processes the request: publish its response
    /// through the guard (dropping the guard abandons the request).
    Process(OwnedProcessGuard<T, S>),
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

/// [`ProcessGuard`] holding its session by `Arc`: `Send + 'static` (for `T: Send +
/// Sync`), so it can move into `tokio::spawn` or `std::thread::spawn`, as tokio's
/// `lock_owned` and `acquire_owned` guards do. The same rule holds: it settles its
/// request once, with [`complete`](Self::complete), [`publish`](Self::publish) or
/// [`abandon`](Self::abandon), and dropping it, also by a panic unwinding through the
/// handler, abandons the request and wakes every waiter.
///
/// # Cancellation
///
/// A task that holds the guard and is dropped (aborted, a `select!` branch that lost,
/// a timeout around it, a runtime shutting down) drops the guard, which abandons the
/// request: every waiter gets `Abandoned` and the request is never processed again,
/// even if the work it stood for was half done. To run a request to its end whatever
/// happens to the task that read it, spawn the run with its guard and let the reader
/// wait for the outcome:
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// use exactly_once::{OwnedTriage, RequestNr, SessionState};
/// use std::sync::Arc;
///
/// async fn work(m: RequestNr) -> String {
///     format!("response to {m}")
/// }
///
/// let session: Arc<SessionState<String>> = Arc::default();
/// let m = RequestNr::new(1).unwrap();
/// tokio::runtime::Runtime::new().unwrap().block_on(async {
///     if let OwnedTriage::Process(guard) = session.triage_owned(m) {
///         // The run owns its guard: cancelling the reader no longer abandons it.
///         tokio::spawn(async move {
///             let response = work(guard.request()).await;
///             guard.complete(response)
///         });
///     }
///     // This reader, and any copy of the request on another connection, waits.
///     let response = session.wait_async(m).await.unwrap();
///     assert_eq!(response.as_str(), "response to 1");
/// });
/// # }
/// ```
#[must_use = "dropping the guard abandons the request"]
pub struct OwnedProcessGuard<T, S: Slot<T> = CountedSlot<T>> {
    session: Arc<SessionState<T, S>>,
    request: RequestNr,
    previous: u64,
}

impl<T, S: Slot<T>> SessionState<T, S> {
    /// As [`triage`](Self::triage), with a guard that holds the session by `Arc`
    /// ([`OwnedProcessGuard`]), so that the request can be processed in a task or
    /// thread of its own.
    #[inline]
    pub fn triage_owned(self: &Arc<Self>, m: RequestNr) -> OwnedTriage<T, S> {
        match self.triage(m) {
            Triage::Process(guard) => {
                // Not dropped: the owned guard takes its duty over.
                let guard = ManuallyDrop::new(guard);
                OwnedTriage::Process(OwnedProcessGuard {
                    session: Arc::clone(self),
                    request: guard.request,
                    previous: guard.previous,
                })
            }
            Triage::Resend => OwnedTriage::Resend,
            Triage::Stale => OwnedTriage::Stale,
            Triage::Busy { current } => OwnedTriage::Busy { current },
        }
    }
}

impl<T, S: Slot<T>> OwnedProcessGuard<T, S> {
    /// The request this guard settles.
    pub fn request(&self) -> RequestNr {
        self.request
    }

    /// The newest request before this one; `request() - 1` unless the client skipped.
    pub fn previous(&self) -> u64 {
        self.previous
    }

    /// How many request numbers the client skipped to send this one (0 normally).
    pub fn skipped(&self) -> u64 {
        self.request.get() - self.previous - 1
    }

    /// The session this guard's request belongs to.
    pub fn session(&self) -> &Arc<SessionState<T, S>> {
        &self.session
    }

    /// Publishes the response, wakes every waiter, and returns the response so that
    /// this handler can send it without reading it back. A panic in the conversion
    /// abandons the request.
    pub fn complete(self, response: impl Into<Arc<T>>) -> Arc<T> {
        let response = response.into();
        self.publish(Arc::clone(&response));
        response
    }

    /// As [`complete`](Self::complete), without handing the response back.
    pub fn publish(self, response: impl Into<Arc<T>>) {
        let response = response.into();
        let (session, request, previous) = self.into_parts();
        // A panic in the publish abandons through the borrowed guard, then drops
        // `session`.
        let guard = ProcessGuard {
            session: &session,
            request,
            previous,
        };
        guard.publish(response);
    }

    /// Gives the request up: it gets no response and is never processed again; every
    /// waiter wakes with `Abandoned`. Dropping the guard does the same.
    pub fn abandon(self) {
        drop(self);
    }

    /// Takes the guard apart without abandoning: the caller takes its duty over.
    fn into_parts(self) -> (Arc<SessionState<T, S>>, RequestNr, u64) {
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped nor used again, so the `Arc` moves out once.
        let session = unsafe { ptr::read(&this.session) };
        (session, this.request, this.previous)
    }
}

impl<T, S: Slot<T>> Drop for OwnedProcessGuard<T, S> {
    fn drop(&mut self) {
        self.session.abandon(self.request.get());
    }
}

impl<T, S: Slot<T>> fmt::Debug for OwnedProcessGuard<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedProcessGuard")
            .field("request", &self.request)
            .field("previous", &self.previous)
            .finish()
    }
}

impl<T, S: Slot<T>> fmt::Debug for OwnedTriage<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnedTriage::Process(guard) => f.debug_tuple("Process").field(guard).finish(),
            OwnedTriage::Resend => f.write_str("Resend"),
            OwnedTriage::Stale => f.write_str("Stale"),
            OwnedTriage::Busy { current } => {
                f.debug_struct("Busy").field("current", current).finish()
            }
        }
    }
}
