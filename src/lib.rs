#![doc = include_str!("../README.md")]
//!
//! # The protocol, and what the crate promises
//!
//! Each handler thread that has read request `m` of a session calls
//! [`SessionState::triage`]:
//!
//! | state \ m       | m < n   | m == n   | m == n + 1                | m > n + 1                     |
//! |-----------------|---------|----------|---------------------------|-------------------------------|
//! | `Ready(n)`      | `Stale` | `Resend` | `Process` → `Processing(m)` | `Process`, [`ProcessGuard::skipped`] > 0 |
//! | `Processing(n)` | `Stale` | `Resend` | `Busy`                    | `Busy`                        |
//!
//! - Exactly one `Process` is handed out per accepted number, as a [`ProcessGuard`] guard;
//!   the guard is the only way to publish, and dropping it (a panic included) abandons
//!   the request: it is never processed a second time.
//! - Happens-before: everything the processor did before
//!   [`ProcessGuard::complete`] happens-before the return of that response from
//!   [`SessionState::wait`], [`SessionState::wait_until`] or [`SessionState::try_get`]
//!   in any thread.
//! - Every change that settles a waiter's outcome wakes it: complete, abandon, and a
//!   triage that moves the session past the number it waits for. Waiters spin a few
//!   dozen times at most, then park on a futex; a publisher makes no system call when
//!   nobody is parked.
//!
//! See [`slot`] for the two response slots and [`baseline`] for the reference model.
//!
//! # Features and their entry points
//!
//! | feature | default | entry point | adds |
//! |---|---|---|---|
//! | (none) | always | [`SessionState`]: `triage`, `wait`, `wait_timeout`, `try_get` | the state machine alone: no `tracing`, no networking |
//! | `transport` | on | `exactly_once::transport::{Server, Client}` | MUSCLE3's MCP over TCP, a thread per connection; `tracing` |
//! | `async` | off | `SessionState::wait_async` | a future that waits for a response; `event-listener` |
//! | `tokio` | off (implies `async`) | `SessionState::wait_async_timeout` | deadline waits on tokio's timer and clock; tokio's cooperative budget |
//! | `futures` | off (implies `async`) | `futures_core::FusedFuture` for the wait futures | `futures::select!` without `.fuse()`; `futures-core` |
//! | `tower` | off (implies `async`, `tokio`) | `exactly_once::tower` | a `tower` layer giving a service exactly-once numbered requests |
//!
//! The state machine alone, for a server of your own:
//!
//! ```toml
//! [dependencies]
//! exactly-once = { version = "0.1", default-features = false }
//! ```

#![warn(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod answer;
pub mod baseline;
mod error;
mod request;
mod seed_compat;
mod session;
pub mod slot;
mod state;
mod sync;
pub mod table;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
#[cfg(feature = "transport")]
#[cfg_attr(docsrs, doc(cfg(feature = "transport")))]
pub mod transport;
mod wait;

pub use error::{InvalidRequestNr, SetResponseError, TryGetError, WaitError, WaitTimeoutError};
pub use request::RequestNr;
pub use session::{
    OwnedProcessGuard, OwnedTriage, Phase, ProcessGuard, SessionState, Status, Triage,
};
pub use slot::{ArcSwapSlot, CountedSlot, Slot};
#[doc(hidden)]
pub use sync::planted_bugs;
#[cfg(feature = "tokio")]
pub use wait::future::TokioDeadline;
#[cfg(feature = "async")]
pub use wait::future::{DeadlineFuture, DeadlineWait, OwnedWaitFuture, WaitFuture};

/// The packed word's internals, for the fuzz targets only (`cargo fuzz` sets `fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::state::{decide, Decision, EncodeError, Fields, Refusal, StateWord, Word};
}

/// A session state whose responses are published through `arc_swap::ArcSwapOption`.
pub type ArcSwapSessionState<T> = SessionState<T, ArcSwapSlot<T>>;
