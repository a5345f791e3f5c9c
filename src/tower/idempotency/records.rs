//! Where records live: in memory, in a table of its own, kept for their retention
//! period and never evicted before it ends.
//!
//! A record is a one-request session: its [`SessionState`] decides which copy of the
//! request runs (the first to triage number 1) and makes every other copy wait for that
//! run's outcome, as resends of a numbered request do. What a key is and which requests
//! share one ([`RecordKey`], [`Fingerprint`]) is decided elsewhere
//! ([`request`](super::request)); this file knows only keys and fingerprints as bytes.
//!
//! A record is removed once `retention` has passed since its run ended (published or
//! abandoned), never earlier, and never while its run goes on. When the table holds
//! its most records and none is due, a new key is refused: evicting a record early would
//! let its key run again.

use super::request::{Fingerprint, RecordKey};
use crate::table::Budget;
use crate::tower::StoredResponse;
#[cfg(test)]
use crate::RequestNr;
use crate::{Phase, SessionState};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shards of the table, each behind its own lock.
const SHARDS: usize = 32;

/// Bytes a record holds besides its key and its response, counted in the budget.
pub(crate) const RECORD_BYTES: usize = 256;

/// `settled_ms` of a record whose run has not ended.
const RUNNING: u64 = u64::MAX;

/// The records of one [`IdempotencyLayer`](super::IdempotencyLayer): every layer made
/// from it, and every clone, shares them. Cloning gives another handle.
#[derive(Clone)]
pub struct IdempotencyRecords {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    max_records: usize,
    retention: Duration,
    live: AtomicUsize,
    epoch: Instant,
    budget: Arc<Budget>,
}

#[derive(Default)]
struct Shard {
    records: HashMap<HashedKey, Arc<Record>, BuildHasherDefault<PassHash>>,
    /// Every record of the shard once, with the time (ms since the epoch) at which it
    /// is looked at again: in the order they were pushed, so mostly by time (a record
    /// pushed back after its run ends late is looked at late, never early).
    due: VecDeque<(u64, Arc<Record>)>,
}

/// A record key with its hash under the table's random key (SipHash, so that keys
/// chosen by clients cannot be made to collide), worked out once: the shard and the
/// map use it and never hash the key's bytes again.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HashedKey {
    hash: u64,
    key: RecordKey,
}

impl HashedKey {
    /// The key's bytes, as a store keeps them.
    pub(crate) fn len(&self) -> usize {
        self.key.len()
    }

    /// The shard: bits of the hash that neither the map's bucket index (the low bits)
    /// nor its tags (the top seven) use, so that keys of one shard still spread.
    fn shard(&self) -> usize {
        (self.hash >> 40) as usize % SHARDS
    }
}

impl Hash for HashedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The map's hasher: passes a [`HashedKey`]'s hash through.
#[derive(Default)]
struct PassHash(u64);

impl Hasher for PassHash {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is called (by `HashedKey`); anything else is folded in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// One key's record: its request's one-request session, the fingerprint of the request
/// that made it, and when its run ended.
pub(crate) struct Record {
    key: HashedKey,
    fingerprint: Fingerprint,
    state: SessionState<StoredResponse>,
    settled_ms: AtomicU64,
    /// Bytes counted in the budget for the record and its response.
    retained: AtomicUsize,
    waiting: AtomicU32,
    budget: Arc<Budget>,
}

/// What [`IdempotencyRecords::claim`] found for a key.
pub(crate) enum Claim {
    /// The key's record (made now, or earlier by a request with the same fingerprint).
    Record(Arc<Record>),
    /// The key has a record made by a request with another fingerprint.
    Mismatch,
    /// The table holds its most records and none is due.
    Full,
}

impl IdempotencyRecords {
    /// At most `max_records` records, each kept `retention` after its run ends, counted
    /// in `budget`.
    pub(crate) fn new(max_records: usize, retention: Duration, budget: Arc<Budget>) -> Self {
        IdempotencyRecords {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                hasher: RandomState::new(),
                max_records,
                retention,
                live: AtomicUsize::new(0),
                epoch: Instant::now(),
                budget,
            }),
        }
    }

    /// Records now (those due but not yet looked at included).
    pub fn len(&self) -> usize {
        // ORDERING: a tally read on its own.
        self.inner.live.load(Ordering::Relaxed)
    }

    /// True when there is no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long a record is kept after its run ends.
    pub fn retention(&self) -> Duration {
        self.inner.retention
    }

    /// Removes every record whose retention has passed; returns how many.
    pub fn expire(&self) -> usize {
        let now = self.inner.now_ms();
        (0..SHARDS)
            .map(|i| self.inner.expire_shard(&mut self.inner.lock(i), now))
            .sum()
    }

    /// Whether `key` has a record, without claiming it.
    pub(crate) fn existing(&self, key: &HashedKey, fingerprint: &Fingerprint) -> Option<Claim> {
        let now = self.inner.now_ms();
        let mut shard = self.inner.lock(key.shard());
        self.inner.expire_shard(&mut shard, now);
        let record = shard.records.get(key);
        record.map(|record| record.matching(fingerprint))
    }

    /// The record of `key`: the one there (if `fingerprint` matches it), or a new one.
    pub(crate) fn claim(&self, key: HashedKey, fingerprint: Fingerprint) -> Claim {
        let i = key.shard();
        for attempt in 0..2 {
            let now = self.inner.now_ms();
            let mut shard = self.inner.lock(i);
            self.inner.expire_shard(&mut shard, now);
            if let Some(record) = shard.records.get(&key) {
                return record.matching(&fingerprint);
            }
            if self.inner.take_place() {
                return Claim::Record(self.inner.insert(&mut shard, key, fingerprint, now));
            }
            drop(shard);
            if attempt == 0 {
                // Full: whatever is due anywhere goes, one shard lock at a time (never
                // two held at once), then the key is looked up again.
                self.expire();
            }
        }
        Claim::Full
    }

    /// `key` with its hash in this table, worked out once for every lookup of it.
    pub(crate) fn hashed(&self, key: RecordKey) -> HashedKey {
        let hash = self.inner.hasher.hash_one(&key);
        HashedKey { hash, key }
    }

    /// Records that the run of `record` has ended, now: its retention starts.
    pub(crate) fn settled(&self, record: &Record) {
        // ORDERING: read under the shard lock by the expiry, which only needs some
        // time at or after the run's end; a late read keeps the record longer.
        record
            .settled_ms
            .store(self.inner.now_ms(), Ordering::Relaxed);
    }
}

impl Inner {
    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // Every change under a shard lock leaves it whole before anything that can
        // panic, so a poisoned lock is still good.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn retention_ms(&self) -> u64 {
        self.retention.as_millis() as u64
    }

    /// Counts a new record in, if the table has room for it.
    fn take_place(&self) -> bool {
        // ORDERING: the count is its own subject; the compare-exchange keeps it at or
        // below the limit.
        self.live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_records).then_some(n + 1)
            })
            .is_ok()
    }

    /// A new record of `key` in `shard`, its place taken, looked at again once a
    /// retention has passed.
    fn insert(
        &self,
        shard: &mut Shard,
        key: HashedKey,
        fingerprint: Fingerprint,
        now: u64,
    ) -> Arc<Record> {
        let weight = RECORD_BYTES + key.len();
        // Counted even above the limit: the caller made room for it beforehand.
        self.budget.retain(weight);
        let record = Arc::new(Record {
            key: key.clone(),
            fingerprint,
            state: SessionState::new(),
            settled_ms: AtomicU64::new(RUNNING),
            retained: AtomicUsize::new(weight),
            waiting: AtomicU32::new(0),
            budget: Arc::clone(&self.budget),
        });
        shard
            .due
            .push_back((now + self.retention_ms(), Arc::clone(&record)));
        shard.records.insert(key, Arc::clone(&record));
        record
    }

    /// Removes the records of `shard` whose retention has passed at `now`.
    fn expire_shard(&self, shard: &mut Shard, now: u64) -> usize {
        let mut removed = 0;
        // Each entry is looked at once at most: one pushed back may be due again at
        // once (a zero retention).
        for _ in 0..shard.due.len() {
            if !shard.due.front().is_some_and(|&(at, _)| at <= now) {
                break;
            }
            let (_, record) = shard.due.pop_front().expect("looked at above");
            match record.expires_at(self.retention_ms(), now) {
                Some(at) if at > now => shard.due.push_back((at, record)),
                // Still running: looked at again a whole retention later.
                None => shard.due.push_back((now + self.retention_ms(), record)),
                Some(_) => {
                    shard.records.remove(&record.key);
                    removed += 1;
                }
            }
        }
        // ORDERING: see `take_place`.
        self.live.fetch_sub(removed, Ordering::Relaxed);
        removed
    }
}

impl Record {
    /// The request's one-request session.
    pub(crate) fn state(&self) -> &SessionState<StoredResponse> {
        &self.state
    }

    fn matching(self: &Arc<Self>, fingerprint: &Fingerprint) -> Claim {
        match self.fingerprint == *fingerprint {
            true => Claim::Record(Arc::clone(self)),
            false => Claim::Mismatch,
        }
    }

    /// When the record may go (ms since the table's epoch), or `None` while its run
    /// goes on.
    fn expires_at(&self, retention_ms: u64, now: u64) -> Option<u64> {
        // ORDERING: see `IdempotencyRecords::settled`.
        let settled = self.settled_ms.load(Ordering::Relaxed);
        if settled != RUNNING {
            return Some(settled + retention_ms);
        }
        if self.state.status().phase == Phase::Processing {
            return None;
        }
        // A run dropped without telling its end (its future dropped outside a runtime)
        // has abandoned its request: its retention starts when it is seen so.
        self.settled_ms.store(now, Ordering::Relaxed);
        Some(now + retention_ms)
    }

    /// Counts `weight` bytes of a stored response in the budget for this record.
    pub(crate) fn retain(&self, weight: usize) {
        self.budget.retain(weight);
        // ORDERING: the record retains one response: only its run adds to this, once.
        self.retained.fetch_add(weight, Ordering::Relaxed);
    }

    /// A place among the copies that wait for this record's run, if fewer than `cap`
    /// wait now.
    pub(crate) fn try_wait(&self, cap: u32) -> Option<WaitPlace<'_>> {
        // ORDERING: relaxed; a count, read only to keep it below a cap.
        let taken = self
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            });
        taken.ok().map(|_| WaitPlace { record: self })
    }
}

/// A place among the copies that wait for a record's run; given back when dropped.
#[must_use = "the place is given back when this is dropped"]
pub(crate) struct WaitPlace<'a> {
    record: &'a Record,
}

impl Drop for WaitPlace<'_> {
    fn drop(&mut self) {
        // ORDERING: see `Record::try_wait`.
        self.record.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.budget.release(*self.retained.get_mut());
    }
}

impl fmt::Debug for IdempotencyRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyRecords")
            .field("records", &self.len())
            .field("max_records", &self.inner.max_records)
            .field("retention", &self.inner.retention)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::request::Parts;

    fn key(name: &str) -> (RecordKey, Fingerprint) {
        let parts: Parts = http::Request::post("/a").body(()).unwrap().into_parts().0;
        let scope = super::super::Scope::default();
        let key = RecordKey::new(&scope, &parts, name.as_bytes());
        (key, Fingerprint::new(&parts, b"", &[]))
    }

    fn record(claim: Claim) -> Arc<Record> {
        match claim {
            Claim::Record(record) => record,
            _ => panic!("no record"),
        }
    }

    #[test]
    fn a_record_is_never_removed_while_its_run_goes_on_nor_before_its_retention() {
        let budget = Budget::new(1 << 20);
        let records = IdempotencyRecords::new(4, Duration::ZERO, Arc::clone(&budget));
        let (k, fp) = key("k");
        let first = record(records.claim(records.hashed(k.clone()), fp));
        let guard = match first.state().triage(RequestNr::new(1).unwrap()) {
            crate::Triage::Process(guard) => guard,
            _ => panic!("the first triage runs"),
        };
        assert_eq!(records.expire(), 0, "running: kept, whatever the retention");
        assert!(Arc::ptr_eq(
            &record(records.claim(records.hashed(k.clone()), fp)),
            &first
        ));
        guard.abandon();
        records.settled(&first);
        assert_eq!(
            records.expire(),
            1,
            "a zero retention ends when the run does"
        );
        assert!(records.is_empty());
        drop(first);
        assert_eq!(budget.used(), 0, "the record's bytes are given back");
    }

    #[test]
    fn the_bytes_counted_for_a_record_cover_what_it_holds_besides_its_key_and_response() {
        use std::mem::size_of;
        // The record and its `Arc` counts, its map entry, its expiry queue entry, and
        // the key's `Arc` counts (the key's bytes are counted apart).
        let arc_counts = 2 * size_of::<usize>();
        let held = size_of::<Record>()
            + arc_counts
            + size_of::<(HashedKey, Arc<Record>)>()
            + size_of::<(u64, Arc<Record>)>()
            + arc_counts;
        assert!(held <= RECORD_BYTES, "{held} bytes");
    }

    #[test]
    fn a_full_table_refuses_new_keys_and_keeps_the_old() {
        let budget = Budget::new(1 << 20);
        let records = IdempotencyRecords::new(1, Duration::from_secs(3600), budget);
        let (a, fp) = key("a");
        let kept = record(records.claim(records.hashed(a.clone()), fp));
        assert!(matches!(
            records.claim(records.hashed(key("b").0), fp),
            Claim::Full
        ));
        assert!(Arc::ptr_eq(
            &record(records.claim(records.hashed(a), fp)),
            &kept
        ));
    }

    #[test]
    fn another_fingerprint_is_a_mismatch() {
        let records = IdempotencyRecords::new(4, Duration::from_secs(1), Budget::new(1 << 20));
        let (a, fp) = key("a");
        let parts: Parts = http::Request::post("/a").body(()).unwrap().into_parts().0;
        let other = Fingerprint::new(&parts, b"other", &[]);
        let _kept = record(records.claim(records.hashed(a.clone()), fp));
        assert!(matches!(
            records.claim(records.hashed(a.clone()), other),
            Claim::Mismatch
        ));
        assert!(matches!(
            records.existing(&records.hashed(a), &other),
            Some(Claim::Mismatch)
        ));
    }
}
