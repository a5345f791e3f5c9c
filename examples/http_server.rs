//! An HTTP server with exactly-once numbered requests, served with the limits a public
//! server needs (a connection limit, a header read timeout, a cap on header bytes: see
//! `examples/support/http_serve.rs`), around an axum router that echoes in upper case.
//!
//! ```sh
//! cargo run --release --features tower --example http_server -- --port 8080
//! curl -si -X POST -H 'exactly-once-session: new' localhost:8080/echo
//! curl -si -X POST -H 'exactly-once-session: ID' -H 'exactly-once-request: 1' \
//!      -d hello localhost:8080/echo
//! ```

#[path = "support/http_serve.rs"]
mod http_serve;
mod support;

use axum::{body::Body, routing::post, Router};
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::HttpLayer;
use tower_layer::Layer;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = support::parsed(&args, "--port", 8080);
    let router = Router::new()
        .route(
            "/echo",
            post(|body: String| async move { body.to_uppercase() }),
        )
        .with_state(());
    let layer = HttpLayer::new(1 << 20, TableConfig::default(), Budget::new(512 << 20));
    let app = layer.answering(Body::new).layer(router);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    println!("http://{}", listener.local_addr().unwrap());
    http_serve::serve(listener, app, http_serve::Limits::default()).await;
}
