//! The server service: triage, one run of the inner service, answers from the store.

use super::error::Error;
use super::future::ResponseFuture;
use super::key::{Key, KeyError, KeyExtractor};
use super::sessions::{Session, Sessions};
use super::store::{Store, StoreResponse};
use crate::{RequestNr, Triage, WaitError};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The service [`ExactlyOnceLayer`](super::ExactlyOnceLayer) makes around `S`.
pub struct ExactlyOnce<S, K, St: Store> {
    inner: S,
    key: K,
    store: St,
    sessions: Arc<Sessions<St::Stored>>,
}

impl<S, K, St: Store> ExactlyOnce<S, K, St> {
    pub(crate) fn new(inner: S, key: K, store: St, sessions: Arc<Sessions<St::Stored>>) -> Self {
        ExactlyOnce {
            inner,
            key,
            store,
            sessions,
        }
    }
}

impl<S: Clone, K: Clone, St: Store + Clone> Clone for ExactlyOnce<S, K, St> {
    fn clone(&self) -> Self {
        ExactlyOnce::new(
            self.inner.clone(),
            self.key.clone(),
            self.store.clone(),
            Arc::clone(&self.sessions),
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
        // The ready service goes with this call; the clone waits for the next one.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let call = Call {
            key: self.key.key(&request),
            store: self.store.clone(),
            sessions: Arc::clone(&self.sessions),
        };
        ResponseFuture::new(call.answer(inner, request))
    }
}

/// One request's way through the layer.
struct Call<St: Store> {
    key: Result<Key, KeyError>,
    store: St,
    sessions: Arc<Sessions<St::Stored>>,
}

impl<St: Store + Clone + Send + Sync + 'static> Call<St> {
    async fn answer<S, Req>(self, inner: S, request: Req) -> Result<St::Output, Error<S::Error>>
    where
        Req: Send + 'static,
        S: Service<Req> + Send + 'static,
        S::Future: Send,
        S::Response: Send,
        S::Error: Send + 'static,
        St: StoreResponse<S::Response>,
    {
        let (session, m) = match self.key.map_err(Error::Key)? {
            Key::Create => {
                let id = self.sessions.create().ok_or(Error::TableFull)?;
                return Ok(self.store.session_created(id));
            }
            Key::End { session } => {
                self.sessions.end(session);
                return Ok(self.store.session_ended());
            }
            Key::Call { session, request } => (session, request),
        };
        let session = self.sessions.get(session).ok_or(Error::UnknownSession)?;
        session.touch();
        // The run goes on in a task of its own, so that a caller that goes away (its
        // connection cut) does not abandon it: the client's resend gets its response.
        // A panic in the inner service ends that task, and its guard abandons `m`.
        let run = tokio::spawn(run_once(session, m, inner, request, self.store.clone()));
        let stored = match run.await {
            Ok(outcome) => outcome?,
            Err(_panicked_or_shut_down) => return Err(Error::Abandoned),
        };
        Ok(self.store.replay(&stored))
    }
}

/// Triages request `m` and runs it, or waits for the copy that runs it.
async fn run_once<S, Req, St>(
    session: Arc<Session<St::Stored>>,
    m: RequestNr,
    mut inner: S,
    request: Req,
    store: St,
) -> Result<Arc<St::Stored>, Error<S::Error>>
where
    S: Service<Req>,
    St: StoreResponse<S::Response>,
{
    let guard = match session.state.triage(m) {
        Triage::Process(guard) => guard,
        Triage::Resend => return settled(&session, m).await,
        Triage::Stale => return Err(Error::Stale),
        Triage::Busy { current } => return Err(Error::Busy { current }),
    };
    let response = match inner.call(request).await {
        Ok(response) => response,
        Err(e) => {
            guard.abandon();
            return Err(Error::Inner(e));
        }
    };
    match store.store(response).await {
        Ok(stored) => Ok(guard.complete(stored)),
        Err(e) => {
            guard.abandon();
            Err(Error::Store(e))
        }
    }
}

/// The outcome of `m`, which another copy of the request is running or has run.
async fn settled<T: Send + Sync + 'static, E>(
    session: &Arc<Session<T>>,
    m: RequestNr,
) -> Result<Arc<T>, Error<E>> {
    let session = Arc::clone(session);
    let outcome = tokio::task::spawn_blocking(move || session.state.wait(m)).await;
    match outcome {
        Ok(Ok(stored)) => Ok(stored),
        Ok(Err(WaitError::Gone)) => Err(Error::Gone),
        Ok(Err(WaitError::Abandoned)) | Err(_) => Err(Error::Abandoned),
    }
}
