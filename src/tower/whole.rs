//! Taking a request whole before it is triaged: a run starts only on a complete request.
//!
//! HTTP bodies arrive after their headers, and may never arrive whole (a connection cut
//! mid-body, an HTTP/2 stream reset). Were the request triaged on its headers, the inner
//! service would see the broken body, its rejection would be stored as the request's one
//! run, and every resend, however whole, would get that rejection. So the layer reads
//! the whole body first (charging the budget as its bytes arrive) and triages only then:
//! a body that fails before it is whole triages nothing, stores nothing and abandons
//! nothing, and the resend runs.

use super::body::{read_charged, ReadError};
use super::grpc;
use super::key::SessionId;
use super::store::{BoxError, CloneStore, HttpStore, Store, StoredResponse};
use crate::table::{Reservation, SessionTable};
use bytes::Bytes;
use http::Request;
use http_body::Body;
use std::fmt;
use std::future::Future;

/// A [`Store`] that can take a request `Req` whole, as the inner service gets it.
pub trait TakeWhole<Req>: Store {
    /// The request as the inner service gets it.
    type Whole: Send + 'static;

    /// `request`, whole, and the bytes of the budget of `sessions` it holds (given back
    /// when the run ends; room is made with [`SessionTable::admit`]). Nothing is
    /// triaged before this is done: an error here leaves no trace. The future borrows
    /// nothing: it is polled after the call that made it.
    fn take_whole(
        &self,
        request: Req,
        sessions: &SessionTable<Self::Stored>,
    ) -> impl Future<Output = Result<(Self::Whole, Reservation), RequestError>> + Send + 'static;

    /// The answer to `request`, which created session `id`: by default
    /// [`session_created`](Store::session_created), whatever the request.
    fn session_created_for(&self, request: &Req, id: SessionId) -> Self::Output {
        let _ = request;
        self.session_created(id)
    }

    /// The answer to `request`, which ended a session: by default
    /// [`session_ended`](Store::session_ended), whatever the request.
    fn session_ended_for(&self, request: &Req) -> Self::Output {
        let _ = request;
        self.session_ended()
    }
}

/// Why a request could not be taken whole; it was not triaged nor run.
#[derive(Debug)]
pub enum RequestError {
    /// The body is over the limit, as announced or as counted.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The budget cannot take the body's bytes as they arrive.
    OverBudget,
    /// The body failed, or ended short of its announced length, before it was whole.
    Incomplete(BoxError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooLarge { limit } => {
                write!(f, "the request body is over the {limit}-byte limit")
            }
            RequestError::OverBudget => f.write_str("the budget cannot take the request body"),
            RequestError::Incomplete(e) => write!(f, "the request body is incomplete: {e}"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Requests that are not HTTP are whole as they come.
impl<R: Clone + Send + Sync + 'static, Req: Send + 'static> TakeWhole<Req> for CloneStore<R> {
    type Whole = Req;

    fn take_whole(
        &self,
        request: Req,
        sessions: &SessionTable<R>,
    ) -> impl Future<Output = Result<(Req, Reservation), RequestError>> + Send + 'static {
        std::future::ready(Ok((request, sessions.budget().reserve_anyway(0))))
    }
}

/// An HTTP request is whole once its body has arrived in full, within the store's
/// [request limit](HttpStore::with_request_limit); the inner service gets it with the
/// body buffered (its trailers too), in the store's body type `A`.
impl<B, A> TakeWhole<Request<B>> for HttpStore<A>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    A: Send + 'static,
{
    type Whole = Request<A>;

    fn take_whole(
        &self,
        request: Request<B>,
        sessions: &SessionTable<StoredResponse>,
    ) -> impl Future<Output = Result<(Request<A>, Reservation), RequestError>> + Send + 'static
    {
        let store = *self;
        let whole = read_whole(request, self.request_limit(), sessions);
        async move {
            let (parts, (body, trailers), held) = whole.await?;
            Ok((Request::from_parts(parts, store.body(body, trailers)), held))
        }
    }

    /// A gRPC call gets a valid empty gRPC response (see [`grpc`](super::grpc)); any
    /// other request [`session_created`](Store::session_created).
    fn session_created_for(&self, request: &Request<B>, id: SessionId) -> Self::Output {
        if grpc::is_grpc(request.headers()) {
            return grpc::session_created(self.make(), id.to_header_value());
        }
        self.session_created(id)
    }

    /// A gRPC call gets a valid empty gRPC response (see [`grpc`](super::grpc)); any
    /// other request [`session_ended`](Store::session_ended).
    fn session_ended_for(&self, request: &Request<B>) -> Self::Output {
        if grpc::is_grpc(request.headers()) {
            return grpc::session_ended(self.make());
        }
        self.session_ended()
    }
}

/// The body length a request announces, if it announces one that can be read.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    let value = headers.get(http::header::CONTENT_LENGTH)?;
    value.to_str().ok()?.parse().ok()
}

/// A whole body: its bytes and its trailers, if it had any.
pub(crate) type Whole = (Bytes, Option<Box<http::HeaderMap>>);

/// The head of `request` and its whole body (at most `limit` bytes, checked against its
/// `content-length`), charged to the budget of `sessions` as its bytes arrive (room is
/// made by evicting sessions without a connection that retain a response), with the
/// bytes it holds. The future borrows nothing.
pub(crate) fn read_whole<B, T: Send + Sync + 'static>(
    request: Request<B>,
    limit: usize,
    sessions: &SessionTable<T>,
) -> impl Future<Output = Result<(http::request::Parts, Whole, Reservation), RequestError>>
       + Send
       + 'static
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let announced = content_length(&parts.headers);
    // Charged as the bytes arrive, never at the announced length: a body that trickles
    // in holds no more of the budget than has come.
    let sessions = sessions.clone();
    let mut held = sessions.budget().reserve_anyway(0);
    async move {
        if announced.is_some_and(|n| n > limit as u64) {
            return Err(RequestError::TooLarge { limit });
        }
        let grow = |n| sessions.admit(&mut held, n, |_| true);
        let (body, trailers) = match read_charged(body, limit, grow).await {
            Ok(whole) => whole.into_boxed_parts(),
            Err(ReadError::TooLarge) => return Err(RequestError::TooLarge { limit }),
            Err(ReadError::Refused) => return Err(RequestError::OverBudget),
            Err(ReadError::Body(e)) => return Err(RequestError::Incomplete(e)),
        };
        // hyper checks the length itself; this also holds for a body that just ends.
        if let Some(n) = announced.filter(|&n| n != body.len() as u64) {
            let e = format!("{} of the announced {n} bytes arrived", body.len());
            return Err(RequestError::Incomplete(e.into()));
        }
        Ok((parts, (body, trailers), held))
    }
}
