//! gRPC soak run: a tonic service (`notes.Notes`, `examples/support/grpc_notes.rs`)
//! behind the exactly-once layer, served over HTTP/2, and tonic clients over
//! `GrpcClient` that reach it through a TCP proxy cutting connections at random (before
//! and after request and response bytes, and part-way through what the client sends),
//! all in one process.
//!
//! ```sh
//! cargo run --release --features tower --example grpc_soak -- --seconds 30 --clients 8 --fault-rate 0.01
//! ```
//!
//! Each client calls `Echo` with notes of its own, every tenth call `Fail` (its
//! FAILED_PRECONDITION must come back, first answer or replay alike) and every 25th
//! `Watch` (streaming: passed through un-numbered, so a cut may fail it; counted
//! apart). The service keeps each note's runs: a unary call run twice is a duplicate, an
//! answered call that never ran a loss; every answer must be its own note's, with the
//! `notes-run` trailer of its one run. Prints calls, executions, duplicates, losses,
//! retries, cuts, calls/s and latency; exits 1 on any duplicate, loss, wrong answer or
//! failed unary call, or when faults are on and no connection was cut.

#[path = "support/grpc_notes.rs"]
mod notes;
#[path = "../tests/tower_support/proxy.rs"]
mod proxy;

use clap::Parser;
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{ClientConfig, GrpcClientLayer, HttpLayer};
use notes::{Runs, ECHO, FAIL, RUN_TRAILER, STREAMING};
use proxy::Faults;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_layer::Layer;

/// Flags of the soak run.
#[derive(Parser, Debug)]
#[command(about = "Exactly-once gRPC calls through a connection-cutting proxy")]
struct Flags {
    /// How long the clients call, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Concurrent clients, each with a session and a channel of its own.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Probability that the proxy cuts a connection at each point of an exchange.
    #[arg(long, default_value_t = 0.01)]
    fault_rate: f64,
}

/// What the clients saw.
#[derive(Default)]
struct Calls {
    /// Unary calls answered, with the note each was about.
    answered: Vec<String>,
    wrong_answers: u64,
    failed: u64,
    streams: u64,
    streams_cut: u64,
    retries: u64,
    latencies: Vec<Duration>,
}

/// One client calling back to back until `until`.
async fn client(c: usize, addr: std::net::SocketAddr, until: Instant) -> Calls {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("an address")
        .connect_lazy();
    let config = ClientConfig {
        max_backoff: Duration::from_millis(100),
        ..ClientConfig::default()
    };
    let layer = GrpcClientLayer::new(config, tonic::body::Body::new).streaming(STREAMING);
    let counted = layer.layer(channel);
    let mut client = tonic::client::Grpc::new(counted.clone());
    let mut calls = Calls::default();
    let mut k = 0u64;
    while Instant::now() < until {
        k += 1;
        let text = format!("client {c} call {k}");
        let start = Instant::now();
        if k % 25 == 0 {
            match notes::watch(&mut client, &format!("watch {text}"), 3).await {
                Ok(notes) if notes.len() == 3 => calls.streams += 1,
                Ok(_) => calls.wrong_answers += 1,
                Err(_) => calls.streams_cut += 1,
            }
            continue;
        }
        let path = if k % 10 == 0 { FAIL } else { ECHO };
        let answer = notes::unary(&mut client, path, &[], &text).await;
        let right = match (path, answer) {
            (ECHO, Ok(answer)) => {
                let run = answer.metadata().get(RUN_TRAILER);
                let run = run.and_then(|r| r.to_str().ok()?.parse::<u64>().ok());
                answer.get_ref().text == text && run == Some(answer.get_ref().run)
            }
            (_, Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
                path == FAIL && status.message() == format!("refused {text}")
            }
            (_, outcome) => {
                eprintln!("client {c} call {k} failed: {outcome:?}");
                calls.failed += 1;
                continue;
            }
        };
        calls.latencies.push(start.elapsed());
        calls.answered.push(text);
        calls.wrong_answers += u64::from(!right);
    }
    calls.retries = counted.retries();
    calls
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn report(
    flags: &Flags,
    runs: &Runs,
    faults: &Faults,
    mut calls: Calls,
    elapsed: Duration,
) -> bool {
    calls.latencies.sort();
    let ledger = runs.ledger();
    let unary = ledger
        .iter()
        .filter(|(text, _)| !text.starts_with("watch "));
    let executions: u64 = unary.clone().map(|(_, &n)| u64::from(n)).sum();
    let duplicates: u64 = unary.map(|(_, &n)| u64::from(n.saturating_sub(1))).sum();
    let losses = calls
        .answered
        .iter()
        .filter(|t| !ledger.contains_key(*t))
        .count();
    println!("clients        {}", flags.clients);
    println!("calls          {}", calls.answered.len());
    println!("executions     {executions}");
    println!("duplicates     {duplicates}");
    println!("losses         {losses}");
    println!("wrong answers  {}", calls.wrong_answers);
    println!("failed calls   {}", calls.failed);
    println!(
        "streaming      {} passed through, {} cut (not resent)",
        calls.streams, calls.streams_cut
    );
    println!("retries        {}", calls.retries);
    println!(
        "cuts           {:?} (before/after request, before/after response, in request bytes) over {} connections",
        faults.cuts(),
        faults.connections()
    );
    println!(
        "calls/s        {:.0}",
        calls.answered.len() as f64 / elapsed.as_secs_f64()
    );
    let l = &calls.latencies;
    println!(
        "latency        p50 {:?}  p99 {:?}  max {:?}",
        percentile(l, 0.5),
        percentile(l, 0.99),
        l.last().copied().unwrap_or_default()
    );
    let ok = duplicates == 0 && losses == 0 && calls.wrong_answers == 0 && calls.failed == 0;
    let cut = flags.fault_rate == 0.0 || faults.total_cuts() > 0;
    if !cut {
        eprintln!("no connection was cut: raise --seconds or --fault-rate");
    }
    // Clients stop only between calls: every execution is an answered call.
    ok && cut && executions == calls.answered.len() as u64
}

#[tokio::main]
async fn main() {
    let flags = Flags::parse();
    let runs = Runs::with_ledger();
    let layer = HttpLayer::new(1 << 20, TableConfig::default(), Budget::new(256 << 20));
    let server = notes::serve_notes(Some(layer), Arc::clone(&runs)).await;
    let faults = Faults::random(flags.fault_rate);
    let proxy = proxy::start(server, Arc::clone(&faults)).await;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(flags.seconds);
    let clients: Vec<_> = (0..flags.clients)
        .map(|c| tokio::spawn(client(c, proxy, until)))
        .collect();
    let mut calls = Calls::default();
    for handle in clients {
        let c = handle.await.expect("a client task panicked");
        calls.answered.extend(c.answered);
        calls.wrong_answers += c.wrong_answers;
        calls.failed += c.failed;
        calls.streams += c.streams;
        calls.streams_cut += c.streams_cut;
        calls.retries += c.retries;
        calls.latencies.extend(c.latencies);
    }
    if !report(&flags, &runs, &faults, calls, start.elapsed()) {
        eprintln!("FAILED: a call was duplicated, lost, answered wrongly or failed");
        std::process::exit(1);
    }
}
