//! Exactly-once for tower services (feature `tower`): a server layer that runs each
//! numbered request of a session once and answers every resend from its stored
//! response, and a client layer that numbers requests and resends them after connection
//! errors ([`Client`]; for tonic's gRPC channel, [`GrpcClient`]).
//!
//! The layer wraps a whole axum `Router` once, answering in axum's `Body`
//! ([`HttpLayer::answering`]), and is served with `into_make_service`. Calling
//! `with_state(())` first makes the router's handlers into services once, as
//! `axum::serve` does for a bare router, rather than on every request.
//! `Router::layer(HttpLayer::new(..))` works as well, at a higher cost per request: it
//! wraps each route, and axum clones the route's boxed service for every call.
//!
//! ```
//! use axum::{body::Body, extract::Request, routing::post, Router, ServiceExt};
//! use exactly_once::table::{Budget, TableConfig};
//! use exactly_once::tower::{Client, ClientConfig, HttpLayer};
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::{client::legacy::Client as Pool, rt::TokioExecutor};
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The server: a counter handler, the whole router behind the layer.
//! let runs = Arc::new(AtomicU64::new(0));
//! let counted = Arc::clone(&runs);
//! let router = Router::new()
//!     .route("/add", post(move || async move { counted.fetch_add(1, Ordering::SeqCst).to_string() }))
//!     .with_state(());
//! let layer = HttpLayer::new(1 << 20, TableConfig::default(), Budget::new(64 << 20));
//! let app = ServiceExt::<Request>::into_make_service(layer.answering(Body::new).layer(router));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let url = format!("http://{}/add", listener.local_addr().unwrap());
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! // The client: a connection pool behind the numbering client.
//! let pool = Pool::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
//! let mut client = Client::new(pool, ClientConfig::default());
//! for expected in 0..3 {
//!     let request = http::Request::post(&url).body(Full::<bytes::Bytes>::default()).unwrap();
//!     let answer = client.call(request).await.unwrap();
//!     let body = answer.into_body().collect().await.unwrap().to_bytes();
//!     assert_eq!(body, expected.to_string());
//! }
//! assert_eq!(runs.load(Ordering::SeqCst), 3);
//! # }
//! ```
//!
//! # The protocol
//!
//! A request names its session and its number in two headers ([`SESSION_HEADER`],
//! [`REQUEST_HEADER`], each at most once; other protocols give a [`KeyExtractor`]).
//! The layer first takes the request whole ([`TakeWhole`]: for HTTP, the whole body up
//! to the request limit, charged to the budget as it arrives): a body that fails before
//! it is whole (a connection cut, an HTTP/2 stream reset) triages nothing and stores
//! nothing, so the resend runs. Then, per session, it triages each number with
//! [`SessionState::triage`](crate::SessionState::triage):
//!
//! - **Process**: the inner service runs, polled in the caller's task; if the caller
//!   goes away first (its connection cut), the run finishes in a task of its own, so
//!   that the client's resend gets its response. The response is stored ([`Store`]:
//!   for HTTP status, headers, the body, buffered up to a limit, and its trailers) and
//!   answered; the first answer and every resend alike are a [`WholeBody`] (the bytes,
//!   then the trailers) unless [`HttpLayer::answering`] makes another body of it.
//! - **Resend** (the same number again, e.g. after a cut): the copy awaits the first
//!   copy's outcome asynchronously, however long it runs (there is no lease to run
//!   out, and no polling), and answers the stored response.
//! - **Stale**, **Busy**, an unknown session: typed [`Error`]s, which
//!   [`HttpLayer`] answers with fitting status codes ([`Error::status`]) in RFC 9457
//!   problem details ([`problems`] lists them); a gRPC call (`content-type:
//!   application/grpc…`) gets them as trailers-only gRPC answers whose `grpc-status`
//!   tells the client whether to resend ([`grpc`] has the mapping).
//!
//! Number 0 with the method `DELETE` (or on a gRPC call, whatever its method) ends the
//! session. A number that skips ahead runs
//! (as in MUSCLE3) and its answer carries [`SKIPPED_HEADER`]. Requests with no key
//! header at all are refused unless [`HttpLayer::letting_through`] lets them pass
//! unprotected.
//!
//! # Getting a session id
//!
//! A request with the session header `new` creates a session and is answered `201`
//! with the id in the session header (a gRPC call: a valid empty gRPC response, see
//! [`grpc`]); it runs nothing. If that answer is lost the client
//! asks again and gets a second id: the first session stays unused and expires after
//! [`TableConfig::unused_expiry`](crate::table::TableConfig::unused_expiry) (seconds),
//! so no lost answer, this one included, can cause a second run. Ids are chosen by the
//! server's [`SessionTable`](crate::table::SessionTable), non-zero and unguessable: ids
//! chosen by clients would let one client claim sessions without limit and collide with
//! (or guess) other clients' ids, and would move the flood defence (unused sessions
//! expire fast, a full table evicts the longest-detached) onto ids the server cannot
//! vouch for. A session is attached while one of its requests is in the layer, so it
//! is never expired or evicted in the middle of a run; a full table with every session
//! attached answers creation [`Error::TableFull`] (503).
//!
//! # Failures: what the client sees
//!
//! - The inner service returns an error, panics, or its response cannot be stored (the
//!   body is over the limit): the request is abandoned. The copy that ran it gets
//!   [`Error::Inner`], [`Error::Abandoned`] (a panic) or [`Error::Store`]; every resend
//!   gets [`Error::Abandoned`] (HTTP 500, code `abandoned`). It is never run again; the
//!   client goes on with its next number.
//! - The session has expired, was ended or never existed: [`Error::UnknownSession`]
//!   (404). Whether an earlier copy of the request ran cannot be told then; it is not
//!   run now.
//! - The memory budget of the table cannot take the request's body as it arrives, or
//!   room for reading its response (the layer reserves [`Store::in_flight_bytes`]
//!   before the triage of a number the session has not reached; a resend or a stale
//!   copy needs none), even after evicting every session without a request in the
//!   layer that retains a response (longest idle first,
//!   [`SessionTable::admit`](crate::table::SessionTable::admit)): [`Error::OverBudget`]
//!   (503). The request was neither triaged nor run;
//!   [`Client`] sends it again later, as it does after [`Error::Busy`],
//!   [`Error::ResendTimedOut`], [`Error::TableFull`] and [`Error::IncompleteBody`].
//! - The request's body is over the request limit: [`Error::RequestTooLarge`] (413),
//!   before the triage; nothing is kept.
//! - The caller goes away (its connection is cut) while its copy runs: the run goes
//!   on to the end and its response is stored for the resend. A copy that was only
//!   waiting for another copy's outcome stops waiting then, and lets its session go.
//!   A copy that waits holds neither its request nor any of the budget.
//! - The layer runs on any executor while callers wait for their answers; finishing
//!   the run of a caller that went away needs a tokio runtime (outside one, that run is
//!   dropped, which abandons its request).

mod body;
mod client;
mod error;
mod error_responses;
mod future;
pub mod grpc;
mod grpc_client;
mod headers;
pub mod idempotency;
mod key;
mod layer;
pub mod problems;
mod service;
mod store;
mod whole;

pub use body::WholeBody;
pub use client::{Client, ClientConfig, ClientError, ClientFuture, ClientLayer};
pub use error::Error;
pub use error::PROBLEM_TYPES;
pub use error_responses::HttpErrors;
pub use future::{HttpResponseFuture, ResponseFuture};
pub use grpc_client::{GrpcClient, GrpcClientFuture, GrpcClientLayer};
pub use headers::StoredHeaders;
pub use idempotency::IdempotencyLayer;
pub use key::{
    key_from_headers, HeaderKey, Key, KeyError, KeyExtractor, LetThrough, SessionId, ERROR_HEADER,
    REQUEST_HEADER, SESSION_HEADER, SKIPPED_HEADER,
};
pub use layer::{ExactlyOnceLayer, HttpLayer};
pub use service::ExactlyOnce;
pub use store::{
    BoxError, CloneStore, HttpStore, Store, StoreError, StoreResponse, StoredResponse,
};
pub use whole::{RequestError, TakeWhole};
