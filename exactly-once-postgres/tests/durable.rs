//! The store's guarantees, one test per row of the issue: each test starts its own
//! PostgreSQL (or uses `DATABASE_URL`), and "replicas" are layer instances with stores
//! of their own on the same database.

mod support;

use http::StatusCode;
use support::Db;

/// The ledger key of call `number` of `session`, as the handler writes it.
fn key(session: &str, number: u64) -> String {
    format!("{session}-{number}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_run_replays_on_another_replica_and_runs_nothing() {
    let Some(db) = Db::start("a_committed_run_replays_on_another_replica").await else {
        return;
    };
    let (a, b, c) = (db.replica(), db.replica(), db.replica());
    let session = a.create().await;
    let first = a.call(&session, 1, "one").await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert!(first.body.ends_with("ran, 1 row(s), body one"), "{first:?}");

    let resend = b.call(&session, 1, "one").await;
    assert_eq!(resend, first, "replica b replays a's answer");
    assert_eq!(db.ledger(&key(&session, 1)).await, 1, "and runs nothing");

    let second = b.call(&session, 2, "two").await;
    assert_eq!(second.status, StatusCode::OK, "{second:?}");
    assert_eq!(
        c.call(&session, 1, "one").await.code().as_deref(),
        Some("stale"),
        "once 2 has committed, 1's response is dropped: a replica that never saw 1 says stale"
    );
    assert_eq!(c.call(&session, 2, "two").await, second);
    assert_eq!(db.ledger(&key(&session, 2)).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_failure_rolls_back_and_the_resend_runs_once() {
    let Some(db) = Db::start("a_handler_failure_rolls_back").await else {
        return;
    };
    let (a, b) = (db.replica(), db.replica());
    let session = a.create().await;

    a.hooks.fail.store(1, std::sync::atomic::Ordering::SeqCst);
    let failed = a.call(&session, 1, "x").await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{failed:?}"
    );
    assert_eq!(failed.code(), None, "the handler's own 500 is passed on");
    assert_eq!(
        db.ledger(&key(&session, 1)).await,
        0,
        "its write was rolled back"
    );

    let ran = a.call(&session, 1, "x").await;
    assert_eq!(ran.status, StatusCode::OK, "the resend runs: {ran:?}");
    assert!(ran.body.contains("1 row(s)"), "{ran:?}");
    assert_eq!(
        b.call(&session, 1, "x").await,
        ran,
        "and is replayed, not run, after that"
    );

    a.hooks.panic.store(1, std::sync::atomic::Ordering::SeqCst);
    let panicked = a.call(&session, 2, "y").await;
    assert_eq!(
        panicked.code().as_deref(),
        Some("rolled-back"),
        "{panicked:?}"
    );
    assert_eq!(
        db.ledger(&key(&session, 2)).await,
        0,
        "the panicking run's write is gone"
    );
    let ran = a.call(&session, 2, "y").await;
    assert_eq!(ran.status, StatusCode::OK, "{ran:?}");
    assert_eq!(db.ledger(&key(&session, 2)).await, 1);
}
