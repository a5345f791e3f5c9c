//! The in-process table: one [`SessionState`] per session this process has served
//! lately, where copies of a request that meet in this process settle without the
//! database (the first runs, the others wait for its outcome; stale and busy numbers
//! are answered at once).
//!
//! The database is the truth; this table only ever knows less. A session's state here
//! starts empty (any number triages to Process and goes to the database), and an entry
//! may be forgotten at any time (a full table, a run that did not commit): the next
//! copy goes to the database again, where the row lock and the completion record
//! decide. So forgetting costs a round trip, never a second run.

use exactly_once::tower::StoredResponse;
use exactly_once::SessionState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a request's run settled, as the copies that waited for it in this process
/// answer it.
// Kept behind the session's `Arc`, one per session: boxing the response would add an
// allocation to every run for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Committed (or found committed): the response.
    Response(StoredResponse),
    /// The database said the session had moved past the number.
    Stale,
    /// The database has no such session.
    Unknown,
}

pub(crate) type Local = Arc<SessionState<Verdict>>;

struct Entry {
    state: Local,
    touched: Instant,
}

const SHARDS: usize = 16;

/// Sessions by id, in shards under plain locks held for a lookup only.
pub(crate) struct LocalSessions {
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    per_shard: usize,
}

impl LocalSessions {
    pub(crate) fn new(capacity: usize) -> LocalSessions {
        LocalSessions {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, id: u64) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // Ids are random: their low bits spread them. A panic never happens under the
        // lock (map operations only), so a poisoned lock still holds a sound map.
        let shard = &self.shards[(id as usize) % SHARDS];
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session's state, made if this process has none. A full shard first forgets
    /// its sessions that no request is using.
    pub(crate) fn get(&self, id: u64) -> Local {
        let now = Instant::now();
        let mut shard = self.shard(id);
        if let Some(entry) = shard.get_mut(&id) {
            entry.touched = now;
            return Arc::clone(&entry.state);
        }
        if shard.len() >= self.per_shard {
            shard.retain(|_, entry| Arc::strong_count(&entry.state) > 1);
        }
        let state = Local::default();
        shard.insert(
            id,
            Entry {
                state: Arc::clone(&state),
                touched: now,
            },
        );
        state
    }

    /// Forgets `state` as the session's state (if it still is): the next copy goes to
    /// the database. For a run that did not commit, so that its number can run again.
    pub(crate) fn forget(&self, id: u64, state: &Local) {
        let mut shard = self.shard(id);
        if shard
            .get(&id)
            .is_some_and(|entry| Arc::ptr_eq(&entry.state, state))
        {
            shard.remove(&id);
        }
    }

    /// Forgets the session, whatever its state (it has ended).
    pub(crate) fn forget_session(&self, id: u64) {
        self.shard(id).remove(&id);
    }

    /// Forgets the sessions untouched for `age` that no request is using.
    pub(crate) fn expire(&self, age: Duration) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            shard.retain(|_, entry| {
                Arc::strong_count(&entry.state) > 1 || now.duration_since(entry.touched) < age
            });
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_forgets_idle_sessions_and_keeps_those_in_use() {
        let local = LocalSessions::new(SHARDS); // one per shard
        let in_use = local.get(0);
        drop(local.get(SHARDS as u64)); // the same shard, full, nothing idle: it grows
        assert_eq!(local.len(), 2);
        drop(local.get(2 * SHARDS as u64)); // forgets the idle one, keeps the one in use
        assert_eq!(local.len(), 2);
        assert!(
            Arc::ptr_eq(&in_use, &local.get(0)),
            "the session in use stayed"
        );
    }

    #[test]
    fn forgetting_a_state_that_was_replaced_leaves_the_new_one() {
        let local = LocalSessions::new(64);
        let old = local.get(7);
        local.forget(7, &old);
        let new = local.get(7);
        local.forget(7, &old);
        assert!(Arc::ptr_eq(&new, &local.get(7)));
    }
}
