//! The HTTP layer behind the documented serving code (`examples/support/http_serve.rs`:
//! a connection limit, a header read timeout, a cap on request-head bytes), attacked
//! beside a bystander making honest calls.
#![cfg(feature = "tower")]

#[path = "../examples/support/http_serve.rs"]
mod http_serve;
mod tower_support;

use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::HttpLayer;

use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tower_layer::Layer;
use tower_support::{
    bystander_calls, create_session, pool, report_attack, rss, Handler, TestServer, BODY_LIMIT,
};

async fn serve_hardened(limits: http_serve::Limits) -> TestServer {
    let layer = HttpLayer::new(BODY_LIMIT, TableConfig::default(), Budget::new(64 << 20));
    let handler = Handler::default();
    let runs = std::sync::Arc::clone(&handler.runs);
    let app = axum::Router::new().fallback_service(layer.layer(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(http_serve::serve(listener, app, limits));
    TestServer { addr, runs, layer }
}

/// 300 connections each send 200 KB of a request head that never ends (with plain
/// `axum::serve`, hyper buffers up to ~400 KiB of head per connection: 60 MB here).
/// The cap answers each `431` after 16 KiB; the bystander's calls all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_request_heads_neither_grow_memory_nor_lock_out_a_bystander() {
    let limits = http_serve::Limits {
        header_read_timeout: Duration::from_secs(2),
        ..http_serve::Limits::default()
    };
    let server = serve_hardened(limits).await;
    let pool = pool();
    let bystander = create_session(&pool, &server).await;
    let before = rss();
    let mut head = b"POST /count HTTP/1.1\r\nhost: x\r\nx-pad: ".to_vec();
    head.resize(200_000, b'a');
    let head: &'static [u8] = head.leak();
    let attackers: Vec<_> = (0..300)
        .map(|_| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                // The server may close (431) before all of it is taken.
                let _ = tokio::time::timeout(Duration::from_secs(3), stream.write_all(head)).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                drop(stream);
            })
        })
        .collect();
    let mut peak = 0;
    let pause = Duration::from_millis(50);
    let answered = bystander_calls(&pool, &server, &bystander, 20, pause, || {
        peak = peak.max(rss())
    })
    .await;
    for attacker in attackers {
        attacker.await.unwrap();
    }
    let grown = peak.saturating_sub(before);
    report_attack(
        "300 unfinished 200 KB request heads",
        &format!("{answered}/20 calls"),
        &format!("RSS +{:.1} MiB", grown as f64 / f64::from(1 << 20)),
    );
    assert_eq!(answered, 20, "the bystander's calls");
    assert!(
        grown < 24 << 20,
        "RSS grew by {grown} bytes under the attack"
    );
    assert_eq!(server.runs(), 20);
}

/// A connection that opens and sends nothing is closed after the header read timeout,
/// so idle connections cannot hold the connection limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_header_read_timeout() {
    let limits = http_serve::Limits {
        connections: 8,
        header_read_timeout: Duration::from_millis(300),
        ..http_serve::Limits::default()
    };
    let server = serve_hardened(limits).await;
    // Eight silent connections take every place...
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    // ... until their timeout ends them; then a new client gets a session.
    let pool = pool();
    let created = tokio::time::timeout(Duration::from_secs(5), create_session(&pool, &server));
    assert!(created.await.is_ok(), "a place came free");
    report_attack(
        "8 silent connections at a limit of 8",
        "a new client served",
        "closed at the 300 ms header timeout",
    );
    for mut stream in silent {
        let mut buf = [0; 1];
        let read = tokio::io::AsyncReadExt::read(&mut stream, &mut buf);
        let read = tokio::time::timeout(Duration::from_secs(2), read).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "closed by the server");
    }
}
