//! The floor: **not a usable implementation**, a lower bound for workload 1 only.
//!
//! One `AtomicU64` for the state and one raw pointer (`Arc::into_raw`) for the
//! response, with the operations any correct design of this crate needs on the
//! uncontended path and nothing else:
//!
//! - triage: one load and one compare-and-swap `Ready(n) -> Processing(m)`, then drop
//!   the old response;
//! - publish: store the pointer, then one swap to `Ready(m)` whose old value would say
//!   whether anyone parked (nobody parks here: there is no futex and no wait);
//! - read: one load of the word, one of the pointer, one reference-count increment.
//!
//! What it leaves out is **safe reclamation**: a reader that has loaded the pointer and
//! not yet incremented the count can have the response freed under it by the next
//! triage (a use-after-free). The crate's counted slot closes that window with a reader
//! count in the word (two more read-modify-writes per read); the arc-swap slot with
//! arc-swap's debt lists. The gap between those and this floor is the price of being
//! sound. To keep this benchmark code itself sound, the type is `!Sync`: one thread
//! only, so the window cannot be hit.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

const READY: u64 = 1;
const PARKED: u64 = 2;
const REQUEST_SHIFT: u32 = 2;

/// See the module docs: a lower bound, unsound on reclamation if it were shared.
#[derive(Debug)]
pub struct BareAtomicsFloor {
    word: AtomicU64,
    response: AtomicPtr<u64>,
    /// `!Sync`: the missing reclamation is only harmless on one thread.
    single_thread: PhantomData<Cell<()>>,
}

/// The floor's "guard": just the request number.
#[derive(Debug)]
pub struct Processing<'a> {
    floor: &'a BareAtomicsFloor,
    m: u64,
}

impl Default for BareAtomicsFloor {
    fn default() -> Self {
        BareAtomicsFloor {
            word: AtomicU64::new(READY),
            response: AtomicPtr::new(ptr::null_mut()),
            single_thread: PhantomData,
        }
    }
}

impl BareAtomicsFloor {
    /// `Ready(n) -> Processing(m)`; panics if `m` is not processable.
    #[inline]
    pub fn start(&self, m: u64) -> Processing<'_> {
        let seen = self.word.load(Ordering::Acquire);
        assert!(seen & READY != 0 && m > seen >> REQUEST_SHIFT, "floor: {m}");
        // ORDERING: as the crate's `start`: acquire the old response, release the new state.
        self.word
            .compare_exchange(
                seen,
                m << REQUEST_SHIFT,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .expect("one thread only");
        // ORDERING: relaxed; the word's acquire above orders it (one thread anyway).
        let old = self.response.load(Ordering::Relaxed);
        self.response.store(ptr::null_mut(), Ordering::Relaxed);
        if !old.is_null() {
            // SAFETY: `old` came from `Arc::into_raw` in `complete` and the slot owned
            // that count. Sound only because the type is `!Sync`: a concurrent reader
            // between its pointer load and its increment would be left dangling.
            drop(unsafe { Arc::from_raw(old) });
        }
        Processing { floor: self, m }
    }

    /// The response of `m`; panics unless the word is `Ready(m)`.
    #[inline]
    pub fn get(&self, m: u64) -> Arc<u64> {
        // ORDERING: acquire pairs with the release swap in `complete`.
        let seen = self.word.load(Ordering::Acquire);
        assert_eq!(seen, m << REQUEST_SHIFT | READY, "floor: {m} is not ready");
        let raw = self.response.load(Ordering::Relaxed);
        // SAFETY: `Ready(m)` means `complete` stored a live `Arc::into_raw` pointer and
        // the slot holds its count; nothing can drop it before our increment because
        // the type is `!Sync` (this is exactly the unsound window of a shared version).
        unsafe {
            Arc::increment_strong_count(raw);
            Arc::from_raw(raw)
        }
    }
}

impl Processing<'_> {
    /// Publishes the response: `Processing(m) -> Ready(m)`.
    #[inline]
    pub fn complete(self, response: Arc<u64>) {
        let floor = self.floor;
        floor
            .response
            .store(Arc::into_raw(response).cast_mut(), Ordering::Relaxed);
        // ORDERING: release pairs with `get`'s acquire load: the pointer store is visible.
        let previous = floor
            .word
            .swap(self.m << REQUEST_SHIFT | READY, Ordering::AcqRel);
        // A real design wakes here; the floor keeps the test, not the futex.
        if previous & PARKED != 0 {
            unreachable!("nobody parks on the floor");
        }
    }
}

impl Drop for BareAtomicsFloor {
    fn drop(&mut self) {
        let raw = *self.response.get_mut();
        if !raw.is_null() {
            // SAFETY: the slot owns the count of this `Arc::into_raw` pointer.
            drop(unsafe { Arc::from_raw(raw) });
        }
    }
}
