//! The model-checked stand-ins the loom build swaps in for the futex and the arc-swap
//! cell (see the [parent module](super) for why each is shaped as it is).

use super::planted::{planted, Bug};
use loom::sync::atomic::{AtomicPtr, AtomicU32};
use loom::sync::{Condvar, Mutex};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The futex as a real check-then-wait under a mutex and condition variable.
#[derive(Debug)]
pub(crate) struct Futex {
    epoch: AtomicU32,
    lock: Mutex<()>,
    parked: Condvar,
}

impl Futex {
    pub(crate) fn new() -> Self {
        Futex {
            epoch: AtomicU32::new(0),
            lock: Mutex::new(()),
            parked: Condvar::new(),
        }
    }

    #[inline]
    pub(crate) fn epoch(&self) -> u32 {
        // ORDERING: acquire pairs with the release increment in `advance`.
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn wait(&self, seen: u32) {
        let guard = self.lock.lock().unwrap();
        // ORDERING: relaxed, like the kernel's compare: synchronisation must come
        // from the state word, not from this stand-in.
        if self.epoch.load(Ordering::Relaxed) == seen {
            drop(self.parked.wait(guard).unwrap());
        }
    }

    /// loom has no clock: the model is a deadline that expires right here, racing
    /// whatever transition the waiter was about to be woken for.
    pub(crate) fn wait_for(&self, _seen: u32, _timeout: Duration) -> bool {
        false
    }

    pub(crate) fn advance(&self) {
        if planted(Bug::SkipEpochBump) {
            return;
        }
        // ORDERING: release pairs with the acquire in `epoch`.
        self.epoch.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn wake_all(&self) {
        let _guard = self.lock.lock().unwrap();
        self.parked.notify_all();
    }
}

/// Stand-in for `ArcSwapOption` with its orderings and none of its machinery.
#[derive(Debug)]
pub(crate) struct ArcCell<T> {
    ptr: AtomicPtr<T>,
}

impl<T> ArcCell<T> {
    pub(crate) fn empty() -> Self {
        ArcCell {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Stores `value`; the replaced pointer is leaked (reclamation is arc-swap's job
    /// and out of the model's scope), so this returns nothing to drop.
    pub(crate) fn swap(&self, value: Option<Arc<T>>) -> Option<Arc<T>> {
        let raw = value.map_or(std::ptr::null_mut(), |v| Arc::into_raw(v).cast_mut());
        // ORDERING: release, as arc-swap's store.
        self.ptr.store(raw, Ordering::Release);
        None
    }

    /// As arc-swap's `load`, whose guard derefs to what this returns.
    pub(crate) fn load(&self) -> Option<Arc<T>> {
        self.load_full()
    }

    pub(crate) fn load_full(&self) -> Option<Arc<T>> {
        // ORDERING: acquire, as arc-swap's load.
        // SAFETY: every stored pointer came from `Arc::into_raw` and is never
        // released (leaked), so it is alive; the copy returned gets a count of its own.
        unsafe { super::clone_raw(self.ptr.load(Ordering::Acquire)) }
    }
}

/// Yields to loom's scheduler: every spin is another branch to explore.
pub(crate) fn snooze() {
    loom::thread::yield_now();
}
