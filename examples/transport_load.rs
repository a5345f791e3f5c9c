//! Load generator for a MUSCLE3-compatible MCP-over-TCP server (ours or MUSCLE3's own):
//! calls per second and call latency over loopback with many clients.
//!
//! ```sh
//! cargo run --release --example transport_load -- --connect tcp:127.0.0.1:PORT \
//!     --clients 64 --duration 10 --payload 64 --warmup 1
//! cargo run --release --example transport_load -- --spawn-ours --clients 64
//! ```
//!
//! `--connect tcp:HOST:PORT` loads a running server whose handler echoes its request;
//! `--spawn-ours` starts our [`Server`] in this process with an echo handler instead.
//! Each of `--clients` threads (default 64) has its own [`Client`], so its own session,
//! and calls in a loop with a `--payload`-byte request (default 64), checking that the
//! answer is the request. Clients connect one after another, then all start together.
//! Calls that complete during the `--warmup` seconds (default 1) are not counted; those
//! that complete during the next `--duration` seconds (default 10) are, each with its
//! latency in a fixed-size histogram. A failed call or a wrong answer counts as an error.
//! At the end every client ends its session.
//!
//! Prints one machine-readable line on stdout,
//! `calls=… seconds=… calls_per_s=… p50_us=… p99_us=… errors=…` (more `key=value`
//! fields follow, `served_calls` among them: every call answered, warmup included),
//! then a human summary. Progress goes to stderr: a bar on a terminal, one line per
//! second otherwise. Exits 1 if there were errors.

mod support;

use clap::Parser;
use exactly_once::transport::{Client, ClientConfig, Server, ServerConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use support::{Latencies, Progress};

/// Calls per second and latency of a MUSCLE3-compatible MCP-over-TCP server under load
/// from many clients, each in its own session.
#[derive(Parser, Debug)]
#[command(version)]
#[command(group(clap::ArgGroup::new("server").required(true).args(["connect", "spawn_ours"])))]
struct Args {
    /// Load the echo server at this location (tcp:HOST:PORT).
    #[arg(long)]
    connect: Option<String>,
    /// Start our server, with an echo handler, in this process and load it.
    #[arg(long)]
    spawn_ours: bool,
    /// Client threads, each with its own session.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    clients: u64,
    /// Seconds measured, after the warmup.
    #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
    duration: f64,
    /// Seconds of calls not counted, before the measurement.
    #[arg(long, default_value_t = 1.0, value_parser = support::seconds)]
    warmup: f64,
    /// Bytes in each request.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Log level of the library: off, error, warn, info, debug.
    #[arg(long, default_value = "error")]
    log: String,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    support::seconds(text).and_then(|s| match s > 0.0 {
        true => Ok(s),
        false => Err("must be more than 0 seconds".into()),
    })
}

/// What one client thread measured.
struct Measured {
    /// Latency of each counted call.
    latencies: Latencies,
    /// Every call answered, counted or not.
    answered: u64,
    errors: u64,
    reconnects: u64,
}

struct Plan {
    location: String,
    payload: usize,
    warmup: Duration,
    duration: Duration,
    /// Released once every client has connected.
    ready: Barrier,
    /// The start of the warmup, shared by all clients: the first to pass `ready` sets it.
    epoch: OnceLock<Instant>,
    /// Clients that could not connect.
    failed_connects: AtomicU64,
    /// Calls answered so far, for the progress reports.
    answered: AtomicU64,
    /// Held while a client connects: clients connect one after another, because
    /// MUSCLE3's server listens with a backlog of 5 and a burst of 64 connects then
    /// waits for the kernel's SYN-ACK retransmissions (up to tens of seconds).
    connecting: Mutex<()>,
}

/// Everything measured, summed over the clients.
struct Totals {
    latencies: Latencies,
    answered: u64,
    errors: u64,
    failed_connects: u64,
    reconnects: u64,
    /// Seconds from the start until every client had connected.
    connecting: f64,
}

fn main() {
    let args = Args::parse();
    support::log_to_stderr(&args.log);
    let server = args.spawn_ours.then(|| spawn_ours(args.clients as usize));
    let location = match (&server, &args.connect) {
        (Some(server), _) => server.location(),
        (None, location) => location.clone().expect("clap requires --connect here"),
    };
    let plan = Arc::new(Plan {
        location,
        payload: args.payload,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        ready: Barrier::new(args.clients as usize),
        epoch: OnceLock::new(),
        failed_connects: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        connecting: Mutex::new(()),
    });
    let totals = run(&plan, args.clients);
    print_report(&args, &plan, &totals, server.is_some());
    if let Some(server) = server {
        let cut = server.shutdown(Duration::from_secs(5));
        if cut > 0 {
            eprintln!("{cut} connections had to be cut at shutdown");
        }
    }
    std::process::exit(i32::from(totals.errors > 0));
}

fn spawn_ours(clients: usize) -> Server {
    let config = ServerConfig {
        max_sessions: clients.max(1024),
        max_connections: clients.max(256),
        ..ServerConfig::default()
    };
    Server::bind("127.0.0.1:0", config, |request: &[u8]| request.to_vec()).unwrap_or_else(|e| {
        eprintln!("cannot start the server: {e}");
        std::process::exit(1);
    })
}

/// Runs every client, reporting progress until they are done, and sums what they measured.
fn run(plan: &Arc<Plan>, clients: u64) -> Totals {
    let started = Instant::now();
    let threads: Vec<_> = (0..clients as usize)
        .map(|i| {
            let plan = Arc::clone(plan);
            thread::Builder::new()
                .name(format!("load-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || run_client(i, &plan))
                .expect("spawn a client thread")
        })
        .collect();
    report_progress(plan, &threads);
    let mut totals = Totals {
        latencies: Latencies::default(),
        answered: 0,
        errors: 0,
        failed_connects: 0,
        reconnects: 0,
        connecting: 0.0,
    };
    for thread in threads {
        let measured = thread.join().expect("client thread");
        totals.latencies.add(&measured.latencies);
        totals.answered += measured.answered;
        totals.errors += measured.errors;
        totals.reconnects += measured.reconnects;
    }
    // ORDERING: the joins above happen-before this load.
    totals.failed_connects = plan.failed_connects.load(Ordering::Relaxed);
    totals.errors += totals.failed_connects;
    totals.connecting = plan
        .epoch
        .get()
        .map_or(0.0, |e| (*e - started).as_secs_f64());
    totals
}

/// Reports calls answered once a second until every client thread has finished.
fn report_progress(plan: &Plan, threads: &[thread::JoinHandle<Measured>]) {
    let progress = Progress::new(plan.warmup + plan.duration);
    let mut last = (Instant::now(), 0u64);
    while !threads.iter().all(|t| t.is_finished()) {
        thread::sleep(Duration::from_millis(100));
        if last.0.elapsed() < Duration::from_secs(1) {
            continue;
        }
        // ORDERING: a progress tally; nothing is read through it.
        let answered = plan.answered.load(Ordering::Relaxed);
        let rate = (answered - last.1) as f64 / last.0.elapsed().as_secs_f64();
        progress.report(&format!("calls {answered}  calls/s {rate:.0}"));
        last = (Instant::now(), answered);
    }
    progress.finish();
}

fn print_report(args: &Args, plan: &Plan, totals: &Totals, in_process: bool) {
    let (clients, payload, warmup) = (args.clients, args.payload, args.warmup);
    let latencies = &totals.latencies;
    let calls = latencies.count();
    let seconds = plan.duration.as_secs_f64();
    let calls_per_s = calls as f64 / seconds;
    let (p50, p90, p99, p999) = (
        latencies.quantile_us(0.50),
        latencies.quantile_us(0.90),
        latencies.quantile_us(0.99),
        latencies.quantile_us(0.999),
    );
    let (mean, max) = (latencies.mean_us(), latencies.max_us());
    let (errors, reconnects, connecting) = (totals.errors, totals.reconnects, totals.connecting);
    println!(
        "calls={calls} seconds={seconds:.3} calls_per_s={calls_per_s:.0} p50_us={p50:.1} \
         p99_us={p99:.1} errors={errors} p90_us={p90:.1} p999_us={p999:.1} max_us={max:.1} \
         mean_us={mean:.1} clients={clients} payload={payload} reconnects={reconnects} \
         connect_s={connecting:.3} served_calls={}",
        totals.answered
    );
    let server = if in_process {
        "in-process server"
    } else {
        "server"
    };
    println!(
        "{server} against {}: {clients} clients, {payload}-byte echo, {warmup} s warmup + \
         {seconds} s measured ({connecting:.3} s to connect them all)",
        plan.location
    );
    println!(
        "  {calls} calls, {calls_per_s:.0} calls/s; latency mean {mean:.1} us, {}",
        latencies.summary("us")
    );
    println!(
        "  {errors} errors ({} clients could not connect), {reconnects} reconnects",
        totals.failed_connects
    );
}

/// Connects client `index`, one client at a time, then waits for every other client;
/// returns the client (if it could connect) and the start of the warmup.
fn connect(index: usize, plan: &Plan) -> (Option<Client>, Instant) {
    let config = ClientConfig {
        // A server that is gone should cost the run seconds, not MUSCLE3's minute.
        reconnect_deadline: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let client = {
        let _one_at_a_time = plan.connecting.lock().unwrap_or_else(|e| e.into_inner());
        Client::connect(&plan.location, config)
    };
    // Every client passes the barrier, connected or not, so that none waits forever.
    plan.ready.wait();
    let epoch = *plan.epoch.get_or_init(Instant::now);
    match client {
        Ok(client) => (Some(client), epoch),
        Err(e) => {
            eprintln!("client {index}: cannot connect to {}: {e}", plan.location);
            // ORDERING: a tally, read after the threads are joined.
            plan.failed_connects.fetch_add(1, Ordering::Relaxed);
            (None, epoch)
        }
    }
}

fn run_client(index: usize, plan: &Plan) -> Measured {
    let mut measured = Measured {
        latencies: Latencies::default(),
        answered: 0,
        errors: 0,
        reconnects: 0,
    };
    let (Some(mut client), epoch) = connect(index, plan) else {
        return measured;
    };
    let count_from = epoch + plan.warmup;
    let stop_at = count_from + plan.duration;
    let request: Vec<u8> = (0..plan.payload).map(|i| (index + i) as u8).collect();
    loop {
        let start = Instant::now();
        let result = client.call(&request);
        let end = Instant::now();
        let counted = end >= count_from && end < stop_at;
        let problem = match result {
            Ok(answer) => {
                measured.answered += 1;
                // ORDERING: a progress tally; nothing is read through it.
                plan.answered.fetch_add(1, Ordering::Relaxed);
                if answer != request {
                    Some(format!(
                        "answered with {} bytes, not the {}-byte request",
                        answer.len(),
                        request.len()
                    ))
                } else {
                    if counted {
                        measured.latencies.record(end - start);
                    }
                    None
                }
            }
            Err(e) => Some(format!("failed: {e}")),
        };
        if let Some(problem) = problem {
            measured.errors += 1;
            // The first few are enough to see what goes wrong.
            if measured.errors <= 3 {
                eprintln!("client {index}: call {} {problem}", client.last_request());
            }
        }
        if end >= stop_at {
            break;
        }
    }
    measured.reconnects = client.reconnects();
    // Dropping ends the session (request number 0). Not `close()`: it ends the session
    // and then its `Drop` tries again, on a fresh connection, with the ended session's
    // id, which the server refuses as unknown.
    drop(client);
    measured
}
