//! Soak run: one server and many reconnecting clients in one process, connections
//! broken at random before sends and receives, every execution checked.
//!
//! ```sh
//! cargo run --release --example soak -- --duration 30 --clients 16 --fault-rate 0.01
//! ```
//!
//! Each client makes numbered calls in its own session; the handler records, per client,
//! the last call it executed, so a call executed twice (duplicate) or skipped (loss) is
//! caught where it happens, and each answer must name the call it answers. Prints a
//! progress line on stderr each second and a summary on stdout; exits 1 on any
//! duplicate, loss, wrong answer or failed call.

mod support;

use exactly_once::transport::{Client, ClientConfig, Direction, Server, ServerConfig};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{flag, parsed};

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

fn run_client(
    id: u64,
    location: &str,
    rate: f64,
    payload: usize,
    stop: &AtomicBool,
    tally: &Tally,
) -> Vec<u32> {
    let rng = Mutex::new(fastrand::Rng::with_seed(id));
    let config = ClientConfig {
        fault_hook: Some(Arc::new(move |stream, _: Direction| {
            if rng.lock().unwrap().f64() < rate {
                let _ = stream.shutdown(Shutdown::Both);
            }
        })),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(50),
        ..ClientConfig::default()
    };
    let mut latencies_us = Vec::new();
    let Ok(mut client) = Client::connect(location, config) else {
        tally.failed_calls.fetch_add(1, Ordering::Relaxed);
        return latencies_us;
    };
    let mut request = vec![0u8; 16 + payload];
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
        latencies_us.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
        tally.calls.fetch_add(1, Ordering::Relaxed);
    }
    tally
        .reconnects
        .fetch_add(client.reconnects(), Ordering::Relaxed);
    client.close();
    latencies_us
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    support::log_to_stderr(&flag(&args, "--log").unwrap_or_else(|| "off".into()));
    let duration = Duration::from_secs_f64(parsed(&args, "--duration", 30.0));
    let clients: u64 = parsed(&args, "--clients", 16);
    let rate: f64 = parsed(&args, "--fault-rate", 0.01);
    let payload: usize = parsed(&args, "--payload", 64);

    let tally = Arc::new(Tally {
        executions: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        losses: AtomicU64::new(0),
        last_executed: (0..clients).map(|_| AtomicU64::new(0)).collect(),
        calls: AtomicU64::new(0),
        wrong_answers: AtomicU64::new(0),
        failed_calls: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
    });
    let server = Server::bind(
        "127.0.0.1:0",
        ServerConfig::default(),
        handler(Arc::clone(&tally)),
    )
    .expect("bind 127.0.0.1");
    let location = server.location();
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    eprintln!(
        "soak: {clients} clients, fault rate {rate} per send/receive, {duration:?} on {location}"
    );

    let mut latencies: Vec<u32> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|id| {
                let (location, stop, tally) = (&location, &stop, &*tally);
                s.spawn(move || run_client(id, location, rate, payload, stop, tally))
            })
            .collect();
        while start.elapsed() < duration {
            std::thread::sleep(
                Duration::from_secs(1).min(duration.saturating_sub(start.elapsed())),
            );
            let calls = tally.calls.load(Ordering::Relaxed);
            eprint!(
                "\r[{:>5.1}s] calls {calls:>9}  calls/s {:>8.0}  resumed {:>7}",
                start.elapsed().as_secs_f64(),
                calls as f64 / start.elapsed().as_secs_f64(),
                server.counters().sessions_resumed,
            );
        }
        eprintln!();
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let elapsed = start.elapsed();
    latencies.sort_unstable();

    let counters = server.counters();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let calls = load(&tally.calls);
    let executions = load(&tally.executions);
    // A loss that never reached the handler: a call answered that was never executed.
    let unexecuted = calls.saturating_sub(executions);
    let losses = load(&tally.losses) + unexecuted;
    let duplicates = load(&tally.duplicates);
    let bad = duplicates + losses + load(&tally.wrong_answers) + load(&tally.failed_calls);
    println!("clients        {clients}");
    println!("duration       {:.1} s", elapsed.as_secs_f64());
    println!("calls          {calls}");
    println!("executions     {executions}");
    println!("duplicates     {duplicates}");
    println!("losses         {losses}");
    println!("wrong answers  {}", load(&tally.wrong_answers));
    println!("failed calls   {}", load(&tally.failed_calls));
    println!("reconnects     {}", load(&tally.reconnects));
    println!("resent         {}", counters.requests_resent);
    println!("calls/s        {:.0}", calls as f64 / elapsed.as_secs_f64());
    println!("latency p50    {:.3} ms", percentile(&latencies, 0.50));
    println!("latency p99    {:.3} ms", percentile(&latencies, 0.99));
    println!("latency max    {:.3} ms", percentile(&latencies, 1.0));
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
