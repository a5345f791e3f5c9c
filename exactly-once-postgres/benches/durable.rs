//! What exactly-once on PostgreSQL costs: one PostgreSQL (the throwaway one of
//! `exactly_once_postgres::testing`, or `DATABASE_URL`'s), a handler that inserts one
//! row, 16 clients calling back to back, in the same run:
//!
//! - **store**: the handler behind `DurableLayer`, writing in the run's transaction;
//! - **bare**: the same handler in its own transaction (BEGIN, INSERT, COMMIT), no
//!   exactly-once;
//! - **idempotency key**: the usual pattern: a claim row committed on its own
//!   (`INSERT … ON CONFLICT DO NOTHING`), the handler's transaction, then an update of
//!   the claim with the answer; a duplicate polls the claim until it has one.
//!
//! Each is an axum handler called in-process (no HTTP), so that the three differ only
//! in what they send the database. The runs are interleaved (store, bare, key; three
//! rounds) and the table shows each round's calls/s, the ratios of the medians, and
//! per call the statements the server ran (`pg_stat_statements`, where installed), the
//! round trips the client made and the CPU time of this process (clients, layer,
//! handlers; not the server). Last, what a duplicate costs in the same process.
//!
//! ```sh
//! cargo bench -p exactly-once-postgres --bench durable -- --seconds 3
//! ```
//!
//! `-- --only store` (or `bare`, `key`) runs one kind alone, for a profiler.

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use deadpool_postgres::{ClientWrapper, Pool};
use exactly_once::tower::{REQUEST_HEADER, SESSION_HEADER};
use exactly_once_postgres::testing::{self, TestPostgres};
use exactly_once_postgres::{migrate, pool, DurableLayer, PgStore, RunKey, RunTransaction};
use http::{HeaderMap, Request, StatusCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;
use tower_layer::Layer;

const CLIENTS: usize = 16;
const ROUNDS: usize = 3;
/// Connections per pool: one per client.
const CONNECTIONS: usize = CLIENTS;

/// The handler's one row.
const INSERT: &str = "INSERT INTO items (key, body) VALUES ($1, 'one row')";

/// The handler of all three: one row, on a connection inside a transaction.
async fn insert_item(client: &ClientWrapper, key: &str) -> Result<(), tokio_postgres::Error> {
    let statement = client.prepare_cached(INSERT).await?;
    client.execute(&statement, &[&key]).await.map(drop)
}

/// Round trips the bare and idempotency-key handlers made (the store counts its own).
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

fn round_trip() {
    // ORDERING: a plain count, read after the run's tasks have been joined.
    ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
}

fn failed(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// (a) Behind the store: the row commits with the run's completion record.
async fn store_handler(
    tx: RunTransaction,
    key: RunKey,
) -> Result<&'static str, (StatusCode, String)> {
    let client = tx.client().await.map_err(failed)?;
    insert_item(&client, &key.to_string())
        .await
        .map_err(failed)?;
    Ok("ok")
}

/// (b) The same row in the handler's own transaction.
async fn bare_handler(
    State(pool): State<Pool>,
    headers: HeaderMap,
) -> Result<&'static str, (StatusCode, String)> {
    let key = idempotency_key(&headers)?;
    let conn = pool.get().await.map_err(failed)?;
    round_trip();
    conn.batch_execute("BEGIN").await.map_err(failed)?;
    round_trip();
    insert_item(&conn, key).await.map_err(failed)?;
    round_trip();
    conn.batch_execute("COMMIT").await.map_err(failed)?;
    Ok("ok")
}

/// (c) The idempotency-key pattern: claim, run, record; a duplicate polls the claim.
async fn keyed_handler(
    State(pool): State<Pool>,
    headers: HeaderMap,
) -> Result<String, (StatusCode, String)> {
    let key = idempotency_key(&headers)?;
    let conn = pool.get().await.map_err(failed)?;
    let claim = conn
        .prepare_cached("INSERT INTO idempotency_keys (key) VALUES ($1) ON CONFLICT DO NOTHING")
        .await
        .map_err(failed)?;
    round_trip();
    if conn.execute(&claim, &[&key]).await.map_err(failed)? == 0 {
        return poll_claim(&conn, key).await;
    }
    round_trip();
    conn.batch_execute("BEGIN").await.map_err(failed)?;
    round_trip();
    insert_item(&conn, key).await.map_err(failed)?;
    round_trip();
    conn.batch_execute("COMMIT").await.map_err(failed)?;
    let answer = "ok";
    let record = conn
        .prepare_cached("UPDATE idempotency_keys SET response = $2 WHERE key = $1")
        .await
        .map_err(failed)?;
    round_trip();
    conn.execute(&record, &[&key, &answer])
        .await
        .map_err(failed)?;
    Ok(answer.to_owned())
}

/// A duplicate of the idempotency-key pattern: polls every 10 ms for the answer.
async fn poll_claim(conn: &ClientWrapper, key: &str) -> Result<String, (StatusCode, String)> {
    let read = conn
        .prepare_cached("SELECT response FROM idempotency_keys WHERE key = $1")
        .await
        .map_err(failed)?;
    for _ in 0..500 {
        round_trip();
        let row = conn.query_one(&read, &[&key]).await.map_err(failed)?;
        if let Some(answer) = row.get::<_, Option<String>>(0) {
            return Ok(answer);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err((StatusCode::CONFLICT, "still running after 5 s".into()))
}

fn idempotency_key(headers: &HeaderMap) -> Result<&str, (StatusCode, String)> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .ok_or((StatusCode::BAD_REQUEST, "no Idempotency-Key".into()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Store,
    Bare,
    Keyed,
}

const MODES: [Mode; 3] = [Mode::Store, Mode::Bare, Mode::Keyed];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Store => "store",
            Mode::Bare => "bare",
            Mode::Keyed => "idempotency key",
        }
    }
}

/// The three services, the store's sessions, and the database's counters.
struct Bench {
    store: PgStore,
    routers: [Router; 3],
    /// Each client's session in the store and its next number.
    sessions: Vec<(String, AtomicU64)>,
    /// Unique keys for the bare and keyed calls.
    next_key: AtomicU64,
    admin: tokio_postgres::Client,
    server_counts: bool,
}

/// One run's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    calls: u64,
    seconds: f64,
    statements: Option<u64>,
    round_trips: u64,
    /// CPU time of this process (clients, layer, handler, pools; not the server's).
    cpu: Duration,
}

impl Figures {
    fn calls_per_second(&self) -> f64 {
        self.calls as f64 / self.seconds
    }
}

impl Bench {
    async fn new(database: tokio_postgres::Config) -> Bench {
        let (mut admin, connection) = database
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to the bench database");
        tokio::spawn(connection);
        migrate(&mut admin).await.expect("migrate");
        admin
            .batch_execute(
                "CREATE TABLE items (key text NOT NULL, body text NOT NULL);
                 CREATE TABLE idempotency_keys (key text PRIMARY KEY, response text);",
            )
            .await
            .expect("the bench's tables");
        // Counted where the server preloads pg_stat_statements (the harness does where
        // it is installed; DATABASE_URL's server may).
        let server_counts = admin
            .batch_execute(
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
                 SELECT 1 FROM pg_stat_statements LIMIT 1",
            )
            .await
            .is_ok();
        if !server_counts {
            eprintln!("(pg_stat_statements not preloaded: statements are not counted)");
        }
        let store = PgStore::new(pool(database.clone(), CONNECTIONS), Default::default());
        let durable =
            DurableLayer::new(store.clone()).layer(Router::new().route("/", post(store_handler)));
        let routers = [
            Router::new().fallback_service(durable),
            Router::new()
                .route("/", post(bare_handler))
                .with_state(pool(database.clone(), CONNECTIONS)),
            Router::new()
                .route("/", post(keyed_handler))
                .with_state(pool(database, CONNECTIONS)),
        ];
        let mut sessions = Vec::new();
        for _ in 0..CLIENTS {
            let id = store.create_session().await.expect("a session");
            sessions.push((id.to_string(), AtomicU64::new(1)));
        }
        Bench {
            store,
            routers,
            sessions,
            next_key: AtomicU64::new(0),
            admin,
            server_counts,
        }
    }

    /// One call of `mode` by client `c`: its answer's status.
    async fn call(&self, mode: Mode, c: usize) -> StatusCode {
        let request = Request::post("/");
        let request = match mode {
            Mode::Store => {
                let (session, next) = &self.sessions[c];
                let number = next.fetch_add(1, Ordering::Relaxed);
                request
                    .header(SESSION_HEADER, session)
                    .header(REQUEST_HEADER, number)
            }
            Mode::Bare | Mode::Keyed => {
                let key = self.next_key.fetch_add(1, Ordering::Relaxed);
                request.header("idempotency-key", format!("call-{key}"))
            }
        };
        let request = request.body(axum::body::Body::empty()).unwrap();
        let router = self.routers[mode as usize].clone();
        router.oneshot(request).await.unwrap().status()
    }

    /// 16 clients calling `mode` back to back for `seconds`.
    async fn run(self: &Arc<Self>, mode: Mode, seconds: f64) -> Figures {
        self.reset_server_counts().await;
        let store_before = self.store.counters();
        let round_trips_before = ROUND_TRIPS.load(Ordering::Relaxed);
        let cpu_before = process_cpu();
        let start = Instant::now();
        let until = start + Duration::from_secs_f64(seconds);
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let bench = Arc::clone(self);
                tokio::spawn(async move {
                    let mut calls = 0u64;
                    while Instant::now() < until {
                        let status = bench.call(mode, c).await;
                        assert_eq!(status, StatusCode::OK, "{} call failed", mode.name());
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        let mut calls = 0;
        for client in clients {
            calls += client.await.expect("a client panicked");
        }
        let seconds = start.elapsed().as_secs_f64();
        let cpu = process_cpu().saturating_sub(cpu_before);
        let round_trips = match mode {
            // The store's own round trips, and the handler's INSERT.
            Mode::Store => self.store.counters().round_trips - store_before.round_trips + calls,
            Mode::Bare | Mode::Keyed => ROUND_TRIPS.load(Ordering::Relaxed) - round_trips_before,
        };
        Figures {
            calls,
            seconds,
            statements: self.server_statements().await,
            round_trips,
            cpu,
        }
    }

    async fn reset_server_counts(&self) {
        if self.server_counts {
            self.admin
                .batch_execute("SELECT pg_stat_statements_reset()")
                .await
                .expect("reset pg_stat_statements");
        }
    }

    /// Statements the server ran in this database since the last reset, less the
    /// counting's own.
    async fn server_statements(&self) -> Option<u64> {
        if !self.server_counts {
            return None;
        }
        let statements = testing::server_statements(&self.admin).await;
        Some(statements.expect("read pg_stat_statements"))
    }

    /// What `copies` copies of one new number of one session cost, sent at once and then
    /// again once it has run: (statements the server ran, the store's round trips).
    async fn duplicates(&self, copies: usize) {
        let (session, next) = &self.sessions[0];
        let number = next.fetch_add(1, Ordering::Relaxed);
        let send = || {
            let request = Request::post("/")
                .header(SESSION_HEADER, session)
                .header(REQUEST_HEADER, number)
                .body(axum::body::Body::empty())
                .unwrap();
            self.routers[Mode::Store as usize].clone().oneshot(request)
        };
        self.reset_server_counts().await;
        let before = self.store.counters();
        let copies_sent: Vec<_> = (0..copies).map(|_| tokio::spawn(send())).collect();
        for copy in copies_sent {
            let answer = copy.await.expect("a copy's task").unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
        }
        let first = (
            self.server_statements().await,
            self.store.counters().round_trips - before.round_trips,
        );
        // Resends after it ran: answered from the process's table.
        self.reset_server_counts().await;
        let before = self.store.counters();
        for _ in 0..copies {
            assert_eq!(send().await.unwrap().status(), StatusCode::OK);
        }
        let resent = self.store.counters().round_trips - before.round_trips;
        let resent_statements = self.server_statements().await;
        println!(
            "{copies} concurrent copies of one call: {} statements at the server, {} round trips by the store and the handler's 1 (one run)",
            show(first.0),
            first.1
        );
        println!(
            "{copies} resends of it after it ran: {} statements at the server, {resent} round trips by the store",
            show(resent_statements)
        );
    }
}

/// This process's CPU time (user and system) from `/proc/self/stat`, in clock ticks of
/// 10 ms (zero where there is no `/proc`).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn show(n: Option<u64>) -> String {
    n.map_or("(not counted)".into(), |n| n.to_string())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The value of flag `name`, if given; anything else cargo passes (`--bench`) is
/// ignored.
fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

/// `--only store|bare|key`: one kind alone, for a profiler.
fn only_flag() -> Option<Mode> {
    match flag("--only")?.as_str() {
        "store" => Some(Mode::Store),
        "bare" => Some(Mode::Bare),
        "key" => Some(Mode::Keyed),
        other => panic!("--only takes store, bare or key, not {other}"),
    }
}

fn main() {
    // `--seconds N`: the length of each run.
    let seconds = flag("--seconds").map_or(3.0, |s| s.parse().expect("--seconds takes a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let Some(pg) = TestPostgres::start("bench durable") else {
        return;
    };
    runtime.block_on(async {
        let database = pg.fresh_database().await;
        let bench = Arc::new(Bench::new(database).await);
        // Warm-up: every pooled connection opened, every statement prepared.
        for mode in MODES {
            bench.run(mode, 0.5).await;
        }
        if let Some(mode) = only_flag() {
            let run = bench.run(mode, seconds).await;
            println!(
                "{} alone: {:.0} calls/s",
                mode.name(),
                run.calls_per_second()
            );
            return;
        }
        let mut figures = vec![Vec::new(); MODES.len()];
        for round in 1..=ROUNDS {
            for mode in MODES {
                let run = bench.run(mode, seconds).await;
                eprintln!(
                    "round {round} {:<16} {:>7.0} calls/s",
                    mode.name(),
                    run.calls_per_second()
                );
                figures[mode as usize].push(run);
            }
        }
        report(&figures, seconds);
        bench.duplicates(CLIENTS).await;
    });
    drop(runtime);
}

fn report(figures: &[Vec<Figures>], seconds: f64) {
    let medians: Vec<f64> = figures
        .iter()
        .map(|runs| median(runs.iter().map(Figures::calls_per_second).collect()))
        .collect();
    println!(
        "\n{CLIENTS} clients, {ROUNDS} interleaved rounds of {seconds} s per kind, one row per call"
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>14}",
        "kind",
        "round 1",
        "round 2",
        "round 3",
        "median",
        "statements",
        "round trips",
        "client CPU µs"
    );
    for mode in MODES {
        let runs = &figures[mode as usize];
        let calls: u64 = runs.iter().map(|r| r.calls).sum();
        let statements = runs
            .iter()
            .map(|r| r.statements)
            .sum::<Option<u64>>()
            .map_or("-".to_owned(), |s| {
                format!("{:.2}", s as f64 / calls as f64)
            });
        let round_trips: u64 = runs.iter().map(|r| r.round_trips).sum();
        let cpu: Duration = runs.iter().map(|r| r.cpu).sum();
        print!("{:<16}", mode.name());
        for run in runs {
            print!(" {:>10.0}", run.calls_per_second());
        }
        println!(
            " {:>10.0} {:>12} {:>12.2} {:>14.1}",
            medians[mode as usize],
            statements,
            round_trips as f64 / calls as f64,
            cpu.as_secs_f64() * 1e6 / calls as f64
        );
    }
    let (store, bare, keyed) = (medians[0], medians[1], medians[2]);
    println!(
        "store / bare            {:.2}x (goal >= 0.8x)",
        store / bare
    );
    println!("store / idempotency key {:.2}x (goal >= 2x)", store / keyed);
}
