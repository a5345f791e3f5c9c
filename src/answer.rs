//! What a server sends for a request it has read: one dispatch from the
//! [`Triage`] to *send this*, *send nothing* or *close the connection*, shared by every
//! server built on the crate.
//!
//! The dispatch is two pure steps around the one thing that differs between servers,
//! the wait for a request that another connection is processing:
//!
//! 1. [`first_step`] turns the triage into [`Step::Process`] (run the request through
//!    the guard), [`Step::AwaitResend`] (wait for the outcome, blocking or
//!    asynchronously), or a final [`Reply`];
//! 2. [`after_wait`] turns the wait's result into a final [`Reply`].
//!
//! [`answer_blocking`] runs both for a thread-per-connection server.

use crate::{ProcessGuard, RequestNr, SessionState, Slot, Triage, WaitTimeoutError};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What the server does after the triage.
#[must_use = "a step says whether to process, wait or reply"]
pub enum Step<'s, T, S: Slot<T>> {
    /// Run the request and publish its response through the guard; send the response.
    Process(ProcessGuard<'s, T, S>),
    /// The request is (being) processed already: wait for its outcome, then call
    /// [`after_wait`].
    AwaitResend,
    /// Nothing to run or wait for.
    Reply(Reply<T>),
}

/// The server's final answer to one request.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a reply must be sent, or the connection closed"]
pub enum Reply<T> {
    /// Send this response.
    Send(Arc<T>),
    /// Send nothing and read the next request.
    Nothing(Silence),
    /// Close the connection: the client broke the protocol or cannot be answered.
    Close(Refusal),
}

/// Why a request gets no answer while its connection stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// An old request the client has already moved past.
    Stale,
    /// The client sent a later request (on another connection) while this one was
    /// awaited: it no longer wants this response.
    Gone,
}

/// Why a request ends its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A newer request arrived while `current` is still processed: a protocol violation.
    Busy {
        /// The request being processed.
        current: u64,
    },
    /// The request's processor dropped out: there is no response, and it is never run
    /// again.
    Abandoned,
    /// The request was still being processed when the wait's deadline passed.
    ResendTimedOut,
}

impl<T, S: Slot<T>> fmt::Debug for Step<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Process(guard) => write!(f, "Process({})", guard.request()),
            Step::AwaitResend => f.write_str("AwaitResend"),
            Step::Reply(Reply::Send(_)) => f.write_str("Reply(Send(..))"),
            Step::Reply(Reply::Nothing(why)) => write!(f, "Reply(Nothing({why:?}))"),
            Step::Reply(Reply::Close(why)) => write!(f, "Reply(Close({why:?}))"),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Busy { current } => write!(f, "request {current} is still processed"),
            Refusal::Abandoned => f.write_str("the request was abandoned"),
            Refusal::ResendTimedOut => f.write_str("the request was still pending at the deadline"),
        }
    }
}

/// The step the triage calls for.
pub fn first_step<T, S: Slot<T>>(triage: Triage<'_, T, S>) -> Step<'_, T, S> {
    match triage {
        Triage::Process(guard) => Step::Process(guard),
        Triage::Resend => Step::AwaitResend,
        Triage::Stale => Step::Reply(Reply::Nothing(Silence::Stale)),
        Triage::Busy { current } => Step::Reply(Reply::Close(Refusal::Busy { current })),
    }
}

/// The reply once the wait for a re-sent request's outcome has returned.
pub fn after_wait<T>(waited: Result<Arc<T>, WaitTimeoutError>) -> Reply<T> {
    match waited {
        Ok(response) => Reply::Send(response),
        Err(WaitTimeoutError::Gone) => Reply::Nothing(Silence::Gone),
        Err(WaitTimeoutError::Abandoned) => Reply::Close(Refusal::Abandoned),
        Err(WaitTimeoutError::TimedOut) => Reply::Close(Refusal::ResendTimedOut),
    }
}

/// How the reply of [`answer_blocking`] came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// This call ran the request.
    Processed,
    /// This call waited for another's outcome.
    Resent,
    /// Neither.
    Direct,
}

/// Triages request `m` of `session` and answers it, blocking for up to `resend_timeout`
/// when another connection is processing it. `process` runs the request and settles
/// it through the guard (a panic in it abandons the request and unwinds on).
pub fn answer_blocking<T, S: Slot<T>>(
    session: &SessionState<T, S>,
    m: RequestNr,
    resend_timeout: Duration,
    process: impl FnOnce(ProcessGuard<'_, T, S>) -> Arc<T>,
) -> (Path, Reply<T>) {
    match first_step(session.triage(m)) {
        Step::Process(guard) => (Path::Processed, Reply::Send(process(guard))),
        Step::AwaitResend => (
            Path::Resent,
            after_wait(session.wait_timeout(m, resend_timeout)),
        ),
        Step::Reply(reply) => (Path::Direct, reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn nr(n: u64) -> RequestNr {
        RequestNr::new(n).unwrap()
    }

    const WAIT: Duration = Duration::from_millis(50);

    #[test]
    fn a_new_request_is_processed_and_its_response_sent() {
        let session = SessionState::<u32>::new();
        let (path, reply) = answer_blocking(&session, nr(1), WAIT, |g| g.complete(7));
        assert_eq!((path, reply), (Path::Processed, Reply::Send(Arc::new(7))));
    }

    #[test]
    fn a_resend_sends_the_retained_response() {
        let session = SessionState::<u32>::new();
        let _ = answer_blocking(&session, nr(1), WAIT, |g| g.complete(7));
        let (path, reply) = answer_blocking(&session, nr(1), WAIT, |_| unreachable!());
        assert_eq!((path, reply), (Path::Resent, Reply::Send(Arc::new(7))));
    }

    #[test]
    fn a_stale_request_gets_nothing() {
        let session = SessionState::<u32>::new();
        let _ = answer_blocking(&session, nr(2), WAIT, |g| g.complete(7));
        let (path, reply) = answer_blocking(&session, nr(1), WAIT, |_| unreachable!());
        assert_eq!(
            (path, reply),
            (Path::Direct, Reply::Nothing(Silence::Stale))
        );
    }

    #[test]
    fn a_newer_request_while_one_is_processed_closes() {
        let session = SessionState::<u32>::new();
        let Triage::Process(guard) = session.triage(nr(1)) else {
            panic!("first request is processed");
        };
        let (path, reply) = answer_blocking(&session, nr(2), WAIT, |_| unreachable!());
        assert_eq!(
            (path, reply),
            (Path::Direct, Reply::Close(Refusal::Busy { current: 1 }))
        );
        let (path, reply) = answer_blocking(&session, nr(1), WAIT, |_| unreachable!());
        assert_eq!(
            (path, reply),
            (Path::Resent, Reply::Close(Refusal::ResendTimedOut))
        );
        guard.abandon();
        let (_, reply) = answer_blocking(&session, nr(1), WAIT, |_| unreachable!());
        assert_eq!(reply, Reply::Close(Refusal::Abandoned));
    }

    #[test]
    fn a_wait_overtaken_by_a_later_request_sends_nothing() {
        assert_eq!(
            after_wait::<u32>(Err(WaitTimeoutError::Gone)),
            Reply::Nothing(Silence::Gone)
        );
    }
}
