//! The HTTP layer's memory admission, attacked beside a bystander: room for a call is
//! made by evicting sessions without a connection that retain a response, a copy that
//! only waits for another copy's outcome holds no room, and a waiting copy whose caller
//! went away stops waiting; a session has at most a set number of waiting copies.
//! Every test counts the handler's runs.
#![cfg(feature = "tower")]

mod tower_support;

use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::HttpLayer;
use http::StatusCode;
use std::time::Duration;
use tower_support::{
    bystander_calls, create_session, pool, report_attack, request, send, serve_layer, BODY_LIMIT,
};

/// A server whose budget holds `limits` times the body limit, and which lets up to 64
/// copies of a session's requests wait at once.
async fn server_with_budget(limits: usize) -> tower_support::TestServer {
    let budget = Budget::new(BODY_LIMIT * limits);
    let layer = HttpLayer::new(BODY_LIMIT, TableConfig::default(), budget);
    serve_layer(layer.with_max_waiting_copies(64)).await
}

/// Sends `request` in a task of its own.
fn spawn_send(
    pool: &tower_support::HttpPool,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> tokio::task::JoinHandle<tower_support::Answer> {
    let pool = pool.clone();
    tokio::spawn(async move { send(&pool, request).await })
}

/// Honest clients that each fetched a response of almost the body limit and went idle
/// retain almost the whole budget: a newcomer's call evicts the longest idle of them
/// instead of being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_retaining_responses_do_not_lock_out_a_newcomer() {
    let server = server_with_budget(8).await;
    let pool = pool();
    let size = (BODY_LIMIT * 9 / 10).to_string();
    let mut crowd = Vec::new();
    for _ in 0..8 {
        let id = create_session(&pool, &server).await;
        let fetched = send(
            &pool,
            request(&server.url("/big"), Some(&id), 1, &[("size", &size)], ""),
        )
        .await;
        assert_eq!(fetched.status, StatusCode::OK);
        crowd.push(id);
    }
    let retained = server.layer.sessions().budget().used();
    assert!(
        retained + BODY_LIMIT > BODY_LIMIT * 8,
        "the crowd retains {retained} bytes: no room for a call is left"
    );
    // The bystander: a new session and 20 calls, every one answered.
    let bystander = create_session(&pool, &server).await;
    for m in 1..=20 {
        let answer = send(
            &pool,
            request(&server.url("/count"), Some(&bystander), m, &[], "b"),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "call {m}: {answer:?}");
    }
    assert_eq!(server.runs(), 8 + 20);
    report_attack(
        "8 idle sessions retaining ~the budget",
        "20/20 calls",
        &format!("{} KiB retained before", retained >> 10),
    );
    // The longest idle gave way; a client whose session was evicted is told so (an
    // error, never a second run).
    let evicted = send(
        &pool,
        request(
            &server.url("/big"),
            Some(&crowd[0]),
            1,
            &[("size", &size)],
            "",
        ),
    )
    .await;
    assert_eq!(evicted.code.as_deref(), Some("unknown-session"));
    assert_eq!(server.runs(), 8 + 20);
}

/// Copies of a slow request that only wait for its outcome hold no room: they all get
/// its answer, and a bystander's call still fits beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_waiting_for_a_slow_request_hold_no_room() {
    let server = server_with_budget(3).await;
    let pool = pool();
    let (slow, bystander) = (
        create_session(&pool, &server).await,
        create_session(&pool, &server).await,
    );
    let url = server.url("/count");
    let delay = [("delay-ms", "600")];
    let first = spawn_send(&pool, request(&url, Some(&slow), 1, &delay, "s"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resends: Vec<_> = (0..20)
        .map(|_| spawn_send(&pool, request(&url, Some(&slow), 1, &delay, "s")))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let used = server.layer.sessions().budget().used();
    let answered = bystander_calls(&pool, &server, &bystander, 5, Duration::ZERO, || ()).await;
    report_attack(
        "20 resends of one slow request",
        &format!("{answered}/5 calls"),
        &format!("budget in use {} KiB while they wait", used >> 10),
    );
    assert_eq!(answered, 5, "the bystander's calls");
    let first = first.await.unwrap();
    assert!(first.body.ends_with(": s"), "{first:?}");
    for resend in resends {
        assert_eq!(resend.await.unwrap(), first);
    }
    assert_eq!(server.runs(), 1 + 5);
}

/// A copy waiting for a slow request whose caller goes away (its connection closed)
/// stops waiting at once: no task is left waiting for it, and the run still answers
/// the next resend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_resends_whose_callers_left_stop_waiting() {
    let server = server_with_budget(64).await;
    let pool = pool();
    let slow = create_session(&pool, &server).await;
    let url = server.url("/count");
    let delay = [("delay-ms", "1500")];
    let first = spawn_send(&pool, request(&url, Some(&slow), 1, &delay, "s"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    // 50 resends, each from a connection of its own, given up by their callers.
    let cut: Vec<_> = (0..50)
        .map(|_| {
            let req = request(&url, Some(&slow), 1, &delay, "s");
            tokio::spawn(async move {
                let pool = tower_support::pool();
                let sent = tokio::time::timeout(Duration::from_millis(150), pool.request(req));
                assert!(sent.await.is_err(), "the resend waits for the slow run");
            })
        })
        .collect();
    for c in cut {
        c.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = metrics.num_alive_tasks();
    report_attack(
        "50 waiting resends whose callers left",
        "the resend after: answered",
        &format!("tasks {before} -> {after}"),
    );
    assert!(
        after < before + 10,
        "{before} tasks before the cut resends, {after} after them"
    );
    assert_eq!(first.await.unwrap().body, "run 1: s");
    let resend = send(&pool, request(&url, Some(&slow), 1, &delay, "s")).await;
    assert_eq!(resend.body, "run 1: s");
    assert_eq!(server.runs(), 1);
}

/// At most the configured number of copies of one session's requests wait at once;
/// the others are told at once to try again later (503 with `Retry-After`), and the
/// request still runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_copies_past_the_cap_are_told_to_come_back() {
    let budget = Budget::new(BODY_LIMIT * 64);
    let layer = HttpLayer::new(BODY_LIMIT, TableConfig::default(), budget);
    let server = serve_layer(layer.with_max_waiting_copies(4)).await;
    let pool = pool();
    let slow = create_session(&pool, &server).await;
    let url = server.url("/count");
    let delay = [("delay-ms", "600")];
    let first = spawn_send(&pool, request(&url, Some(&slow), 1, &delay, "s"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let copies: Vec<_> = (0..12)
        .map(|_| spawn_send(&pool, request(&url, Some(&slow), 1, &delay, "s")))
        .collect();
    let first = first.await.unwrap();
    let (mut answered, mut told_to_come_back) = (0, 0);
    for copy in copies {
        let answer = copy.await.unwrap();
        if answer == first {
            answered += 1;
        } else {
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
            assert_eq!(answer.code.as_deref(), Some("still-running"));
            assert_eq!(answer.retry_after.as_deref(), Some("1"));
            told_to_come_back += 1;
        }
    }
    assert!(answered <= 4, "{answered} copies waited");
    report_attack(
        "12 copies of one request, cap 4",
        "the run answered once",
        &format!("{answered} waited, {told_to_come_back} told 503 + Retry-After"),
    );
    assert_eq!(answered + told_to_come_back, 12);
    let later = send(&pool, request(&url, Some(&slow), 1, &delay, "s")).await;
    assert_eq!(later, first);
    assert_eq!(server.runs(), 1);
}

/// Clients that announce a body and send only its first kilobyte hold only what they
/// sent: a bystander's calls fit beside 80 of them in a budget of 8 body limits (before
/// bodies were charged as they arrive, each held the whole limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_hold_only_what_has_arrived() {
    use tokio::io::AsyncWriteExt;
    let server = server_with_budget(8).await;
    let pool = pool();
    let (victim, bystander) = (
        create_session(&pool, &server).await,
        create_session(&pool, &server).await,
    );
    let mut slow = Vec::new();
    for m in 1..=80u64 {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /count HTTP/1.1\r\nhost: x\r\nexactly-once-session: {victim}\r\n\
             exactly-once-request: {m}\r\ncontent-length: {}\r\n\r\n",
            BODY_LIMIT - 1024
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[b'x'; 1024]).await.unwrap();
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let used = server.layer.sessions().budget().used();
    let answered = bystander_calls(&pool, &server, &bystander, 20, Duration::ZERO, || ()).await;
    report_attack(
        "80 request bodies stalled after 1 KiB",
        &format!("{answered}/20 calls"),
        &format!("budget in use {} KiB", used >> 10),
    );
    assert_eq!(answered, 20);
    assert!(used <= 80 * 4096, "{used} bytes held for 80 KiB sent");
    drop(slow);
    assert_eq!(server.runs(), 20);
}
