//! Accepting connections: the connection limit, the live-connection set, and the
//! thread of each connection.

use super::connection;
use super::Shared;
use crate::table::Reservation;
use crate::transport::counters::Counters;
use crate::transport::logs::CONNECTION_THREAD;
use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// `Live::idle_since_ms` while the connection is in a call.
const BUSY: u64 = u64::MAX;
/// `Live::idle_since_ms` once the listener has chosen the connection to make room.
const EVICTED: u64 = u64::MAX - 1;

/// Stack of a connection thread: the handler runs on it.
const CONNECTION_STACK: usize = 512 * 1024;

/// A live connection as the listener and shutdown see it: its one socket, shared with
/// its thread, and since when it has waited for its next call (or for the rest of it).
#[derive(Debug)]
pub(super) struct Live {
    pub(super) stream: TcpStream,
    /// Milliseconds since the server's epoch at which the connection began to wait on
    /// its client (for its handshake, its next call, or to take a response); `BUSY`
    /// while a call is processed or awaited, `EVICTED` once chosen to go.
    idle_since_ms: AtomicU64,
    /// True while the connection waits for its client to take a response (rather than
    /// to send something).
    writing: AtomicBool,
    /// Milliseconds since the server's epoch at which the connection, its call arrived
    /// whole, began to wait for room in the memory budget (it is `BUSY` meanwhile, and
    /// holds nothing of the budget); 0 while it does not wait.
    queued_since_ms: AtomicU64,
    /// True once its handshake has been answered.
    handshaken: AtomicBool,
    /// Bytes of the budget held for a frame still arriving; 0 between frames.
    partial_frame: AtomicUsize,
    /// Set when the connection was closed to make room for another's call: its thread
    /// then leaves what its frame held in `handed_over`, for that call to take.
    cut_for_room: AtomicBool,
    handed_over: Mutex<Option<Reservation>>,
    /// The client's address, as `accept` gave it.
    peer: IpAddr,
}

impl Live {
    /// The connection waits for its next call from now.
    pub(super) fn mark_idle(&self, now_ms: u64) {
        // ORDERING: only read by the listener's choice of a victim, a heuristic.
        self.writing.store(false, Ordering::Relaxed);
        self.mark_waiting(now_ms);
    }

    /// The connection waits for its client to take a response from now.
    pub(super) fn mark_writing(&self, now_ms: u64) {
        // ORDERING: see `mark_idle`.
        self.writing.store(true, Ordering::Relaxed);
        self.mark_waiting(now_ms);
    }

    fn mark_waiting(&self, now_ms: u64) {
        // ORDERING: pairs with the compare-exchange in `evict_longest_idle`: whichever
        // comes first wins; an evicted connection stays evicted.
        let _ = self
            .idle_since_ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v != EVICTED).then_some(now_ms)
            });
    }

    /// True once the listener has chosen the connection to make room.
    pub(super) fn is_evicted(&self) -> bool {
        // ORDERING: see `mark_idle`.
        self.idle_since_ms.load(Ordering::Acquire) == EVICTED
    }

    /// The connection waits for memory from now, unless the listener has chosen it to
    /// make room (false). Only the newest such waiter is closed to make room,
    /// and only when no connection waits on its client.
    pub(super) fn mark_queued(&self, now_ms: u64) -> bool {
        // ORDERING: see `mark_idle`; the listener reads it only after seeing `BUSY`.
        self.queued_since_ms.store(now_ms.max(1), Ordering::Relaxed);
        self.mark_busy()
    }

    /// The connection's handshake has been answered.
    pub(super) fn mark_handshaken(&self) {
        // ORDERING: see `mark_idle`.
        self.handshaken.store(true, Ordering::Relaxed);
    }

    /// True while the connection is in a call (its bytes have arrived).
    pub(super) fn is_busy(&self) -> bool {
        // ORDERING: see `mark_idle`.
        self.idle_since_ms.load(Ordering::Acquire) == BUSY
    }

    /// The connection holds `bytes` of the budget for a frame still arriving (0: none
    /// any more, and they have been given back).
    pub(super) fn hold_partial_frame(&self, bytes: usize) {
        // ORDERING: Release, pairs with the Acquire load in `take_handed_over`: what
        // was handed over (or given back) before 0 is stored is seen by the call that
        // waits for it.
        self.partial_frame.store(bytes, Ordering::Release);
    }

    /// What the connection's frame held, if it was closed to make room for another's
    /// call: the bytes go to that call, not to whichever call asks first (a stream of
    /// small steps would otherwise take them from a call that needs more at once).
    pub(super) fn hand_over(&self, charge: Reservation) {
        // ORDERING: see `cut_stalled_frame`, which stores it before closing the socket
        // this thread has seen closed. A thread that ends its frame before the store
        // gives its bytes back instead: the call that closed it then finds nothing
        // handed over and takes them from the budget.
        if self.cut_for_room.load(Ordering::Acquire) {
            *self.lock_handed_over() = Some(charge);
        }
    }

    /// Waits up to `at_most` for the connection's thread to hand over what its frame
    /// held (it does once it sees its socket closed); `None` if it did not in time.
    pub(super) fn take_handed_over(&self, at_most: Duration) -> Option<Reservation> {
        let deadline = Instant::now() + at_most;
        // ORDERING: see `hold_partial_frame`.
        while self.partial_frame.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        self.lock_handed_over().take()
    }

    fn lock_handed_over(&self) -> std::sync::MutexGuard<'_, Option<Reservation>> {
        // One assignment or take under the lock: whole even if poisoned.
        self.handed_over.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection no longer waits for memory.
    pub(super) fn mark_unqueued(&self) {
        // ORDERING: see `mark_queued`.
        self.queued_since_ms.store(0, Ordering::Relaxed);
    }

    /// The connection's call has arrived whole and is answered now; false if the
    /// listener chose it to make room.
    pub(super) fn mark_busy(&self) -> bool {
        // ORDERING: see `mark_idle`.
        self.idle_since_ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v != EVICTED).then_some(BUSY)
            })
            .is_ok()
    }
}

impl Live {
    /// True if the connection waits to read and bytes from its client are already in
    /// the socket's receive buffer.
    fn has_unread_bytes(&self) -> bool {
        // ORDERING: see `mark_idle`.
        !self.writing.load(Ordering::Relaxed) && unread_bytes(&self.stream) > 0
    }
}

impl Live {
    /// True if bytes written to the connection wait for room at its client: a client
    /// that does not read. (Its `writing` flag alone says little: a thread that has just
    /// sent a small answer may not have cleared it yet.)
    fn has_untaken_bytes(&self) -> bool {
        untaken_bytes(&self.stream) > 0
    }
}

impl Live {
    /// True if the client has closed or reset the connection, even with bytes it sent
    /// before still unread (Linux; elsewhere always false).
    pub(super) fn peer_is_gone(&self) -> bool {
        peer_is_gone(&self.stream)
    }
}

#[cfg(target_os = "linux")]
fn peer_is_gone(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `poll` reads and writes the one `pollfd` the pointer points to, which lives
    // across the call; a zero timeout never blocks; the descriptor is open while `stream`
    // is borrowed.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

#[cfg(not(target_os = "linux"))]
fn peer_is_gone(_: &TcpStream) -> bool {
    false
}

/// Bytes from the client that wait in the socket's receive queue, unread.
fn unread_bytes(stream: &TcpStream) -> usize {
    #[cfg(target_os = "linux")]
    return queued_bytes(stream, libc::FIONREAD);
    #[cfg(not(target_os = "linux"))]
    return {
        let _ = stream;
        0
    };
}

/// Bytes written to the socket that the kernel has not sent yet because the client's
/// receive window is closed: its side holds all it will take. Bytes sent and not yet
/// acknowledged do not count (a delayed acknowledgement is no sign of a slow reader).
fn untaken_bytes(stream: &TcpStream) -> usize {
    #[cfg(target_os = "linux")]
    return queued_bytes(stream, libc::SIOCOUTQNSD as libc::Ioctl);
    #[cfg(not(target_os = "linux"))]
    return {
        let _ = stream;
        0
    };
}

/// What `request` (FIONREAD or SIOCOUTQNSD) says of one of the socket's queues; 0 if
/// it fails.
#[cfg(target_os = "linux")]
fn queued_bytes(stream: &TcpStream, request: libc::Ioctl) -> usize {
    use std::os::fd::AsRawFd;
    let mut bytes: libc::c_int = 0;
    // SAFETY: both requests write one `c_int` through the pointer, which points to a
    // live `c_int`; the descriptor is open while `stream` is borrowed.
    let done = unsafe { libc::ioctl(stream.as_raw_fd(), request, &mut bytes) };
    if done == 0 {
        bytes.max(0) as usize
    } else {
        0
    }
}

/// The address the most connections come from (ties: any of them).
fn busiest_peer(peers: impl Iterator<Item = IpAddr>) -> Option<IpAddr> {
    let mut counts: HashMap<IpAddr, usize> = HashMap::new();
    for peer in peers {
        *counts.entry(peer).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(_, n)| n)
        .map(|(peer, _)| peer)
}

/// Removes a connection from the live set, and counts its thread out, when the thread
/// ends (or never starts).
struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.lock_connections().remove(&self.id);
        *self.shared.lock_running() -= 1;
        self.shared.ended.notify_all();
    }
}

impl Shared {
    pub(super) fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let mut backoff = Duration::ZERO;
        loop {
            let accepted = listener.accept();
            if self.is_stopping() {
                break;
            }
            match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::ZERO;
                    self.admit(stream, peer.ip());
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off while others
                    // close, counting rather than logging each failure.
                    Counters::bump(&self.counters.accept_errors);
                    if self.logs.allow("accept failed") {
                        tracing::warn!(error = %e, "accept failed");
                    }
                    backoff = (backoff * 2).clamp(Duration::from_millis(1), Duration::from_secs(1));
                    thread::sleep(backoff);
                }
            }
        }
    }

    fn admit(self: &Arc<Self>, stream: TcpStream, peer: IpAddr) {
        let Some((id, live)) = self.register(stream, peer) else {
            return;
        };
        let registration = Registration {
            shared: Arc::clone(self),
            id,
        };
        let spawned = thread::Builder::new()
            .name(CONNECTION_THREAD.into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || connection::run(&registration.shared, &live, id));
        if let Err(e) = spawned {
            // The closure, and with it the registration, has been dropped.
            Counters::bump(&self.counters.connections_refused);
            if self.logs.allow("cannot start a thread") {
                tracing::warn!(error = %e, "connection refused: cannot start a thread");
            }
        }
    }

    /// Adds `stream`, from `peer`, to the live set, making room if needed; `None` if
    /// refused.
    fn register(&self, stream: TcpStream, peer: IpAddr) -> Option<(u64, Arc<Live>)> {
        let mut connections = self.lock_connections();
        if self.is_stopping() {
            return self.refuse(stream, "shutting down");
        }
        if connections.len() >= self.config.max_connections {
            let Some(victim) = self.evict_longest_idle(connections.iter()) else {
                return self.refuse(stream, "every connection is in a call");
            };
            // Out of the set at once, so that it no longer counts against the limit;
            // its thread sees the end of its stream and ends.
            let victim = connections.remove(&victim).expect("chosen from the set");
            let _ = victim.stream.shutdown(Shutdown::Both);
            Counters::bump(&self.counters.connections_evicted);
        }
        let live = Arc::new(Live {
            stream,
            idle_since_ms: AtomicU64::new(self.now_ms()),
            writing: AtomicBool::new(false),
            queued_since_ms: AtomicU64::new(0),
            handshaken: AtomicBool::new(false),
            partial_frame: AtomicUsize::new(0),
            cut_for_room: AtomicBool::new(false),
            handed_over: Mutex::new(None),
            peer,
        });
        // ORDERING: only uniqueness matters.
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        connections.insert(id, Arc::clone(&live));
        *self.lock_running() += 1;
        Counters::bump(&self.counters.connections_accepted);
        Some((id, live))
    }

    fn refuse<T>(&self, stream: TcpStream, why: &'static str) -> Option<T> {
        Counters::bump(&self.counters.connections_refused);
        if self.logs.allow("connection refused") {
            tracing::warn!(why, "connection refused");
        }
        let _ = stream.shutdown(Shutdown::Both);
        None
    }

    /// Chooses the connection that has waited longest on its client (so a connection
    /// stalled in the middle of a message goes before one that has just finished a
    /// call), and marks it so that it cannot start answering one any more. Clients that
    /// have not taken what they were sent go first: a client that does not read its
    /// answers goes before one between two calls, however short its wait. A connection
    /// waiting to read whose client has sent bytes its thread has not read yet is
    /// making progress (its thread is about to run), and is spared, unless no other is
    /// left and its handshake has not been answered yet. If none of those is left, the
    /// connection that began to wait for memory last goes: it has waited least and
    /// holds nothing.
    ///
    /// Connections from the address that holds the most are looked at first: a client
    /// that floods the server with connections makes room with its own before it
    /// costs anyone else theirs.
    fn evict_longest_idle<'a>(
        &self,
        connections: impl Iterator<Item = (&'a u64, &'a Arc<Live>)>,
    ) -> Option<u64> {
        let all: Vec<(&u64, &Arc<Live>)> = connections.collect();
        let busiest = busiest_peer(all.iter().map(|(_, live)| live.peer));
        let from_busiest: Vec<(&u64, &Arc<Live>)> = all
            .iter()
            .copied()
            .filter(|(_, live)| Some(live.peer) == busiest)
            .collect();
        self.evict_one_of(&from_busiest).or_else(|| {
            (from_busiest.len() < all.len())
                .then(|| self.evict_one_of(&all))
                .flatten()
        })
    }

    /// [`Self::evict_longest_idle`]'s choice among `all`.
    fn evict_one_of(&self, all: &[(&u64, &Arc<Live>)]) -> Option<u64> {
        let mut candidates: Vec<(bool, u64, u64, &Arc<Live>)> = all
            .iter()
            .copied()
            // ORDERING: a first look; the compare-exchange below decides.
            .map(|(id, live)| (live.idle_since_ms.load(Ordering::Relaxed), *id, live))
            .filter(|(since, _, live)| *since < EVICTED && !live.has_unread_bytes())
            .map(|(since, id, live)| (!live.has_untaken_bytes(), since, id, live))
            .collect();
        // Clients that have not taken what they were sent first, then the rest; each
        // longest waiting first.
        candidates.sort_unstable_by_key(|&(taken, since, _, _)| (taken, since));
        let candidates = candidates
            .into_iter()
            .map(|(_, since, id, live)| (since, id, live));
        let newest_waiting = || {
            let mut queued: Vec<(u64, u64, &Arc<Live>)> = all
                .iter()
                // ORDERING: see `Live::mark_queued`.
                .map(|(id, live)| (live.queued_since_ms.load(Ordering::Relaxed), **id, *live))
                .filter(|(since, _, _)| *since > 0)
                .collect();
            queued.sort_unstable_by_key(|(since, _, _)| std::cmp::Reverse(*since));
            queued.into_iter().map(|(_, id, live)| (BUSY, id, live))
        };
        // Connections whose handshake has not been answered yet, oldest first: their
        // bytes wait unread only because their thread has not run yet.
        let unanswered = || {
            let mut fresh: Vec<(u64, u64, &Arc<Live>)> = all
                .iter()
                // ORDERING: see `Live::mark_idle`.
                .map(|(id, live)| (live.idle_since_ms.load(Ordering::Relaxed), **id, *live))
                .filter(|(since, _, live)| {
                    *since < EVICTED && !live.handshaken.load(Ordering::Relaxed)
                })
                .collect();
            fresh.sort_unstable_by_key(|(since, _, _)| *since);
            fresh
        };
        candidates
            .chain(unanswered())
            .chain(newest_waiting())
            .find_map(|(since, id, live)| {
                // ORDERING: see `Live::mark_idle`.
                live.idle_since_ms
                    .compare_exchange(since, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                    .ok()
                    .map(|_| id)
            })
    }
}

impl Shared {
    /// Closes the connection, other than `asking`, that has made no progress on the
    /// frame it is reading for the longest (at least `stalled_ms`), so that the bytes
    /// its frame holds come back to the budget; `None` if there is none. Such a
    /// connection is the first to lose its room when memory is short: its client
    /// holds memory and sends nothing. One whose client has sent more than its thread
    /// has read (it waits for room itself) goes only after every one whose client sends
    /// nothing: it may be closed too, or connections holding parts of frames could wait
    /// for each other's room until their deadlines.
    pub(super) fn cut_stalled_frame(&self, asking: &Live, stalled_ms: u64) -> Option<Arc<Live>> {
        let now = self.now_ms();
        let connections = self.lock_connections();
        let mut stalled: Vec<(u64, &Arc<Live>)> = connections
            .values()
            .filter(|live| !std::ptr::eq(live.as_ref(), asking))
            // ORDERING: see `Live::hold_partial_frame`; a first look, the
            // compare-exchange below decides.
            .filter(|live| live.partial_frame.load(Ordering::Acquire) > 0)
            // ORDERING: see `Live::mark_idle`.
            .map(|live| (live.idle_since_ms.load(Ordering::Acquire), live))
            .filter(|&(since, _)| since < EVICTED && since.saturating_add(stalled_ms) <= now)
            .collect();
        stalled.sort_by_cached_key(|&(since, live)| (unread_bytes(&live.stream) > 0, since));
        let (_, cut) = stalled.into_iter().find(|(since, live)| {
            // ORDERING: see `Live::mark_idle`.
            live.idle_since_ms
                .compare_exchange(*since, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })?;
        let cut = Arc::clone(cut);
        drop(connections);
        // ORDERING: Release, pairs with the Acquire in `Live::hand_over`, which its
        // thread runs after it sees the socket closed below.
        cut.cut_for_room.store(true, Ordering::Release);
        let _ = cut.stream.shutdown(Shutdown::Both);
        Counters::bump(&self.counters.frames_cut);
        Some(cut)
    }
}
