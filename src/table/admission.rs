//! Admission: room in the budget for a call is made, not refused.
//!
//! One policy for every server in front of a table: a call takes the bytes it needs if
//! they fit; if they do not, sessions without a connection that hold a retained
//! response are evicted, the one that lost its connection longest ago first (however
//! recently: a call needs the memory now), until the bytes fit. Only when none is left
//! is the call told there is no room. The caller decides who waits for room in which
//! order: [`Budget::wait_for`](super::Budget::wait_for) and
//! [`Reservation::try_grow_fair`](super::Reservation::try_grow_fair) serve waiters first
//! fit in arrival order, so a call that fits never waits behind one that does not.
//!
//! A session with a connection never loses its response to make room, and nothing a
//! call holds while it waits is taken from it here; what a server does beyond this (the
//! transport closes connections stalled in the middle of a frame) is its own.

use super::{Reservation, SessionTable};

impl<T: Send + Sync> SessionTable<T> {
    /// Adds `more` bytes to `reservation` (taken from this table's
    /// [`budget`](Self::budget)), evicting sessions without a connection whose retained
    /// response passes `holds` (longest detached first) until they fit. False, with
    /// nothing taken, only when they do not fit and no such session is left.
    ///
    /// `holds` says whether a response is worth its session's eviction: a server whose
    /// responses count themselves in the budget passes "holds any bytes"; one whose
    /// table weighs them (see [`with_weigher`](Self::with_weigher)) may pass
    /// `|_| true`.
    pub fn admit(
        &self,
        reservation: &mut Reservation,
        more: usize,
        holds: impl Fn(&T) -> bool,
    ) -> bool {
        loop {
            if reservation.try_grow(more) {
                return true;
            }
            if !self.evict_for_memory(&holds) {
                return false;
            }
        }
    }
}
