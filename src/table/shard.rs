//! One shard of the session table: its sessions, and the sessions without a connection
//! in the order they lost their last one (oldest first), one queue for sessions that
//! never completed a request and one for the others.
//!
//! The queues are lazy: attaching or removing a session leaves its record in place, and
//! a record whose session has since been attached, detached again or removed is
//! dropped when it reaches the front. A queue is compacted when stale records
//! outnumber live ones, so each detach costs O(1) amortised and the queues stay within
//! twice the live sessions.

use super::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Which detached queue a session waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Use {
    /// It never completed a request (expires quickly).
    Never,
    /// It completed at least one.
    Used,
}

#[derive(Debug)]
struct Slot<T: Send + Sync> {
    entry: Arc<Entry<T>>,
    connections: usize,
    /// The record that stands for this session in a detached queue, if any.
    detached: Option<(Use, u64)>,
}

#[derive(Debug)]
struct Record {
    id: u64,
    seq: u64,
    at_ms: u64,
}

#[derive(Debug, Default)]
struct Queue {
    records: VecDeque<Record>,
    live: usize,
}

#[derive(Debug)]
pub(super) struct Shard<T: Send + Sync> {
    slots: HashMap<u64, Slot<T>, BuildHasherDefault<IdHasher>>,
    never_used: Queue,
    used: Queue,
    next_seq: u64,
}

impl<T: Send + Sync> Shard<T> {
    pub(super) fn new() -> Self {
        Shard {
            slots: HashMap::default(),
            never_used: Queue::default(),
            used: Queue::default(),
            next_seq: 0,
        }
    }

    pub(super) fn contains(&self, id: u64) -> bool {
        self.slots.contains_key(&id)
    }

    /// Adds a new session with one connection.
    pub(super) fn insert(&mut self, entry: Arc<Entry<T>>) {
        let slot = Slot {
            entry,
            connections: 1,
            detached: None,
        };
        self.slots.insert(slot.entry.id, slot);
    }

    /// Adds a connection to a live session.
    pub(super) fn attach(&mut self, id: u64) -> Option<Arc<Entry<T>>> {
        let slot = self.slots.get_mut(&id)?;
        slot.connections += 1;
        let entry = Arc::clone(&slot.entry);
        if let Some((queue, _)) = slot.detached.take() {
            self.queue(queue).live -= 1;
        }
        Some(entry)
    }

    /// Removes a connection; a session left without one joins the back of its queue.
    pub(super) fn detach(&mut self, id: u64, used: Use, now_ms: u64) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return; // ended or removed while attached
        };
        slot.connections -= 1;
        if slot.connections > 0 {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        slot.detached = Some((used, seq));
        let queue = match used {
            Use::Never => &mut self.never_used,
            Use::Used => &mut self.used,
        };
        queue.records.push_back(Record {
            id,
            seq,
            at_ms: now_ms,
        });
        queue.live += 1;
        if queue.records.len() > 2 * queue.live + 32 {
            let slots = &self.slots;
            queue.records.retain(|r| is_current(slots, r, used));
        }
    }

    /// Removes a session, attached or not.
    pub(super) fn remove(&mut self, id: u64) -> Option<Arc<Entry<T>>> {
        let slot = self.slots.remove(&id)?;
        if let Some((queue, _)) = slot.detached {
            self.queue(queue).live -= 1;
        }
        Some(slot.entry)
    }

    /// When the oldest detached session of `queue` lost its connection.
    pub(super) fn oldest(&mut self, queue: Use) -> Option<u64> {
        self.drop_stale_front(queue);
        self.queue(queue).records.front().map(|r| r.at_ms)
    }

    /// Removes the oldest detached session of `queue` if it detached at or before
    /// `cutoff_ms`.
    pub(super) fn pop_older(&mut self, queue: Use, cutoff_ms: u64) -> Option<Arc<Entry<T>>> {
        if self.oldest(queue)? > cutoff_ms {
            return None;
        }
        let record = self.queue(queue).records.pop_front()?;
        self.remove(record.id)
    }

    /// The detached session of `queue` that lost its connection longest ago among
    /// those whose entry passes `worth`: (when, id). Walks the queue from its front.
    pub(super) fn oldest_where(
        &mut self,
        queue: Use,
        worth: impl Fn(&Entry<T>) -> bool,
    ) -> Option<(u64, u64)> {
        self.drop_stale_front(queue);
        let slots = &self.slots;
        let q = match queue {
            Use::Never => &self.never_used,
            Use::Used => &self.used,
        };
        q.records
            .iter()
            .filter(|r| is_current(slots, r, queue))
            .find(|r| slots.get(&r.id).is_some_and(|slot| worth(&slot.entry)))
            .map(|r| (r.at_ms, r.id))
    }

    /// Removes session `id` if it has no connection.
    pub(super) fn remove_detached(&mut self, id: u64) -> Option<Arc<Entry<T>>> {
        match self.slots.get(&id)?.connections {
            0 => self.remove(id),
            _ => None,
        }
    }

    fn drop_stale_front(&mut self, queue: Use) {
        let slots = &self.slots;
        let q = match queue {
            Use::Never => &mut self.never_used,
            Use::Used => &mut self.used,
        };
        while q
            .records
            .front()
            .is_some_and(|r| !is_current(slots, r, queue))
        {
            q.records.pop_front();
        }
    }

    fn queue(&mut self, queue: Use) -> &mut Queue {
        match queue {
            Use::Never => &mut self.never_used,
            Use::Used => &mut self.used,
        }
    }

    #[cfg(test)]
    pub(super) fn records(&self) -> usize {
        self.never_used.records.len() + self.used.records.len()
    }
}

/// Whether `record` still stands for its session's place in `queue`.
fn is_current<T: Send + Sync>(
    slots: &HashMap<u64, Slot<T>, BuildHasherDefault<IdHasher>>,
    record: &Record,
    queue: Use,
) -> bool {
    slots
        .get(&record.id)
        .is_some_and(|slot| slot.detached == Some((queue, record.seq)))
}

/// The map's hash of a session id. Ids are a keyed hash already (see `ids`): their low
/// bits are as random as any hash of them, and a client cannot choose the ids the
/// table holds (only look them up), so no keyed hash is needed again. One multiply
/// spreads the random bits into the top ones too, which the map also uses (the owner
/// number sits there, the same in every id of a table).
#[derive(Default)]
pub(super) struct IdHasher(u64);

/// An odd constant with well-mixed bits (2^64 divided by the golden ratio).
const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(SPREAD);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(SPREAD);
    }
}
