//! The session table: create, resume, end, and expire idle sessions.
//!
//! Ids are keyed SipHash outputs of a counter (std's `RandomState`, whose 128-bit key
//! comes from the operating system's random source): unguessable without the key,
//! different on every server start, never 0. A crate such as `getrandom` would do the
//! same, but its current version needs a newer Rust than this crate's minimum.

use super::counters::Counters;
use crate::SessionState;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One live session: its state machine and what idle expiry looks at.
#[derive(Debug)]
pub(crate) struct SessionEntry {
    pub(crate) id: u64,
    pub(crate) state: SessionState<Vec<u8>>,
    connections: AtomicUsize,
    /// Milliseconds since the table's epoch at the last request or disconnect.
    last_active_ms: AtomicU64,
}

/// Why a handshake found no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TableError {
    Unknown,
    Full,
}

#[derive(Debug)]
pub(crate) struct SessionTable {
    sessions: Mutex<HashMap<u64, Arc<SessionEntry>>>,
    ids: RandomState,
    next_seed: AtomicU64,
    epoch: Instant,
    max_sessions: usize,
    idle_expiry: Duration,
}

/// A connection's hold on a session: counted while it lives, so that a session with a
/// connection never expires.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) entry: Arc<SessionEntry>,
    epoch: Instant,
}

impl SessionTable {
    pub(crate) fn new(max_sessions: usize, idle_expiry: Duration) -> Self {
        SessionTable {
            sessions: Mutex::new(HashMap::new()),
            ids: RandomState::new(),
            next_seed: AtomicU64::new(0),
            epoch: Instant::now(),
            max_sessions,
            idle_expiry,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<SessionEntry>>> {
        // A panic while holding the lock cannot leave the map half-changed (every
        // change is one `insert`/`remove`), so a poisoned lock is still good.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Creates a session (after expiring idle ones) and attaches to it.
    pub(crate) fn create(&self, counters: &Counters) -> Result<Attached, TableError> {
        let mut sessions = self.lock();
        self.expire_locked(&mut sessions, counters);
        if sessions.len() >= self.max_sessions {
            return Err(TableError::Full);
        }
        let id = loop {
            // ORDERING: only uniqueness of the seed matters.
            let seed = self.next_seed.fetch_add(1, Ordering::Relaxed);
            let id = self.ids.hash_one(seed);
            if id != 0 && !sessions.contains_key(&id) {
                break id;
            }
        };
        let entry = Arc::new(SessionEntry {
            id,
            state: SessionState::new(),
            connections: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(self.now_ms()),
        });
        sessions.insert(id, Arc::clone(&entry));
        Ok(self.attach(entry))
    }

    /// Attaches to a live session.
    pub(crate) fn resume(&self, id: u64, counters: &Counters) -> Result<Attached, TableError> {
        let mut sessions = self.lock();
        self.expire_locked(&mut sessions, counters);
        match sessions.get(&id) {
            Some(entry) => Ok(self.attach(Arc::clone(entry))),
            None => Err(TableError::Unknown),
        }
    }

    /// Removes a session its client ended; false if it was no longer there.
    pub(crate) fn end(&self, id: u64) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Removes sessions with no connection and no activity for the idle time; returns
    /// their ids.
    pub(crate) fn expire_idle(&self, counters: &Counters) -> Vec<u64> {
        self.expire_locked(&mut self.lock(), counters)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn expire_locked(
        &self,
        sessions: &mut HashMap<u64, Arc<SessionEntry>>,
        counters: &Counters,
    ) -> Vec<u64> {
        let now = self.now_ms();
        let idle_ms = self.idle_expiry.as_millis() as u64;
        let expired: Vec<u64> = sessions
            .values()
            .filter(|e| {
                // ORDERING: the table lock orders attach against this check (attach
                // increments under the lock); a detach racing past it only makes the
                // session look busier than it is, which delays expiry to the next sweep.
                e.connections.load(Ordering::Relaxed) == 0
                    && now.saturating_sub(e.last_active_ms.load(Ordering::Relaxed)) >= idle_ms
            })
            .map(|e| e.id)
            .collect();
        for id in &expired {
            sessions.remove(id);
            Counters::bump(&counters.sessions_expired);
            tracing::info!(session = id, "idle session expired");
        }
        expired
    }

    fn attach(&self, entry: Arc<SessionEntry>) -> Attached {
        // ORDERING: see `expire_locked`; done under the table lock.
        entry.connections.fetch_add(1, Ordering::Relaxed);
        Attached {
            entry,
            epoch: self.epoch,
        }
    }
}

impl Attached {
    /// Marks the session active now.
    pub(crate) fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        // ORDERING: a timestamp read by the expiry sweep under its lock; staleness by
        // one sweep is harmless.
        self.entry.last_active_ms.fetch_max(now, Ordering::Relaxed);
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.touch();
        // ORDERING: see `expire_locked`.
        self.entry.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_nonzero_and_distinct() {
        let c = Counters::default();
        let table = SessionTable::new(1000, Duration::from_secs(60));
        let ids: std::collections::HashSet<u64> = (0..1000)
            .map(|_| table.create(&c).unwrap().entry.id)
            .collect();
        assert_eq!(ids.len(), 1000);
        assert!(!ids.contains(&0));
    }

    #[test]
    fn a_full_table_refuses_and_an_ended_session_frees_its_place() {
        let c = Counters::default();
        let table = SessionTable::new(1, Duration::from_secs(60));
        let id = table.create(&c).unwrap().entry.id;
        assert_eq!(table.create(&c).unwrap_err(), TableError::Full);
        assert!(table.end(id));
        assert_eq!(table.resume(id, &c).unwrap_err(), TableError::Unknown);
        assert!(table.create(&c).is_ok());
    }

    #[test]
    fn only_sessions_without_connections_expire() {
        let c = Counters::default();
        let table = SessionTable::new(10, Duration::ZERO);
        let held = table.create(&c).unwrap();
        let dropped = table.create(&c).unwrap().entry.id;
        assert_eq!(table.expire_idle(&c), vec![dropped]);
        assert_eq!(
            table.resume(held.entry.id, &c).unwrap().entry.id,
            held.entry.id
        );
    }
}
