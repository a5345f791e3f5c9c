//! gRPC answers for the layer's own refusals and for session creation.
//!
//! A request whose `content-type` starts with `application/grpc` is a gRPC call: a gRPC
//! client reads its outcome from `grpc-status`, not from the HTTP status (which must be
//! 200). The layer answers such a call's refusals in gRPC's trailers-only form: HTTP
//! 200, `content-type: application/grpc`, `grpc-status`, `grpc-message` (the error's
//! text, percent-encoded) and the [`ERROR_HEADER`](super::ERROR_HEADER) code in the
//! headers of a response with an empty body. A refusal after which the same call may be
//! sent again and run also carries `grpc-retry-pushback-ms` (gRFC A6: the pause the
//! server asks for, the `Retry-After` of the HTTP answer). The codes are chosen so that
//! the code alone tells a client what to do:
//!
//! | layer code | `grpc-status` | what the client does |
//! |---|---|---|
//! | `busy`, `still-running`, `table-full`, `over-budget`, `incomplete-body` | UNAVAILABLE (14) | nothing ran: send the same call (same number) again after the pushback |
//! | `unknown-session` | NOT_FOUND (5) | the session is gone: make a new one; whether an earlier copy ran cannot be told |
//! | `stale`, `gone` | ALREADY_EXISTS (6) | this number was used and its answer is no longer kept: never send it again |
//! | `abandoned` | INTERNAL (13) | the call's only run failed: it never runs again; go on with the next number |
//! | `response-too-large` | RESOURCE_EXHAUSTED (8) | the response is over the server's limit: the call is abandoned |
//! | `request-too-large` | RESOURCE_EXHAUSTED (8) | the message is over the server's limit: nothing ran; sending it again cannot help |
//! | `bad-key`, `duplicate-key`, `end-needs-delete` | INVALID_ARGUMENT (3) | the metadata is wrong: nothing ran |
//!
//! UNAVAILABLE is the one code gRPC clients treat as "retry with backoff", and it is
//! given exactly where a resend can run: every other code is one a client must not
//! simply resend. RESOURCE_EXHAUSTED is kept for limits that a resend cannot pass
//! (gRPC itself answers an over-long message so), not for a budget that frees up.
//!
//! Session metadata `new` on a gRPC call is answered with a valid empty gRPC response:
//! one zero-length message (the 5 bytes `00 00 00 00 00`), the id in the
//! [`SESSION_HEADER`](super::SESSION_HEADER) metadata of its headers and
//! `grpc-status: 0` in its trailers. A gRPC call numbered 0 ends its session (gRPC
//! sends every call with `POST`; other requests end a session with `DELETE` only) and is
//! answered alike, with [`ERROR_HEADER`](super::ERROR_HEADER) `session-ended`.

use super::body::WholeBody;
use super::error::Error;
use super::key::{KeyError, ERROR_NAME};
use super::store::StoreError;
use bytes::Bytes;
use http::{header::CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, Response};
use std::fmt::{self, Write};

/// The gRPC status codes the layer answers with (gRPC's numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrpcCode {
    /// 0: the call succeeded.
    Ok,
    /// 3: the metadata is wrong.
    InvalidArgument,
    /// 4: the [`GrpcClient`](super::GrpcClient) gave up on a call: it may have run
    /// once (never twice).
    DeadlineExceeded,
    /// 5: the session is not in the table.
    NotFound,
    /// 6: the number was used and its answer is gone.
    AlreadyExists,
    /// 8: over a limit that a resend cannot pass.
    ResourceExhausted,
    /// 13: the call's only run failed.
    Internal,
    /// 14: nothing ran; send the call again.
    Unavailable,
}

impl GrpcCode {
    /// The code's number, as `grpc-status` carries it.
    pub fn number(self) -> u8 {
        match self {
            GrpcCode::Ok => 0,
            GrpcCode::InvalidArgument => 3,
            GrpcCode::DeadlineExceeded => 4,
            GrpcCode::NotFound => 5,
            GrpcCode::AlreadyExists => 6,
            GrpcCode::ResourceExhausted => 8,
            GrpcCode::Internal => 13,
            GrpcCode::Unavailable => 14,
        }
    }
}

/// `grpc-status`.
pub(crate) const STATUS_NAME: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
const MESSAGE_NAME: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-retry-pushback-ms` (gRFC A6).
const PUSHBACK_NAME: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");
/// The content type of the layer's gRPC answers.
const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
/// One message of zero bytes: not compressed, length 0.
const EMPTY_MESSAGE: &[u8] = &[0; 5];

/// Whether a request with these headers is a gRPC call.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    let content_type = headers.get(CONTENT_TYPE);
    content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl<E> Error<E> {
    /// The `grpc-status` of the layer's answer to a gRPC call (see the table in the
    /// [module docs](super::grpc)).
    pub fn grpc_code(&self) -> GrpcCode {
        match self {
            Error::Busy { .. }
            | Error::ResendTimedOut
            | Error::TableFull
            | Error::OverBudget
            | Error::IncompleteBody(_) => GrpcCode::Unavailable,
            Error::UnknownSession => GrpcCode::NotFound,
            Error::Stale | Error::Gone => GrpcCode::AlreadyExists,
            Error::Abandoned | Error::Inner(_) | Error::Store(StoreError::Body(_)) => {
                GrpcCode::Internal
            }
            Error::Store(StoreError::TooLarge { .. }) | Error::RequestTooLarge { .. } => {
                GrpcCode::ResourceExhausted
            }
            Error::Key(KeyError::EndNeedsDelete) | Error::Key(_) => GrpcCode::InvalidArgument,
        }
    }

    /// The ready-made trailers-only gRPC answer, with a body of type `B` made by `make`
    /// from an empty [`WholeBody`].
    pub(crate) fn to_grpc_response_with<B>(&self, make: fn(WholeBody) -> B) -> Response<B>
    where
        E: fmt::Display,
    {
        let mut response = trailers_only(make, self.grpc_code(), &self.to_string());
        let headers = response.headers_mut();
        headers.insert(ERROR_NAME, HeaderValue::from_static(self.code()));
        if let Some(seconds) = self.retry_after() {
            headers.insert(PUSHBACK_NAME, HeaderValue::from(seconds * 1000));
        }
        response
    }

    /// The ready-made trailers-only gRPC answer: HTTP 200, `content-type:
    /// application/grpc`, `grpc-status` ([`grpc_code`](Self::grpc_code)), `grpc-message`
    /// (the error's text, percent-encoded), the [`ERROR_HEADER`](super::ERROR_HEADER)
    /// code, and `grpc-retry-pushback-ms` where [`retry_after`](Self::retry_after) gives
    /// a pause; the body is empty.
    pub fn to_grpc_response(&self) -> Response<WholeBody>
    where
        E: fmt::Display,
    {
        self.to_grpc_response_with(std::convert::identity)
    }
}

/// A trailers-only gRPC answer: HTTP 200, `content-type: application/grpc`,
/// `grpc-status: code` and `grpc-message: message` (percent-encoded) in its headers, an
/// empty body of type `B` made by `make`.
pub(crate) fn trailers_only<B>(
    make: fn(WholeBody) -> B,
    code: GrpcCode,
    message: &str,
) -> Response<B> {
    let mut response = Response::new(make(WholeBody::default()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, GRPC);
    headers.insert(STATUS_NAME, HeaderValue::from(u16::from(code.number())));
    let message = percent_encoded(message);
    let message = HeaderValue::from_str(&message).expect("percent-encoded text is ASCII");
    headers.insert(MESSAGE_NAME, message);
    response
}

/// The `grpc-status` of a gRPC answer read in full: in its trailers, or in its headers
/// (a trailers-only answer); `None` if it carries none or not a number.
pub(crate) fn grpc_status(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<u8> {
    let status = trailers.and_then(|t| t.get(STATUS_NAME));
    let status = status.or_else(|| headers.get(STATUS_NAME))?;
    status.to_str().ok()?.parse().ok()
}

/// `text` as `grpc-message` carries it: every byte outside printable ASCII, and `%`,
/// as `%XX`.
fn percent_encoded(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            write!(encoded, "%{byte:02X}").expect("writing to a String cannot fail");
        }
    }
    encoded
}

/// The answer to a gRPC call that created a session: HTTP 200, one empty message, the
/// id in `session` (the session header's value), `grpc-status: 0` in the trailers.
pub(crate) fn session_created<B>(make: fn(WholeBody) -> B, session: HeaderValue) -> Response<B> {
    empty_message(make, super::key::SESSION_NAME, session)
}

/// The answer to a gRPC call that ended a session (number 0): HTTP 200, one empty
/// message, [`ERROR_HEADER`](super::ERROR_HEADER) `session-ended` (as the HTTP answer
/// has), `grpc-status: 0` in the trailers.
pub(crate) fn session_ended<B>(make: fn(WholeBody) -> B) -> Response<B> {
    empty_message(make, ERROR_NAME, HeaderValue::from_static("session-ended"))
}

/// A successful gRPC answer of one empty message, with the header `name: value`.
fn empty_message<B>(make: fn(WholeBody) -> B, name: HeaderName, value: HeaderValue) -> Response<B> {
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert(STATUS_NAME, HeaderValue::from_static("0"));
    let body = WholeBody::new(Bytes::from_static(EMPTY_MESSAGE), Some(trailers));
    let mut response = Response::new(make(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, GRPC);
    headers.insert(name, value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encoded("plain text"), "plain text");
        assert_eq!(percent_encoded("100% über\n"), "100%25 %C3%BCber%0A");
    }

    #[test]
    fn every_refusal_is_a_trailers_only_answer_with_its_grpc_status() {
        use std::convert::Infallible;
        use GrpcCode::*;
        let cases: [(Error<Infallible>, GrpcCode, Option<&str>); 16] = [
            (Error::Busy { current: 3 }, Unavailable, Some("1000")),
            (Error::ResendTimedOut, Unavailable, Some("1000")),
            (Error::TableFull, Unavailable, Some("1000")),
            (Error::OverBudget, Unavailable, Some("1000")),
            (Error::IncompleteBody("cut".into()), Unavailable, Some("0")),
            (Error::UnknownSession, NotFound, None),
            (Error::Stale, AlreadyExists, None),
            (Error::Gone, AlreadyExists, None),
            (Error::Abandoned, Internal, None),
            (Error::Store(StoreError::Body("x".into())), Internal, None),
            (
                Error::Store(StoreError::TooLarge { limit: 1 }),
                ResourceExhausted,
                None,
            ),
            (Error::RequestTooLarge { limit: 1 }, ResourceExhausted, None),
            (Error::Key(KeyError::MissingSession), InvalidArgument, None),
            (
                Error::Key(KeyError::DuplicateRequest),
                InvalidArgument,
                None,
            ),
            (
                Error::Key(KeyError::DuplicateSession),
                InvalidArgument,
                None,
            ),
            (Error::Key(KeyError::EndNeedsDelete), InvalidArgument, None),
        ];
        for (error, code, pushback) in cases {
            assert_eq!(error.grpc_code(), code, "{error}");
            let answer = error.to_grpc_response();
            assert_eq!(answer.status(), http::StatusCode::OK, "{error}");
            let headers = answer.headers();
            assert_eq!(headers[CONTENT_TYPE], "application/grpc");
            assert_eq!(headers[STATUS_NAME], code.number().to_string().as_str());
            assert_eq!(
                headers[MESSAGE_NAME],
                percent_encoded(&error.to_string()).as_str()
            );
            assert_eq!(headers[ERROR_NAME], error.code());
            let sent = headers.get(PUSHBACK_NAME).map(|v| v.to_str().unwrap());
            assert_eq!(sent, pushback, "{error}");
            assert!(answer.body().data().is_empty() && answer.body().trailers().is_none());
        }
        let inner: Error<&str> = Error::Inner("broken");
        assert_eq!(inner.grpc_code(), Internal);
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            is_grpc(&headers)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(!with("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
