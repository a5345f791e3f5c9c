//! The core's numbering `Client`, over real HTTP, against the durable layer: it creates
//! its session, numbers its calls, and resends through a lost COMMIT answer to the
//! replayed response.

mod support;

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use exactly_once::tower::{Client, ClientConfig};
use exactly_once_postgres::{pool, DurableLayer, PgStore, RunKey, RunTransaction};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client as Pool, rt::TokioExecutor};
use support::cut::Cut;
use support::Db;
use tower_service::Service;

async fn insert(tx: RunTransaction, key: RunKey) -> String {
    let client = tx.client().await.unwrap();
    let key = key.to_string();
    client
        .execute("INSERT INTO ledger (key, body) VALUES ($1, '')", &[&key])
        .await
        .unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM ledger WHERE key = $1", &[&key])
        .await
        .unwrap()
        .get(0);
    format!("{key}: {rows} row(s)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_client_resends_through_a_lost_commit_answer_to_the_replay() {
    let Some(db) = Db::start("the_core_client_resends_through_a_lost_commit_answer").await else {
        return;
    };
    let Some((cutter, through)) = db.through_commit_cutter().await else {
        return;
    };
    let store = PgStore::new(pool(through, 4), Default::default());
    let app = Router::new()
        .route("/insert", post(insert))
        .layer(DurableLayer::new(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/insert", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = Pool::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut client = Client::new(http, ClientConfig::default());
    let mut bodies = Vec::new();
    for number in 1..=3 {
        if number == 2 {
            cutter.arm(Cut::AnswerLost); // call 2 commits; its first answer is 503
        }
        let request = http::Request::post(&url)
            .body(Full::<Bytes>::default())
            .unwrap();
        let answer = client.call(request).await.unwrap();
        assert_eq!(answer.status(), http::StatusCode::OK);
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        bodies.push(String::from_utf8(body.to_vec()).unwrap());
    }
    for (body, number) in bodies.iter().zip(1..) {
        assert!(
            body.ends_with(&format!("-{number}: 1 row(s)")),
            "{bodies:?}"
        );
    }
    let rows: i64 = support::connect(&db.config)
        .await
        .query_one("SELECT count(*) FROM ledger", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 3,
        "three calls, three runs, call 2 replayed after its lost answer"
    );
    server.abort();
}
