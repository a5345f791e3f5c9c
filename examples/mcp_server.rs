//! A MUSCLE3-compatible MCP-over-TCP server.
//!
//! ```sh
//! cargo run --example mcp_server -- --listen 127.0.0.1:0 --handler counter
//! cargo run --example mcp_server -- --help    # every limit and deadline, with defaults
//! ```
//!
//! Prints its location, `tcp:HOST:PORT`, as the first line on stdout, then serves until
//! Ctrl-C (or SIGTERM), and prints its counters on stderr when it stops.
//! `--handler echo` answers with the request; `--handler counter` answers with how many
//! requests it has executed so far (8 bytes, little-endian).

mod support;

use clap::{Parser, ValueEnum};
use exactly_once::transport::{Handler, Server, ServerConfig};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::{interrupted, on_interrupt};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum HandlerKind {
    /// Answer with the request.
    Echo,
    /// Answer with how many requests have been executed (8 bytes, little-endian).
    Counter,
}

/// Serves MUSCLE3's MCP over TCP, running each request exactly once per session.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// What the server answers.
    #[arg(long, value_enum, default_value = "counter")]
    handler: HandlerKind,
    /// Log level: off, error, warn, info or debug.
    #[arg(long, default_value = "warn")]
    log: String,
    /// Seconds a graceful shutdown lets calls in progress finish.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    #[command(flatten)]
    limits: Limits,
}

/// Every `ServerConfig` setting; the defaults are `ServerConfig::default()`'s.
#[derive(Debug, clap::Args)]
struct Limits {
    /// The largest request frame accepted, in bytes.
    #[arg(long, default_value_t = ServerConfig::default().max_frame)]
    max_frame: u64,
    /// The most live sessions (when full, the longest-detached session is evicted).
    #[arg(long, default_value_t = ServerConfig::default().max_sessions)]
    max_sessions: usize,
    /// The most live connections (at the limit, the longest-idle one makes room).
    #[arg(long, default_value_t = ServerConfig::default().max_connections)]
    max_connections: usize,
    /// Seconds a session that completed a request may stay without a connection.
    #[arg(long, default_value_t = ServerConfig::default().idle_expiry.as_secs_f64())]
    idle_expiry: f64,
    /// Seconds a session that never completed a request may stay without a connection.
    #[arg(long, default_value_t = ServerConfig::default().unused_expiry.as_secs_f64())]
    unused_expiry: f64,
    /// Seconds a new connection has to send its whole session id.
    #[arg(long, default_value_t = ServerConfig::default().handshake_timeout.as_secs_f64())]
    handshake_timeout: f64,
    /// Seconds a connection may wait between calls before it is closed.
    #[arg(long, default_value_t = ServerConfig::default().idle_timeout.as_secs_f64())]
    idle_timeout: f64,
    /// Seconds a started message (or response) has to arrive whole, plus its length at
    /// the minimum transfer rate.
    #[arg(long, default_value_t = ServerConfig::default().message_timeout.as_secs_f64())]
    message_timeout: f64,
    /// The slowest transfer, in bytes per second, large frames are given time for.
    #[arg(long, default_value_t = ServerConfig::default().min_transfer_rate)]
    min_transfer_rate: u64,
    /// Seconds a re-request waits for a request still being processed.
    #[arg(long, default_value_t = ServerConfig::default().resend_timeout.as_secs_f64())]
    resend_timeout: f64,
    /// Bytes the server may hold for frames being read and responses being produced,
    /// written or retained.
    #[arg(long, default_value_t = ServerConfig::default().memory_budget)]
    memory_budget: usize,
    /// Bytes counted for a new request's response before its handler runs, beyond its
    /// frame's (the largest response the handler returns for a small request).
    #[arg(long, default_value_t = ServerConfig::default().response_reserve)]
    response_reserve: usize,
    /// The owner number written into every session id (for a router in front of
    /// several servers).
    #[arg(long, default_value_t = ServerConfig::default().owner)]
    owner: u8,
}

impl Limits {
    fn config(&self) -> Result<ServerConfig, String> {
        let seconds = |name: &str, s: f64| {
            Duration::try_from_secs_f64(s).map_err(|_| format!("--{name}: {s} is not a duration"))
        };
        Ok(ServerConfig {
            max_frame: self.max_frame,
            max_sessions: self.max_sessions,
            max_connections: self.max_connections,
            idle_expiry: seconds("idle-expiry", self.idle_expiry)?,
            unused_expiry: seconds("unused-expiry", self.unused_expiry)?,
            handshake_timeout: seconds("handshake-timeout", self.handshake_timeout)?,
            idle_timeout: seconds("idle-timeout", self.idle_timeout)?,
            message_timeout: seconds("message-timeout", self.message_timeout)?,
            min_transfer_rate: self.min_transfer_rate,
            resend_timeout: seconds("resend-timeout", self.resend_timeout)?,
            memory_budget: self.memory_budget,
            response_reserve: self.response_reserve,
            owner: self.owner,
        })
    }
}

fn handler(kind: HandlerKind) -> Box<Handler> {
    match kind {
        HandlerKind::Echo => Box::new(|request: &[u8]| request.to_vec()),
        HandlerKind::Counter => {
            let executions = AtomicU64::new(0);
            Box::new(move |_: &[u8]| {
                (executions.fetch_add(1, Ordering::SeqCst) + 1)
                    .to_le_bytes()
                    .to_vec()
            })
        }
    }
}

fn main() {
    let args = Args::parse();
    support::log_to_stderr(&args.log);
    let (config, grace) = match (
        args.limits.config(),
        Duration::try_from_secs_f64(args.grace),
    ) {
        (Ok(config), Ok(grace)) => (config, grace),
        (Err(message), _) => exit_with(2, &message),
        (_, Err(_)) => exit_with(2, "--grace is not a duration"),
    };
    on_interrupt();
    let server = Server::bind(&args.listen, config, handler(args.handler))
        .unwrap_or_else(|e| exit_with(1, &format!("cannot listen on {}: {e}", args.listen)));
    println!("{}", server.location());
    std::io::stdout().flush().expect("stdout");
    while !interrupted() {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{:#?}", server.counters());
    let stopped = server.stop(grace);
    eprintln!(
        "stopped ({} connections cut, {} threads still running)",
        stopped.cut, stopped.still_running
    );
}

fn exit_with(code: i32, message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(code)
}
