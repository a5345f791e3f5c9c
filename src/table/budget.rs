//! One memory budget for every byte a server holds: messages being read, responses
//! being written, responses retained for resends.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A byte budget shared by everything one server holds.
///
/// Bytes that may be refused (a request about to be read) are taken with
/// [`try_reserve`](Self::try_reserve), which fails rather than exceed the limit. Bytes
/// that must not be refused (a response already produced, which the session keeps
/// until its client moves on) are counted with [`retain`](Self::retain) even above the
/// limit: dropping them would lose a response, so new requests wait instead.
///
/// Calls that wait for room are served first fit in arrival order
/// ([`wait_for`](Self::wait_for), [`Reservation::try_grow_fair`]): room goes to the
/// longest-waiting call it fits, so a call that fits goes ahead of one that does not,
/// and calls of one size are served in turn. Room for one that does not fit is made by
/// the session table ([`SessionTable::admit`](super::SessionTable::admit)) and by the
/// server in front of it.
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// The calls waiting for room, in arrival order: (ticket, bytes wanted).
    waiting: Mutex<Vec<(u64, usize)>>,
    /// How many wait: 0 lets a call that fits skip the lock.
    waiters: AtomicUsize,
    next_ticket: AtomicU64,
}

/// A call's place among those waiting for room in a [`Budget`]; left when dropped.
#[must_use = "the place is left when this is dropped"]
pub struct Waiting {
    budget: Arc<Budget>,
    ticket: u64,
}

/// Bytes taken from a [`Budget`], given back when dropped.
#[must_use = "the bytes are given back when the reservation is dropped"]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
            waiting: Mutex::new(Vec::new()),
            waiters: AtomicUsize::new(0),
            next_ticket: AtomicU64::new(0),
        })
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        // ORDERING: a tally read on its own; it publishes nothing.
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit under the limit.
    pub fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        // ORDERING: the counter is its own subject; the compare-exchange makes two
        // reservations that together would exceed the limit impossible.
        let taken = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&sum| sum <= self.limit)
            });
        taken.ok().map(|_| Reservation {
            budget: Arc::clone(self),
            bytes,
        })
    }

    /// Takes `bytes` even above the limit, for what must not be refused (bytes that
    /// exist already and must be kept).
    pub fn reserve_anyway(self: &Arc<Self>, bytes: usize) -> Reservation {
        self.retain(bytes);
        Reservation {
            budget: Arc::clone(self),
            bytes,
        }
    }

    /// Counts `bytes` that must be kept, even above the limit.
    pub fn retain(&self, bytes: usize) {
        // ORDERING: see `try_reserve`.
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives back bytes counted with [`retain`](Self::retain).
    pub fn release(&self, bytes: usize) {
        // ORDERING: see `try_reserve`.
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Joins the calls waiting for room, wanting `bytes` more: see
    /// [`Reservation::try_grow_fair`].
    pub fn wait_for(self: &Arc<Self>, bytes: usize) -> Waiting {
        // ORDERING: only uniqueness of the ticket matters; the order is the lock's.
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let mut waiting = self.lock_waiting();
        waiting.push((ticket, bytes));
        // ORDERING: changed under the lock; a reader that misses it takes bytes that
        // fit as a waiter that had not yet arrived.
        self.waiters.store(waiting.len(), Ordering::Relaxed);
        Waiting {
            budget: Arc::clone(self),
            ticket,
        }
    }

    /// True if a call that waits (longer than `ticket`, if given) wants no more than
    /// what is free now: it has the room first.
    fn earlier_waiter_fits(&self, ticket: Option<u64>) -> bool {
        // ORDERING: see `wait_for`.
        if self.waiters.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let free = self.limit.saturating_sub(self.used());
        self.lock_waiting()
            .iter()
            .take_while(|&&(t, _)| ticket.map_or(true, |mine| t < mine))
            .any(|&(_, bytes)| bytes <= free)
    }

    fn lock_waiting(&self) -> MutexGuard<'_, Vec<(u64, usize)>> {
        // One push or removal under the lock: whole even if poisoned.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Waiting {
    /// True if no call has waited longer.
    pub fn is_first(&self) -> bool {
        self.budget.lock_waiting().first().map(|&(t, _)| t) == Some(self.ticket)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = self.budget.lock_waiting();
        waiting.retain(|&(t, _)| t != self.ticket);
        // ORDERING: see `Budget::wait_for`.
        self.budget.waiters.store(waiting.len(), Ordering::Relaxed);
    }
}

impl fmt::Debug for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiting")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("limit", &self.limit)
            .field("used", &self.used())
            .finish()
    }
}

impl Reservation {
    /// The bytes reserved.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `more` bytes if they fit under the limit; false (and nothing taken) if not.
    pub fn try_grow(&mut self, more: usize) -> bool {
        match self.budget.try_reserve(more) {
            Some(extra) => {
                self.absorb(extra);
                true
            }
            None => false,
        }
    }

    /// Adds `more` bytes if they fit and no call that has waited longer than `turn`
    /// (any that waits, if `turn` is `None`) would fit in the room free now: first fit
    /// in arrival order. False (nothing taken) if not.
    pub fn try_grow_fair(&mut self, more: usize, turn: Option<&Waiting>) -> bool {
        !self.budget.earlier_waiter_fits(turn.map(|w| w.ticket)) && self.try_grow(more)
    }

    /// Makes this reservation exactly `bytes`: gives back what is above, or counts what
    /// is missing even above the limit (for bytes that exist already and must be kept).
    pub fn resize(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.budget.release(self.bytes - bytes);
        } else {
            self.budget.retain(bytes - self.bytes);
        }
        self.bytes = bytes;
    }

    /// Takes over the bytes of `other`, a reservation from the same budget.
    pub fn absorb(&mut self, mut other: Reservation) {
        assert!(Arc::ptr_eq(&self.budget, &other.budget), "one budget");
        self.bytes += std::mem::take(&mut other.bytes);
        // `other` drops with nothing to give back (and its hold on the budget goes).
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_fits_or_is_refused_and_comes_back_on_drop() {
        let budget = Budget::new(100);
        let a = budget.try_reserve(60).unwrap();
        assert!(budget.try_reserve(41).is_none());
        let b = budget.try_reserve(40).unwrap();
        assert_eq!(budget.used(), 100);
        drop((a, b));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_reservation_grows_only_within_the_limit_and_resizes_to_what_is_kept() {
        let budget = Budget::new(100);
        let mut r = budget.try_reserve(0).unwrap();
        assert!(r.try_grow(70));
        assert!(!r.try_grow(31));
        assert_eq!((r.bytes(), budget.used()), (70, 70));
        r.resize(20);
        assert_eq!(budget.used(), 20);
        r.resize(130);
        assert_eq!((r.bytes(), budget.used()), (130, 130));
        drop(r);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn absorbing_a_reservation_moves_its_bytes_and_keeps_no_hold_on_the_budget() {
        let budget = Budget::new(100);
        let mut r = budget.try_reserve(10).unwrap();
        r.absorb(budget.try_reserve(20).unwrap());
        assert!(r.try_grow(5));
        assert_eq!((r.bytes(), budget.used()), (35, 35));
        drop(r);
        assert_eq!(budget.used(), 0);
        assert_eq!(Arc::strong_count(&budget), 1);
    }

    #[test]
    fn room_goes_first_fit_in_arrival_order() {
        let budget = Budget::new(100);
        let held = budget.try_reserve(90).unwrap();
        let (mut large, mut small, mut late) = (
            budget.try_reserve(0).unwrap(),
            budget.try_reserve(0).unwrap(),
            budget.try_reserve(0).unwrap(),
        );
        let large_turn = budget.wait_for(50);
        let small_turn = budget.wait_for(10);
        // 10 free: the large call does not fit, so the small one goes ahead of it.
        assert!(!large.try_grow_fair(50, Some(&large_turn)));
        assert!(small.try_grow_fair(10, Some(&small_turn)));
        drop((small, small_turn, held));
        // 90 free: a newcomer that fits waits while the large call, which waited
        // longer, fits too.
        assert!(!late.try_grow_fair(10, None));
        assert!(large_turn.is_first());
        assert!(large.try_grow_fair(50, Some(&large_turn)));
        drop(large_turn);
        assert!(late.try_grow_fair(10, None));
        assert_eq!(budget.used(), 60);
    }

    #[test]
    fn retained_bytes_may_exceed_the_limit_and_then_block_reservations() {
        let budget = Budget::new(10);
        budget.retain(25);
        assert_eq!(budget.used(), 25);
        assert!(budget.try_reserve(1).is_none());
        budget.release(25);
        assert!(budget.try_reserve(10).is_some());
    }
}
