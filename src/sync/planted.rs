//! Bugs that the loom models plant on purpose, to show that each model bites. Compiled
//! only into the model-checked build: the real code never reads these switches.

use std::sync::atomic::{AtomicU8, Ordering};

/// The bugs a model can plant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Bug {
    /// Wakes skip the futex epoch bump: a waiter between its check of the state and
    /// its park then sleeps through the wake (a lost wake-up).
    SkipEpochBump = 1,
    /// A waiter that finds `PARKED` already set parks without writing the word, so
    /// the waker need not see it counted: with the count read as zero it skips the
    /// wake, and the waiter sleeps through it.
    TrustForeignParked = 2,
    /// A triage that closed the door and then found the table refusing its request
    /// leaves the door closed: no `start` follows to open it, and readers of the
    /// current response wait for ever.
    KeepDoorOnRefusal = 3,
    /// An async waiter registers its listener but never sets the word's async-waiters
    /// bit: the transition it waits for notifies nobody.
    AsyncSkipMark = 4,
    /// The last async waiter to give up clears the bit without counting the listeners
    /// again: one that marked just before the clear is never notified.
    AsyncLeaveSkipsRecount = 5,
    /// A transition that wakes parked threads forgets the async waiters.
    ForgetAsyncWhenParked = 6,
}

static PLANTED: AtomicU8 = AtomicU8::new(0);

/// Plants `bug` (or none) for the whole process: call it only from a test binary of
/// its own.
pub fn plant(bug: Option<Bug>) {
    PLANTED.store(bug.map_or(0, |b| b as u8), Ordering::Relaxed);
}

/// Whether `bug` is planted.
pub(crate) fn planted(bug: Bug) -> bool {
    PLANTED.load(Ordering::Relaxed) == bug as u8
}

/// Plants (or removes) [`Bug::SkipEpochBump`].
pub fn skip_epoch_bump(on: bool) {
    plant(on.then_some(Bug::SkipEpochBump));
}
