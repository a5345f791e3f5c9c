//! The copy of its newest published response that a thread keeps for its own
//! `wait_get_response` (one per thread, whatever the session or response type).
//!
//! The original's handler publishes with `set_response` and then reads the response
//! back with `wait_get_response` to send it. The copy lets that second call skip the
//! reader count: it checks that the session still holds this very response and hands
//! the copy over, with no read-modify-write on the state word.

use crate::sync::MODEL_CHECKED;
use std::cell::Cell;
use std::sync::Arc;

/// An `Arc<T>` turned into a raw pointer, with the session and request it answered.
pub(super) struct Kept {
    /// The address of the session it was published in (a hint only: an address can be
    /// reused by a later session, so the caller checks the slot itself).
    session: usize,
    request: u64,
    response: *const (),
    release: unsafe fn(*const ()),
}

thread_local! {
    static KEPT: Cell<Option<Kept>> = const { Cell::new(None) };
}

/// # Safety
/// `response` came from `Arc::<T>::into_raw`, and its count is not used afterwards.
unsafe fn release<T>(response: *const ()) {
    // SAFETY: per the contract.
    drop(unsafe { Arc::from_raw(response.cast::<T>()) });
}

impl Drop for Kept {
    fn drop(&mut self) {
        // SAFETY: `response` came from `Arc::<T>::into_raw` and `release` is
        // `release::<T>` for that same `T` (both set by `keep`); released once, here.
        unsafe { (self.release)(self.response) }
    }
}

impl Kept {
    /// Whether this was published as the response of `request` in the session at
    /// `session`.
    #[inline]
    pub(super) fn was_published_as(&self, session: usize, request: u64) -> bool {
        self.session == session && self.request == request
    }

    /// The address of the response.
    #[inline]
    pub(super) fn response(&self) -> *const () {
        self.response
    }

    /// The copy, as the `Arc<T>` it was made from.
    ///
    /// # Safety
    /// The copy's allocation is an `ArcInner<T>`: the caller found a slot of `T`s holding
    /// that same address while this copy kept it alive.
    #[inline]
    pub(super) unsafe fn into_response<T>(self) -> Arc<T> {
        let kept = std::mem::ManuallyDrop::new(self);
        // SAFETY: per the contract; `kept` is never dropped, so the count moves once.
        unsafe { Arc::from_raw(kept.response.cast::<T>()) }
    }
}

/// Keeps a copy of `response`, published as the response of `request` in the session at
/// `session`, and returns the copy it replaces, for the caller to drop when that can no
/// longer leave anything half done. Keeps nothing under the model checker (whose
/// threads share one real thread's locals) or in a thread being torn down.
#[inline]
pub(super) fn keep<T: 'static>(session: usize, request: u64, response: &Arc<T>) -> Option<Kept> {
    if MODEL_CHECKED {
        return None;
    }
    let kept = Kept {
        session,
        request,
        response: Arc::into_raw(Arc::clone(response)).cast(),
        release: release::<T>,
    };
    // Torn down: the copy is dropped with the closure that did not run.
    KEPT.try_with(|k| k.replace(Some(kept))).unwrap_or_default()
}

/// Takes this thread's copy, if any.
#[inline]
pub(super) fn take() -> Option<Kept> {
    KEPT.try_with(Cell::take).ok().flatten()
}
