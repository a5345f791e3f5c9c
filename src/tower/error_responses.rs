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

/// Answers every [`Error`] of the service it wraps with [`Error::to_response`]; made by
/// [`HttpLayer`](super::HttpLayer).
#[derive(Debug)]
pub struct HttpErrors<S> {
    inner: S,
    refusal: Option<Response<Full<Bytes>>>,
}

impl<S> HttpErrors<S> {
    pub(crate) fn new(inner: S) -> Self {
        HttpErrors {
            inner,
            refusal: None,
        }
    }
}

impl<S: Clone> Clone for HttpErrors<S> {
    fn clone(&self) -> Self {
        HttpErrors::new(self.inner.clone())
    }
}

impl<S, Req, E> Service<Req> for HttpErrors<S>
where
    S: Service<Req, Response = Response<Full<Bytes>>, Error = Error<E>>,
    E: fmt::Display,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = HttpResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // An inner service that fails to get ready cannot take the next request: that
        // request is answered with the failure instead of being passed on.
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => self.refusal = Some(e.to_response()),
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
