//! The `Idempotency-Key` mode, as a client that sends the header sees it: one test per
//! row of the table in `exactly_once::tower::idempotency`'s docs. Every test counts the
//! handler's runs.
#![cfg(feature = "tower")]

mod tower_support;

use bytes::Bytes;
use exactly_once::table::Budget;
use exactly_once::tower::idempotency::{Scope, REPLAYED_HEADER};
use exactly_once::tower::{IdempotencyLayer, ERROR_HEADER, PROBLEM_TYPES};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;
use tower_support::{pool, HttpPool, BODY_LIMIT};

/// The handler: counts its runs, waits `delay-ms` (header), then by path: `/declined`
/// answers 402, `/fail` fails (the layer abandons the request), anything else answers
/// 201 `run N: <body>` with an `x-run: N` header.
#[derive(Clone, Default)]
struct Counter {
    runs: Arc<AtomicU64>,
}

impl<B> Service<Request<B>> for Counter
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    type Response = Response<Full<Bytes>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let runs = Arc::clone(&self.runs);
        let delay = request.headers().get("delay-ms");
        let delay = delay.map_or(0, |v| v.to_str().unwrap().parse().unwrap());
        let path = request.uri().path().to_owned();
        Box::pin(async move {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let text = format!("run {run}: {}", String::from_utf8_lossy(&body));
            let status = match path.as_str() {
                "/fail" => return Err(std::io::Error::other("fails on purpose")),
                "/declined" => StatusCode::PAYMENT_REQUIRED,
                _ => StatusCode::CREATED,
            };
            let mut response = Response::new(Full::new(Bytes::from(text)));
            *response.status_mut() = status;
            response.headers_mut().insert("x-run", run.into());
            Ok(response)
        })
    }
}

struct Server {
    url: String,
    runs: Arc<AtomicU64>,
    layer: IdempotencyLayer,
}

impl Server {
    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

async fn serve(layer: IdempotencyLayer) -> Server {
    let handler = Counter::default();
    let runs = Arc::clone(&handler.runs);
    let service = layer.layer(handler);
    let app = axum::Router::new().fallback_service(service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server { url, runs, layer }
}

fn layer() -> IdempotencyLayer {
    IdempotencyLayer::new(BODY_LIMIT, Budget::new(64 << 20))
}

/// One answer, read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: StatusCode,
    /// The layer's problem code, if it refused.
    code: Option<String>,
    replayed: bool,
    retry_after: Option<String>,
    content_type: Option<String>,
    run: Option<String>,
    body: String,
}

async fn post(pool: &HttpPool, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    call(pool, "POST", url, headers, body).await
}

async fn call(
    pool: &HttpPool,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = pool.request(request).await.unwrap();
    let header = |name: &str| {
        let value = response.headers().get(name);
        value.map(|v| v.to_str().unwrap().to_owned())
    };
    let answer = Answer {
        status: response.status(),
        code: header(ERROR_HEADER),
        replayed: header(REPLAYED_HEADER).as_deref() == Some("true"),
        retry_after: header("retry-after"),
        content_type: header("content-type"),
        run: header("x-run"),
        body: String::new(),
    };
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        body: String::from_utf8_lossy(&body).into_owned(),
        ..answer
    }
}

const KEY: &str = "idempotency-key";

#[tokio::test]
async fn a_new_key_runs_once_and_every_duplicate_gets_its_answer_marked_replayed() {
    let server = serve(layer()).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    let first = post(&pool, &url, &[(KEY, "\"order-1\"")], "5 EUR").await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body, "run 1: 5 EUR");
    assert!(!first.replayed, "the first answer is the run's own");
    for _ in 0..3 {
        let again = post(&pool, &url, &[(KEY, "\"order-1\"")], "5 EUR").await;
        assert!(again.replayed);
        assert_eq!(
            Answer {
                replayed: false,
                ..again
            },
            first
        );
    }
    assert_eq!(server.runs(), 1);
    assert_eq!(server.layer.records().len(), 1);
}

#[tokio::test]
async fn a_key_quoted_and_unquoted_is_one_key() {
    let server = serve(layer()).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    let quoted = post(&pool, &url, &[(KEY, "\"abc-1\"")], "x").await;
    let bare = post(&pool, &url, &[(KEY, "abc-1")], "x").await;
    assert!(bare.replayed);
    assert_eq!(bare.body, quoted.body);
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn errors_the_handler_answers_are_replayed_as_they_were() {
    let server = serve(layer()).await;
    let pool = pool();
    let url = format!("{}/declined", server.url);
    let first = post(&pool, &url, &[(KEY, "card-7")], "").await;
    assert_eq!(first.status, StatusCode::PAYMENT_REQUIRED);
    let again = post(&pool, &url, &[(KEY, "card-7")], "").await;
    assert_eq!(
        (again.status, again.replayed),
        (StatusCode::PAYMENT_REQUIRED, true)
    );
    assert_eq!(again.body, first.body);
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn a_request_whose_run_failed_is_abandoned_and_never_runs_again() {
    let server = serve(layer()).await;
    let pool = pool();
    let url = format!("{}/fail", server.url);
    for _ in 0..3 {
        let answer = post(&pool, &url, &[(KEY, "doomed")], "").await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.code.as_deref(), Some("abandoned"));
    }
    assert_eq!(server.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_copies_of_one_key_run_once_and_get_identical_answers() {
    let server = serve(layer()).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    let copies: Vec<_> = (0..64)
        .map(|_| {
            let (pool, url) = (pool.clone(), url.clone());
            tokio::spawn(async move {
                post(&pool, &url, &[(KEY, "\"burst\""), ("delay-ms", "300")], "9").await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for copy in copies {
        answers.push(copy.await.unwrap());
    }
    assert_eq!(server.runs(), 1);
    let first: Vec<_> = answers.iter().filter(|a| !a.replayed).collect();
    assert_eq!(first.len(), 1, "one copy ran; 63 got its answer replayed");
    for answer in &answers {
        assert_eq!(
            (answer.status, &answer.body, &answer.run),
            (
                StatusCode::CREATED,
                &"run 1: 9".to_owned(),
                &Some("1".to_owned())
            )
        );
    }
}

#[tokio::test]
async fn the_same_key_with_another_body_or_query_gets_422_runs_nothing_and_leaves_the_record() {
    let server = serve(layer()).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    let first = post(&pool, &url, &[(KEY, "k")], "5 EUR").await;
    for (url, body) in [
        (url.clone(), "6 EUR"),
        (format!("{url}?currency=usd"), "5 EUR"),
    ] {
        let changed = post(&pool, &url, &[(KEY, "k")], body).await;
        assert_eq!(changed.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(changed.code.as_deref(), Some("idempotency-key-reused"));
        assert_eq!(
            changed.content_type.as_deref(),
            Some("application/problem+json")
        );
        let problem: serde_json::Value = serde_json::from_str(&changed.body).unwrap();
        assert_eq!(
            problem["type"],
            format!("{PROBLEM_TYPES}idempotency-key-reused")
        );
        assert_eq!(problem["status"], 422);
    }
    let again = post(&pool, &url, &[(KEY, "k")], "5 EUR").await;
    assert!(again.replayed);
    assert_eq!(again.body, first.body);
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn fingerprinted_headers_count_and_others_do_not() {
    let amount = http::HeaderName::from_static("x-amount");
    let server = serve(layer().fingerprinting([amount])).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    post(
        &pool,
        &url,
        &[(KEY, "h"), ("x-amount", "5"), ("x-trace", "a")],
        "",
    )
    .await;
    let other_trace = post(
        &pool,
        &url,
        &[(KEY, "h"), ("x-amount", "5"), ("x-trace", "b")],
        "",
    )
    .await;
    assert!(other_trace.replayed);
    let other_amount = post(&pool, &url, &[(KEY, "h"), ("x-amount", "6")], "").await;
    assert_eq!(other_amount.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn keys_of_another_scope_are_never_shared() {
    let server = serve(layer()).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    let alice = post(
        &pool,
        &url,
        &[(KEY, "1"), ("authorization", "Bearer alice")],
        "a",
    )
    .await;
    let bob = post(
        &pool,
        &url,
        &[(KEY, "1"), ("authorization", "Bearer bob")],
        "b",
    )
    .await;
    let nobody = post(&pool, &url, &[(KEY, "1")], "c").await;
    for answer in [&alice, &bob, &nobody] {
        assert!(!answer.replayed, "{answer:?}");
    }
    assert_eq!(server.runs(), 3);
    // Each scope gets its own answer back, and Bob's other body is no mismatch of Alice's.
    let bob_again = post(
        &pool,
        &url,
        &[(KEY, "1"), ("authorization", "Bearer bob")],
        "b",
    )
    .await;
    assert_eq!(
        (bob_again.replayed, bob_again.body.as_str()),
        (true, "run 2: b")
    );
    assert_eq!(server.runs(), 3);
}

#[tokio::test]
async fn a_scope_of_the_servers_choosing_separates_tenants() {
    let tenant = Scope::new(|parts: &http::request::Parts| {
        let value = parts.headers.get("x-tenant").map(|v| v.as_bytes().to_vec());
        value.unwrap_or_default()
    });
    let server = serve(layer().scoped_by(tenant)).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    post(&pool, &url, &[(KEY, "1"), ("x-tenant", "a")], "").await;
    let same_tenant = post(
        &pool,
        &url,
        &[(KEY, "1"), ("x-tenant", "a"), ("authorization", "x")],
        "",
    )
    .await;
    assert!(
        same_tenant.replayed,
        "the scope is the tenant, not the Authorization header"
    );
    let other = post(&pool, &url, &[(KEY, "1"), ("x-tenant", "b")], "").await;
    assert!(!other.replayed);
    assert_eq!(server.runs(), 2);
}

#[tokio::test]
async fn method_and_path_are_part_of_the_key() {
    let server = serve(layer()).await;
    let pool = pool();
    post(&pool, &format!("{}/a", server.url), &[(KEY, "1")], "").await;
    post(&pool, &format!("{}/b", server.url), &[(KEY, "1")], "").await;
    call(
        &pool,
        "PUT",
        &format!("{}/a", server.url),
        &[(KEY, "1")],
        "",
    )
    .await;
    assert_eq!(server.runs(), 3);
}

#[tokio::test]
async fn malformed_keys_get_400_and_run_nothing() {
    let server = serve(layer().with_max_key_len(8)).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    for value in [
        "\"\"",
        "123456789",
        "\"a b\"",
        "\"open",
        "\"a\\nb\"",
        "\"a\";p=1",
    ] {
        let answer = post(&pool, &url, &[(KEY, value)], "").await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{value}");
        assert_eq!(
            answer.code.as_deref(),
            Some("bad-idempotency-key"),
            "{value}"
        );
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/problem+json")
        );
    }
    let twice = post(&pool, &url, &[(KEY, "a"), (KEY, "a")], "").await;
    assert_eq!(twice.code.as_deref(), Some("bad-idempotency-key"));
    assert_eq!(server.runs(), 0);
    assert!(server.layer.records().is_empty());
}

#[tokio::test]
async fn without_a_key_a_request_runs_unprotected_unless_a_key_is_required() {
    let server = serve(layer()).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    for _ in 0..2 {
        assert_eq!(post(&pool, &url, &[], "").await.status, StatusCode::CREATED);
    }
    assert_eq!(server.runs(), 2);
    let strict = serve(layer().requiring_key()).await;
    let answer = post(&pool, &format!("{}/charge", strict.url), &[], "").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.code.as_deref(), Some("idempotency-key-missing"));
    assert_eq!(strict.runs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drafts_409_for_a_duplicate_in_flight_where_configured() {
    let server = serve(layer().conflicting_in_flight()).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    let running = {
        let (pool, url) = (pool.clone(), url.clone());
        tokio::spawn(
            async move { post(&pool, &url, &[(KEY, "slow"), ("delay-ms", "400")], "").await },
        )
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let duplicate = post(&pool, &url, &[(KEY, "slow"), ("delay-ms", "400")], "").await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    assert_eq!(duplicate.code.as_deref(), Some("idempotency-key-in-flight"));
    assert_eq!(duplicate.retry_after.as_deref(), Some("1"));
    let first = running.await.unwrap();
    assert!(!first.replayed, "{first:?}");
    let after = post(&pool, &url, &[(KEY, "slow"), ("delay-ms", "400")], "").await;
    assert_eq!((after.replayed, &after.body), (true, &first.body));
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn a_full_table_answers_503_with_retry_after_and_runs_nothing() {
    let server = serve(layer().with_max_records(2)).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    post(&pool, &url, &[(KEY, "1")], "").await;
    post(&pool, &url, &[(KEY, "2")], "").await;
    let third = post(&pool, &url, &[(KEY, "3")], "").await;
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.code.as_deref(), Some("table-full"));
    assert_eq!(third.retry_after.as_deref(), Some("1"));
    assert_eq!(server.runs(), 2);
    // The records kept are not evicted for it: both still answer from their record.
    assert!(post(&pool, &url, &[(KEY, "1")], "").await.replayed);
    assert!(post(&pool, &url, &[(KEY, "2")], "").await.replayed);
    assert_eq!(server.runs(), 2);
}

#[tokio::test]
async fn a_budget_that_cannot_take_a_new_key_answers_503_and_runs_nothing() {
    // Room for reading one response and a record, not for a second beside the first.
    let server = serve(IdempotencyLayer::new(
        BODY_LIMIT,
        Budget::new(BODY_LIMIT + 400),
    ))
    .await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    let first = post(&pool, &url, &[(KEY, "1")], "").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = post(&pool, &url, &[(KEY, "2")], "").await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.code.as_deref(), Some("over-budget"));
    assert_eq!(second.retry_after.as_deref(), Some("1"));
    assert_eq!(server.runs(), 1);
    // A duplicate needs no room: it is answered from its record.
    assert!(post(&pool, &url, &[(KEY, "1")], "").await.replayed);
}

#[tokio::test]
async fn a_key_sent_again_after_its_retention_runs_once_more() {
    let server = serve(layer().with_retention(Duration::from_millis(300))).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    post(&pool, &url, &[(KEY, "r")], "").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        post(&pool, &url, &[(KEY, "r")], "").await.replayed,
        "within the retention"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = post(&pool, &url, &[(KEY, "r")], "").await;
    assert_eq!((after.replayed, after.body.as_str()), (false, "run 2: "));
    assert_eq!(server.runs(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_starts_when_the_run_ends_however_long_it_runs() {
    let server = serve(layer().with_retention(Duration::from_millis(200))).await;
    let pool = pool();
    let url = format!("{}/charge", server.url);
    let slow = [(KEY, "long"), ("delay-ms", "600")];
    let running = {
        let (pool, url) = (pool.clone(), url.clone());
        tokio::spawn(async move { post(&pool, &url, &slow, "").await })
    };
    // Past a retention while it runs: a duplicate still waits for it.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let duplicate = post(&pool, &url, &slow, "").await;
    let first = running.await.unwrap();
    assert_eq!((duplicate.replayed, &duplicate.body), (true, &first.body));
    assert!(
        post(&pool, &url, &slow, "").await.replayed,
        "just after the run ended"
    );
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn a_body_cut_in_transit_leaves_no_record_and_the_resend_runs() {
    use tokio::io::AsyncWriteExt;
    let server = serve(layer()).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut cut = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /charge HTTP/1.1\r\nhost: {addr}\r\n{KEY}: \"torn\"\r\ncontent-length: 10\r\n\r\n5 E"
    );
    cut.write_all(head.as_bytes()).await.unwrap();
    drop(cut); // the connection is cut after 3 of the 10 bytes
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.layer.records().is_empty(), "nothing was looked up");
    let pool = pool();
    let whole = post(
        &pool,
        &format!("{}/charge", server.url),
        &[(KEY, "\"torn\"")],
        "5 EUR 0000",
    )
    .await;
    assert_eq!(
        (whole.replayed, whole.body.as_str()),
        (false, "run 1: 5 EUR 0000")
    );
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn a_new_key_makes_room_by_evicting_idle_sessions_of_a_shared_table_never_records() {
    use exactly_once::table::TableConfig;
    use exactly_once::tower::HttpLayer;
    // A numbered-session server whose idle session retains most of the budget.
    let budget = Budget::new(BODY_LIMIT * 3 / 2);
    let sessions =
        tower_support::serve_layer(HttpLayer::new(BODY_LIMIT, TableConfig::default(), budget))
            .await;
    let pool = pool();
    let id = tower_support::create_session(&pool, &sessions).await;
    let size = (BODY_LIMIT * 9 / 10).to_string();
    let big = tower_support::request(&sessions.url("/big"), Some(&id), 1, &[("size", &size)], "");
    assert_eq!(tower_support::send(&pool, big).await.status, StatusCode::OK);
    let table = sessions.layer.sessions().clone();
    // Beside it, the mode sharing its table: a new key needs room for a whole response.
    let server = serve(layer().sharing(table.clone())).await;
    let url = format!("{}/charge", server.url);
    let first = post(&pool, &url, &[(KEY, "room")], "").await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(table.len(), 0, "the idle session was evicted for it");
    // The record stays, counted in the shared budget; a duplicate is answered from it.
    let kept = table.budget().used();
    assert!(
        kept > 0 && kept < BODY_LIMIT,
        "the record and its response are counted"
    );
    assert!(post(&pool, &url, &[(KEY, "room")], "").await.replayed);
    assert_eq!(server.runs(), 1);
}
