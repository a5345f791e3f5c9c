//! HTTP calls/s and p99 latency over loopback with and without the exactly-once layers,
//! measured in the same run: requests numbered by hand (the two headers only) to a plain
//! axum server, the bare setup the costs are measured against; a layer that only passes
//! requests on, applied with `Router::layer` and around the whole router (what axum
//! charges for a layer either way); the same requests to the same handler behind
//! [`HttpLayer`], applied either way; requests from [`Client`] to the router wrapped in
//! [`HttpLayer`]; and, for reference, plain requests without the headers.
//!
//! The `Idempotency-Key` mode is measured the same way: each call a new key, sent to the
//! bare server (which ignores it), to the router behind [`IdempotencyLayer`], and to the
//! same router behind axum-idempotent (crates.io, its in-memory store: ruts' moka
//! session store, the cookie session it needs made once per client); the report gives
//! the costs against the bare server sent the same header, and then how many times the
//! handler ran when 16 copies of one key arrived at once (a handler that takes 20 ms),
//! over several keys.
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
#[path = "peers/rounds.rs"]
mod rounds;

use args::flag;
use axum::{routing::post, Router};
use bytes::Bytes;
use exactly_once::table::{Budget, TableConfig};
use exactly_once::tower::{
    Client, ClientConfig, HttpLayer, IdempotencyLayer, REQUEST_HEADER, SESSION_HEADER,
};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client as Pool, rt::TokioExecutor};
use rounds::{End, Settings, GOAL, SKIPPED};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_layer::Layer;
use tower_service::Service;

/// The handler every server runs: counts, and answers with the count; and `/slow`,
/// which counts its runs in `slow_runs` and answers after 20 ms.
fn app(runs: Arc<AtomicU64>, slow_runs: Arc<AtomicU64>) -> Router {
    let handler = move |body: Bytes| async move {
        let run = runs.fetch_add(1, Ordering::Relaxed);
        format!("{run} {}", body.len())
    };
    let slow = move |runs: Arc<AtomicU64>| {
        move || async move {
            runs.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            "slow"
        }
    };
    Router::new()
        .route("/call", post(handler))
        .route("/slow", post(slow(Arc::clone(&slow_runs))))
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
    KeyBare,
    KeyOurs,
    KeyPeer,
}

/// The setups; the costs are measured against `Bare`, which sends the same requests as
/// the layered setups (the two numbering headers included) to the server without the
/// layer, so that only the layer's work differs. `Plain` leaves the headers out: the
/// difference is what the protocol's two header lines cost hyper and the client.
/// `EmptyLayer` is the bare setup with a layer that only passes requests on: what axum
/// charges for any layer.
const SETUPS: [(Setup, &str); 10] = [
    (Setup::Plain, "plain (no layer, no headers)"),
    (Setup::Bare, "bare (no layer, same headers)"),
    (Setup::EmptyLayer, "empty Router::layer"),
    (Setup::EmptyAround, "empty layer around router"),
    (Setup::ServerLayer, "HttpLayer Router::layer"),
    (Setup::ServerAround, "HttpLayer around router"),
    (Setup::BothLayers, "Client + HttpLayer"),
    (Setup::KeyBare, "bare, Idempotency-Key sent"),
    (Setup::KeyOurs, "IdempotencyLayer around router"),
    (Setup::KeyPeer, "axum-idempotent (moka store)"),
];

/// The first of the `Idempotency-Key` setups, which the rest are measured against.
const KEY_SETUPS: usize = 7;

/// The session the bare server is sent (it reads no headers).
const BARE_SESSION: &str = "0123456789abcdef";

type HttpPool = Pool<hyper_util::client::legacy::connect::HttpConnector, Body>;

/// The pool, with `stamp` adding headers to each request first.
struct Stamping<F> {
    pool: HttpPool,
    stamp: F,
}

impl<F: FnMut(&mut http::HeaderMap)> Service<http::Request<Body>> for Stamping<F> {
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
        (self.stamp)(request.headers_mut());
        self.pool.call(request)
    }
}

/// Numbers requests in one session with the layer's headers, and nothing else.
fn by_hand(
    pool: HttpPool,
    session: http::HeaderValue,
) -> Stamping<impl FnMut(&mut http::HeaderMap) + Send> {
    let mut next = 1u64;
    let stamp = move |headers: &mut http::HeaderMap| {
        headers.insert(SESSION_HEADER, session.clone());
        headers.insert(REQUEST_HEADER, http::HeaderValue::from(next));
        next += 1;
    };
    Stamping { pool, stamp }
}

/// [`by_hand`] in a session the server at `url` creates.
async fn by_hand_in_new_session(
    pool: HttpPool,
    url: &str,
) -> Stamping<impl FnMut(&mut http::HeaderMap) + Send> {
    let create = http::Request::post(url)
        .header(SESSION_HEADER, "new")
        .body(Body::default());
    let answer = pool.request(create.unwrap()).await.unwrap();
    let session = answer.headers()[SESSION_HEADER].clone();
    by_hand(pool, session)
}

/// A prefix of keys that no other client and no other round uses.
fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("bench-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Names each request with a new `Idempotency-Key`, and sends the session cookie (for
/// axum-idempotent) if it has one.
fn keyed(
    pool: HttpPool,
    cookie: Option<http::HeaderValue>,
) -> Stamping<impl FnMut(&mut http::HeaderMap) + Send> {
    let (prefix, mut next) = (unique_prefix(), 0u64);
    let stamp = move |headers: &mut http::HeaderMap| {
        next += 1;
        let key = format!("\"{prefix}-{next}\"");
        headers.insert("idempotency-key", key.parse().unwrap());
        if let Some(cookie) = &cookie {
            headers.insert(http::header::COOKIE, cookie.clone());
        }
    };
    Stamping { pool, stamp }
}

/// The store axum-idempotent keeps its responses in (a session store).
type PeerStore = ruts::store::moka::MokaStore;

/// The router behind axum-idempotent, keyed by the `Idempotency-Key` header and keeping
/// responses `RETENTION` long, in the cookie session it needs (`/login` makes one).
fn peer_app(runs: Arc<AtomicU64>, slow_runs: Arc<AtomicU64>) -> Router {
    use axum_idempotent::{IdempotentLayer, IdempotentOptions};
    use ruts::{CookieOptions, Session, SessionLayer};
    let options = IdempotentOptions::default()
        .use_idempotency_key_header(Some("Idempotency-Key"), true)
        .expire_after(RETENTION.as_secs() as i64);
    let store = Arc::new(PeerStore::builder().build());
    let cookies = CookieOptions::build()
        .name("session")
        .max_age(3600)
        .path("/");
    let login = |session: Session<PeerStore>| async move {
        let ttl = ruts::store::Ttl::new(3600).unwrap();
        let user = String::from("bench");
        session.set("user", &user, ttl, None).await.unwrap();
        "logged in"
    };
    app(runs, slow_runs)
        .layer(IdempotentLayer::<PeerStore>::new(options))
        .route("/login", post(login))
        .layer(SessionLayer::new(store).with_cookie_options(cookies))
        .layer(tower_cookies::CookieManagerLayer::new())
}

/// How long both implementations keep a key's response: long enough for every copy of
/// a key, short enough that memory stays flat over a run.
const RETENTION: Duration = Duration::from_secs(10);

/// The session cookie of a new axum-idempotent session.
async fn login(pool: &HttpPool, addr: SocketAddr) -> http::HeaderValue {
    let request = http::Request::post(format!("http://{addr}/login")).body(Body::default());
    let answer = pool.request(request.unwrap()).await.unwrap();
    let cookie = answer.headers().get_all(http::header::SET_COOKIE).iter();
    let cookie = cookie
        .filter_map(|c| c.to_str().ok())
        .find(|c| c.starts_with("session="))
        .expect("the login answer sets the session cookie");
    let pair: http::HeaderValue = cookie.split(';').next().unwrap().parse().unwrap();
    answer.into_body().collect().await.unwrap();
    pair
}

/// How many times the handler at `addr` runs when 16 copies of one key arrive at once,
/// for each of `keys` keys.
async fn runs_of_copies(
    addr: SocketAddr,
    slow_runs: &AtomicU64,
    peer: bool,
    keys: usize,
) -> Vec<u64> {
    let pool = Pool::builder(TokioExecutor::new()).build_http::<Body>();
    let cookie = match peer {
        true => Some(login(&pool, addr).await),
        false => None,
    };
    let mut runs = Vec::new();
    for _ in 0..keys {
        let before = slow_runs.load(Ordering::SeqCst);
        let key = format!("\"{}\"", unique_prefix());
        let copies: Vec<_> = (0..16)
            .map(|_| {
                let mut request = http::Request::post(format!("http://{addr}/slow"))
                    .header("idempotency-key", &key);
                if let Some(cookie) = &cookie {
                    request = request.header(http::header::COOKIE, cookie);
                }
                let request = request.body(Body::from("payload")).unwrap();
                let pool = pool.clone();
                tokio::spawn(async move {
                    let answer = pool.request(request).await.unwrap();
                    answer.into_body().collect().await.unwrap();
                })
            })
            .collect();
        for copy in copies {
            copy.await.unwrap();
        }
        runs.push(slow_runs.load(Ordering::SeqCst) - before);
    }
    runs
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
    let peer = setup == Setup::KeyPeer;
    let start = Instant::now();
    let end = s.end(start);
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
                        calls_until(by_hand(pool, session), url, end).await
                    }
                    Setup::ServerLayer | Setup::ServerAround => {
                        let by_hand = by_hand_in_new_session(pool, &url).await;
                        calls_until(by_hand, url, end).await
                    }
                    Setup::BothLayers => {
                        let client = Client::new(pool, ClientConfig::default());
                        calls_until(client, url, end).await
                    }
                    Setup::KeyBare | Setup::KeyOurs | Setup::KeyPeer => {
                        let cookie = match peer {
                            true => Some(login(&pool, addr).await),
                            false => None,
                        };
                        calls_until(keyed(pool, cookie), url, end).await
                    }
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
    let none = Arc::<AtomicU64>::default;
    let bare = serve(app(none(), none())).await;
    let empty = serve(app(none(), none()).layer(tower_layer::layer_fn(PassOn))).await;
    let layer = HttpLayer::new(1 << 20, TableConfig::default(), Budget::new(256 << 20));
    let layered = serve(app(none(), none()).layer(layer)).await;
    // `with_state(())`, as `axum::serve` does for a bare router: its handlers are made
    // into services once, not on every request.
    let empty_around = serve_around(PassOn(app(none(), none()).with_state(()))).await;
    let layer = HttpLayer::new(1 << 20, TableConfig::default(), Budget::new(256 << 20));
    let layer = layer.answering(axum::body::Body::new);
    let around = serve_around(layer.layer(app(none(), none()).with_state(()))).await;
    let (ours_slow, peer_slow) = (none(), none());
    let keys = IdempotencyLayer::new(1 << 20, Budget::new(1 << 30)).with_retention(RETENTION);
    let keys = keys.answering(axum::body::Body::new);
    let ours = serve_around(keys.layer(app(none(), Arc::clone(&ours_slow)).with_state(()))).await;
    let peer = serve(peer_app(none(), Arc::clone(&peer_slow))).await;
    let mut rounds: Vec<Vec<(f64, Duration)>> = vec![Vec::new(); SETUPS.len()];
    for _ in 0..s.rounds {
        for (i, (setup, _)) in SETUPS.iter().enumerate() {
            if s.skips(i) {
                rounds[i].push(SKIPPED);
                continue;
            }
            let addr = match setup {
                Setup::Plain | Setup::Bare => bare,
                Setup::EmptyLayer => empty,
                Setup::EmptyAround => empty_around,
                Setup::ServerAround => around,
                Setup::ServerLayer => layered,
                Setup::BothLayers => around,
                Setup::KeyBare => bare,
                Setup::KeyOurs => ours,
                Setup::KeyPeer => peer,
            };
            rounds[i].push(round(*setup, addr, &s).await);
        }
    }
    let summary = rounds::medians(&rounds);
    let names: Vec<&str> = SETUPS.iter().map(|(_, name)| *name).collect();
    rounds::print_header(32);
    // Against the bare setup sent the same headers (index 1: `plain` sends none).
    let k = KEY_SETUPS;
    rounds::print_rows(32, &names[..k], &summary[..k], summary[1]);
    println!("{GOAL}");
    println!();
    rounds::print_rows(32, &names[k..], &summary[k..], summary[k]);
    println!(
        "costs against the bare server sent the same Idempotency-Key header (a new key each call)"
    );
    let keys = flag("--copies-keys", 20);
    let ours_runs = runs_of_copies(ours, &ours_slow, false, keys).await;
    let peer_runs = runs_of_copies(peer, &peer_slow, true, keys).await;
    for (name, runs) in [
        ("IdempotencyLayer", ours_runs),
        ("axum-idempotent", peer_runs),
    ] {
        let total: u64 = runs.iter().sum();
        let (min, max) = (runs.iter().min().unwrap(), runs.iter().max().unwrap());
        println!(
            "{name:<32} 16 copies of one key at once, {keys} keys: handler runs per key {min} to {max} (mean {:.1})",
            total as f64 / keys as f64
        );
    }
}
