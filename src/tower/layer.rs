//! The server layers: [`ExactlyOnceLayer`] (typed errors) and [`HttpLayer`] (errors
//! answered as HTTP responses, ready for axum and hyper).

use super::error_responses::HttpErrors;
use super::key::HeaderKey;
use super::service::ExactlyOnce;
use super::sessions::{SessionLimits, Sessions};
use super::store::{HttpStore, Store};
use std::fmt;
use std::sync::Arc;
use tower_layer::Layer;

/// Wraps a service so that each (session, request number) runs it at most once; see the
/// [module docs](super). Every service it makes shares one session table.
pub struct ExactlyOnceLayer<K, St: Store> {
    key: K,
    store: St,
    sessions: Arc<Sessions<St::Stored>>,
}

impl<K, St: Store> ExactlyOnceLayer<K, St> {
    /// A layer taking keys with `key`, keeping responses with `store`, and holding
    /// sessions within `limits`.
    pub fn new(key: K, store: St, limits: SessionLimits) -> Self {
        ExactlyOnceLayer {
            key,
            store,
            sessions: Arc::new(Sessions::new(limits)),
        }
    }
}

impl ExactlyOnceLayer<HeaderKey, HttpStore> {
    /// The HTTP layer: keys from headers, bodies buffered up to `body_limit` bytes.
    pub fn http(body_limit: usize, limits: SessionLimits) -> Self {
        ExactlyOnceLayer::new(HeaderKey, HttpStore::new(body_limit), limits)
    }
}

impl<K: Clone, St: Store + Clone> Clone for ExactlyOnceLayer<K, St> {
    fn clone(&self) -> Self {
        ExactlyOnceLayer {
            key: self.key.clone(),
            store: self.store.clone(),
            sessions: Arc::clone(&self.sessions),
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
            Arc::clone(&self.sessions),
        )
    }
}

/// [`ExactlyOnceLayer::http`] whose errors are answered with
/// [`Error::to_response`](super::Error::to_response): its services never fail, as axum's
/// routers require.
#[derive(Clone, Debug)]
pub struct HttpLayer {
    layer: ExactlyOnceLayer<HeaderKey, HttpStore>,
}

impl HttpLayer {
    /// Response bodies buffered up to `body_limit` bytes, sessions within `limits`.
    pub fn new(body_limit: usize, limits: SessionLimits) -> Self {
        HttpLayer {
            layer: ExactlyOnceLayer::http(body_limit, limits),
        }
    }
}

impl<S> Layer<S> for HttpLayer {
    type Service = HttpErrors<ExactlyOnce<S, HeaderKey, HttpStore>>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpErrors::new(self.layer.layer(inner))
    }
}
