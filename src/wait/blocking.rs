//! How a waiter blocks: a short adaptive spin, then `PARKED` in the state word and a
//! futex wait, with a count of the parked waiters beside the futex epoch so that a
//! transition makes the wake system call only when someone is there to wake.

use super::Look;
use crate::error::WaitTimeoutError;
use crate::session::SessionState;
use crate::slot::Slot;
use crate::state::{StateWord, Word};
use crate::sync::{AtomicU32, Futex, MODEL_CHECKED};
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The futex and the number of waiters between their `park` and their return from
/// the futex.
#[derive(Debug)]
pub(crate) struct Parker {
    futex: Futex,
    parked: AtomicU32,
}

/// How a park ended.
enum Parked {
    /// The word changed before the waiter could set `PARKED`: look again.
    Raced,
    /// Woken (or spuriously): look again.
    Woken,
    /// The deadline passed.
    TimedOut,
}

impl Parker {
    pub(crate) fn new() -> Self {
        Parker {
            futex: Futex::new(),
            parked: AtomicU32::new(0),
        }
    }

    /// Sets `PARKED` if `word` still holds `seen` and sleeps until the futex epoch
    /// moves past `epoch` (read before `seen`), or until `deadline`.
    fn park(&self, word: &StateWord, seen: Word, epoch: u32, deadline: Option<Instant>) -> Parked {
        // ORDERING: relaxed; the release `park` below orders this increment before the
        // transition that reads PARKED from it, which then reads the count (see `wake`).
        self.parked.fetch_add(1, Ordering::Relaxed);
        let parked = match word.park(seen) {
            Err(_) => Parked::Raced,
            Ok(()) => match deadline {
                None => {
                    self.futex.wait(epoch);
                    Parked::Woken
                }
                Some(deadline) => self.wait_until(epoch, deadline),
            },
        };
        // ORDERING: relaxed; a waker that still counts us makes one needless call.
        self.parked.fetch_sub(1, Ordering::Relaxed);
        parked
    }

    fn wait_until(&self, epoch: u32, deadline: Instant) -> Parked {
        let now = Instant::now();
        if now < deadline && self.futex.wait_for(epoch, deadline - now) {
            Parked::Woken
        } else {
            Parked::TimedOut
        }
    }

    /// Wakes the parked waiters, after a transition that replaced a word with
    /// `PARKED`. Moves the epoch on in any case (a waiter about to sleep on the old
    /// one returns at once), and makes the system call only if a waiter is counted:
    /// one that timed out has left, and leaves no wake to pay for. Out of line: the
    /// transitions that call it test `PARKED` first, and only a hand-off to a waiter
    /// that got as far as parking comes here.
    #[cold]
    #[inline(never)]
    pub(crate) fn wake(&self) {
        self.futex.advance();
        // ORDERING: relaxed; the caller's transition acquired every `park` it read
        // PARKED from, and each of those waiters counted itself before its `park`.
        if self.parked.load(Ordering::Relaxed) > 0 {
            self.futex.wake_all();
        }
    }
}

impl<T, S: Slot<T>> SessionState<T, S> {
    /// Waits for the outcome of `m`, until `deadline` if there is one.
    pub(crate) fn wait_blocking(
        &self,
        m: u64,
        deadline: Option<Instant>,
    ) -> Result<Arc<T>, WaitTimeoutError> {
        let mut spin = Spin::new();
        loop {
            let seen = self.word.load();
            // The word to park on: the one just judged pending, or the one that showed
            // the door closed; `park` fails if the word is not that one any more.
            let seen = match self.look(m, seen) {
                Look::Settled(settled) => {
                    spin.settled();
                    return settled.into_result();
                }
                Look::Moved => continue,
                Look::Pending => seen,
                Look::AtTheDoor(at_the_door) => at_the_door,
            };
            if spin.spin() {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return self.outcome_at_deadline(m);
            }
            spin.parks();
            // The epoch is read before `park` writes `seen` back with PARKED: a
            // transition that comes after that write moves the epoch on after this read,
            // so the futex wait cannot sleep through it; one that comes before fails the
            // `park`. (So the fast path above reads no epoch.)
            let epoch = self.parker.epoch();
            match self.parker.park(&self.word, seen, epoch, deadline) {
                Parked::Raced | Parked::Woken => {}
                Parked::TimedOut => return self.outcome_at_deadline(m),
            }
        }
    }
}

impl<T, S: Slot<T>> SessionState<T, S> {
    /// Waits for the word to move on from `seen`, in which a triage has the door closed
    /// to the readers of the current response: that triage either starts its request
    /// or opens the door again, and both wake the readers parked here. Spins first,
    /// the full spin whatever this thread's budget (the triage is done in well under
    /// a microsecond unless it was preempted, and a reader parked here costs it a
    /// wake system call), but never yields: with hundreds of readers at the door,
    /// yielding ones keep the triage and the readers it waits for off the cores.
    #[cold]
    #[inline(never)]
    pub(crate) fn wait_at_the_door(&self, seen: Word) {
        let mut spin = Spin::full();
        while spin.spin() {
            if self.word.load() != seen {
                return;
            }
        }
        // As in `wait_blocking`: the epoch is read before `park`, and any change of the
        // word before `park` fails it.
        let epoch = self.parker.epoch();
        self.parker.park(&self.word, seen, epoch, None);
    }
}

impl Parker {
    #[inline]
    fn epoch(&self) -> u32 {
        self.futex.epoch()
    }
}

/// The spin before parking, adapted to whether spinning paid off for this thread
/// lately (as parking_lot's `SpinWait` and std's futex locks bound their spins).
///
/// A hand-off between two running threads completes within a few hundred
/// nanoseconds, far less than a futex round trip; but when the machine has no core to
/// spare, the spinning waiter holds the one the publisher needs. So each thread keeps a
/// budget of spin rounds (round `k` pauses `2^k` times): a wait settled while spinning
/// raises it by one round, a wait that parked anyway lowers it by one, down to a single
/// round that keeps probing. On one CPU, or under loom, there is no spin at all.
#[derive(Debug)]
pub(crate) struct Spin {
    round: u32,
    budget: Option<u32>,
    parked: bool,
    /// This spin is a probe: the full spin by a thread whose budget has shrunk.
    probing: bool,
}

/// At most 1 + 2 + ... + 32 = 63 pauses: on the order of a microsecond.
const MAX_ROUNDS: u32 = 6;

thread_local! {
    static BUDGET: Cell<u32> = const { Cell::new(MAX_ROUNDS) };
}

impl Spin {
    /// No work until the first `spin`: a wait whose outcome is there at once pays
    /// nothing for the spin.
    #[inline]
    fn new() -> Self {
        Spin {
            round: 0,
            budget: None,
            parked: false,
            probing: false,
        }
    }

    /// The whole spin, whatever this thread's budget (none on one CPU or under loom),
    /// learning nothing from how it ends.
    fn full() -> Self {
        let budget = if MODEL_CHECKED || single_cpu() {
            0
        } else {
            MAX_ROUNDS
        };
        Spin {
            round: 0,
            budget: Some(budget),
            parked: true,
            probing: false,
        }
    }

    /// Pauses for one more round and returns `true`, or `false` once the budget is spent.
    #[inline]
    fn spin(&mut self) -> bool {
        let budget = match self.budget {
            Some(budget) => budget,
            None => {
                let (budget, probing) = budget();
                self.budget = Some(budget);
                self.probing = probing;
                budget
            }
        };
        if self.round >= budget {
            return false;
        }
        for _ in 0..1u32 << self.round {
            std::hint::spin_loop();
        }
        self.round += 1;
        true
    }

    /// The wait is about to park: spinning did not pay off this time.
    fn parks(&mut self) {
        if self.probing && !self.parked {
            Probe::failed();
        } else if let (false, Some(budget @ 1..)) = (self.parked, self.budget) {
            BUDGET.with(|b| b.set(budget.saturating_sub(1).max(1)));
        }
        self.parked = true;
    }

    /// The wait is over: if it spun and never parked, spinning paid off, and the
    /// budget becomes at least the rounds it took, plus one.
    #[inline]
    fn settled(&self) {
        if self.probing && !self.parked && self.round > 0 {
            Probe::paid_off();
        }
        if let (false, Some(budget)) = (self.parked, self.budget) {
            if self.round > 0 && budget < MAX_ROUNDS {
                BUDGET.with(|b| b.set(b.get().max(self.round + 1).min(MAX_ROUNDS)));
            }
        }
    }
}

/// When a thread whose budget has shrunk spins the full spin once more: a budget
/// shrunk while the machine was busy grows back once it is idle again (a budget too
/// small to ever pay off would otherwise never learn that more would). Probes that do
/// not pay off come less and less often, so that a thread on a machine that stays
/// busy hardly pays for them.
#[derive(Clone, Copy)]
struct Probe {
    /// Waits with a shrunk budget since the last probe.
    since: u32,
    /// Waits between two probes: `PROBE_EVERY`, doubled by each probe that did not
    /// pay off, up to `PROBE_AT_MOST`.
    every: u32,
}

/// Waits between probes while they pay off.
const PROBE_EVERY: u32 = 16;
/// Waits between probes at most.
const PROBE_AT_MOST: u32 = 1024;

thread_local! {
    static PROBE: Cell<Probe> = const {
        Cell::new(Probe {
            since: 0,
            every: PROBE_EVERY,
        })
    };
}

impl Probe {
    /// Counts a wait with a shrunk budget; true (and the count starts again) on every
    /// `every`th.
    fn due() -> bool {
        PROBE.with(|p| {
            let Probe { since, every } = p.get();
            let due = since + 1 >= every;
            p.set(Probe {
                since: if due { 0 } else { since + 1 },
                every,
            });
            due
        })
    }

    /// The probe parked anyway: the next comes after twice as many waits.
    fn failed() {
        PROBE.with(|p| {
            let probe = p.get();
            p.set(Probe {
                every: (probe.every * 2).min(PROBE_AT_MOST),
                ..probe
            });
        });
    }

    /// The probe settled while spinning: probes come every `PROBE_EVERY` waits again.
    fn paid_off() {
        PROBE.with(|p| {
            p.set(Probe {
                since: 0,
                every: PROBE_EVERY,
            })
        });
    }
}

/// This thread's spin budget in rounds (none on one CPU or under loom), and whether
/// it is a probe's.
fn budget() -> (u32, bool) {
    if MODEL_CHECKED || single_cpu() {
        return (0, false);
    }
    let budget = BUDGET.with(Cell::get);
    if budget < MAX_ROUNDS && Probe::due() {
        return (MAX_ROUNDS, true);
    }
    (budget, false)
}

/// Whether this process may run on one CPU only (cached after the first call).
fn single_cpu() -> bool {
    static CPUS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    // ORDERING: relaxed; a plain cache of a value every thread computes alike.
    let mut cpus = CPUS.load(Ordering::Relaxed);
    if cpus == 0 {
        cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // ORDERING: relaxed, as the load.
        CPUS.store(cpus, Ordering::Relaxed);
    }
    cpus == 1
}
