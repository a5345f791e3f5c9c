//! The gRPC client layer: exactly-once unary calls over tonic's channel ([`GrpcClient`]).

use super::client::{Answered, Client, ClientConfig, ClientError};
use super::grpc::{trailers_only, GrpcCode};
use super::store::BoxError;
use super::WholeBody;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{Either, Full};
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Makes [`GrpcClient`]s, each with a session of its own.
pub struct GrpcClientLayer<B> {
    config: ClientConfig,
    make: fn(Full<Bytes>) -> B,
    streaming: Arc<[String]>,
}

impl<B> GrpcClientLayer<B> {
    /// A layer whose clients follow `config` and send a kept message in the body `make`
    /// makes of it (for tonic's channel: `tonic::body::Body::new`).
    pub fn new(config: ClientConfig, make: fn(Full<Bytes>) -> B) -> Self {
        GrpcClientLayer {
            config,
            make,
            streaming: Arc::from([]),
        }
    }

    /// Passes calls to these paths (`/package.Service/Method`) through un-numbered: the
    /// streaming methods.
    pub fn streaming<P: Into<String>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.streaming = paths.into_iter().map(Into::into).collect();
        self
    }
}

impl<B> Clone for GrpcClientLayer<B> {
    fn clone(&self) -> Self {
        GrpcClientLayer {
            config: self.config,
            make: self.make,
            streaming: Arc::clone(&self.streaming),
        }
    }
}

impl<B> fmt::Debug for GrpcClientLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClientLayer")
            .field("config", &self.config)
            .field("streaming", &self.streaming)
            .finish_non_exhaustive()
    }
}

impl<S: Clone, B> Layer<S> for GrpcClientLayer<B> {
    type Service = GrpcClient<S, B>;

    fn layer(&self, inner: S) -> GrpcClient<S, B> {
        let rebody = Rebody {
            inner: inner.clone(),
            make: self.make,
        };
        GrpcClient {
            numbered: Client::new(rebody, self.config).resending_unavailable(),
            inner,
            streaming: Arc::clone(&self.streaming),
        }
    }
}

/// A gRPC client session: exactly-once unary calls over a tonic `Channel` (or any
/// `Service<http::Request<B>>` that sends HTTP/2), without the library depending on tonic.
///
/// It sits between tonic's `Grpc` client and its channel. Each unary call
/// is numbered in the session the client opens on its first call (the
/// [`SESSION_HEADER`](super::SESSION_HEADER) and [`REQUEST_HEADER`](super::REQUEST_HEADER)
/// metadata), its encoded message is kept until it is answered, and after a connection
/// error, a refusal of the layer that asks for a later try (UNAVAILABLE with the layer's
/// code) or any other answer `grpc-status` UNAVAILABLE (from a proxy in front of the
/// server, say) the same bytes are sent again with the same number: the server's layer
/// runs the call once and answers every copy from its store. This is [`Client`]'s
/// numbering and retry loop, reused as it is; the retry policy is [`ClientConfig`]'s:
/// pauses from [`first_backoff`](ClientConfig::first_backoff), doubling up to
/// [`max_backoff`](ClientConfig::max_backoff), for at most
/// [`retry_for`](ClientConfig::retry_for) from the first failed attempt. A number is
/// never given to another call.
///
/// An UNAVAILABLE answer cannot be told from the service's own UNAVAILABLE, which the
/// server's layer keeps as the call's one answer and replays: such a call is sent again
/// until [`retry_for`](ClientConfig::retry_for) is over, and its caller then gets that
/// answer. A service behind the layer should answer a condition the same call could
/// pass later with another code (or not answer it at all before it can).
///
/// What the caller (tonic) sees is always a gRPC answer:
///
/// | outcome | `grpc-status` |
/// |---|---|
/// | the service's answer (first or replayed) | the service's own, with its trailers |
/// | a refusal of the layer that a resend cannot mend (`unknown-session`, `stale`, `abandoned`, …) | the layer's (the table in [`grpc`](super::grpc)) |
/// | the client gave up after [`retry_for`](ClientConfig::retry_for) | DEADLINE_EXCEEDED (4): the call may have run once, and never runs again; or the last answer, if it was UNAVAILABLE (below) |
/// | the message or the answer is over [`request_limit`](ClientConfig::request_limit) or [`response_limit`](ClientConfig::response_limit) | RESOURCE_EXHAUSTED (8) |
/// | the request body failed | INTERNAL (13) |
///
/// # Streaming calls pass through
///
/// A streaming call cannot be kept whole and sent again: its messages are produced and
/// consumed while it runs. The client cannot tell a streaming call from a unary one by
/// looking at it (tonic sends both as a body of messages), so the caller names the
/// streaming methods' paths ([`GrpcClientLayer::streaming`]); those calls go to the
/// channel as they are, un-numbered and never resent, with their errors as the
/// channel gives them. The server must let them through
/// ([`HttpLayer::letting_through`](super::HttpLayer::letting_through) with the same
/// paths).
///
/// ```no_run
/// # async fn example(channel: tonic::transport::Channel) {
/// use exactly_once::tower::{ClientConfig, GrpcClientLayer};
/// use tower_layer::Layer;
///
/// let layer = GrpcClientLayer::new(ClientConfig::default(), tonic::body::Body::new)
///     .streaming(["/notes.Notes/Watch"]);
/// let client = tonic::client::Grpc::new(layer.layer(channel));
/// # let _ = client;
/// # }
/// ```
///
/// Clones share the session and take turns (a session runs one call at a time).
pub struct GrpcClient<S, B> {
    numbered: Client<Rebody<S, B>>,
    inner: S,
    streaming: Arc<[String]>,
}

impl<S: Clone, B> Clone for GrpcClient<S, B> {
    fn clone(&self) -> Self {
        GrpcClient {
            numbered: self.numbered.clone(),
            inner: self.inner.clone(),
            streaming: Arc::clone(&self.streaming),
        }
    }
}

impl<S, B> fmt::Debug for GrpcClient<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClient")
            .field("numbered", &self.numbered)
            .field("streaming", &self.streaming)
            .finish_non_exhaustive()
    }
}

impl<S, B> GrpcClient<S, B> {
    /// How many times calls have been sent again (creations of the session included).
    pub fn retries(&self) -> u64 {
        self.numbered.retries()
    }
}

/// The future of a [`GrpcClient`] call.
pub type GrpcClientFuture<RB> =
    Pin<Box<dyn Future<Output = Result<Response<Either<WholeBody, RB>>, BoxError>> + Send>>;

impl<S, B, RB> Service<Request<B>> for GrpcClient<S, B>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Either<WholeBody, RB>>;
    type Error = BoxError;
    type Future = GrpcClientFuture<RB>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each attempt, and each call passed through, waits for the channel itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> GrpcClientFuture<RB> {
        let path = request.uri().path();
        if self.streaming.iter().any(|streaming| streaming == path) {
            let mut inner = self.inner.clone();
            return Box::pin(async move {
                poll_fn(|cx| inner.poll_ready(cx))
                    .await
                    .map_err(Into::into)?;
                let answer = inner.call(request).await.map_err(Into::into)?;
                Ok(answer.map(Either::Right))
            });
        }
        Box::pin(self.numbered.answered(request, as_grpc_answer))
    }
}

/// What a numbered call came to, as a gRPC answer.
fn as_grpc_answer<RB>(answered: Answered) -> Result<Response<Either<WholeBody, RB>>, BoxError> {
    let answer = match answered {
        // A refusal of the layer is a gRPC answer already: its status, message and
        // code go to the caller as they came.
        Ok((answer, _)) => answer,
        Err(e) => failed(&e),
    };
    Ok(answer.map(Either::Left))
}

/// The trailers-only answer that tells a gRPC caller why its call has no answer.
fn failed(e: &ClientError) -> Response<WholeBody> {
    let code = match e {
        ClientError::GaveUp { .. } => GrpcCode::DeadlineExceeded,
        ClientError::RequestTooLarge | ClientError::ResponseTooLarge => GrpcCode::ResourceExhausted,
        // `answered` hands refusals on as answers; a request body that fails is left.
        ClientError::RequestBody(_) | ClientError::Refused { .. } => GrpcCode::Internal,
    };
    trailers_only(std::convert::identity, code, &e.to_string())
}

/// The channel `S` sent a kept message in the body `make` makes of it.
struct Rebody<S, B> {
    inner: S,
    make: fn(Full<Bytes>) -> B,
}

impl<S: Clone, B> Clone for Rebody<S, B> {
    fn clone(&self) -> Self {
        Rebody {
            inner: self.inner.clone(),
            make: self.make,
        }
    }
}

impl<S: Service<Request<B>>, B> Service<Request<Full<Bytes>>> for Rebody<S, B> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> S::Future {
        self.inner.call(request.map(self.make))
    }
}
