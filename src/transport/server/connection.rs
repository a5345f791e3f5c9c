//! One connection: the handshake, then calls until the client leaves, ends its session,
//! breaks the protocol, or stops making progress.
//!
//! Every message has a whole-message deadline, not a per-read one: the handshake must
//! arrive within the handshake time of the connection's start; a call may be awaited
//! for the idle time, but once its first byte has arrived its header must follow within
//! the message time, and its frame within the message time plus its length at the
//! minimum transfer rate. Writing a response has the same kind of deadline. A frame is
//! read only once its bytes fit in the memory budget.

use super::listener::Live;
use super::Shared;
use crate::answer::{self, Path, Refusal, Reply, Silence};
use crate::table::{Attached, Fingerprint, Reservation, TableError};
use crate::transport::counters::{CloseReason, Counters};
use crate::transport::wire::{self, WireError};
use crate::RequestNr;
use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Responses up to this size are written with one `write` under the plain write
/// timeout; larger ones in chunks, each under what is left of the whole deadline.
const SMALL_WRITE: usize = 256 * 1024;

/// Frames up to this size are read even when the budget is spent: a connection reads
/// one frame at a time, so they add at most this much per connection, and a client
/// with small calls is never starved by others' large frames or retained responses.
const SMALL_FRAME: u64 = 64 * 1024;

/// Why a connection ended without an error.
#[derive(Debug)]
enum End {
    Disconnected,
    SessionEnded,
    Evicted,
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

    /// A read failure: a timeout is `timeout`, anything else by its kind.
    fn read(e: WireError, timeout: CloseReason) -> Self {
        let reason = match &e {
            WireError::Io(io) if is_timeout(io) => timeout,
            WireError::Io(_) => CloseReason::Io,
            WireError::Truncated => CloseReason::Truncated,
            WireError::NegativeLength(_) => CloseReason::NegativeLength,
            WireError::TooLong { .. } => CloseReason::FrameTooLong,
        };
        Close::new(reason, e)
    }

    fn write(e: io::Error) -> Self {
        let reason = match is_timeout(&e) {
            true => CloseReason::WriteTimeout,
            false => CloseReason::Io,
        };
        Close::new(reason, e)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// How long the next read may block.
#[derive(Clone, Copy)]
enum Wait {
    /// Each read may take this long (waiting for a call to start).
    For(Duration),
    /// The message must be whole by then.
    Until(Instant),
}

/// The socket as a reader whose timeout follows a [`Wait`]; it sets the socket's
/// timeout only when it changes.
struct Timed<'a> {
    stream: &'a TcpStream,
    wait: Wait,
    timeout_set: Option<Duration>,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = match self.wait {
            Wait::For(d) => d,
            Wait::Until(deadline) => deadline.saturating_duration_since(Instant::now()),
        };
        if timeout.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if self.timeout_set != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.timeout_set = Some(timeout);
        }
        let mut stream = self.stream;
        stream.read(buf)
    }
}

struct Connection<'a> {
    shared: &'a Shared,
    live: &'a Live,
    reader: BufReader<Timed<'a>>,
    in_handler: Cell<bool>,
    session: Cell<Option<Fingerprint>>,
}

/// The body of a connection's thread.
pub(super) fn run(shared: &Shared, live: &Live, id: u64) {
    let start = Instant::now();
    let stream = &live.stream;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shared.config.message_timeout));
    let mut connection = Connection {
        shared,
        live,
        reader: BufReader::with_capacity(
            8 * 1024,
            Timed {
                stream,
                wait: Wait::Until(start + shared.config.handshake_timeout),
                timeout_set: None,
            },
        ),
        in_handler: Cell::new(false),
        session: Cell::new(None),
    };
    // A panicking handler unwinds through `serve`, dropping its `ProcessGuard`: that
    // abandons the request and wakes its waiters. Only this connection ends.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| connection.serve()));
    let close = match outcome {
        Ok(Ok(end)) => {
            let session = connection.session.get();
            tracing::debug!(connection = id, ?session, ?end, "connection ended");
            None
        }
        Ok(Err(close)) => Some(close),
        Err(_) => {
            if connection.in_handler.get() {
                Counters::bump(&shared.counters.requests_abandoned);
            }
            Some(Close::new(
                CloseReason::HandlerPanicked,
                "request abandoned",
            ))
        }
    };
    if let Some(close) = close {
        connection.report(id, &close);
    }
    let _ = stream.shutdown(Shutdown::Both);
}

impl Connection<'_> {
    fn config(&self) -> &super::ServerConfig {
        &self.shared.config
    }

    fn report(&self, id: u64, close: &Close) {
        let shared = self.shared;
        shared.counters.count_close(close.reason);
        let session = self.session.get();
        let (reason, detail) = (close.reason, &close.detail);
        if reason.is_housekeeping() {
            tracing::debug!(connection = id, ?session, %reason, %detail, "closing connection");
        } else if shared.logs.allow(reason_kind(reason)) {
            tracing::warn!(connection = id, ?session, %reason, %detail, "closing connection");
        }
    }

    fn serve(&mut self) -> Result<End, Close> {
        match self.serve_calls() {
            // The listener closed it to make room: not the client's fault.
            Err(_) if self.live.is_evicted() => Ok(End::Evicted),
            served => served,
        }
    }

    fn serve_calls(&mut self) -> Result<End, Close> {
        let Some(session) = self.handshake()? else {
            return Ok(End::Disconnected);
        };
        self.session.set(Some(session.fingerprint()));
        loop {
            let Some(nr) = self.next_request_nr()? else {
                return Ok(End::Disconnected);
            };
            if nr == 0 {
                self.shared.table.end(session.id());
                return Ok(End::SessionEnded);
            }
            let m = RequestNr::new(nr).map_err(|e| Close::new(CloseReason::BadRequestNr, e))?;
            let (frame, reservation) = self.read_frame()?;
            // Until its call has arrived whole, a connection may be closed to make room.
            if !self.live.mark_busy() {
                return Ok(End::Evicted);
            }
            self.answer(&session, m, frame, reservation)?;
        }
    }

    fn handshake(&mut self) -> Result<Option<Attached<Vec<u8>>>, Close> {
        let requested = wire::read_u64_or_eof(&mut self.reader)
            .map_err(|e| Close::read(e, CloseReason::HandshakeTimeout))?;
        let Some(requested) = requested else {
            return Ok(None);
        };
        let table = &self.shared.table;
        let attached = match requested {
            0 => table.create().map_err(|e| {
                debug_assert_eq!(e, TableError::Full);
                Close::new(
                    CloseReason::SessionLimit,
                    format!("{} live, all connected", table.len()),
                )
            })?,
            id => table.attach(id).map_err(|e| {
                debug_assert_eq!(e, TableError::Unknown);
                Close::new(
                    CloseReason::UnknownSession,
                    format!("session {}", table.fingerprint(id)),
                )
            })?,
        };
        let mut stream = self.reader.get_ref().stream;
        wire::write_u64(&mut stream, attached.id()).map_err(Close::write)?;
        Ok(Some(attached))
    }

    /// Waits up to the idle time for the next call, then reads its number within the
    /// message time. `None` when the client left between calls.
    fn next_request_nr(&mut self) -> Result<Option<u64>, Close> {
        self.live.mark_idle(self.shared.now_ms());
        self.reader.get_mut().wait = Wait::For(self.config().idle_timeout);
        match self.reader.fill_buf() {
            Ok([]) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(Close::read(e.into(), CloseReason::IdleTimeout)),
        }
        self.reader.get_mut().wait = Wait::Until(self.config().message_deadline(16));
        wire::read_u64(&mut self.reader)
            .map(Some)
            .map_err(|e| Close::read(e, CloseReason::MessageTimeout))
    }

    /// Reads a call's frame once its length fits in the memory budget.
    fn read_frame(&mut self) -> Result<(Vec<u8>, Reservation), Close> {
        let max = self.config().max_frame;
        let length = wire::read_frame_length(&mut self.reader, max)
            .map_err(|e| Close::read(e, CloseReason::MessageTimeout))?;
        let budget = &self.shared.budget;
        let reservation = if length <= SMALL_FRAME {
            budget.reserve_anyway(length as usize)
        } else {
            budget.try_reserve(length as usize).ok_or_else(|| {
                let held = budget.used();
                let detail = format!("{length} bytes with {held} of {} held", budget.limit());
                Close::new(CloseReason::OverBudget, detail)
            })?
        };
        self.reader.get_mut().wait = Wait::Until(self.config().message_deadline(length));
        let frame = wire::read_frame_body(&mut self.reader, length)
            .map_err(|e| Close::read(e, CloseReason::MessageTimeout))?;
        Ok((frame, reservation))
    }

    fn answer(
        &self,
        session: &Attached<Vec<u8>>,
        m: RequestNr,
        frame: Vec<u8>,
        reservation: Reservation,
    ) -> Result<(), Close> {
        let counters = &self.shared.counters;
        let resend_timeout = self.config().resend_timeout;
        let (path, reply) = answer::answer_blocking(session.state(), m, resend_timeout, |guard| {
            Counters::bump(&counters.requests_processed);
            if guard.skipped() > 0 {
                Counters::bump(&counters.requests_with_gap);
            }
            self.in_handler.set(true);
            let response = (self.shared.handler)(&frame);
            self.in_handler.set(false);
            drop((frame, reservation));
            session.retain(&response);
            guard.complete(response)
        });
        match (path, reply) {
            (_, Reply::Send(response)) => {
                if path == Path::Resent {
                    Counters::bump(&counters.requests_resent);
                }
                // Waiting for the client to take its response: it may be closed to make
                // room like an idle connection (the response stays retained).
                self.live.mark_writing(self.shared.now_ms());
                self.send(&response)
            }
            (_, Reply::Nothing(Silence::Stale)) => {
                Counters::bump(&counters.requests_stale);
                Ok(())
            }
            (_, Reply::Nothing(Silence::Gone)) => Ok(()),
            (_, Reply::Close(refusal)) => Err(self.refuse(m, refusal)),
        }
    }

    fn refuse(&self, m: RequestNr, refusal: Refusal) -> Close {
        let reason = match refusal {
            Refusal::Busy { .. } => {
                Counters::bump(&self.shared.counters.requests_busy);
                CloseReason::Busy
            }
            Refusal::Abandoned => CloseReason::Abandoned,
            Refusal::ResendTimedOut => CloseReason::ResendTimedOut,
        };
        Close::new(reason, format!("request {m}: {refusal}"))
    }

    /// Writes a response frame within its deadline, without copying a large one.
    fn send(&self, body: &[u8]) -> Result<(), Close> {
        let mut stream = self.reader.get_ref().stream;
        if body.len() <= SMALL_WRITE {
            return wire::write_frame(&mut stream, body).map_err(Close::write);
        }
        let deadline = self.config().message_deadline(body.len() as u64);
        wire::write_u64(&mut stream, body.len() as u64).map_err(Close::write)?;
        for chunk in body.chunks(SMALL_WRITE) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Close::write(io::ErrorKind::TimedOut.into()));
            }
            stream.set_write_timeout(Some(left)).map_err(Close::write)?;
            stream.write_all(chunk).map_err(Close::write)?;
        }
        stream
            .set_write_timeout(Some(self.config().message_timeout))
            .map_err(Close::write)
    }
}

/// The rate-limit kind of a close reason's log line.
fn reason_kind(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::HandshakeTimeout => "close: handshake timeout",
        CloseReason::IdleTimeout => "close: idle",
        CloseReason::MessageTimeout => "close: message timeout",
        CloseReason::WriteTimeout => "close: write timeout",
        CloseReason::OverBudget => "close: over budget",
        CloseReason::UnknownSession => "close: unknown session",
        CloseReason::SessionLimit => "close: session limit",
        CloseReason::BadRequestNr => "close: bad request number",
        CloseReason::NegativeLength => "close: negative length",
        CloseReason::FrameTooLong => "close: frame too long",
        CloseReason::Truncated => "close: truncated",
        CloseReason::Busy => "close: busy",
        CloseReason::Abandoned => "close: abandoned",
        CloseReason::ResendTimedOut => "close: resend timed out",
        CloseReason::HandlerPanicked => "close: handler panicked",
        CloseReason::Io => "close: i/o",
    }
}
