//! What the layer answers instead of running the inner service, as typed errors, and
//! their ready-made HTTP responses: RFC 9457 problem details (see [`problems`](super::problems)).

use super::key::{KeyError, ERROR_HEADER};
use super::store::{BoxError, StoreError};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
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
    /// The memory budget cannot take the request's body as it arrives, or the response
    /// it may produce: it was not triaged nor run; send it again later.
    OverBudget,
    /// The request's body is over the layer's limit (announced or counted as it came):
    /// it was not triaged nor run, and nothing is kept.
    RequestTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request's body failed before it was whole (the connection was cut, the
    /// HTTP/2 stream reset, fewer bytes than its `content-length`): it was not triaged
    /// nor run, and nothing is kept; send it again, whole.
    IncompleteBody(BoxError),
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
    /// A short code for the error, sent in the [`ERROR_HEADER`] header; the last part
    /// of its problem [type](Self::problem_type).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Key(KeyError::DuplicateSession | KeyError::DuplicateRequest) => "duplicate-key",
            Error::Key(KeyError::EndNeedsDelete) => "end-needs-delete",
            Error::Key(_) => "bad-key",
            Error::UnknownSession => "unknown-session",
            Error::TableFull => "table-full",
            Error::OverBudget => "over-budget",
            Error::RequestTooLarge { .. } => "request-too-large",
            Error::IncompleteBody(_) => "incomplete-body",
            Error::Stale => "stale",
            Error::Busy { .. } => "busy",
            Error::Gone => "gone",
            Error::ResendTimedOut => "still-running",
            Error::Abandoned | Error::Inner(_) => "abandoned",
            Error::Store(StoreError::TooLarge { .. }) => "response-too-large",
            Error::Store(StoreError::Body(_)) => "abandoned",
        }
    }

    /// The HTTP status that fits: 400 bad key, duplicate key or incomplete body, 404
    /// unknown session, 405 an end that is not `DELETE`, 409 stale or busy, 410 gone, 413
    /// request too large, 503 table full, over budget or still running, 500 abandoned or
    /// failed, 502 response too large.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Key(KeyError::EndNeedsDelete) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Key(_) | Error::IncompleteBody(_) => StatusCode::BAD_REQUEST,
            Error::UnknownSession => StatusCode::NOT_FOUND,
            Error::TableFull | Error::OverBudget | Error::ResendTimedOut => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Stale | Error::Busy { .. } => StatusCode::CONFLICT,
            Error::Gone => StatusCode::GONE,
            Error::Abandoned | Error::Inner(_) | Error::Store(StoreError::Body(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Error::Store(StoreError::TooLarge { .. }) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The problem type (RFC 9457): [`PROBLEM_TYPES`] followed by the
    /// [`code`](Self::code), stable across versions.
    pub fn problem_type(&self) -> String {
        format!("{PROBLEM_TYPES}{}", self.code())
    }

    /// The problem's title (RFC 9457): the same for every error of one type.
    pub fn title(&self) -> &'static str {
        match self {
            Error::Key(KeyError::DuplicateSession | KeyError::DuplicateRequest) => {
                "Key header given more than once"
            }
            Error::Key(KeyError::EndNeedsDelete) => "Session end needs DELETE",
            Error::Key(_) => "Missing or malformed key",
            Error::UnknownSession => "Unknown session",
            Error::TableFull => "Session table full",
            Error::OverBudget => "Memory budget spent",
            Error::RequestTooLarge { .. } => "Request body too large",
            Error::IncompleteBody(_) => "Request body incomplete",
            Error::Stale => "Stale request",
            Error::Busy { .. } => "Session busy",
            Error::Gone => "Response gone",
            Error::ResendTimedOut => "Request still running",
            Error::Abandoned | Error::Inner(_) | Error::Store(StoreError::Body(_)) => {
                "Request abandoned"
            }
            Error::Store(StoreError::TooLarge { .. }) => "Response too large",
        }
    }

    /// The `Retry-After` of the answer, in seconds, on every refusal after which the
    /// same request may be sent again and run: busy, still running, table full, over
    /// budget (`1`), and an incomplete body (`0`: send it again whole at once).
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Error::Busy { .. } | Error::ResendTimedOut | Error::TableFull | Error::OverBudget => {
                Some(1)
            }
            Error::IncompleteBody(_) => Some(0),
            _ => None,
        }
    }

    /// The ready-made HTTP answer: [`status`](Self::status), an
    /// `application/problem+json` body (RFC 9457: `type`, `title`, `status`, `detail`),
    /// the [`ERROR_HEADER`] header with [`code`](Self::code), `Retry-After` where
    /// [`retry_after`](Self::retry_after) gives one, and `Allow: DELETE` on a 405.
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
        self.to_response_with_body(B::from)
    }

    /// [`to_response`](Self::to_response) with the body `body(problem)`.
    pub(crate) fn to_response_with_body<B>(&self, body: impl FnOnce(Bytes) -> B) -> Response<B>
    where
        E: fmt::Display,
    {
        let problem = Problem {
            code: self.code(),
            title: self.title(),
            status: self.status(),
            retry_after: self.retry_after(),
        };
        let mut response = problem.to_response(&self.to_string(), body);
        if matches!(self, Error::Key(KeyError::EndNeedsDelete)) {
            let allow = HeaderValue::from_static("DELETE");
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }

    /// The problem details object, as JSON.
    #[cfg(test)]
    fn problem(&self) -> String
    where
        E: fmt::Display,
    {
        let problem = Problem {
            code: self.code(),
            title: self.title(),
            status: self.status(),
            retry_after: self.retry_after(),
        };
        problem.json(&self.to_string())
    }
}

/// One of the layer's refusals as RFC 9457 problem details: the one place that writes
/// their HTTP answers (the session protocol's [`Error`] and the `Idempotency-Key`
/// mode's refusals alike).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Problem {
    /// The code: the end of the problem type, and the [`ERROR_HEADER`] value.
    pub(crate) code: &'static str,
    pub(crate) title: &'static str,
    pub(crate) status: StatusCode,
    /// `Retry-After`, in seconds, if the same request may be sent again and run.
    pub(crate) retry_after: Option<u32>,
}

impl Problem {
    /// The answer: `status`, an `application/problem+json` body made by `body`, the
    /// [`ERROR_HEADER`] header with the code, and `Retry-After` if there is one.
    pub(crate) fn to_response<B>(self, detail: &str, body: impl FnOnce(Bytes) -> B) -> Response<B> {
        let mut response = Response::new(body(Bytes::from(self.json(detail))));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.code));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    /// The problem details object (`type`, `title`, `status`, `detail`), as JSON.
    fn json(self, detail: &str) -> String {
        let mut json = String::with_capacity(160);
        json.push_str("{\"type\":\"");
        json.push_str(PROBLEM_TYPES);
        json.push_str(self.code);
        json.push_str("\",\"title\":\"");
        json.push_str(self.title);
        json.push_str("\",\"status\":");
        json.push_str(self.status.as_str());
        json.push_str(",\"detail\":\"");
        push_json_text(&mut json, detail);
        json.push_str("\"}");
        json
    }
}

/// Where the layer's problem types start: each type is this followed by the error's
/// [`code`](Error::code), and names a section of the [`problems`](super::problems) page.
pub const PROBLEM_TYPES: &str =
    "https://docs.rs/exactly-once/latest/exactly_once/tower/problems/index.html#";

/// `text` as the inside of a JSON string: quotes, backslashes and control characters
/// escaped.
fn push_json_text(json: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                json.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => json.push(c),
        }
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
            Error::RequestTooLarge { limit } => {
                write!(f, "the request body is over the {limit}-byte limit")
            }
            Error::IncompleteBody(e) => write!(
                f,
                "the request body ended before it was whole ({e}); nothing ran: send it again whole"
            ),
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
            Error::IncompleteBody(e) => Some(&**e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn every_error_has_a_fitting_status_code_and_retry_after() {
        let cases: [(Error<Infallible>, u16, &str, Option<&str>); 16] = [
            (Error::OverBudget, 503, "over-budget", Some("1")),
            (Error::ResendTimedOut, 503, "still-running", Some("1")),
            (Error::TableFull, 503, "table-full", Some("1")),
            (Error::Busy { current: 3 }, 409, "busy", Some("1")),
            (
                Error::IncompleteBody("cut".into()),
                400,
                "incomplete-body",
                Some("0"),
            ),
            (Error::Key(KeyError::MissingSession), 400, "bad-key", None),
            (
                Error::Key(KeyError::DuplicateRequest),
                400,
                "duplicate-key",
                None,
            ),
            (
                Error::Key(KeyError::DuplicateSession),
                400,
                "duplicate-key",
                None,
            ),
            (
                Error::Key(KeyError::EndNeedsDelete),
                405,
                "end-needs-delete",
                None,
            ),
            (
                Error::RequestTooLarge { limit: 1 },
                413,
                "request-too-large",
                None,
            ),
            (Error::UnknownSession, 404, "unknown-session", None),
            (Error::Stale, 409, "stale", None),
            (Error::Gone, 410, "gone", None),
            (Error::Abandoned, 500, "abandoned", None),
            (
                Error::Store(StoreError::Body("x".into())),
                500,
                "abandoned",
                None,
            ),
            (
                Error::Store(StoreError::TooLarge { limit: 1 }),
                502,
                "response-too-large",
                None,
            ),
        ];
        for (error, status, code, retry_after) in cases {
            let response = error.to_response();
            assert_eq!(response.status().as_u16(), status, "{error}");
            assert_eq!(response.headers()[ERROR_HEADER], code);
            let retry = response.headers().get(header::RETRY_AFTER);
            assert_eq!(retry.map(|v| v.to_str().unwrap()), retry_after, "{error}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
            assert_eq!(error.problem_type(), format!("{PROBLEM_TYPES}{code}"));
        }
        let end = Error::<Infallible>::Key(KeyError::EndNeedsDelete).to_response();
        assert_eq!(end.headers()[header::ALLOW], "DELETE");
    }

    #[test]
    fn the_problem_is_json_with_its_detail_escaped() {
        let error: Error<&str> = Error::Inner("a \"quoted\" \\ line\nbreak");
        let body = error.problem();
        let expected = format!(
            "{{\"type\":\"{PROBLEM_TYPES}abandoned\",\"title\":\"Request abandoned\",\
             \"status\":500,\"detail\":\"the request failed and is abandoned: \
             a \\\"quoted\\\" \\\\ line\\u000abreak\"}}"
        );
        assert_eq!(body, expected);
    }
}
