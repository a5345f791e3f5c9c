//! Every request counted: sessions whose every number is sent as three concurrent
//! copies to random replicas, while the database's connections are cut at random; each
//! number must have run once (one ledger row) and its copies must all end with the
//! same answer.

mod support;

use http::StatusCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{connect, Db};

const SESSIONS: usize = 8;
const NUMBERS: u64 = 25;
const COPIES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_on_random_replicas_with_connections_cut_run_every_number_once() {
    let Some(db) = Db::start("copies_on_random_replicas_with_connections_cut").await else {
        return;
    };
    let replicas = Arc::new([db.replica(), db.replica(), db.replica()]);

    // Chaos: every 5 ms, one backend of the test database is terminated (a pooled
    // connection, idle or in a run's transaction).
    let stop = Arc::new(AtomicBool::new(false));
    let cuts = Arc::new(AtomicU64::new(0));
    let chaos = tokio::spawn({
        let (stop, cuts, admin) = (
            Arc::clone(&stop),
            Arc::clone(&cuts),
            connect(&db.config).await,
        );
        async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let killed = admin
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = current_database() AND pid <> pg_backend_pid()
                         ORDER BY random() LIMIT 1",
                        &[],
                    )
                    .await
                    .unwrap();
                cuts.fetch_add(killed.len() as u64, Ordering::SeqCst);
            }
        }
    });

    let mut clients = Vec::new();
    for s in 0..SESSIONS {
        let replicas = Arc::clone(&replicas);
        clients.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(s as u64);
            let session = loop {
                let answer = replicas[s % 3].send(Some("new"), None, "").await;
                if answer.status == StatusCode::CREATED {
                    break answer.header(exactly_once::tower::SESSION_HEADER).unwrap();
                }
            };
            for number in 1..=NUMBERS {
                let copies: Vec<_> = (0..COPIES)
                    .map(|_| {
                        let replica = replicas[rng.usize(..3)].clone();
                        let session = session.clone();
                        tokio::spawn(async move {
                            replica.call_until_answered(&session, number, "x").await
                        })
                    })
                    .collect();
                let mut answers = Vec::new();
                for copy in copies {
                    answers.push(copy.await.unwrap());
                }
                assert_eq!(answers[0].status, StatusCode::OK, "{:?}", answers[0]);
                assert!(answers.iter().all(|a| *a == answers[0]), "{answers:#?}");
                assert!(answers[0].body.contains(" 1 row(s)"), "{:?}", answers[0]);
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    chaos.await.unwrap();

    let admin = connect(&db.config).await;
    let (keys, rows): (i64, i64) = {
        let row = admin
            .query_one("SELECT count(DISTINCT key), count(*) FROM ledger", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    eprintln!(
        "{} numbers, {rows} ledger rows, {} connections cut",
        SESSIONS as u64 * NUMBERS,
        cuts.load(Ordering::SeqCst)
    );
    assert_eq!(keys, (SESSIONS as u64 * NUMBERS) as i64, "no number lost");
    assert_eq!(rows, keys, "no number run twice");
}
