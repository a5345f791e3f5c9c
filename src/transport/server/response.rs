//! A response as the server holds it: its bytes and their share of the memory budget.
//!
//! The share travels with the bytes, so it is given back only when the last holder
//! lets go: the session retaining the response for resends, or a connection still
//! writing it after the session has moved on, ended or been evicted. A response is
//! never copied to be written.

use crate::table::Reservation;
use std::fmt;

/// A handler's response and the budget it is counted in.
pub(super) struct Response {
    bytes: Vec<u8>,
    charge: Reservation,
}

impl Response {
    /// Counts `bytes` with `charge`, which was reserved before the handler ran: what it
    /// holds above the response's allocation is given back, and what the response holds
    /// beyond it is counted anyway (the response exists and must be kept).
    pub(super) fn new(bytes: Vec<u8>, mut charge: Reservation) -> Self {
        charge.resize(bytes.capacity());
        Response { bytes, charge }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes counted for it.
    pub(super) fn charged(&self) -> usize {
        self.charge.bytes()
    }

    /// Frees the response, handing its share of the budget to the caller.
    pub(super) fn into_charge(self) -> Reservation {
        self.charge
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}
