//! Validated request numbers.

use crate::error::InvalidRequestNr;
use crate::state::MAX_REQUEST;
use std::fmt;
use std::num::NonZeroU64;

/// A request number the state machine accepts: `1..=RequestNr::MAX`.
///
/// 0 is never a request (on the wire it ends the session) and numbers above
/// [`RequestNr::MAX`] do not fit the packed state word; both are rejected here, once,
/// so that the typed API cannot be handed either.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestNr(NonZeroU64);

impl RequestNr {
    /// The largest valid request number, 2^48 - 1.
    pub const MAX: u64 = MAX_REQUEST;

    /// The first request of every session.
    pub const FIRST: RequestNr = RequestNr(NonZeroU64::MIN);

    /// Validates `n`.
    pub const fn new(n: u64) -> Result<RequestNr, InvalidRequestNr> {
        if n > Self::MAX {
            return Err(InvalidRequestNr::TooLarge(n));
        }
        match NonZeroU64::new(n) {
            Some(n) => Ok(RequestNr(n)),
            None => Err(InvalidRequestNr::Zero),
        }
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0.get()
    }

    /// The request that follows this one, if it is still valid.
    pub const fn next(self) -> Result<RequestNr, InvalidRequestNr> {
        RequestNr::new(self.get() + 1)
    }
}

impl TryFrom<u64> for RequestNr {
    type Error = InvalidRequestNr;

    fn try_from(n: u64) -> Result<Self, Self::Error> {
        RequestNr::new(n)
    }
}

impl From<RequestNr> for u64 {
    fn from(n: RequestNr) -> u64 {
        n.get()
    }
}

impl fmt::Debug for RequestNr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.get())
    }
}

impl fmt::Display for RequestNr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}
