//! Soak run: one server and many reconnecting clients in one process, connections
//! broken at random before sends and receives, every execution checked.
//!
//! ```sh
//! cargo run --release --example soak -- --duration 30 --clients 16 --fault-rate 0.01
//! ```
//!
//! Each client makes numbered calls in its own session; the handler records, per client,
//! the last call it executed, so a call executed twice (duplicate) or skipped (loss) is
//! caught where it happens, and each answer must name the call it answers. Latencies go
//! to fixed-size histograms, so memory stays flat however long it runs. Shows a progress
//! bar on a terminal (one plain line per interval on stderr otherwise) and prints a
//! summary on stdout; exits 1 on any duplicate, loss, wrong answer or failed call.

mod support;

use clap::Parser;
use exactly_once::transport::{faults, Client, ClientConfig, FaultHook, Server, ServerConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Latencies, Progress};

/// One server and many reconnecting clients in one process, their connections shut
/// down at random; every call must execute exactly once.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 30.0, value_parser = support::seconds)]
    duration: f64,
    /// Client threads, each with its own session.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    clients: u64,
    /// Probability that a client shuts its connection down before a send or receive.
    #[arg(long, default_value_t = 0.01, value_parser = support::probability)]
    fault_rate: f64,
    /// Bytes of padding in each request, after the 16-byte header.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Seconds between progress reports.
    #[arg(long, default_value_t = 1.0, value_parser = support::seconds)]
    interval: f64,
    /// Log level of the library: off, error, warn, info, debug.
    #[arg(long, default_value = "off")]
    log: String,
}

struct Tally {
    executions: AtomicU64,
    duplicates: AtomicU64,
    losses: AtomicU64,
    last_executed: Vec<AtomicU64>,
    calls: AtomicU64,
    wrong_answers: AtomicU64,
    failed_calls: AtomicU64,
    reconnects: AtomicU64,
}

impl Tally {
    fn new(clients: u64) -> Self {
        Tally {
            executions: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            losses: AtomicU64::new(0),
            last_executed: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            calls: AtomicU64::new(0),
            wrong_answers: AtomicU64::new(0),
            failed_calls: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }
}

fn load(counter: &AtomicU64) -> u64 {
    // ORDERING: tallies, read for reports and after the client threads are joined.
    counter.load(Ordering::Relaxed)
}

fn handler(tally: Arc<Tally>) -> impl Fn(&[u8]) -> Vec<u8> + Send + Sync {
    move |request: &[u8]| {
        let client = u64::from_le_bytes(request[..8].try_into().unwrap()) as usize;
        let call = u64::from_le_bytes(request[8..16].try_into().unwrap());
        // ORDERING: tallies; each client's calls reach the handler one at a time.
        tally.executions.fetch_add(1, Ordering::Relaxed);
        let previous = tally.last_executed[client].swap(call, Ordering::Relaxed);
        if call <= previous {
            tally.duplicates.fetch_add(1, Ordering::Relaxed);
        } else if call != previous + 1 {
            tally
                .losses
                .fetch_add(call - previous - 1, Ordering::Relaxed);
        }
        request[..16].to_vec()
    }
}

/// The connection faults of client `id`: the one place to swap in another fault hook.
fn faults(id: u64, rate: f64) -> FaultHook {
    faults::random_shutdowns(rate, id)
}

fn run_client(id: u64, location: &str, args: &Args, stop: &AtomicBool, tally: &Tally) -> Latencies {
    let config = ClientConfig {
        fault_hook: Some(faults(id, args.fault_rate)),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(50),
        ..ClientConfig::default()
    };
    let mut latencies = Latencies::default();
    let Ok(mut client) = Client::connect(location, config) else {
        tally.failed_calls.fetch_add(1, Ordering::Relaxed);
        return latencies;
    };
    let mut request = vec![0u8; 16 + args.payload];
    request[..8].copy_from_slice(&id.to_le_bytes());
    let mut call = 0u64;
    // ORDERING: a stop flag; the joins publish everything else.
    while !stop.load(Ordering::Relaxed) {
        call += 1;
        request[8..16].copy_from_slice(&call.to_le_bytes());
        let start = Instant::now();
        match client.call(&request) {
            Ok(answer) if answer[..] == request[..16] => {}
            Ok(_) => {
                tally.wrong_answers.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("client {id} call {call}: {e}");
                tally.failed_calls.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        latencies.record(start.elapsed());
        tally.calls.fetch_add(1, Ordering::Relaxed);
    }
    tally
        .reconnects
        .fetch_add(client.reconnects(), Ordering::Relaxed);
    client.close();
    latencies
}

/// Runs every client until the duration is over, reporting progress meanwhile, and
/// returns their latencies merged.
fn run_clients(args: &Args, server: &Server, tally: &Tally) -> Latencies {
    let location = server.location();
    let duration = Duration::from_secs_f64(args.duration);
    let interval = Duration::from_secs_f64(args.interval.max(0.01));
    let stop = AtomicBool::new(false);
    let progress = Progress::new(duration);
    let start = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..args.clients)
            .map(|id| {
                let (location, stop) = (&location, &stop);
                s.spawn(move || run_client(id, location, args, stop, tally))
            })
            .collect();
        while start.elapsed() < duration {
            std::thread::sleep(interval.min(duration.saturating_sub(start.elapsed())));
            let calls = load(&tally.calls);
            progress.report(&format!(
                "calls {calls}  calls/s {:.0}  resumed {}  duplicates {}  losses {}",
                calls as f64 / start.elapsed().as_secs_f64(),
                server.counters().sessions_resumed,
                load(&tally.duplicates),
                load(&tally.losses),
            ));
        }
        progress.finish();
        // ORDERING: see `run_client`.
        stop.store(true, Ordering::Relaxed);
        let mut merged = Latencies::default();
        for worker in workers {
            merged.add(&worker.join().expect("client thread"));
        }
        merged
    })
}

/// Prints the summary; returns how many calls went wrong.
fn report(args: &Args, elapsed: Duration, tally: &Tally, latencies: &Latencies) -> u64 {
    let calls = load(&tally.calls);
    let executions = load(&tally.executions);
    // A loss that never reached the handler: a call answered that was never executed.
    let unexecuted = calls.saturating_sub(executions);
    let losses = load(&tally.losses) + unexecuted;
    let duplicates = load(&tally.duplicates);
    let (wrong, failed) = (load(&tally.wrong_answers), load(&tally.failed_calls));
    println!("clients        {}", args.clients);
    println!("duration       {:.1} s", elapsed.as_secs_f64());
    println!("calls          {calls}");
    println!("executions     {executions}");
    println!("duplicates     {duplicates}");
    println!("losses         {losses}");
    println!("wrong answers  {wrong}");
    println!("failed calls   {failed}");
    println!("reconnects     {}", load(&tally.reconnects));
    println!("calls/s        {:.0}", calls as f64 / elapsed.as_secs_f64());
    println!("latency        {}", latencies.summary("ms"));
    duplicates + losses + wrong + failed
}

fn main() {
    let args = Args::parse();
    support::log_to_stderr(&args.log);
    let tally = Arc::new(Tally::new(args.clients));
    let server = Server::bind(
        "127.0.0.1:0",
        ServerConfig::default(),
        handler(Arc::clone(&tally)),
    )
    .expect("bind 127.0.0.1");
    eprintln!(
        "soak: {} clients, fault rate {} per send/receive, {} s on {}",
        args.clients,
        args.fault_rate,
        args.duration,
        server.location()
    );
    let start = Instant::now();
    let latencies = run_clients(&args, &server, &tally);
    let bad = report(&args, start.elapsed(), &tally, &latencies);
    let counters = server.counters();
    println!("resent         {}", counters.requests_resent);
    let cut = server.shutdown(Duration::from_secs(5));
    println!(
        "closed w/ err  {} (cut at shutdown: {cut})",
        counters.connections_closed_with_error
    );
    if bad > 0 {
        println!("FAILED: {bad} duplicates, losses, wrong answers or failed calls");
        std::process::exit(1);
    }
    println!("OK: every call executed exactly once");
}
