//! A service that answers the layer's errors with their HTTP responses.

use super::error::Error;
use super::future::HttpResponseFuture;
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};
use tower_service::Service;

/// Answers every [`Error`] of the service it wraps with [`Error::to_response`] (with
/// the body type `A` of the service's answers); made by [`HttpLayer`](super::HttpLayer).
pub struct HttpErrors<S, A = Full<Bytes>> {
    inner: S,
    refusal: Option<Response<A>>,
}

impl<S: fmt::Debug, A> fmt::Debug for HttpErrors<S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpErrors")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, A> HttpErrors<S, A> {
    pub(crate) fn new(inner: S) -> Self {
        HttpErrors {
            inner,
            refusal: None,
        }
    }
}

impl<S: Clone, A> Clone for HttpErrors<S, A> {
    fn clone(&self) -> Self {
        HttpErrors::new(self.inner.clone())
    }
}

impl<S, Req, E, A> Service<Req> for HttpErrors<S, A>
where
    S: Service<Req, Response = Response<A>, Error = Error<E>>,
    E: fmt::Display,
    A: From<Bytes>,
{
    type Response = Response<A>;
    type Error = Infallible;
    type Future = HttpResponseFuture<S::Future, A>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // An inner service that fails to get ready cannot take the next request: that
        // request is answered with the failure instead of being passed on.
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => self.refusal = Some(e.to_response_with()),
            Poll::Ready(Ok(())) => self.refusal = None,
            Poll::Pending => return Poll::Pending,
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.refusal.take() {
            Some(refusal) => HttpResponseFuture::refused(refusal),
            None => HttpResponseFuture::answering(self.inner.call(request)),
        }
    }
}
