//! A run: the transaction of one request that triaged to Process, handed to the
//! handler ([`RunTransaction`]) with the key of the run ([`RunKey`]).

use crate::store::{CommitError, PgStore, StoreError};
use axum_core::extract::FromRequestParts;
use deadpool_postgres::{ClientWrapper, Object};
use exactly_once::tower::{SessionId, StoredResponse};
use exactly_once::RequestNr;
use http::request::Parts;
use http::StatusCode;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

/// Which request a run is: its session and number. Its [`Display`](fmt::Display) form,
/// `<session in hex>-<number>`, is the same on every replica and every run of the
/// request: pass it on as the idempotency key of a write elsewhere (a payment API, a
/// message queue), so that a run that did not commit and runs again does not write
/// twice there.
///
/// An axum extractor: a handler behind [`DurableLayer`](crate::DurableLayer) takes it
/// as an argument.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunKey {
    /// The session.
    pub session: SessionId,
    /// The request's number in it.
    pub request: RequestNr,
}

impl fmt::Display for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.session, self.request.get())
    }
}

impl fmt::Debug for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The session id is a credential: Debug shows SessionId's fingerprint only.
        write!(f, "RunKey({:?}, {})", self.session, self.request.get())
    }
}

/// A pooled connection inside a transaction. Dropped without
/// [`release`](Self::release) (a failure, a panic, a handler that kept the
/// transaction), it closes the connection rather than hand it back to the pool inside
/// the transaction: PostgreSQL then rolls the transaction back.
pub(crate) struct InTransaction(Option<Object>);

impl InTransaction {
    pub(crate) fn new(conn: Object) -> InTransaction {
        InTransaction(Some(conn))
    }

    pub(crate) fn client(&self) -> &ClientWrapper {
        self.0.as_ref().expect("present until released or dropped")
    }

    /// The transaction has ended: the connection goes back to the pool.
    pub(crate) fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for InTransaction {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(Object::take(conn));
        }
    }
}

/// The run's transaction, shared with the handler through the request's extensions.
type Shared = Arc<Mutex<Option<InTransaction>>>;

/// The transaction of the run that the handler is in: its writes commit together with
/// the run's completion record, or not at all. Run statements with
/// [`client`](Self::client); do not end the transaction (no `COMMIT`, `ROLLBACK`), the
/// layer does.
///
/// An axum extractor (axum answers 500 if the request did not come through
/// [`DurableLayer`](crate::DurableLayer)'s run).
#[derive(Clone)]
pub struct RunTransaction {
    shared: Shared,
}

impl fmt::Debug for RunTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunTransaction").finish_non_exhaustive()
    }
}

/// The run's transaction has ended (the handler kept its [`RunTransaction`] after it
/// answered): nothing more can be written in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunEnded;

impl fmt::Display for RunEnded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the run's transaction has ended")
    }
}

impl std::error::Error for RunEnded {}

/// The connection of a run's transaction, held by the handler until dropped
/// (dereferences to a `tokio_postgres::Client`, with deadpool's statement cache).
pub struct TransactionClient<'a> {
    guard: MutexGuard<'a, Option<InTransaction>>,
}

impl fmt::Debug for TransactionClient<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionClient").finish_non_exhaustive()
    }
}

impl Deref for TransactionClient<'_> {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        self.guard
            .as_ref()
            .expect("checked when the client was handed out")
            .client()
    }
}

impl RunTransaction {
    /// The connection inside the run's transaction, once no other part of the handler
    /// holds it.
    pub async fn client(&self) -> Result<TransactionClient<'_>, RunEnded> {
        let guard = self.shared.lock().await;
        if guard.is_none() {
            return Err(RunEnded);
        }
        Ok(TransactionClient { guard })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RunTransaction {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<RunTransaction>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no run's transaction: the route is not behind DurableLayer",
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RunKey {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<RunKey>().copied().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no run key: the route is not behind DurableLayer",
        ))
    }
}

/// A request's run: its open transaction, its key, and how many numbers it skipped.
pub(crate) struct Run {
    store: PgStore,
    shared: Shared,
    key: RunKey,
    skipped: u64,
}

impl Run {
    pub(crate) fn new(store: PgStore, conn: InTransaction, key: RunKey, skipped: u64) -> Run {
        Run {
            store,
            shared: Arc::new(Mutex::new(Some(conn))),
            key,
            skipped,
        }
    }

    pub(crate) fn key(&self) -> RunKey {
        self.key
    }

    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }

    pub(crate) fn transaction(&self) -> RunTransaction {
        RunTransaction {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The transaction back from the handler, which has answered. A handler that still
    /// holds its [`TransactionClient`] (in a task it left running) gets nothing: the
    /// run fails rather than wait for it.
    fn take(&self) -> Option<InTransaction> {
        self.shared.try_lock().ok()?.take()
    }

    /// Records `response` and commits the handler's writes with it.
    pub(crate) async fn commit(self, response: &StoredResponse) -> Result<(), CommitError> {
        match self.take() {
            Some(conn) => self.store.commit(conn, self.key, response).await,
            None => Err(CommitError::RolledBack(StoreError::TransactionHeld)),
        }
    }

    /// Rolls the handler's writes back.
    pub(crate) async fn rollback(self) {
        if let Some(conn) = self.take() {
            let _ = self.store.rollback(conn).await;
        }
    }
}
