//! The response futures of the server services.

use super::body::WholeBody;
use super::error::Error;
use super::service::{Answer, RunToEnd};
use http::Response;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// The future of [`ExactlyOnce`](super::ExactlyOnce): the answer to one request.
pub struct ResponseFuture<O: Send + 'static, E: Send + 'static> {
    state: State<O, E>,
}

enum State<O: Send + 'static, E: Send + 'static> {
    /// Decided without a run: taken by the first poll.
    Ready(Option<Answer<O, E>>),
    /// Taking the request whole, then admitting it: nothing is triaged yet, so
    /// dropping this leaves no trace.
    Reading(Starting<O, E>),
    /// The run, or the wait for the copy that runs the request.
    Running(RunToEnd<O, E>),
}

/// The request being taken whole, and then the run it starts (or the refusal).
pub(crate) type Starting<O, E> =
    Pin<Box<dyn Future<Output = Result<RunToEnd<O, E>, Error<E>>> + Send>>;

impl<O: Send + 'static, E: Send + 'static> ResponseFuture<O, E> {
    pub(crate) fn ready(answer: Answer<O, E>) -> Self {
        ResponseFuture {
            state: State::Ready(Some(answer)),
        }
    }

    pub(crate) fn reading(starting: Starting<O, E>) -> Self {
        ResponseFuture {
            state: State::Reading(starting),
        }
    }
}

// Nothing in it is ever pinned: a ready answer is moved out; the reading and the run
// are boxed.
impl<O: Send + 'static, E: Send + 'static> Unpin for ResponseFuture<O, E> {}

impl<O: Send + 'static, E: Send + 'static> Future for ResponseFuture<O, E> {
    type Output = Answer<O, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match &mut self.state {
                State::Ready(answer) => {
                    return Poll::Ready(answer.take().expect("polled after completion"))
                }
                State::Reading(starting) => match ready!(starting.as_mut().poll(cx)) {
                    Ok(run) => self.state = State::Running(run),
                    Err(refused) => return Poll::Ready(Err(refused)),
                },
                State::Running(run) => return Pin::new(run).poll(cx),
            }
        }
    }
}

impl<O: Send + 'static, E: Send + 'static> fmt::Debug for ResponseFuture<O, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

pin_project! {
    /// The future of [`HttpErrors`](super::HttpErrors): an error becomes its response
    /// (its gRPC answer for a gRPC call).
    pub struct HttpResponseFuture<F, A = WholeBody> {
        #[pin]
        answer: Option<F>,
        refusal: Option<Response<A>>,
        make: Option<fn(WholeBody) -> A>,
        grpc: bool,
    }
}

impl<F, A> fmt::Debug for HttpResponseFuture<F, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpResponseFuture")
    }
}

impl<F, A> HttpResponseFuture<F, A> {
    pub(crate) fn answering(answer: F, make: fn(WholeBody) -> A, grpc: bool) -> Self {
        HttpResponseFuture {
            answer: Some(answer),
            refusal: None,
            make: Some(make),
            grpc,
        }
    }

    pub(crate) fn refused(refusal: Response<A>) -> Self {
        HttpResponseFuture {
            answer: None,
            refusal: Some(refusal),
            make: None,
            grpc: false,
        }
    }
}

impl<F, E, A> Future for HttpResponseFuture<F, A>
where
    F: Future<Output = Result<Response<A>, Error<E>>>,
    E: fmt::Display,
{
    type Output = Result<Response<A>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.answer.as_pin_mut() {
            Some(answer) => {
                let answer = ready!(answer.poll(cx));
                let make = this.make.expect("an answering future has its body maker");
                Poll::Ready(Ok(answer.unwrap_or_else(|e| match this.grpc {
                    true => e.to_grpc_response_with(make),
                    false => e.to_response_with_body(|problem| make(WholeBody::from(problem))),
                })))
            }
            None => Poll::Ready(Ok(this.refusal.take().expect("polled after completion"))),
        }
    }
}
