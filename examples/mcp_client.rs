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

use exactly_once::transport::{Client, ClientConfig, Direction};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use support::{flag, parsed};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    support::log_to_stderr(&flag(&args, "--log").unwrap_or_else(|| "error".into()));
    let location = flag(&args, "--connect").unwrap_or_else(|| {
        eprintln!("usage: mcp_client --connect tcp:HOST:PORT [--calls N] [--fault-rate P] [--expect counter]");
        std::process::exit(2);
    });
    let calls: u64 = parsed(&args, "--calls", 100);
    let rate: f64 = parsed(&args, "--fault-rate", 0.0);
    let seed: u64 = parsed(&args, "--seed", 1);
    let expect_counter = flag(&args, "--expect").as_deref() == Some("counter");

    let rng = Mutex::new(fastrand::Rng::with_seed(seed));
    let config = ClientConfig {
        fault_hook: Some(Arc::new(move |stream, _: Direction| {
            if rng.lock().unwrap().f64() < rate {
                let _ = stream.shutdown(Shutdown::Both);
            }
        })),
        ..ClientConfig::default()
    };
    let mut client = Client::connect(&location, config).unwrap_or_else(|e| {
        eprintln!("cannot connect to {location}: {e}");
        std::process::exit(1);
    });
    let mut wrong = 0u64;
    for i in 1..=calls {
        let request = format!("call {i}").into_bytes();
        let answer = client.call(&request).unwrap_or_else(|e| {
            eprintln!("call {i} failed: {e}");
            std::process::exit(1);
        });
        if expect_counter {
            let count = <[u8; 8]>::try_from(&answer[..])
                .ok()
                .map(u64::from_le_bytes);
            if count != Some(i) {
                eprintln!("call {i} answered with {count:?}");
                wrong += 1;
            }
        } else if answer != request {
            eprintln!("call {i} answered with {answer:?}");
            wrong += 1;
        }
    }
    println!(
        "calls {calls} wrong {wrong} reconnects {} session {}",
        client.reconnects(),
        client.session_id()
    );
    client.close();
    std::process::exit(i32::from(wrong > 0));
}
