//! What a call costs the database: statements (counted by the server, in
//! `pg_stat_statements`, and by the store) and round trips (counted by the store),
//! against a bare handler that inserts the same row in its own transaction.

mod support;

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use exactly_once::tower::{REQUEST_HEADER, SESSION_HEADER};
use exactly_once_postgres::testing::server_statements;
use exactly_once_postgres::{pool, DurableLayer, PgStore, RunKey, RunTransaction};
use http::{Request, StatusCode};
use support::{connect, Db};
use tower::ServiceExt;
use tower_layer::Layer;

/// The handler of both: one row.
async fn insert(tx: RunTransaction, key: RunKey) -> &'static str {
    let client = tx.client().await.unwrap();
    client
        .execute(
            "INSERT INTO ledger (key, body) VALUES ($1, '')",
            &[&key.to_string()],
        )
        .await
        .unwrap();
    "ok"
}

/// The same row written by a bare handler in its own transaction, no exactly-once.
async fn insert_bare(client: &mut tokio_postgres::Client, key: &str) {
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO ledger (key, body) VALUES ($1, '')", &[&key])
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

const CALLS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_costs_the_round_trips_of_a_bare_handler_and_a_duplicate_in_process_none() {
    let Some(db) = Db::start("a_call_costs_the_round_trips_of_a_bare_handler").await else {
        return;
    };
    let admin = connect(&db.config).await;
    let server_counts = db.pg.counts_statements();
    if server_counts {
        admin
            .batch_execute("CREATE EXTENSION pg_stat_statements")
            .await
            .unwrap();
    } else {
        eprintln!("(pg_stat_statements not installed: the store's own counts only)");
    }
    let store = PgStore::new(pool(db.config.clone(), 4), Default::default());
    let service = DurableLayer::new(store.clone()).layer(Router::new().route("/", post(insert)));
    let call = |session: String, number: u64| {
        let service = service.clone();
        async move {
            let request = Request::post("/")
                .header(SESSION_HEADER, session)
                .header(REQUEST_HEADER, number.to_string())
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap();
            service.oneshot(request).await.unwrap().status()
        }
    };
    let mut bare = connect(&db.config).await;
    // Warm-up: statements are prepared once per connection, outside the counts.
    let session = {
        let request = Request::post("/")
            .header(SESSION_HEADER, "new")
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let created = service.clone().oneshot(request).await.unwrap();
        created.headers()[SESSION_HEADER]
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(call(session.clone(), 1).await, StatusCode::OK);
    insert_bare(&mut bare, "warm-up").await;

    // The bare handler: BEGIN, INSERT, COMMIT, each a round trip.
    if server_counts {
        admin
            .batch_execute("SELECT pg_stat_statements_reset()")
            .await
            .unwrap();
    }
    for n in 0..CALLS {
        insert_bare(&mut bare, &format!("bare-{n}")).await;
    }
    let bare_statements = if server_counts {
        server_statements(&admin).await.unwrap() as i64
    } else {
        3 * CALLS as i64
    };
    let bare_round_trips = 3 * CALLS;

    // The store: BEGIN with the claim, the handler's INSERT, the record with COMMIT.
    if server_counts {
        admin
            .batch_execute("SELECT pg_stat_statements_reset()")
            .await
            .unwrap();
    }
    let before = store.counters();
    for n in 2..2 + CALLS {
        assert_eq!(call(session.clone(), n).await, StatusCode::OK);
    }
    let after = store.counters();
    let handler_round_trips = CALLS; // the INSERT
    let round_trips = after.round_trips - before.round_trips + handler_round_trips;
    let statements = (after.statements - before.statements + CALLS) as i64;
    eprintln!(
        "per call: bare {} statements / {} round trips; store {} / {}",
        bare_statements as f64 / CALLS as f64,
        bare_round_trips as f64 / CALLS as f64,
        statements as f64 / CALLS as f64,
        round_trips as f64 / CALLS as f64,
    );
    assert_eq!(bare_statements, 3 * CALLS as i64, "BEGIN, INSERT, COMMIT");
    assert_eq!(
        statements,
        5 * CALLS as i64,
        "BEGIN, claim, INSERT, record, COMMIT"
    );
    if server_counts {
        assert_eq!(
            server_statements(&admin).await.unwrap() as i64,
            statements,
            "the server counts the same"
        );
    }
    assert!(
        round_trips <= bare_round_trips + CALLS,
        "at most one round trip more per call than the bare handler ({round_trips} vs {bare_round_trips})"
    );
    assert_eq!(round_trips, bare_round_trips, "pipelined: none more at all");

    // A duplicate in the same process: no statement, no round trip.
    let before = store.counters();
    assert_eq!(call(session.clone(), 1 + CALLS).await, StatusCode::OK);
    let after = store.counters();
    assert_eq!(
        (after.statements, after.round_trips),
        (before.statements, before.round_trips)
    );
    assert_eq!(after.answered_locally, before.answered_locally + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_local_limit_is_not_kept_in_memory_and_replays_from_the_database() {
    let Some(db) = Db::start("a_response_over_the_local_limit").await else {
        return;
    };
    let frugal = support::Replica::on(
        db.config.clone(),
        exactly_once_postgres::StoreConfig {
            local_response_limit: 0,
            ..Default::default()
        },
    );
    let session = frugal.create().await;
    let first = frugal.call(&session, 1, "x").await;
    assert_eq!(first.status, StatusCode::OK);
    let before = frugal.store.counters();
    assert_eq!(frugal.call(&session, 1, "x").await, first, "replayed");
    let after = frugal.store.counters();
    assert_eq!(
        after.round_trips - before.round_trips,
        2,
        "from the database: claim, rollback"
    );
    assert_eq!(db.ledger(&format!("{session}-1")).await, 1);
}
