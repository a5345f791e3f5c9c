//! HTTP calls/s and p99 latency over loopback with and without the exactly-once layers,
//! measured in the same run: requests numbered by hand (the two headers only) to a plain
//! axum server, the bare setup the costs are measured against; a layer that only passes
//! requests on, applied with `Router::layer` and around the whole router (what axum
//! charges for a layer either way); the same requests to the same handler behind
//! [`HttpLayer`], applied either way; requests from [`Client`] to the router wrapped in
//! [`HttpLayer`]; and, for reference, plain requests without the headers.
//!
//! ```sh
//! cargo bench --features tower --bench http -- --seconds 2 --rounds 5 --clients 4
//! ```
//!
//! Rounds alternate between the setups; the report gives each one's median over its
//! rounds and the ratios to the bare setup (goal: the layers cost at most 5% of calls/s
//! and 10 µs at p99). `--only 1,5` runs only the setups listed, and `--calls N` makes
//! each client call `N` times instead of for `--seconds`: for counting instructions per
//! call, one setup at a time, from the difference of two runs, e.g.
//!
//! ```sh
//! valgrind --tool=callgrind target/release/deps/http-* --rounds 1 --clients 1 --only 5 --calls 2000
//! ```

#[path = "peers/args.rs"]
mod args;

use args::flag;
use axum::{routing::post, Router};
use bytes::Bytes;
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{Client, ClientConfig, HttpLayer, REQUEST_HEADER, SESSION_HEADER};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client as Pool, rt::TokioExecutor};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_layer::Layer;
use tower_service::Service;

struct Settings {
    seconds: f64,
    rounds: usize,
    clients: usize,
    /// Calls per client and round instead of `seconds` (`--calls 1000`), for counting
    /// instructions per call.
    calls: Option<usize>,
    /// Only the setups whose index is listed (`--only 0,2`), for profiling one at a time.
    only: Option<Vec<usize>>,
}

fn settings() -> Settings {
    Settings {
        seconds: flag("--seconds", 2.0),
        rounds: flag("--rounds", 3),
        clients: flag("--clients", 4),
        calls: Some(flag("--calls", 0)).filter(|&n| n > 0),
        only: args::value_of("--only")
            .map(|list| list.split(',').filter_map(|n| n.parse().ok()).collect()),
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

async fn serve_around<S>(service: S) -> SocketAddr
where
    S: Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let make = axum::ServiceExt::<axum::extract::Request>::into_make_service(service);
    tokio::spawn(async move { axum::serve(listener, make).await });
    addr
}

type Body = Full<Bytes>;

/// When a client stops calling: at an instant, or after a number of calls.
#[derive(Clone, Copy)]
enum End {
    At(Instant),
    After(usize),
}

impl End {
    fn more(self, done: usize) -> bool {
        match self {
            End::At(until) => Instant::now() < until,
            End::After(calls) => done < calls,
        }
    }
}

/// Calls back to back with `call` until `end`; returns each call's latency.
async fn calls_until<S, B>(mut call: S, url: String, end: End) -> Vec<Duration>
where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut latencies = Vec::new();
    while end.more(latencies.len()) {
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
    Plain,
    Bare,
    EmptyLayer,
    EmptyAround,
    ServerLayer,
    ServerAround,
    BothLayers,
}

/// The setups; the costs are measured against `Bare`, which sends the same requests as
/// the layered setups (the two numbering headers included) to the server without the
/// layer, so that only the layer's work differs. `Plain` leaves the headers out: the
/// difference is what the protocol's two header lines cost hyper and the client.
/// `EmptyLayer` is the bare setup with a layer that only passes requests on: what axum
/// charges for any layer.
const SETUPS: [(Setup, &str); 7] = [
    (Setup::Plain, "plain (no layer, no headers)"),
    (Setup::Bare, "bare (no layer, same headers)"),
    (Setup::EmptyLayer, "empty Router::layer"),
    (Setup::EmptyAround, "empty layer around router"),
    (Setup::ServerLayer, "HttpLayer Router::layer"),
    (Setup::ServerAround, "HttpLayer around router"),
    (Setup::BothLayers, "Client + HttpLayer"),
];

/// The session the bare server is sent (it reads no headers).
const BARE_SESSION: &str = "0123456789abcdef";

/// Numbers requests in one session with the layer's headers, and nothing else.
#[derive(Clone)]
struct ByHand {
    pool: Pool<hyper_util::client::legacy::connect::HttpConnector, Body>,
    session: http::HeaderValue,
    next: u64,
}

impl ByHand {
    async fn new(
        pool: Pool<hyper_util::client::legacy::connect::HttpConnector, Body>,
        url: &str,
    ) -> Self {
        let create = http::Request::post(url)
            .header(SESSION_HEADER, "new")
            .body(Body::default());
        let answer = pool.request(create.unwrap()).await.unwrap();
        let session = answer.headers()[SESSION_HEADER].clone();
        ByHand::numbering(pool, session)
    }

    fn numbering(
        pool: Pool<hyper_util::client::legacy::connect::HttpConnector, Body>,
        session: http::HeaderValue,
    ) -> Self {
        ByHand {
            pool,
            session,
            next: 1,
        }
    }
}

impl Service<http::Request<Body>> for ByHand {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.pool.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let headers = request.headers_mut();
        headers.insert(SESSION_HEADER, self.session.clone());
        headers.insert(REQUEST_HEADER, http::HeaderValue::from(self.next));
        self.next += 1;
        self.pool.call(request)
    }
}

/// A layer's service that passes every request on and does nothing else.
#[derive(Clone)]
struct PassOn<S>(S);

impl<S: Service<R>, R> Service<R> for PassOn<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.0.call(request)
    }
}

/// One round: `clients` tasks for `seconds`; returns calls/s and p99.
async fn round(setup: Setup, addr: SocketAddr, s: &Settings) -> (f64, Duration) {
    let start = Instant::now();
    let end = match s.calls {
        Some(calls) => End::After(calls),
        None => End::At(start + Duration::from_secs_f64(s.seconds)),
    };
    let url = format!("http://{addr}/call");
    let tasks: Vec<_> = (0..s.clients)
        .map(|_| {
            let pool = Pool::builder(TokioExecutor::new()).build_http::<Body>();
            let url = url.clone();
            tokio::spawn(async move {
                match setup {
                    Setup::Plain => calls_until(pool, url, end).await,
                    Setup::Bare | Setup::EmptyLayer | Setup::EmptyAround => {
                        let session = http::HeaderValue::from_static(BARE_SESSION);
                        calls_until(ByHand::numbering(pool, session), url, end).await
                    }
                    Setup::ServerLayer | Setup::ServerAround => {
                        let by_hand = ByHand::new(pool, &url).await;
                        calls_until(by_hand, url, end).await
                    }
                    Setup::BothLayers => {
                        let client = Client::new(pool, ClientConfig::default());
                        calls_until(client, url, end).await
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort();
    let p99 = latencies[(latencies.len() - 1) * 99 / 100];
    let seconds = match s.calls {
        Some(_) => start.elapsed().as_secs_f64(),
        None => s.seconds,
    };
    (latencies.len() as f64 / seconds, p99)
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
    let empty = serve(app(Arc::default()).layer(tower_layer::layer_fn(PassOn))).await;
    let layer = HttpLayer::new(1 << 20, TableConfig::default(), Budget::new(256 << 20));
    let layered = serve(app(Arc::default()).layer(layer)).await;
    // `with_state(())`, as `axum::serve` does for a bare router: its handlers are made
    // into services once, not on every request.
    let empty_around = serve_around(PassOn(app(Arc::default()).with_state(()))).await;
    let layer = HttpLayer::new(1 << 20, TableConfig::default(), Budget::new(256 << 20));
    let layer = layer.answering(axum::body::Body::new);
    let around = serve_around(layer.layer(app(Arc::default()).with_state(()))).await;
    let mut rounds: Vec<Vec<(f64, Duration)>> = vec![Vec::new(); SETUPS.len()];
    for _ in 0..s.rounds {
        for (i, (setup, _)) in SETUPS.iter().enumerate() {
            if s.only.as_ref().is_some_and(|only| !only.contains(&i)) {
                rounds[i].push((1.0, Duration::ZERO));
                continue;
            }
            let addr = match setup {
                Setup::Plain | Setup::Bare => bare,
                Setup::EmptyLayer => empty,
                Setup::EmptyAround => empty_around,
                Setup::ServerAround => around,
                Setup::ServerLayer => layered,
                Setup::BothLayers => around,
            };
            rounds[i].push(round(*setup, addr, &s).await);
        }
    }
    let summary: Vec<(f64, Duration)> = rounds
        .iter()
        .map(|r| {
            let rate = median(r.iter().map(|r| r.0).collect());
            let p99 = median(r.iter().map(|r| r.1).collect());
            (rate, p99)
        })
        .collect();
    let (bare_rate, bare_p99) = summary[1];
    println!(
        "{:<30} {:>10} {:>12} {:>16} {:>14}",
        "setup", "calls/s", "p99", "cost of calls/s", "extra at p99"
    );
    for ((_, name), (rate, p99)) in SETUPS.iter().zip(&summary) {
        let cost = 100.0 * (1.0 - rate / bare_rate);
        let extra = (p99.as_secs_f64() - bare_p99.as_secs_f64()) * 1e6;
        println!(
            "{name:<30} {rate:>10.0} {:>12?} {cost:>15.1}% {extra:>+11.1} us",
            p99
        );
    }
    println!("costs against the bare setup; goal: the layers cost at most 5% of calls/s and 10 us at p99");
}
