//! The HTTP layer with real servers and clients over loopback: each test counts the
//! handler's runs.
#![cfg(feature = "tower")]

mod tower_support;

use exactly_once::table::TableConfig;
use exactly_once::tower::SessionId;
use http::StatusCode;
use std::time::Duration;
use tower_support::{create_session, pool, request, send, serve, Answer};

/// A server with default limits, a pool, and one session on it.
async fn one_session() -> (tower_support::TestServer, tower_support::HttpPool, String) {
    let server = serve(TableConfig::default()).await;
    let pool = pool();
    let id = create_session(&pool, &server).await;
    (server, pool, id)
}

fn refused(status: StatusCode, code: &str) -> impl Fn(&Answer) -> bool + '_ {
    move |a| a.status == status && a.code.as_deref() == Some(code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_number_runs_once_and_a_resend_gets_the_same_answer() {
    let (server, pool, id) = one_session().await;
    let url = server.url("/count");
    let first = send(&pool, request(&url, Some(&id), 1, &[], "a")).await;
    let again = send(&pool, request(&url, Some(&id), 1, &[], "a")).await;
    let second = send(&pool, request(&url, Some(&id), 2, &[], "b")).await;
    assert_eq!(first.body, "run 1: a");
    assert_eq!(again, first);
    assert_eq!(second.body, "run 2: b");
    assert_eq!(server.runs(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_session_runs_nothing_and_a_lost_creation_leaves_an_unused_session_that_expires()
{
    let config = TableConfig {
        unused_expiry: Duration::from_millis(100),
        ..TableConfig::default()
    };
    let server = serve(config).await;
    let pool = pool();
    let lost = create_session(&pool, &server).await;
    let used = create_session(&pool, &server).await;
    assert_ne!(lost, used);
    assert_eq!(server.runs(), 0);
    let url = server.url("/count");
    let answer = send(&pool, request(&url, Some(&used), 1, &[], "x")).await;
    assert_eq!(answer.body, "run 1: x");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.layer.sessions().expire();
    assert_eq!(
        server.layer.sessions().len(),
        1,
        "only the unused session expired"
    );
    let answer = send(&pool, request(&url, Some(&lost), 1, &[], "y")).await;
    assert!(
        refused(StatusCode::NOT_FOUND, "unknown-session")(&answer),
        "{answer:?}"
    );
    assert_eq!(server.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_of_a_slow_request_run_it_once_and_all_get_its_answer() {
    let (server, pool, id) = one_session().await;
    let url = server.url("/count");
    let copies = (0..8).map(|_| {
        let pool = pool.clone();
        let req = request(&url, Some(&id), 1, &[("delay-ms", "300")], "dup");
        tokio::spawn(async move { send(&pool, req).await })
    });
    let copies: Vec<_> = copies.collect();
    for copy in copies {
        assert_eq!(copy.await.unwrap().body, "run 1: dup");
    }
    assert_eq!(server.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_slower_than_any_lease_runs_once_though_its_caller_went_away() {
    let (server, pool, id) = one_session().await;
    let url = server.url("/count");
    let slow = request(&url, Some(&id), 1, &[("delay-ms", "1500")], "slow");
    // The first caller gives up after 100 ms: its connection is dropped mid-run.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), send(&pool, slow)).await;
    assert!(gave_up.is_err());
    for _ in 0..3 {
        let resend = request(&url, Some(&id), 1, &[("delay-ms", "1500")], "slow");
        assert_eq!(send(&pool, resend).await.body, "run 1: slow");
    }
    assert_eq!(server.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_or_panic_abandons_its_request_and_the_session_goes_on() {
    let (server, pool, id) = one_session().await;
    let abandoned = refused(StatusCode::INTERNAL_SERVER_ERROR, "abandoned");
    for (m, path) in [(1, "/fail"), (2, "/panic")] {
        let url = server.url(path);
        let first = send(&pool, request(&url, Some(&id), m, &[], "")).await;
        assert!(abandoned(&first), "{first:?}");
        let resend = send(&pool, request(&url, Some(&id), m, &[], "")).await;
        assert!(abandoned(&resend), "{resend:?}");
    }
    assert_eq!(server.runs(), 2);
    let next = send(
        &pool,
        request(&server.url("/count"), Some(&id), 3, &[], "ok"),
    )
    .await;
    assert_eq!(next.body, "run 3: ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_over_the_limit_abandons_its_request() {
    let (server, pool, id) = one_session().await;
    let url = server.url("/big");
    let size = (tower_support::BODY_LIMIT + 1).to_string();
    let big = [("size", size.as_str())];
    let first = send(&pool, request(&url, Some(&id), 1, &big, "")).await;
    assert!(
        refused(StatusCode::BAD_GATEWAY, "response-too-large")(&first),
        "{first:?}"
    );
    let resend = send(&pool, request(&url, Some(&id), 1, &big, "")).await;
    assert!(refused(StatusCode::INTERNAL_SERVER_ERROR, "abandoned")(
        &resend
    ));
    let fits = tower_support::BODY_LIMIT.to_string();
    let answer = send(&pool, request(&url, Some(&id), 2, &[("size", &fits)], "")).await;
    assert_eq!(answer.body.len(), tower_support::BODY_LIMIT);
    assert_eq!(server.runs(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_session_runs_nothing_beside_a_bystander() {
    let server = serve(TableConfig::default()).await;
    let pool = pool();
    let bystander = create_session(&pool, &server).await;
    let url = server.url("/count");
    let guessed = SessionId::new(0x0123_4567_89ab_cdef).unwrap().to_string();
    for m in 1..=20 {
        let answer = send(&pool, request(&url, Some(&guessed), m, &[], "")).await;
        assert!(refused(StatusCode::NOT_FOUND, "unknown-session")(&answer));
        let answer = send(&pool, request(&url, Some(&bystander), m, &[], "b")).await;
        assert_eq!(answer.body, format!("run {m}: b"));
    }
    assert_eq!(server.runs(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_busy_and_malformed_requests_run_nothing() {
    let (server, pool, id) = one_session().await;
    let url = server.url("/count");
    send(&pool, request(&url, Some(&id), 1, &[], "")).await;
    let slow = request(&url, Some(&id), 2, &[("delay-ms", "500")], "");
    let running = tokio::spawn({
        let pool = pool.clone();
        async move { send(&pool, slow).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = send(&pool, request(&url, Some(&id), 3, &[], "")).await;
    assert!(refused(StatusCode::CONFLICT, "busy")(&busy), "{busy:?}");
    assert_eq!(running.await.unwrap().body, "run 2: ");
    let stale = send(&pool, request(&url, Some(&id), 1, &[], "")).await;
    assert!(refused(StatusCode::CONFLICT, "stale")(&stale), "{stale:?}");
    let no_key = send(&pool, request(&url, None, 0, &[], "")).await;
    assert!(refused(StatusCode::BAD_REQUEST, "bad-key")(&no_key));
    let too_big = (exactly_once::RequestNr::MAX + 1).to_string();
    let bad = request(&url, Some(&id), 0, &[], "");
    let mut bad = bad;
    bad.headers_mut()
        .insert("exactly-once-request", too_big.parse().unwrap());
    assert!(refused(StatusCode::BAD_REQUEST, "bad-key")(
        &send(&pool, bad).await
    ));
    assert_eq!(server.runs(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_frees_its_place_and_is_unknown_after() {
    let (server, pool, id) = one_session().await;
    let url = server.url("/count");
    send(&pool, request(&url, Some(&id), 1, &[], "")).await;
    let mut end = request(&url, Some(&id), 0, &[], "");
    *end.method_mut() = http::Method::DELETE;
    let ended = send(&pool, end).await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT);
    assert_eq!(server.layer.sessions().len(), 0);
    let after = send(&pool, request(&url, Some(&id), 2, &[], "")).await;
    assert!(refused(StatusCode::NOT_FOUND, "unknown-session")(&after));
    assert_eq!(server.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_budget_cannot_take_is_refused_before_it_runs_and_runs_once_later() {
    use exactly_once::table::Budget;
    use exactly_once::tower::HttpLayer;
    let limit = tower_support::BODY_LIMIT;
    let budget = Budget::new(limit * 3 / 2);
    let layer = HttpLayer::new(limit, TableConfig::default(), budget);
    let server = tower_support::serve_layer(layer).await;
    let pool = pool();
    let (slow, other) = (
        create_session(&pool, &server).await,
        create_session(&pool, &server).await,
    );
    let url = server.url("/count");
    let running = tokio::spawn({
        let (pool, req) = (
            pool.clone(),
            request(&url, Some(&slow), 1, &[("delay-ms", "400")], "s"),
        );
        async move { send(&pool, req).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused_now = send(&pool, request(&url, Some(&other), 1, &[], "o")).await;
    assert!(
        refused(StatusCode::SERVICE_UNAVAILABLE, "over-budget")(&refused_now),
        "{refused_now:?}"
    );
    assert_eq!(refused_now.retry_after.as_deref(), Some("1"));
    assert_eq!(running.await.unwrap().body, "run 1: s");
    let later = send(&pool, request(&url, Some(&other), 1, &[], "o")).await;
    assert_eq!(later.body, "run 2: o");
    assert_eq!(server.runs(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_connection_is_cut_finishes_and_its_resend_gets_the_answer() {
    use tower_support::proxy::{self, Cut, Faults};
    let server = serve(TableConfig::default()).await;
    let faults = Faults::planned([Cut::AfterRequest]);
    let proxy = proxy::start(server.addr, std::sync::Arc::clone(&faults)).await;
    let pool = pool();
    let id = create_session(&pool, &server).await;
    let slow = [("delay-ms", "300")];
    let via_proxy = request(&format!("http://{proxy}/count"), Some(&id), 1, &slow, "cut");
    assert!(
        pool.request(via_proxy).await.is_err(),
        "the connection is cut"
    );
    assert_eq!(faults.total_cuts(), 1);
    let resend = send(
        &pool,
        request(&server.url("/count"), Some(&id), 1, &slow, "cut"),
    )
    .await;
    assert_eq!(resend.body, "run 1: cut");
    assert_eq!(server.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_router_wrapped_once_runs_each_number_once_and_answers_in_axum_bodies() {
    use axum::{routing::post, Router, ServiceExt};
    use exactly_once::table::Budget;
    use exactly_once::tower::HttpLayer;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tower_layer::Layer;

    let runs = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&runs);
    let router = Router::new()
        .route(
            "/count",
            post(move |body: String| async move {
                let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
                format!("run {run}: {body}")
            }),
        )
        .with_state(());
    let layer = HttpLayer::new(1 << 10, TableConfig::default(), Budget::new(1 << 20));
    let app = layer.answering(axum::body::Body::new).layer(router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let make = ServiceExt::<axum::extract::Request>::into_make_service(app);
    tokio::spawn(async move { axum::serve(listener, make).await });

    let pool = pool();
    let url = format!("http://{addr}/count");
    let created = send(&pool, request(&url, Some("new"), 0, &[], "")).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.session.unwrap();
    let first = send(&pool, request(&url, Some(&id), 1, &[], "a")).await;
    let again = send(&pool, request(&url, Some(&id), 1, &[], "a")).await;
    assert_eq!(first.body, "run 1: a");
    assert_eq!(again, first);
    // A path the router does not know is the router's answer (404), kept like any other.
    let missing = format!("http://{addr}/missing");
    let not_found = send(&pool, request(&missing, Some(&id), 2, &[], "b")).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_eq!(not_found.code, None);
    let stale = send(&pool, request(&url, Some(&id), 1, &[], "a")).await;
    assert!(refused(StatusCode::CONFLICT, "stale")(&stale), "{stale:?}");
    let unknown = SessionId::new(1).unwrap().to_string();
    let refusal = send(&pool, request(&url, Some(&unknown), 1, &[], "a")).await;
    assert!(refused(StatusCode::NOT_FOUND, "unknown-session")(&refusal));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
