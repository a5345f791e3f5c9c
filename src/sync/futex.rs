//! The futex the waiters park on: an epoch word, the kernel's wait with and without a
//! timeout, and the wake.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A 32-bit epoch counter that waiters park on.
///
/// A waiter reads the epoch *before* it writes `PARKED` into the state word (a write
/// that fails if the word changed since the waiter judged it), and parks only while the
/// epoch still holds that value; a publisher changes the state word first and then
/// advances the epoch and wakes. So a wake-up between the waiter's check and its park
/// changes the epoch and the park returns at once. The epoch wraps after 2^32 wakes;
/// a waiter would have to sleep through exactly that many between two instructions
/// to miss one.
#[derive(Debug)]
pub(crate) struct Futex {
    epoch: AtomicU32,
}

impl Futex {
    pub(crate) const fn new() -> Self {
        Futex {
            epoch: AtomicU32::new(0),
        }
    }

    /// The epoch to pass to [`Futex::wait`].
    #[inline]
    pub(crate) fn epoch(&self) -> u32 {
        // ORDERING: acquire pairs with the release increment in `advance`: a waiter
        // that sees a new epoch also sees the state change that preceded it.
        self.epoch.load(Ordering::Acquire)
    }

    /// Parks until the epoch differs from `seen` (or spuriously).
    pub(crate) fn wait(&self, seen: u32) {
        atomic_wait::wait(&self.epoch, seen);
    }

    /// Parks until the epoch differs from `seen`, spuriously, or until `timeout`
    /// has passed. Returns `true`: the caller re-checks its deadline.
    #[cfg(target_os = "linux")]
    pub(crate) fn wait_for(&self, seen: u32, timeout: Duration) -> bool {
        linux_wait_timeout(&self.epoch, seen, timeout);
        true
    }

    /// atomic-wait has no timeout, so elsewhere a deadline wait sleeps in slices of at
    /// most a millisecond (a documented limitation).
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn wait_for(&self, seen: u32, timeout: Duration) -> bool {
        // ORDERING: relaxed, like the kernel's compare (see `wait`).
        if self.epoch.load(Ordering::Relaxed) == seen {
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
        }
        true
    }

    /// Moves the epoch on, so that a waiter about to park on the old one returns at once.
    #[inline]
    pub(crate) fn advance(&self) {
        // ORDERING: release pairs with the acquire in `epoch`; it is sequenced after
        // the state-word transition the waiters are woken for.
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Wakes every thread parked on the epoch (one system call).
    pub(crate) fn wake_all(&self) {
        atomic_wait::wake_all(&self.epoch);
    }
}

/// `FUTEX_WAIT` with a relative timeout, on the same private futex word atomic-wait
/// uses, so `atomic_wait::wake_all` wakes it too.
#[cfg(target_os = "linux")]
fn linux_wait_timeout(word: &AtomicU32, seen: u32, timeout: Duration) {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned 32-bit atomic and `timeout` outlives the call;
    // FUTEX_WAIT only reads both. Errors (EAGAIN, ETIMEDOUT, EINTR) all mean "return
    // and let the caller re-check", so the result is ignored.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32,
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            seen,
            &timeout as *const libc::timespec,
        );
    }
}
