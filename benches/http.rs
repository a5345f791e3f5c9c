//! HTTP calls/s and p99 latency over loopback with and without the exactly-once layers,
//! measured in the same run: plain requests to a plain axum server, against numbered
//! requests from [`Client`] to the same server behind [`HttpLayer`].
//!
//! ```sh
//! cargo bench --features tower --bench http -- --seconds 2 --rounds 3 --clients 4
//! ```
//!
//! Rounds alternate between the two setups; the report gives each one's median over
//! its rounds and the ratios (goal: the layers cost at most 5% of calls/s and 10 µs at
//! p99).

use axum::{routing::post, Router};
use bytes::Bytes;
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{Client, ClientConfig, HttpLayer};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client as Pool, rt::TokioExecutor};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_service::Service;

struct Settings {
    seconds: f64,
    rounds: usize,
    clients: usize,
}

fn settings() -> Settings {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: f64| {
        let at = args.iter().position(|a| a == name);
        at.and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(default)
    };
    Settings {
        seconds: flag("--seconds", 2.0),
        rounds: flag("--rounds", 3.0) as usize,
        clients: flag("--clients", 4.0) as usize,
    }
}

/// The handler both servers run: counts, and answers with the count.
fn app(runs: Arc<AtomicU64>) -> Router {
    let handler = move |body: Bytes| async move {
        let run = runs.fetch_add(1, Ordering::Relaxed);
        format!("{run} {}", body.len())
    };
    Router::new().route("/call", post(handler))
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

type Body = Full<Bytes>;

/// Calls back to back until `until` with `call`; returns each call's latency.
async fn calls_until<S, B>(mut call: S, url: String, until: Instant) -> Vec<Duration>
where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let request = http::Request::post(&url)
            .body(Body::from("payload"))
            .unwrap();
        let start = Instant::now();
        std::future::poll_fn(|cx| call.poll_ready(cx))
            .await
            .unwrap();
        let answer = call.call(request).await.unwrap();
        answer.into_body().collect().await.unwrap();
        latencies.push(start.elapsed());
    }
    latencies
}

#[derive(Clone, Copy, PartialEq)]
enum Setup {
    Bare,
    Layered,
}

/// One round: `clients` tasks for `seconds`; returns calls/s and p99.
async fn round(setup: Setup, addr: SocketAddr, s: &Settings) -> (f64, Duration) {
    let until = Instant::now() + Duration::from_secs_f64(s.seconds);
    let url = format!("http://{addr}/call");
    let tasks: Vec<_> = (0..s.clients)
        .map(|_| {
            let pool = Pool::builder(TokioExecutor::new()).build_http::<Body>();
            let url = url.clone();
            match setup {
                Setup::Bare => tokio::spawn(calls_until(pool, url, until)),
                Setup::Layered => {
                    let client = Client::new(pool, ClientConfig::default());
                    tokio::spawn(calls_until(client, url, until))
                }
            }
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort();
    let p99 = latencies[(latencies.len() - 1) * 99 / 100];
    (latencies.len() as f64 / s.seconds, p99)
}

fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let s = settings();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .unwrap_or("model name: ?");
    println!(
        "{cpu}; {} clients, {} rounds of {} s each",
        s.clients, s.rounds, s.seconds
    );
    let bare = serve(app(Arc::default())).await;
    let layer = HttpLayer::new(1 << 20, TableConfig::default(), Budget::new(256 << 20));
    let layered = serve(app(Arc::default()).layer(layer)).await;
    let (mut bare_rounds, mut layered_rounds) = (Vec::new(), Vec::new());
    for _ in 0..s.rounds {
        bare_rounds.push(round(Setup::Bare, bare, &s).await);
        layered_rounds.push(round(Setup::Layered, layered, &s).await);
    }
    let summary = |rounds: &[(f64, Duration)]| {
        let rate = median(rounds.iter().map(|r| r.0).collect());
        let p99 = median(rounds.iter().map(|r| r.1).collect());
        (rate, p99)
    };
    let (bare_rate, bare_p99) = summary(&bare_rounds);
    let (layered_rate, layered_p99) = summary(&layered_rounds);
    println!("{:<34} {:>10} {:>12}", "setup", "calls/s", "p99");
    println!(
        "{:<34} {bare_rate:>10.0} {:>12?}",
        "bare (no layer)", bare_p99
    );
    println!(
        "{:<34} {layered_rate:>10.0} {:>12?}",
        "Client + HttpLayer", layered_p99
    );
    let cost = 100.0 * (1.0 - layered_rate / bare_rate);
    let extra = layered_p99.as_secs_f64() * 1e6 - bare_p99.as_secs_f64() * 1e6;
    println!(
        "layer cost: {cost:.1}% of calls/s (goal <= 5%), {extra:+.1} us at p99 (goal <= 10 us)"
    );
}
