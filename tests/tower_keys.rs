//! A key that two parties could read differently runs nothing: a session or request
//! header given twice is refused (400, `duplicate-key`), whatever the values, and the
//! session goes on as if the request had not come.
#![cfg(feature = "tower")]

mod tower_support;

use exactly_once::table::TableConfig;
use exactly_once::tower::{SessionId, REQUEST_HEADER, SESSION_HEADER};
use http::StatusCode;
use tower_support::{create_session, pool, request, send, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_header_given_twice_runs_nothing_and_the_session_goes_on() {
    let server = serve(TableConfig::default()).await;
    let pool = pool();
    let id = create_session(&pool, &server).await;
    let other = create_session(&pool, &server).await;
    let unknown = SessionId::new(0x0123_4567_89ab_cdef).unwrap().to_string();
    let url = server.url("/count");
    // Each case: the request as built, then the header appended a second time.
    let cases: [(&str, &str); 6] = [
        (REQUEST_HEADER, "2"),
        (REQUEST_HEADER, "1"),
        (SESSION_HEADER, &other),
        (SESSION_HEADER, &unknown),
        (SESSION_HEADER, "new"),
        (SESSION_HEADER, &id),
    ];
    for (name, second) in cases {
        let mut twice = request(&url, Some(&id), 1, &[], "twice");
        twice.headers_mut().append(name, second.parse().unwrap());
        let answer = send(&pool, twice).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name}: {second}");
        assert_eq!(
            answer.code.as_deref(),
            Some("duplicate-key"),
            "{name}: {second}"
        );
    }
    let mut created_twice = request(&url, Some("new"), 0, &[], "");
    created_twice
        .headers_mut()
        .append(SESSION_HEADER, "new".parse().unwrap());
    let answer = send(&pool, created_twice).await;
    assert_eq!(answer.code.as_deref(), Some("duplicate-key"));
    assert_eq!(server.layer.sessions().len(), 2, "no session was created");
    assert_eq!(server.runs(), 0);
    // Number 1 of either session is still to run.
    let first = send(&pool, request(&url, Some(&id), 1, &[], "once")).await;
    assert_eq!(first.body, "run 1: once");
    let first = send(&pool, request(&url, Some(&other), 1, &[], "other")).await;
    assert_eq!(first.body, "run 2: other");
}
