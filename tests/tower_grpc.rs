//! gRPC calls through the layer, over HTTP/2: a session is created with a valid empty
//! gRPC response, and every refusal of the layer is a trailers-only answer whose
//! `grpc-status` tells the client what to do (the table in `exactly_once::tower::grpc`),
//! one test per row; a gRPC call numbered 0 ends its session.
#![cfg(feature = "tower")]

use bytes::Bytes;
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{HttpLayer, WholeBody, ERROR_HEADER, REQUEST_HEADER, SESSION_HEADER};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tower_layer::Layer;
use tower_service::Service;

/// The most bytes of a request or response body the layer takes.
const LIMIT: usize = 1 << 10;

/// A gRPC service: `/fail` fails, `/big` answers a message over [`LIMIT`], `/slow`
/// answers after 300 ms, any other path echoes the request's message; answers end with
/// `grpc-status: 0`. Counts its runs.
#[derive(Clone, Default)]
struct Echo {
    runs: Arc<AtomicU64>,
}

impl Service<Request<WholeBody>> for Echo {
    type Response = Response<WholeBody>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<WholeBody>) -> Self::Future {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let path = request.uri().path().to_owned();
        let message = request.into_body().into_parts().0;
        Box::pin(async move {
            let message = match path.as_str() {
                "/fail" => return Err(std::io::Error::other("the handler failed")),
                "/big" => Bytes::from(vec![0; LIMIT + 1]),
                "/slow" => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    message
                }
                _ => message,
            };
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let mut response = Response::new(WholeBody::new(message, Some(trailers)));
            let grpc = HeaderValue::from_static("application/grpc");
            response.headers_mut().insert("content-type", grpc);
            Ok(response)
        })
    }
}

struct Server {
    addr: std::net::SocketAddr,
    send: SendRequest<Full<Bytes>>,
    runs: Arc<AtomicU64>,
}

/// [`Echo`] behind the layer, served over HTTP/2, and one connection to it.
async fn serve(config: TableConfig) -> Server {
    let echo = Echo::default();
    let runs = Arc::clone(&echo.runs);
    let service = HttpLayer::new(LIMIT, config, Budget::new(1 << 20)).layer(echo);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            tokio::spawn(builder.serve_connection(TokioIo::new(socket), service));
        }
    });
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let handshake = hyper::client::conn::http2::handshake(TokioExecutor::new(), io);
    let (send, connection) = handshake.await.unwrap();
    tokio::spawn(connection);
    Server { addr, send, runs }
}

/// A gRPC answer, read in full.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl Answer {
    /// The `grpc-status`: in the trailers, or in the headers of a trailers-only answer.
    fn grpc_status(&self) -> &str {
        let trailers = self.trailers.as_ref().and_then(|t| t.get("grpc-status"));
        let status = trailers.or_else(|| self.headers.get("grpc-status"));
        status
            .expect("every gRPC answer has a status")
            .to_str()
            .unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts the trailers-only form with `grpc_status` and the layer's `code`.
    fn assert_refused(&self, grpc_status: &str, code: &str) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/grpc"));
        assert_eq!(self.grpc_status(), grpc_status, "{self:?}");
        assert_eq!(self.header(ERROR_HEADER), Some(code));
        assert!(self.header("grpc-message").is_some_and(|m| !m.is_empty()));
        assert!(self.body.is_empty() && self.trailers.is_none(), "{self:?}");
    }
}

/// One message: not compressed, its length, its bytes.
fn framed(message: &[u8]) -> Bytes {
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame.into()
}

impl Server {
    /// Calls `path` with `metadata` and `body`, as a gRPC client would.
    async fn call(&self, path: &str, metadata: &[(&str, &str)], body: Bytes) -> Answer {
        let mut request = Request::post(format!("http://test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in metadata {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).unwrap();
        let response = self.send.clone().send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let all = body.collect().await.unwrap();
        let trailers = all.trailers().cloned();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: all.to_bytes(),
            trailers,
        }
    }

    async fn numbered(&self, path: &str, session: &str, m: u64) -> Answer {
        let m = m.to_string();
        let metadata = [(SESSION_HEADER, session), (REQUEST_HEADER, m.as_str())];
        self.call(path, &metadata, framed(b"hello")).await
    }

    async fn new_session(&self) -> String {
        let created = self
            .call("/", &[(SESSION_HEADER, "new")], Bytes::new())
            .await;
        created.header(SESSION_HEADER).unwrap().to_owned()
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_session_is_created_with_a_valid_empty_grpc_response() {
    let server = serve(TableConfig::default()).await;
    let created = server
        .call("/", &[(SESSION_HEADER, "new")], Bytes::new())
        .await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(created.header("content-type"), Some("application/grpc"));
    assert_eq!(created.body, framed(b""), "one message of zero bytes");
    assert_eq!(created.body.len(), 5);
    let trailers = created
        .trailers
        .as_ref()
        .expect("the status is in trailers");
    assert_eq!(trailers["grpc-status"], "0");
    let session = created
        .header(SESSION_HEADER)
        .expect("the id is in the headers");
    assert_eq!(session.len(), 16);
    assert_eq!(server.runs(), 0, "creating a session runs nothing");
    let first = server.numbered("/", session, 1).await;
    assert_eq!(first.grpc_status(), "0");
    assert_eq!(first.body, framed(b"hello"));
    let resent = server.numbered("/", session, 1).await;
    assert_eq!((resent.body, resent.trailers), (first.body, first.trailers));
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn an_unknown_session_is_not_found() {
    let server = serve(TableConfig::default()).await;
    let answer = server.numbered("/", "00000000000000ab", 1).await;
    answer.assert_refused("5", "unknown-session");
    assert_eq!(server.runs(), 0);
}

#[tokio::test]
async fn a_stale_number_already_exists() {
    let server = serve(TableConfig::default()).await;
    let session = server.new_session().await;
    assert_eq!(server.numbered("/", &session, 2).await.grpc_status(), "0");
    let stale = server.numbered("/", &session, 1).await;
    stale.assert_refused("6", "stale");
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn bad_and_duplicate_metadata_are_invalid_arguments() {
    let server = serve(TableConfig::default()).await;
    let bad = [(SESSION_HEADER, "not-an-id"), (REQUEST_HEADER, "1")];
    let answer = server.call("/", &bad, framed(b"x")).await;
    answer.assert_refused("3", "bad-key");
    let session = server.new_session().await;
    let twice = [
        (SESSION_HEADER, session.as_str()),
        (REQUEST_HEADER, "1"),
        (REQUEST_HEADER, "2"),
    ];
    let answer = server.call("/", &twice, framed(b"x")).await;
    answer.assert_refused("3", "duplicate-key");
    assert_eq!(server.runs(), 0);
}

#[tokio::test]
async fn limits_a_resend_cannot_pass_are_resource_exhausted() {
    let server = serve(TableConfig::default()).await;
    let session = server.new_session().await;
    let metadata = [(SESSION_HEADER, session.as_str()), (REQUEST_HEADER, "1")];
    let answer = server.call("/", &metadata, vec![0; LIMIT + 1].into()).await;
    answer.assert_refused("8", "request-too-large");
    assert_eq!(server.runs(), 0);
    let answer = server.numbered("/big", &session, 1).await;
    answer.assert_refused("8", "response-too-large");
    // The request is abandoned: its resend is answered so, and runs nothing.
    let resent = server.numbered("/big", &session, 1).await;
    resent.assert_refused("13", "abandoned");
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn a_failed_run_is_internal_to_its_caller_and_every_resend() {
    let server = serve(TableConfig::default()).await;
    let session = server.new_session().await;
    for _ in 0..2 {
        let answer = server.numbered("/fail", &session, 1).await;
        answer.assert_refused("13", "abandoned");
    }
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn busy_and_a_full_table_are_unavailable_with_a_pushback() {
    let config = TableConfig {
        max_sessions: 1,
        ..TableConfig::default()
    };
    let server = Arc::new(serve(config).await);
    let session = server.new_session().await;
    let slow = {
        let (server, session) = (Arc::clone(&server), session.clone());
        tokio::spawn(async move { server.numbered("/slow", &session, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = server.numbered("/", &session, 2).await;
    busy.assert_refused("14", "busy");
    assert_eq!(busy.header("grpc-retry-pushback-ms"), Some("1000"));
    let full = server
        .call("/", &[(SESSION_HEADER, "new")], Bytes::new())
        .await;
    full.assert_refused("14", "table-full");
    assert_eq!(full.header("grpc-retry-pushback-ms"), Some("1000"));
    assert_eq!(slow.await.unwrap().grpc_status(), "0");
    // Sent again once the first is answered, the busy call runs.
    assert_eq!(server.numbered("/", &session, 2).await.grpc_status(), "0");
    assert_eq!(server.runs(), 2);
}

#[tokio::test]
async fn a_call_that_is_not_grpc_is_still_answered_in_problem_details() {
    let server = serve(TableConfig::default()).await;
    let request = Request::post("http://test/")
        .header(SESSION_HEADER, "00000000000000ab")
        .header(REQUEST_HEADER, "1")
        .body(Full::default())
        .unwrap();
    let answer = server.send.clone().send_request(request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn the_client_numbers_grpc_calls_and_gets_their_trailers() {
    use exactly_once::tower::{Client, ClientConfig};
    let server = serve(TableConfig::default()).await;
    let addr = server.addr;
    let mut pool = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
    pool.http2_only(true);
    let mut client = Client::new(pool.build_http::<Full<Bytes>>(), ClientConfig::default());
    for message in [&b"one"[..], b"two"] {
        let call = Request::post(format!("http://{addr}/echo"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(framed(message)))
            .unwrap();
        let answer = client.call(call).await.unwrap();
        assert_eq!(answer.body().data(), &framed(message));
        assert_eq!(answer.body().trailers().unwrap()["grpc-status"], "0");
    }
    assert_eq!(server.runs(), 2);
}

/// The path of [`Echo`]'s echo, as a gRPC method.
const ECHO: &str = "/notes.Notes/Echo";

/// A protobuf message, as tonic's clients send and decode them.
#[derive(Clone, PartialEq, prost::Message)]
struct Note {
    #[prost(string, tag = "1")]
    text: String,
}

/// One unary call to `path` from tonic's client (its channel and prost codec) with
/// `metadata`.
async fn tonic_call(
    server: &Server,
    path: &'static str,
    metadata: &[(&'static str, &str)],
    text: &str,
) -> Result<tonic::Response<Note>, tonic::Status> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr));
    let channel = endpoint.unwrap().connect().await.unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(Note { text: text.into() });
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    let path = http::uri::PathAndQuery::from_static(path);
    let codec = tonic_prost::ProstCodec::<Note, Note>::default();
    client.unary(request, path, codec).await
}

#[tokio::test]
async fn a_tonic_client_reads_the_session_the_answers_and_the_refusals() {
    let server = serve(TableConfig::default()).await;
    let created = tonic_call(&server, ECHO, &[(SESSION_HEADER, "new")], "").await;
    let created = created.expect("the creation is a valid gRPC response");
    assert_eq!(created.get_ref(), &Note::default(), "an empty message");
    let session = created.metadata().get(SESSION_HEADER).unwrap();
    let session = session.to_str().unwrap().to_owned();
    let call = [(SESSION_HEADER, session.as_str()), (REQUEST_HEADER, "2")];
    for _ in 0..2 {
        let answer = tonic_call(&server, ECHO, &call, "hello").await.unwrap();
        assert_eq!(answer.get_ref().text, "hello");
    }
    assert_eq!(server.runs(), 1, "the resend is answered from the store");
    let stale = [(SESSION_HEADER, session.as_str()), (REQUEST_HEADER, "1")];
    let refused = tonic_call(&server, ECHO, &stale, "late").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{refused:?}");
    let unknown = [(SESSION_HEADER, "00000000000000ab"), (REQUEST_HEADER, "1")];
    let refused = tonic_call(&server, ECHO, &unknown, "lost")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    assert_eq!(refused.message(), "unknown session");
    let failed = [(SESSION_HEADER, session.as_str()), (REQUEST_HEADER, "3")];
    let refused = tonic_call(&server, "/fail", &failed, "x")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Internal, "{refused:?}");
    assert_eq!(server.runs(), 2);
}

#[tokio::test]
async fn a_grpc_call_numbered_0_ends_its_session() {
    let server = serve(TableConfig::default()).await;
    let session = server.new_session().await;
    assert_eq!(server.numbered("/", &session, 1).await.grpc_status(), "0");
    // gRPC sends every call with POST: number 0 on a gRPC call ends the session.
    let ended = server.numbered("/", &session, 0).await;
    assert_eq!(ended.status, StatusCode::OK);
    assert_eq!(ended.header("content-type"), Some("application/grpc"));
    assert_eq!(ended.header(ERROR_HEADER), Some("session-ended"));
    assert_eq!(ended.body, framed(b""), "one empty message");
    assert_eq!(ended.grpc_status(), "0");
    assert!(ended.trailers.is_some(), "the status is in trailers");
    // Ending it again answers the same: the first answer may have been lost.
    let again = server.numbered("/", &session, 0).await;
    assert_eq!((again.grpc_status(), &again.body), ("0", &framed(b"")));
    let after = server.numbered("/", &session, 2).await;
    after.assert_refused("5", "unknown-session");
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn a_tonic_client_ends_its_session_with_number_0() {
    let server = serve(TableConfig::default()).await;
    let session = server.new_session().await;
    let end = [(SESSION_HEADER, session.as_str()), (REQUEST_HEADER, "0")];
    let ended = tonic_call(&server, ECHO, &end, "").await.unwrap();
    assert_eq!(ended.get_ref(), &Note::default(), "an empty message");
    let call = [(SESSION_HEADER, session.as_str()), (REQUEST_HEADER, "1")];
    let refused = tonic_call(&server, ECHO, &call, "late").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    assert_eq!(server.runs(), 0);
}

#[tokio::test]
async fn number_0_on_a_call_that_is_not_grpc_still_needs_delete() {
    let server = serve(TableConfig::default()).await;
    let session = server.new_session().await;
    let request = Request::post("http://test/")
        .header(SESSION_HEADER, session.as_str())
        .header(REQUEST_HEADER, "0")
        .body(Full::default())
        .unwrap();
    let answer = server.send.clone().send_request(request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(server.numbered("/", &session, 1).await.grpc_status(), "0");
}
