//! The one place that knows about loom.
//!
//! Everything the state machine shares between threads comes from here: the atomics,
//! the cell that holds the counted slot's response, the futex the waiters park on, the
//! backoff used while readers drain, and the pointer cell behind [`ArcSwapSlot`].
//! Under `cfg(loom)` each is replaced by a loom-visible stand-in:
//!
//! - the futex is a real check-then-wait (a loom `Mutex` + `Condvar` around the epoch
//!   word), so a lost wake-up shows up as a loom deadlock rather than a spin;
//! - the arc-swap stand-in is a loom `AtomicPtr` with exactly the orderings arc-swap
//!   documents for `store` (release) and `load` (acquire), and no lock, so it cannot
//!   hide a too-weak ordering on the state word. It leaks what it replaces: reclamation
//!   is arc-swap's job and out of scope of the model.
//!
//! [`ArcSwapSlot`]: crate::ArcSwapSlot

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The bounded spin a waiter does before it parks: it re-checks the state word a few
/// dozen times, because on a hand-off the publisher is usually a few hundred
/// nanoseconds away while a futex round trip costs tens of microseconds.
#[derive(Debug)]
pub(crate) struct SpinBeforeParking {
    left: u32,
}

impl SpinBeforeParking {
    #[cfg(not(loom))]
    const SPINS: u32 = 40;
    /// Under loom every spin is another branch to explore and adds nothing to prove.
    #[cfg(loom)]
    const SPINS: u32 = 0;

    pub(crate) fn new() -> Self {
        SpinBeforeParking { left: Self::SPINS }
    }

    /// Pauses once and returns `true`, or returns `false` once the spin is used up.
    #[inline]
    pub(crate) fn spin(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        std::hint::spin_loop();
        true
    }
}

/// Backoff for the short waits that are not parks (readers leaving their window).
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
        loom::thread::yield_now();
    }
}

/// A cell whose accesses loom can check for races (std's `UnsafeCell` otherwise).
#[derive(Debug)]
pub(crate) struct UnsafeCell<T> {
    #[cfg(not(loom))]
    inner: std::cell::UnsafeCell<T>,
    #[cfg(loom)]
    inner: loom::cell::UnsafeCell<T>,
}

impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(loom))]
            inner: std::cell::UnsafeCell::new(value),
            #[cfg(loom)]
            inner: loom::cell::UnsafeCell::new(value),
        }
    }

    /// # Safety
    /// No thread may write the cell while `f` runs.
    #[inline]
    pub(crate) unsafe fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        #[cfg(not(loom))]
        // SAFETY: the caller rules out concurrent writes; reads may overlap.
        return f(unsafe { &*self.inner.get() });
        #[cfg(loom)]
        // SAFETY: as above; loom checks the claim.
        return self.inner.with(|p| f(unsafe { &*p }));
    }

    /// # Safety
    /// No other thread may read or write the cell while `f` runs.
    #[inline]
    pub(crate) unsafe fn with_mut<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        #[cfg(not(loom))]
        // SAFETY: the caller guarantees exclusive access.
        return f(unsafe { &mut *self.inner.get() });
        #[cfg(loom)]
        // SAFETY: as above; loom checks the claim.
        return self.inner.with_mut(|p| f(unsafe { &mut *p }));
    }
}

/// A 32-bit epoch counter that waiters park on.
///
/// A waiter reads the epoch *before* it reads the state word, and parks only while the
/// epoch still holds that value; a publisher changes the state word first and then
/// bumps the epoch and wakes. So a wake-up between the waiter's check and its park
/// changes the epoch and the park returns at once. The epoch wraps after 2^32 wakes;
/// a waiter would have to sleep through exactly that many between two instructions
/// to miss one.
#[derive(Debug)]
pub(crate) struct Futex {
    epoch: AtomicU32,
    #[cfg(loom)]
    lock: loom::sync::Mutex<()>,
    #[cfg(loom)]
    parked: loom::sync::Condvar,
}

impl Futex {
    pub(crate) fn new() -> Self {
        Self {
            epoch: AtomicU32::new(0),
            #[cfg(loom)]
            lock: loom::sync::Mutex::new(()),
            #[cfg(loom)]
            parked: loom::sync::Condvar::new(),
        }
    }

    /// The epoch to pass to [`Futex::wait`].
    #[inline]
    pub(crate) fn epoch(&self) -> u32 {
        // ORDERING: acquire pairs with the release increment in `wake_all`: a waiter
        // that sees a new epoch also sees the state change that preceded it.
        self.epoch.load(Ordering::Acquire)
    }

    /// Parks until the epoch differs from `seen` (or spuriously).
    pub(crate) fn wait(&self, seen: u32) {
        #[cfg(not(loom))]
        atomic_wait::wait(&self.epoch, seen);
        #[cfg(loom)]
        {
            let guard = self.lock.lock().unwrap();
            // ORDERING: relaxed, like the kernel's compare: synchronisation must come
            // from the state word, not from this stand-in.
            if self.epoch.load(Ordering::Relaxed) == seen {
                drop(self.parked.wait(guard).unwrap());
            }
        }
    }

    /// Parks until the epoch differs from `seen`, spuriously, or until `deadline`.
    /// Returns `false` when the deadline had passed before the park.
    pub(crate) fn wait_until(&self, seen: u32, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        self.wait_for(seen, deadline - now)
    }

    /// loom has no clock: the model is a deadline that expires right here, racing
    /// whatever transition the waiter was about to be woken for.
    #[cfg(loom)]
    fn wait_for(&self, _seen: u32, _timeout: Duration) -> bool {
        false
    }

    #[cfg(all(not(loom), target_os = "linux"))]
    fn wait_for(&self, seen: u32, timeout: Duration) -> bool {
        linux_wait_timeout(&self.epoch, seen, timeout);
        true
    }

    /// Documented limitation: atomic-wait has no timeout, so elsewhere a deadline wait
    /// sleeps in slices of at most a millisecond.
    #[cfg(all(not(loom), not(target_os = "linux")))]
    fn wait_for(&self, seen: u32, timeout: Duration) -> bool {
        // ORDERING: relaxed, like the kernel's compare (see `wait`).
        if self.epoch.load(Ordering::Relaxed) == seen {
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
        }
        true
    }

    /// Bumps the epoch and wakes every parked thread.
    pub(crate) fn wake_all(&self) {
        #[cfg(loom)]
        let planted = planted_bugs::SKIP_EPOCH_BUMP.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(loom))]
        let planted = false;
        if !planted {
            // ORDERING: release pairs with the acquire in `epoch`; it is sequenced after
            // the state-word transition the waiters are woken for.
            self.epoch.fetch_add(1, Ordering::Release);
        }
        #[cfg(not(loom))]
        atomic_wait::wake_all(&self.epoch);
        #[cfg(loom)]
        {
            let _guard = self.lock.lock().unwrap();
            self.parked.notify_all();
        }
    }
}

/// `FUTEX_WAIT` with a relative timeout, on the same private futex word atomic-wait
/// uses, so `atomic_wait::wake_all` wakes it too.
#[cfg(all(not(loom), target_os = "linux"))]
fn linux_wait_timeout(
    word: &std::sync::atomic::AtomicU32,
    seen: u32,
    timeout: std::time::Duration,
) {
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
            word as *const std::sync::atomic::AtomicU32,
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            seen,
            &timeout as *const libc::timespec,
        );
    }
}

/// The pointer cell behind `ArcSwapSlot`.
#[cfg(not(loom))]
pub(crate) type ArcCell<T> = arc_swap::ArcSwapOption<T>;

#[cfg(loom)]
pub(crate) use loom_arc_cell::ArcCell;

#[cfg(loom)]
mod loom_arc_cell {
    use loom::sync::atomic::AtomicPtr;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    /// Stand-in for `ArcSwapOption` with its orderings and none of its machinery.
    #[derive(Debug)]
    pub(crate) struct ArcCell<T> {
        ptr: AtomicPtr<T>,
    }

    impl<T> ArcCell<T> {
        pub(crate) fn empty() -> Self {
            Self {
                ptr: AtomicPtr::new(std::ptr::null_mut()),
            }
        }

        pub(crate) fn store(&self, value: Option<Arc<T>>) {
            let raw = value.map_or(std::ptr::null_mut(), |v| Arc::into_raw(v).cast_mut());
            // ORDERING: release, as arc-swap's store; the replaced pointer is leaked.
            self.ptr.store(raw, Ordering::Release);
        }

        pub(crate) fn load_full(&self) -> Option<Arc<T>> {
            // ORDERING: acquire, as arc-swap's load.
            let raw = self.ptr.load(Ordering::Acquire);
            if raw.is_null() {
                return None;
            }
            // SAFETY: every stored pointer came from `Arc::into_raw` and is never
            // released (leaked), so it is alive; we add a count for the copy we return.
            unsafe {
                Arc::increment_strong_count(raw);
                Some(Arc::from_raw(raw))
            }
        }
    }
}

/// The async wake path's bugs that the loom models plant (see [`planted_bugs`]).
#[cfg(feature = "async")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum AsyncBug {
    /// A waiter registers its listener but never sets the word's async-waiters bit.
    SkipMark = 0,
    /// The last cancelled waiter clears the bit without counting the listeners again.
    LeaveSkipsRecount = 1,
    /// A transition that wakes parked threads forgets the async waiters.
    ForgetAsyncWhenParked = 2,
}

/// Whether `bug` is planted; always `false` outside loom.
#[cfg(feature = "async")]
#[inline(always)]
pub(crate) fn planted(bug: AsyncBug) -> bool {
    #[cfg(loom)]
    return planted_bugs::ASYNC.load(std::sync::atomic::Ordering::Relaxed) & (1 << bug as u8) != 0;
    #[cfg(not(loom))]
    {
        let _ = bug;
        false
    }
}

/// Bugs that the loom models plant on purpose, to show that the harness bites.
#[doc(hidden)]
pub mod planted_bugs {
    #[cfg(all(loom, feature = "async"))]
    pub(crate) static ASYNC: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

    /// Plants (or removes) one bug of the async wake path. Process-wide: the models
    /// that use it take one lock so that they run one at a time.
    #[cfg(all(loom, feature = "async"))]
    pub fn plant_async(bug: super::AsyncBug, on: bool) {
        let bit = 1 << bug as u8;
        if on {
            ASYNC.fetch_or(bit, std::sync::atomic::Ordering::Relaxed);
        } else {
            ASYNC.fetch_and(!bit, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[cfg(loom)]
    pub(crate) static SKIP_EPOCH_BUMP: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    /// Makes every wake skip the epoch bump: a waiter between its check of the state
    /// and its park then sleeps through the wake (a lost wake-up). Process-wide: call it
    /// only from a test binary of its own.
    #[cfg(loom)]
    pub fn skip_epoch_bump(on: bool) {
        SKIP_EPOCH_BUMP.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}
