//! The HTTP protocol's choices, each as a test: the layer's own answers are problem
//! details, the application's are kept as they are (a JSON extractor's 422 included);
//! a body over the limit is refused before it runs; a session ends with `DELETE`; a
//! number may skip ahead; requests with no key at all may be let through on purpose.
#![cfg(feature = "tower")]

use axum::{body::Body, extract::Request, routing::any, routing::post, Json, Router, ServiceExt};
use bytes::Bytes;
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{
    HttpLayer, ERROR_HEADER, PROBLEM_TYPES, REQUEST_HEADER, SESSION_HEADER, SKIPPED_HEADER,
};
use http::{header, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client as Pool};
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_layer::Layer;

const LIMIT: usize = 4 << 10;

/// A router behind the layer: `/json` takes a JSON object of numbers with axum's `Json`
/// extractor (its own 422 for other JSON, 400 for a syntax error), `/text` echoes its body, `/health` answers `ok`;
/// each counts its runs.
struct Server {
    addr: SocketAddr,
    runs: Arc<AtomicU64>,
    pool: Pool<HttpConnector, Full<Bytes>>,
}

async fn serve(layer: HttpLayer) -> Server {
    let runs = Arc::new(AtomicU64::new(0));
    let (json, text, health) = (Arc::clone(&runs), Arc::clone(&runs), Arc::clone(&runs));
    let router = Router::new()
        .route(
            "/json",
            post(move |Json(value): Json<HashMap<String, u64>>| async move {
                json.fetch_add(1, Ordering::SeqCst);
                Json(value)
            }),
        )
        .route(
            "/text",
            post(move |body: String| async move {
                let run = text.fetch_add(1, Ordering::SeqCst) + 1;
                format!("run {run}: {body}")
            }),
        )
        .route(
            "/health",
            any(move || async move {
                health.fetch_add(1, Ordering::SeqCst);
                "ok"
            }),
        )
        .with_state(());
    let app = layer.answering(Body::new).layer(router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let make = ServiceExt::<Request>::into_make_service(app);
    tokio::spawn(async move { axum::serve(listener, make).await });
    let pool = Pool::builder(TokioExecutor::new()).build_http();
    Server { addr, runs, pool }
}

fn layer() -> HttpLayer {
    HttpLayer::new(LIMIT, TableConfig::default(), Budget::new(1 << 20))
}

/// One answer: status, the layer's code, `Retry-After`, content type and body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    code: Option<String>,
    retry_after: Option<String>,
    content_type: Option<String>,
    skipped: Option<String>,
    body: String,
}

impl Server {
    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }

    async fn send(&self, method: Method, path: &str, key: &[(&str, &str)], body: &str) -> Answer {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in key {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body.to_owned())));
        let response = self.pool.request(request.unwrap()).await.unwrap();
        let header = |name| {
            let value = response.headers().get(name);
            value.map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
        };
        let (code, retry_after) = (header(ERROR_HEADER), header(header::RETRY_AFTER.as_str()));
        let content_type = header(header::CONTENT_TYPE.as_str());
        let skipped = header(SKIPPED_HEADER);
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            code,
            retry_after,
            content_type,
            skipped,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn create(&self) -> String {
        let created = self.pool.request(
            http::Request::post(format!("http://{}/text", self.addr))
                .header(SESSION_HEADER, "new")
                .body(Full::default())
                .unwrap(),
        );
        let created = created.await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        created.headers()[SESSION_HEADER]
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// Request `m` of `session` by `POST` to `path`.
    async fn call(&self, path: &str, session: &str, m: u64, body: &str) -> Answer {
        let m = m.to_string();
        let key = [(SESSION_HEADER, session), (REQUEST_HEADER, m.as_str())];
        self.send(Method::POST, path, &key, body).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layers_refusals_are_problem_details_and_the_applications_answers_are_not() {
    let server = serve(layer()).await;
    let id = server.create().await;
    let ran = server.call("/text", &id, 1, "a").await;
    assert_eq!(
        (ran.code, ran.content_type.as_deref()),
        (None, Some("text/plain; charset=utf-8"))
    );
    let resend = server.call("/text", &id, 1, "a").await;
    assert_eq!(
        resend.status,
        StatusCode::OK,
        "a resend is answered as the run was"
    );
    let refused = server.send(Method::POST, "/text", &[], "").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.content_type.as_deref(),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(problem["type"], format!("{PROBLEM_TYPES}bad-key"));
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["title"], "Missing or malformed key");
    assert_eq!(problem["detail"], "the request names no session");
    assert_eq!(refused.code.as_deref(), Some("bad-key"));
    assert_eq!(refused.retry_after, None, "sending it again cannot help");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applications_rejection_of_a_whole_body_is_its_run_and_is_replayed() {
    let server = serve(layer()).await;
    let id = server.create().await;
    let rejected = server
        .call("/json", &id, 1, r#"{"a": "not a number"}"#)
        .await;
    assert_eq!(
        rejected.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{rejected:?}"
    );
    assert_eq!(
        rejected.code, None,
        "the application's answer, not the layer's"
    );
    // The extractor refused before the handler ran; its answer is the run of number 1,
    // and a resend, even with a good body, gets it again.
    let again = server.call("/json", &id, 1, r#"{"a": 1}"#).await;
    assert_eq!(again, rejected);
    let typed = server.call("/json", &id, 2, r#"{"a": 1}"#).await;
    assert_eq!(
        (typed.status, typed.body.as_str()),
        (StatusCode::OK, r#"{"a":1}"#)
    );
    let syntax = server.call("/json", &id, 3, r#"{"a": "#).await;
    assert_eq!(syntax.status, StatusCode::BAD_REQUEST);
    assert_eq!(syntax.code, None);
    assert_eq!(server.call("/json", &id, 3, "{}").await, syntax);
    assert_eq!(
        server.runs(),
        1,
        "only the well-formed body reached the handler"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_before_it_runs_and_the_number_stays_free() {
    let responses = HttpLayer::new(2 * LIMIT, TableConfig::default(), Budget::new(1 << 20));
    let server = serve(responses.with_request_limit(LIMIT)).await;
    let id = server.create().await;
    let too_big = "x".repeat(LIMIT + 1);
    let refused = server.call("/text", &id, 1, &too_big).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(refused.code.as_deref(), Some("request-too-large"));
    // The same over a socket, chunked, so that only the bytes counted tell.
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /text HTTP/1.1\r\nhost: t\r\n{SESSION_HEADER}: {id}\r\n{REQUEST_HEADER}: 1\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..=LIMIT / 1024 {
        let chunk = format!("400\r\n{}\r\n", "y".repeat(1024));
        if socket.write_all(chunk.as_bytes()).await.is_err() {
            break; // the server answered and closed: the rest is not read
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("request-too-large"), "{answer}");
    let fits = "z".repeat(LIMIT);
    let ran = server.call("/text", &id, 1, &fits).await;
    assert_eq!(ran.body, format!("run 1: {fits}"));
    assert_eq!(server.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_with_delete_only_and_ending_it_again_is_answered_the_same() {
    let server = serve(layer()).await;
    let id = server.create().await;
    let end = [(SESSION_HEADER, id.as_str()), (REQUEST_HEADER, "0")];
    for method in [Method::GET, Method::POST] {
        let refused = server.send(method.clone(), "/text", &end, "").await;
        assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(refused.code.as_deref(), Some("end-needs-delete"));
    }
    assert_eq!(
        server.call("/text", &id, 1, "live").await.body,
        "run 1: live"
    );
    for _ in 0..2 {
        let ended = server.send(Method::DELETE, "/text", &end, "").await;
        assert_eq!(ended.status, StatusCode::NO_CONTENT);
        assert_eq!(ended.code.as_deref(), Some("session-ended"));
    }
    let after = server.call("/text", &id, 2, "late").await;
    assert_eq!(after.code.as_deref(), Some("unknown-session"));
    assert_eq!(server.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_that_skips_ahead_runs_with_the_gap_marked_and_the_skipped_are_stale() {
    let server = serve(layer()).await;
    let id = server.create().await;
    let first = server.call("/text", &id, 1, "a").await;
    assert_eq!((first.body.as_str(), first.skipped), ("run 1: a", None));
    let jumped = server.call("/text", &id, 3, "c").await;
    assert_eq!(jumped.body, "run 2: c");
    assert_eq!(jumped.skipped.as_deref(), Some("1"), "the gap is seen");
    assert_eq!(
        server.call("/text", &id, 3, "c").await,
        jumped,
        "and replayed"
    );
    let skipped = server.call("/text", &id, 2, "b").await;
    assert_eq!(skipped.code.as_deref(), Some("stale"));
    assert_eq!(server.runs(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_no_key_are_let_through_only_where_the_layer_is_told() {
    let health = |method: &Method, uri: &http::Uri| {
        method == Method::OPTIONS || (method == Method::GET && uri.path() == "/health")
    };
    let server = serve(layer().letting_through(health)).await;
    for _ in 0..2 {
        let ok = server.send(Method::GET, "/health", &[], "").await;
        assert_eq!(
            (ok.status, ok.body.as_str(), ok.code),
            (StatusCode::OK, "ok", None)
        );
    }
    let preflight = server.send(Method::OPTIONS, "/text", &[], "").await;
    assert_eq!(
        preflight.code, None,
        "the router's own answer: {preflight:?}"
    );
    assert_eq!(server.runs(), 2, "unprotected: each health check runs");
    let unkeyed = server.send(Method::POST, "/text", &[], "x").await;
    assert_eq!(unkeyed.code.as_deref(), Some("bad-key"));
    let partial = [(REQUEST_HEADER, "1")];
    let half = server.send(Method::GET, "/health", &partial, "").await;
    assert_eq!(
        half.code.as_deref(),
        Some("bad-key"),
        "a partial key is a mistake"
    );
    let id = server.create().await;
    assert_eq!(server.call("/text", &id, 1, "k").await.body, "run 3: k");
    assert_eq!(server.call("/text", &id, 1, "k").await.body, "run 3: k");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_budget_cannot_take_as_it_arrives_is_refused_for_later_and_runs_once_later() {
    // Bodies up to 8 KiB, responses up to 512 bytes, 2 KiB of budget in all: a 4 KiB
    // body is refused as its bytes come (not for its announced length, which fits
    // the limit); a 400-byte body and its response fit.
    let small = HttpLayer::new(512, TableConfig::default(), Budget::new(2 << 10));
    let server = serve(small.with_request_limit(8 << 10)).await;
    let id = server.create().await;
    let refused = server.call("/text", &id, 1, &"b".repeat(4 << 10)).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.code.as_deref(), Some("over-budget"));
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    let fits = "c".repeat(400);
    let ran = server.call("/text", &id, 1, &fits).await;
    assert_eq!(ran.body, format!("run 1: {fits}"));
    assert_eq!(server.runs(), 1);
}
