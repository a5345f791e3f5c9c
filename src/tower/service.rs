//! The server service: triage, one run of the inner service, answers from the store.

use super::error::Error;
use super::future::ResponseFuture;
use super::key::{Key, KeyError, KeyExtractor, SessionId};
use super::store::{Store, StoreResponse};
use crate::answer::{after_wait, first_step, Refusal, Reply, Silence, Step};
use crate::table::{Attached, Reservation, SessionTable, TableError};
use crate::{RequestNr, WaitTimeoutError};
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// The service [`ExactlyOnceLayer`](super::ExactlyOnceLayer) makes around `S`.
pub struct ExactlyOnce<S, K, St: Store> {
    inner: S,
    key: K,
    store: St,
    sessions: SessionTable<St::Stored>,
    resend_timeout: Option<Duration>,
}

impl<S, K, St: Store> ExactlyOnce<S, K, St> {
    pub(crate) fn new(
        inner: S,
        key: K,
        store: St,
        sessions: SessionTable<St::Stored>,
        resend_timeout: Option<Duration>,
    ) -> Self {
        ExactlyOnce {
            inner,
            key,
            store,
            sessions,
            resend_timeout,
        }
    }
}

impl<S: Clone, K: Clone, St: Store + Clone> Clone for ExactlyOnce<S, K, St> {
    fn clone(&self) -> Self {
        ExactlyOnce::new(
            self.inner.clone(),
            self.key.clone(),
            self.store.clone(),
            self.sessions.clone(),
            self.resend_timeout,
        )
    }
}

impl<S, K, St: Store> fmt::Debug for ExactlyOnce<S, K, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExactlyOnce").finish_non_exhaustive()
    }
}

impl<S, K, St, Req> Service<Req> for ExactlyOnce<S, K, St>
where
    Req: Send + 'static,
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send + 'static,
    K: KeyExtractor<Req>,
    St: StoreResponse<S::Response> + Clone + Send + Sync + 'static,
    St::Output: Send + 'static,
{
    type Response = St::Output;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<St::Output, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let run = match self.admit(self.key.key(&request)) {
            Admitted::Run(run) => run,
            Admitted::Answer(answer) => return ResponseFuture::ready(answer),
        };
        // The ready service goes with this call; the clone waits for the next one.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        ResponseFuture::running(RunToEnd::new(run.once(inner, request)))
    }
}

/// What the layer does with a request, decided before anything is awaited.
enum Admitted<St: Store, E> {
    /// Answered at once: a session created or ended, or a refusal.
    Answer(Result<St::Output, Error<E>>),
    /// Triaged and then run, or answered from the store.
    Run(Run<St>),
}

impl<S, K, St: Store + Clone> ExactlyOnce<S, K, St> {
    /// Creates or ends the session, or reserves what a run needs and attaches to its
    /// session.
    fn admit<E>(&self, key: Result<Key, KeyError>) -> Admitted<St, E> {
        let (session, m) = match key {
            Err(e) => return Admitted::Answer(Err(Error::Key(e))),
            Ok(Key::Create) => {
                // Detached at once: unused, it expires within the table's unused expiry.
                let created = self.sessions.create().map_err(table_error).map(|created| {
                    let id = SessionId::new(created.id()).expect("the table never makes id 0");
                    self.store.session_created(id)
                });
                return Admitted::Answer(created);
            }
            Ok(Key::End { session }) => {
                self.sessions.end(session.get());
                return Admitted::Answer(Ok(self.store.session_ended()));
            }
            Ok(Key::Call { session, request }) => (session, request),
        };
        let budget = self.sessions.budget();
        let Some(reserved) = budget.try_reserve(self.store.in_flight_bytes()) else {
            return Admitted::Answer(Err(Error::OverBudget));
        };
        match self.sessions.attach(session.get()) {
            Err(e) => Admitted::Answer(Err(table_error(e))),
            Ok(session) => Admitted::Run(Run {
                _reserved: reserved,
                session,
                m,
                store: self.store.clone(),
                resend_timeout: self.resend_timeout,
            }),
        }
    }
}

fn table_error<E>(e: TableError) -> Error<E> {
    match e {
        TableError::Unknown => Error::UnknownSession,
        TableError::Full => Error::TableFull,
    }
}

/// Request `m` of an attached session: it stays attached (never expired or evicted)
/// until the run or the wait is over.
struct Run<St: Store> {
    /// The budget's bytes for reading the response, given back when the run ends.
    _reserved: Reservation,
    session: Attached<St::Stored>,
    m: RequestNr,
    store: St,
    resend_timeout: Option<Duration>,
}

impl<St: Store + Send + 'static> Run<St> {
    /// Triages request `m` and runs it, or waits for the copy that runs it; the answer.
    async fn once<S, Req>(self, mut inner: S, request: Req) -> Result<St::Output, Error<S::Error>>
    where
        S: Service<Req>,
        St: StoreResponse<S::Response>,
    {
        let guard = match first_step(self.session.state().triage(self.m)) {
            Step::Process(guard) => guard,
            Step::AwaitResend => return self.replay(after_wait(self.settled().await)),
            Step::Reply(reply) => return self.replay(reply),
        };
        let response = match inner.call(request).await {
            Ok(response) => response,
            Err(e) => {
                guard.abandon();
                return Err(Error::Inner(e));
            }
        };
        match self.store.store(response).await {
            Ok((stored, first)) => {
                let stored = guard.complete(stored);
                self.session.retain(&stored);
                Ok(first)
            }
            Err(e) => {
                guard.abandon();
                Err(Error::Store(e))
            }
        }
    }

    /// The answer to a copy that did not run the request.
    fn replay<E>(&self, reply: Reply<St::Stored>) -> Result<St::Output, Error<E>> {
        refused(reply).map(|stored| self.store.replay(&stored))
    }

    /// The outcome of `m`, which another copy of the request is running or has run:
    /// awaited (woken by the transition that settles it), not polled.
    async fn settled(&self) -> Result<Arc<St::Stored>, WaitTimeoutError> {
        let state = self.session.state();
        match self.resend_timeout {
            None => state
                .wait_async(self.m)
                .await
                .map_err(WaitTimeoutError::from),
            Some(timeout) => state.wait_async_timeout(self.m, timeout).await,
        }
    }
}

/// The answer to one request, or the error that replaces it.
pub(crate) type Answer<O, E> = Result<O, Error<E>>;

/// A run polled in its caller's task that, if the caller goes away first (its
/// connection cut), finishes in a task of its own: the client's resend then gets its
/// response, and a request is never abandoned for a lost connection. A panic in the
/// run is caught here; dropping the run abandons its request. The run is boxed (one
/// allocation per run): only a boxed future can move to a task of its own.
pub(crate) struct RunToEnd<O: Send + 'static, E: Send + 'static> {
    run: Option<BoxedRun<O, E>>,
}

type BoxedRun<O, E> = Pin<Box<dyn Future<Output = Answer<O, E>> + Send>>;

impl<O: Send + 'static, E: Send + 'static> RunToEnd<O, E> {
    fn new(run: impl Future<Output = Answer<O, E>> + Send + 'static) -> Self {
        RunToEnd {
            run: Some(Box::pin(run)),
        }
    }
}

impl<O: Send + 'static, E: Send + 'static> Future for RunToEnd<O, E> {
    type Output = Answer<O, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let run = self.run.as_mut().expect("polled after completion");
        // The run is dropped at once after a panic, never polled again: what it broke
        // is not looked at.
        let polled = panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(answer)) => {
                self.run = None;
                Poll::Ready(answer)
            }
            Err(_panicked) => {
                self.run = None;
                Poll::Ready(Err(Error::Abandoned))
            }
        }
    }
}

impl<O: Send + 'static, E: Send + 'static> Drop for RunToEnd<O, E> {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            // Outside a runtime the run is dropped, which abandons its request.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    // The outcome is in the session; nobody here wants it.
                    drop(run.await);
                });
            }
        }
    }
}

/// The reply for a request that is not run here, as the layer's answer.
fn refused<T, E>(reply: Reply<T>) -> Result<Arc<T>, Error<E>> {
    match reply {
        Reply::Send(response) => Ok(response),
        Reply::Nothing(Silence::Stale) => Err(Error::Stale),
        Reply::Nothing(Silence::Gone) => Err(Error::Gone),
        Reply::Close(Refusal::Busy { current }) => Err(Error::Busy { current }),
        Reply::Close(Refusal::Abandoned) => Err(Error::Abandoned),
        Reply::Close(Refusal::ResendTimedOut) => Err(Error::ResendTimedOut),
    }
}
