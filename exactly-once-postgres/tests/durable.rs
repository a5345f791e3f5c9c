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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_between_the_write_and_commit_leaves_no_write_and_the_resend_runs_once() {
    let Some(db) = Db::start("a_backend_killed_between_the_write_and_commit").await else {
        return;
    };
    let a = db.replica();
    let session = a.create().await;
    let (pid, go) = a.hooks.pause_next();
    let first = a.spawn_call(&session, 1, "x");
    // The run has written its row and waits before its COMMIT: its backend dies.
    let pid = pid.await.unwrap();
    let admin = support::connect(&db.config).await;
    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    go.send(()).unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE, "{first:?}");
    assert_eq!(
        db.ledger(&key(&session, 1)).await,
        0,
        "the write died with its transaction"
    );

    let ran = a.call_until_settled(&session, 1, "x").await;
    assert_eq!(ran.status, StatusCode::OK, "{ran:?}");
    assert!(ran.body.contains("1 row(s)"), "{ran:?}");
    assert_eq!(db.ledger(&key(&session, 1)).await, 1, "the resend ran once");
    assert_eq!(
        db.replica().call(&session, 1, "x").await,
        ran,
        "and is replayed after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_during_a_run_answers_503_and_the_resend_runs_once() {
    let Some(db) = Db::start("a_database_restart_during_a_run").await else {
        return;
    };
    if !db.pg.can_restart() {
        eprintln!("SKIPPED: DATABASE_URL's server cannot be restarted");
        return;
    }
    let a = db.replica();
    let session = a.create().await;
    assert_eq!(a.call(&session, 1, "x").await.status, StatusCode::OK);
    let (pid, go) = a.hooks.pause_next();
    let second = a.spawn_call(&session, 2, "y");
    pid.await.unwrap();
    let pg = std::sync::Arc::clone(&db.pg);
    tokio::task::spawn_blocking(move || pg.restart())
        .await
        .unwrap();
    go.send(()).unwrap();
    let second = second.await.unwrap();
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE, "{second:?}");
    assert_eq!(
        db.ledger(&key(&session, 2)).await,
        0,
        "the restart rolled the run back"
    );
    assert_eq!(
        db.ledger(&key(&session, 1)).await,
        1,
        "and kept what had committed"
    );

    let ran = a.call_until_settled(&session, 2, "y").await;
    assert_eq!(ran.status, StatusCode::OK, "{ran:?}");
    assert_eq!(db.ledger(&key(&session, 2)).await, 1, "the resend ran once");
    assert_eq!(db.replica().call(&session, 2, "y").await, ran);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_copies_over_three_replicas_run_once_and_answer_alike() {
    let Some(db) = Db::start("sixty_four_copies_over_three_replicas").await else {
        return;
    };
    let replicas = [db.replica(), db.replica(), db.replica()];
    let session = replicas[0].create().await;
    // The first copy on replica 0 holds the row while the others arrive.
    let (pid, go) = replicas[0].hooks.pause_next();
    let mut copies = Vec::new();
    copies.push(replicas[0].spawn_call(&session, 1, "x"));
    pid.await.unwrap();
    for i in 1..64 {
        let (r, s) = (replicas[i % 3].clone(), session.clone());
        copies.push(tokio::spawn(async move { r.call(&s, 1, "x").await }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    go.send(()).unwrap();
    let mut answers = Vec::new();
    for copy in copies {
        answers.push(copy.await.unwrap());
    }
    assert_eq!(answers[0].status, StatusCode::OK, "{:?}", answers[0]);
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "64 identical answers"
    );
    assert_eq!(db.ledger(&key(&session, 1)).await, 1, "one run");
    let locally: u64 = replicas
        .iter()
        .map(|r| r.store.counters().answered_locally)
        .sum();
    assert!(
        locally >= 64 - 3,
        "at most one copy per replica went to the database ({locally} answered in memory)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_without_the_database_where_the_process_can_tell() {
    let Some(db) = Db::start("bad_input_is_answered_without_the_database").await else {
        return;
    };
    let a = db.replica();
    let session = a.create().await;
    assert_eq!(a.call(&session, 1, "x").await.status, StatusCode::OK);
    assert_eq!(a.call(&session, 2, "x").await.status, StatusCode::OK);
    let before = a.store.counters();

    for (id, number, code) in [
        (Some("zz"), Some("1"), "bad-key"),
        (Some("0000000000000000"), Some("1"), "bad-key"),
        (Some(&*session), Some("one"), "bad-key"),
        (None, Some("1"), "bad-key"),
        (Some(&*session), None, "bad-key"),
        (Some(&*session), Some("1"), "stale"),
    ] {
        let answer = a.send(id, number, "x").await;
        assert_eq!(
            answer.code().as_deref(),
            Some(code),
            "{id:?} {number:?}: {answer:?}"
        );
    }
    let duplicate = a.call(&session, 2, "x").await;
    assert_eq!(
        duplicate.status,
        StatusCode::OK,
        "a resend in the same process replays"
    );
    let after = a.store.counters();
    assert_eq!(
        after.statements, before.statements,
        "none of these touched the database"
    );
    assert_eq!(after.answered_locally, before.answered_locally + 2);

    // A well-formed id this process does not know is looked up: the database decides.
    let unknown = a.call("0123456789abcdef", 1, "x").await;
    assert_eq!(
        unknown.code().as_deref(),
        Some("unknown-session"),
        "{unknown:?}"
    );
    assert_eq!(
        a.store.counters().round_trips,
        after.round_trips + 2,
        "claim, rollback"
    );
    assert_eq!(db.ledger("0123456789abcdef-1").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_session_is_refused_in_the_process_that_runs_it() {
    let Some(db) = Db::start("a_busy_session_is_refused").await else {
        return;
    };
    let a = db.replica();
    let session = a.create().await;
    let (pid, go) = a.hooks.pause_next();
    let first = a.spawn_call(&session, 1, "x");
    pid.await.unwrap();
    let before = a.store.counters();
    let busy = a.call(&session, 2, "y").await;
    assert_eq!(busy.code().as_deref(), Some("busy"), "{busy:?}");
    assert_eq!(busy.header("retry-after").as_deref(), Some("1"));
    assert_eq!(a.store.counters().statements, before.statements);
    go.send(()).unwrap();
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    assert_eq!(
        db.ledger(&key(&session, 2)).await,
        0,
        "the busy copy ran nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_during_commit_answers_503_and_the_resend_replays_or_runs_once() {
    use support::cut::Cut;
    let Some(db) = Db::start("a_connection_cut_during_commit").await else {
        return;
    };
    let Some((cutter, through)) = db.through_commit_cutter().await else {
        return;
    };
    let a = support::Replica::on(through, Default::default());
    let session = a.create().await;

    // The COMMIT reaches the server; its answer never comes back.
    cutter.arm(Cut::AnswerLost);
    let lost = a.call(&session, 1, "x").await;
    assert_eq!(lost.status, StatusCode::SERVICE_UNAVAILABLE, "{lost:?}");
    assert_eq!(
        lost.code().as_deref(),
        Some("outcome-unknown"),
        "never abandoned"
    );
    assert_eq!(db.ledger(&key(&session, 1)).await, 1, "it committed");
    let replayed = a.call_until_settled(&session, 1, "x").await;
    assert_eq!(replayed.status, StatusCode::OK, "{replayed:?}");
    assert!(replayed.body.contains("1 row(s)"), "{replayed:?}");
    assert_eq!(
        db.ledger(&key(&session, 1)).await,
        1,
        "the resend replays it"
    );

    // The connection closes before the COMMIT reaches the server.
    cutter.arm(Cut::CommitLost);
    let lost = a.call(&session, 2, "y").await;
    assert_eq!(lost.status, StatusCode::SERVICE_UNAVAILABLE, "{lost:?}");
    assert_eq!(db.ledger(&key(&session, 2)).await, 0, "nothing committed");
    let ran = a.call_until_settled(&session, 2, "y").await;
    assert_eq!(ran.status, StatusCode::OK, "{ran:?}");
    assert_eq!(db.ledger(&key(&session, 2)).await, 1, "the resend ran once");
}
