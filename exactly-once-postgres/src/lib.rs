//! Durable exactly-once on PostgreSQL: a session store for the
//! [`exactly-once`](exactly_once) HTTP protocol that any replica can serve any session
//! from, and that loses nothing and runs nothing twice when a replica is killed or the
//! database restarts.
//!
//! The completion record of a request (its session, its number, its stored response)
//! is written in the same transaction as the handler's own writes, before COMMIT (as in
//! RIFL, Lee et al., SOSP 2015): either both commit or neither does.
//!
//! # The API (stable for the deployment work; changes are named in commit messages)
//!
//! ```text
//! // Schema (schema.rs)
//! pub const SCHEMA_VERSION: i32;
//! pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<i32, MigrateError>;
//!
//! // The store (store.rs): one per process, cheap to clone, shared by every layer
//! // instance of the process.
//! pub struct StoreConfig { pub idle_expiry: Duration, pub response_limit: usize,
//!                          pub request_limit: usize, pub local_sessions: usize }
//! impl Default for StoreConfig;
//! pub struct PgStore;
//! impl PgStore {
//!     pub fn new(pool: deadpool_postgres::Pool, config: StoreConfig) -> PgStore;
//!     pub fn pool(&self) -> &deadpool_postgres::Pool;
//!     pub async fn create_session(&self) -> Result<SessionId, StoreError>;
//!     pub async fn end_session(&self, session: SessionId) -> Result<bool, StoreError>;
//!     pub async fn sweep(&self) -> Result<u64, StoreError>;   // expire idle sessions
//!     pub fn spawn_sweeper(&self, every: Duration) -> tokio::task::JoinHandle<()>;
//!     pub fn counters(&self) -> Counters;                      // statements, round trips
//! }
//! pub struct Counters { pub statements: u64, pub round_trips: u64, pub local_replays: u64 }
//! pub enum StoreError { Pool(..), Database(tokio_postgres::Error), .. }
//!
//! // The run's transaction (run.rs), handed to the handler in the request's
//! // extensions; axum extractors for both.
//! #[derive(Clone)] pub struct RunTransaction;   // FromRequestParts
//! impl RunTransaction { pub async fn client(&self) -> impl Deref<Target = tokio_postgres::Client>; }
//! #[derive(Clone, Copy)] pub struct RunKey { pub session: SessionId, pub request: RequestNr }
//!                                               // FromRequestParts; Display: "<session hex>-<number>"
//!
//! // The HTTP layer (layer.rs): the core's protocol (headers, problem+json refusals,
//! // whole requests, stored responses) on this store.
//! pub struct DurableLayer;
//! impl DurableLayer { pub fn new(store: PgStore) -> DurableLayer; }
//! impl<S> tower_layer::Layer<S> for DurableLayer { type Service = Durable<S>; }
//! pub struct Durable<S>;   // Service<http::Request<B>, Response = http::Response<WholeBody>>
//!                          // for S: Service<http::Request<WholeBody>, Response = http::Response<R>>
//!
//! // Tests, the durable soak and the benchmark (feature `testing`, testing.rs)
//! pub struct TestPostgres;  // start(name) -> Option<Self>, config(), fresh_database(),
//!                           // restart(), can_restart(), socket_dir()
//! ```

#![warn(missing_docs, missing_debug_implementations)]

mod layer;
mod local;
mod record;
mod run;
mod schema;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use layer::{Durable, DurableFuture, DurableLayer};
pub use run::{RunEnded, RunKey, RunTransaction, TransactionClient};
pub use schema::{migrate, MigrateError, SCHEMA_VERSION};
pub use store::{pool, Counters, PgStore, StoreConfig, StoreError};
