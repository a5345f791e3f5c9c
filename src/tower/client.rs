//! The client layer: numbers requests per session, keeps each request's bytes until its
//! response arrives, and sends the same number again after connection errors.

use super::body::{read_limited, ReadError, WholeBody};
use super::key::{header, SessionId, ERROR_NAME, REQUEST_NAME, SESSION_NAME};
use super::store::BoxError;
use crate::RequestNr;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::Full;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// How the client retries and how much it buffers.
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig {
    /// How long one call keeps retrying, from its first failed attempt, before it gives up.
    pub retry_for: Duration,
    /// The pause after the first failed attempt; it doubles after each one.
    pub first_backoff: Duration,
    /// The longest pause between attempts.
    pub max_backoff: Duration,
    /// The most bytes of a request body the client buffers (and keeps until answered).
    pub request_limit: usize,
    /// The most bytes of a response body the client reads.
    pub response_limit: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            retry_for: Duration::from_secs(30),
            first_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_secs(1),
            request_limit: 16 << 20,
            response_limit: 16 << 20,
        }
    }
}

/// Why a call got no answer from the inner service.
#[derive(Debug)]
pub enum ClientError {
    /// The request body is over [`ClientConfig::request_limit`]; nothing was sent.
    RequestTooLarge,
    /// The response body is over [`ClientConfig::response_limit`]: the request ran,
    /// once, but its answer is not read.
    ResponseTooLarge,
    /// Reading the request body failed; nothing was sent.
    RequestBody(BoxError),
    /// Every attempt failed for [`ClientConfig::retry_for`]. The request may have run
    /// once; it never runs twice, and the next call waits for it to finish.
    GaveUp {
        /// How many times the request was sent.
        attempts: u32,
        /// The last attempt's error.
        last: BoxError,
    },
    /// The server answered for the layer, not the service: `code` is its
    /// [`ERROR_HEADER`](super::ERROR_HEADER) (`abandoned`, `unknown-session`, `table-full`, …).
    Refused {
        /// The answer's status.
        status: StatusCode,
        /// The layer's error code.
        code: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::RequestTooLarge => f.write_str("the request body is over the limit"),
            ClientError::ResponseTooLarge => f.write_str("the response body is over the limit"),
            ClientError::RequestBody(e) => write!(f, "reading the request body failed: {e}"),
            ClientError::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempts: {last}")
            }
            ClientError::Refused { status, code } => write!(f, "refused ({status}): {code}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Makes [`Client`]s, each with a session of its own.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientLayer {
    config: ClientConfig,
}

impl ClientLayer {
    /// A layer whose clients follow `config`.
    pub fn new(config: ClientConfig) -> Self {
        ClientLayer { config }
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = Client<S>;

    fn layer(&self, inner: S) -> Client<S> {
        Client::new(inner, self.config)
    }
}

/// A client session over the HTTP service `S` (a connection or a pool): it creates its
/// session on the first call, numbers every call, and sends a call again, same number
/// and same bytes, after a connection error, until it is answered. Clones share the
/// session and take turns (a session runs one request at a time).
pub struct Client<S> {
    inner: S,
    config: ClientConfig,
    numbering: Arc<Mutex<Numbering>>,
    retries: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Numbering {
    /// The session and its id as a header value.
    session: Option<(SessionId, HeaderValue)>,
    next: RequestNr,
}

impl Numbering {
    fn new() -> Self {
        Numbering {
            session: None,
            next: RequestNr::FIRST,
        }
    }
}

impl<S> Client<S> {
    /// A client with no session yet.
    pub fn new(inner: S, config: ClientConfig) -> Self {
        Client {
            inner,
            config,
            numbering: Arc::new(Mutex::new(Numbering::new())),
            retries: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many times calls have been sent again (creations of the session included).
    pub fn retries(&self) -> u64 {
        // ORDERING: a statistic; the increments it reads need no other memory.
        self.retries.load(Ordering::Relaxed)
    }
}

impl<S: Clone> Clone for Client<S> {
    fn clone(&self) -> Self {
        Client {
            inner: self.inner.clone(),
            config: self.config,
            numbering: Arc::clone(&self.numbering),
            retries: Arc::clone(&self.retries),
        }
    }
}

impl<S> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The future of a [`Client`] call.
pub type ClientFuture =
    Pin<Box<dyn Future<Output = Result<Response<WholeBody>, ClientError>> + Send>>;

impl<S, B, RB> Service<Request<B>> for Client<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<WholeBody>;
    type Error = ClientError;
    type Future = ClientFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        // Each attempt waits for the inner service's readiness itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ClientFuture {
        let call = Sender {
            inner: self.inner.clone(),
            config: self.config,
            retries: Arc::clone(&self.retries),
        };
        let numbering = Arc::clone(&self.numbering);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match read_limited(body, call.config.request_limit).await {
                Ok(body) => body,
                // `read_limited` charges nothing, so it refuses nothing.
                Err(ReadError::TooLarge | ReadError::Refused) => {
                    return Err(ClientError::RequestTooLarge)
                }
                Err(ReadError::Body(e)) => return Err(ClientError::RequestBody(e)),
            };
            // Requests are sent in `Full` bodies, which carry no trailers: refused
            // rather than sent without them.
            let body = match body.into_parts() {
                (body, None) => body,
                (_, Some(_)) => {
                    let e = "request trailers cannot be sent by the client";
                    return Err(ClientError::RequestBody(e.into()));
                }
            };
            let template = Template {
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                headers: parts.headers,
            };
            let mut numbering = numbering.lock().await;
            call.numbered(&mut numbering, &template, body).await
        })
    }
}

/// What every copy of one request is made from.
struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Template {
    fn request(&self, body: Bytes, session: HeaderValue, m: u64) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        // Room made at once for the two headers made here and the two hyper adds on
        // the way out (host, content-length): the map never grows on the way.
        let headers = request.headers_mut();
        headers.reserve(self.headers.len() + ADDED_HEADERS);
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        headers.insert(SESSION_NAME, session);
        if m > 0 {
            headers.insert(REQUEST_NAME, decimal(m));
        }
        request
    }
}

/// The headers added to every copy of a request: session and number here, host and
/// content-length by hyper.
const ADDED_HEADERS: usize = 4;

/// `m` in decimal as a header value, made in one allocation (`HeaderValue::from` takes
/// two).
fn decimal(m: u64) -> HeaderValue {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = m;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = Bytes::copy_from_slice(&digits[at..]);
    HeaderValue::from_maybe_shared(digits).expect("decimal digits are a header value")
}

/// What one attempt came to.
enum Attempt {
    Answered(Response<WholeBody>),
    Retry(BoxError),
    Fail(ClientError),
}

struct Sender<S> {
    inner: S,
    config: ClientConfig,
    retries: Arc<AtomicU64>,
}

impl<S, RB> Sender<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    async fn numbered(
        mut self,
        numbering: &mut Numbering,
        template: &Template,
        body: Bytes,
    ) -> Result<Response<WholeBody>, ClientError> {
        let id = match &numbering.session {
            Some((_, id)) => id.clone(),
            None => {
                let session = self.create(template).await?;
                let id = HeaderValue::from_str(&session.to_string()).expect("hex digits");
                numbering.session = Some((session, id.clone()));
                id
            }
        };
        let m = numbering.next;
        // Taken before the first send: a call given up after sending must never lend
        // its number to a different request. After the last number the next call
        // starts a new session.
        match m.next() {
            Ok(next) => numbering.next = next,
            Err(_) => *numbering = Numbering::new(),
        }
        let (answer, code) = self
            .until_answered(|| template.request(body.clone(), id.clone(), m.get()))
            .await?;
        match code {
            None => Ok(answer),
            Some(code) => {
                if code == "unknown-session" {
                    *numbering = Numbering::new();
                }
                Err(ClientError::Refused {
                    status: answer.status(),
                    code,
                })
            }
        }
    }

    /// Asks for a session: the server runs nothing for it, so sending it again after a
    /// lost answer only leaves an unused session behind, which expires.
    async fn create(&mut self, template: &Template) -> Result<SessionId, ClientError> {
        let new = HeaderValue::from_static("new");
        let (answer, code) = self
            .until_answered(|| template.request(Bytes::new(), new.clone(), 0))
            .await?;
        let id = answer.headers().get(SESSION_NAME);
        match id.and_then(|v| v.to_str().ok()).and_then(SessionId::parse) {
            // 201 for HTTP; 200 with an empty message for a gRPC call.
            Some(id) if answer.status().is_success() && code.is_none() => Ok(id),
            _ => Err(ClientError::Refused {
                status: answer.status(),
                code: code.unwrap_or_else(|| "no-session".into()),
            }),
        }
    }

    /// Sends `request()` until an answer arrives in full; a connection error or an
    /// answer that asks for a later try (busy session, request still running, server
    /// out of budget or sessions) is tried again after a pause, until
    /// [`ClientConfig::retry_for`]. The answer comes with the layer's error code, if
    /// the server answered for the layer.
    async fn until_answered(
        &mut self,
        request: impl Fn() -> Request<Full<Bytes>>,
    ) -> Result<(Response<WholeBody>, Option<String>), ClientError> {
        // Set at the first failure: a call answered at once reads no clock.
        let mut deadline = None;
        let mut backoff = self.config.first_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let last = match self.attempt(request()).await {
                Attempt::Answered(answer) => match refusal(&answer) {
                    Some(code) if RETRY_LATER.contains(&code.as_str()) => {
                        format!("the server asks to send again later: {code}").into()
                    }
                    code => return Ok((answer, code)),
                },
                Attempt::Retry(e) => e,
                Attempt::Fail(e) => return Err(e),
            };
            let now = Instant::now();
            let deadline = *deadline.get_or_insert(now + self.config.retry_for);
            if now + backoff > deadline {
                return Err(ClientError::GaveUp { attempts, last });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.config.max_backoff);
            // ORDERING: a statistic.
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn attempt(&mut self, request: Request<Full<Bytes>>) -> Attempt {
        if let Err(e) = poll_fn(|cx| self.inner.poll_ready(cx)).await {
            return Attempt::Retry(e.into());
        }
        let answer = match self.inner.call(request).await {
            Ok(answer) => answer,
            Err(e) => return Attempt::Retry(e.into()),
        };
        let (parts, body) = answer.into_parts();
        match read_limited(body, self.config.response_limit).await {
            Ok(body) => Attempt::Answered(Response::from_parts(parts, body)),
            Err(ReadError::TooLarge | ReadError::Refused) => {
                Attempt::Fail(ClientError::ResponseTooLarge)
            }
            Err(ReadError::Body(e)) => Attempt::Retry(e),
        }
    }
}

/// The layer's answers that mean "this request has not run; send it again later" (an
/// incomplete body: its bytes were cut on the way, e.g. by a proxy), and the durable
/// store's (exactly-once-postgres) "the database was unavailable" and "the COMMIT's
/// answer was lost: the resend replays or runs it".
const RETRY_LATER: [&str; 7] = [
    "busy",
    "still-running",
    "over-budget",
    "table-full",
    "incomplete-body",
    "store-unavailable",
    "outcome-unknown",
];

/// The layer's error code, if the server answered for the layer.
fn refusal<B>(answer: &Response<B>) -> Option<String> {
    let code = header(answer.headers(), &ERROR_NAME)?.to_str().ok()?;
    Some(code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_are_written_in_decimal() {
        for m in [0, 1, 9, 10, 4711, u64::MAX] {
            assert_eq!(decimal(m), HeaderValue::from(m));
        }
    }
}
