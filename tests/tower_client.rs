//! The numbering client against a real server behind the layer, through a proxy that
//! cuts connections: every call is answered, and run once.
#![cfg(feature = "tower")]

mod tower_support;

use bytes::Bytes;
use exactly_once::table::TableConfig;
use exactly_once::tower::{Client, ClientConfig, ClientError};
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::Duration;
use tower_service::Service;
use tower_support::proxy::{self, Cut, Faults, EVERY_CUT};
use tower_support::{pool, serve, HttpPool};

type TestClient = Client<HttpPool>;

fn config() -> ClientConfig {
    ClientConfig {
        retry_for: Duration::from_secs(10),
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(50),
        request_limit: 1 << 20,
        response_limit: 1 << 20,
    }
}

async fn call(client: &mut TestClient, url: &str, body: &str) -> Result<String, ClientError> {
    let request = http::Request::post(url).body(Full::new(Bytes::from(body.to_owned())));
    let answer = client.call(request.unwrap()).await?;
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cut_at_every_point_of_the_exchange_are_answered_and_run_once() {
    for cut in EVERY_CUT {
        let server = serve(TableConfig::default()).await;
        // The first three connections are cut: the session's creation, then calls.
        let faults = Faults::planned([cut; 3]);
        let proxy = proxy::start(server.addr, Arc::clone(&faults)).await;
        let url = format!("http://{proxy}/count");
        let mut client = Client::new(pool(), config());
        for k in 1..=5 {
            let answer = call(&mut client, &url, &format!("call {k}")).await.unwrap();
            assert_eq!(answer, format!("run {k}: call {k}"), "cut {cut:?}");
        }
        assert_eq!(server.runs(), 5, "cut {cut:?}");
        assert_eq!(faults.total_cuts(), 3, "cut {cut:?}");
        if cut != Cut::AfterResponse {
            assert!(
                client.retries() >= 3,
                "cut {cut:?}: {} retries",
                client.retries()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_through_random_cuts_get_every_call_run_once() {
    let server = serve(TableConfig::default()).await;
    let faults = Faults::random(0.05);
    let proxy = proxy::start(server.addr, Arc::clone(&faults)).await;
    let url = format!("http://{proxy}/count");
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut client = Client::new(pool(), config());
                for k in 1..=50 {
                    let answer = call(&mut client, &url, &format!("{c}/{k}")).await.unwrap();
                    assert!(answer.ends_with(&format!(": {c}/{k}")), "{answer}");
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(server.runs(), 200);
    assert!(faults.total_cuts() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_one_session_and_take_turns() {
    let server = serve(TableConfig::default()).await;
    let url = server.url("/count");
    let client = Client::new(pool(), config());
    let turns: Vec<_> = (0..6)
        .map(|i| {
            let mut client = client.clone();
            let url = url.clone();
            tokio::spawn(async move { call(&mut client, &url, &format!("{i}")).await.unwrap() })
        })
        .collect();
    let mut runs = Vec::new();
    for turn in turns {
        let answer = turn.await.unwrap();
        runs.push(answer.split(':').next().unwrap().to_owned());
    }
    runs.sort();
    assert_eq!(
        runs,
        (1..=6).map(|k| format!("run {k}")).collect::<Vec<_>>()
    );
    assert_eq!(server.layer.sessions().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_call_is_reported_and_the_client_goes_on() {
    let server = serve(TableConfig::default()).await;
    let mut client = Client::new(pool(), config());
    let failed = call(&mut client, &server.url("/panic"), "")
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, ClientError::Refused { code, .. } if code == "abandoned"),
        "{failed}"
    );
    let next = call(&mut client, &server.url("/count"), "next")
        .await
        .unwrap();
    assert_eq!(next, "run 2: next");
    assert_eq!(server.runs(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_reported_once_then_a_new_one_is_made() {
    let table = TableConfig {
        idle_expiry: Duration::from_millis(50),
        ..TableConfig::default()
    };
    let server = serve(table).await;
    let url = server.url("/count");
    let mut client = Client::new(pool(), config());
    assert_eq!(call(&mut client, &url, "a").await.unwrap(), "run 1: a");
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.layer.sessions().expire();
    let lost = call(&mut client, &url, "b").await.unwrap_err();
    assert!(matches!(&lost, ClientError::Refused { code, .. } if code == "unknown-session"));
    assert_eq!(call(&mut client, &url, "c").await.unwrap(), "run 2: c");
    assert_eq!(server.runs(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_the_limit_is_refused_before_anything_is_sent() {
    let server = serve(TableConfig::default()).await;
    let mut client = Client::new(
        pool(),
        ClientConfig {
            request_limit: 8,
            ..config()
        },
    );
    let url = server.url("/count");
    let refused = call(&mut client, &url, "nine byte").await.unwrap_err();
    assert!(matches!(refused, ClientError::RequestTooLarge));
    assert_eq!(server.layer.sessions().len(), 0);
    assert_eq!(
        call(&mut client, &url, "eight by").await.unwrap(),
        "run 1: eight by"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_makes_the_client_give_up_at_its_deadline() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/count", listener.local_addr().unwrap());
    drop(listener);
    let mut client = Client::new(
        pool(),
        ClientConfig {
            retry_for: Duration::from_millis(200),
            ..config()
        },
    );
    let gave_up = call(&mut client, &url, "x").await.unwrap_err();
    assert!(matches!(gave_up, ClientError::GaveUp { attempts, .. } if attempts > 1));
}
