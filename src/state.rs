//! The packed state word: the only place that knows its layout.
//!
//! ```text
//!  63                              16 15          6    5       4        3          2        1         0
//! +----------------------------------+-------------+---------+------+----------+--------+-----------+-------+
//! | n: newest accepted request (48)  | readers (10)| ASYNC   | DOOR | UNGUARDED| PARKED | ABANDONED | READY |
//! +----------------------------------+-------------+---------+------+----------+--------+-----------+-------+
//! ```
//!
//! | state                  | bits                     | who owns the response slot            |
//! |------------------------|--------------------------|---------------------------------------|
//! | `Processing(n)`        | READY=0                  | the one processor of `n` (its guard)  |
//! | `Ready(n)`             | READY=1                  | shared: readers counted in `readers`  |
//! | `Ready(n)`, abandoned  | READY=1, ABANDONED=1     | nobody reads it (there is no response)|
//!
//! `PARKED`: some thread may be parked on the session's futex; the next transition clears
//! it and wakes (if the parked-waiter count beside the futex says anyone is still there).
//! `UNGUARDED`: `Processing(n)` was started by the seed-compatible `triage_request`, so
//! the seed's `set_response` may claim it (it clears the bit; its publish then drains
//! the readers and reclaims the slot, as every owner's does). `DOOR`: a triage that lost
//! a race closed the door to new readers; the `start` that follows clears it, and until
//! then the reader count can only fall, so the triage finishes in as many steps as there
//! were readers inside.
//! `readers`: threads inside the few-instruction window in which they clone the response
//! out of the counted slot; they can enter only in `Ready(n)` (not abandoned) with the
//! door open. `ASYNC` (async waiters): some async waiter may be listening on the
//! session's event; it is set only while the word is pending for that waiter, and the
//! next `start`, `complete` or `abandon` clears it and notifies (the last async waiter to
//! give up clears it too).
//!
//! Transitions (every one a single compare-and-swap or read-modify-write; there are no
//! plain stores, so every reader's release decrement stays in the release sequence):
//!
//! | from                   | verb        | to                            | by                          |
//! |------------------------|-------------|-------------------------------|-----------------------------|
//! | `Ready(n)`             | `start`     | `Processing(m)`, m > n        | the thread whose triage wins|
//! | any                    | `close_door`| same, DOOR                    | a triage whose `start` lost |
//! | `Processing(m)`        | `complete`  | `Ready(m)`                    | the processor of `m`        |
//! | `Processing(m)`        | `abandon`   | `Ready(m)`, abandoned         | the processor's guard drop  |
//! | `Processing(m)`+UNGUARDED | `claim`  | `Processing(m)`               | the seed's `set_response`   |
//! | `Ready(n)`, door open  | `enter`     | `Ready(n)`, readers + 1       | a reader of `n`'s response  |
//! | any                    | `leave`     | readers - 1                   | that reader                 |
//! | unsettled for a waiter | `park`      | same, PARKED                  | a waiter about to sleep     |
//! | unsettled for a waiter | `mark_async_waiters` | same, ASYNC          | an async waiter             |
//! | any                    | `clear_async_waiters`| same, not ASYNC      | the last async waiter to leave |

use crate::sync::{planted_bug, AtomicU64, Backoff};
use std::fmt;
use std::sync::atomic::Ordering;

const READY: u64 = 1 << 0;
const ABANDONED: u64 = 1 << 1;
const PARKED: u64 = 1 << 2;
const UNGUARDED: u64 = 1 << 3;
const DOOR: u64 = 1 << 4;
/// Some async waiter may be listening on the session's event; the next transition
/// clears it and notifies. Set only while the word is pending for that waiter.
#[cfg_attr(not(any(test, feature = "async")), allow(dead_code))]
const ASYNC_WAITERS: u64 = 1 << 5;
const READER_SHIFT: u32 = 6;
const READER_BITS: u32 = 10;
const ONE_READER: u64 = 1 << READER_SHIFT;
const MAX_READERS: u64 = (1 << READER_BITS) - 1;
const READER_MASK: u64 = MAX_READERS << READER_SHIFT;
const REQUEST_SHIFT: u32 = READER_SHIFT + READER_BITS;

/// The largest request number the packed word can hold: 2^48 - 1.
///
/// At a million requests a second one session takes nearly nine years to reach it.
pub(crate) const MAX_REQUEST: u64 = u64::MAX >> REQUEST_SHIFT;

/// One value of the state word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Word(u64);

impl Word {
    /// `Ready(0)`: request 0 counts as done, so request 1 can start.
    pub const INITIAL: Word = Word(READY);

    /// `Processing(request)` with no flags and no readers.
    #[inline]
    pub const fn processing(request: u64) -> Word {
        Word(request << REQUEST_SHIFT)
    }

    /// `n`, the newest accepted request.
    #[inline]
    pub const fn request(self) -> u64 {
        self.0 >> REQUEST_SHIFT
    }

    /// `Ready(n)` (abandoned or not) rather than `Processing(n)`.
    #[inline]
    pub const fn is_ready(self) -> bool {
        self.0 & READY != 0
    }

    /// `Ready(n)` whose outcome is `Abandoned`.
    #[inline]
    pub const fn is_abandoned(self) -> bool {
        self.0 & ABANDONED != 0
    }

    /// `Ready(n)` with a response in the slot.
    #[inline]
    pub const fn has_response(self) -> bool {
        self.0 & (READY | ABANDONED) == READY
    }

    /// `Ready(m)` with a response in the slot.
    #[inline]
    pub const fn has_response_of(self, m: u64) -> bool {
        self.request() == m && self.has_response()
    }

    /// Some thread may be parked on the futex.
    #[inline]
    pub const fn is_parked(self) -> bool {
        self.0 & PARKED != 0
    }

    /// Some async waiter may be listening for the next transition.
    #[inline]
    pub const fn has_async_waiters(self) -> bool {
        self.0 & ASYNC_WAITERS != 0
    }

    /// `m`'s response is there, but a triage has closed the door to its readers: the
    /// word is about to change (the triage starts its request or opens the door again).
    #[inline]
    pub const fn is_at_the_door_for(self, m: u64) -> bool {
        self.is_door_closed() && self.has_response_of(m)
    }

    /// The outcome of `m` is not settled in this word: `m` is not triaged yet or is
    /// still being processed.
    #[cfg(feature = "async")]
    #[inline]
    pub const fn is_pending_for(self, m: u64) -> bool {
        let n = self.request();
        n < m || (n == m && !self.is_ready())
    }

    /// `Processing(n)` claimable by the seed's `set_response`.
    #[inline]
    pub const fn is_unguarded(self) -> bool {
        self.0 & UNGUARDED != 0
    }

    /// A triage closed the door to new readers.
    #[inline]
    pub const fn is_door_closed(self) -> bool {
        self.0 & DOOR != 0
    }

    /// `Ready(m)` with a response, the door open and a reader place free: a reader of
    /// `m` may enter.
    #[inline]
    pub const fn is_open_to_readers_of(self, m: u64) -> bool {
        self.0 & (READY | ABANDONED | DOOR) == READY
            && self.request() == m
            && self.readers() < MAX_READERS
    }

    /// Readers inside their window.
    #[inline]
    pub const fn readers(self) -> u64 {
        (self.0 & READER_MASK) >> READER_SHIFT
    }

    #[inline]
    const fn ready(self) -> Word {
        Word((self.0 | READY) & !(PARKED | UNGUARDED | DOOR))
    }

    #[inline]
    const fn abandoned(self) -> Word {
        Word(self.ready().0 | ABANDONED)
    }

    /// The invariants every value of the word satisfies.
    pub const fn is_valid(self) -> bool {
        let abandoned_only_when_ready = !self.is_abandoned() || self.is_ready();
        let unguarded_only_when_processing = !self.is_unguarded() || !self.is_ready();
        abandoned_only_when_ready && unguarded_only_when_processing
    }
}

/// The fields the word packs, spelled out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// The newest accepted request, `0..=MAX_REQUEST`.
    pub request: u64,
    /// `Ready` rather than `Processing`.
    pub ready: bool,
    /// `Ready` with outcome `Abandoned`.
    pub abandoned: bool,
    /// Some thread may be parked.
    pub parked: bool,
    /// Processing started by the seed's `triage_request`.
    pub unguarded: bool,
    /// A triage closed the door to new readers.
    pub door: bool,
    /// Readers inside their window, `0..=1023`.
    pub readers: u64,
}

/// Why a set of fields has no word.
#[cfg_attr(not(any(test, fuzzing)), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The request number does not fit in 48 bits.
    RequestTooLarge(u64),
    /// More readers than the 10-bit count holds.
    TooManyReaders(u64),
    /// A combination no transition produces (e.g. abandoned while processing).
    Invalid,
}

impl Word {
    /// Packs `fields`, refusing what does not fit rather than wrapping. (The transitions
    /// build words directly; this is the checked way in for tests and fuzzing.)
    #[cfg_attr(not(any(test, fuzzing)), allow(dead_code))]
    pub fn encode(fields: Fields) -> Result<Word, EncodeError> {
        if fields.request > MAX_REQUEST {
            return Err(EncodeError::RequestTooLarge(fields.request));
        }
        if fields.readers > MAX_READERS {
            return Err(EncodeError::TooManyReaders(fields.readers));
        }
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        let word = Word(
            fields.request << REQUEST_SHIFT
                | fields.readers << READER_SHIFT
                | flag(fields.ready, READY)
                | flag(fields.abandoned, ABANDONED)
                | flag(fields.parked, PARKED)
                | flag(fields.unguarded, UNGUARDED)
                | flag(fields.door, DOOR),
        );
        if word.is_valid() {
            Ok(word)
        } else {
            Err(EncodeError::Invalid)
        }
    }

    /// Unpacks the word.
    pub fn decode(self) -> Fields {
        Fields {
            request: self.request(),
            ready: self.is_ready(),
            abandoned: self.is_abandoned(),
            parked: self.is_parked(),
            unguarded: self.is_unguarded(),
            door: self.is_door_closed(),
            readers: self.readers(),
        }
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = self.decode();
        let phase = match (fields.ready, fields.abandoned) {
            (false, _) => "Processing",
            (true, false) => "Ready",
            (true, true) => "Abandoned",
        };
        write!(f, "{phase}({})", fields.request)?;
        if fields.readers > 0 {
            write!(f, " readers={}", fields.readers)?;
        }
        if fields.parked {
            f.write_str(" parked")?;
        }
        if fields.unguarded {
            f.write_str(" unguarded")?;
        }
        if fields.door {
            f.write_str(" door-closed")?;
        }
        if self.has_async_waiters() {
            f.write_str(" async-waiters")?;
        }
        Ok(())
    }
}

/// What a triage of request `m` decided, read from one value of the word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `Ready(n)`, `m > n`: try to start `m`.
    Start,
    /// `m == n`: the outcome of `m` is there or coming.
    Resend,
    /// `m < n`.
    Stale,
    /// `Processing(n)`, `m > n`.
    Busy,
}

/// The triage table: what a triage of `m` does given the word `seen`.
#[inline]
pub fn decide(seen: Word, m: u64) -> Decision {
    let n = seen.request();
    if m < n {
        Decision::Stale
    } else if m == n {
        Decision::Resend
    } else if seen.is_ready() {
        Decision::Start
    } else {
        Decision::Busy
    }
}

/// The atomic word and its transitions.
pub struct StateWord(AtomicU64);

impl StateWord {
    /// `Ready(0)`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        StateWord(AtomicU64::new(Word::INITIAL.0))
    }

    /// A snapshot of the word.
    #[inline]
    pub fn load(&self) -> Word {
        // ORDERING: acquire pairs with the release half of every transition below: whoever
        // sees `Ready(m)` also sees the response that `complete` wrote before it.
        Word(self.0.load(Ordering::Acquire))
    }

    /// `Ready(n) -> Processing(m)` if the table says so (marked `UNGUARDED` when
    /// `unguarded`); returns the word it replaced. Readers still inside their window
    /// stay counted: the caller (or, unguarded, the claimer) drains them before
    /// touching the slot.
    ///
    /// One compare-and-swap from the caller's snapshot when nothing races it. Once one
    /// fails, `close_door` (a read-modify-write that always succeeds) shuts out new
    /// readers; from then on the word changes only as readers leave, waiters park or
    /// another triage wins, so readers cannot prolong the loop.
    ///
    /// A triage that closed the door and then finds the table refusing `m` opens it
    /// again, clearing `PARKED`: `reopened` gets the word that replaced, to wake the
    /// readers waiting at the door.
    #[inline(always)]
    pub fn start(&self, m: u64, unguarded: bool, reopened: impl Fn(Word)) -> Result<Word, Refusal> {
        debug_assert!(m <= MAX_REQUEST);
        let seen = self.load();
        if let Some(refusal) = Refusal::of(seen, m) {
            return Err(refusal);
        }
        match self.try_start(seen, m, unguarded) {
            Ok(previous) => Ok(previous),
            Err(now) => self.start_contended(now, m, unguarded, &reopened),
        }
    }

    /// `start` once its first compare-and-swap has failed, showing `failed`.
    #[cold]
    #[inline(never)]
    fn start_contended(
        &self,
        failed: Word,
        m: u64,
        unguarded: bool,
        reopened: &impl Fn(Word),
    ) -> Result<Word, Refusal> {
        let mut seen = self.after_a_lost_race(failed, m, reopened)?;
        loop {
            if let Some(refusal) = Refusal::of(seen, m) {
                return Err(refusal);
            }
            match self.try_start(seen, m, unguarded) {
                Ok(previous) => return Ok(previous),
                Err(now) => seen = self.after_a_lost_race(now, m, reopened)?,
            }
        }
    }

    /// The word to try next after a compare-and-swap for `m` failed, showing `now`:
    /// `now` itself if the door is closed already or the table no longer starts `m`;
    /// otherwise readers or waiters changed the word, and the door closes.
    #[inline]
    fn after_a_lost_race(
        &self,
        now: Word,
        m: u64,
        reopened: &impl Fn(Word),
    ) -> Result<Word, Refusal> {
        if now.is_door_closed() || Refusal::of(now, m).is_some() {
            Ok(now)
        } else {
            self.close_door(m, reopened)
        }
    }

    #[inline]
    fn try_start(&self, seen: Word, m: u64, unguarded: bool) -> Result<Word, Word> {
        let flags = if unguarded { UNGUARDED } else { 0 };
        let next = Word(Word::processing(m).0 | flags | (seen.0 & READER_MASK));
        // ORDERING: acquire pairs with the release of the `complete` that made `Ready(n)`
        // (the old response may be dropped by this thread) and of waiters' `park`; release
        // pairs with the acquire of every later load that sees `Processing(m)` (and of
        // `claim`, whose caller reclaims the slot after it).
        let result = self
            .0
            .compare_exchange(seen.0, next.0, Ordering::AcqRel, Ordering::Acquire);
        debug_assert!(next.is_valid());
        result.map(Word).map_err(Word)
    }

    /// Closes the door to new readers for a triage of `m` that lost a race, and returns
    /// the word with the door closed. If the table no longer starts `m`, a door this
    /// call closed is opened again (no `start` will) and the refusal returned.
    #[cold]
    pub(crate) fn close_door(&self, m: u64, reopened: &impl Fn(Word)) -> Result<Word, Refusal> {
        // ORDERING: acquire, as the failed compare-and-swap it follows; the door itself
        // publishes nothing (it only turns readers' `enter` away).
        let before = Word(self.0.fetch_or(DOOR, Ordering::Acquire));
        match Refusal::of(before, m) {
            None => Ok(Word(before.0 | DOOR)),
            Some(refusal) => {
                if !before.is_door_closed() && !planted_bug!(KeepDoorOnRefusal) {
                    // ORDERING: acquire pairs with the release `park` of readers that
                    // wait at the door, as every transition that clears PARKED.
                    let previous = self.0.fetch_and(!(DOOR | PARKED), Ordering::Acquire);
                    reopened(Word(previous));
                }
                Err(refusal)
            }
        }
    }

    /// Spins (with yields) until no reader is inside its window. Only the owner of
    /// `Processing(m)` calls this (before it touches the slot), and no reader can
    /// enter again until it settles `m`, so the wait is bounded by the readers that
    /// were inside when `m` started.
    pub fn drain_readers(&self) {
        let backoff = Backoff::new();
        // ORDERING: acquire pairs with each reader's release `leave`: their clone of the
        // old response happens-before the caller drops it.
        while Word(self.0.load(Ordering::Acquire)).readers() > 0 {
            backoff.snooze();
        }
    }

    /// `Processing(m) -> Ready(m)`. Only the owner of `Processing(m)` calls this, so the
    /// only concurrent change is a waiter setting `PARKED`: one swap is enough, and the
    /// previous value tells whether anyone must be woken.
    #[inline]
    pub fn complete(&self, m: u64) -> Word {
        // ORDERING: release pairs with the acquire of readers' `load`/`enter`: the slot
        // write sequenced before this is visible to whoever sees `Ready(m)`. Acquire pairs
        // with waiters' release `park`, whose epoch read must precede our wake.
        let previous = Word(self.0.swap(Word::processing(m).ready().0, Ordering::AcqRel));
        debug_assert_owner(previous, m);
        previous
    }

    /// `Processing(m) -> Ready(m)`, abandoned. Same ownership argument as `complete`.
    #[inline]
    pub fn abandon(&self, m: u64) -> Word {
        // ORDERING: as in `complete`.
        let previous = Word(
            self.0
                .swap(Word::processing(m).abandoned().0, Ordering::AcqRel),
        );
        debug_assert_owner(previous, m);
        previous
    }

    /// Takes over an unguarded `Processing(m)`, returning the word it replaced (the
    /// caller drains the readers still counted before it touches the slot, as every
    /// owner does); exactly one caller per request wins. One read-modify-write whatever
    /// the state: clearing a bit that is not set changes nothing.
    #[inline]
    pub fn claim(&self) -> Result<Word, Word> {
        // ORDERING: acquire pairs with the release of the `start` that set UNGUARDED
        // (and, through it, of the `complete` before it); release keeps the claim
        // ordered before the slot writes that follow it for later readers of the word.
        let previous = Word(self.0.fetch_and(!UNGUARDED, Ordering::AcqRel));
        if previous.is_unguarded() && !previous.is_ready() {
            Ok(previous)
        } else {
            Err(previous)
        }
    }

    /// Registers a reader of request `m`'s response, starting from the caller's
    /// snapshot `seen`; fails, with the value that showed it (`seen` itself or a newer
    /// one), when the word is not `Ready(m)` with a response or a triage has the door
    /// closed. Waits (briefly) only when all reader places are taken.
    #[inline]
    pub fn enter_from(&self, mut seen: Word, m: u64) -> Result<(), Word> {
        let backoff = Backoff::new();
        loop {
            if !seen.has_response_of(m) || seen.is_door_closed() {
                return Err(seen);
            }
            if seen.readers() == MAX_READERS {
                seen = self.wait_for_a_reader_place(&backoff);
                continue;
            }
            // ORDERING: acquire pairs with `complete`'s release: the response is visible.
            match self.0.compare_exchange_weak(
                seen.0,
                seen.0 + ONE_READER,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => seen = Word(now),
            }
        }
    }

    /// `enter_from` in one attempt, for the read that finds the word as it left it:
    /// registers a reader if `seen` is `Ready(m)` with a response, the door open and a
    /// reader place free, and the word still holds `seen`. `false` says nothing about
    /// why: the caller takes the general path.
    #[inline(always)]
    pub fn try_enter(&self, seen: Word, m: u64) -> bool {
        if !seen.is_open_to_readers_of(m) {
            return false;
        }
        // ORDERING: acquire pairs with `complete`'s release: the response is visible.
        self.0
            .compare_exchange(
                seen.0,
                seen.0 + ONE_READER,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Every reader place is taken: backs off, then reads the word again.
    #[cold]
    #[inline(never)]
    fn wait_for_a_reader_place(&self, backoff: &Backoff) -> Word {
        backoff.snooze();
        self.load()
    }

    /// `enter_from` a fresh snapshot.
    #[cfg_attr(not(any(test, fuzzing)), allow(dead_code))]
    pub fn enter(&self, m: u64) -> Result<(), Word> {
        self.enter_from(self.load(), m)
    }

    /// Ends a reader's window opened by `enter_from`.
    #[inline]
    pub fn leave(&self) {
        // ORDERING: release pairs with the acquire in `drain_readers`: our clone of the
        // response happens-before the drainer drops it.
        let previous = Word(self.0.fetch_sub(ONE_READER, Ordering::Release));
        debug_assert!(previous.readers() > 0);
    }

    /// Sets `PARKED` if the word still holds `seen`. Always a write, even when `PARKED`
    /// is set already: the transition that wakes must read this waiter's count of
    /// itself (see `Parker`), and only a write it reads from orders that count
    /// before it.
    #[inline]
    pub fn park(&self, seen: Word) -> Result<(), Word> {
        if seen.is_parked() && planted_bug!(TrustForeignParked) {
            return Ok(());
        }
        // ORDERING: release pairs with the acquire of the transition that will clear
        // PARKED: our earlier read of the futex epoch and our parked count happen-before
        // it, so the epoch we sleep on is not already stale and the waker sees us counted.
        self.0
            .compare_exchange(
                seen.0,
                seen.0 | PARKED,
                Ordering::Release,
                Ordering::Acquire,
            )
            .map(drop)
            .map_err(Word)
    }

    /// Sets `ASYNC_WAITERS` while the word is pending for `m`, or holds `m`'s response
    /// behind a door a triage has closed, so that the transition that settles `m` (or
    /// the triage that starts or opens the door again) notifies. Fails, with the word that showed it, once `m` is
    /// settled. Always a read-modify-write, also when the bit is already set: the
    /// caller's listener registration must happen-before the transition that reads it.
    #[cfg(feature = "async")]
    #[inline]
    pub fn mark_async_waiters(&self, m: u64) -> Result<(), Word> {
        let mut seen = self.load();
        loop {
            if !(seen.is_pending_for(m) || seen.is_at_the_door_for(m)) {
                return Err(seen);
            }
            // ORDERING: release pairs with the acquire of the transition (`start`,
            // `complete`, `abandon`) that clears the bit: the listener registered
            // before this is visible to its notify. Acquire pairs with that
            // transition's release when this fails, so the re-check sees its outcome.
            match self.0.compare_exchange_weak(
                seen.0,
                seen.0 | ASYNC_WAITERS,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => seen = Word(now),
            }
        }
    }

    /// Clears `ASYNC_WAITERS` unless a transition did: for the last async waiter to
    /// leave without being notified. Returns whether this call cleared it.
    #[cfg(feature = "async")]
    #[inline]
    pub fn clear_async_waiters(&self) -> bool {
        // ORDERING: acquire pairs with waiters' release `mark_async_waiters`: a
        // listener registered before a mark that this clears is visible to the
        // caller's next count of listeners.
        let previous = Word(self.0.fetch_and(!ASYNC_WAITERS, Ordering::Acquire));
        previous.has_async_waiters()
    }
}

/// What a triage of `m` does instead of starting it: the table's other answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `m == n`: the outcome of `m` is there or coming.
    Resend,
    /// `m < n`.
    Stale,
    /// `Processing(current)`, `m > current`.
    Busy {
        /// The request being processed.
        current: u64,
    },
}

impl Refusal {
    /// The table's answer for `m` given `seen`, or `None` where it says start.
    #[inline]
    pub fn of(seen: Word, m: u64) -> Option<Refusal> {
        match decide(seen, m) {
            Decision::Start => None,
            Decision::Resend => Some(Refusal::Resend),
            Decision::Stale => Some(Refusal::Stale),
            Decision::Busy => Some(Refusal::Busy {
                current: seen.request(),
            }),
        }
    }
}

#[inline]
fn debug_assert_owner(previous: Word, m: u64) {
    debug_assert!(
        !previous.is_ready() && previous.request() == m && previous.readers() == 0,
        "only the owner of Processing({m}) may settle it, found {previous:?}"
    );
}

impl fmt::Debug for StateWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ORDERING: relaxed, diagnostics only; never blocks.
        Word(self.0.load(Ordering::Relaxed)).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_leaves_no_gaps_and_no_overlaps() {
        let flags = READY | ABANDONED | PARKED | UNGUARDED | DOOR | ASYNC_WAITERS;
        let requests = MAX_REQUEST << REQUEST_SHIFT;
        assert_eq!(flags & READER_MASK, 0);
        assert_eq!(flags & requests, 0);
        assert_eq!(READER_MASK & requests, 0);
        assert_eq!(flags | READER_MASK | requests, u64::MAX);
        assert_eq!(MAX_REQUEST, (1 << 48) - 1);
    }

    #[test]
    fn encode_decode_round_trips_at_the_edges() {
        for m in [0, 1, 2, 0xFFFF, 1 << 32, MAX_REQUEST - 1, MAX_REQUEST] {
            let p = Word::processing(m);
            assert_eq!(p.request(), m);
            assert!(!p.is_ready() && p.is_valid());
            assert_eq!(p.ready().request(), m);
            assert!(p.ready().has_response());
            assert_eq!(p.abandoned().request(), m);
            assert!(p.abandoned().is_abandoned() && !p.abandoned().has_response());
        }
    }

    /// Walks every state reachable from `Ready(0)` through the transitions with small
    /// request numbers and reader counts, checking that each result is valid and that
    /// readers and flags never leak into the request number.
    #[test]
    fn every_reachable_state_is_valid() {
        let mut frontier = vec![Word::INITIAL];
        let mut seen = std::collections::HashSet::new();
        while let Some(w) = frontier.pop() {
            if !seen.insert(w.0) {
                continue;
            }
            assert!(w.is_valid(), "{w:?}");
            let mut next = Vec::new();
            let n = w.request();
            if w.is_ready() && n < 4 {
                for m in n + 1..=4 {
                    let started = Word::processing(m).0 | (w.0 & READER_MASK);
                    next.push(Word(started));
                    next.push(Word(started | UNGUARDED));
                }
            }
            next.push(Word(w.0 | DOOR));
            if !w.is_ready() && w.readers() == 0 && !w.is_unguarded() {
                next.push(w.ready());
                next.push(w.abandoned());
            }
            if w.is_unguarded() {
                next.push(Word(w.0 & !UNGUARDED));
            }
            if w.has_response() && !w.is_door_closed() && w.readers() < 2 {
                next.push(Word(w.0 + ONE_READER));
            }
            if w.readers() > 0 {
                next.push(Word(w.0 - ONE_READER));
            }
            if !w.is_parked() && !(w.has_response()) {
                next.push(Word(w.0 | PARKED));
            }
            frontier.extend(next);
        }
        assert!(seen.len() > 50, "walked only {} states", seen.len());
    }

    #[test]
    fn a_closed_door_keeps_new_readers_out_until_the_next_start() {
        let word = StateWord::new();
        word.start(1, false, drop).unwrap();
        word.complete(1);
        word.enter(1).unwrap();
        assert!(word.close_door(2, &drop).is_ok());
        assert!(word.load().is_door_closed());
        assert!(word.enter(1).is_err(), "turned away at the door");
        // A reader's snapshot from before the door closed no longer matches the word.
        let before = Word(word.load().0 & !DOOR);
        assert!(word
            .0
            .compare_exchange(
                before.0,
                before.0 + ONE_READER,
                Ordering::Acquire,
                Ordering::Relaxed
            )
            .is_err());
        let replaced = word.start(2, false, drop).unwrap();
        assert!(replaced.is_door_closed() && replaced.readers() == 1);
        assert!(!word.load().is_door_closed(), "start opens the door");
        word.leave();
        word.drain_readers();
        assert_eq!(word.load(), Word::processing(2));
    }

    #[test]
    fn a_triage_that_the_table_refuses_opens_the_door_it_closed() {
        let word = StateWord::new();
        word.start(1, false, drop).unwrap();
        word.complete(1);
        assert_eq!(word.close_door(1, &drop), Err(Refusal::Resend));
        assert!(!word.load().is_door_closed());
        word.start(2, false, drop).unwrap();
        assert_eq!(word.close_door(3, &drop), Err(Refusal::Busy { current: 2 }));
        assert!(!word.load().is_door_closed());
    }

    #[test]
    fn claim_takes_an_unguarded_start_once_and_keeps_its_readers_counted() {
        let word = StateWord::new();
        word.start(1, false, drop).unwrap();
        word.complete(1);
        word.enter(1).unwrap();
        assert!(word.claim().is_err(), "nothing to claim in Ready(1)");
        word.start(2, true, drop).unwrap();
        let claimed = word.claim().unwrap();
        assert_eq!((claimed.request(), claimed.readers()), (2, 1));
        assert!(word.claim().is_err(), "claimed once");
        word.leave();
        word.drain_readers();
        assert_eq!(word.complete(2), Word::processing(2));
    }

    #[test]
    fn encode_refuses_what_does_not_fit_instead_of_wrapping() {
        let at_max = Fields {
            request: MAX_REQUEST,
            ready: true,
            ..Fields::default()
        };
        assert_eq!(Word::encode(at_max).unwrap().decode(), at_max);
        let above = Fields {
            request: MAX_REQUEST + 1,
            ..at_max
        };
        assert_eq!(
            Word::encode(above),
            Err(EncodeError::RequestTooLarge(MAX_REQUEST + 1))
        );
        let crowded = Fields {
            readers: MAX_READERS + 1,
            ..at_max
        };
        assert_eq!(
            Word::encode(crowded),
            Err(EncodeError::TooManyReaders(MAX_READERS + 1))
        );
        let abandoned_processing = Fields {
            abandoned: true,
            ..Fields::default()
        };
        assert_eq!(
            Word::encode(abandoned_processing),
            Err(EncodeError::Invalid)
        );
    }

    #[test]
    fn decide_follows_the_transition_table() {
        let ready = Word::processing(5).ready();
        let processing = Word::processing(5);
        assert_eq!(decide(ready, 4), Decision::Stale);
        assert_eq!(decide(ready, 5), Decision::Resend);
        assert_eq!(decide(ready, 6), Decision::Start);
        assert_eq!(decide(ready, 9), Decision::Start);
        assert_eq!(decide(processing, 4), Decision::Stale);
        assert_eq!(decide(processing, 5), Decision::Resend);
        assert_eq!(decide(processing, 6), Decision::Busy);
        assert_eq!(decide(processing, 9), Decision::Busy);
        assert_eq!(decide(Word::processing(5).abandoned(), 6), Decision::Start);
    }

    #[test]
    fn readers_enter_only_a_ready_word_and_are_kept_across_start() {
        let word = StateWord::new();
        word.start(1, false, drop).unwrap();
        assert_eq!(word.enter(1), Err(Word::processing(1)));
        word.complete(1);
        word.enter(1).unwrap();
        word.enter(1).unwrap();
        assert_eq!(word.load().readers(), 2);
        let replaced = word.start(2, false, drop).unwrap();
        assert_eq!(replaced.readers(), 2);
        assert_eq!(word.load().readers(), 2);
        assert!(word.enter(2).is_err());
        word.leave();
        word.leave();
        word.drain_readers();
        assert_eq!(word.load(), Word::processing(2));
    }
}
