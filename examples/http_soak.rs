//! HTTP soak run: an axum server with the exactly-once layer around a counter handler,
//! and numbering clients that reach it through a TCP proxy which cuts connections at
//! random before and after requests and responses, and part-way through request bodies
//! (a torn body must run nothing: its resend runs), all in one process.
//!
//! ```sh
//! cargo run --release --features tower --example http_soak -- --seconds 30 --clients 16 --fault-rate 0.01
//! ```
//!
//! With `--idempotency-key` the server is in the `Idempotency-Key` mode
//! (`IdempotencyLayer`) and the clients are plain HTTP clients that name each call with a
//! key of their own and send it again, unchanged, after a cut or a `503`. With `--serve
//! ADDR` it only serves (no proxy, no clients), for curl.
//!
//! The handler records, per client, the last call it ran, so a call run twice
//! (duplicate) or skipped (loss) is caught where it happens; each answer must name the
//! call it answers. Prints calls, executions, duplicates, losses, retries, cuts, calls/s
//! and latency; exits 1 on any duplicate, loss, wrong answer or failed call, or when
//! faults are on and a kind of cut never happened.

#[path = "../tests/tower_support/proxy.rs"]
mod proxy;

use axum::{extract::State, routing::post, Router};
use bytes::Bytes;
use clap::Parser;
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{Client, ClientConfig, HttpLayer, IdempotencyLayer, ERROR_HEADER};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client as Pool, rt::TokioExecutor};
use proxy::Faults;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_layer::Layer;
use tower_service::Service;

/// Flags of the soak run.
#[derive(Parser, Debug)]
#[command(about = "Exactly-once HTTP calls through a connection-cutting proxy")]
struct Flags {
    /// How long the clients call, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Concurrent clients, each with a session and connections of its own.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Probability that the proxy cuts a connection at each point of an exchange.
    #[arg(long, default_value_t = 0.01)]
    fault_rate: f64,
    /// The `Idempotency-Key` mode: plain clients, a key per call.
    #[arg(long)]
    idempotency_key: bool,
    /// Only serve on this address (no proxy, no clients) until stopped.
    #[arg(long)]
    serve: Option<std::net::SocketAddr>,
}

/// What the handler saw, per client and in all.
#[derive(Default)]
struct Tally {
    executions: AtomicU64,
    duplicates: AtomicU64,
    losses: AtomicU64,
    last_run: Vec<AtomicU64>,
}

impl Tally {
    fn new(clients: usize) -> Self {
        Tally {
            last_run: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            ..Tally::default()
        }
    }

    /// Runs call `k` of client `c`: a call is run right after the one before it.
    fn run(&self, c: usize, k: u64) {
        self.executions.fetch_add(1, Ordering::SeqCst);
        let before = self.last_run[c].swap(k, Ordering::SeqCst);
        if k <= before {
            self.duplicates.fetch_add(1, Ordering::SeqCst);
        } else if k > before + 1 {
            self.losses.fetch_add(k - before - 1, Ordering::SeqCst);
        }
    }
}

/// What the clients saw.
#[derive(Default)]
struct Calls {
    answered: u64,
    wrong_answers: u64,
    failed: u64,
    retries: u64,
    latencies: Vec<Duration>,
}

/// Echoes the body, with the handler's executions so far in `x-executions`.
async fn handle(
    State(tally): State<Arc<Tally>>,
    body: Bytes,
) -> ([(&'static str, String); 1], String) {
    let text = String::from_utf8_lossy(&body).into_owned();
    let mut words = text
        .split(' ')
        .map(|w| w.parse::<u64>().unwrap_or(u64::MAX));
    let (c, k) = (words.next().unwrap_or(0), words.next().unwrap_or(0));
    if let Some(c) = usize::try_from(c)
        .ok()
        .filter(|&c| c < tally.last_run.len())
    {
        tally.run(c, k);
    }
    let executions = tally.executions.load(Ordering::SeqCst).to_string();
    ([("x-executions", executions)], text)
}

/// Starts the server behind the layer (the `Idempotency-Key` mode's, if `keys`) on
/// `addr`; returns its address.
async fn start_server(
    tally: Arc<Tally>,
    keys: bool,
    addr: std::net::SocketAddr,
) -> std::net::SocketAddr {
    let router = Router::new().route("/call", post(handle)).with_state(tally);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The whole router behind the layer, answering in axum's bodies.
    let budget = Budget::new(256 << 20);
    if keys {
        let layer = IdempotencyLayer::new(1 << 20, budget);
        let app = layer.answering(axum::body::Body::new).layer(router);
        let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
        tokio::spawn(async move { axum::serve(listener, app).await });
    } else {
        let layer = HttpLayer::new(1 << 20, TableConfig::default(), budget);
        let app = layer.answering(axum::body::Body::new).layer(router);
        let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    addr
}

/// One plain HTTP client calling back to back until `until`, each call named by an
/// `Idempotency-Key` of its own and sent again, unchanged, after a cut or a `503`.
async fn keyed_client(c: usize, url: String, until: Instant) -> Calls {
    let pool = Pool::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut calls = Calls::default();
    let mut k = 0;
    while Instant::now() < until {
        k += 1;
        let sent = format!("{c} {k}");
        let key = format!("\"soak-{c}-{k}\"");
        let start = Instant::now();
        loop {
            let request = http::Request::post(&url)
                .header("idempotency-key", &key)
                .body(Full::new(Bytes::from(sent.clone())))
                .unwrap();
            let answer = match pool.request(request).await {
                Ok(answer) => answer,
                Err(_) => {
                    calls.retries += 1; // the connection was cut: the same request again
                    continue;
                }
            };
            let status = answer.status();
            let torn = answer
                .headers()
                .get(ERROR_HEADER)
                .is_some_and(|code| code == "incomplete-body");
            let Ok(body) = answer.into_body().collect().await else {
                calls.retries += 1; // cut while the answer came
                continue;
            };
            let body = body.to_bytes();
            if status == http::StatusCode::SERVICE_UNAVAILABLE || torn {
                calls.retries += 1; // no room now, or a torn body: sent again
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            if status.is_success() {
                calls.latencies.push(start.elapsed());
                calls.answered += 1;
                calls.wrong_answers += u64::from(body != sent.as_bytes());
            } else {
                eprintln!("client {c} call {k} failed: {status} {body:?}");
                calls.failed += 1;
            }
            break;
        }
    }
    calls
}

/// One client calling back to back until `until`.
async fn client(c: usize, url: String, until: Instant) -> Calls {
    let pool = Pool::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut client = Client::new(pool, ClientConfig::default());
    let mut calls = Calls::default();
    let mut k = 0;
    while Instant::now() < until {
        k += 1;
        let sent = format!("{c} {k}");
        let request = http::Request::post(&url).body(Full::new(Bytes::from(sent.clone())));
        let start = Instant::now();
        match client.call(request.unwrap()).await {
            Ok(answer) => {
                calls.latencies.push(start.elapsed());
                calls.answered += 1;
                let body = answer.into_body().collect().await.unwrap().to_bytes();
                if body != sent.as_bytes() {
                    calls.wrong_answers += 1;
                }
            }
            Err(e) => {
                eprintln!("client {c} call {k} failed: {e}");
                calls.failed += 1;
            }
        }
    }
    calls.retries = client.retries();
    calls
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn report(
    flags: &Flags,
    tally: &Tally,
    faults: &Faults,
    mut calls: Calls,
    elapsed: Duration,
) -> bool {
    calls.latencies.sort();
    let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
    let (executions, duplicates, losses) = (
        get(&tally.executions),
        get(&tally.duplicates),
        get(&tally.losses),
    );
    println!("clients        {}", flags.clients);
    println!("calls          {}", calls.answered);
    println!("executions     {executions}");
    println!("duplicates     {duplicates}");
    println!("losses         {losses}");
    println!("wrong answers  {}", calls.wrong_answers);
    println!("failed calls   {}", calls.failed);
    println!("retries        {}", calls.retries);
    println!(
        "cuts           {:?} (before/after request, before/after response, in request body) over {} connections",
        faults.cuts(),
        faults.connections()
    );
    println!(
        "calls/s        {:.0}",
        calls.answered as f64 / elapsed.as_secs_f64()
    );
    let l = &calls.latencies;
    println!(
        "latency        p50 {:?}  p99 {:?}  max {:?}",
        percentile(l, 0.5),
        percentile(l, 0.99),
        l.last().copied().unwrap_or_default()
    );
    let ok = duplicates == 0 && losses == 0 && calls.wrong_answers == 0 && calls.failed == 0;
    // With faults on, every kind of cut (torn bodies included) must have been tried.
    let covered = flags.fault_rate == 0.0 || faults.cuts().iter().all(|&cuts| cuts > 0);
    if !covered {
        eprintln!("a kind of cut never happened: raise --seconds or --fault-rate");
    }
    // A call still running when a client stopped waiting would be an execution without
    // an answered call; clients only stop between calls, so the counts must agree.
    ok && covered && executions == calls.answered
}

#[tokio::main]
async fn main() {
    let flags = Flags::parse();
    let tally = Arc::new(Tally::new(flags.clients));
    if let Some(addr) = flags.serve {
        let addr = start_server(Arc::clone(&tally), flags.idempotency_key, addr).await;
        println!("serving on http://{addr}/call");
        std::future::pending::<()>().await;
    }
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = start_server(Arc::clone(&tally), flags.idempotency_key, loopback).await;
    let faults = Faults::random(flags.fault_rate);
    let proxy = proxy::start(server, Arc::clone(&faults)).await;
    let url = format!("http://{proxy}/call");
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(flags.seconds);
    let clients: Vec<_> = (0..flags.clients)
        .map(|c| match flags.idempotency_key {
            true => tokio::spawn(keyed_client(c, url.clone(), until)),
            false => tokio::spawn(client(c, url.clone(), until)),
        })
        .collect();
    let mut calls = Calls::default();
    for handle in clients {
        let c = handle.await.expect("a client task panicked");
        calls.answered += c.answered;
        calls.wrong_answers += c.wrong_answers;
        calls.failed += c.failed;
        calls.retries += c.retries;
        calls.latencies.extend(c.latencies);
    }
    if !report(&flags, &tally, &faults, calls, start.elapsed()) {
        eprintln!("FAILED: a call was duplicated, lost, answered wrongly or failed");
        std::process::exit(1);
    }
}
