//! One connection: the handshake, then calls until the client leaves, ends its session,
//! breaks the protocol, or stops making progress.
//!
//! Every message has a whole-message deadline, not a per-read one: the handshake must
//! arrive within the handshake time of the connection's start; a call may be awaited
//! for the idle time, but once its first byte has arrived its header must follow within
//! the message time, and its frame within the message time plus its length at the
//! minimum transfer rate. Writing a response has the same kind of deadline.
//!
//! Every byte a connection makes the server hold is counted in the memory budget when
//! it is held: a frame's bytes a step at a time as they arrive (never its announced
//! length), and, for a new request, room for its response with the frame's last step.
//! Calls that wait for room are served first fit in arrival order: a call that fits
//! never waits behind one that does not. The call that has waited longest makes room:
//! a connection stalled in the middle of a frame is closed first, then sessions without
//! a connection that hold a response are evicted, longest detached first. Only when
//! neither is left does a call wait on, up to the resend timeout, and then its
//! connection is closed: nothing of the call has been run, and its client sends it
//! again later.

use super::listener::Live;
use super::response::Response;
use super::Shared;
use crate::answer::{self, Path, Refusal, Reply, Silence};
use crate::table::{Attached, Budget, Fingerprint, Reservation, TableError};
use crate::transport::counters::{CloseReason, Counters};
use crate::transport::wire::{self, WireError};
use crate::RequestNr;
use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Responses up to this size are written with one `write` under the plain write
/// timeout; larger ones in chunks, each under what is left of the whole deadline.
const SMALL_WRITE: usize = 256 * 1024;

/// A frame is counted in the memory budget this many bytes at a time, each step just
/// before it is read.
const FRAME_STEP: u64 = 64 * 1024;

/// How long a call that closed a stalled connection to make room waits for that
/// connection's thread to give its frame's bytes back.
const CUT_RELEASE: Duration = Duration::from_millis(100);

/// How often a call waiting for room looks again.
const WAIT_STEP: Duration = Duration::from_millis(1);

/// A call whose bytes have arrived, with the budget counted for it.
struct Call {
    m: RequestNr,
    frame: Vec<u8>,
    /// The frame's bytes and room for a new request's response.
    reservation: Reservation,
    /// The session's response before `m`, whose share `m`'s response takes over.
    previous: Option<Arc<Response>>,
}

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
        loop {
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
            match stream.read(buf) {
                // A signal delivered to this thread, not the client: the kernel does
                // not restart a read with a timeout (SO_RCVTIMEO), so read again
                // (within the same deadline) rather than close a healthy connection.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                read => return read,
            }
        }
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
        self.live.mark_handshaken();
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
            let max = self.config().max_frame;
            let length = wire::read_frame_length(&mut self.reader, max)
                .map_err(|e| Close::read(e, CloseReason::MessageTimeout))?;
            // Its header whole, the connection is making progress: connections that
            // have waited longer on their clients go first to make room. A frame that
            // came whole with its header waits on nobody: such a connection is in a
            // call from now (a thread preempted before it reads the frame must not make
            // it look idle).
            if self.frame_arrived(length) {
                if !self.live.mark_busy() {
                    return Ok(End::Evicted);
                }
            } else {
                self.live.mark_idle(self.shared.now_ms());
            }
            let (response, previous) = self.response_room(&session, m, length)?;
            let (frame, reservation) = self.read_frame(length, response)?;
            // Until its call has arrived whole, a connection may be closed to make room.
            if !self.live.mark_busy() {
                return Ok(End::Evicted);
            }
            let call = Call {
                m,
                frame,
                reservation,
                previous,
            };
            self.answer(&session, call)?;
        }
    }

    fn handshake(&mut self) -> Result<Option<Attached<Response>>, Close> {
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

    /// The bytes a call needs for its response: room for a new request's response (a
    /// resend or a stale one produces nothing), and the session's response before it.
    /// The session's current response is freed when a new request starts, so its share
    /// is handed over then rather than counted twice: it is returned, to be handed over
    /// by [`answer`](Self::answer).
    fn response_room(
        &self,
        session: &Attached<Response>,
        m: RequestNr,
        length: u64,
    ) -> Result<(usize, Option<Arc<Response>>), Close> {
        let status = session.state().status();
        let is_new = m.get() > status.request;
        let previous = RequestNr::new(status.request)
            .ok()
            .filter(|_| is_new)
            .and_then(|current| session.state().try_get(current).ok());
        let response = match (is_new, &previous) {
            (false, _) => 0,
            (true, None) => self.config().response_reserve,
            (true, Some(p)) => self.config().response_reserve.saturating_sub(p.charged()),
        };
        let limit = self.shared.budget.limit() as u64;
        if length.saturating_add(response as u64) > limit {
            let detail = format!(
                "a {length}-byte frame and {response} for its response, the budget is {limit}"
            );
            return Err(Close::new(CloseReason::OverBudget, detail));
        }
        Ok((response, previous))
    }

    /// Whether the `length` bytes of the frame whose header was just read are in the
    /// read buffer already.
    fn frame_arrived(&self, length: u64) -> bool {
        self.reader.buffer().len() as u64 >= length
    }

    /// Reads the `length` bytes of a call's frame, counting each step of
    /// [`FRAME_STEP`] bytes in the budget just before it is read, and `response` bytes
    /// of room for its response with the last: a connection holds at most one step
    /// more than its client has sent, whatever length it announced, and a frame that
    /// has arrived whole has its response's room.
    fn read_frame(
        &mut self,
        length: u64,
        response: usize,
    ) -> Result<(Vec<u8>, Reservation), Close> {
        let mut deadline = self.config().message_deadline(length);
        let mut frame = Vec::new();
        let mut partial = PartialFrame::new(self.live, &self.shared.budget);
        loop {
            let read = frame.len() as u64;
            let step = (length - read).min(FRAME_STEP) as usize;
            let last = read + step as u64 == length;
            let bytes = step + if last { response } else { 0 };
            // Time spent waiting on the server for room is not the client's.
            deadline += self.charge(partial.charge(), bytes)?;
            self.live.hold_partial_frame(partial.charge().bytes());
            if self.reader.buffer().len() < step {
                // Waiting on its client from here: its progress is dated by this step.
                self.live.mark_idle(self.shared.now_ms());
            }
            // Grown geometrically up to the frame's length, never beyond: only the
            // pages the bytes that arrive are written to are ever resident.
            let wanted = (frame.capacity() * 2).clamp(frame.len() + step, length as usize);
            frame.reserve_exact(wanted - frame.len());
            self.reader.get_mut().wait = Wait::Until(deadline);
            wire::read_frame_part(&mut self.reader, &mut frame, step as u64)
                .map_err(|e| Close::read(e, CloseReason::MessageTimeout))?;
            if last {
                return Ok((frame, partial.finish()));
            }
        }
    }

    /// Adds `bytes` to `charge` once they fit, first fit in arrival order among the
    /// calls that wait (a call that fits goes ahead of one that does not; calls that
    /// both fit are served in turn). The call that has waited longest makes room:
    /// first it closes a connection stalled in the middle of a frame (no progress for
    /// a step's time at the minimum transfer rate; the longest stalled first, whose
    /// bytes are handed to it), then it evicts sessions without a connection that hold
    /// a response, longest detached first ([`SessionTable::admit`]). When neither is
    /// left the call waits, up to the resend timeout, and then its connection is
    /// closed: nothing of the call has been run, and its client sends it again.
    /// Returns how long it waited.
    ///
    /// [`SessionTable::admit`]: crate::table::SessionTable::admit
    fn charge(&self, charge: &mut Reservation, bytes: usize) -> Result<Duration, Close> {
        if charge.try_grow_fair(bytes, None) {
            return Ok(Duration::ZERO);
        }
        let shared = self.shared;
        let asked = Instant::now();
        let deadline = asked + self.config().resend_timeout;
        let target = charge.bytes() + bytes;
        let turn = shared.budget.wait_for(bytes);
        // A call that arrived whole waits on the server: the listener closes it to
        // make room for a connection only as a last resort. One still arriving is
        // dated by its last progress, and may be closed as stalled.
        let whole = self.live.is_busy() && self.live.mark_queued(shared.now_ms());
        let granted = loop {
            if self.live.is_evicted() || self.live.peer_is_gone() {
                break false;
            }
            if charge.try_grow_fair(target - charge.bytes(), Some(&turn))
                || (turn.is_first() && self.make_room(charge, target))
            {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            thread::sleep(WAIT_STEP);
        };
        drop(turn);
        if whole {
            self.live.mark_unqueued();
        }
        if granted {
            return Ok(asked.elapsed());
        }
        let (held, limit) = (shared.budget.used(), shared.budget.limit());
        let detail = format!("{bytes} bytes with {held} of {limit} held");
        Err(Close::new(CloseReason::OverBudget, detail))
    }

    /// Makes room for `charge` to hold `target` bytes, for the call that has waited
    /// longest (see [`charge`](Self::charge)); true once it holds them.
    fn make_room(&self, charge: &mut Reservation, target: usize) -> bool {
        let shared = self.shared;
        let stalled_ms = FRAME_STEP * 1000 / self.config().min_transfer_rate.max(1);
        if let Some(cut) = shared.cut_stalled_frame(self.live, stalled_ms) {
            if let Some(freed) = cut.take_handed_over(CUT_RELEASE) {
                charge.absorb(freed);
            }
            if charge.bytes() >= target || charge.try_grow(target - charge.bytes()) {
                charge.resize(target);
                return true;
            }
            return false;
        }
        let holds = |response: &Response| response.charged() > 0;
        shared.table.admit(charge, target - charge.bytes(), holds)
    }

    fn answer(&self, session: &Attached<Response>, call: Call) -> Result<(), Close> {
        let counters = &self.shared.counters;
        let resend_timeout = self.config().resend_timeout;
        let Call {
            m,
            frame,
            mut reservation,
            previous,
        } = call;
        let (path, reply) = answer::answer_blocking(session.state(), m, resend_timeout, |guard| {
            // The guard has freed the previous response from the session (unless a
            // resend was reading it as the request started): if nothing else holds it
            // (a connection still writing it), its share is ours now. If something
            // does, the new response is counted above the limit until that lets go.
            if let Some(Ok(previous)) = previous.map(Arc::try_unwrap) {
                reservation.absorb(previous.into_charge());
            }
            Counters::bump(&counters.requests_processed);
            if guard.skipped() > 0 {
                Counters::bump(&counters.requests_with_gap);
            }
            self.in_handler.set(true);
            let response = (self.shared.handler)(&frame);
            self.in_handler.set(false);
            drop(frame);
            let response = Response::new(response, reservation);
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
                self.send(response.bytes())
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

/// The budget's bytes held for a frame still arriving, published on its connection's
/// [`Live`] so that a call short of room can find a stalled frame to close; the
/// publication is cleared only after the bytes are given back.
struct PartialFrame<'a> {
    live: &'a Live,
    charge: Option<Reservation>,
}

impl<'a> PartialFrame<'a> {
    fn new(live: &'a Live, budget: &Arc<Budget>) -> Self {
        let charge = budget.try_reserve(0).expect("nothing fits any budget");
        PartialFrame {
            live,
            charge: Some(charge),
        }
    }

    fn charge(&mut self) -> &mut Reservation {
        self.charge.as_mut().expect("held until finished")
    }

    /// The frame has arrived whole: its bytes are the call's from now.
    fn finish(mut self) -> Reservation {
        self.charge.take().expect("finished once")
    }
}

impl Drop for PartialFrame<'_> {
    fn drop(&mut self) {
        if let Some(charge) = self.charge.take() {
            // Kept for the call that closed this connection to make room, if one did;
            // given back otherwise.
            self.live.hand_over(charge);
        }
        self.live.hold_partial_frame(0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::unix::thread::JoinHandleExt;
    use std::sync::mpsc;
    use std::thread;

    extern "C" fn ignore(_: libc::c_int) {}

    /// A signal that interrupts a connection thread's read (a handler installed without
    /// `SA_RESTART`, as a debugger's or a signal crate's may be) is not the client
    /// closing: the read goes on and gets the client's bytes.
    #[test]
    #[cfg_attr(miri, ignore = "signals and sockets are outside Miri")]
    fn a_read_interrupted_by_a_signal_goes_on() {
        // SAFETY: a handler that does nothing, for a signal nothing else in the test
        // process uses; no SA_RESTART, so the blocked read returns EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as usize;
            assert_eq!(
                libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
                0
            );
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (blocked, is_blocked) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut timed = Timed {
                stream: &server,
                wait: Wait::For(Duration::from_secs(10)),
                timeout_set: None,
            };
            let mut buf = [0; 4];
            blocked.send(()).unwrap();
            // One read, as `BufReader::fill_buf` makes (`read_exact` would retry itself).
            timed.read(&mut buf).map(|n| buf[..n].to_vec())
        });
        is_blocked.recv().unwrap();
        thread::sleep(Duration::from_millis(50));
        // SAFETY: the reader thread is alive (it waits for our bytes) and its handle
        // is joined below.
        let sent = unsafe { libc::pthread_kill(reader.as_pthread_t(), libc::SIGUSR2) };
        assert_eq!(sent, 0);
        thread::sleep(Duration::from_millis(50));
        client.write_all(b"ping").unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), b"ping");
    }
}
