//! Serving a tower service (an axum `Router` behind `HttpLayer`) over HTTP/1.1 with the
//! limits a server facing the public needs, which `axum::serve` does not set:
//!
//! - a connection limit: past it, new connections wait in the listen backlog instead of
//!   each taking a task and buffers;
//! - a header read timeout: a client that does not send a whole request head in time
//!   is disconnected (a connection idle between requests too);
//! - a cap on the bytes of a request head: hyper answers `431` past it and closes,
//!   instead of buffering up to its default of about 400 KiB per connection.
//!
//! Bodies need no setting here: the layer reads each body up to its request limit,
//! charging the memory budget as bytes arrive.
//!
//! Shared by `examples/http_server.rs` and the HTTP attack tests (`tests/tower_hostile.rs`).

#![allow(dead_code)]

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The limits of [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once.
    pub connections: usize,
    /// Time a client has to send a request's head, once a request is awaited.
    pub header_read_timeout: Duration,
    /// Bytes a request's head may take (hyper's minimum is 8 KiB).
    pub header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 1024,
            header_read_timeout: Duration::from_secs(5),
            header_bytes: 16 << 10,
        }
    }
}

/// Serves `service` on `listener` within `limits`, until the task is dropped.
pub async fn serve<S, B>(listener: TcpListener, service: S, limits: Limits)
where
    S: tower_service::Service<
            http::Request<Incoming>,
            Response = http::Response<B>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connections = Arc::new(Semaphore::new(limits.connections));
    loop {
        // Taken before the accept: at the limit, newcomers wait in the backlog.
        let Ok(permit) = Arc::clone(&connections).acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.header_bytes.max(8 << 10));
            // A connection that fails or times out just ends.
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
            drop(permit);
        });
    }
}
