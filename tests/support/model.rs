//! The reference model of one session: the transition table, abandons included, and
//! every response ever completed. The differential tests, the `ops` fuzz target and its
//! regression replays all check the lock-free `SessionState` against this one model
//! (the fuzz crate includes this file with `#[path]`), so it uses only the public API.
//!
//! Responses are `u64`. Request numbers are [`Target`]s, resolved against the
//! session's newest number when an operation runs, so that most of them land near it.

#![allow(dead_code)]

use exactly_once::baseline::SeedState;
use exactly_once::{Phase, RequestNr, Slot, Status, Triage, TryGetError, WaitTimeoutError};
use std::collections::{HashMap, HashSet};

/// The largest valid request number.
pub const MAX: u64 = RequestNr::MAX;

/// A request number, resolved against the session's newest number `n` when used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `n + offset` (0 when below it).
    Near(i8),
    /// `n - 1 - back` (0 when below it): an older number.
    Back(u16),
    /// `n + 2 + gap`: a skip.
    Gap(u16),
    /// 0: never a request.
    Zero,
    /// `MAX`.
    Max,
    /// `MAX - below`.
    BelowMax(u8),
    /// `MAX + 1 + above`: too large.
    AboveMax(u8),
    /// `u64::MAX`.
    U64Max,
    /// Any number, as given.
    Raw(u64),
}

impl Target {
    /// The number this target names when the session's newest number is `n`; it may be
    /// invalid (0 or above `MAX`).
    pub fn resolve(self, n: u64) -> u64 {
        debug_assert!(n <= MAX);
        match self {
            Target::Near(offset) => n.saturating_add_signed(i64::from(offset)),
            Target::Back(back) => n.saturating_sub(1 + u64::from(back)),
            Target::Gap(gap) => n + 2 + u64::from(gap),
            Target::Zero => 0,
            Target::Max => MAX,
            Target::BelowMax(below) => MAX - u64::from(below),
            Target::AboveMax(above) => MAX + 1 + u64::from(above),
            Target::U64Max => u64::MAX,
            Target::Raw(m) => m,
        }
    }

    /// [`resolve`](Self::resolve), clamped to a valid request number.
    pub fn resolve_valid(self, n: u64) -> RequestNr {
        let m = self.resolve(n).clamp(1, MAX);
        RequestNr::new(m).expect("clamped to 1..=MAX")
    }
}

/// What a triage answered, or should answer: [`Triage`] without the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decided {
    /// `Process`, with the guard's `previous()`.
    Process {
        /// The request before this one.
        previous: u64,
    },
    /// `Resend`.
    Resend,
    /// `Stale`.
    Stale,
    /// `Busy`, naming the request being processed.
    Busy {
        /// The request being processed.
        current: u64,
    },
}

impl Decided {
    /// What `triage` answered.
    pub fn of<T, S: Slot<T>>(triage: &Triage<'_, T, S>) -> Decided {
        match triage {
            Triage::Process(guard) => Decided::Process {
                previous: guard.previous(),
            },
            Triage::Resend => Decided::Resend,
            Triage::Stale => Decided::Stale,
            Triage::Busy { current } => Decided::Busy { current: *current },
        }
    }

    /// The seed's `(should_process, should_send)` for the same decision.
    pub fn as_seed(self) -> (bool, bool) {
        match self {
            Decided::Process { .. } => (true, true),
            Decided::Resend => (false, true),
            Decided::Stale | Decided::Busy { .. } => (false, false),
        }
    }
}

/// The outcome of the newest request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Request 0 of a new session: done, with nothing to send.
    Initial,
    /// A processor owns it.
    Processing,
    /// Completed with this response.
    Response(u64),
    /// Its processor dropped out.
    Abandoned,
}

/// One session: the newest request `n`, its outcome, and the history.
#[derive(Debug)]
pub struct Model {
    /// The newest request accepted (0 before the first).
    pub n: u64,
    /// Its outcome.
    pub outcome: Outcome,
    processed: HashSet<u64>,
    completed: HashMap<u64, u64>,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// A new session: `Ready(0)`.
    pub fn new() -> Self {
        Model {
            n: 0,
            outcome: Outcome::Initial,
            processed: HashSet::new(),
            completed: HashMap::new(),
        }
    }

    /// What `triage(m)` must answer.
    pub fn triage(&self, m: u64) -> Decided {
        if m < self.n {
            Decided::Stale
        } else if m == self.n {
            Decided::Resend
        } else if self.outcome == Outcome::Processing {
            Decided::Busy { current: self.n }
        } else {
            Decided::Process { previous: self.n }
        }
    }

    /// What `try_get(m)` must return.
    pub fn try_get(&self, m: u64) -> Result<u64, TryGetError> {
        if m < self.n {
            return Err(TryGetError::Gone);
        }
        if m > self.n {
            return Err(TryGetError::Pending);
        }
        match self.outcome {
            Outcome::Processing => Err(TryGetError::Pending),
            Outcome::Response(v) => Ok(v),
            Outcome::Abandoned => Err(TryGetError::Abandoned),
            Outcome::Initial => unreachable!("request 0 is never asked for"),
        }
    }

    /// What a wait for `m` whose deadline has passed must return.
    pub fn wait_expired(&self, m: u64) -> Result<u64, WaitTimeoutError> {
        self.try_get(m).map_err(|e| match e {
            TryGetError::Pending => WaitTimeoutError::TimedOut,
            TryGetError::Abandoned => WaitTimeoutError::Abandoned,
            TryGetError::Gone => WaitTimeoutError::Gone,
        })
    }

    /// What `status()` must return.
    pub fn status(&self) -> Status {
        let phase = match self.outcome {
            Outcome::Processing => Phase::Processing,
            Outcome::Abandoned => Phase::Abandoned,
            Outcome::Initial | Outcome::Response(_) => Phase::Ready,
        };
        Status {
            request: self.n,
            phase,
        }
    }

    /// Request `m` starts processing. False if it was processed before (a violation the
    /// caller reports).
    pub fn start(&mut self, m: u64) -> bool {
        self.n = m;
        self.outcome = Outcome::Processing;
        self.processed.insert(m)
    }

    /// The request in processing is completed with `v`. False if it was completed
    /// before (a violation the caller reports).
    pub fn complete(&mut self, v: u64) -> bool {
        self.outcome = Outcome::Response(v);
        self.completed.insert(self.n, v).is_none()
    }

    /// The request in processing is abandoned.
    pub fn abandon(&mut self) {
        self.outcome = Outcome::Abandoned;
    }

    /// The response completed for `m`, if any ever was.
    pub fn completed(&self, m: u64) -> Option<u64> {
        self.completed.get(&m).copied()
    }
}

/// How the seed would show a session in this status: its `(cur_request, answered)`.
pub fn seed_view(status: Status) -> SeedState {
    SeedState {
        cur_request: status.request,
        answered: status.phase != Phase::Processing,
    }
}
