//! A session's rules, as the in-memory table has them, on the store: numbers that skip
//! ahead, ending, idle expiry by a sweep, ids from any replica.

mod support;

use exactly_once::tower::SKIPPED_HEADER;
use exactly_once_postgres::StoreConfig;
use http::StatusCode;
use std::time::Duration;
use support::{Db, Replica};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_that_skips_ahead_runs_marked_and_the_numbers_it_skipped_are_stale() {
    let Some(db) = Db::start("a_number_that_skips_ahead_runs_marked").await else {
        return;
    };
    let (a, b) = (db.replica(), db.replica());
    let session = a.create().await;
    let third = a.call(&session, 3, "x").await;
    assert_eq!(third.status, StatusCode::OK, "{third:?}");
    assert_eq!(third.header(SKIPPED_HEADER).as_deref(), Some("2"));
    assert_eq!(
        b.call(&session, 3, "x").await,
        third,
        "the mark is replayed too"
    );
    assert_eq!(
        b.call(&session, 2, "x").await.code().as_deref(),
        Some("stale")
    );
    assert_eq!(db.ledger(&format!("{session}-2")).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_unknown_on_every_replica() {
    let Some(db) = Db::start("an_ended_session_is_unknown").await else {
        return;
    };
    let (a, b) = (db.replica(), db.replica());
    let session = b.create().await;
    assert_eq!(a.call(&session, 1, "x").await.status, StatusCode::OK);
    assert_eq!(b.call(&session, 1, "x").await.status, StatusCode::OK);
    let ended = a.end(&session).await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{ended:?}");
    for replica in [&a, &b] {
        let after = replica.call(&session, 2, "y").await;
        assert_eq!(
            after.code().as_deref(),
            Some("unknown-session"),
            "{after:?}"
        );
    }
    assert_eq!(
        b.end(&session).await.code().as_deref(),
        Some("unknown-session")
    );
    assert_eq!(db.ledger(&format!("{session}-2")).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_by_the_sweep_and_a_running_one_does_not() {
    let Some(db) = Db::start("idle_sessions_expire_by_the_sweep").await else {
        return;
    };
    let patient = db.replica(); // 600 s idle, 10 s unused
    let strict_on_unused = Replica::on(
        db.config.clone(),
        StoreConfig {
            unused_expiry: Duration::ZERO,
            ..StoreConfig::default()
        },
    );
    let hasty = Replica::on(
        db.config.clone(),
        StoreConfig {
            idle_expiry: Duration::ZERO,
            unused_expiry: Duration::ZERO,
            ..StoreConfig::default()
        },
    );
    let idle = patient.create().await;
    assert_eq!(patient.call(&idle, 1, "x").await.status, StatusCode::OK);
    let unused = patient.create().await;
    assert_eq!(patient.sweep_now().await, 0, "nothing is that old yet");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        strict_on_unused.sweep_now().await,
        1,
        "a session never used goes first"
    );
    let gone = patient.call(&unused, 1, "x").await;
    assert_eq!(gone.code().as_deref(), Some("unknown-session"), "{gone:?}");

    let running = patient.create().await;
    let (pid, go) = patient.hooks.pause_next();
    let run = patient.spawn_call(&running, 1, "x");
    pid.await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        hasty.sweep_now().await,
        1,
        "the idle session goes; the running one is skipped"
    );
    go.send(()).unwrap();
    assert_eq!(run.await.unwrap().status, StatusCode::OK, "and commits");

    let expired = patient.call(&idle, 2, "y").await;
    assert_eq!(
        expired.code().as_deref(),
        Some("unknown-session"),
        "{expired:?}"
    );
    assert_eq!(patient.call(&running, 2, "y").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_made_by_any_replica_are_distinct_and_not_sequential() {
    let Some(db) = Db::start("ids_made_by_any_replica_are_distinct").await else {
        return;
    };
    let replicas = [db.replica(), db.replica(), db.replica()];
    let mut ids = Vec::new();
    for i in 0..30 {
        let id = replicas[i % 3].create().await;
        ids.push(u64::from_str_radix(&id, 16).unwrap());
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len());
    // 64 random bits: the high bits of 30 ids are not all zero, nor increasing.
    assert!(ids.iter().any(|id| id >> 60 != 0));
    assert!(!ids.windows(2).all(|w| w[0] < w[1]));
}
