//! The per-request path of the `Idempotency-Key` mode: the key, the whole request,
//! its record, then one run or the answer of the run that was.

use super::key::{
    parse_idempotency_key, IdempotencyKeyError, IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER,
};
use super::records::{Claim, IdempotencyRecords, Record, RECORD_BYTES};
use super::request::{Fingerprint, RecordKey};
use super::{Config, IdempotencyError, InFlight};
use crate::answer::{after_wait, first_step, Step};
use crate::table::{Reservation, SessionTable};
use crate::tower::error::Error;
use crate::tower::future::ResponseFuture;
use crate::tower::service::{
    pass_through, refused, request_error, until_orphaned, Answer, RunToEnd,
};
use crate::tower::store::{HttpStore, Store, StoreResponse, StoredResponse};
use crate::tower::whole::{read_whole, TakeWhole};
use crate::{Phase, RequestNr, WaitTimeoutError};
use http::{HeaderName, HeaderValue, Request, Response};
use http_body::Body;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The one request of a record's session.
const ONE: RequestNr = match RequestNr::new(1) {
    Ok(one) => one,
    Err(_) => panic!("1 is a request number"),
};

const KEY_NAME: HeaderName = HeaderName::from_static(IDEMPOTENCY_KEY_HEADER);
const REPLAYED_NAME: HeaderName = HeaderName::from_static(REPLAYED_HEADER);

/// The service [`IdempotencyLayer`](super::IdempotencyLayer) makes around `S` (inside
/// [`HttpErrors`](crate::tower::HttpErrors), which answers its [`Error`]s).
pub struct Idempotent<S, A: Send + 'static> {
    inner: S,
    pub(super) config: Arc<Config>,
    pub(super) store: HttpStore<A>,
    pub(super) records: IdempotencyRecords,
    pub(super) sessions: SessionTable<StoredResponse>,
}

impl<S, A: Send + 'static> Idempotent<S, A> {
    pub(super) fn new(inner: S, layer: &super::IdempotencyLayer<A>) -> Self {
        Idempotent {
            inner,
            config: Arc::clone(&layer.config),
            store: layer.store,
            records: layer.records.clone(),
            sessions: layer.sessions.clone(),
        }
    }
}

impl<S: Clone, A: Send + 'static> Clone for Idempotent<S, A> {
    fn clone(&self) -> Self {
        Idempotent {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            store: self.store,
            records: self.records.clone(),
            sessions: self.sessions.clone(),
        }
    }
}

impl<S, A: Send + 'static> fmt::Debug for Idempotent<S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotent")
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl<S, B, A, R> Service<Request<B>> for Idempotent<S, A>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<crate::tower::BoxError>,
    A: Send + 'static,
    S: Service<Request<A>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    R: Body + Send + 'static,
    R::Data: Send,
    R::Error: Into<crate::tower::BoxError>,
{
    type Response = Response<A>;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<Response<A>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let key = match self.key_of(request.headers()) {
            Ok(key) => key,
            Err(e) => {
                let refusal = IdempotencyError::Key(e).to_response_with(self.store.make());
                return ResponseFuture::ready(Ok(refusal));
            }
        };
        // The ready service goes with this call; the clone waits for the next one.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let Some(key) = key else {
            let whole = self.store.take_whole(request, &self.sessions);
            let store = self.store;
            let (sessions, in_flight) = (self.sessions.clone(), self.store.in_flight_bytes());
            return ResponseFuture::reading(Box::pin(async move {
                let (whole, mut held) = whole.await.map_err(request_error)?;
                if !sessions.admit(&mut held, in_flight, |_| true) {
                    return Err(Error::OverBudget);
                }
                Ok(RunToEnd::new(pass_through(store, held, inner, whole)))
            }));
        };
        let whole = read_whole(request, self.store.request_limit(), &self.sessions);
        let start = Start {
            config: Arc::clone(&self.config),
            store: self.store,
            records: self.records.clone(),
            sessions: self.sessions.clone(),
        };
        // Nothing is looked up until the request is whole: its fingerprint needs the
        // body, and a body that fails leaves no record, so the resend runs.
        ResponseFuture::reading(Box::pin(async move {
            let (parts, (body, trailers), held) = whole.await.map_err(request_error)?;
            let record_key = RecordKey::new(&start.config.scope, &parts, &key);
            let fingerprint = Fingerprint::new(&parts, &body, &start.config.fingerprinted);
            let request = Request::from_parts(parts, start.store.body(body, trailers));
            start.claim(record_key, fingerprint, held, inner, request)
        }))
    }
}

impl<S, A: Send + 'static> Idempotent<S, A> {
    /// The request's key: `None` if it has none and none is required.
    fn key_of(&self, headers: &http::HeaderMap) -> Result<Option<Vec<u8>>, IdempotencyKeyError> {
        let mut values = headers.get_all(KEY_NAME).iter();
        let Some(value) = values.next() else {
            return match self.config.required {
                true => Err(IdempotencyKeyError::Missing),
                false => Ok(None),
            };
        };
        if values.next().is_some() {
            return Err(IdempotencyKeyError::Duplicate);
        }
        let key = parse_idempotency_key(value.as_bytes(), self.config.max_key_len)?;
        Ok(Some(key.into_owned()))
    }
}

/// The run or the wait a whole request starts, or the refusal.
type Started<A, E> = Result<RunToEnd<Response<A>, E>, Error<E>>;

/// What starting a whole request needs of the layer.
struct Start<A: Send + 'static> {
    config: Arc<Config>,
    store: HttpStore<A>,
    records: IdempotencyRecords,
    sessions: SessionTable<StoredResponse>,
}

impl<A: Send + 'static> Start<A> {
    /// The key's record, found or made (room made for a new one first: a key that
    /// cannot be kept is refused before anything runs), and the run or the wait.
    fn claim<S, R>(
        self,
        key: RecordKey,
        fingerprint: Fingerprint,
        mut held: Reservation,
        inner: S,
        request: Request<A>,
    ) -> Started<A, S::Error>
    where
        S: Service<Request<A>, Response = Response<R>> + Send + 'static,
        S::Future: Send,
        S::Error: Send + 'static,
        R: Body + Send + 'static,
        R::Data: Send,
        R::Error: Into<crate::tower::BoxError>,
    {
        let key = self.records.hashed(key);
        let claim = match self.records.existing(&key, &fingerprint) {
            Some(claim) => claim,
            None => {
                let room = self.store.in_flight_bytes() + RECORD_BYTES + key.len();
                if !self.sessions.admit(&mut held, room, |_| true) {
                    return Err(Error::OverBudget);
                }
                self.records.claim(key, fingerprint)
            }
        };
        let record = match claim {
            Claim::Record(record) => record,
            Claim::Mismatch => return Ok(self.refuse(IdempotencyError::KeyReused)),
            Claim::Full => return Err(Error::TableFull),
        };
        let run = Run {
            record,
            reserved: Some(held),
            start: self,
        };
        Ok(RunToEnd::new(run.once(inner, request)))
    }

    /// `refusal`, as an answer that runs nothing.
    fn refuse<E: Send + 'static>(&self, refusal: IdempotencyError) -> RunToEnd<Response<A>, E> {
        let answer = refusal.to_response_with(self.store.make());
        RunToEnd::new(std::future::ready(Ok(answer)))
    }
}

/// A request and its key's record.
struct Run<A: Send + 'static> {
    record: Arc<Record>,
    /// The budget's bytes for the whole request and for reading the response, given
    /// back when the run ends, or as soon as this copy turns out not to run.
    reserved: Option<Reservation>,
    start: Start<A>,
}

impl<A: Send + 'static> Run<A> {
    /// Runs the request if no copy has, or answers what the copy that ran it answered.
    async fn once<S, R>(
        mut self,
        mut inner: S,
        request: Request<A>,
    ) -> Answer<Response<A>, S::Error>
    where
        S: Service<Request<A>, Response = Response<R>>,
        R: Body + Send + 'static,
        R::Data: Send,
        R::Error: Into<crate::tower::BoxError>,
    {
        let record = Arc::clone(&self.record);
        let guard = match first_step(record.state().triage(ONE)) {
            Step::Process(guard) => guard,
            Step::AwaitResend => {
                // Waiting holds neither the request nor its share of the budget.
                drop((request, self.reserved.take()));
                return self.await_run().await;
            }
            Step::Reply(reply) => return self.replay(refused(reply)),
        };
        let store = self.start.store;
        let answer = match inner.call(request).await {
            Ok(response) => match store.store(response).await {
                Ok((stored, first)) => {
                    // Counted before it is published: what a record retains is never
                    // held uncounted.
                    self.record.retain(store.weigh(&stored));
                    guard.publish(stored);
                    Ok(first)
                }
                Err(e) => {
                    guard.abandon();
                    Err(Error::Store(e))
                }
            },
            Err(e) => {
                guard.abandon();
                Err(Error::Inner(e))
            }
        };
        self.start.records.settled(&self.record);
        answer
    }

    /// The answer of the copy that runs the request, awaited (woken when it settles);
    /// the draft's 409 instead where the layer is so configured.
    async fn await_run<E>(&self) -> Answer<Response<A>, E> {
        // A run that has ended triages as a resend too; its answer is there already.
        let running = self.record.state().status().phase == Phase::Processing;
        if running && self.start.config.in_flight == InFlight::Conflict {
            let conflict = IdempotencyError::InFlight.to_response_with(self.start.store.make());
            return Ok(conflict);
        }
        let Some(_place) = self.record.try_wait(self.start.config.max_waiting) else {
            return Err(Error::ResendTimedOut);
        };
        match until_orphaned(self.record.state().wait_async(ONE)).await {
            Some(waited) => {
                self.replay(refused(after_wait(waited.map_err(WaitTimeoutError::from))))
            }
            None => Err(Error::ResendTimedOut),
        }
    }

    /// The stored answer, marked as a replay.
    fn replay<E>(&self, stored: Result<Arc<StoredResponse>, Error<E>>) -> Answer<Response<A>, E> {
        let mut answer = self.start.store.replay(&*stored?);
        let replayed = HeaderValue::from_static("true");
        answer.headers_mut().insert(REPLAYED_NAME, replayed);
        Ok(answer)
    }
}
