//! A request whose body is cut in transit runs nothing and leaves nothing behind: the
//! whole resend runs, once. Cut on HTTP/1.1 (a raw socket closed mid-body) and on
//! HTTP/2 (a stream reset mid-body, its connection kept), after the headers, after part
//! of the body and just before its last byte. The handler is an axum route that takes
//! its body with the `Bytes` extractor, which rejects a body that fails (400): were the
//! request triaged on its headers, that rejection would be stored as the run.
#![cfg(feature = "tower")]

use axum::{body::Body, extract::Request, routing::post, Router, ServiceExt};
use bytes::Bytes;
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{HttpLayer, ERROR_HEADER, REQUEST_HEADER, SESSION_HEADER};
use http::StatusCode;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower_layer::Layer;

/// The body every request sends: 1000 bytes, each position its own digit.
const WHOLE: usize = 1000;

fn body() -> Bytes {
    (0..WHOLE).map(|i| b'0' + (i % 10) as u8).collect()
}

/// Where the body is cut: after its headers, after 100 bytes, before its last byte.
const CUTS: [usize; 3] = [0, 100, WHOLE - 1];

/// A server whose `/echo` route counts its runs and answers the body it took; the
/// whole router is behind the layer.
struct Echo {
    addr: SocketAddr,
    runs: Arc<AtomicU64>,
    layer: HttpLayer,
}

async fn echo_server() -> Echo {
    let runs = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&runs);
    let router = Router::new()
        .route(
            "/echo",
            post(move |body: Bytes| async move {
                counted.fetch_add(1, Ordering::SeqCst);
                body
            }),
        )
        .with_state(());
    let layer = HttpLayer::new(64 << 10, TableConfig::default(), Budget::new(64 << 20));
    let app = layer.clone().answering(Body::new).layer(router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let make = ServiceExt::<Request>::into_make_service(app);
    tokio::spawn(async move { axum::serve(listener, make).await });
    Echo { addr, runs, layer }
}

impl Echo {
    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

/// The head of `POST /echo` as number `m` of `session`, announcing the whole body.
fn h1_head(session: &str, m: u64) -> String {
    format!(
        "POST /echo HTTP/1.1\r\nhost: test\r\n{SESSION_HEADER}: {session}\r\n\
         {REQUEST_HEADER}: {m}\r\ncontent-length: {WHOLE}\r\n\r\n"
    )
}

/// Sends the head and the first `sent` bytes of the body, then closes the socket.
async fn h1_torn(addr: SocketAddr, session: &str, m: u64, sent: usize) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(h1_head(session, m).as_bytes())
        .await
        .unwrap();
    socket.write_all(&body()[..sent]).await.unwrap();
    socket.flush().await.unwrap();
    // Let the server take what was sent before the close: the body is then cut
    // mid-way, not before it began.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(socket);
}

/// A plain HTTP/1.1 client connection (no pool, no retries).
async fn h1_client(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Body> {
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (send, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection);
    send
}

/// Status, layer code and body of an answer.
async fn answer_of<B>(response: http::Response<B>) -> (StatusCode, Option<String>, Bytes)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    let code = response.headers().get(ERROR_HEADER);
    let code = code.map(|c| c.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, code, body)
}

fn echo_request(addr: SocketAddr, session: &str, m: u64, body: Bytes) -> http::Request<Body> {
    http::Request::post(format!("http://{addr}/echo"))
        .header(SESSION_HEADER, session)
        .header(REQUEST_HEADER, m)
        .body(Body::from(body))
        .unwrap()
}

/// A new session's id, asked for over HTTP/1.1.
async fn create(addr: SocketAddr) -> String {
    let mut client = h1_client(addr).await;
    let new = http::Request::post(format!("http://{addr}/echo"))
        .header(SESSION_HEADER, "new")
        .body(Body::empty())
        .unwrap();
    let created = client.send_request(new).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    created.headers()[SESSION_HEADER]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_body_cut_mid_way_runs_nothing_and_the_whole_resend_runs_once() {
    let server = echo_server().await;
    let session = create(server.addr).await;
    for (m, sent) in (1..).zip(CUTS) {
        h1_torn(server.addr, &session, m, sent).await;
        let mut client = h1_client(server.addr).await;
        for _copy in 0..2 {
            let resend = echo_request(server.addr, &session, m, body());
            client.ready().await.unwrap();
            let answer = answer_of(client.send_request(resend).await.unwrap()).await;
            assert_eq!(
                answer,
                (StatusCode::OK, None, body()),
                "cut after {sent} bytes"
            );
        }
        assert_eq!(server.runs(), m, "cut after {sent} bytes: run once");
    }
    let held = server.layer.sessions().budget().used();
    assert!(
        held < 64 << 10,
        "torn bodies hold nothing: {held} bytes held"
    );
}

/// An HTTP/2 connection by hand, to reset a stream mid-body and keep the connection.
async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client.ready().await.unwrap()
}

fn h2_head(addr: SocketAddr, session: &str, m: u64) -> http::Request<()> {
    http::Request::post(format!("http://{addr}/echo"))
        .header(SESSION_HEADER, session)
        .header(REQUEST_HEADER, m)
        .header("content-length", WHOLE)
        .body(())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_reset_mid_body_runs_nothing_and_the_whole_resend_runs_once() {
    let server = echo_server().await;
    let session = create(server.addr).await;
    let mut client = h2_client(server.addr).await;
    for (m, sent) in (1..).zip(CUTS) {
        let (_answer, mut stream) = client
            .send_request(h2_head(server.addr, &session, m), false)
            .unwrap();
        if sent > 0 {
            stream.send_data(body().slice(..sent), false).unwrap();
        }
        // The data goes out before the reset, which would drop it from the queue.
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.send_reset(h2::Reason::CANCEL);
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _copy in 0..2 {
            client = client.ready().await.unwrap();
            let head = h2_head(server.addr, &session, m);
            let (answer, mut stream) = client.send_request(head, false).unwrap();
            stream.send_data(body(), true).unwrap();
            let (head, mut received) = answer.await.unwrap().into_parts();
            let mut whole = Vec::new();
            while let Some(data) = received.data().await {
                let data = data.unwrap();
                let _ = received.flow_control().release_capacity(data.len());
                whole.extend_from_slice(&data);
            }
            let answer = answer_of(http::Response::from_parts(head, Body::from(whole))).await;
            assert_eq!(
                answer,
                (StatusCode::OK, None, body()),
                "reset after {sent} bytes"
            );
        }
        assert_eq!(server.runs(), m, "reset after {sent} bytes: run once");
    }
}
