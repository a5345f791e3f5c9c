//! The server: an accept thread and one thread per connection, blocking `std::net`.
//!
//! - `listener`: accepting, the connection limit (the longest-idle connection of the
//!   busiest client address makes room for a newcomer), the live-connection set;
//! - `connection`: one connection's handshake and calls, with their deadlines and the
//!   memory budget;
//! - this file: configuration, the shared state, and shutdown.

mod connection;
mod listener;
mod response;

use super::counters::{Counters, CountersSnapshot};
use super::logs::{self, RateLimit};
use crate::table::{Budget, SessionTable, TableConfig, TableEvent};
use listener::Live;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::ToSocketAddrs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What the server runs for each request: request bytes in, response bytes out.
pub type Handler = dyn Fn(&[u8]) -> Vec<u8> + Send + Sync;

/// Limits and deadlines of a [`Server`]. Start from `ServerConfig::default()`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The largest request frame accepted, in bytes (default 64 MiB).
    pub max_frame: u64,
    /// The most live sessions (default 1024). When full, a new session evicts the
    /// session without a connection that lost its last one longest ago; its client
    /// then gets "unknown session" when it comes back: an error, never a second
    /// execution.
    pub max_sessions: usize,
    /// The most live connections (default 256). At the limit a newcomer closes one
    /// connection of the client address that holds the most (of any address if none of
    /// those can go): one whose client does not take what it is sent first, else the
    /// one that has waited longest for its next call to arrive whole (its client
    /// resumes and re-sends); it is refused only if every connection is answering a
    /// call.
    pub max_connections: usize,
    /// A session that completed a request and has had no connection for this long is
    /// removed (default 10 minutes; MUSCLE3 never removes one).
    pub idle_expiry: Duration,
    /// A session that never completed a request and has had no connection for this long
    /// is removed (default 10 s).
    pub unused_expiry: Duration,
    /// A connection must send its whole session id within this time (default 5 s).
    pub handshake_timeout: Duration,
    /// A connection that sends no call for this long is closed (default 60 s); its
    /// client resumes its session on its next call.
    pub idle_timeout: Duration,
    /// Once a call's first byte has arrived, its header must arrive within this time,
    /// and its frame within this time plus its length at `min_transfer_rate`; the same
    /// holds for writing a response (default 10 s).
    pub message_timeout: Duration,
    /// The slowest transfer, in bytes per second, a large frame is given time for
    /// (default 1 MiB/s).
    pub min_transfer_rate: u64,
    /// How long a re-request waits for the outcome of a request still being processed,
    /// or a call for room in the memory budget that none can be made for, before its
    /// connection is closed (default 60 s).
    pub resend_timeout: Duration,
    /// The bytes the server may hold for frames being read, responses being produced
    /// and written, and responses retained for resends (default 512 MiB). Bytes are
    /// counted when they are held: a frame's 64 KiB at a time, each step just before it
    /// is read (never its announced length), and, for a new request,
    /// `response_reserve` bytes for its response with the frame's last step, before the
    /// handler runs. Calls that wait for room are served first fit in arrival order: a
    /// call that fits is never held up by one that does not. The one that has waited
    /// longest makes room: first the connection that has made no progress on the frame
    /// it is reading for the longest (at least a step's time at `min_transfer_rate`) is
    /// closed and its bytes handed to the call; then sessions without a connection that
    /// hold a response are evicted, longest detached first, however recently they lost
    /// it. Only when neither is left does the call wait on, up to
    /// `resend_timeout`, and then its connection is closed (the client retries later;
    /// nothing was run). A frame that cannot fit with its response's room even in an
    /// empty budget is refused at once. A retained response is never dropped from a
    /// session with a connection to make room; ending a session frees it at once.
    /// Responses are written from where they are retained, never copied. Not counted:
    /// a fixed 8 KiB read buffer per connection.
    pub memory_budget: usize,
    /// The bytes counted for a request's response before its handler runs, beyond its
    /// frame's (default 1 MiB): set it to the largest response the handler returns for
    /// a small request. A response larger than its frame and this reserve together is
    /// still kept and sent (it is never lost) and counted in full, which may take the
    /// memory in use above the budget by the difference.
    pub response_reserve: usize,
    /// The owner number carried by every session id this server makes (default 0); see
    /// [`owner_of`](crate::table::owner_of).
    pub owner: u8,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame: 64 << 20,
            max_sessions: 1024,
            max_connections: 256,
            idle_expiry: Duration::from_secs(600),
            unused_expiry: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            message_timeout: Duration::from_secs(10),
            min_transfer_rate: 1 << 20,
            resend_timeout: Duration::from_secs(60),
            memory_budget: 512 << 20,
            response_reserve: 1 << 20,
            owner: 0,
        }
    }
}

impl ServerConfig {
    /// The time allowed for a message of `len` bytes once it has started.
    pub(crate) fn message_deadline(&self, len: u64) -> Instant {
        let transfer = Duration::from_secs_f64(len as f64 / self.min_transfer_rate.max(1) as f64);
        Instant::now() + self.message_timeout + transfer
    }
}

/// How a shutdown went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Connections that had to be closed in the middle of a call.
    pub cut: usize,
    /// Connection threads still running when the shutdown returned (a handler that
    /// does not return, or a resend waiting for one); 0 means every thread has ended.
    pub still_running: usize,
}

/// A MUSCLE3-compatible MCP-over-TCP server giving its handler exactly-once requests.
///
/// Dropping it shuts it down at once, as [`shutdown_now`](Self::shutdown_now).
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept_thread: Option<JoinHandle<()>>,
}

/// What the accept thread and every connection thread share.
pub(super) struct Shared {
    config: ServerConfig,
    handler: Box<Handler>,
    table: SessionTable<response::Response>,
    budget: Arc<Budget>,
    counters: Arc<Counters>,
    logs: RateLimit,
    stopping: AtomicBool,
    connections: Mutex<HashMap<u64, Arc<Live>>>,
    next_connection: AtomicU64,
    /// Connection threads not yet ended, and the condition shutdown waits on.
    running: Mutex<usize>,
    ended: Condvar,
    epoch: Instant,
}

impl Server {
    /// Binds `addr` and starts accepting connections; `handler` answers each request
    /// that is processed (once per request number and session).
    pub fn bind(
        addr: impl ToSocketAddrs,
        config: ServerConfig,
        handler: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        logs::install_panic_hook();
        let shared = Arc::new(Shared::new(config, Box::new(handler)));
        let accepting = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("mcp-accept".into())
            .spawn(move || accepting.accept_loop(listener))?;
        Ok(Server {
            shared,
            local_addr,
            accept_thread: Some(accept_thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The MUSCLE3 location string, `tcp:HOST:PORT`.
    pub fn location(&self) -> String {
        format!("tcp:{}", self.local_addr)
    }

    /// The counters now.
    pub fn counters(&self) -> CountersSnapshot {
        self.shared.counters.snapshot()
    }

    /// Sessions in the table now.
    pub fn live_sessions(&self) -> usize {
        self.shared.table.len()
    }

    /// Connections open now.
    pub fn live_connections(&self) -> usize {
        self.shared.lock_connections().len()
    }

    /// Bytes of the memory budget in use now (frames being read, responses being
    /// produced, written or retained).
    pub fn memory_used(&self) -> usize {
        self.shared.budget.used()
    }

    /// The memory budget, to watch from another thread.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.shared.budget
    }

    /// Removes sessions whose expiry time has passed now (the table also does so as
    /// connections create and resume sessions); returns how many.
    pub fn expire_idle(&self) -> usize {
        self.shared.table.expire()
    }

    /// Stops accepting and stops reading new calls: every call whose bytes have already
    /// arrived is still answered, connections between calls close. Calls still running
    /// after `grace` are cut. Returns how many connections were cut.
    pub fn shutdown(self, grace: Duration) -> usize {
        self.stop(grace).cut
    }

    /// As [`shutdown`](Self::shutdown), saying also how many connection threads were
    /// still running when it returned (it waits for all of them up to the grace, and a
    /// little longer after cutting).
    pub fn stop(mut self, grace: Duration) -> Stopped {
        self.stop_accepting();
        let shared = &self.shared;
        for live in shared.lock_connections().values() {
            // Bytes that have arrived are still read; then the reader sees the end.
            let _ = live.stream.shutdown(Shutdown::Read);
        }
        let cut = match shared.wait_for_threads(Instant::now() + grace) {
            0 => 0,
            _ => shared.close_all(),
        };
        shared.finish(cut)
    }

    /// Stops accepting and shuts down every live socket at once; handler threads
    /// notice at their next read or write. Returns how many connections were cut.
    pub fn shutdown_now(self) -> usize {
        self.stop_now().cut
    }

    /// As [`shutdown_now`](Self::shutdown_now), saying also how many connection threads
    /// were still running when it returned.
    pub fn stop_now(mut self) -> Stopped {
        self.stop_accepting();
        let cut = self.shared.close_all();
        self.shared.finish(cut)
    }

    fn stop_accepting(&mut self) {
        // ORDERING: SeqCst, pairs with the load in `Shared::register` under the
        // connections lock: a connection registered after the shutdown's sweep sees it.
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(accept_thread) = self.accept_thread.take() {
            // The accept thread is blocked in `accept`: a connection wakes it.
            let _ =
                TcpStream::connect_timeout(&wake_address(self.local_addr), Duration::from_secs(1));
            let _ = accept_thread.join();
        }
    }
}

/// How long a forced close waits for threads to notice their closed sockets.
const AFTER_CUT: Duration = Duration::from_millis(500);

impl Shared {
    fn new(config: ServerConfig, handler: Box<Handler>) -> Self {
        let budget = Budget::new(config.memory_budget);
        let counters = Arc::new(Counters::default());
        let table_config = TableConfig {
            max_sessions: config.max_sessions,
            idle_expiry: config.idle_expiry,
            unused_expiry: config.unused_expiry,
            owner: config.owner,
            ..TableConfig::default()
        };
        let observed = Arc::clone(&counters);
        // Responses count themselves in the budget (see `response`), for as long as
        // anything holds them.
        let table = SessionTable::new(table_config, Arc::clone(&budget))
            .with_observer(move |event| observed.count_table_event(event));
        Shared {
            config,
            handler,
            table,
            budget,
            counters,
            logs: RateLimit::default(),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
            running: Mutex::new(0),
            ended: Condvar::new(),
            epoch: Instant::now(),
        }
    }

    fn lock_connections(&self) -> MutexGuard<'_, HashMap<u64, Arc<Live>>> {
        // Every change under this lock is one insert or remove: a poisoned map is whole.
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_running(&self) -> MutexGuard<'_, usize> {
        // A count changed by one statement: whole even if poisoned.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_stopping(&self) -> bool {
        // ORDERING: SeqCst, see `Server::stop_accepting`.
        self.stopping.load(Ordering::SeqCst)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Shuts down every live socket; returns how many there were.
    fn close_all(&self) -> usize {
        let connections = self.lock_connections();
        for live in connections.values() {
            let _ = live.stream.shutdown(Shutdown::Both);
        }
        connections.len()
    }

    /// Waits until every connection thread has ended or `deadline` passes; returns how
    /// many are still running.
    fn wait_for_threads(&self, deadline: Instant) -> usize {
        let mut running = self.lock_running();
        while *running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            running = self
                .ended
                .wait_timeout(running, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *running
    }

    fn finish(&self, cut: usize) -> Stopped {
        let still_running = self.wait_for_threads(Instant::now() + AFTER_CUT);
        if still_running > 0 {
            tracing::warn!(
                still_running,
                "shutdown returns with connection threads still running"
            );
        }
        self.logs.flush();
        Stopped { cut, still_running }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.accept_thread.is_some() {
            self.stop_accepting();
            self.shared.close_all();
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("counters", &self.shared.counters.snapshot())
            .finish_non_exhaustive()
    }
}

fn wake_address(listening: SocketAddr) -> SocketAddr {
    match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listening.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listening.port()).into(),
        _ => listening,
    }
}

impl Counters {
    fn count_table_event(&self, event: TableEvent) {
        let counter = match event {
            TableEvent::Created(_) => &self.sessions_created,
            TableEvent::Attached(_) => &self.sessions_resumed,
            TableEvent::Ended(_) => &self.sessions_ended,
            TableEvent::Expired { .. } => &self.sessions_expired,
            TableEvent::Evicted(_) => &self.sessions_evicted,
        };
        Counters::bump(counter);
    }
}
