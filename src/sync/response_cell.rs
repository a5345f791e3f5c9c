//! The cell behind the counted slot: one `Option<Arc<T>>`, written only by the owner of
//! a `Processing` word and read by counted readers, as the state word decides.
//!
//! Outside the model it is an `AtomicPtr` (null for `None`), so that
//! [`holds`](ResponseCell::holds) can compare the pointer at any time without a data
//! race; every access the protocol makes compiles to a plain load or store. Under loom
//! it is a loom `UnsafeCell`, so that the models check the protocol's claim that writes
//! never overlap another access; the model build never calls `holds`.

use std::sync::Arc;

#[cfg(not(loom))]
use std::sync::atomic::{AtomicPtr, Ordering};

/// An `Option<Arc<T>>` whose exclusive and shared accesses the state word arbitrates.
#[derive(Debug)]
pub(crate) struct ResponseCell<T> {
    /// `Arc::into_raw` of the response, or null.
    #[cfg(not(loom))]
    response: AtomicPtr<T>,
    /// The cell owns the count behind the pointer.
    #[cfg(not(loom))]
    _owns: std::marker::PhantomData<Arc<T>>,
    #[cfg(loom)]
    response: loom::cell::UnsafeCell<Option<Arc<T>>>,
}

#[cfg(not(loom))]
impl<T> ResponseCell<T> {
    pub(crate) fn new() -> Self {
        Self {
            response: AtomicPtr::new(std::ptr::null_mut()),
            _owns: std::marker::PhantomData,
        }
    }

    /// Takes the response out.
    ///
    /// # Safety
    /// No other thread accesses the cell (through these methods) meanwhile.
    #[inline]
    pub(crate) unsafe fn take(&self) -> Option<Arc<T>> {
        // ORDERING: relaxed load: the caller's ownership of the word orders it after
        // every earlier access. Release store: pairs with the acquire load in `holds`,
        // so that whoever finds the cell changed also sees the word that let it change.
        let raw = self.response.load(Ordering::Relaxed);
        if raw.is_null() {
            return None;
        }
        self.response.store(std::ptr::null_mut(), Ordering::Release);
        // SAFETY: `raw` came from `Arc::into_raw` in `put` and the cell no longer holds
        // it: its count moves to the returned `Arc`.
        Some(unsafe { Arc::from_raw(raw) })
    }

    /// Puts a response into the empty cell.
    ///
    /// # Safety
    /// As for `take`; the cell is empty.
    #[inline]
    pub(crate) unsafe fn put(&self, response: Arc<T>) {
        debug_assert!(self.response.load(Ordering::Relaxed).is_null());
        // ORDERING: release, as in `take`; readers of the response are ordered by the
        // word's release `complete` that follows.
        self.response
            .store(Arc::into_raw(response).cast_mut(), Ordering::Release);
    }

    /// A copy of the response.
    ///
    /// # Safety
    /// No thread writes the cell meanwhile (reads may overlap).
    #[inline]
    pub(crate) unsafe fn get(&self) -> Option<Arc<T>> {
        // ORDERING: relaxed; the caller's acquire of the word (a counted reader's
        // `enter`) orders this after the `put` that wrote it.
        // SAFETY: `raw` is null or came from `Arc::into_raw` in `put`, and the cell's
        // own count keeps it alive: no writer (hence no `take` and drop) runs meanwhile.
        unsafe { super::clone_raw(self.response.load(Ordering::Relaxed)) }
    }

    /// Whether the cell holds `response` (by address), at some moment during the call.
    /// Safe at any time: it compares the pointer and never dereferences it.
    #[inline]
    pub(crate) fn holds(&self, response: *const T) -> bool {
        // ORDERING: acquire pairs with the release stores of `take` and `put`: a caller
        // that reads the state word after this sees at least the transition that
        // preceded the value read here.
        std::ptr::eq(self.response.load(Ordering::Acquire), response)
    }
}

#[cfg(not(loom))]
impl<T> Drop for ResponseCell<T> {
    fn drop(&mut self) {
        let raw = *self.response.get_mut();
        if !raw.is_null() {
            // SAFETY: `raw` came from `Arc::into_raw` in `put`; the cell owned that count.
            drop(unsafe { Arc::from_raw(raw) });
        }
    }
}

#[cfg(loom)]
impl<T> ResponseCell<T> {
    pub(crate) fn new() -> Self {
        Self {
            response: loom::cell::UnsafeCell::new(None),
        }
    }

    /// # Safety
    /// As outside the model; loom checks the claim.
    pub(crate) unsafe fn take(&self) -> Option<Arc<T>> {
        // SAFETY: as above.
        self.response.with_mut(|p| unsafe { (*p).take() })
    }

    /// # Safety
    /// As outside the model; loom checks the claim.
    pub(crate) unsafe fn put(&self, response: Arc<T>) {
        // SAFETY: as above.
        self.response.with_mut(|p| unsafe { *p = Some(response) });
    }

    /// # Safety
    /// As outside the model; loom checks the claim.
    pub(crate) unsafe fn get(&self) -> Option<Arc<T>> {
        // SAFETY: as above.
        self.response.with(|p| unsafe { (*p).clone() })
    }

    /// The model build keeps no read-back copies, so nothing asks.
    pub(crate) fn holds(&self, _response: *const T) -> bool {
        false
    }
}
