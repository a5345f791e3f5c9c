//! One small error type per operation.

use crate::state::MAX_REQUEST;
use std::fmt;

/// A number that is not a valid request number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidRequestNr {
    /// 0 is never a request; on the wire it ends the session.
    Zero,
    /// Above [`RequestNr::MAX`](crate::RequestNr::MAX); the number is given.
    TooLarge(u64),
}

impl fmt::Display for InvalidRequestNr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidRequestNr::Zero => f.write_str("request number 0 is not a request"),
            InvalidRequestNr::TooLarge(n) => {
                write!(f, "request number {n} is above the maximum {MAX_REQUEST}")
            }
        }
    }
}

impl std::error::Error for InvalidRequestNr {}

/// Why [`SessionState::try_get`](crate::SessionState::try_get) returned no response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryGetError {
    /// The request is being processed, or has not been triaged yet.
    Pending,
    /// Its processor dropped out (panicked or gave up); there will never be a response.
    Abandoned,
    /// The session has moved past the request: its response is no longer held.
    Gone,
}

/// Why [`SessionState::wait`](crate::SessionState::wait) returned no response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// Its processor dropped out (panicked or gave up); there will never be a response.
    Abandoned,
    /// The session has moved past the request: its response is no longer held.
    Gone,
}

/// Why a wait with a deadline returned no response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitTimeoutError {
    /// The deadline passed while the request was still pending.
    TimedOut,
    /// Its processor dropped out (panicked or gave up); there will never be a response.
    Abandoned,
    /// The session has moved past the request: its response is no longer held.
    Gone,
}

/// Why the seed-compatible [`set_response`](crate::SessionState::set_response) published
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetResponseError {
    /// No request is being processed: the newest one already has its outcome. (The seed
    /// would overwrite that response; here a response that was delivered stays as it was.)
    NotProcessing,
    /// The request being processed belongs to a [`ProcessGuard`](crate::ProcessGuard),
    /// or another `set_response` already claimed it: only that one may publish.
    Claimed,
}

const PENDING: &str = "the request is still pending";
const ABANDONED: &str = "the request was abandoned by its processor; it has no response";
const GONE: &str = "the session has moved past the request; its response is gone";

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryGetError::Pending => PENDING,
            TryGetError::Abandoned => ABANDONED,
            TryGetError::Gone => GONE,
        })
    }
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitError::Abandoned => ABANDONED,
            WaitError::Gone => GONE,
        })
    }
}

impl fmt::Display for WaitTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitTimeoutError::TimedOut => "the deadline passed while the request was pending",
            WaitTimeoutError::Abandoned => ABANDONED,
            WaitTimeoutError::Gone => GONE,
        })
    }
}

impl fmt::Display for SetResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetResponseError::NotProcessing => "no request is being processed",
            SetResponseError::Claimed => {
                "the request being processed is owned by a guard or already answered"
            }
        })
    }
}

impl std::error::Error for TryGetError {}
impl std::error::Error for WaitError {}
impl std::error::Error for WaitTimeoutError {}
impl std::error::Error for SetResponseError {}

impl From<WaitError> for WaitTimeoutError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Abandoned => WaitTimeoutError::Abandoned,
            WaitError::Gone => WaitTimeoutError::Gone,
        }
    }
}
