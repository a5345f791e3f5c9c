//! The server service: triage, one run of the inner service, answers from the store.

use super::error::Error;
use super::future::ResponseFuture;
use super::key::{Key, KeyExtractor, SessionId};
use super::store::{Store, StoreResponse};
use super::whole::{RequestError, TakeWhole};
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

/// How copies of a request wait for the copy that runs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waits {
    /// How long a copy waits (`None`: as long as the run takes).
    pub(crate) timeout: Option<Duration>,
    /// How many copies of one session's requests may wait at once.
    pub(crate) max_copies: u32,
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            timeout: None,
            max_copies: 16,
        }
    }
}

/// The service [`ExactlyOnceLayer`](super::ExactlyOnceLayer) makes around `S`.
pub struct ExactlyOnce<S, K, St: Store> {
    inner: S,
    key: K,
    store: St,
    sessions: SessionTable<St::Stored>,
    waits: Waits,
}

impl<S, K, St: Store> ExactlyOnce<S, K, St> {
    pub(crate) fn new(
        inner: S,
        key: K,
        store: St,
        sessions: SessionTable<St::Stored>,
        waits: Waits,
    ) -> Self {
        ExactlyOnce {
            inner,
            key,
            store,
            sessions,
            waits,
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
            self.waits,
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
    S: Service<St::Whole> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send + 'static,
    K: KeyExtractor<Req>,
    St: TakeWhole<Req> + StoreResponse<S::Response> + Clone + Send + Sync + 'static,
    St::Output: Send + 'static,
{
    type Response = St::Output;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<St::Output, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let started = match self.key.key(&request) {
            Err(e) => return ResponseFuture::ready(Err(Error::Key(e))),
            Ok(Key::Create) => return ResponseFuture::ready(self.create(&request)),
            Ok(Key::End { session }) => {
                self.sessions.end(session.get());
                return ResponseFuture::ready(Ok(self.store.session_ended_for(&request)));
            }
            Ok(Key::Call { session, request }) => Started::Call(session, request),
            Ok(Key::PassThrough) => Started::PassThrough,
        };
        // The ready service goes with this call; the clone waits for the next one.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let whole = self.store.take_whole(request, &self.sessions);
        let admission = Admission {
            store: self.store.clone(),
            sessions: self.sessions.clone(),
            waits: self.waits,
        };
        // Nothing is triaged until the request is whole: a caller that goes away
        // before, or a body that fails, leaves no trace, and the resend runs.
        ResponseFuture::reading(Box::pin(async move {
            let (whole, held) = whole.await.map_err(request_error)?;
            admission.start(started, held, inner, whole)
        }))
    }
}

impl<S, K, St: Store> ExactlyOnce<S, K, St> {
    /// Creates a session, detached at once: unused, it expires within the table's
    /// unused expiry.
    fn create<E, Req>(&self, request: &Req) -> Result<St::Output, Error<E>>
    where
        St: TakeWhole<Req>,
    {
        let created = self.sessions.create().map_err(table_error)?;
        let id = SessionId::new(created.id()).expect("the table never makes id 0");
        Ok(self.store.session_created_for(request, id))
    }
}

/// What a request whose body is being read will start.
enum Started {
    /// Request `m` of the session: run once or answered from the store.
    Call(SessionId, RequestNr),
    /// The inner service, unprotected ([`Key::PassThrough`]).
    PassThrough,
}

/// What starting a whole request needs of the layer.
struct Admission<St: Store> {
    store: St,
    sessions: SessionTable<St::Stored>,
    waits: Waits,
}

impl<St: Store + Send + Sync + 'static> Admission<St> {
    /// Reserves what reading the response needs (beside `held`, the bytes of the whole
    /// request) and attaches to the session: the run or the wait for `started`, not
    /// yet polled; or the refusal.
    fn start<S, Req, E>(
        self,
        started: Started,
        mut held: Reservation,
        inner: S,
        request: Req,
    ) -> Result<RunToEnd<St::Output, E>, Error<E>>
    where
        S: Service<Req, Error = E> + Send + 'static,
        S::Future: Send,
        S::Response: Send,
        E: Send + 'static,
        Req: Send + 'static,
        St: StoreResponse<S::Response>,
        St::Output: Send + 'static,
    {
        let (session, m) = match started {
            Started::Call(session, m) => (session, m),
            Started::PassThrough => {
                self.make_room(&mut held)?;
                return Ok(RunToEnd::new(pass_through(
                    self.store, held, inner, request,
                )));
            }
        };
        // Attached first: the room made below never evicts this session.
        let session = self.sessions.attach(session.get()).map_err(table_error)?;
        // Numbers only grow: a copy of a number the session has reached already (a
        // resend, or a stale one) will produce nothing, and needs no room for a response.
        if session.state().status().request < m.get() {
            self.make_room(&mut held)?;
        }
        let run = Run {
            reserved: Some(held),
            session,
            m,
            store: self.store,
            waits: self.waits,
        };
        Ok(RunToEnd::new(run.once(inner, request)))
    }
}

impl<St: Store> Admission<St> {
    /// Adds room for reading a response to `held`, evicting sessions without a
    /// connection that retain a response (longest detached first) until it fits:
    /// over budget only when none is left.
    fn make_room<E>(&self, held: &mut Reservation) -> Result<(), Error<E>> {
        match self
            .sessions
            .admit(held, self.store.in_flight_bytes(), |_| true)
        {
            true => Ok(()),
            false => Err(Error::OverBudget),
        }
    }
}

/// A request let through without a key: run as it is, its answer not kept.
pub(crate) async fn pass_through<St, S, Req>(
    store: St,
    _reserved: Reservation,
    mut inner: S,
    request: Req,
) -> Result<St::Output, Error<S::Error>>
where
    S: Service<Req>,
    St: StoreResponse<S::Response>,
{
    let response = inner.call(request).await.map_err(Error::Inner)?;
    let (_, answer) = store.store(response).await.map_err(Error::Store)?;
    Ok(answer)
}

pub(crate) fn request_error<E>(e: RequestError) -> Error<E> {
    match e {
        RequestError::TooLarge { limit } => Error::RequestTooLarge { limit },
        RequestError::OverBudget => Error::OverBudget,
        RequestError::Incomplete(e) => Error::IncompleteBody(e),
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
    /// The budget's bytes for the whole request and for reading the response, given
    /// back when the run ends, or as soon as this copy turns out not to run.
    reserved: Option<Reservation>,
    session: Attached<St::Stored>,
    m: RequestNr,
    store: St,
    waits: Waits,
}

impl<St: Store + Send + 'static> Run<St> {
    /// Triages request `m` and runs it, or waits for the copy that runs it; the answer.
    async fn once<S, Req>(
        mut self,
        mut inner: S,
        request: Req,
    ) -> Result<St::Output, Error<S::Error>>
    where
        S: Service<Req>,
        St: StoreResponse<S::Response>,
    {
        let guard = match first_step(self.session.state().triage(self.m)) {
            Step::Process(guard) => guard,
            Step::AwaitResend => {
                // Waiting holds neither the request nor its share of the budget.
                drop((request, self.reserved.take()));
                let Some(_place) = self.session.try_wait(self.waits.max_copies) else {
                    return Err(Error::ResendTimedOut);
                };
                return match self.settled().await {
                    Some(settled) => self.replay(after_wait(settled)),
                    None => Err(Error::ResendTimedOut),
                };
            }
            Step::Reply(reply) => return self.replay(reply),
        };
        let skipped = guard.skipped();
        let mut response = match inner.call(request).await {
            Ok(response) => response,
            Err(e) => {
                guard.abandon();
                return Err(Error::Inner(e));
            }
        };
        if skipped > 0 {
            self.store.mark_skipped(&mut response, skipped);
        }
        match self.store.store(response).await {
            Ok((stored, first)) => {
                // Counted in the budget before it is published (as the transport does):
                // what the session retains is never held uncounted.
                let stored: Arc<St::Stored> = stored.into();
                self.session.retain(&stored);
                guard.publish(stored);
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
    /// awaited (woken by the transition that settles it), not polled. `None` once this
    /// copy's caller has gone away: nobody wants the answer, so the wait stops and the
    /// session is detached (the copy that runs the request still stores its response).
    async fn settled(&self) -> Option<Result<Arc<St::Stored>, WaitTimeoutError>> {
        let state = self.session.state();
        match self.waits.timeout {
            None => {
                let wait = state.wait_async(self.m);
                Some(until_orphaned(wait).await?.map_err(WaitTimeoutError::from))
            }
            Some(timeout) => until_orphaned(state.wait_async_timeout(self.m, timeout)).await,
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
    pub(crate) fn new(run: impl Future<Output = Answer<O, E>> + Send + 'static) -> Self {
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

tokio::task_local! {
    /// Set in the task that finishes a run whose caller went away.
    static ORPHANED: ();
}

/// `wait`'s outcome, or `None` as soon as it is polled in the task of a run whose caller
/// went away ([`RunToEnd`]'s drop): a copy that only waits has nobody to answer then.
pub(crate) async fn until_orphaned<F: Future>(wait: F) -> Option<F::Output> {
    let mut wait = std::pin::pin!(wait);
    std::future::poll_fn(|cx| {
        if ORPHANED.try_with(|_| ()).is_ok() {
            return Poll::Ready(None);
        }
        wait.as_mut().poll(cx).map(Some)
    })
    .await
}

impl<O: Send + 'static, E: Send + 'static> Drop for RunToEnd<O, E> {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            // Outside a runtime the run is dropped, which abandons its request.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                // A run goes on to its end; a copy that only waits stops at its next
                // poll (`until_orphaned`) and lets its session go.
                runtime.spawn(ORPHANED.scope((), async move {
                    // The outcome is in the session; nobody here wants it.
                    drop(run.await);
                }));
            }
        }
    }
}

/// The reply for a request that is not run here, as the layer's answer.
pub(crate) fn refused<T, E>(reply: Reply<T>) -> Result<Arc<T>, Error<E>> {
    match reply {
        Reply::Send(response) => Ok(response),
        Reply::Nothing(Silence::Stale) => Err(Error::Stale),
        Reply::Nothing(Silence::Gone) => Err(Error::Gone),
        Reply::Close(Refusal::Busy { current }) => Err(Error::Busy { current }),
        Reply::Close(Refusal::Abandoned) => Err(Error::Abandoned),
        Reply::Close(Refusal::ResendTimedOut) => Err(Error::ResendTimedOut),
    }
}
