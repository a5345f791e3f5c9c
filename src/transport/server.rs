//! The server: an accept thread and one thread per connection, blocking `std::net`.

use super::counters::{CloseReason, Counters, CountersSnapshot};
use super::table::{Attached, SessionTable, TableError};
use super::wire::{self, WireError};
use crate::{RequestNr, SessionState, Triage, WaitTimeoutError};
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufReader};
use std::net::ToSocketAddrs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What the server runs for each request: request bytes in, response bytes out.
pub type Handler = dyn Fn(&[u8]) -> Vec<u8> + Send + Sync;

/// Limits and deadlines of a [`Server`]. Start from `ServerConfig::default()`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The largest request frame accepted, in bytes (default 64 MiB).
    pub max_frame: u64,
    /// The most live sessions; a new session beyond it is refused (default 1024).
    pub max_sessions: usize,
    /// The most live connections; one more is closed at once (default 256).
    pub max_connections: usize,
    /// A session with no connection and no activity for this long is removed
    /// (default 10 minutes; MUSCLE3 never removes one).
    pub idle_expiry: Duration,
    /// A connection must send its session id within this time (default 5 s).
    pub handshake_timeout: Duration,
    /// A read timeout after the handshake; `None` (default) lets a connection wait for
    /// its next call as long as it likes, as MUSCLE3 peers expect.
    pub read_timeout: Option<Duration>,
    /// How long a re-request waits for the outcome of a request still being processed
    /// before its connection is closed (default 60 s).
    pub resend_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame: 64 << 20,
            max_sessions: 1024,
            max_connections: 256,
            idle_expiry: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(5),
            read_timeout: None,
            resend_timeout: Duration::from_secs(60),
        }
    }
}

/// A MUSCLE3-compatible MCP-over-TCP server giving its handler exactly-once requests.
///
/// Dropping it shuts it down at once, as [`shutdown_now`](Self::shutdown_now).
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept_thread: Option<JoinHandle<()>>,
}

struct Shared {
    config: ServerConfig,
    handler: Box<Handler>,
    table: SessionTable,
    counters: Counters,
    stopping: AtomicBool,
    connections: Mutex<HashMap<u64, LiveConnection>>,
    next_connection: AtomicU64,
}

struct LiveConnection {
    stream: TcpStream,
    /// True while the connection waits for its next call (or its handshake): graceful
    /// shutdown may close it then without cutting a call short.
    idle: Arc<AtomicBool>,
}

/// Removes a connection from the live set when its thread ends (or never starts).
struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

struct ConnectionState {
    idle: Arc<AtomicBool>,
    in_handler: Cell<bool>,
    session: Cell<u64>,
}

/// Why a connection ended without an error.
#[derive(Debug)]
enum End {
    Disconnected,
    SessionEnded,
    ShuttingDown,
}

struct Close {
    reason: CloseReason,
    detail: String,
}

impl Close {
    fn new(reason: CloseReason, detail: impl fmt::Display) -> Self {
        Close {
            reason,
            detail: detail.to_string(),
        }
    }

    fn io(e: io::Error) -> Self {
        Close::new(CloseReason::Io, e)
    }

    fn wire(e: WireError) -> Self {
        let reason = match &e {
            WireError::Io(_) => CloseReason::Io,
            WireError::Truncated => CloseReason::Truncated,
            WireError::NegativeLength(_) => CloseReason::NegativeLength,
            WireError::TooLong { .. } => CloseReason::FrameTooLong,
        };
        Close::new(reason, e)
    }
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
        let shared = Arc::new(Shared {
            table: SessionTable::new(config.max_sessions, config.idle_expiry),
            config,
            handler: Box::new(handler),
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
        });
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

    /// Removes idle sessions now (the table also does so whenever a connection
    /// creates or resumes a session); returns how many.
    pub fn expire_idle(&self) -> usize {
        self.shared.table.expire_idle(&self.shared.counters).len()
    }

    /// Stops accepting, closes connections that wait for their next call, lets the
    /// others finish their current call for up to `grace`, then closes what is left.
    /// Returns how many connections had to be cut.
    pub fn shutdown(mut self, grace: Duration) -> usize {
        self.stop_accepting();
        let deadline = Instant::now() + grace;
        loop {
            let connections = self.shared.lock_connections();
            for c in connections.values() {
                // ORDERING: SeqCst, pairs with the connection's store of `idle` and load
                // of `stopping`: either it sees `stopping` or this sees it idle.
                if c.idle.load(Ordering::SeqCst) {
                    let _ = c.stream.shutdown(Shutdown::Both);
                }
            }
            if connections.is_empty() || Instant::now() >= deadline {
                break;
            }
            drop(connections);
            thread::sleep(Duration::from_millis(2));
        }
        self.shared.close_all()
    }

    /// Stops accepting and shuts down every live socket at once; handler threads
    /// notice at their next read or write. Returns how many connections were cut.
    pub fn shutdown_now(mut self) -> usize {
        self.stop_accepting();
        self.shared.close_all()
    }

    fn stop_accepting(&mut self) {
        // ORDERING: SeqCst, see `shutdown`.
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(accept_thread) = self.accept_thread.take() {
            // The accept thread is blocked in `accept`: a connection wakes it.
            let _ =
                TcpStream::connect_timeout(&wake_address(self.local_addr), Duration::from_secs(1));
            let _ = accept_thread.join();
        }
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

impl Shared {
    fn lock_connections(&self) -> MutexGuard<'_, HashMap<u64, LiveConnection>> {
        // Every change under this lock is one insert or remove: a poisoned map is whole.
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_stopping(&self) -> bool {
        // ORDERING: SeqCst, see `Server::shutdown`.
        self.stopping.load(Ordering::SeqCst)
    }

    fn close_all(&self) -> usize {
        let connections = self.lock_connections();
        for c in connections.values() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        connections.len()
    }

    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        for stream in listener.incoming() {
            if self.is_stopping() {
                break;
            }
            match stream {
                Ok(stream) => self.admit(stream),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Out of file descriptors and the like: give others time to close.
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    fn admit(self: &Arc<Self>, stream: TcpStream) {
        let peer = stream.peer_addr().ok();
        let registered = self.register(&stream);
        let Some((id, idle)) = registered else {
            Counters::bump(&self.counters.connections_refused);
            tracing::warn!(?peer, "connection refused: connection limit reached");
            let _ = stream.shutdown(Shutdown::Both);
            return;
        };
        Counters::bump(&self.counters.connections_accepted);
        let registration = Registration {
            shared: Arc::clone(self),
            id,
        };
        let spawned = thread::Builder::new()
            .name("mcp-connection".into())
            .spawn(move || {
                registration
                    .shared
                    .run_connection(stream, idle, &registration)
            });
        if let Err(e) = spawned {
            // The closure, and with it the registration, has been dropped.
            Counters::bump(&self.counters.connections_refused);
            tracing::warn!(?peer, error = %e, "connection refused: cannot start a thread");
        }
    }

    fn register(&self, stream: &TcpStream) -> Option<(u64, Arc<AtomicBool>)> {
        let mut connections = self.lock_connections();
        if connections.len() >= self.config.max_connections {
            return None;
        }
        let stream = stream.try_clone().ok()?;
        // ORDERING: only uniqueness matters.
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let idle = Arc::new(AtomicBool::new(true));
        let idle_for_shutdown = Arc::clone(&idle);
        connections.insert(
            id,
            LiveConnection {
                stream,
                idle: idle_for_shutdown,
            },
        );
        Some((id, idle))
    }

    fn run_connection(
        &self,
        stream: TcpStream,
        idle: Arc<AtomicBool>,
        registration: &Registration,
    ) {
        let peer = stream.peer_addr().ok();
        let state = ConnectionState {
            idle,
            in_handler: Cell::new(false),
            session: Cell::new(0),
        };
        // A panicking handler unwinds through `serve`, dropping its `ProcessGuard`:
        // that abandons the request and wakes its waiters. Only this connection ends.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.serve(&stream, &state)));
        let close = match outcome {
            Ok(Ok(end)) => {
                tracing::debug!(
                    ?peer,
                    session = state.session.get(),
                    ?end,
                    "connection ended"
                );
                None
            }
            Ok(Err(close)) => Some(close),
            Err(_) => {
                if state.in_handler.get() {
                    Counters::bump(&self.counters.requests_abandoned);
                }
                Some(Close::new(
                    CloseReason::HandlerPanicked,
                    "request abandoned",
                ))
            }
        };
        if let Some(close) = close {
            self.counters.count_close(close.reason);
            tracing::warn!(
                ?peer,
                session = state.session.get(),
                connection = registration.id,
                reason = %close.reason,
                detail = %close.detail,
                "closing connection"
            );
        }
        let _ = stream.shutdown(Shutdown::Both);
    }

    /// Waits for the next call; `None` when the connection should end quietly.
    fn next_request_nr(
        &self,
        reader: &mut BufReader<&TcpStream>,
        state: &ConnectionState,
    ) -> Result<Option<u64>, Close> {
        // ORDERING: SeqCst, pairs with `Server::shutdown` (store idle, then load stopping
        // here; store stopping, then load idle there).
        state.idle.store(true, Ordering::SeqCst);
        if self.is_stopping() {
            return Ok(None);
        }
        let nr = wire::read_u64_or_eof(reader).map_err(Close::wire)?;
        // ORDERING: as above.
        state.idle.store(false, Ordering::SeqCst);
        Ok(nr)
    }

    fn serve(&self, stream: &TcpStream, state: &ConnectionState) -> Result<End, Close> {
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(self.config.handshake_timeout))
            .map_err(Close::io)?;
        let mut reader = BufReader::with_capacity(8 * 1024, stream);
        let Some(session) = self.handshake(&mut reader, stream)? else {
            return Ok(End::Disconnected);
        };
        state.session.set(session.entry.id);
        stream
            .set_read_timeout(self.config.read_timeout)
            .map_err(Close::io)?;
        loop {
            let nr = match self.next_request_nr(&mut reader, state)? {
                None if self.is_stopping() => return Ok(End::ShuttingDown),
                None => return Ok(End::Disconnected),
                Some(0) => {
                    if self.table.end(session.entry.id) {
                        Counters::bump(&self.counters.sessions_ended);
                    }
                    return Ok(End::SessionEnded);
                }
                Some(nr) => nr,
            };
            let m = RequestNr::new(nr).map_err(|e| Close::new(CloseReason::BadRequestNr, e))?;
            let frame =
                wire::read_frame(&mut reader, self.config.max_frame).map_err(Close::wire)?;
            session.touch();
            self.answer(stream, &session.entry.state, m, &frame, state)?;
        }
    }

    fn handshake(
        &self,
        reader: &mut BufReader<&TcpStream>,
        mut stream: &TcpStream,
    ) -> Result<Option<Attached>, Close> {
        let requested = match wire::read_u64_or_eof(reader) {
            Ok(None) => return Ok(None),
            Ok(Some(id)) => id,
            Err(WireError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Close::new(CloseReason::HandshakeTimeout, e));
            }
            Err(e) => return Err(Close::wire(e)),
        };
        let attached = if requested == 0 {
            let attached = self.table.create(&self.counters).map_err(|_| {
                Close::new(
                    CloseReason::SessionLimit,
                    format!("{} live", self.table.len()),
                )
            })?;
            Counters::bump(&self.counters.sessions_created);
            attached
        } else {
            let attached = self.table.resume(requested, &self.counters).map_err(|e| {
                debug_assert_eq!(e, TableError::Unknown);
                Close::new(CloseReason::UnknownSession, format!("session {requested}"))
            })?;
            Counters::bump(&self.counters.sessions_resumed);
            tracing::info!(session = requested, "session resumed");
            attached
        };
        wire::write_u64(&mut stream, attached.entry.id).map_err(Close::io)?;
        Ok(Some(attached))
    }

    fn answer(
        &self,
        mut stream: &TcpStream,
        session: &SessionState<Vec<u8>>,
        m: RequestNr,
        frame: &[u8],
        state: &ConnectionState,
    ) -> Result<(), Close> {
        match session.triage(m) {
            Triage::Process(guard) => {
                Counters::bump(&self.counters.requests_processed);
                if guard.skipped() > 0 {
                    Counters::bump(&self.counters.requests_with_gap);
                    tracing::info!(request = %m, skipped = guard.skipped(), "request numbers skipped");
                }
                state.in_handler.set(true);
                let response = (self.handler)(frame);
                state.in_handler.set(false);
                let response = guard.complete(response);
                wire::write_frame(&mut stream, &response).map_err(Close::io)
            }
            Triage::Resend => {
                Counters::bump(&self.counters.requests_resent);
                match session.wait_timeout(m, self.config.resend_timeout) {
                    Ok(response) => wire::write_frame(&mut stream, &response).map_err(Close::io),
                    // The client has sent a later request on another connection: it
                    // does not need this response any more.
                    Err(WaitTimeoutError::Gone) => Ok(()),
                    Err(WaitTimeoutError::Abandoned) => {
                        Err(Close::new(CloseReason::Abandoned, format!("request {m}")))
                    }
                    Err(WaitTimeoutError::TimedOut) => Err(Close::new(
                        CloseReason::ResendTimedOut,
                        format!("request {m}"),
                    )),
                }
            }
            Triage::Stale => {
                Counters::bump(&self.counters.requests_stale);
                Ok(())
            }
            Triage::Busy { current } => {
                Counters::bump(&self.counters.requests_busy);
                Err(Close::new(
                    CloseReason::Busy,
                    format!("request {m} while {current} is processed"),
                ))
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.lock_connections().remove(&self.id);
    }
}
