//! Waiting for a request's outcome.

#[cfg(feature = "async")]
pub(crate) mod future;
#[cfg(feature = "async")]
pub(crate) mod waiters;
