//! A MUSCLE3-compatible MCP-over-TCP transport built on [`SessionState`](crate::SessionState).
//!
//! Wire format (every integer 64-bit little-endian), as `libmuscle.mcp.tcp_*` speaks it:
//! the client sends a session id (0: new) and the server answers with the id; then, per
//! call, the client sends the request number (0 ends the session, nothing follows) and
//! a frame (length, bytes), and the server answers with a frame when the triage says
//! to send.
//!
//! - [`Server`]: one thread per connection over a [`SessionTable`](crate::table::SessionTable),
//!   answering through the [`answer`](crate::answer) dispatch. No connection holds a
//!   slot without progress (handshake, idle and whole-message deadlines; at the
//!   connection limit the longest-idle connection of the busiest address makes room); one memory budget
//!   covers frames being read and responses retained; every bad input closes only its
//!   connection, with a counted [`CloseReason`] and a rate-limited [`tracing`] line
//!   naming the session by a fingerprint, never by its id; a panicking handler
//!   abandons its request; graceful and forced shutdown wait for every connection
//!   thread.
//! - [`Client`]: reconnects and resumes its session with backoff until a deadline,
//!   re-sending the same request; fault-injection hooks before every send and receive
//!   ([`faults`] has one that breaks connections at random).

mod client;
mod counters;
pub mod faults;
mod logs;
mod server;
pub mod wire;

pub use client::{Client, ClientConfig, ClientError, Direction, FaultHook};
pub use counters::{CloseReason, CountersSnapshot};
pub use server::{Handler, Server, ServerConfig, Stopped};
