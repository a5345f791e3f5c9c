//! A client of a MUSCLE3-compatible MCP-over-TCP server (ours or MUSCLE3's own).
//!
//! ```sh
//! cargo run --example mcp_client -- --connect tcp:127.0.0.1:PORT --calls 100 \
//!     --fault-rate 0.05 --expect counter
//! ```
//!
//! Makes `--calls` calls in one session, breaking its own connection at random before
//! sends and receives with probability `--fault-rate`. With `--expect counter` (a server
//! whose handler answers with its execution count, 8 bytes LE, and no other client)
//! call `i` must be answered with `i`: any other answer is a duplicate or a loss, and
//! the exit status is 1. Prints one summary line on stdout.

mod support;

use clap::{Parser, ValueEnum};
use exactly_once::transport::{faults, Client, ClientConfig};

/// Makes numbered calls in one session of a MUSCLE3-compatible MCP-over-TCP server,
/// breaking its own connection at random, and checks every answer.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The server's location, tcp:HOST:PORT.
    #[arg(long)]
    connect: String,
    /// Calls to make.
    #[arg(long, default_value_t = 100)]
    calls: u64,
    /// Probability that the client shuts its connection down before a send or receive.
    #[arg(long, default_value_t = 0.0, value_parser = support::probability)]
    fault_rate: f64,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// What the server answers.
    #[arg(long, value_enum, default_value_t = Expect::Echo)]
    expect: Expect,
    /// Log level of the library: off, error, warn, info, debug.
    #[arg(long, default_value = "error")]
    log: String,
}

/// The server's handler, as the client checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Expect {
    /// The request itself.
    Echo,
    /// Its execution count so far, 8 bytes little-endian (the only client).
    Counter,
}

/// Whether `answer` is the right answer to call `i`, whose request was `request`.
fn is_right(expect: Expect, i: u64, request: &[u8], answer: &[u8]) -> bool {
    match expect {
        Expect::Echo => answer == request,
        Expect::Counter => <[u8; 8]>::try_from(answer).ok().map(u64::from_le_bytes) == Some(i),
    }
}

fn main() {
    let args = Args::parse();
    support::log_to_stderr(&args.log);
    let config = ClientConfig {
        fault_hook: Some(faults::random_shutdowns(args.fault_rate, args.seed)),
        ..ClientConfig::default()
    };
    let location = &args.connect;
    let mut client = Client::connect(location, config).unwrap_or_else(|e| {
        eprintln!("cannot connect to {location}: {e}");
        std::process::exit(1);
    });
    let mut wrong = 0u64;
    for i in 1..=args.calls {
        let request = format!("call {i}").into_bytes();
        let answer = client.call(&request).unwrap_or_else(|e| {
            eprintln!("call {i} failed: {e}");
            std::process::exit(1);
        });
        if !is_right(args.expect, i, &request, &answer) {
            eprintln!("call {i} answered with {answer:?}");
            wrong += 1;
        }
    }
    println!(
        "calls {} wrong {wrong} reconnects {} session {}",
        args.calls,
        client.reconnects(),
        client.session_id()
    );
    client.close();
    std::process::exit(i32::from(wrong > 0));
}
