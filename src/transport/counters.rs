//! Counters a server operator can read while the server runs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the server closed a connection (each is logged and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent no complete session id within the handshake deadline.
    HandshakeTimeout,
    /// The connection sent no call for the idle time (its client resumes on its next
    /// call, at the cost of one reconnect).
    IdleTimeout,
    /// A call's header or frame did not arrive whole within its deadline (a fixed time
    /// plus the frame's length at the minimum transfer rate).
    MessageTimeout,
    /// The client did not take its response within the write deadline.
    WriteTimeout,
    /// The call found no room in the memory budget, even after closing stalled frames
    /// and evicting sessions without a connection (the client retries later; nothing
    /// was processed).
    OverBudget,
    /// The client asked to resume a session the table does not hold.
    UnknownSession,
    /// A new session would exceed the live-session limit.
    SessionLimit,
    /// The request number is above [`RequestNr::MAX`](crate::RequestNr::MAX).
    BadRequestNr,
    /// The frame length is negative.
    NegativeLength,
    /// The frame length is above the configured maximum.
    FrameTooLong,
    /// The client closed the connection in the middle of a number or frame.
    Truncated,
    /// The client sent a newer request while the current one is still processed.
    Busy,
    /// A re-sent request's processor dropped out: it has no response to send.
    Abandoned,
    /// A re-sent request was still being processed when the resend deadline passed.
    ResendTimedOut,
    /// The handler panicked (its request is abandoned).
    HandlerPanicked,
    /// Reading or writing failed (the connection broke or timed out).
    Io,
}

impl CloseReason {
    /// Every reason, in counter order.
    pub const ALL: [CloseReason; 16] = [
        CloseReason::HandshakeTimeout,
        CloseReason::IdleTimeout,
        CloseReason::MessageTimeout,
        CloseReason::WriteTimeout,
        CloseReason::OverBudget,
        CloseReason::UnknownSession,
        CloseReason::SessionLimit,
        CloseReason::BadRequestNr,
        CloseReason::NegativeLength,
        CloseReason::FrameTooLong,
        CloseReason::Truncated,
        CloseReason::Busy,
        CloseReason::Abandoned,
        CloseReason::ResendTimedOut,
        CloseReason::HandlerPanicked,
        CloseReason::Io,
    ];

    /// True for reasons that are the server's normal housekeeping rather than a fault
    /// of the client (logged at debug level, not as warnings).
    pub fn is_housekeeping(self) -> bool {
        matches!(self, CloseReason::IdleTimeout)
    }

    pub(crate) fn index(self) -> usize {
        CloseReason::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is in ALL")
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::HandshakeTimeout => "no session id before the handshake deadline",
            CloseReason::IdleTimeout => "no call for the idle time",
            CloseReason::MessageTimeout => "message not whole before its deadline",
            CloseReason::WriteTimeout => "response not taken before the write deadline",
            CloseReason::OverBudget => "no room in the memory budget for the call",
            CloseReason::UnknownSession => "resume of an unknown session",
            CloseReason::SessionLimit => "live-session limit reached",
            CloseReason::BadRequestNr => "request number out of range",
            CloseReason::NegativeLength => "negative frame length",
            CloseReason::FrameTooLong => "frame length above the maximum",
            CloseReason::Truncated => "connection closed mid-message",
            CloseReason::Busy => "new request while the current one is processed",
            CloseReason::Abandoned => "re-sent request was abandoned",
            CloseReason::ResendTimedOut => "re-sent request still pending at the deadline",
            CloseReason::HandlerPanicked => "handler panicked",
            CloseReason::Io => "i/o error",
        })
    }
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// The live counters (all relaxed: each is a tally, none orders anything).
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
            closed: [AtomicU64; CloseReason::ALL.len()],
        }

        /// A copy of the counters at one moment (each read on its own).
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct CountersSnapshot {
            $($(#[$doc])* pub $name: u64,)*
            closed: [u64; CloseReason::ALL.len()],
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> CountersSnapshot {
                CountersSnapshot {
                    // ORDERING: tallies only; nothing is published through them.
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    closed: std::array::from_fn(|i| self.closed[i].load(Ordering::Relaxed)),
                }
            }
        }
    };
}

counters! {
    /// Sessions created (handshake with id 0).
    sessions_created,
    /// Sessions resumed (handshake with a known id).
    sessions_resumed,
    /// Sessions ended by their client (request number 0).
    sessions_ended,
    /// Sessions removed after being idle with no connection.
    sessions_expired,
    /// Sessions without a connection removed to make room for a new one.
    sessions_evicted,
    /// Requests run by the handler (triage `Process`).
    requests_processed,
    /// Of those, requests that skipped numbers (a gap, processed as the seed does).
    requests_with_gap,
    /// Re-requests answered from the held response (triage `Resend`).
    requests_resent,
    /// Old requests neither processed nor answered (triage `Stale`).
    requests_stale,
    /// Protocol violations: a newer request while one is processed (triage `Busy`).
    requests_busy,
    /// Requests whose handler panicked; they are never processed again.
    requests_abandoned,
    /// Connections accepted.
    connections_accepted,
    /// Connections refused at once (every connection busy in a call, shutting down, or
    /// no thread could be started).
    connections_refused,
    /// Idle connections closed to admit a new one at the connection limit.
    connections_evicted,
    /// Connections stalled in the middle of a frame closed to make room in the memory
    /// budget for a call that had none.
    frames_cut,
    /// Failed `accept` calls (out of file descriptors and the like).
    accept_errors,
    /// Connections closed by the server for one of the [`CloseReason`]s, other than
    /// housekeeping ([`CloseReason::is_housekeeping`]).
    connections_closed_with_error,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        // ORDERING: a tally; see `snapshot`.
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_close(&self, reason: CloseReason) {
        Counters::bump(&self.closed[reason.index()]);
        if !reason.is_housekeeping() {
            Counters::bump(&self.connections_closed_with_error);
        }
    }
}

impl CountersSnapshot {
    /// How many connections were closed for `reason`.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()]
    }
}
