#![doc = include_str!("../README.md")]
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
