//! The HTTP layer on the store: the core's protocol (its headers, whole requests,
//! problem+json refusals, stored responses) with sessions in PostgreSQL.

use crate::local::{Local, Verdict};
use crate::run::Run;
use crate::store::{Claimed, CommitError, PgStore};
use bytes::Bytes;
use exactly_once::tower::{
    key_from_headers, BoxError, Error, HttpStore, Key, KeyError, SessionId, Store, StoreResponse,
    StoredResponse, WholeBody, ERROR_HEADER, PROBLEM_TYPES,
};
use exactly_once::{OwnedProcessGuard, OwnedTriage, RequestNr, WaitError};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Puts a service behind the PostgreSQL store: each numbered request of a session runs
/// at most once on any replica and commits with its completion record, and every
/// resend, on any replica, is answered from that record. See the [crate docs](crate).
///
/// Needs a tokio runtime: each run goes on in a task of its own, so that a caller that
/// goes away (a cut connection) does not cut its run short.
#[derive(Clone, Debug)]
pub struct DurableLayer {
    store: PgStore,
}

impl DurableLayer {
    /// The layer on `store` (one store per process; every layer instance of the
    /// process should share it, so that copies meet in memory first).
    pub fn new(store: PgStore) -> DurableLayer {
        DurableLayer { store }
    }
}

impl<S> Layer<S> for DurableLayer {
    type Service = Durable<S>;

    fn layer(&self, inner: S) -> Durable<S> {
        Durable {
            inner,
            http: HttpStore::new(self.store.config().response_limit),
            store: self.store.clone(),
        }
    }
}

/// The service [`DurableLayer`] makes.
#[derive(Clone, Debug)]
pub struct Durable<S> {
    inner: S,
    store: PgStore,
    http: HttpStore,
}

/// The future of a [`Durable`] call.
pub type DurableFuture =
    Pin<Box<dyn Future<Output = Result<Response<WholeBody>, Infallible>> + Send>>;

impl<S, B, R> Service<Request<B>> for Durable<S>
where
    S: Service<Request<WholeBody>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: fmt::Display + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    R: Body + Send + 'static,
    R::Data: Send,
    R::Error: Into<BoxError>,
{
    type Response = Response<WholeBody>;
    type Error = Infallible;
    type Future = DurableFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner service is made ready in the call, on its own clone, only for a run.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> DurableFuture {
        let call = Call {
            inner: self.inner.clone(),
            store: self.store.clone(),
            http: self.http,
        };
        Box::pin(async move { Ok(call.serve(request).await) })
    }
}

/// One call's share of the service.
struct Call<S> {
    inner: S,
    store: PgStore,
    http: HttpStore,
}

impl<S, R> Call<S>
where
    S: Service<Request<WholeBody>, Response = Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: fmt::Display + Send + 'static,
    R: Body + Send + 'static,
    R::Data: Send,
    R::Error: Into<BoxError>,
{
    async fn serve<B>(self, request: Request<B>) -> Response<WholeBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let key = match key_from_headers(request.headers()) {
            Ok(key) => key,
            Err(e) => return refuse(Error::Key(e)),
        };
        match key {
            Key::Create => match self.store.create_session().await {
                Ok(id) => self.http.session_created(id),
                Err(e) => refusal(Refusal::StoreUnavailable, &e.public_detail()),
            },
            Key::End { session } if request.method() == Method::DELETE => {
                match self.store.end_session(session).await {
                    Ok(true) => self.http.session_ended(),
                    Ok(false) => refuse(Error::UnknownSession),
                    Err(e) => refusal(Refusal::StoreUnavailable, &e.public_detail()),
                }
            }
            Key::End { .. } => refuse(Error::Key(KeyError::EndNeedsDelete)),
            Key::Call {
                session,
                request: number,
            } => {
                let (parts, body) = request.into_parts();
                let limit = self.store.config().request_limit;
                match Limited::new(body, limit).collect().await {
                    Ok(whole) => {
                        let trailers = whole.trailers().cloned();
                        let request =
                            Request::from_parts(parts, WholeBody::new(whole.to_bytes(), trailers));
                        self.numbered(session, number, request).await
                    }
                    Err(e) if e.is::<LengthLimitError>() => {
                        refuse(Error::RequestTooLarge { limit })
                    }
                    Err(e) => refuse(Error::IncompleteBody(e)),
                }
            }
            // `key_from_headers` lets nothing through unkeyed.
            Key::PassThrough => refuse(Error::Key(KeyError::MissingSession)),
        }
    }

    /// A whole, numbered request: triaged in this process first, then in the database.
    async fn numbered(
        self,
        session: SessionId,
        number: RequestNr,
        request: Request<WholeBody>,
    ) -> Response<WholeBody> {
        let local = self.store.local().get(session.get());
        match local.triage_owned(number) {
            OwnedTriage::Process(guard) => {
                let settle = Settle {
                    store: self.store.clone(),
                    session,
                    local,
                    guard: Some(guard),
                };
                // The run goes on if the caller goes away (hyper drops the future of a
                // cut connection): its outcome is what the resend finds.
                match tokio::spawn(self.run(settle, request)).await {
                    Ok(answer) => answer,
                    Err(_) => refusal(Refusal::RolledBack, &"the handler panicked"),
                }
            }
            OwnedTriage::Resend => {
                self.store.answered_locally();
                match local.wait_async_owned(number).await {
                    Ok(verdict) => self.answer(&verdict),
                    Err(WaitError::Abandoned) => refusal(
                        Refusal::OutcomeUnknown,
                        &"the copy that ran it did not commit, or its commit was not acknowledged",
                    ),
                    Err(WaitError::Gone) => refuse(Error::Gone),
                }
            }
            OwnedTriage::Stale => {
                self.store.answered_locally();
                refuse(Error::Stale)
            }
            OwnedTriage::Busy { current } => {
                self.store.answered_locally();
                refuse(Error::Busy { current })
            }
        }
    }

    fn answer(&self, verdict: &Verdict) -> Response<WholeBody> {
        match verdict {
            Verdict::Response(stored) => self.http.replay(stored),
            Verdict::Stale => refuse(Error::Stale),
            Verdict::Unknown => refuse(Error::UnknownSession),
        }
    }

    /// The copy that runs: the claim, the handler in the run's transaction, the
    /// completion record and COMMIT.
    async fn run(mut self, settle: Settle, mut request: Request<WholeBody>) -> Response<WholeBody> {
        let claimed = self.store.claim(settle.session, settle.number()).await;
        let run = match claimed {
            Ok(Claimed::Run(run)) => run,
            Ok(Claimed::Replay(stored)) => {
                let answer = self.http.replay(&stored);
                settle.complete_with(stored);
                return answer;
            }
            Ok(Claimed::Stale) => {
                settle.complete(Verdict::Stale);
                return refuse(Error::Stale);
            }
            Ok(Claimed::Unknown) => {
                self.store
                    .local()
                    .forget(settle.session.get(), &settle.local);
                settle.complete(Verdict::Unknown);
                return refuse(Error::UnknownSession);
            }
            Err(e) => return settle.fail(refusal(Refusal::StoreUnavailable, &e.public_detail())),
        };
        request.extensions_mut().insert(run.transaction());
        request.extensions_mut().insert(run.key());
        let mut response = match self.call_inner(request).await {
            Ok(response) => response,
            Err(e) => {
                run.rollback().await;
                return settle.fail(refusal(Refusal::RolledBack, &e));
            }
        };
        if response.status().is_server_error() {
            // The handler's own failure: its writes are rolled back and its answer is
            // passed on, not kept; a resend runs again.
            run.rollback().await;
            let answer = match self.http.store(response).await {
                Ok((_, answer)) => answer,
                Err(e) => refusal(Refusal::RolledBack, &e),
            };
            return settle.fail(answer);
        }
        if run.skipped() > 0 {
            StoreResponse::<Response<R>>::mark_skipped(&self.http, &mut response, run.skipped());
        }
        match self.http.store(response).await {
            Ok((stored, answer)) => self.commit(run, settle, stored, answer).await,
            Err(e) => {
                run.rollback().await;
                settle.fail(refusal(Refusal::RolledBack, &e))
            }
        }
    }

    async fn commit(
        self,
        run: Run,
        settle: Settle,
        stored: StoredResponse,
        answer: Response<WholeBody>,
    ) -> Response<WholeBody> {
        match run.commit(&stored).await {
            Ok(()) => {
                settle.complete_with(stored);
                answer
            }
            Err(CommitError::RolledBack(e)) => {
                settle.fail(refusal(Refusal::StoreUnavailable, &e.public_detail()))
            }
            Err(CommitError::Unknown(e)) => {
                settle.fail(refusal(Refusal::OutcomeUnknown, &e.public_detail()))
            }
        }
    }

    async fn call_inner(&mut self, request: Request<WholeBody>) -> Result<Response<R>, S::Error> {
        std::future::poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        self.inner.call(request).await
    }
}

/// The duty of the copy that runs to settle its number in this process: with a
/// verdict for the copies waiting here, or by failing, which forgets the session's
/// local state (so that the next copy asks the database, and runs the number again if
/// nothing committed) and wakes the waiters with `Abandoned` (they answer
/// `outcome-unknown`). Dropped unsettled (a panic), it fails.
struct Settle {
    store: PgStore,
    session: SessionId,
    local: Local,
    guard: Option<OwnedProcessGuard<Verdict>>,
}

impl Settle {
    fn number(&self) -> RequestNr {
        self.guard.as_ref().expect("unsettled").request()
    }

    fn complete(mut self, verdict: Verdict) {
        if let Some(guard) = self.guard.take() {
            guard.complete(verdict);
        }
    }

    /// Completes with a response. A response over
    /// [`StoreConfig::local_response_limit`](crate::StoreConfig::local_response_limit)
    /// is handed to the copies waiting now, and the session is forgotten here, so that
    /// the process does not keep it until the session's next number: a later resend
    /// reads it from the database.
    fn complete_with(self, stored: StoredResponse) {
        let size = stored.body.len()
            + stored
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len())
                .sum::<usize>();
        let keep = size <= self.store.config().local_response_limit;
        let (store, session, local) = (self.store.clone(), self.session, Arc::clone(&self.local));
        self.complete(Verdict::Response(stored));
        if !keep {
            store.local().forget(session.get(), &local);
        }
    }

    fn fail(self, answer: Response<WholeBody>) -> Response<WholeBody> {
        drop(self);
        answer
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            // Forgotten before the waiters wake: a copy that comes in after them finds
            // no abandoned state here and goes to the database.
            self.store.local().forget(self.session.get(), &self.local);
            guard.abandon();
        }
    }
}

/// The store's own refusals, beside the core's [`Error`]s; each is answered 503 or
/// 500 with `Retry-After: 1`, since the request may be sent again and run.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// The database could not be reached, or the run's transaction failed before its
    /// COMMIT: nothing of the request stays.
    StoreUnavailable,
    /// The COMMIT was sent and its answer lost: the request may have committed. The
    /// resend finds out (a replay, or a run).
    OutcomeUnknown,
    /// The handler failed (an error, a panic, a response that cannot be kept): its
    /// writes were rolled back.
    RolledBack,
}

impl Refusal {
    fn code(self) -> &'static str {
        match self {
            Refusal::StoreUnavailable => "store-unavailable",
            Refusal::OutcomeUnknown => "outcome-unknown",
            Refusal::RolledBack => "rolled-back",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Refusal::StoreUnavailable => "Session store unavailable",
            Refusal::OutcomeUnknown => "Outcome unknown",
            Refusal::RolledBack => "Run rolled back",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Refusal::StoreUnavailable | Refusal::OutcomeUnknown => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::RolledBack => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A problem+json answer for `refusal`, in the core's form.
fn refusal(refusal: Refusal, detail: &dyn fmt::Display) -> Response<WholeBody> {
    let detail = serde_json_escape(&detail.to_string());
    let json = format!(
        "{{\"type\":\"{PROBLEM_TYPES}{}\",\"title\":\"{}\",\"status\":{},\"detail\":\"{detail}\"}}",
        refusal.code(),
        refusal.title(),
        refusal.status().as_str(),
    );
    let mut response = Response::new(WholeBody::from(Bytes::from(json)));
    *response.status_mut() = refusal.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(ERROR_HEADER, HeaderValue::from_static(refusal.code()));
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `text` as the inside of a JSON string.
fn serde_json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The core's answer to one of its errors.
fn refuse(error: Error<Infallible>) -> Response<WholeBody> {
    error.to_response_with()
}
