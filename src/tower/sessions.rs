//! The layer's sessions: ids handed out by the server, a limit, and quick expiry of
//! sessions that never ran a request.

use super::key::SessionId;
use crate::SessionState;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One live session.
#[derive(Debug)]
pub(crate) struct Session<T: Send + Sync> {
    pub(crate) state: SessionState<T>,
    created: Instant,
    last_active: Mutex<Instant>,
}

impl<T: Send + Sync> Session<T> {
    pub(crate) fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn expired(&self, now: Instant, limits: &SessionLimits) -> bool {
        let never_used = self.state.status().request == 0;
        let last = *self.last_active.lock().unwrap_or_else(|e| e.into_inner());
        (never_used && now - self.created >= limits.unused_expiry)
            || now - last >= limits.idle_expiry
    }
}

/// How many sessions the layer keeps, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// Most live sessions; creation beyond it answers [`Error::TableFull`](super::Error::TableFull).
    pub max_sessions: usize,
    /// A session that has run no request is removed after this long.
    pub unused_expiry: Duration,
    /// A session with no request for this long is removed.
    pub idle_expiry: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_sessions: 10_000,
            unused_expiry: Duration::from_secs(10),
            idle_expiry: Duration::from_secs(600),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Sessions<T: Send + Sync> {
    map: Mutex<HashMap<SessionId, Arc<Session<T>>>>,
    ids: RandomState,
    next_seed: AtomicU64,
    limits: SessionLimits,
}

impl<T: Send + Sync> Sessions<T> {
    pub(crate) fn new(limits: SessionLimits) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            ids: RandomState::new(),
            next_seed: AtomicU64::new(0),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Arc<Session<T>>>> {
        // Every change is one insert or remove: a poisoned map is still whole.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session's id, or `None` when the table is full after expiry.
    pub(crate) fn create(&self) -> Option<SessionId> {
        let mut map = self.lock();
        if map.len() >= self.limits.max_sessions {
            let now = Instant::now();
            map.retain(|_, s| !s.expired(now, &self.limits));
            if map.len() >= self.limits.max_sessions {
                return None;
            }
        }
        let id = loop {
            // ORDERING: only the seed's uniqueness matters.
            let seed = self.next_seed.fetch_add(1, Ordering::Relaxed);
            match SessionId::new(self.ids.hash_one(seed)) {
                Some(id) if !map.contains_key(&id) => break id,
                _ => {}
            }
        };
        let now = Instant::now();
        let session = Session {
            state: SessionState::new(),
            created: now,
            last_active: Mutex::new(now),
        };
        map.insert(id, Arc::new(session));
        Some(id)
    }

    pub(crate) fn get(&self, id: SessionId) -> Option<Arc<Session<T>>> {
        let map = self.lock();
        let session = map.get(&id)?;
        (!session.expired(Instant::now(), &self.limits)).then(|| Arc::clone(session))
    }

    pub(crate) fn end(&self, id: SessionId) -> bool {
        self.lock().remove(&id).is_some()
    }
}
