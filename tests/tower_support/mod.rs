//! A real HTTP server behind the layer (axum serving, a handler that counts its runs)
//! and plain HTTP calls to it, for the tower tests.

#![allow(dead_code)]

pub mod proxy;

use bytes::Bytes;
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{HttpLayer, ERROR_HEADER, REQUEST_HEADER, SESSION_HEADER};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client as Pool};
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// The handler behind the layer. By path: `/count` answers `run N: <request body>`,
/// `/panic` panics, `/fail` returns an error, `/big` answers `size` (header) bytes;
/// each counts one run first, and waits `delay-ms` (header) before it.
#[derive(Clone, Debug, Default)]
pub struct Handler {
    pub runs: Arc<AtomicU64>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<B> Service<Request<B>> for Handler
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    type Response = Response<Full<Bytes>>;
    type Error = std::io::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let runs = Arc::clone(&self.runs);
        let number = |name: &str| {
            let value = request.headers().get(name);
            value.and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        };
        let delay = number("delay-ms").unwrap_or(0);
        let size = number("size").unwrap_or(0) as usize;
        let path = request.uri().path().to_owned();
        Box::pin(async move {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            match path.as_str() {
                "/panic" => panic!("the handler panics on purpose"),
                "/fail" => Err(std::io::Error::other("the handler fails on purpose")),
                "/big" => Ok(Response::new(Full::new(Bytes::from(vec![b'x'; size])))),
                _ => {
                    let text = format!("run {run}: {}", String::from_utf8_lossy(&body));
                    Ok(Response::new(Full::new(Bytes::from(text))))
                }
            }
        })
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub runs: Arc<AtomicU64>,
    pub layer: HttpLayer,
}

impl TestServer {
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

pub const BODY_LIMIT: usize = 64 << 10;

/// Serves [`Handler`] behind an [`HttpLayer`] on loopback.
pub async fn serve(config: TableConfig) -> TestServer {
    serve_layer(HttpLayer::new(BODY_LIMIT, config, Budget::new(64 << 20))).await
}

pub async fn serve_layer(layer: HttpLayer) -> TestServer {
    let handler = Handler::default();
    let runs = Arc::clone(&handler.runs);
    let app = axum::Router::new().fallback_service(layer.layer(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestServer { addr, runs, layer }
}

pub type HttpPool = Pool<HttpConnector, Full<Bytes>>;

pub fn pool() -> HttpPool {
    Pool::builder(TokioExecutor::new()).build_http()
}

/// One answer, read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub code: Option<String>,
    pub session: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

/// A request to `url` with the layer's headers (`session` `None` leaves them out) and
/// extra `headers`.
pub fn request(
    url: &str,
    session: Option<&str>,
    m: u64,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::post(url);
    if let Some(session) = session {
        builder = builder.header(SESSION_HEADER, session);
        if session != "new" {
            builder = builder.header(REQUEST_HEADER, m);
        }
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

pub async fn send(pool: &HttpPool, request: Request<Full<Bytes>>) -> Answer {
    read(pool.request(request).await.unwrap()).await
}

pub async fn read<B: http_body::Body>(response: Response<B>) -> Answer
where
    B::Error: std::fmt::Debug,
{
    let header = |name| {
        let value = response.headers().get(name);
        value.map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let code = header(ERROR_HEADER);
    let session = header(SESSION_HEADER);
    let retry_after = header(http::header::RETRY_AFTER.as_str());
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        code,
        session,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Creates a session with a plain request; returns its id.
pub async fn create_session(pool: &HttpPool, server: &TestServer) -> String {
    let answer = send(
        pool,
        request(&server.url("/count"), Some("new"), 0, &[], ""),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    answer.session.expect("a created session carries its id")
}

/// One row of `scripts/attack`'s HTTP table: the attack, what the bystander got, and
/// what else was measured.
pub fn report_attack(row: &str, bystander: &str, measured: &str) {
    println!("HTTP-ATTACK|{row}|{bystander}|{measured}");
}

/// The resident memory of this process, in bytes.
pub fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// A bystander's `calls` honest calls on `session` (numbers 1, 2, ...), `pause` apart,
/// `each` run after each; how many were answered 200.
pub async fn bystander_calls(
    pool: &HttpPool,
    server: &TestServer,
    session: &str,
    calls: u64,
    pause: Duration,
    mut each: impl FnMut(),
) -> usize {
    let mut answered = 0;
    for m in 1..=calls {
        let answer = send(
            pool,
            request(&server.url("/count"), Some(session), m, &[], "b"),
        )
        .await;
        answered += usize::from(answer.status == StatusCode::OK);
        each();
        tokio::time::sleep(pause).await;
    }
    answered
}
