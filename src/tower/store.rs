//! How a response is kept for resends and answered again: [`Store`], with
//! [`CloneStore`] for responses that are `Clone` and [`HttpStore`] for HTTP.

use super::body::{read_limited, ReadError, WholeBody};
use super::headers::StoredHeaders;
use super::key::{SessionId, ERROR_NAME, SESSION_NAME, SKIPPED_NAME};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};
use http_body::Body;
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

    /// Marks the response to a call that skipped `skipped` numbers (the numbers between
    /// the session's last request and this one, which run no more), before it is
    /// stored: the gap runs, as in MUSCLE3, and the mark makes it seen, by the first
    /// answer and every resend alike. By default nothing is marked.
    fn mark_skipped(&self, response: &mut R, skipped: u64) {
        let _ = (response, skipped);
    }
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

/// An HTTP response as kept for resends: status, version, headers, the whole body and
/// its trailers. Extensions are not kept (they are not `Clone`).
#[derive(Clone, Debug)]
pub struct StoredResponse {
    /// The status.
    pub status: StatusCode,
    /// The HTTP version.
    pub version: Version,
    /// The headers.
    pub headers: StoredHeaders,
    /// The body, buffered.
    pub body: Bytes,
    /// The body's trailers, if it had any (gRPC's status is in them); boxed, so that a
    /// response without them (most) is kept in fewer bytes.
    pub trailers: Option<Box<HeaderMap>>,
}

/// Keeps HTTP responses, their bodies (and trailers) buffered up to a limit, and answers
/// with bodies of type `A`: [`WholeBody`], which sends the trailers too, unless
/// [`answering`](Self::answering) says otherwise. A response whose body is longer
/// abandons its request, and the caller gets [`StoreError::TooLarge`].
///
/// It also takes requests whole before they are triaged
/// ([`TakeWhole`](super::TakeWhole)): their bodies are read in full, up to the request
/// limit, and handed to the inner service in bodies of type `A`.
pub struct HttpStore<A = WholeBody> {
    body_limit: usize,
    request_limit: usize,
    make: fn(WholeBody) -> A,
}

impl HttpStore {
    /// A store for response bodies, and request bodies, of at most `body_limit` bytes.
    pub fn new(body_limit: usize) -> Self {
        HttpStore {
            body_limit,
            request_limit: body_limit,
            make: std::convert::identity,
        }
    }
}

impl<A> HttpStore<A> {
    /// The same store answering with bodies of type `C` made by `make` from the
    /// [`WholeBody`] it would answer with, and handing requests on in them: axum's
    /// `Body::new`, to wrap a whole `Router`. A `make` that keeps only the bytes drops
    /// the trailers, which gRPC's status travels in.
    pub fn answering<C>(self, make: fn(WholeBody) -> C) -> HttpStore<C> {
        HttpStore {
            body_limit: self.body_limit,
            request_limit: self.request_limit,
            make,
        }
    }

    /// How its answers' bodies are made.
    pub(crate) fn make(&self) -> fn(WholeBody) -> A {
        self.make
    }

    /// A body of type `A` of `data` then `trailers`.
    pub(crate) fn body(&self, data: Bytes, trailers: Option<Box<HeaderMap>>) -> A {
        (self.make)(WholeBody::from_boxed(data, trailers))
    }

    /// The same store taking request bodies of at most `limit` bytes; a longer one is
    /// refused before it is triaged ([`Error::RequestTooLarge`](super::Error::RequestTooLarge), 413).
    pub fn with_request_limit(mut self, limit: usize) -> Self {
        self.request_limit = limit;
        self
    }

    /// The most bytes of a request body it takes.
    pub fn request_limit(&self) -> usize {
        self.request_limit
    }
}

impl<A> Clone for HttpStore<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for HttpStore<A> {}

impl<A> fmt::Debug for HttpStore<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStore")
            .field("body_limit", &self.body_limit)
            .field("request_limit", &self.request_limit)
            .finish()
    }
}

impl<B, A> StoreResponse<Response<B>> for HttpStore<A>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    A: Send + 'static,
{
    fn store(
        &self,
        response: Response<B>,
    ) -> impl Future<Output = Result<(StoredResponse, Response<A>), StoreError>> + Send {
        let limit = self.body_limit;
        let make = self.make;
        let (mut parts, body) = response.into_parts();
        async move {
            let (body, trailers) = match read_limited(body, limit).await {
                Ok(whole) => whole.into_boxed_parts(),
                Err(ReadError::TooLarge | ReadError::Refused) => {
                    return Err(StoreError::TooLarge { limit })
                }
                Err(ReadError::Body(e)) => return Err(StoreError::Body(e)),
            };
            // The first answer is the response itself (the one copy of its headers is
            // the kept one), less its extensions, as a resend gets it.
            parts.extensions.clear();
            let stored = StoredResponse {
                status: parts.status,
                version: parts.version,
                headers: StoredHeaders::new(&parts.headers),
                body: body.clone(),
                trailers: trailers.clone(),
            };
            let first = make(WholeBody::from_boxed(body, trailers));
            Ok((stored, Response::from_parts(parts, first)))
        }
    }

    /// Adds the [`SKIPPED_HEADER`](super::SKIPPED_HEADER) header, the count in decimal.
    fn mark_skipped(&self, response: &mut Response<B>, skipped: u64) {
        response
            .headers_mut()
            .insert(SKIPPED_NAME, HeaderValue::from(skipped));
    }
}

impl<A: Send + 'static> Store for HttpStore<A> {
    type Stored = StoredResponse;
    type Output = Response<A>;

    fn replay(&self, stored: &StoredResponse) -> Response<A> {
        let body = self.body(stored.body.clone(), stored.trailers.clone());
        let mut response = Response::new(body);
        *response.status_mut() = stored.status;
        *response.version_mut() = stored.version;
        *response.headers_mut() = stored.headers.to_map();
        response
    }

    fn session_created(&self, id: SessionId) -> Response<A> {
        let mut response = Response::new(self.body(Bytes::new(), None));
        *response.status_mut() = StatusCode::CREATED;
        response
            .headers_mut()
            .insert(SESSION_NAME, id.to_header_value());
        response
    }

    fn session_ended(&self) -> Response<A> {
        let mut response = Response::new(self.body(Bytes::new(), None));
        *response.status_mut() = StatusCode::NO_CONTENT;
        response
            .headers_mut()
            .insert(ERROR_NAME, HeaderValue::from_static("session-ended"));
        response
    }

    fn weigh(&self, stored: &StoredResponse) -> usize {
        let headers: usize = stored.headers.iter().map(header_bytes).sum();
        let trailers: usize = stored
            .trailers
            .iter()
            .flat_map(|t| t.iter())
            .map(header_bytes)
            .sum();
        stored.body.len() + headers + trailers
    }

    fn in_flight_bytes(&self) -> usize {
        self.body_limit
    }
}

/// The bytes of one header, name and value.
fn header_bytes((name, value): (&http::HeaderName, &HeaderValue)) -> usize {
    name.as_str().len() + value.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    fn block_on<F: Future>(future: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread().build();
        runtime.unwrap().block_on(future)
    }

    fn collected(response: Response<WholeBody>) -> (http::response::Parts, Bytes) {
        let (parts, body) = response.into_parts();
        let body = block_on(body.collect()).unwrap().to_bytes();
        (parts, body)
    }

    #[test]
    fn a_resend_gets_the_first_answer_headers_in_order_repeated_names_included() {
        let mut response = Response::new(Full::new(Bytes::from_static(b"body")));
        *response.status_mut() = StatusCode::ACCEPTED;
        *response.version_mut() = Version::HTTP_10;
        let headers = response.headers_mut();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("x-custom", HeaderValue::from_static("x"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        response.extensions_mut().insert(7u8);
        let store = HttpStore::new(100);
        let (stored, first) = block_on(store.store(response)).unwrap();
        let replayed = store.replay(&stored);
        let (first, first_body) = collected(first);
        let (replayed, replayed_body) = collected(replayed);
        assert_eq!(first_body, "body");
        assert_eq!(replayed_body, "body");
        for parts in [&first, &replayed] {
            assert_eq!(parts.status, StatusCode::ACCEPTED);
            assert_eq!(parts.version, Version::HTTP_10);
            assert!(
                parts.extensions.get::<u8>().is_none(),
                "extensions are not kept"
            );
        }
        assert_eq!(first.headers, replayed.headers);
        let cookies: Vec<_> = replayed.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        let weight = "set-cookie".len() * 2 + "a=1".len() * 2 + "x-custom".len() + 1 + 4;
        assert_eq!(store.weigh(&stored), weight);
    }

    #[test]
    fn the_first_answer_and_every_resend_end_with_the_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("5"));
        trailers.insert(
            "grpc-message",
            HeaderValue::from_static("no%20such%20thing"),
        );
        let body = WholeBody::new(Bytes::from_static(b"body"), Some(trailers.clone()));
        let store = HttpStore::new(100);
        let (stored, first) = block_on(store.store(Response::new(body))).unwrap();
        assert_eq!(stored.trailers.as_deref(), Some(&trailers));
        let weight = "body".len() + "grpc-status".len() + 1 + "grpc-message".len() + 17;
        assert_eq!(store.weigh(&stored), weight);
        for answer in [first, store.replay(&stored), store.replay(&stored)] {
            let all = block_on(answer.into_body().collect()).unwrap();
            assert_eq!(all.trailers(), Some(&trailers));
            assert_eq!(all.to_bytes(), "body");
        }
    }

    #[test]
    fn answers_take_the_body_type_asked_for() {
        /// A body made from bytes that remembers them, to see what the store made.
        #[derive(Default)]
        struct Made(Bytes);
        impl From<Bytes> for Made {
            fn from(bytes: Bytes) -> Self {
                Made(bytes)
            }
        }
        let store = HttpStore::new(100).answering(|whole| Made(whole.into_parts().0));
        let response = Response::new(Full::new(Bytes::from_static(b"abc")));
        let (stored, first) = block_on(store.store(response)).unwrap();
        assert_eq!(first.body().0, "abc");
        assert_eq!(store.replay(&stored).body().0, "abc");
        let id = SessionId::new(1).unwrap();
        assert_eq!(store.session_created(id).status(), StatusCode::CREATED);
        assert_eq!(store.session_ended().status(), StatusCode::NO_CONTENT);
    }
}
