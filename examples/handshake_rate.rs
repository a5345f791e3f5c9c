//! New-session handshakes per second over loopback, with the session table empty and
//! then with many other live sessions in it: the cost of a handshake must not grow
//! with the table.
//!
//! ```sh
//! cargo run --release --example handshake_rate -- --live 20000 --threads 4 --seconds 3
//! ```
//!
//! Starts our [`Server`] in this process. Each of `--threads` threads connects, asks for
//! a new session (id 0), reads its id, ends it (request number 0) and closes, in a
//! loop, for `--seconds`; that is measured once with the table empty and once after
//! `--live` sessions have each completed a call and lost their connection (they stay
//! live until their idle expiry). Prints `live=… creates_per_s=…` for each, then the
//! ratio.

use clap::Parser;
use exactly_once::transport::{Server, ServerConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// New-session handshakes per second, with an empty table and with a full one.
#[derive(Parser, Debug)]
struct Args {
    /// Live sessions in the table for the second measurement.
    #[arg(long, default_value_t = 20_000)]
    live: usize,
    /// Threads making handshakes at once.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Seconds each measurement lasts.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

fn main() {
    let args = Args::parse();
    let config = ServerConfig {
        max_sessions: args.live + 4096,
        max_connections: 4096,
        ..ServerConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", config, |request: &[u8]| request.to_vec())
        .expect("bind 127.0.0.1");
    let addr = server.local_addr();
    let seconds = Duration::from_secs_f64(args.seconds);
    let empty = rate(addr, args.threads, seconds);
    println!("live=0 creates_per_s={empty:.0}");
    fill(addr, args.live);
    let live = server.live_sessions();
    let full = rate(addr, args.threads, seconds);
    println!("live={live} creates_per_s={full:.0}");
    println!("ratio_full_to_empty={:.2}", full / empty);
    if let Ok(cpu) = std::fs::read_to_string("/proc/cpuinfo") {
        if let Some(model) = cpu.lines().find(|l| l.starts_with("model name")) {
            println!("{model}");
        }
    }
}

/// Handshakes per second made by `threads` threads for `seconds`.
fn rate(addr: SocketAddr, threads: usize, seconds: Duration) -> f64 {
    let start = Instant::now();
    let made: u64 = thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut made = 0;
                    while start.elapsed() < seconds {
                        create_and_end(addr);
                        made += 1;
                    }
                    made
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    made as f64 / start.elapsed().as_secs_f64()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

fn read_u64(stream: &mut TcpStream) -> u64 {
    let mut buf = [0u8; 8];
    stream.read_exact(&mut buf).expect("an answer");
    u64::from_le_bytes(buf)
}

/// One handshake: a new session, ended at once.
fn create_and_end(addr: SocketAddr) {
    let mut stream = connect(addr);
    stream.write_all(&0u64.to_le_bytes()).unwrap();
    assert_ne!(read_u64(&mut stream), 0);
    stream.write_all(&0u64.to_le_bytes()).unwrap();
}

/// Leaves `n` live sessions that completed a call and have no connection.
fn fill(addr: SocketAddr, n: usize) {
    for _ in 0..n {
        let mut stream = connect(addr);
        stream.write_all(&0u64.to_le_bytes()).unwrap();
        read_u64(&mut stream);
        let mut call = 1u64.to_le_bytes().to_vec();
        call.extend_from_slice(&1u64.to_le_bytes());
        call.push(b'x');
        stream.write_all(&call).unwrap();
        assert_eq!(read_u64(&mut stream), 1);
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).unwrap();
    }
}
