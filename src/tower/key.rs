//! Which session and which request a request is: the key the layer triages on.

use super::grpc::is_grpc;
use crate::RequestNr;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;

/// The header that names the session: `new` to create one, else its id in hex.
pub const SESSION_HEADER: &str = "exactly-once-session";
/// The header that numbers the request within its session (decimal; `0` ends the session).
pub const REQUEST_HEADER: &str = "exactly-once-request";
/// The header the server adds to the answer to a call whose number skipped ahead: how
/// many numbers were skipped (they run no more; see [`StoreResponse::mark_skipped`](super::StoreResponse::mark_skipped)).
pub const SKIPPED_HEADER: &str = "exactly-once-skipped";
/// The header the server adds to every answer it gives in place of the inner service
/// (session created or ended, or an [`Error`](super::Error)'s code).
pub const ERROR_HEADER: &str = "exactly-once-error";

/// A session id: non-zero, unguessable, handed out by the server. It is a credential:
/// its `Debug` shows a short fingerprint only.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(NonZeroU64);

impl SessionId {
    /// The id `n`, if it is not 0.
    pub const fn new(n: u64) -> Option<SessionId> {
        match NonZeroU64::new(n) {
            Some(n) => Some(SessionId(n)),
            None => None,
        }
    }

    /// The id as a number.
    pub const fn get(self) -> u64 {
        self.0.get()
    }

    /// The [`Display`](fmt::Display) form as a header value.
    pub(crate) fn to_header_value(self) -> http::HeaderValue {
        http::HeaderValue::from_str(&self.to_string()).expect("hex digits are a header value")
    }

    /// Parses the 16-digit hex form that [`Display`](fmt::Display) writes.
    pub fn parse(text: &str) -> Option<SessionId> {
        SessionId::parse_bytes(text.as_bytes())
    }

    /// [`parse`](Self::parse) of the bytes of a header value.
    fn parse_bytes(text: &[u8]) -> Option<SessionId> {
        let digits: &[u8; 16] = text.try_into().ok()?;
        // Every digit is looked up, and a bad one is noticed once at the end: no branch
        // per digit on the path of every request.
        let (n, bad) = digits.iter().fold((0u64, 0u8), |(n, bad), &d| {
            let value = HEX_DIGITS[usize::from(d)];
            (n << 4 | u64::from(value & 0xf), bad | value)
        });
        if bad & 0x80 != 0 {
            return None;
        }
        SessionId::new(n)
    }
}

/// Marks a byte that is no hex digit in [`HEX_DIGITS`]: its bit 0x80 is set in no digit's
/// value, so an or of the values shows whether any byte was not a digit.
const NOT_HEX: u8 = 0xff;

/// The value of each byte as a hex digit (either case), or [`NOT_HEX`].
const HEX_DIGITS: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut d = 0;
    while d < 10 {
        table[b'0' as usize + d] = d as u8;
        d += 1;
    }
    let mut d = 0;
    while d < 6 {
        table[b'a' as usize + d] = 10 + d as u8;
        table[b'A' as usize + d] = 10 + d as u8;
        d += 1;
    }
    table
};

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.get())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({:04x}…)", self.get() >> 48)
    }
}

/// What a request asks of the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Create a session and answer its id; nothing is executed.
    Create,
    /// Run request `request` of `session` once, or answer it from the store.
    Call {
        /// The session.
        session: SessionId,
        /// The request's number within it.
        request: RequestNr,
    },
    /// End `session`, freeing its stored response; nothing is executed.
    End {
        /// The session.
        session: SessionId,
    },
    /// Run the inner service as it is, with no session, no number and no stored answer:
    /// for requests the extractor lets through unkeyed on purpose (e.g. health checks,
    /// CORS preflights; see [`HeaderKey::letting_through`]). A resend runs again.
    PassThrough,
}

/// Why a request carries no usable key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The session is not named.
    MissingSession,
    /// The session is named but the request is not numbered.
    MissingRequest,
    /// The session id is not `new` nor 16 hex digits of a non-zero id.
    BadSession,
    /// The request number is not a decimal number up to [`RequestNr::MAX`].
    BadRequest,
    /// The session is named more than once (two session headers): parties that read
    /// the first and the last would disagree on the session, so nothing runs.
    DuplicateSession,
    /// The request is numbered more than once (two request headers).
    DuplicateRequest,
    /// Number 0 (end the session) with a method other than `DELETE`.
    EndNeedsDelete,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::MissingSession => "the request names no session",
            KeyError::MissingRequest => "the request has no request number",
            KeyError::BadSession => "the session id is malformed",
            KeyError::BadRequest => "the request number is malformed or too large",
            KeyError::DuplicateSession => "the request names more than one session",
            KeyError::DuplicateRequest => "the request has more than one request number",
            KeyError::EndNeedsDelete => "a session is ended with DELETE only",
        })
    }
}

impl std::error::Error for KeyError {}

/// Takes the [`Key`] from a request. Any `Fn(&Req) -> Result<Key, KeyError>` is one;
/// [`HeaderKey`] reads HTTP headers.
pub trait KeyExtractor<Req> {
    /// The key of `request`.
    fn key(&self, request: &Req) -> Result<Key, KeyError>;
}

impl<Req, F: Fn(&Req) -> Result<Key, KeyError>> KeyExtractor<Req> for F {
    fn key(&self, request: &Req) -> Result<Key, KeyError> {
        self(request)
    }
}

/// The key from the [`SESSION_HEADER`] and [`REQUEST_HEADER`] headers of an HTTP
/// request: session `new` creates a session; an id with request `m` is a call; an id
/// with request `0` and the method `DELETE` (or any gRPC call: gRPC only sends `POST`)
/// ends the session. A request with neither
/// header is refused ([`KeyError::MissingSession`]) unless
/// [`letting_through`](Self::letting_through) lets it pass.
#[derive(Clone, Default)]
pub struct HeaderKey {
    let_through: Option<LetThrough>,
}

/// Which requests with no key header at all run unprotected ([`Key::PassThrough`]).
pub type LetThrough = Arc<dyn Fn(&http::Method, &http::Uri) -> bool + Send + Sync>;

impl HeaderKey {
    /// Keys from headers; every request must carry them.
    pub fn new() -> Self {
        HeaderKey::default()
    }

    /// Lets a request that carries neither key header through to the inner service,
    /// unprotected ([`Key::PassThrough`]), when `pass(method, uri)` says so: for health
    /// checks and CORS preflights in front of a router whose other routes need
    /// exactly-once. A request with either header is never let through: a malformed
    /// or partial key is refused, as it is a client's mistake.
    pub fn letting_through(
        mut self,
        pass: impl Fn(&http::Method, &http::Uri) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.let_through = Some(Arc::new(pass));
        self
    }
}

impl fmt::Debug for HeaderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderKey")
            .field("letting_through", &self.let_through.is_some())
            .finish()
    }
}

impl<B> KeyExtractor<http::Request<B>> for HeaderKey {
    fn key(&self, request: &http::Request<B>) -> Result<Key, KeyError> {
        let headers = key_headers(request.headers())?;
        if let (None, None, Some(pass)) = (headers.0, headers.1, &self.let_through) {
            if pass(request.method(), request.uri()) {
                return Ok(Key::PassThrough);
            }
        }
        let key = key_from_values(headers)?;
        // gRPC sends every call with POST: a gRPC call (which no prefetcher or crawler
        // sends) may end its session too.
        if matches!(key, Key::End { .. })
            && request.method() != http::Method::DELETE
            && !is_grpc(request.headers())
        {
            return Err(KeyError::EndNeedsDelete);
        }
        Ok(key)
    }
}

/// The key a set of HTTP headers names (see [`HeaderKey`]; the method is not looked at,
/// so number 0 reads as [`Key::End`] whatever the method).
pub fn key_from_headers(headers: &http::HeaderMap) -> Result<Key, KeyError> {
    key_from_values(key_headers(headers)?)
}

fn key_from_values(
    (session, request): (Option<&http::HeaderValue>, Option<&http::HeaderValue>),
) -> Result<Key, KeyError> {
    let session = session.ok_or(KeyError::MissingSession)?.as_bytes();
    if session == b"new" {
        return Ok(Key::Create);
    }
    let session = SessionId::parse_bytes(session).ok_or(KeyError::BadSession)?;
    let request = request.ok_or(KeyError::MissingRequest)?;
    let request = parse_decimal(request.as_bytes()).ok_or(KeyError::BadRequest)?;
    if request == 0 {
        return Ok(Key::End { session });
    }
    let request = RequestNr::new(request).map_err(|_| KeyError::BadRequest)?;
    Ok(Key::Call { session, request })
}

/// The values of the session and request headers, found in one pass that compares
/// names without hashing them (a request has few headers; a name of another length is
/// passed over at its first comparison). A header given twice is an error: a proxy or
/// a library that reads the last value would disagree with one that reads the first.
fn key_headers(
    headers: &http::HeaderMap,
) -> Result<(Option<&http::HeaderValue>, Option<&http::HeaderValue>), KeyError> {
    let (mut session, mut request) = (None, None);
    for (name, value) in headers {
        if *name == SESSION_NAME {
            if session.replace(value).is_some() {
                return Err(KeyError::DuplicateSession);
            }
        } else if *name == REQUEST_NAME && request.replace(value).is_some() {
            return Err(KeyError::DuplicateRequest);
        }
    }
    Ok((session, request))
}

/// The first value of header `name`, as `HeaderMap::get` gives it, found by comparing
/// names rather than hashing `name`: cheaper for the few headers of a request or answer.
pub(crate) fn header<'h>(
    headers: &'h http::HeaderMap,
    name: &http::HeaderName,
) -> Option<&'h http::HeaderValue> {
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// [`SESSION_HEADER`] as a header name.
pub(crate) const SESSION_NAME: http::HeaderName = http::HeaderName::from_static(SESSION_HEADER);
/// [`REQUEST_HEADER`] as a header name.
pub(crate) const REQUEST_NAME: http::HeaderName = http::HeaderName::from_static(REQUEST_HEADER);
/// [`SKIPPED_HEADER`] as a header name.
pub(crate) const SKIPPED_NAME: http::HeaderName = http::HeaderName::from_static(SKIPPED_HEADER);
/// [`ERROR_HEADER`] as a header name.
pub(crate) const ERROR_NAME: http::HeaderName = http::HeaderName::from_static(ERROR_HEADER);

/// A decimal number of 1 to 20 ASCII digits that fits a `u64`, as `str::parse` takes it
/// without its sign.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let d = d.checked_sub(b'0').filter(|&d| d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn headers_name_create_call_and_end() {
        let id = SessionId::new(0xabc).unwrap();
        let s = id.to_string();
        assert_eq!(
            key_from_headers(&headers(&[(SESSION_HEADER, "new")])),
            Ok(Key::Create)
        );
        assert_eq!(
            key_from_headers(&headers(&[(SESSION_HEADER, &s), (REQUEST_HEADER, "7")])),
            Ok(Key::Call {
                session: id,
                request: RequestNr::new(7).unwrap()
            })
        );
        assert_eq!(
            key_from_headers(&headers(&[(SESSION_HEADER, &s), (REQUEST_HEADER, "0")])),
            Ok(Key::End { session: id })
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        let s = SessionId::new(1).unwrap().to_string();
        let too_big = (RequestNr::MAX + 1).to_string();
        for (pairs, error) in [
            (vec![], KeyError::MissingSession),
            (
                vec![(SESSION_HEADER, "0000000000000000")],
                KeyError::BadSession,
            ),
            (vec![(SESSION_HEADER, "12")], KeyError::BadSession),
            (vec![(SESSION_HEADER, s.as_str())], KeyError::MissingRequest),
            (
                vec![(SESSION_HEADER, s.as_str()), (REQUEST_HEADER, "-1")],
                KeyError::BadRequest,
            ),
            (
                vec![(SESSION_HEADER, s.as_str()), (REQUEST_HEADER, &too_big)],
                KeyError::BadRequest,
            ),
            (
                vec![(SESSION_HEADER, "000000000000000g")],
                KeyError::BadSession,
            ),
            (
                vec![(SESSION_HEADER, s.as_str()), (REQUEST_HEADER, "7x")],
                KeyError::BadRequest,
            ),
            (
                vec![(SESSION_HEADER, s.as_str()), (REQUEST_HEADER, "")],
                KeyError::BadRequest,
            ),
            (
                vec![
                    (SESSION_HEADER, s.as_str()),
                    (REQUEST_HEADER, "99999999999999999999"),
                ],
                KeyError::BadRequest,
            ),
        ] {
            assert_eq!(key_from_headers(&headers(&pairs)), Err(error));
        }
    }

    #[test]
    fn a_key_header_given_twice_is_refused_whatever_the_values() {
        let s = SessionId::new(5).unwrap().to_string();
        let t = SessionId::new(6).unwrap().to_string();
        for (pairs, error) in [
            (
                vec![
                    (SESSION_HEADER, s.as_str()),
                    (REQUEST_HEADER, "4"),
                    (REQUEST_HEADER, "5"),
                ],
                KeyError::DuplicateRequest,
            ),
            (
                vec![
                    (SESSION_HEADER, s.as_str()),
                    (REQUEST_HEADER, "4"),
                    (REQUEST_HEADER, "4"),
                ],
                KeyError::DuplicateRequest,
            ),
            (
                vec![
                    (SESSION_HEADER, s.as_str()),
                    (SESSION_HEADER, t.as_str()),
                    (REQUEST_HEADER, "1"),
                ],
                KeyError::DuplicateSession,
            ),
            (
                vec![
                    (SESSION_HEADER, s.as_str()),
                    ("host", "example"),
                    (SESSION_HEADER, "new"),
                ],
                KeyError::DuplicateSession,
            ),
            (
                vec![(SESSION_HEADER, "new"), (SESSION_HEADER, "new")],
                KeyError::DuplicateSession,
            ),
        ] {
            assert_eq!(key_from_headers(&headers(&pairs)), Err(error), "{pairs:?}");
        }
    }

    fn with_method(method: http::Method, pairs: &[(&'static str, &str)]) -> http::Request<()> {
        let mut request = http::Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = "/health".parse().unwrap();
        *request.headers_mut() = headers(pairs);
        request
    }

    #[test]
    fn a_session_is_ended_by_delete_only() {
        let id = SessionId::new(9).unwrap();
        let s = id.to_string();
        let end = [(SESSION_HEADER, s.as_str()), (REQUEST_HEADER, "0")];
        let key = |method| HeaderKey::new().key(&with_method(method, &end));
        assert_eq!(key(http::Method::DELETE), Ok(Key::End { session: id }));
        for method in [http::Method::GET, http::Method::POST, http::Method::PUT] {
            assert_eq!(key(method), Err(KeyError::EndNeedsDelete));
        }
    }

    #[test]
    fn only_requests_with_no_key_header_at_all_are_let_through() {
        let key = HeaderKey::new().letting_through(|_, uri| uri.path() == "/health");
        let get = |pairs: &[(&'static str, &str)]| key.key(&with_method(http::Method::GET, pairs));
        assert_eq!(get(&[]), Ok(Key::PassThrough));
        assert_eq!(get(&[(REQUEST_HEADER, "1")]), Err(KeyError::MissingSession));
        assert_eq!(get(&[(SESSION_HEADER, "12")]), Err(KeyError::BadSession));
        assert_eq!(get(&[(SESSION_HEADER, "new")]), Ok(Key::Create));
        let mut elsewhere = with_method(http::Method::GET, &[]);
        *elsewhere.uri_mut() = "/count".parse().unwrap();
        assert_eq!(key.key(&elsewhere), Err(KeyError::MissingSession));
        let strict = HeaderKey::new();
        assert_eq!(
            strict.key(&with_method(http::Method::GET, &[])),
            Err(KeyError::MissingSession)
        );
    }

    #[test]
    fn debug_never_shows_the_whole_id() {
        let id = SessionId::new(0x1234_5678_9abc_def0).unwrap();
        assert_eq!(format!("{id:?}"), "SessionId(1234…)");
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
    }

    #[test]
    fn ids_are_read_in_either_case_and_every_other_byte_is_refused() {
        let id = SessionId::new(0x0123_4567_89ab_cdef).unwrap();
        assert_eq!(SessionId::parse("0123456789ABCDEF"), Some(id));
        assert_eq!(SessionId::parse("0123456789abcdef"), Some(id));
        for byte in 0..=u8::MAX {
            let mut text = *b"0123456789abcdef";
            text[7] = byte;
            let expected = char::from(byte).to_digit(16).map(|d| {
                let id = 0x0123_4567_89ab_cdef & !(0xf << 32) | u64::from(d) << 32;
                SessionId::new(id).unwrap()
            });
            assert_eq!(SessionId::parse_bytes(&text), expected, "byte {byte}");
        }
    }

    #[test]
    fn request_numbers_are_ascii_decimal_digits_only() {
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        for byte in (0..=u8::MAX).filter(|b| !b.is_ascii_digit()) {
            assert_eq!(parse_decimal(&[b'1', byte]), None, "byte {byte}");
        }
    }
}
