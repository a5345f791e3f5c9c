//! The server layers: [`ExactlyOnceLayer`] (typed errors) and [`HttpLayer`] (errors
//! answered as HTTP responses, ready for axum and hyper).

use super::body::WholeBody;
use super::error_responses::HttpErrors;
use super::key::HeaderKey;
use super::service::{ExactlyOnce, Waits};
use super::store::{HttpStore, Store, StoredResponse};
use crate::table::{Budget, SessionTable, TableConfig};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Wraps a service so that each (session, request number) runs it at most once; see the
/// [module docs](super). Every service it makes shares one session table.
pub struct ExactlyOnceLayer<K, St: Store> {
    key: K,
    store: St,
    sessions: SessionTable<St::Stored>,
    waits: Waits,
}

impl<K, St: Store> ExactlyOnceLayer<K, St> {
    /// A layer taking keys with `key`, keeping responses with `store`, in `sessions`
    /// (which may be shared with other servers; build it
    /// [`with_weigher`](SessionTable::with_weigher) to count retained responses in its
    /// budget).
    pub fn new(key: K, store: St, sessions: SessionTable<St::Stored>) -> Self {
        ExactlyOnceLayer {
            key,
            store,
            sessions,
            waits: Waits::default(),
        }
    }

    /// How long a resend waits for the copy that runs the request before it is answered
    /// [`Error::ResendTimedOut`](super::Error::ResendTimedOut) (default: as long as
    /// that copy runs).
    pub fn with_resend_timeout(mut self, timeout: Duration) -> Self {
        self.waits.timeout = Some(timeout);
        self
    }

    /// How many copies of one session's requests may wait at once for the copy that
    /// runs theirs (default 16); past that a copy is answered
    /// [`Error::ResendTimedOut`](super::Error::ResendTimedOut) (503, `Retry-After`)
    /// at once. Each waiting copy holds a task and its connection, and a client needs
    /// one copy per reconnect: the cap keeps one session from holding many.
    pub fn with_max_waiting_copies(mut self, copies: u32) -> Self {
        self.waits.max_copies = copies;
        self
    }

    /// The session table.
    pub fn sessions(&self) -> &SessionTable<St::Stored> {
        &self.sessions
    }
}

impl<St: Store + Clone + Send + Sync + 'static> ExactlyOnceLayer<HeaderKey, St> {
    /// Keys from headers, responses kept by `store`, a table of its own within
    /// `config` whose retained responses are weighed against `budget`.
    pub fn with_table(store: St, config: TableConfig, budget: Arc<Budget>) -> Self {
        let weigher = store.clone();
        let table = SessionTable::new(config, budget).with_weigher(move |r| weigher.weigh(r));
        ExactlyOnceLayer::new(HeaderKey::new(), store, table)
    }
}

impl ExactlyOnceLayer<HeaderKey, HttpStore> {
    /// The HTTP layer: keys from headers, request and response bodies buffered up to
    /// `body_limit` bytes, sessions within `config`, retained responses weighed against
    /// `budget`.
    pub fn http(body_limit: usize, config: TableConfig, budget: Arc<Budget>) -> Self {
        ExactlyOnceLayer::with_table(HttpStore::new(body_limit), config, budget)
    }
}

impl<K: Clone, St: Store + Clone> Clone for ExactlyOnceLayer<K, St> {
    fn clone(&self) -> Self {
        ExactlyOnceLayer {
            key: self.key.clone(),
            store: self.store.clone(),
            sessions: self.sessions.clone(),
            waits: self.waits,
        }
    }
}

impl<K, St: Store> fmt::Debug for ExactlyOnceLayer<K, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExactlyOnceLayer").finish_non_exhaustive()
    }
}

impl<S, K: Clone, St: Store + Clone> Layer<S> for ExactlyOnceLayer<K, St> {
    type Service = ExactlyOnce<S, K, St>;

    fn layer(&self, inner: S) -> Self::Service {
        ExactlyOnce::new(
            inner,
            self.key.clone(),
            self.store.clone(),
            self.sessions.clone(),
            self.waits,
        )
    }
}

/// [`ExactlyOnceLayer::http`] whose errors are answered with
/// [`Error::to_response`](super::Error::to_response): its services never fail, as axum's
/// routers require. Its answers have bodies of type `A`: [`WholeBody`] (the bytes, then
/// the trailers) unless [`answering`](Self::answering) says otherwise (e.g. axum's
/// `Body::new`, to wrap a whole `Router` served by `axum::serve`).
pub struct HttpLayer<A: Send + 'static = WholeBody> {
    layer: ExactlyOnceLayer<HeaderKey, HttpStore<A>>,
}

impl<A: Send + 'static> Clone for HttpLayer<A> {
    fn clone(&self) -> Self {
        HttpLayer {
            layer: self.layer.clone(),
        }
    }
}

impl<A: Send + 'static> fmt::Debug for HttpLayer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpLayer").finish_non_exhaustive()
    }
}

impl HttpLayer {
    /// Request and response bodies buffered up to `body_limit` bytes (see
    /// [`with_request_limit`](Self::with_request_limit)), sessions within `config`,
    /// retained responses weighed against `budget`.
    pub fn new(body_limit: usize, config: TableConfig, budget: Arc<Budget>) -> Self {
        ExactlyOnceLayer::http(body_limit, config, budget).into()
    }
}

impl<A: Send + 'static> HttpLayer<A> {
    /// See [`ExactlyOnceLayer::with_resend_timeout`].
    pub fn with_resend_timeout(self, timeout: Duration) -> Self {
        self.layer.with_resend_timeout(timeout).into()
    }

    /// See [`ExactlyOnceLayer::with_max_waiting_copies`].
    pub fn with_max_waiting_copies(self, copies: u32) -> Self {
        self.layer.with_max_waiting_copies(copies).into()
    }

    /// The same layer taking request bodies of at most `limit` bytes (default: the
    /// response body limit); see [`HttpStore::with_request_limit`].
    pub fn with_request_limit(self, limit: usize) -> Self {
        let mut layer = self.layer;
        layer.store = layer.store.with_request_limit(limit);
        layer.into()
    }

    /// The same layer letting requests that carry neither key header through to the
    /// inner service, unprotected, when `pass(method, uri)` says so (health checks,
    /// CORS preflights); see [`HeaderKey::letting_through`]. Every other request still
    /// needs its key.
    pub fn letting_through(
        self,
        pass: impl Fn(&http::Method, &http::Uri) -> bool + Send + Sync + 'static,
    ) -> Self {
        let mut layer = self.layer;
        layer.key = layer.key.letting_through(pass);
        layer.into()
    }

    /// The same layer (the same session table) answering with bodies of type `C` made
    /// by `make` (e.g. axum's `Body::new`), and handing requests to the inner service in
    /// them; see [`HttpStore::answering`].
    pub fn answering<C: Send + 'static>(self, make: fn(WholeBody) -> C) -> HttpLayer<C> {
        let ExactlyOnceLayer {
            key,
            store,
            sessions,
            waits,
        } = self.layer;
        let layer = ExactlyOnceLayer {
            key,
            store: store.answering(make),
            sessions,
            waits,
        };
        HttpLayer { layer }
    }

    /// The session table.
    pub fn sessions(&self) -> &SessionTable<StoredResponse> {
        self.layer.sessions()
    }
}

impl<A: Send + 'static> From<ExactlyOnceLayer<HeaderKey, HttpStore<A>>> for HttpLayer<A> {
    fn from(layer: ExactlyOnceLayer<HeaderKey, HttpStore<A>>) -> Self {
        HttpLayer { layer }
    }
}

impl<S, A: Send + 'static> Layer<S> for HttpLayer<A> {
    type Service = HttpErrors<ExactlyOnce<S, HeaderKey, HttpStore<A>>, A>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpErrors::new(self.layer.layer(inner), self.layer.store)
    }
}
