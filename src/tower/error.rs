//! What the layer answers instead of running the inner service, as typed errors, and
//! their ready-made HTTP responses.

use super::key::{KeyError, ERROR_HEADER};
use super::store::StoreError;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use std::fmt;

/// Why the layer did not answer a request with its inner service's response.
#[derive(Debug)]
pub enum Error<E> {
    /// The request carries no usable key.
    Key(KeyError),
    /// The session is not in the table: never created, expired, evicted or ended. The
    /// request was not executed now; whether an earlier copy of it was cannot be told.
    UnknownSession,
    /// The table holds as many sessions as it may; try again later.
    TableFull,
    /// The memory budget cannot take the response this request may produce: it was not
    /// triaged nor run; send it again later.
    OverBudget,
    /// The client has already moved past this request; nothing was executed.
    Stale,
    /// The session is still processing an earlier request `current`: a client that
    /// sends one request at a time never sees this; try again once it is answered.
    Busy {
        /// The request being processed.
        current: u64,
    },
    /// The session has moved past this request while it waited: its response is gone.
    Gone,
    /// The copy that runs the request was still running when the resend's wait ended
    /// (see [`ExactlyOnceLayer::with_resend_timeout`](super::ExactlyOnceLayer::with_resend_timeout)); send it again later.
    ResendTimedOut,
    /// The request's only run failed (the inner service errored or panicked, or its
    /// response could not be stored): it has no response and never runs again.
    Abandoned,
    /// The inner service's error, to the caller whose copy ran it; the request is
    /// abandoned (resends get [`Error::Abandoned`]).
    Inner(E),
    /// The inner service's response could not be stored, to the caller whose copy ran
    /// it; the request is abandoned.
    Store(StoreError),
}

impl<E> Error<E> {
    /// A short code for the error, sent in the [`ERROR_HEADER`] header.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Key(_) => "bad-key",
            Error::UnknownSession => "unknown-session",
            Error::TableFull => "table-full",
            Error::OverBudget => "over-budget",
            Error::Stale => "stale",
            Error::Busy { .. } => "busy",
            Error::Gone => "gone",
            Error::ResendTimedOut => "still-running",
            Error::Abandoned | Error::Inner(_) => "abandoned",
            Error::Store(StoreError::TooLarge { .. }) => "response-too-large",
            Error::Store(StoreError::Body(_)) => "abandoned",
        }
    }

    /// The HTTP status that fits: 400 bad key, 404 unknown session, 409 stale or busy,
    /// 410 gone, 503 table full, over budget or still running, 500 abandoned or failed,
    /// 502 response too large.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Key(_) => StatusCode::BAD_REQUEST,
            Error::UnknownSession => StatusCode::NOT_FOUND,
            Error::TableFull | Error::OverBudget | Error::ResendTimedOut => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Stale | Error::Busy { .. } => StatusCode::CONFLICT,
            Error::Gone => StatusCode::GONE,
            Error::Abandoned | Error::Inner(_) | Error::Store(StoreError::Body(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Error::Store(StoreError::TooLarge { .. }) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The ready-made HTTP answer: [`status`](Self::status), the [`ERROR_HEADER`]
    /// header with [`code`](Self::code), and the error's text as the body.
    pub fn to_response(&self) -> Response<Full<Bytes>>
    where
        E: fmt::Display,
    {
        self.to_response_with()
    }

    /// [`to_response`](Self::to_response) with a body of type `B` (e.g. axum's `Body`).
    pub fn to_response_with<B: From<Bytes>>(&self) -> Response<B>
    where
        E: fmt::Display,
    {
        let mut response = Response::new(B::from(Bytes::from(self.to_string())));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(ERROR_HEADER, HeaderValue::from_static(self.code()));
        if matches!(
            self,
            Error::TableFull | Error::Busy { .. } | Error::ResendTimedOut
        ) {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Key(e) => write!(f, "{e}"),
            Error::UnknownSession => f.write_str("unknown session"),
            Error::TableFull => f.write_str("the session table is full"),
            Error::OverBudget => {
                f.write_str("the server's memory budget is spent; try again later")
            }
            Error::Stale => f.write_str("the client has moved past this request"),
            Error::Busy { current } => write!(f, "request {current} is still being processed"),
            Error::Gone => f.write_str("the session has moved past this request"),
            Error::ResendTimedOut => {
                f.write_str("the request is still running; send it again later")
            }
            Error::Abandoned => f.write_str("the request's only run failed; it has no response"),
            Error::Inner(e) => write!(f, "the request failed and is abandoned: {e}"),
            Error::Store(e) => write!(f, "the response could not be stored: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Key(e) => Some(e),
            Error::Inner(e) => Some(e),
            Error::Store(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn every_error_has_a_fitting_status_and_its_code_in_a_header() {
        let cases: [(Error<Infallible>, u16, &str); 10] = [
            (Error::OverBudget, 503, "over-budget"),
            (Error::ResendTimedOut, 503, "still-running"),
            (Error::Key(KeyError::MissingSession), 400, "bad-key"),
            (Error::UnknownSession, 404, "unknown-session"),
            (Error::TableFull, 503, "table-full"),
            (Error::Stale, 409, "stale"),
            (Error::Busy { current: 3 }, 409, "busy"),
            (Error::Gone, 410, "gone"),
            (Error::Abandoned, 500, "abandoned"),
            (
                Error::Store(StoreError::TooLarge { limit: 1 }),
                502,
                "response-too-large",
            ),
        ];
        for (error, status, code) in cases {
            let response = error.to_response();
            assert_eq!(response.status().as_u16(), status, "{error}");
            assert_eq!(response.headers()[ERROR_HEADER], code);
        }
    }
}
