//! The one place that knows about loom.
//!
//! Everything the state machine shares between threads comes from here: the atomics,
//! the cell that holds the counted slot's response, the futex the waiters park on, the
//! backoff used while readers drain, and the pointer cell behind [`ArcSwapSlot`].
//! Under `cfg(loom)` each is replaced by a loom-visible stand-in (in `model.rs`):
//!
//! - the futex is a real check-then-wait (a loom `Mutex` + `Condvar` around the epoch
//!   word), so a lost wake-up shows up as a loom deadlock rather than a spin;
//! - the arc-swap stand-in is a loom `AtomicPtr` with exactly the orderings arc-swap
//!   documents for `store` (release) and `load` (acquire), and no lock, so it cannot
//!   hide a too-weak ordering on the state word. It leaks what it replaces: reclamation
//!   is arc-swap's job and out of scope of the model.
//!
//! The bugs the models plant (`planted.rs`) exist only in the loom build; elsewhere
//! `planted_bug!` is a constant `false` that the compiler removes.
//!
//! [`ArcSwapSlot`]: crate::ArcSwapSlot

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};

#[cfg(not(loom))]
mod futex;
#[cfg(not(loom))]
pub(crate) use futex::Futex;

#[cfg(loom)]
mod model;
#[cfg(loom)]
pub(crate) use model::{ArcCell, Futex};

#[cfg(loom)]
mod planted;
#[cfg(loom)]
pub(crate) use planted::{planted as is_planted, Bug};

/// Whether this is the model-checked build, where every spin is another branch for
/// loom to explore and proves nothing.
pub(crate) const MODEL_CHECKED: bool = cfg!(loom);

/// `planted_bug!(Bug)`: whether a loom model planted that bug; the constant `false`
/// outside the loom build, so the real code never reads a switch.
#[cfg(loom)]
macro_rules! planted_bug {
    ($bug:ident) => {
        $crate::sync::is_planted($crate::sync::Bug::$bug)
    };
}
#[cfg(not(loom))]
macro_rules! planted_bug {
    ($bug:ident) => {
        false
    };
}
pub(crate) use planted_bug;

/// The switches the loom models use to plant bugs (empty outside the loom build).
#[doc(hidden)]
pub mod planted_bugs {
    #[cfg(loom)]
    pub use super::planted::{plant, skip_epoch_bump, Bug};
}

/// The pointer cell behind `ArcSwapSlot`.
#[cfg(not(loom))]
pub(crate) type ArcCell<T> = arc_swap::ArcSwapOption<T>;

/// Backoff for the short waits that are not parks (readers leaving their window, a
/// triage closing its door).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    #[cfg(not(loom))]
    inner: crossbeam_utils::Backoff,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Spin a little, then yield the processor: the thread being waited for may
    /// have been preempted, and on two cores it needs ours.
    #[inline]
    pub(crate) fn snooze(&self) {
        #[cfg(not(loom))]
        self.inner.snooze();
        #[cfg(loom)]
        model::snooze();
    }
}

mod response_cell;
pub(crate) use response_cell::ResponseCell;

/// A new count of the `Arc` behind `raw`, or `None` for null: what the pointer cells
/// (the counted slot's, the model's arc-swap stand-in) hand their readers.
///
/// # Safety
/// `raw` is null or came from `Arc::<T>::into_raw`, and a count the caller does not own
/// keeps it alive for the call.
#[inline]
pub(crate) unsafe fn clone_raw<T>(raw: *const T) -> Option<std::sync::Arc<T>> {
    if raw.is_null() {
        return None;
    }
    // SAFETY: per the contract; the new count is the returned `Arc`'s.
    unsafe {
        std::sync::Arc::increment_strong_count(raw);
        Some(std::sync::Arc::from_raw(raw))
    }
}
