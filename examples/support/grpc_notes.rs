//! `notes.Notes`, a small gRPC service built with tonic without protoc or generated code
//! (prost messages written by hand, `tonic::server::Grpc` and `tonic::client::Grpc`
//! called directly), served over HTTP/2 by hyper with or without the exactly-once layer;
//! shared by the gRPC examples, tests and benchmark.
//!
//! ```proto
//! package notes;
//! message Note { string text = 1; uint64 run = 2; }
//! service Notes {
//!   rpc Echo(Note) returns (Note);           // the note, with the number of its run
//!   rpc Fail(Note) returns (Note);           // FAILED_PRECONDITION, every time
//!   rpc Watch(Note) returns (stream Note);   // `run` notes (a streaming call)
//! }
//! ```
//!
//! Every unary answer ends with a `notes-run` trailer beside `grpc-status`: the number
//! of the run that made it, so that a replayed answer can be told from a second run.

#![allow(dead_code)]

use bytes::Bytes;
use exactly_once::tower::{HttpLayer, WholeBody};
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tonic::{Code, Status};
use tower_layer::Layer;
use tower_service::Service;

/// The service's one message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Note {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint64, tag = "2")]
    pub run: u64,
}

pub const ECHO: &str = "/notes.Notes/Echo";
pub const FAIL: &str = "/notes.Notes/Fail";
pub const WATCH: &str = "/notes.Notes/Watch";
/// The streaming methods: passed through the layers un-numbered.
pub const STREAMING: [&str; 1] = [WATCH];
/// The trailer with the number of the run that made an answer.
pub const RUN_TRAILER: &str = "notes-run";

/// What the service has run: every run counted, and (if `ledger` is on) each note's
/// text with the number of times a unary call with it ran.
#[derive(Debug, Default)]
pub struct Runs {
    pub total: AtomicU64,
    ledger: Option<Mutex<HashMap<String, u32>>>,
}

impl Runs {
    /// Runs counted, and each text's runs kept.
    pub fn with_ledger() -> Arc<Runs> {
        Arc::new(Runs {
            ledger: Some(Mutex::default()),
            ..Runs::default()
        })
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }

    /// How many times a unary call with `text` ran.
    pub fn of(&self, text: &str) -> u32 {
        let ledger = self.ledger.as_ref().expect("runs kept with a ledger");
        ledger.lock().unwrap().get(text).copied().unwrap_or(0)
    }

    /// Every text's runs.
    pub fn ledger(&self) -> HashMap<String, u32> {
        let ledger = self.ledger.as_ref().expect("runs kept with a ledger");
        ledger.lock().unwrap().clone()
    }

    /// Counts one run of `text`; its number.
    fn run(&self, text: &str) -> u64 {
        if let Some(ledger) = &self.ledger {
            *ledger.lock().unwrap().entry(text.to_owned()).or_default() += 1;
        }
        self.total.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// The `notes.Notes` service, for any request body (behind the layer: its whole body).
#[derive(Clone, Debug)]
pub struct Notes {
    pub runs: Arc<Runs>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Codec = tonic_prost::ProstCodec<Note, Note>;

impl<B> Service<Request<B>> for Notes
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    type Response = Response<WholeBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<WholeBody>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let runs = Arc::clone(&self.runs);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(Codec::default());
            let answer = match request.uri().path() {
                ECHO => grpc.unary(Unary { runs, fail: false }, request).await,
                FAIL => grpc.unary(Unary { runs, fail: true }, request).await,
                WATCH => grpc.server_streaming(Watch { runs }, request).await,
                _ => Status::unimplemented("no such method").into_http(),
            };
            let (mut parts, body) = answer.into_parts();
            let body = body.collect().await?;
            let mut trailers = body.trailers().cloned();
            // tonic sends a response's metadata in its headers: the run goes to the
            // trailers (a trailers-only answer, an error, has it in its headers).
            if let Some(trailers) = trailers.as_mut() {
                if let Some(run) = parts.headers.remove(RUN_TRAILER) {
                    trailers.insert(RUN_TRAILER, run);
                }
            }
            Ok(Response::from_parts(
                parts,
                WholeBody::new(body.to_bytes(), trailers),
            ))
        })
    }
}

struct Unary {
    runs: Arc<Runs>,
    fail: bool,
}

impl tonic::server::UnaryService<Note> for Unary {
    type Response = Note;
    type Future = BoxFuture<Result<tonic::Response<Note>, Status>>;

    fn call(&mut self, request: tonic::Request<Note>) -> Self::Future {
        let text = request.into_inner().text;
        let run = self.runs.run(&text);
        let fail = self.fail;
        Box::pin(async move {
            if fail {
                let mut status = Status::new(Code::FailedPrecondition, format!("refused {text}"));
                let value = HeaderValue::from(run).to_str().unwrap().parse().unwrap();
                status.metadata_mut().insert(RUN_TRAILER, value);
                return Err(status);
            }
            let mut answer = tonic::Response::new(Note { text, run });
            let value = HeaderValue::from(run).to_str().unwrap().parse().unwrap();
            answer.metadata_mut().insert(RUN_TRAILER, value);
            Ok(answer)
        })
    }
}

struct Watch {
    runs: Arc<Runs>,
}

impl tonic::server::ServerStreamingService<Note> for Watch {
    type Response = Note;
    type ResponseStream = futures_lite::stream::Iter<std::vec::IntoIter<Result<Note, Status>>>;
    type Future = BoxFuture<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Note>) -> Self::Future {
        let note = request.into_inner();
        let run = self.runs.run(&note.text);
        let notes: Vec<_> = (1..=note.run)
            .map(|i| {
                let text = format!("{} {i}", note.text);
                Ok(Note { text, run })
            })
            .collect();
        Box::pin(async move { Ok(tonic::Response::new(futures_lite::stream::iter(notes))) })
    }
}

/// `service` served over HTTP/2 (cleartext, prior knowledge, as tonic's channel speaks)
/// on `listener`, each connection in a task of its own.
pub async fn serve_http2<S>(listener: TcpListener, service: S)
where
    S: Service<Request<hyper::body::Incoming>, Response = Response<WholeBody>>,
    S: Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    while let Ok((socket, _)) = listener.accept().await {
        let _ = socket.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        tokio::spawn(builder.serve_connection(TokioIo::new(socket), service));
    }
}

/// [`Notes`] behind `layer` (letting the streaming methods through), or bare, served
/// over HTTP/2 on a loopback port: its address.
pub async fn serve_notes(layer: Option<HttpLayer>, runs: Arc<Runs>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_notes_on(listener, layer, runs));
    addr
}

/// [`Notes`] behind `layer` (letting the streaming methods through), or bare, served
/// over HTTP/2 on `listener`.
pub async fn serve_notes_on(listener: TcpListener, layer: Option<HttpLayer>, runs: Arc<Runs>) {
    let notes = Notes { runs };
    match layer {
        Some(layer) => {
            let layer = layer.letting_through(|_, uri| STREAMING.contains(&uri.path()));
            serve_http2(listener, layer.layer(notes)).await;
        }
        None => serve_http2(listener, notes).await,
    }
}

/// One unary call to `path` on the gRPC client `client` (a channel, or a layer over
/// one), with `metadata`.
pub async fn unary<T>(
    client: &mut tonic::client::Grpc<T>,
    path: &'static str,
    metadata: &[(&'static str, &str)],
    text: &str,
) -> Result<tonic::Response<Note>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError>,
{
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.into().to_string()))?;
    let mut request = tonic::Request::new(Note {
        text: text.into(),
        run: 0,
    });
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    let path = http::uri::PathAndQuery::from_static(path);
    client.unary(request, path, Codec::default()).await
}

/// The notes of a `Watch` call for `count` notes about `text`.
pub async fn watch<T>(
    client: &mut tonic::client::Grpc<T>,
    text: &str,
    count: u64,
) -> Result<Vec<Note>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError>,
{
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.into().to_string()))?;
    let request = tonic::Request::new(Note {
        text: text.into(),
        run: count,
    });
    let path = http::uri::PathAndQuery::from_static(WATCH);
    let mut stream = client
        .server_streaming(request, path, Codec::default())
        .await?
        .into_inner();
    let mut notes = Vec::new();
    while let Some(note) = stream.message().await? {
        notes.push(note);
    }
    Ok(notes)
}
