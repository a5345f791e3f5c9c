//! The `Idempotency-Key` mode: exactly-once for the header that API clients already
//! send (Stripe, Adyen, the IETF httpapi draft "The Idempotency-Key HTTP Header
//! Field"), with no client of ours: curl is enough.
//!
//! ```
//! use axum::{body::Body, extract::Request, routing::post, Router, ServiceExt};
//! use exactly_once::table::Budget;
//! use exactly_once::tower::IdempotencyLayer;
//! use std::time::Duration;
//! use tower_layer::Layer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let router = Router::new()
//!     .route("/charges", post(|body: String| async move { format!("charged {body}") }))
//!     .with_state(());
//! let layer = IdempotencyLayer::new(1 << 20, Budget::new(64 << 20))
//!     .with_retention(Duration::from_secs(24 * 3600));
//! let app = ServiceExt::<Request>::into_make_service(layer.answering(Body::new).layer(router));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # drop(listener); let _ = app;
//! // axum::serve(listener, app).await.unwrap();
//! // curl -d 5 -H 'Idempotency-Key: "order-17"' http://HOST/charges   (runs)
//! // curl -d 5 -H 'Idempotency-Key: "order-17"' http://HOST/charges   (replayed)
//! # }
//! ```
//!
//! # What a request gets
//!
//! | request | answer |
//! |---|---|
//! | a new key | the handler runs once; its answer is kept for the key |
//! | the key again, same fingerprint, run over | the kept status, headers and body (errors included), with [`REPLAYED_HEADER`]`: true` |
//! | the key again, same fingerprint, run going on | waits for that run and gets its answer, marked as a replay (default); `409` `idempotency-key-in-flight` with [`conflicting_in_flight`](IdempotencyLayer::conflicting_in_flight) |
//! | the key again, another fingerprint | `422` `idempotency-key-reused`; nothing runs, the record stays as it was |
//! | a key that is empty, over [`with_max_key_len`](IdempotencyLayer::with_max_key_len) (default 255 bytes), not visible ASCII, a malformed sf-string, or given twice | `400` `bad-idempotency-key` |
//! | no key | runs unprotected; `400` `idempotency-key-missing` with [`requiring_key`](IdempotencyLayer::requiring_key) |
//! | a new key when the table holds [`with_max_records`](IdempotencyLayer::with_max_records) records, none due | `503` `table-full` with `Retry-After`; nothing runs |
//! | a new key the memory budget cannot take, even after evicting detached sessions of a shared session table | `503` `over-budget` with `Retry-After`; nothing runs |
//! | a key whose run failed (the handler's service errored or panicked) | `500` `abandoned`, for the rest of its retention; it never runs again |
//!
//! Every refusal is `application/problem+json` (RFC 9457) with a stable type
//! ([`problems`](super::problems) lists them).
//!
//! **Key.** The value is an RFC 8941 sf-string (`"…"`) or the same key unquoted
//! ([`parse_idempotency_key`]). A record is found by its scope, the method, the path
//! and the key: a [`Scope`] is a function of the request (default: the digest of the
//! `Authorization` header), so that a client can neither read nor block another's
//! records.
//!
//! **Fingerprint.** The digest of the query, the body and the headers named with
//! [`fingerprinting`](IdempotencyLayer::fingerprinting), kept with the record. The
//! whole body is read (within the request limit, charged to the budget as it arrives)
//! before the key is looked up: a body cut in transit leaves no record, and the resend
//! runs.
//!
//! **Retention, not eviction.** A record is kept for
//! [`with_retention`](IdempotencyLayer::with_retention) (default 24 h) after its run ends, and never
//! removed earlier, whatever the memory pressure: an evicted key would run again.
//! After its retention a key is new: sent again, it runs again. That is the contract
//! the published period states; a client retries within it.
//!
//! **Waiting.** A duplicate of a running request waits for its outcome, however long
//! it runs, holding neither its request nor any of the budget; at most
//! [`with_max_waiting_copies`](IdempotencyLayer::with_max_waiting_copies) per key
//! (default 1024), past which a copy gets `503` `still-running`. The record is a
//! one-request session: its [`SessionState`](crate::SessionState) decides which copy
//! runs, as it does for resends of numbered requests.
//!
//! Where records live ([`IdempotencyRecords`], in memory) is kept apart from what
//! decides which requests share one (`request.rs`: key, scope, fingerprint), so that a
//! store that outlives the process can keep the same records.

mod key;
mod records;
mod request;
mod service;

pub use key::{
    parse_idempotency_key, IdempotencyKeyError, DEFAULT_MAX_KEY_LEN, IDEMPOTENCY_KEY_HEADER,
    REPLAYED_HEADER,
};
pub use records::IdempotencyRecords;
pub use request::{digest, Scope};
pub use service::Idempotent;

use super::body::WholeBody;
use super::error::Problem;
use super::error_responses::HttpErrors;
use super::store::{HttpStore, StoredResponse};
use crate::table::{Budget, SessionTable, TableConfig};
use bytes::Bytes;
use http::{HeaderName, Response, StatusCode};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// The default retention of a record after its run ends: 24 hours.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The default most records: 1,048,576.
pub const DEFAULT_MAX_RECORDS: usize = 1 << 20;

/// What a duplicate of a request still running gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InFlight {
    /// The running copy's answer, once it has one.
    Wait,
    /// `409` at once (the draft's behaviour).
    Conflict,
}

/// How the mode treats requests; shared by every service of one layer.
struct Config {
    scope: Scope,
    fingerprinted: Vec<HeaderName>,
    max_key_len: usize,
    required: bool,
    in_flight: InFlight,
    max_waiting: u32,
    max_records: usize,
    retention: Duration,
}

/// The `Idempotency-Key` mode of the HTTP layer; see the [module docs](self). Its
/// services answer every refusal as an HTTP response (they never fail), with bodies of
/// type `A` ([`WholeBody`] unless [`answering`](Self::answering) says otherwise).
/// Every service it makes, and every clone, shares its records; configure it before
/// making services (each `with_…` starts from an empty table of records).
pub struct IdempotencyLayer<A: Send + 'static = WholeBody> {
    config: Arc<Config>,
    store: HttpStore<A>,
    records: IdempotencyRecords,
    sessions: SessionTable<StoredResponse>,
}

impl IdempotencyLayer {
    /// Request and response bodies buffered up to `body_limit` bytes, records and
    /// bodies counted in `budget`.
    pub fn new(body_limit: usize, budget: Arc<Budget>) -> Self {
        let store = HttpStore::new(body_limit);
        let sessions = SessionTable::new(TableConfig::default(), budget)
            .with_weigher(move |r| crate::tower::Store::weigh(&store, r));
        let config = Config {
            scope: Scope::default(),
            fingerprinted: Vec::new(),
            max_key_len: DEFAULT_MAX_KEY_LEN,
            required: false,
            in_flight: InFlight::Wait,
            max_waiting: 1024,
            max_records: DEFAULT_MAX_RECORDS,
            retention: DEFAULT_RETENTION,
        };
        IdempotencyLayer::from_parts(config, store, sessions)
    }
}

impl<A: Send + 'static> IdempotencyLayer<A> {
    fn from_parts(
        config: Config,
        store: HttpStore<A>,
        sessions: SessionTable<StoredResponse>,
    ) -> Self {
        let budget = Arc::clone(sessions.budget());
        IdempotencyLayer {
            records: IdempotencyRecords::new(config.max_records, config.retention, budget),
            config: Arc::new(config),
            store,
            sessions,
        }
    }

    /// The layer with its configuration changed by `change`, and a new table of records.
    fn configured(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = Arc::try_unwrap(self.config).unwrap_or_else(|shared| Config {
            scope: shared.scope.clone(),
            fingerprinted: shared.fingerprinted.clone(),
            ..*shared
        });
        change(&mut config);
        IdempotencyLayer::from_parts(config, self.store, self.sessions)
    }

    /// Records kept for `retention` after their run ends (default 24 h, [`DEFAULT_RETENTION`]).
    pub fn with_retention(self, retention: Duration) -> Self {
        self.configured(|c| c.retention = retention)
    }

    /// At most `max` records (default [`DEFAULT_MAX_RECORDS`]); past that a new key
    /// gets `503` until records are due.
    pub fn with_max_records(self, max: usize) -> Self {
        self.configured(|c| c.max_records = max)
    }

    /// Keys of at most `max` bytes (default 255, [`DEFAULT_MAX_KEY_LEN`]).
    pub fn with_max_key_len(self, max: usize) -> Self {
        self.configured(|c| c.max_key_len = max)
    }

    /// Requests without a key are refused (`400` `idempotency-key-missing`) instead of
    /// run unprotected.
    pub fn requiring_key(self) -> Self {
        self.configured(|c| c.required = true)
    }

    /// A duplicate of a request still running gets `409` at once, as the draft says,
    /// instead of waiting for the running copy's answer.
    pub fn conflicting_in_flight(self) -> Self {
        self.configured(|c| c.in_flight = InFlight::Conflict)
    }

    /// At most `copies` duplicates of one key wait at once for its run (default 1024);
    /// past that one gets `503` `still-running`.
    pub fn with_max_waiting_copies(self, copies: u32) -> Self {
        self.configured(|c| c.max_waiting = copies)
    }

    /// Keys scoped by `scope` instead of the `Authorization` header's digest.
    pub fn scoped_by(self, scope: Scope) -> Self {
        self.configured(|c| c.scope = scope)
    }

    /// The values of the headers `names` count in the fingerprint too, besides the
    /// query and the body.
    pub fn fingerprinting(self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        let names: Vec<_> = names.into_iter().collect();
        self.configured(|c| c.fingerprinted = names)
    }

    /// Request bodies of at most `limit` bytes (default: the response body limit).
    pub fn with_request_limit(mut self, limit: usize) -> Self {
        self.store = self.store.with_request_limit(limit);
        self
    }

    /// Room for new records and requests made, when the budget is short, by evicting
    /// the detached sessions of `sessions` (e.g. an [`HttpLayer`](super::HttpLayer)'s
    /// table, sharing its budget); records are never evicted.
    pub fn sharing(self, sessions: SessionTable<StoredResponse>) -> Self {
        let IdempotencyLayer { config, store, .. } = self;
        let config = Arc::try_unwrap(config).unwrap_or_else(|shared| Config {
            scope: shared.scope.clone(),
            fingerprinted: shared.fingerprinted.clone(),
            ..*shared
        });
        IdempotencyLayer::from_parts(config, store, sessions)
    }

    /// The same layer answering with bodies of type `C` made by `make` (e.g. axum's
    /// `Body::new`), and handing requests on in them; see [`HttpStore::answering`].
    pub fn answering<C: Send + 'static>(self, make: fn(WholeBody) -> C) -> IdempotencyLayer<C> {
        IdempotencyLayer {
            config: self.config,
            store: self.store.answering(make),
            records: self.records,
            sessions: self.sessions,
        }
    }

    /// The records.
    pub fn records(&self) -> &IdempotencyRecords {
        &self.records
    }
}

impl<A: Send + 'static> Clone for IdempotencyLayer<A> {
    fn clone(&self) -> Self {
        IdempotencyLayer {
            config: Arc::clone(&self.config),
            store: self.store,
            records: self.records.clone(),
            sessions: self.sessions.clone(),
        }
    }
}

impl<A: Send + 'static> fmt::Debug for IdempotencyLayer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

// Shared by the tasks of a server: asserted here, not left to inference.
const _: () = {
    const fn shared<T: Send + Sync + Clone>() {}
    shared::<IdempotencyLayer>();
    shared::<IdempotencyRecords>();
    shared::<Scope>();
};

impl<S, A: Send + 'static> Layer<S> for IdempotencyLayer<A> {
    type Service = HttpErrors<Idempotent<S, A>, A>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpErrors::new(Idempotent::new(inner, self), self.store)
    }
}

/// The mode's own refusals (the layer's shared ones, such as `table-full`, are
/// [`Error`](super::Error)s); nothing ran for any of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdempotencyError {
    /// The key is missing where required, malformed, or given twice (400).
    Key(IdempotencyKeyError),
    /// The key has a record made by a request with another fingerprint (422).
    KeyReused,
    /// The key's request is still running, and the layer answers duplicates with the
    /// draft's conflict (409).
    InFlight,
}

impl IdempotencyError {
    /// The problem's code: the end of its type, and the
    /// [`ERROR_HEADER`](super::ERROR_HEADER) value.
    pub fn code(self) -> &'static str {
        self.problem().code
    }

    /// The HTTP status: 400, 422 or 409.
    pub fn status(self) -> StatusCode {
        self.problem().status
    }

    fn problem(self) -> Problem {
        let (code, title, status, retry_after) = match self {
            IdempotencyError::Key(IdempotencyKeyError::Missing) => (
                "idempotency-key-missing",
                "Idempotency-Key required",
                StatusCode::BAD_REQUEST,
                None,
            ),
            IdempotencyError::Key(_) => (
                "bad-idempotency-key",
                "Malformed Idempotency-Key",
                StatusCode::BAD_REQUEST,
                None,
            ),
            IdempotencyError::KeyReused => (
                "idempotency-key-reused",
                "Idempotency-Key reused for another request",
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
            ),
            IdempotencyError::InFlight => (
                "idempotency-key-in-flight",
                "Request with this Idempotency-Key still running",
                StatusCode::CONFLICT,
                Some(1),
            ),
        };
        Problem {
            code,
            title,
            status,
            retry_after,
        }
    }

    /// The answer: an RFC 9457 problem, with a body made by `make`.
    pub(crate) fn to_response_with<A>(self, make: fn(WholeBody) -> A) -> Response<A> {
        self.problem()
            .to_response(&self.to_string(), |json| make(WholeBody::from(json)))
    }

    /// The answer: an RFC 9457 problem (`application/problem+json`) with the
    /// [`ERROR_HEADER`](super::ERROR_HEADER) code.
    pub fn to_response(self) -> Response<Bytes> {
        self.problem().to_response(&self.to_string(), |json| json)
    }
}

impl fmt::Display for IdempotencyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdempotencyError::Key(e) => write!(f, "{e}"),
            IdempotencyError::KeyReused => f.write_str(
                "this Idempotency-Key was used for a request with another body or query; nothing ran",
            ),
            IdempotencyError::InFlight => {
                f.write_str("the request with this Idempotency-Key is still running; try again later")
            }
        }
    }
}

impl std::error::Error for IdempotencyError {}
