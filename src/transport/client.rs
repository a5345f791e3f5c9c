//! The client: one session, re-made connections, the same request re-sent.

use super::wire::{self, WireError};
use crate::RequestNr;
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Which way the client is about to move bytes when a [`FaultHook`] is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Before a send.
    Send,
    /// Before a receive.
    Receive,
}

/// Called before every send and receive, as MUSCLE3's `libmuscle.mark` hooks are; a
/// test can `shutdown()` the socket there to simulate a broken connection.
pub type FaultHook = Arc<dyn Fn(&TcpStream, Direction) + Send + Sync>;

/// Deadlines and limits of a [`Client`]. Start from `ClientConfig::default()`.
#[derive(Clone)]
pub struct ClientConfig {
    /// Per connection attempt (default 3 s, as MUSCLE3).
    pub connect_timeout: Duration,
    /// How long one call (or the first connect) keeps reconnecting before it gives up
    /// (default 60 s, as MUSCLE3).
    pub reconnect_deadline: Duration,
    /// The first pause between attempts; it doubles up to `max_backoff` (default 10 ms).
    pub initial_backoff: Duration,
    /// The longest pause between attempts (default 1 s).
    pub max_backoff: Duration,
    /// The largest response frame accepted, in bytes (default 1 GiB).
    pub max_frame: u64,
    /// A read timeout for responses; `None` (default) waits as long as the handler takes.
    pub read_timeout: Option<Duration>,
    /// Called before every send and receive (tests only; default none).
    pub fault_hook: Option<FaultHook>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(3),
            reconnect_deadline: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            max_frame: 1 << 30,
            read_timeout: None,
            fault_hook: None,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_deadline", &self.reconnect_deadline)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_frame", &self.max_frame)
            .field("read_timeout", &self.read_timeout)
            .field("fault_hook", &self.fault_hook.is_some())
            .finish()
    }
}

/// Why a call (or connect) failed.
#[derive(Debug)]
pub enum ClientError {
    /// The location is not `tcp:HOST:PORT[,HOST:PORT…]` (or `HOST:PORT`).
    InvalidLocation(String),
    /// The server could not be reached, or kept failing, until the reconnect deadline.
    Unreachable {
        /// How long the client tried.
        tried: Duration,
        /// The last error.
        last: io::Error,
    },
    /// The session has used every request number up to [`RequestNr::MAX`].
    RequestNrExhausted,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidLocation(l) => write!(f, "invalid location {l:?}"),
            ClientError::Unreachable { tried, last } => {
                write!(f, "gave up after {tried:?} of reconnecting: {last}")
            }
            ClientError::RequestNrExhausted => f.write_str("request numbers exhausted"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Unreachable { last, .. } => Some(last),
            _ => None,
        }
    }
}

/// A client of one session on a MUSCLE3-compatible server.
///
/// Each [`call`](Self::call) numbers its request; when the connection breaks, the
/// client reconnects, resumes the session and re-sends the same number and frame, so
/// the server runs it once. Closing or dropping the client ends the session.
pub struct Client {
    addrs: Vec<SocketAddr>,
    config: ClientConfig,
    stream: Option<TcpStream>,
    session: u64,
    request: u64,
    reconnects: u64,
}

impl Client {
    /// Connects to `location` (`tcp:HOST:PORT`, several separated by commas, or a bare
    /// `HOST:PORT`) and starts a session, retrying until the reconnect deadline.
    pub fn connect(location: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let mut client = Client {
            addrs: parse_location(location)?,
            config,
            stream: None,
            session: 0,
            request: 0,
            reconnects: 0,
        };
        client.with_reconnects(|_| Ok(()))?;
        Ok(client)
    }

    /// Sends `request` as the next request of the session and returns its response.
    pub fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, ClientError> {
        let nr = RequestNr::new(self.request + 1).map_err(|_| ClientError::RequestNrExhausted)?;
        self.request = nr.get();
        let message = wire::encode_call(nr.get(), request);
        self.with_reconnects(|client| client.exchange(&message))
    }

    /// The session id the server gave (never 0 once connected).
    pub fn session_id(&self) -> u64 {
        self.session
    }

    /// The number of the last request sent (0 before the first call).
    pub fn last_request(&self) -> u64 {
        self.request
    }

    /// How many times the client re-made its connection.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Ends the session (sends request number 0) and closes the connection.
    pub fn close(mut self) {
        self.end_session();
    }

    /// Sends request number 0. If the connection turns out to be broken, one fresh
    /// connection is tried (a broken connection is only noticed when used), so that the
    /// server can free the session at once rather than at its idle expiry.
    fn end_session(&mut self) {
        if self.session == 0 {
            return;
        }
        let mut ended = self.send_end();
        if ended.is_err() {
            self.disconnect();
            ended = self.ensure_connected().and_then(|()| self.send_end());
        }
        if let Err(e) = ended {
            tracing::warn!(session = self.session, error = %e, "could not end the session");
        }
        self.disconnect();
        // Ended (or given up on) once: `Drop` after `close` must not resume it to end it
        // again, which a server logs as a resume of an unknown session.
        self.session = 0;
    }

    fn send_end(&mut self) -> io::Result<()> {
        match &self.stream {
            Some(stream) => wire::write_u64(&mut &*stream, 0),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "not connected")),
        }
    }

    fn with_reconnects<R>(
        &mut self,
        mut attempt: impl FnMut(&mut Client) -> io::Result<R>,
    ) -> Result<R, ClientError> {
        let start = Instant::now();
        let mut backoff = self.config.initial_backoff;
        loop {
            let result = self.ensure_connected().and_then(|()| attempt(self));
            let error = match result {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            self.disconnect();
            let tried = start.elapsed();
            if tried >= self.config.reconnect_deadline {
                tracing::warn!(session = self.session, error = %error, "giving up");
                return Err(ClientError::Unreachable { tried, last: error });
            }
            tracing::debug!(session = self.session, error = %error, "connection lost, reconnecting");
            thread::sleep(backoff.min(self.config.reconnect_deadline - tried));
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    fn ensure_connected(&mut self) -> io::Result<()> {
        if self.stream.is_some() {
            return Ok(());
        }
        let stream = self.open()?;
        self.fire(&stream, Direction::Send);
        wire::write_u64(&mut &stream, self.session)?;
        self.fire(&stream, Direction::Receive);
        let id = wire::read_u64(&mut &stream).map_err(into_io)?;
        if self.session != 0 {
            if id != self.session {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("asked to resume session {} and got {id}", self.session),
                ));
            }
            self.reconnects += 1;
        }
        self.session = id;
        self.stream = Some(stream);
        Ok(())
    }

    fn open(&self) -> io::Result<TcpStream> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in &self.addrs {
            match TcpStream::connect_timeout(addr, self.config.connect_timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(self.config.read_timeout)?;
                    return Ok(stream);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn exchange(&mut self, message: &[u8]) -> io::Result<Vec<u8>> {
        let stream = self.stream.as_ref().expect("connected before exchanging");
        self.fire(stream, Direction::Send);
        (&mut &*stream).write_all(message)?;
        self.fire(stream, Direction::Receive);
        let length =
            wire::read_frame_length(&mut &*stream, self.config.max_frame).map_err(into_io)?;
        self.fire(stream, Direction::Receive);
        wire::read_frame_body(&mut &*stream, length).map_err(into_io)
    }

    fn fire(&self, stream: &TcpStream, direction: Direction) {
        if let Some(hook) = &self.config.fault_hook {
            hook(stream, direction);
        }
    }

    fn disconnect(&mut self) {
        if let Some(stream) = self.stream.take() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.end_session();
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addrs", &self.addrs)
            .field("session", &self.session)
            .field("request", &self.request)
            .field("connected", &self.stream.is_some())
            .field("reconnects", &self.reconnects)
            .finish()
    }
}

fn into_io(e: WireError) -> io::Error {
    match e {
        WireError::Io(e) => e,
        WireError::Truncated => io::Error::new(io::ErrorKind::UnexpectedEof, e),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

fn parse_location(location: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let invalid = || ClientError::InvalidLocation(location.to_owned());
    let list = location.strip_prefix("tcp:").unwrap_or(location);
    let mut addrs = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        addrs.extend(part.to_socket_addrs().map_err(|_| invalid())?);
    }
    if addrs.is_empty() {
        return Err(invalid());
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_as_muscle3_writes_them() {
        assert_eq!(parse_location("tcp:127.0.0.1:5").unwrap().len(), 1);
        assert_eq!(parse_location("tcp:127.0.0.1:5,[::1]:6").unwrap().len(), 2);
        assert_eq!(parse_location("127.0.0.1:5").unwrap().len(), 1);
        assert!(parse_location("tcp:").is_err());
        assert!(parse_location("tcp:nonsense").is_err());
    }
}
