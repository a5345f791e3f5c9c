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
//! latency. A failed call or a wrong answer counts as an error. At the end every client
//! ends its session.
//!
//! Prints one machine-readable line on stdout,
//! `calls=… seconds=… calls_per_s=… p50_us=… p99_us=… errors=…` (more `key=value`
//! fields follow), then a human summary. Exits 1 if there were errors.

mod support;

use exactly_once::transport::{Client, ClientConfig, Server, ServerConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use support::{flag, parsed};

/// What one client thread measured.
struct Measured {
    /// Latency of each counted call, in nanoseconds.
    latencies: Vec<u64>,
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
    /// Held while a client connects: clients connect one after another, because
    /// MUSCLE3's server listens with a backlog of 5 and a burst of 64 connects then
    /// waits for the kernel's SYN-ACK retransmissions (up to tens of seconds).
    connecting: Mutex<()>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    support::log_to_stderr(&flag(&args, "--log").unwrap_or_else(|| "error".into()));
    let clients: usize = parsed(&args, "--clients", 64);
    let duration: f64 = parsed(&args, "--duration", 10.0);
    let warmup: f64 = parsed(&args, "--warmup", 1.0);
    let payload: usize = parsed(&args, "--payload", 64);
    let spawn_ours = args.iter().any(|a| a == "--spawn-ours");
    let valid = clients > 0
        && duration.is_finite()
        && duration > 0.0
        && warmup.is_finite()
        && warmup >= 0.0;
    if !valid {
        eprintln!("--clients must be positive, --duration positive, --warmup not negative");
        std::process::exit(2);
    }

    let server = spawn_ours.then(|| {
        let config = ServerConfig {
            max_sessions: clients.max(1024),
            max_connections: clients.max(256),
            ..ServerConfig::default()
        };
        Server::bind("127.0.0.1:0", config, |request: &[u8]| request.to_vec()).unwrap_or_else(|e| {
            eprintln!("cannot start the server: {e}");
            std::process::exit(1);
        })
    });
    let location = match (&server, flag(&args, "--connect")) {
        (Some(server), _) => server.location(),
        (None, Some(location)) => location,
        (None, None) => {
            eprintln!(
                "usage: transport_load (--connect tcp:HOST:PORT | --spawn-ours) [--clients N] \
                 [--duration SECS] [--payload BYTES] [--warmup SECS]"
            );
            std::process::exit(2);
        }
    };

    let plan = Arc::new(Plan {
        location,
        payload,
        warmup: Duration::from_secs_f64(warmup),
        duration: Duration::from_secs_f64(duration),
        ready: Barrier::new(clients),
        epoch: OnceLock::new(),
        failed_connects: AtomicU64::new(0),
        connecting: Mutex::new(()),
    });
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let plan = Arc::clone(&plan);
            thread::Builder::new()
                .name(format!("load-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || run_client(i, &plan))
                .expect("spawn a client thread")
        })
        .collect();
    let measured: Vec<Measured> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();

    let mut latencies: Vec<u64> =
        Vec::with_capacity(measured.iter().map(|m| m.latencies.len()).sum());
    for m in &measured {
        latencies.extend_from_slice(&m.latencies);
    }
    latencies.sort_unstable();
    // ORDERING: read after every client thread has been joined.
    let failed_connects = plan.failed_connects.load(Ordering::Relaxed);
    let errors = measured.iter().map(|m| m.errors).sum::<u64>() + failed_connects;
    let reconnects: u64 = measured.iter().map(|m| m.reconnects).sum();
    let connecting = plan
        .epoch
        .get()
        .map_or(0.0, |e| (*e - started).as_secs_f64());
    let calls = latencies.len() as u64;
    let seconds = plan.duration.as_secs_f64();
    let calls_per_s = calls as f64 / seconds;
    let us = |nanos: u64| nanos as f64 / 1000.0;
    let mean = if calls == 0 {
        0.0
    } else {
        latencies.iter().sum::<u64>() as f64 / calls as f64 / 1000.0
    };
    let (p50, p90, p99, p999, max) = (
        us(percentile(&latencies, 50.0)),
        us(percentile(&latencies, 90.0)),
        us(percentile(&latencies, 99.0)),
        us(percentile(&latencies, 99.9)),
        us(latencies.last().copied().unwrap_or(0)),
    );

    println!(
        "calls={calls} seconds={seconds:.3} calls_per_s={calls_per_s:.0} p50_us={p50:.1} \
         p99_us={p99:.1} errors={errors} p90_us={p90:.1} p999_us={p999:.1} max_us={max:.1} \
         mean_us={mean:.1} clients={clients} payload={payload} reconnects={reconnects} \
         connect_s={connecting:.3}"
    );
    println!(
        "{} against {}: {clients} clients, {payload}-byte echo, {warmup} s warmup + \
         {seconds} s measured ({connecting:.3} s to connect them all)",
        if server.is_some() {
            "in-process server"
        } else {
            "server"
        },
        plan.location
    );
    println!(
        "  {calls} calls, {calls_per_s:.0} calls/s; latency mean {mean:.1} us, \
         p50 {p50:.1} us, p90 {p90:.1} us, p99 {p99:.1} us, p99.9 {p999:.1} us, max {max:.1} us"
    );
    println!(
        "  {errors} errors ({failed_connects} clients could not connect), {reconnects} reconnects"
    );

    if let Some(server) = server {
        let cut = server.shutdown(Duration::from_secs(5));
        if cut > 0 {
            eprintln!("{cut} connections had to be cut at shutdown");
        }
    }
    std::process::exit(i32::from(errors > 0));
}

fn run_client(index: usize, plan: &Plan) -> Measured {
    let mut measured = Measured {
        latencies: Vec::new(),
        errors: 0,
        reconnects: 0,
    };
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
    let mut client = match client {
        Ok(client) => client,
        Err(e) => {
            eprintln!("client {index}: cannot connect to {}: {e}", plan.location);
            // ORDERING: a tally, read after the threads are joined.
            plan.failed_connects.fetch_add(1, Ordering::Relaxed);
            return measured;
        }
    };
    let count_from = epoch + plan.warmup;
    let stop_at = count_from + plan.duration;
    measured.latencies.reserve(16 * 1024);
    let request: Vec<u8> = (0..plan.payload).map(|i| (index + i) as u8).collect();
    loop {
        let start = Instant::now();
        let result = client.call(&request);
        let end = Instant::now();
        let counted = end >= count_from && end < stop_at;
        let problem = match result {
            Ok(answer) if answer == request => {
                if counted {
                    measured.latencies.push((end - start).as_nanos() as u64);
                }
                None
            }
            Ok(answer) => Some(format!(
                "answered with {} bytes, not the {}-byte request",
                answer.len(),
                request.len()
            )),
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

/// The nearest-rank percentile of sorted values (0 when there are none).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
