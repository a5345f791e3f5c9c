//! A MUSCLE3-compatible MCP-over-TCP server.
//!
//! ```sh
//! cargo run --example mcp_server -- --listen 127.0.0.1:0 --handler counter
//! ```
//!
//! Prints its location, `tcp:HOST:PORT`, as the first line on stdout, then serves until
//! Ctrl-C (or SIGTERM), and prints its counters on stderr when it stops.
//! `--handler echo` answers with the request; `--handler counter` answers with how many
//! requests it has executed so far (8 bytes, little-endian). `--log off|warn|info|debug`.

mod support;

use exactly_once::transport::{Handler, Server, ServerConfig};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::{flag, interrupted, on_interrupt};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    support::log_to_stderr(&flag(&args, "--log").unwrap_or_else(|| "warn".into()));
    let listen = flag(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let handler: Box<Handler> = match flag(&args, "--handler").as_deref().unwrap_or("counter") {
        "echo" => Box::new(|request: &[u8]| request.to_vec()),
        "counter" => {
            let executions = AtomicU64::new(0);
            Box::new(move |_: &[u8]| {
                (executions.fetch_add(1, Ordering::SeqCst) + 1)
                    .to_le_bytes()
                    .to_vec()
            })
        }
        other => {
            eprintln!("unknown handler {other:?}: echo or counter");
            std::process::exit(2);
        }
    };
    on_interrupt();
    let server = Server::bind(&listen, ServerConfig::default(), handler).unwrap_or_else(|e| {
        eprintln!("cannot listen on {listen}: {e}");
        std::process::exit(1);
    });
    println!("{}", server.location());
    std::io::stdout().flush().expect("stdout");
    while !interrupted() {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{:#?}", server.counters());
    let cut = server.shutdown(Duration::from_secs(5));
    eprintln!("stopped ({cut} connections cut)");
}
