//! gRPC calls/s and p99 latency over loopback, unary echo (`notes.Notes/Echo`, the
//! service of `examples/support/grpc_notes.rs`), with and without the exactly-once
//! layers, measured in the same run: tonic clients sending the session and request
//! metadata by hand to the tonic service without the layer (the bare setup the costs
//! are measured against: the same bytes on the wire), the same clients to the service
//! behind [`HttpLayer`], and tonic over [`GrpcClient`] to the service behind the layer.
//!
//! ```sh
//! cargo bench --features tower --bench grpc -- --seconds 2 --rounds 5 --clients 4
//! ```
//!
//! Each client has a channel (one HTTP/2 connection) of its own and calls back to
//! back. Rounds alternate between the setups; the report gives each one's median over
//! its rounds and the costs against the bare setup (goal: at most 5% of calls/s and
//! 10 µs at p99). `--only 1` runs only the setups listed, and `--calls N` makes each
//! client call `N` times instead of for `--seconds`: for counting instructions per
//! call, one setup at a time, from the difference of two runs, e.g.
//!
//! ```sh
//! valgrind --tool=callgrind target/release/deps/grpc-* --rounds 1 --clients 1 --only 1 --calls 2000
//! ```

#[path = "peers/args.rs"]
mod args;
#[path = "../examples/support/grpc_notes.rs"]
mod notes;
#[path = "peers/rounds.rs"]
mod rounds;

use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{
    ClientConfig, GrpcClientLayer, HttpLayer, REQUEST_HEADER, SESSION_HEADER,
};
use notes::{Runs, ECHO};
use rounds::{End, Settings, GOAL, SKIPPED};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tower_layer::Layer;

#[derive(Clone, Copy, PartialEq)]
enum Setup {
    Bare,
    ServerLayer,
    BothLayers,
}

const SETUPS: [(Setup, &str); 3] = [
    (Setup::Bare, "bare tonic (same metadata)"),
    (Setup::ServerLayer, "HttpLayer"),
    (Setup::BothLayers, "GrpcClient + HttpLayer"),
];

/// The session the bare server is sent (it reads no metadata).
const BARE_SESSION: &str = "0123456789abcdef";

async fn channel(addr: SocketAddr) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).unwrap();
    endpoint.tcp_nodelay(true).connect().await.unwrap()
}

/// Calls `Echo` back to back until `end`, numbering by hand in `session` (if given);
/// returns each call's latency.
async fn by_hand(addr: SocketAddr, session: Option<String>, end: End) -> Vec<Duration> {
    let mut client = tonic::client::Grpc::new(channel(addr).await);
    let session = match session {
        Some(session) => session,
        None => {
            let created = notes::unary(&mut client, ECHO, &[(SESSION_HEADER, "new")], "");
            let created = created.await.unwrap();
            let id = created.metadata().get(SESSION_HEADER).unwrap();
            id.to_str().unwrap().to_owned()
        }
    };
    let mut latencies = Vec::new();
    let mut m = 0u64;
    while end.more(latencies.len()) {
        m += 1;
        let number = m.to_string();
        let metadata = [
            (SESSION_HEADER, session.as_str()),
            (REQUEST_HEADER, &number),
        ];
        let start = Instant::now();
        notes::unary(&mut client, ECHO, &metadata, "payload")
            .await
            .unwrap();
        latencies.push(start.elapsed());
    }
    latencies
}

/// Calls `Echo` back to back until `end` through [`GrpcClient`].
async fn numbered(addr: SocketAddr, end: End) -> Vec<Duration> {
    let layer = GrpcClientLayer::new(ClientConfig::default(), tonic::body::Body::new);
    let mut client = tonic::client::Grpc::new(layer.layer(channel(addr).await));
    let mut latencies = Vec::new();
    while end.more(latencies.len()) {
        let start = Instant::now();
        notes::unary(&mut client, ECHO, &[], "payload")
            .await
            .unwrap();
        latencies.push(start.elapsed());
    }
    latencies
}

/// One round: `clients` tasks for `seconds`; returns calls/s and p99.
async fn round(setup: Setup, addr: SocketAddr, s: &Settings) -> (f64, Duration) {
    let start = Instant::now();
    let end = s.end(start);
    let tasks: Vec<_> = (0..s.clients)
        .map(|_| {
            tokio::spawn(async move {
                match setup {
                    Setup::Bare => by_hand(addr, Some(BARE_SESSION.into()), end).await,
                    Setup::ServerLayer => by_hand(addr, None, end).await,
                    Setup::BothLayers => numbered(addr, end).await,
                }
            })
        })
        .collect();
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    s.tally(start, clients)
}

#[tokio::main]
async fn main() {
    let s = Settings::from_args();
    let bare = notes::serve_notes(None, Arc::new(Runs::default())).await;
    let layer = HttpLayer::new(1 << 20, TableConfig::default(), Budget::new(256 << 20));
    let layered = notes::serve_notes(Some(layer), Arc::new(Runs::default())).await;
    let mut rounds: Vec<Vec<(f64, Duration)>> = vec![Vec::new(); SETUPS.len()];
    for _ in 0..s.rounds {
        for (i, (setup, _)) in SETUPS.iter().enumerate() {
            if s.skips(i) {
                rounds[i].push(SKIPPED);
                continue;
            }
            let addr = if *setup == Setup::Bare { bare } else { layered };
            rounds[i].push(round(*setup, addr, &s).await);
        }
    }
    let summary = rounds::medians(&rounds);
    let names: Vec<&str> = SETUPS.iter().map(|(_, name)| *name).collect();
    rounds::print_header(30);
    rounds::print_rows(30, &names, &summary, summary[0]);
    println!("{GOAL}");
}
