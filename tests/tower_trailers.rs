//! The trailers of the inner service's response are kept with it: the first answer and
//! every resend end with the same trailers, over HTTP/1.1 (chunked, to a request that
//! accepts trailers) and over HTTP/2; the crate's `Client` hands them on too.
#![cfg(feature = "tower")]

use bytes::Bytes;
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{
    Client, ClientConfig, HttpLayer, WholeBody, REQUEST_HEADER, SESSION_HEADER,
};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::{TcpListener, TcpStream};
use tower_layer::Layer;
use tower_service::Service;

/// Answers `run N` with the trailers `x-run: N` and `grpc-status: 0`, announced in its
/// `trailer` header (HTTP/1.1 sends only announced trailers); counts its runs.
#[derive(Clone, Default)]
struct Trailing {
    runs: Arc<AtomicU64>,
}

impl<B> Service<Request<B>> for Trailing {
    type Response = Response<WholeBody>;
    type Error = Infallible;
    type Future = Ready<Result<Response<WholeBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        let mut trailers = HeaderMap::new();
        trailers.insert("x-run", HeaderValue::from(run));
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let body = WholeBody::new(Bytes::from(format!("run {run}")), Some(trailers));
        let mut response = Response::new(body);
        let announced = HeaderValue::from_static("x-run, grpc-status");
        response
            .headers_mut()
            .insert(http::header::TRAILER, announced);
        ready(Ok(response))
    }
}

#[derive(Clone, Copy, Debug)]
enum Http {
    One,
    Two,
}

/// Serves [`Trailing`] behind the layer (its default answers), speaking `http` only.
async fn serve(http: Http) -> (SocketAddr, Arc<AtomicU64>) {
    let inner = Trailing::default();
    let runs = Arc::clone(&inner.runs);
    let layer = HttpLayer::new(1 << 10, TableConfig::default(), Budget::new(1 << 20));
    let service = layer.layer(inner);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let io = TokioIo::new(socket);
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = match http {
                    Http::One => {
                        let builder = hyper::server::conn::http1::Builder::new();
                        builder.serve_connection(io, service).await
                    }
                    Http::Two => {
                        let builder =
                            hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                        builder.serve_connection(io, service).await
                    }
                };
            });
        }
    });
    (addr, runs)
}

/// Status, headers (less `date`), body and trailers of an answer.
type Whole = (StatusCode, HeaderMap, Bytes, Option<HeaderMap>);

async fn whole<B>(response: Response<B>) -> Whole
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let mut headers = parts.headers;
    headers.remove(http::header::DATE);
    let all = body.collect().await.unwrap();
    let trailers = all.trailers().cloned();
    (parts.status, headers, all.to_bytes(), trailers)
}

/// Sends `request` on a connection of its own, speaking `http`.
async fn send(http: Http, addr: SocketAddr, request: Request<Full<Bytes>>) -> Whole {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let response = match http {
        Http::One => {
            let (mut send, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            send.send_request(request).await.unwrap()
        }
        Http::Two => {
            let (mut send, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            send.send_request(request).await.unwrap()
        }
    };
    whole(response).await
}

fn request(addr: SocketAddr, session: &str, m: Option<u64>) -> Request<Full<Bytes>> {
    let mut request = Request::post(format!("http://{addr}/"))
        .header(SESSION_HEADER, session)
        .header(http::header::TE, "trailers");
    if let Some(m) = m {
        request = request.header(REQUEST_HEADER, m);
    }
    request.body(Full::default()).unwrap()
}

fn trailers_of_run(run: u64) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-run", HeaderValue::from(run));
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers
}

async fn the_first_answer_and_the_resend_end_with_the_same_trailers(http: Http) {
    let (addr, runs) = serve(http).await;
    let created = send(http, addr, request(addr, "new", None)).await;
    assert_eq!(created.0, StatusCode::CREATED);
    let session = created.1[SESSION_HEADER].to_str().unwrap().to_owned();
    let first = send(http, addr, request(addr, &session, Some(1))).await;
    assert_eq!(first.0, StatusCode::OK, "{http:?}");
    assert_eq!(first.2, "run 1");
    assert_eq!(first.3, Some(trailers_of_run(1)), "{http:?}: first answer");
    let resent = send(http, addr, request(addr, &session, Some(1))).await;
    assert_eq!(
        resent, first,
        "{http:?}: the resend gets the first answer, trailers too"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let next = send(http, addr, request(addr, &session, Some(2))).await;
    assert_eq!(next.3, Some(trailers_of_run(2)));
}

#[tokio::test]
async fn http1_chunked_trailers_are_kept_and_replayed() {
    the_first_answer_and_the_resend_end_with_the_same_trailers(Http::One).await;
}

#[tokio::test]
async fn http2_trailers_are_kept_and_replayed() {
    the_first_answer_and_the_resend_end_with_the_same_trailers(Http::Two).await;
}

#[tokio::test]
async fn the_client_hands_the_trailers_on() {
    for http in [Http::One, Http::Two] {
        let (addr, runs) = serve(http).await;
        let mut pool = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
        pool.http2_only(matches!(http, Http::Two));
        let mut client = Client::new(pool.build_http::<Full<Bytes>>(), ClientConfig::default());
        for run in 1..=2 {
            let call = Request::post(format!("http://{addr}/"))
                .header(http::header::TE, "trailers")
                .body(Full::<Bytes>::default())
                .unwrap();
            let answer = client.call(call).await.unwrap();
            assert_eq!(answer.body().trailers(), Some(&trailers_of_run(run)));
            let (_, _, body, trailers) = whole(answer).await;
            assert_eq!(body, format!("run {run}"));
            assert_eq!(trailers, Some(trailers_of_run(run)), "{http:?}");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn a_whole_request_keeps_its_trailers_for_the_inner_service() {
    use exactly_once::table::SessionTable;
    use exactly_once::tower::{HttpStore, TakeWhole};
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("abc"));
    let body = WholeBody::new(Bytes::from_static(b"data"), Some(trailers.clone()));
    let request = Request::post("/").body(body).unwrap();
    let sessions = SessionTable::new(TableConfig::default(), Budget::new(1 << 10));
    let taken = HttpStore::new(100).take_whole(request, &sessions).await;
    let (whole, _held) = taken.unwrap();
    assert_eq!(whole.body().data(), "data");
    assert_eq!(whole.body().trailers(), Some(&trailers));
}
