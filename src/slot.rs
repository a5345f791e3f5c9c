//! Where a session keeps the response of its newest request.
//!
//! Two slots sit behind the same [`SessionState`](crate::SessionState) API:
//!
//! - [`CountedSlot`] (the default): a plain cell. Readers announce themselves in the
//!   state word's reader count, and the thread that starts the next request waits for
//!   the count to drain before it drops the old response. Publishing is one write and
//!   costs the same however many threads exist.
//! - [`ArcSwapSlot`]: an `arc_swap::ArcSwapOption`. Readers need no count, but every
//!   `store` walks a list with an entry for each thread that ever loaded from any
//!   `ArcSwap` in the process, and the list never shrinks: with a thread per connection
//!   a publish costs microseconds. Kept selectable for workloads with few threads.

use crate::sync::{ArcCell, ResponseCell};
use std::fmt;
use std::sync::Arc;

/// A response slot; see the [module docs](self). Sealed: only this crate's slots exist.
pub trait Slot<T>: sealed::SlotImpl<T> {}

pub(crate) mod sealed {
    use std::sync::Arc;

    /// The slot operations. Which thread may call which is decided by the state word;
    /// the `unsafe` contracts below name the states.
    pub trait SlotImpl<T>: Send + Sync + Sized {
        /// Whether readers must be counted in the state word (and drained before
        /// `take`/`put`) to keep the slot's contents alive while they clone them.
        const COUNTS_READERS: bool;

        /// A slot with no response (the state `Ready(0)`).
        fn empty() -> Self;

        /// Takes the old response out, if this slot kind lets it go before the new
        /// one is put in, for the caller to drop while it owns the new request.
        ///
        /// # Safety
        /// The caller owns `Processing(m)` and, for a counting slot, has drained the
        /// readers that were inside when it began; no other thread can access the
        /// slot.
        unsafe fn take(&self) -> Option<Arc<T>>;

        /// Publishes the response of the request being processed, and hands back
        /// what it replaced, for the caller to drop while it still owns the request.
        ///
        /// # Safety
        /// As for `take`: the caller owns `Processing(m)`.
        unsafe fn put(&self, response: Arc<T>) -> Option<Arc<T>>;

        /// A copy of the response.
        ///
        /// # Safety
        /// For a counting slot, the caller is registered as a reader of a `Ready` word.
        /// (A non-counting slot is safe to read at any time; the caller re-checks the
        /// word to know whose response it got.)
        unsafe fn get(&self) -> Option<Arc<T>>;

        /// Whether the slot holds `response` (by address) at some moment during the
        /// call. Callable at any time; the caller reads the state word before and after
        /// to know whose response that was.
        fn holds(&self, response: *const T) -> bool;
    }
}

/// The default slot: a plain cell guarded by the reader count in the state word.
pub struct CountedSlot<T> {
    response: ResponseCell<T>,
}

// SAFETY: the cell is only written by the owner of `Processing(m)` after the readers
// drained, and only read by readers counted in a `Ready` word (see `SlotImpl`); the
// `Arc<T>` inside is shared across threads, hence `T: Send + Sync`.
unsafe impl<T: Send + Sync> Sync for CountedSlot<T> {}
// SAFETY: moving the slot moves an `Option<Arc<T>>`, which is `Send` for these `T`.
unsafe impl<T: Send + Sync> Send for CountedSlot<T> {}

impl<T: Send + Sync> sealed::SlotImpl<T> for CountedSlot<T> {
    const COUNTS_READERS: bool = true;

    fn empty() -> Self {
        CountedSlot {
            response: ResponseCell::new(),
        }
    }

    #[inline]
    unsafe fn take(&self) -> Option<Arc<T>> {
        // SAFETY: exclusive access, per the contract.
        unsafe { self.response.take() }
    }

    /// Writes without reading what was there: the owner took the old response out
    /// just before, so the cell is empty.
    #[inline]
    unsafe fn put(&self, response: Arc<T>) -> Option<Arc<T>> {
        // SAFETY: exclusive access, per the contract; the cell is empty.
        unsafe { self.response.put(response) };
        None
    }

    #[inline]
    unsafe fn get(&self) -> Option<Arc<T>> {
        // SAFETY: counted readers only overlap other readers, per the contract.
        unsafe { self.response.get() }
    }

    #[inline]
    fn holds(&self, response: *const T) -> bool {
        self.response.holds(response)
    }
}

impl<T: Send + Sync> Slot<T> for CountedSlot<T> {}

impl<T> fmt::Debug for CountedSlot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The contents are only readable under the state word's protocol.
        f.write_str("CountedSlot")
    }
}

/// The alternative slot: an `arc_swap::ArcSwapOption`, stored at publish only.
pub struct ArcSwapSlot<T> {
    response: ArcCell<T>,
}

impl<T: Send + Sync> sealed::SlotImpl<T> for ArcSwapSlot<T> {
    const COUNTS_READERS: bool = false;

    fn empty() -> Self {
        ArcSwapSlot {
            response: ArcCell::empty(),
        }
    }

    /// Keeps the old response until the next publish: clearing it here would cost a
    /// second `store`, the expensive operation of this slot.
    #[inline]
    unsafe fn take(&self) -> Option<Arc<T>> {
        None
    }

    #[inline]
    unsafe fn put(&self, response: Arc<T>) -> Option<Arc<T>> {
        self.response.swap(Some(response))
    }

    #[inline]
    unsafe fn get(&self) -> Option<Arc<T>> {
        self.response.load_full()
    }

    #[inline]
    fn holds(&self, response: *const T) -> bool {
        self.response
            .load()
            .as_ref()
            .is_some_and(|held| std::ptr::eq(Arc::as_ptr(held), response))
    }
}

impl<T: Send + Sync> Slot<T> for ArcSwapSlot<T> {}

impl<T> fmt::Debug for ArcSwapSlot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ArcSwapSlot")
    }
}
