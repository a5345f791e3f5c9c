//! The gRPC client layer with tonic on both ends: tonic's `Grpc` client over
//! [`GrpcClient`] over tonic's channel, a tonic service (`notes.Notes`) behind the
//! server layer. Every unary call runs once whatever the connections do; a lost answer
//! is replayed with the first answer's status, message and trailers; the service's
//! errors and the layer's refusals reach the caller as gRPC statuses; a call the client
//! cannot finish is DEADLINE_EXCEEDED; streaming calls pass through un-numbered.
#![cfg(feature = "tower")]

#[path = "../examples/support/grpc_notes.rs"]
mod notes;
#[path = "tower_support/proxy.rs"]
mod proxy;

use bytes::Bytes;
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{
    ClientConfig, GrpcClient, GrpcClientLayer, HttpLayer, WholeBody, REQUEST_HEADER, SESSION_HEADER,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use notes::{Runs, ECHO, FAIL, RUN_TRAILER, STREAMING};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tower_layer::Layer;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Quick retries: the tests' cuts heal at once.
const CONFIG: ClientConfig = ClientConfig {
    retry_for: Duration::from_secs(20),
    first_backoff: Duration::from_millis(2),
    max_backoff: Duration::from_millis(50),
    request_limit: 1 << 20,
    response_limit: 1 << 20,
};

fn layer() -> HttpLayer {
    HttpLayer::new(1 << 20, TableConfig::default(), Budget::new(64 << 20))
}

fn channel(addr: SocketAddr) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).unwrap();
    endpoint.connect_lazy()
}

type Notes<S> = tonic::client::Grpc<GrpcClient<S, tonic::body::Body>>;

/// tonic's client over the client layer over `inner`, and a clone of the layer's
/// client (for its count of resends).
fn grpc_client<S: Clone>(
    inner: S,
    config: ClientConfig,
) -> (Notes<S>, GrpcClient<S, tonic::body::Body>) {
    let layer = GrpcClientLayer::new(config, tonic::body::Body::new).streaming(STREAMING);
    let client = layer.layer(inner);
    (tonic::client::Grpc::new(client.clone()), client)
}

fn trailer(answer: &tonic::Response<notes::Note>, name: &str) -> String {
    let value = answer.metadata().get(name).expect("the answer carries it");
    value.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_runs_once_through_connections_cut_at_random() {
    let runs = Runs::with_ledger();
    let server = notes::serve_notes(Some(layer()), Arc::clone(&runs)).await;
    let faults = proxy::Faults::random(0.03);
    let proxied = proxy::start(server, Arc::clone(&faults)).await;
    let mut clients = Vec::new();
    for c in 0..4 {
        let (mut client, counted) = grpc_client(channel(proxied), CONFIG);
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..40 {
                let text = format!("client {c} call {i}");
                // Every fifth call fails in the service: its status comes back, once.
                if i % 5 == 4 {
                    let failed = notes::unary(&mut client, FAIL, &[], &text).await;
                    let failed = failed.expect_err("Fail fails");
                    assert_eq!(failed.code(), tonic::Code::FailedPrecondition, "{failed:?}");
                    assert_eq!(failed.message(), format!("refused {text}"));
                    answers.push((text, None));
                    continue;
                }
                let answer = notes::unary(&mut client, ECHO, &[], &text).await;
                let answer = answer.unwrap_or_else(|e| panic!("{text}: {e:?}"));
                answers.push((text, Some(answer)));
            }
            (answers, counted.retries())
        }));
    }
    let mut retries = 0;
    for client in clients {
        let (answers, resent) = client.await.unwrap();
        retries += resent;
        for (text, answer) in answers {
            assert_eq!(runs.of(&text), 1, "{text} ran once");
            let Some(answer) = answer else { continue };
            assert_eq!(answer.get_ref().text, text);
            // A replayed answer is the one run's answer, trailers included.
            let run = answer.get_ref().run.to_string();
            assert_eq!(trailer(&answer, RUN_TRAILER), run, "{text}");
        }
    }
    assert_eq!(runs.total(), 160, "no call ran twice, none was lost");
    assert!(
        faults.total_cuts() > 0 && retries > 0,
        "the proxy cut calls"
    );
}

/// An answer as it came from the channel: status, headers, message bytes, trailers.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// What [`Faulty`] does to the first copy of its target call.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Sends it and loses its answer, as a connection cut after the server answered.
    LoseAnswer,
    /// Answers it UNAVAILABLE without sending it, as a proxy in front of the server.
    Unavailable,
    /// Answers it and every copy UNAVAILABLE, as a proxy whose upstream stays down.
    AlwaysUnavailable,
}

/// Between the client layer and the channel: records every answer to request number
/// `target` and spoils its first copy with `fault`.
#[derive(Clone)]
struct Faulty {
    channel: Channel,
    target: &'static str,
    fault: Fault,
    seen: Arc<Mutex<Vec<Seen>>>,
    requests: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Faulty {
    fn new(channel: Channel, target: &'static str, fault: Fault) -> Self {
        Faulty {
            channel,
            target,
            fault,
            seen: Arc::default(),
            requests: Arc::default(),
        }
    }
}

impl Service<Request<tonic::body::Body>> for Faulty {
    type Response = Response<WholeBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<WholeBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.channel.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        self.requests
            .lock()
            .unwrap()
            .push(request.headers().clone());
        let number = request.headers().get(REQUEST_HEADER);
        let targeted = number.is_some_and(|n| n == self.target);
        let first = targeted && self.seen.lock().unwrap().is_empty();
        let (fault, seen) = (self.fault, Arc::clone(&self.seen));
        let unavailable = match fault {
            Fault::Unavailable => first,
            Fault::AlwaysUnavailable => targeted,
            Fault::LoseAnswer => false,
        };
        if unavailable {
            let mut answer = Response::new(WholeBody::default());
            let headers = answer.headers_mut();
            headers.insert("content-type", "application/grpc".parse().unwrap());
            headers.insert("grpc-status", "14".parse().unwrap());
            headers.insert("grpc-message", "no upstream".parse().unwrap());
            seen.lock()
                .unwrap()
                .push(read(answer.clone(), Bytes::new(), None));
            return Box::pin(async move { Ok(answer) });
        }
        let answer = self.channel.call(request);
        Box::pin(async move {
            let (parts, body) = answer.await?.into_parts();
            let body = body.collect().await?;
            let trailers = body.trailers().cloned();
            let body = body.to_bytes();
            let answer = Response::from_parts(parts, WholeBody::new(body, trailers));
            if targeted {
                let (data, trailers) = answer.body().clone().into_parts();
                seen.lock()
                    .unwrap()
                    .push(read(answer.clone(), data, trailers));
            }
            if first {
                return Err("the connection was cut after the answer".into());
            }
            Ok(answer)
        })
    }
}

fn read(answer: Response<WholeBody>, body: Bytes, trailers: Option<HeaderMap>) -> Seen {
    let mut headers = answer.headers().clone();
    // hyper's own, made anew for every answer.
    headers.remove("date");
    Seen {
        status: answer.status(),
        headers,
        body,
        trailers,
    }
}

#[tokio::test]
async fn a_lost_answer_is_replayed_with_its_status_message_and_trailers() {
    let runs = Runs::with_ledger();
    let server = notes::serve_notes(Some(layer()), Arc::clone(&runs)).await;
    let faulty = Faulty::new(channel(server), "2", Fault::LoseAnswer);
    let (mut client, counted) = grpc_client(faulty.clone(), CONFIG);
    notes::unary(&mut client, ECHO, &[], "first").await.unwrap();
    let answer = notes::unary(&mut client, ECHO, &[], "second")
        .await
        .unwrap();
    assert_eq!(answer.get_ref().text, "second");
    assert_eq!(runs.of("second"), 1);
    let seen = faulty.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "the lost answer and the replay");
    assert_eq!(seen[0], seen[1], "the replay is the first answer");
    let trailers = seen[1]
        .trailers
        .as_ref()
        .expect("gRPC's status is a trailer");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(
        trailers[RUN_TRAILER],
        answer.get_ref().run.to_string().as_str()
    );
    assert_eq!(counted.retries(), 1);
}

#[tokio::test]
async fn the_services_errors_round_trip_as_statuses_and_are_replayed_alike() {
    let runs = Runs::with_ledger();
    let server = notes::serve_notes(Some(layer()), Arc::clone(&runs)).await;
    let faulty = Faulty::new(channel(server), "1", Fault::LoseAnswer);
    let (mut client, _) = grpc_client(faulty.clone(), CONFIG);
    let refused = notes::unary(&mut client, FAIL, &[], "x").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(refused.message(), "refused x");
    assert_eq!(refused.metadata().get(RUN_TRAILER).unwrap(), "1");
    assert_eq!(runs.of("x"), 1);
    let seen = faulty.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "the replayed error is the first");
    assert_eq!(seen[1].headers["grpc-status"], "9", "trailers-only");
    // The client goes on with its next number.
    let answer = notes::unary(&mut client, ECHO, &[], "y").await.unwrap();
    assert_eq!(answer.get_ref().text, "y");
}

#[tokio::test]
async fn unavailable_from_in_front_of_the_server_is_sent_again_with_its_number() {
    let runs = Runs::with_ledger();
    let server = notes::serve_notes(Some(layer()), Arc::clone(&runs)).await;
    let faulty = Faulty::new(channel(server), "1", Fault::Unavailable);
    let (mut client, _) = grpc_client(faulty.clone(), CONFIG);
    let answer = notes::unary(&mut client, ECHO, &[], "z").await.unwrap();
    assert_eq!(answer.get_ref().text, "z");
    assert_eq!(runs.of("z"), 1);
    let numbers: Vec<_> = faulty
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|headers| {
            let number = headers.get(REQUEST_HEADER);
            number.map(|n| n.to_str().unwrap().to_owned())
        })
        .collect();
    // The creation, the copy answered UNAVAILABLE, the same number again.
    assert_eq!(numbers, [None, Some("1".into()), Some("1".into())]);
}

#[tokio::test]
async fn a_refusal_of_the_layer_reaches_the_caller_and_the_client_makes_a_new_session() {
    // One session fits: a second client's session evicts the first's (detached).
    let config = TableConfig {
        max_sessions: 1,
        ..TableConfig::default()
    };
    let layer = HttpLayer::new(1 << 20, config, Budget::new(64 << 20));
    let runs = Runs::with_ledger();
    let server = notes::serve_notes(Some(layer), Arc::clone(&runs)).await;
    let (mut first, _) = grpc_client(channel(server), CONFIG);
    let (mut second, _) = grpc_client(channel(server), CONFIG);
    notes::unary(&mut first, ECHO, &[], "a").await.unwrap();
    notes::unary(&mut second, ECHO, &[], "b").await.unwrap();
    let refused = notes::unary(&mut first, ECHO, &[], "c").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    assert_eq!(refused.message(), "unknown session");
    assert_eq!(runs.of("c"), 0);
    let answer = notes::unary(&mut first, ECHO, &[], "d").await.unwrap();
    assert_eq!(answer.get_ref().text, "d", "in a new session");
}

#[tokio::test]
async fn a_call_the_client_gives_up_on_is_deadline_exceeded() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let config = ClientConfig {
        retry_for: Duration::from_millis(100),
        ..CONFIG
    };
    let (mut client, _) = grpc_client(channel(addr), config);
    let gave_up = notes::unary(&mut client, ECHO, &[], "lost")
        .await
        .unwrap_err();
    assert_eq!(gave_up.code(), tonic::Code::DeadlineExceeded, "{gave_up:?}");
    assert!(
        gave_up.message().starts_with("gave up after"),
        "{gave_up:?}"
    );
}

#[tokio::test]
async fn a_streaming_call_passes_through_un_numbered() {
    let runs = Runs::with_ledger();
    let server = notes::serve_notes(Some(layer()), Arc::clone(&runs)).await;
    let faulty = Faulty::new(channel(server), "1", Fault::LoseAnswer);
    let (mut client, _) = grpc_client(faulty.clone(), CONFIG);
    for _ in 0..2 {
        let notes = notes::watch(&mut client, "w", 3).await.unwrap();
        let texts: Vec<_> = notes.iter().map(|n| n.text.as_str()).collect();
        assert_eq!(texts, ["w 1", "w 2", "w 3"]);
    }
    assert_eq!(
        runs.of("w"),
        2,
        "each streaming call runs: nothing is replayed"
    );
    let requests = faulty.requests.lock().unwrap();
    assert_eq!(requests.len(), 2, "no session was made, nothing resent");
    assert!(requests.iter().all(|h| !h.contains_key(SESSION_HEADER)));
}

#[tokio::test]
async fn an_answer_that_stays_unavailable_reaches_the_caller_as_it_came() {
    let runs = Runs::with_ledger();
    let server = notes::serve_notes(Some(layer()), Arc::clone(&runs)).await;
    let faulty = Faulty::new(channel(server), "1", Fault::AlwaysUnavailable);
    let config = ClientConfig {
        retry_for: Duration::from_millis(100),
        ..CONFIG
    };
    let (mut client, counted) = grpc_client(faulty, config);
    let refused = notes::unary(&mut client, ECHO, &[], "u").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(refused.message(), "no upstream");
    assert!(counted.retries() > 1, "sent again until retry_for was over");
    assert_eq!(runs.of("u"), 0);
}

#[test]
fn the_client_layer_and_its_clients_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<GrpcClientLayer<tonic::body::Body>>();
    send_sync::<GrpcClient<Channel, tonic::body::Body>>();
}
