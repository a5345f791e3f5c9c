//! The copy of its newest published response that a thread keeps for its own
//! `wait_get_response` (one per thread, whatever the session or response type).
//!
//! The original's handler publishes with `set_response` and then reads the response
//! back with `wait_get_response` to send it. The copy lets that second call skip the
//! reader count: it checks that the session still holds this very response and hands
//! the copy over, with no read-modify-write on the state word.

use crate::sync::MODEL_CHECKED;
use std::cell::Cell;
use std::ptr;
use std::sync::Arc;

/// A kept copy taken out of the thread-local: the response as a raw `Arc` and the
/// function that releases it. It never leaves this module: what the callers get is one
/// pointer or nothing. (Values of two words or more that the caller holds across the
/// publish are spilled to the stack in 8-byte pieces and moved in 16-byte ones, which
/// the processor cannot forward from its store buffer: measured ~5 ns per stall on AMD
/// EPYC, enough to make the read-back slower than the counted read it replaces.)
struct Kept {
    response: *const (),
    release: unsafe fn(*const ()),
}

/// # Safety
/// `response` came from `Arc::<T>::into_raw`, and its count is not used afterwards.
unsafe fn release<T>(response: *const ()) {
    // SAFETY: per the contract.
    drop(unsafe { Arc::from_raw(response.cast::<T>()) });
}

/// The `release` of an empty [`KeptCells`], never called.
unsafe fn release_nothing(_: *const ()) {}

impl Drop for Kept {
    fn drop(&mut self) {
        // SAFETY: `response` came from `Arc::<T>::into_raw` and `release` is
        // `release::<T>` for that same `T` (both set by `keep`); released once, here.
        unsafe { (self.release)(self.response) }
    }
}

/// This thread's copy, field by field, each a plain 8-byte cell, with the session and
/// request it answered. No drop glue: a thread-local without it is a plain load or
/// store, with no check of whether its destructor is registered or has run
/// ([`Reaper`] releases the copy at the thread's exit instead).
struct KeptCells {
    /// The response's address; null when nothing is kept.
    response: Cell<*const ()>,
    release: Cell<unsafe fn(*const ())>,
    /// The address of the session it was published in (a hint only: an address can be
    /// reused by a later session, so the caller checks the slot itself).
    session: Cell<usize>,
    request: Cell<u64>,
}

impl KeptCells {
    /// Takes the copy out, if any.
    #[inline]
    fn take(&self) -> Option<Kept> {
        let response = self.response.replace(ptr::null());
        if response.is_null() {
            return None;
        }
        Some(Kept {
            response,
            release: self.release.get(),
        })
    }
}

/// Whether this thread's copy is released at its exit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Life {
    /// Nothing kept yet; the reaper is not registered.
    Unregistered,
    /// The reaper will release the copy when the thread exits.
    Reaped,
    /// The reaper has run: nothing may be kept any more (it would never be released).
    TornDown,
}

/// Releases the thread's copy at its exit, and stops later keeps.
struct Reaper;

impl Drop for Reaper {
    fn drop(&mut self) {
        LIFE.with(|life| life.set(Life::TornDown));
        drop(KEPT.with(KeptCells::take));
    }
}

thread_local! {
    static KEPT: KeptCells = const {
        KeptCells {
            response: Cell::new(ptr::null()),
            release: Cell::new(release_nothing),
            session: Cell::new(0),
            request: Cell::new(0),
        }
    };
    static LIFE: Cell<Life> = const { Cell::new(Life::Unregistered) };
    static REAPER: Reaper = const { Reaper };
}

/// Whether a copy kept now will be released at the thread's exit (registering the
/// reaper the first time).
#[inline]
fn reaped() -> bool {
    match LIFE.with(Cell::get) {
        Life::Reaped => true,
        Life::TornDown => false,
        Life::Unregistered => register_reaper(),
    }
}

#[cold]
#[inline(never)]
fn register_reaper() -> bool {
    // Touching the reaper registers its destructor; that fails only while the thread's
    // thread-locals are being torn down.
    let registered = REAPER.try_with(|_| ()).is_ok();
    let life = if registered {
        Life::Reaped
    } else {
        Life::TornDown
    };
    LIFE.with(|l| l.set(life));
    registered
}

/// Keeps `copy`, published as the response of `request` in the session at `session`,
/// in place of the thread's earlier copy, which is released here (its `Drop` may run
/// here: call this after the publish, so that a panic in it leaves nothing half done).
/// Keeps nothing under the model checker (whose threads share one real thread's
/// locals) or in a thread whose reaper has run.
#[inline]
pub(super) fn keep<T: 'static>(session: usize, request: u64, copy: Arc<T>) {
    if MODEL_CHECKED || !reaped() {
        return;
    }
    let response = Arc::into_raw(copy).cast();
    let earlier = KEPT.with(|k| {
        let earlier = k.take();
        k.response.set(response);
        k.release.set(release::<T>);
        k.session.set(session);
        k.request.set(request);
        earlier
    });
    if let Some(earlier) = earlier {
        release_other(earlier);
    }
}

/// Hands over this thread's copy if it was published as the response of `request` in
/// the session at `session` and `holds` says that session still holds it (given its
/// address): the pointer comes from `Arc::into_raw` and its count moves to the caller.
/// Any other copy is released (the thread has moved on).
///
/// # Safety
/// `holds` returns `true` only if the copy's allocation is an `ArcInner<T>` for the `T`
/// the caller will make of the pointer: a slot of `T`s held that same address while
/// the copy kept it alive.
#[inline]
pub(super) unsafe fn take_if(
    session: usize,
    request: u64,
    holds: impl FnOnce(*const ()) -> bool,
) -> Option<*const ()> {
    let kept = KEPT.with(|k| {
        let kept = k.take()?;
        if k.session.get() == session && k.request.get() == request {
            Some(kept)
        } else {
            release_other(kept);
            None
        }
    })?;
    if holds(kept.response) {
        // The count moves to the caller: not released here.
        return Some(std::mem::ManuallyDrop::new(kept).response);
    }
    release_other(kept);
    None
}

/// Releases a copy that is not handed over (off the hot path).
#[cold]
#[inline(never)]
fn release_other(kept: Kept) {
    drop(kept);
}
