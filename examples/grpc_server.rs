//! A gRPC service built with tonic (`notes.Notes`, see `examples/support/grpc_notes.rs`:
//! prost messages by hand, no protoc) behind the exactly-once layer, served over HTTP/2
//! (cleartext) on loopback. Its unary calls run once per session and number; `Watch`,
//! a streaming call, is let through.
//!
//! ```sh
//! cargo run --release --features tower --example grpc_server -- --port 50051
//! cargo run --release --features tower --example grpc_client -- --addr 127.0.0.1:50051
//! ```

#[path = "support/grpc_notes.rs"]
mod notes;
mod support;

use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::HttpLayer;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = support::parsed(&args, "--port", 50051);
    let layer = HttpLayer::new(1 << 20, TableConfig::default(), Budget::new(512 << 20));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    println!("{}", listener.local_addr().unwrap());
    notes::serve_notes_on(listener, Some(layer), notes::Runs::with_ledger()).await;
}
