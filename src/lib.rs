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

#![warn(missing_docs, missing_debug_implementations)]

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
pub mod tower;
pub mod transport;
mod wait;

pub use error::{InvalidRequestNr, SetResponseError, TryGetError, WaitError, WaitTimeoutError};
pub use request::RequestNr;
pub use session::{Phase, ProcessGuard, SessionState, Status, Triage};
pub use slot::{ArcSwapSlot, CountedSlot, Slot};
#[doc(hidden)]
pub use sync::planted_bugs;
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
