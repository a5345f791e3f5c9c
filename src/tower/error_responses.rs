//! A service that answers the layer's errors with their HTTP responses, or with gRPC
//! trailers-only answers for gRPC calls.

use super::body::WholeBody;
use super::error::Error;
use super::future::HttpResponseFuture;
use super::grpc::is_grpc;
use super::store::HttpStore;
use http::{Request, Response};
use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};
use tower_service::Service;

/// Answers every [`Error`] of the service it wraps with [`Error::to_response`], or for
/// a gRPC call (`content-type: application/grpc…`) with its trailers-only gRPC answer
/// ([`grpc`](super::grpc) has the mapping), with the body type `A` of the service's
/// answers; made by [`HttpLayer`](super::HttpLayer).
pub struct HttpErrors<S, A = WholeBody> {
    inner: S,
    make: fn(WholeBody) -> A,
    refusal: Option<Refusal<A>>,
}

/// The answers to the next call when the inner service failed to get ready.
struct Refusal<A> {
    http: Response<A>,
    grpc: Response<A>,
}

impl<S: fmt::Debug, A> fmt::Debug for HttpErrors<S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpErrors")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, A> HttpErrors<S, A> {
    pub(crate) fn new(inner: S, store: HttpStore<A>) -> Self {
        HttpErrors {
            inner,
            make: store.make(),
            refusal: None,
        }
    }
}

impl<S: Clone, A> Clone for HttpErrors<S, A> {
    fn clone(&self) -> Self {
        HttpErrors {
            inner: self.inner.clone(),
            make: self.make,
            refusal: None,
        }
    }
}

impl<S, B, E, A> Service<Request<B>> for HttpErrors<S, A>
where
    S: Service<Request<B>, Response = Response<A>, Error = Error<E>>,
    E: fmt::Display,
{
    type Response = Response<A>;
    type Error = Infallible;
    type Future = HttpResponseFuture<S::Future, A>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // An inner service that fails to get ready cannot take the next request: that
        // request is answered with the failure instead of being passed on.
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                let make = self.make;
                let http = e.to_response_with_body(|problem| make(WholeBody::from(problem)));
                let grpc = e.to_grpc_response_with(make);
                self.refusal = Some(Refusal { http, grpc });
            }
            Poll::Ready(Ok(())) => self.refusal = None,
            Poll::Pending => return Poll::Pending,
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let grpc = is_grpc(request.headers());
        match self.refusal.take() {
            Some(refusal) if grpc => HttpResponseFuture::refused(refusal.grpc),
            Some(refusal) => HttpResponseFuture::refused(refusal.http),
            None => HttpResponseFuture::answering(self.inner.call(request), self.make, grpc),
        }
    }
}
