//! A table of sessions shared by the threads or tasks of one server: create, attach,
//! end, expire and evict, with unguessable ids, a limit on live sessions and a memory
//! budget for the responses the sessions retain.
//!
//! The table knows nothing of the transport in front of it: it is generic over the
//! response type `T`, and it reports what it does through a [`TableObserver`] rather
//! than logging or counting itself.
//!
//! # Life of a session
//! - [`create`](SessionTable::create) makes a session and attaches the caller;
//!   [`attach`](SessionTable::attach) attaches to a live one by id. An [`Attached`]
//!   counts as a connection while it lives; a session with a connection is never
//!   expired or evicted.
//! - A session without a connection expires after
//!   [`unused_expiry`](TableConfig::unused_expiry) if it never completed a request
//!   (a flood of sessions opened and dropped is gone in seconds), and after
//!   [`idle_expiry`](TableConfig::idle_expiry) otherwise.
//! - When the table is full, creating a session first evicts the session without a
//!   connection that lost its last one longest ago, taking sessions that never
//!   completed a request first. When the responses sessions retain hold more than the
//!   budget's limit, sessions without a connection are evicted the same way (oldest
//!   first, sparing those within the
//!   [`memory_eviction_grace`](TableConfig::memory_eviction_grace) while under twice
//!   the limit) until they fit again or none is left; a session with a connection
//!   never loses its response. A client whose session was expired or evicted is told its
//!   session is unknown when it comes back: it gets an error, never a second
//!   execution of a request.
//! - A call that needs memory the budget does not have is admitted with
//!   [`admit`](SessionTable::admit): sessions without a connection that hold a
//!   retained response are evicted, longest detached first, until it fits; it is
//!   refused only when none is left.
//! - [`end`](SessionTable::end) removes a session at once, with its retained response.
//!
//! # Cost
//! The table is split into shards by id, each behind its own lock, so handshakes on
//! different sessions rarely wait for each other. Expiry pops only sessions that are
//! due, from queues kept in the order sessions lost their connection: O(1) amortised
//! per handshake, never a scan of the table.

mod admission;
mod budget;
mod ids;
mod shard;

pub use budget::{Budget, Reservation, Waiting};
pub use ids::{owner_of, Fingerprint, OWNER_BITS, RANDOM_BITS};

use crate::{RequestNr, SessionState};
use ids::IdMaker;
use shard::{Shard, Use};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shards of a table: a power of two, enough that 16 cores rarely meet on one lock.
const SHARDS: usize = 32;

/// Limits of a [`SessionTable`]. Start from `TableConfig::default()`.
#[derive(Clone, Debug)]
pub struct TableConfig {
    /// The most live sessions (default 1024). When full, creating a session evicts the
    /// longest-detached session without a connection, or fails if every session has one.
    pub max_sessions: usize,
    /// A session that completed a request and has had no connection for this long is
    /// removed (default 10 minutes).
    pub idle_expiry: Duration,
    /// A session that never completed a request and has had no connection for this long
    /// is removed (default 10 s).
    pub unused_expiry: Duration,
    /// The owner number written into the top [`OWNER_BITS`] of every id (default 0); see
    /// [`owner_of`].
    pub owner: u8,
    /// A session that lost its connection less than this long ago is not evicted to
    /// bring retained responses back within the budget, unless they hold more than
    /// twice its limit (default 1 s): a client that is reconnecting keeps its session.
    pub memory_eviction_grace: Duration,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            max_sessions: 1024,
            idle_expiry: Duration::from_secs(600),
            unused_expiry: Duration::from_secs(10),
            owner: 0,
            memory_eviction_grace: Duration::from_secs(1),
        }
    }
}

/// Something the table did to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableEvent {
    /// A session was created.
    Created(Fingerprint),
    /// A connection attached to a live session.
    Attached(Fingerprint),
    /// Its client ended the session.
    Ended(Fingerprint),
    /// The session had no connection for its expiry time.
    Expired {
        /// Which session.
        session: Fingerprint,
        /// True if it never completed a request.
        never_used: bool,
    },
    /// The session had no connection and was the oldest such when the table was full.
    Evicted(Fingerprint),
}

/// Receives the table's [`TableEvent`]s (any `Fn(TableEvent)` is one). Called with a
/// shard lock held: keep it short and never call back into the table.
pub trait TableObserver: Send + Sync {
    /// One event.
    fn observe(&self, event: TableEvent);
}

impl<F: Fn(TableEvent) + Send + Sync> TableObserver for F {
    fn observe(&self, event: TableEvent) {
        self(event)
    }
}

/// Why the table gave no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// No live session has this id (never made, ended, expired or evicted).
    Unknown,
    /// The table is full and every session has a connection.
    Full,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableError::Unknown => "unknown session",
            TableError::Full => "every session slot is held by a connected session",
        })
    }
}

impl std::error::Error for TableError {}

/// Gives the bytes a retained response holds, for the memory budget.
pub type Weigher<T> = dyn Fn(&T) -> usize + Send + Sync;

/// A table of sessions; see the [module docs](self). Cloning gives another handle to the
/// same table.
pub struct SessionTable<T: Send + Sync> {
    inner: Arc<Inner<T>>,
}

struct Inner<T: Send + Sync> {
    /// Each on its own cache lines: a thread taking one shard's lock does not slow
    /// threads taking its neighbours'.
    shards: Box<[Padded<Mutex<Shard<T>>>]>,
    ids: IdMaker,
    config: TableConfig,
    epoch: Instant,
    /// Written by every create and removal: kept off the lines of the read-mostly
    /// fields around it.
    live: Padded<AtomicUsize>,
    budget: Arc<Budget>,
    weigher: Box<Weigher<T>>,
    /// None until one is set: then no event is made (nor its fingerprint hashed).
    observer: Option<Box<dyn TableObserver>>,
}

struct Entry<T: Send + Sync> {
    id: u64,
    state: SessionState<T>,
    used: AtomicBool,
    /// Bytes of the retained response counted in the budget.
    retained: AtomicUsize,
    budget: Arc<Budget>,
    /// Copies of the session's requests waiting for another copy's outcome
    /// ([`Attached::try_wait`]).
    waiting: AtomicU32,
}

/// A place among the copies of a session's requests that wait for another copy's
/// outcome ([`Attached::try_wait`]); given back when dropped.
#[must_use = "the place is given back when this is dropped"]
#[derive(Debug)]
pub struct WaitPlace<'a> {
    waiting: &'a AtomicU32,
}

impl Drop for WaitPlace<'_> {
    fn drop(&mut self) {
        // ORDERING: relaxed; a count, read only to keep it below a cap.
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's hold on a session: the session is neither expired nor evicted while
/// one lives. Dropping it detaches.
#[must_use = "the session counts as connected only while this lives"]
pub struct Attached<T: Send + Sync> {
    table: Arc<Inner<T>>,
    entry: Arc<Entry<T>>,
}

impl<T: Send + Sync + 'static> SessionTable<T> {
    /// An empty table whose retained responses weigh nothing against `budget`, and
    /// whose events go nowhere; see [`with_weigher`](Self::with_weigher) and
    /// [`with_observer`](Self::with_observer).
    pub fn new(config: TableConfig, budget: Arc<Budget>) -> Self {
        SessionTable {
            inner: Arc::new(Inner {
                shards: (0..SHARDS)
                    .map(|_| Padded(Mutex::new(Shard::new())))
                    .collect(),
                ids: IdMaker::new(config.owner),
                config,
                epoch: Instant::now(),
                live: Padded(AtomicUsize::new(0)),
                budget,
                weigher: Box::new(|_| 0),
                observer: None,
            }),
        }
    }

    /// Counts each retained response's `weigher(response)` bytes in the budget.
    ///
    /// # Panics
    /// If the table has been cloned or has sessions already.
    pub fn with_weigher(mut self, weigher: impl Fn(&T) -> usize + Send + Sync + 'static) -> Self {
        self.inner_mut().weigher = Box::new(weigher);
        self
    }

    /// Reports every event to `observer`.
    ///
    /// # Panics
    /// If the table has been cloned or has sessions already.
    pub fn with_observer(mut self, observer: impl TableObserver + 'static) -> Self {
        self.inner_mut().observer = Some(Box::new(observer));
        self
    }

    fn inner_mut(&mut self) -> &mut Inner<T> {
        let inner = Arc::get_mut(&mut self.inner).expect("configure a table before sharing it");
        assert_eq!(
            inner.live.load(Ordering::Relaxed),
            0,
            "configure an empty table"
        );
        inner
    }
}

impl<T: Send + Sync> SessionTable<T> {
    /// Creates a session and attaches to it; evicts the longest-detached session if the
    /// table is full.
    pub fn create(&self) -> Result<Attached<T>, TableError> {
        self.inner.take_place()?;
        let entry = loop {
            let id = self.inner.ids.next();
            let mut shard = self.inner.lock(id);
            if shard.contains(id) {
                continue;
            }
            let entry = Arc::new(Entry {
                id,
                state: SessionState::new(),
                used: AtomicBool::new(false),
                retained: AtomicUsize::new(0),
                waiting: AtomicU32::new(0),
                budget: Arc::clone(&self.inner.budget),
            });
            shard.insert(Arc::clone(&entry));
            self.inner.expire_shard(&mut shard);
            break entry;
        };
        self.inner.report(entry.id, TableEvent::Created);
        Ok(self.inner.attached(entry))
    }

    /// Attaches to the live session `id`.
    pub fn attach(&self, id: u64) -> Result<Attached<T>, TableError> {
        let mut shard = self.inner.lock(id);
        self.inner.expire_shard(&mut shard);
        let entry = shard.attach(id).ok_or(TableError::Unknown)?;
        drop(shard);
        self.inner.report(id, TableEvent::Attached);
        Ok(self.inner.attached(entry))
    }

    /// Removes session `id` at once, connected or not; false if it was not live.
    pub fn end(&self, id: u64) -> bool {
        let removed = self.inner.lock(id).remove(id);
        if removed.is_some() {
            self.inner.live.fetch_sub(1, Ordering::Relaxed);
            self.inner.report(id, TableEvent::Ended);
        }
        removed.is_some()
    }

    /// Evicts, of the sessions without a connection whose retained response passes
    /// `worth` (one large enough to be worth its session, say), the one that lost its
    /// last connection longest ago, however recently: for a caller that needs memory
    /// now. False if there is no such session.
    pub fn evict_for_memory(&self, worth: impl Fn(&T) -> bool) -> bool {
        let worth = |entry: &Entry<T>| {
            let current = entry.state.status().request;
            RequestNr::new(current)
                .ok()
                .and_then(|m| entry.state.try_get(m).ok())
                .is_some_and(|response| worth(&response))
        };
        let mut best: Option<(u64, u64, usize)> = None;
        for (i, shard) in self.inner.shards.iter().enumerate() {
            if let Some((at, id)) = lock(shard).oldest_where(Use::Used, worth) {
                if best.map_or(true, |(best_at, _, _)| at < best_at) {
                    best = Some((at, id, i));
                }
            }
        }
        let Some((_, id, i)) = best else {
            return false;
        };
        // Another thread may have taken or attached it meanwhile: the caller looks again.
        if let Some(entry) = lock(&self.inner.shards[i]).remove_detached(id) {
            self.inner.removed(&entry);
        }
        true
    }

    /// Removes every session whose expiry time has passed; returns how many.
    pub fn expire(&self) -> usize {
        let mut removed = 0;
        for shard in self.inner.shards.iter() {
            removed += self.inner.expire_shard(&mut lock(shard));
        }
        removed
    }

    /// Live sessions now.
    pub fn len(&self) -> usize {
        // ORDERING: a tally read on its own.
        self.inner.live.load(Ordering::Relaxed)
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The budget retained responses are counted in.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.inner.budget
    }

    /// The limits the table was made with.
    pub fn config(&self) -> &TableConfig {
        &self.inner.config
    }

    /// The short log-safe name of session `id`.
    pub fn fingerprint(&self, id: u64) -> Fingerprint {
        self.inner.ids.fingerprint(id)
    }
}

impl<T: Send + Sync> Inner<T> {
    fn lock(&self, id: u64) -> MutexGuard<'_, Shard<T>> {
        // The random bits just above the bottom pick the shard (the owner bits are the
        // same for every id of this table).
        lock(&self.shards[(id >> 8) as usize % SHARDS])
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Counts a new session in, evicting one if the table is full.
    fn take_place(&self) -> Result<(), TableError> {
        let max = self.config.max_sessions;
        loop {
            // ORDERING: the count is its own subject; the compare-exchange keeps it at or
            // below the limit.
            let taken = self
                .live
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < max).then_some(n + 1)
                });
            if taken.is_ok() {
                return Ok(());
            }
            if !self.expire_all_or_evict_one() {
                return Err(TableError::Full);
            }
        }
    }

    /// Makes room: expires what is due, or else evicts the longest-detached session.
    /// False if neither freed a place.
    fn expire_all_or_evict_one(&self) -> bool {
        let mut expired = 0;
        for shard in self.shards.iter() {
            expired += self.expire_shard(&mut lock(shard));
        }
        expired > 0
            || self.evict_oldest(Use::Never, u64::MAX)
            || self.evict_oldest(Use::Used, u64::MAX)
    }

    /// Evicts detached sessions that completed requests, oldest first, while retained
    /// responses hold more than the budget's limit: those detached within the grace
    /// only while they hold more than twice the limit.
    fn evict_while_over_budget(&self) {
        let limit = self.budget.limit();
        if self.budget.used() <= limit {
            return; // the usual case: no clock read
        }
        let grace = self.config.memory_eviction_grace.as_millis() as u64;
        // None: the table is younger than the grace, so every session is within it.
        let cutoff = self.now_ms().checked_sub(grace);
        while self.budget.used() > limit {
            let spare_grace = self.budget.used() <= limit.saturating_mul(2);
            let evicted = cutoff.is_some_and(|cutoff| self.evict_oldest(Use::Used, cutoff))
                || (!spare_grace && self.evict_oldest(Use::Used, u64::MAX));
            if !evicted {
                return;
            }
        }
    }

    /// Evicts the session of `queue` that lost its connection longest ago, if that was
    /// at or before `cutoff_ms`; false if there is none.
    fn evict_oldest(&self, queue: Use, cutoff_ms: u64) -> bool {
        let mut best = None;
        for (i, shard) in self.shards.iter().enumerate() {
            if let Some(at) = lock(shard).oldest(queue) {
                if at <= cutoff_ms && best.map_or(true, |(best_at, _)| at < best_at) {
                    best = Some((at, i));
                }
            }
        }
        let Some((at, i)) = best else {
            return false;
        };
        // Another thread may have taken it meanwhile: then the caller tries again.
        if let Some(entry) = lock(&self.shards[i]).pop_older(queue, at) {
            self.removed(&entry);
        }
        true
    }

    /// Counts out and reports a session evicted.
    fn removed(&self, entry: &Entry<T>) {
        // ORDERING: see `take_place`.
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.report(entry.id, TableEvent::Evicted);
    }

    /// Reports the event `event(fingerprint of id)`, if anyone observes.
    fn report(&self, id: u64, event: impl FnOnce(Fingerprint) -> TableEvent) {
        if let Some(observer) = &self.observer {
            observer.observe(event(self.ids.fingerprint(id)));
        }
    }

    /// Removes the due sessions of one shard; returns how many.
    fn expire_shard(&self, shard: &mut Shard<T>) -> usize {
        let now = self.now_ms();
        let mut removed = 0;
        for (queue, expiry) in [
            (Use::Never, self.config.unused_expiry),
            (Use::Used, self.config.idle_expiry),
        ] {
            let Some(cutoff) = now.checked_sub(expiry.as_millis() as u64) else {
                continue; // nothing has been detached that long
            };
            while let Some(entry) = shard.pop_older(queue, cutoff) {
                removed += 1;
                self.report(entry.id, |session| TableEvent::Expired {
                    session,
                    never_used: queue == Use::Never,
                });
            }
        }
        // ORDERING: see `take_place`.
        self.live.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    fn attached(self: &Arc<Self>, entry: Arc<Entry<T>>) -> Attached<T> {
        Attached {
            table: Arc::clone(self),
            entry,
        }
    }
}

/// A value alone on its cache lines (two, for CPUs that fetch lines in pairs).
#[repr(align(128))]
struct Padded<V>(V);

impl<V> std::ops::Deref for Padded<V> {
    type Target = V;

    fn deref(&self) -> &V {
        &self.0
    }
}

fn lock<T: Send + Sync>(shard: &Mutex<Shard<T>>) -> MutexGuard<'_, Shard<T>> {
    // Every change under a shard lock leaves it whole before anything that can panic
    // (the observer is called last), so a poisoned lock is still good.
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Send + Sync> Attached<T> {
    /// The session's id, which its client presents to attach again.
    pub fn id(&self) -> u64 {
        self.entry.id
    }

    /// The session's state machine.
    pub fn state(&self) -> &SessionState<T> {
        &self.entry.state
    }

    /// The session's log-safe name.
    pub fn fingerprint(&self) -> Fingerprint {
        self.table.ids.fingerprint(self.entry.id)
    }

    /// A place among the copies of this session's requests that wait for another
    /// copy's outcome, if fewer than `cap` wait now.
    pub fn try_wait(&self, cap: u32) -> Option<WaitPlace<'_>> {
        let waiting = &self.entry.waiting;
        // ORDERING: relaxed; a count, read only to keep it below a cap.
        let taken = waiting.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < cap).then_some(n + 1)
        });
        taken.ok().map(|_| WaitPlace { waiting })
    }

    /// Records that the session completed a request with `response`, now retained for
    /// resends: the session expires after the idle time from now on, and the response
    /// is weighed into the budget in place of the previous one. If retained responses
    /// then exceed the budget, sessions without a connection are evicted, oldest first.
    pub fn retain(&self, response: &T) {
        // ORDERING: read by the same session's detach, which the caller's own
        // connection performs after this, or a later one that reads it under the shard
        // lock taken after this connection's detach released it.
        self.entry.used.store(true, Ordering::Relaxed);
        let weight = (self.table.weigher)(response);
        // The new weight is counted before it can be swapped out: a simultaneous
        // `retain` on this session gives back only weights already counted, so `used`
        // never dips below what is held (it would wrap, and look like a budget
        // exceeded by everything).
        self.entry.budget.retain(weight);
        // ORDERING: AcqRel, pairs with itself in another `retain` on this session:
        // the `retain(weight)` above happens before the `release` of whichever call
        // swaps this weight out. `Entry::drop` gives back whatever is there last.
        let previous = self.entry.retained.swap(weight, Ordering::AcqRel);
        self.entry.budget.release(previous);
        self.table.evict_while_over_budget();
    }
}

impl<T: Send + Sync> Drop for Attached<T> {
    fn drop(&mut self) {
        // ORDERING: see `retain`.
        let used = if self.entry.used.load(Ordering::Relaxed) {
            Use::Used
        } else {
            Use::Never
        };
        let now = self.table.now_ms();
        self.table
            .lock(self.entry.id)
            .detach(self.entry.id, used, now);
    }
}

impl<T: Send + Sync> Drop for Entry<T> {
    fn drop(&mut self) {
        self.budget.release(*self.retained.get_mut());
    }
}

impl<T: Send + Sync> Clone for SessionTable<T> {
    fn clone(&self) -> Self {
        SessionTable {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Send + Sync> fmt::Debug for SessionTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTable")
            .field("config", &self.inner.config)
            .field("live", &self.len())
            .field("budget", &self.inner.budget)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync> fmt::Debug for Attached<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attached")
            .field("session", &self.fingerprint())
            .field("state", &self.entry.state)
            .finish()
    }
}

impl<T: Send + Sync> fmt::Debug for Entry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
