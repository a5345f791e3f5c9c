//! How a response is kept for resends and answered again: [`Store`], with
//! [`CloneStore`] for responses that are `Clone` and [`HttpStore`] for HTTP.

use super::body::{read_limited, ReadError};
use super::key::{SessionId, ERROR_NAME, SESSION_NAME};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::Full;
use std::fmt;
use std::future::Future;

/// Errors a body may fail with, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How responses are kept for resends and answered from.
pub trait Store {
    /// What the session keeps until the client sends its next request.
    type Stored: Send + Sync + 'static;
    /// What the layer answers.
    type Output;
    /// The answer to every resend of a request: the same as the first answer.
    fn replay(&self, stored: &Self::Stored) -> Self::Output;
    /// The answer to a request that created session `id`.
    fn session_created(&self, id: SessionId) -> Self::Output;
    /// The answer to a request that ended a session.
    fn session_ended(&self) -> Self::Output;
    /// The bytes a stored response holds, for the table's memory budget.
    fn weigh(&self, stored: &Self::Stored) -> usize;
    /// The most bytes reading one response may hold: reserved from the budget before a
    /// request is triaged, so that a request the budget cannot take is refused before
    /// it runs (and may be sent again), never abandoned.
    fn in_flight_bytes(&self) -> usize;
}

/// A [`Store`] that can keep the inner service's response `R`.
pub trait StoreResponse<R>: Store {
    /// Reads the response in full (e.g. buffers its body): what the session keeps for
    /// resends, and the answer to the copy that ran the request (which
    /// [`replay`](Store::replay) of the kept response must equal).
    fn store(
        &self,
        response: R,
    ) -> impl Future<Output = Result<(Self::Stored, Self::Output), StoreError>> + Send;
}

/// Why a response could not be stored; its request is abandoned.
#[derive(Debug)]
pub enum StoreError {
    /// The body is longer than the store's limit.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Reading the body failed.
    Body(BoxError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::TooLarge { limit } => write!(f, "the body is over the {limit}-byte limit"),
            StoreError::Body(e) => write!(f, "reading the body failed: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Keeps a `Clone` response as it is; session creation and ending are answered with
/// values made by the two functions it is given.
#[derive(Clone, Copy)]
pub struct CloneStore<R> {
    created: fn(SessionId) -> R,
    ended: fn() -> R,
}

impl<R> CloneStore<R> {
    /// A store answering session creation with `created(id)` and ending with `ended()`.
    pub fn new(created: fn(SessionId) -> R, ended: fn() -> R) -> Self {
        CloneStore { created, ended }
    }
}

impl<R> fmt::Debug for CloneStore<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CloneStore")
    }
}

impl<R: Clone + Send + Sync + 'static> StoreResponse<R> for CloneStore<R> {
    fn store(&self, response: R) -> impl Future<Output = Result<(R, R), StoreError>> + Send {
        std::future::ready(Ok((response.clone(), response)))
    }
}

impl<R: Clone + Send + Sync + 'static> Store for CloneStore<R> {
    type Stored = R;
    type Output = R;

    fn replay(&self, stored: &R) -> R {
        stored.clone()
    }

    fn session_created(&self, id: SessionId) -> R {
        (self.created)(id)
    }

    fn session_ended(&self) -> R {
        (self.ended)()
    }

    fn weigh(&self, _: &R) -> usize {
        std::mem::size_of::<R>()
    }

    fn in_flight_bytes(&self) -> usize {
        std::mem::size_of::<R>()
    }
}

/// An HTTP response as kept for resends: status, version, headers and the whole body.
/// Extensions are not kept (they are not `Clone`).
#[derive(Clone, Debug)]
pub struct StoredResponse {
    /// The status.
    pub status: StatusCode,
    /// The HTTP version.
    pub version: Version,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, buffered.
    pub body: Bytes,
}

/// Keeps HTTP responses, their bodies buffered up to a limit. A response whose body is
/// longer abandons its request, and the caller gets [`StoreError::TooLarge`].
#[derive(Clone, Copy, Debug)]
pub struct HttpStore {
    body_limit: usize,
}

impl HttpStore {
    /// A store for bodies of at most `body_limit` bytes.
    pub fn new(body_limit: usize) -> Self {
        HttpStore { body_limit }
    }
}

impl<B> StoreResponse<Response<B>> for HttpStore
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn store(
        &self,
        response: Response<B>,
    ) -> impl Future<Output = Result<(StoredResponse, Response<Full<Bytes>>), StoreError>> + Send
    {
        let limit = self.body_limit;
        let (mut parts, body) = response.into_parts();
        async move {
            let body = match read_limited(body, limit).await {
                Ok(body) => body,
                Err(ReadError::TooLarge) => return Err(StoreError::TooLarge { limit }),
                Err(ReadError::Body(e)) => return Err(StoreError::Body(e)),
            };
            // The first answer is the response itself (the one copy of its headers is
            // the kept one), less its extensions, as a resend gets it.
            parts.extensions.clear();
            let stored = StoredResponse {
                status: parts.status,
                version: parts.version,
                headers: parts.headers.clone(),
                body: body.clone(),
            };
            Ok((stored, Response::from_parts(parts, Full::new(body))))
        }
    }
}

impl Store for HttpStore {
    type Stored = StoredResponse;
    type Output = Response<Full<Bytes>>;

    fn replay(&self, stored: &StoredResponse) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(stored.body.clone()));
        *response.status_mut() = stored.status;
        *response.version_mut() = stored.version;
        *response.headers_mut() = stored.headers.clone();
        response
    }

    fn session_created(&self, id: SessionId) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::CREATED;
        let value = HeaderValue::from_str(&id.to_string()).expect("hex digits are a header value");
        response.headers_mut().insert(SESSION_NAME, value);
        response
    }

    fn session_ended(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::NO_CONTENT;
        response
            .headers_mut()
            .insert(ERROR_NAME, HeaderValue::from_static("session-ended"));
        response
    }

    fn weigh(&self, stored: &StoredResponse) -> usize {
        let headers: usize = stored
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        stored.body.len() + headers
    }

    fn in_flight_bytes(&self) -> usize {
        self.body_limit
    }
}
