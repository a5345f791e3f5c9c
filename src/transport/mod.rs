//! A MUSCLE3-compatible MCP-over-TCP transport built on [`SessionState`](crate::SessionState).
//!
//! Wire format (every integer 64-bit little-endian), as `libmuscle.mcp.tcp_*` speaks it:
//! the client sends a session id (0: new) and the server answers with the id; then, per
//! call, the client sends the request number (0 ends the session, nothing follows) and
//! a frame (length, bytes), and the server answers with a frame when the triage says
//! to send.
//!
//! - [`Server`]: one thread per connection; a session table with unguessable ids,
//!   limits on sessions and connections, idle expiry; every bad input closes only its
//!   connection, with a logged ([`tracing`]) and counted [`CloseReason`]; a panicking
//!   handler abandons its request; graceful and forced shutdown.
//! - [`Client`]: reconnects and resumes its session with backoff until a deadline,
//!   re-sending the same request; fault-injection hooks before every send and receive.

mod client;
mod counters;
mod server;
mod table;
pub mod wire;

pub use client::{Client, ClientConfig, ClientError, Direction, FaultHook};
pub use counters::{CloseReason, CountersSnapshot};
pub use server::{Handler, Server, ServerConfig};
