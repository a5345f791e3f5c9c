//! The durable soak: 3 replica processes of an axum server with the PostgreSQL store,
//! behind HAProxy (the shipped `deploy/haproxy.cfg`, round-robin), and 16 numbering
//! clients (the core's `Client`) reaching HAProxy through a proxy that cuts connections
//! at random. Every ~2 s one replica is killed with SIGKILL and started again; once per
//! run PostgreSQL itself is restarted in immediate mode.
//!
//! ```sh
//! cargo run --release -p exactly-once-postgres --example durable_soak -- --seconds 30
//! ```
//!
//! Each run writes one row to a ledger table with no unique constraint, in the run's
//! transaction, so a call run twice shows as two rows and a call answered but not run
//! (or rolled back) as none. Prints calls, ledger rows per (session, number),
//! duplicates, losses, replays, 503s and calls/s; exits 1 on any duplicate, loss, wrong
//! answer or failed call, or when no replica was killed or the database not restarted.
//! `--ledger-apart` makes the handler write its row in a transaction of its own, as a
//! record kept apart from the handler's writes would: the soak then fails with
//! duplicates (rows of runs that did not commit, run again), which shows it can.
//!
//! PostgreSQL is the throwaway one of `exactly_once_postgres::testing` (`DATABASE_URL`'s
//! if set; that one cannot be restarted from here, which the run reports as a failure);
//! HAProxy is Debian's `haproxy` on `PATH`. The replicas are this binary, started with
//! `--replica`; they exit when the soak's end of their stdin closes.

#[path = "../../examples/support/http_serve.rs"]
mod http_serve;
#[path = "../../tests/tower_support/proxy.rs"]
mod proxy;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use clap::Parser;
use exactly_once::tower::{BoxError, Client, ClientConfig, ERROR_HEADER, REQUEST_HEADER};
use exactly_once_postgres::testing::TestPostgres;
use exactly_once_postgres::{migrate, pool, DurableLayer, PgStore, RunKey, RunTransaction};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as Pool;
use hyper_util::rt::TokioExecutor;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tower_layer::Layer;
use tower_service::Service;

/// The router's configuration, shipped with the crate and used here as it is.
const HAPROXY_CFG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg");
/// The attempt of a call a copy is (1 for the first send), set by the clients.
const ATTEMPT: &str = "soak-attempt";
/// The attempt whose copy ran the call, in the handler's (stored) answer: an answer
/// naming an earlier attempt than the one it answers is a replay.
const RAN_ON: &str = "soak-ran-on-attempt";
const REPLICAS: usize = 3;
/// The replicas' database, a libpq key=value connection string: in the environment
/// rather than on the command line, where a password would show in `ps`.
const DATABASE_ENV: &str = "DURABLE_SOAK_DATABASE";

#[derive(Parser, Debug)]
#[command(about = "Durable exactly-once: replicas killed, PostgreSQL restarted, behind HAProxy")]
struct Flags {
    /// How long the clients call, in seconds.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Concurrent clients, each with a session of its own.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Probability that the proxy cuts a connection at each point of an exchange.
    #[arg(long, default_value_t = 0.01)]
    fault_rate: f64,
    /// Seconds between two replica kills.
    #[arg(long, default_value_t = 2.0)]
    kill_every: f64,
    /// Write each ledger row in a transaction of its own, apart from the run's (the
    /// mistake the store exists to prevent): the soak must then fail, with duplicates.
    #[arg(long)]
    ledger_apart: bool,
    /// Internal: run as replica number N.
    #[arg(long, hide = true)]
    replica: Option<usize>,
    /// Internal: the replica's listening address.
    #[arg(long, hide = true)]
    listen: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let database = std::env::var(DATABASE_ENV).ok();
    let ok = match (flags.replica, flags.listen, database) {
        (Some(id), Some(listen), Some(database)) => {
            runtime.block_on(replica(id, listen, database, flags.ledger_apart));
            true
        }
        _ => runtime.block_on(soak(&flags)),
    };
    // The runtime goes first: every child process (kill on drop) and the database
    // (stopped on drop) are gone before the exit status is set.
    drop(runtime);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------------------
// A replica: the store's layer around a handler that writes one ledger row per run.
// ---------------------------------------------------------------------------------

/// The handler's state.
#[derive(Clone)]
struct Handler {
    replica: i32,
    /// With `--ledger-apart`: the pool the ledger rows are written with, each committed
    /// on its own.
    apart: Option<deadpool_postgres::Pool>,
}

async fn replica(id: usize, listen: SocketAddr, database: String, apart: bool) {
    // The soak holds our stdin: when it goes away (even killed), so do we.
    std::thread::spawn(|| {
        let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
        std::process::exit(0);
    });
    let config: tokio_postgres::Config = database.parse().expect("a connection string");
    // Started while the database may be restarting: migrate (a no-op after the first
    // replica) until it answers.
    until_ok(Duration::from_secs(30), || async {
        let (mut client, connection) = config.connect(tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        migrate(&mut client).await?;
        drop(client);
        let _ = connection.await;
        Ok::<_, BoxError>(())
    })
    .await
    .expect("the database answers the replica within 30 s");
    let store = PgStore::new(pool(config.clone(), 8), Default::default());
    let calls = Router::new()
        .route("/call", post(write_ledger))
        .with_state(Handler {
            replica: id as i32,
            apart: apart.then(|| pool(config.clone(), 8)),
        });
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback_service(DurableLayer::new(store).layer(calls));
    let listener = until_ok(Duration::from_secs(10), || TcpListener::bind(listen))
        .await
        .expect("the replica's port is free again within 10 s");
    http_serve::serve(listener, app, http_serve::Limits::default()).await;
}

/// The handler: one ledger row in the run's transaction; the answer echoes the call and
/// names the attempt that ran it.
async fn write_ledger(
    State(handler): State<Handler>,
    tx: RunTransaction,
    key: RunKey,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, (StatusCode, String)> {
    let unavailable = |e: &dyn std::fmt::Display| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let text = String::from_utf8_lossy(&body).into_owned();
    let (client_nr, call) = parse_call(&text).ok_or((StatusCode::BAD_REQUEST, text.clone()))?;
    let attempt = headers
        .get(ATTEMPT)
        .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
        .unwrap_or(0);
    let apart = match &handler.apart {
        Some(pool) => Some(pool.get().await.map_err(|e| unavailable(&e))?),
        None => None,
    };
    let run = tx.client().await.map_err(|e| unavailable(&e))?;
    let db: &tokio_postgres::Client = match &apart {
        Some(conn) => conn,
        None => &run,
    };
    db.execute(
        "INSERT INTO ledger (session, number, client, call, attempt, replica)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &(key.session.get() as i64),
            &(key.request.get() as i64),
            &client_nr,
            &call,
            &attempt,
            &handler.replica,
        ],
    )
    .await
    .map_err(|e| unavailable(&e))?;
    let mut answer = Response::new(Full::new(body));
    answer
        .headers_mut()
        .insert(RAN_ON, HeaderValue::from(attempt));
    Ok(answer)
}

/// A call's body: "<client> <call>".
fn parse_call(text: &str) -> Option<(i32, i64)> {
    let (c, k) = text.split_once(' ')?;
    Some((c.parse().ok()?, k.parse().ok()?))
}

/// Tries `f` every 100 ms until it succeeds or `limit` has passed.
async fn until_ok<T, E, F, Fut>(limit: Duration, mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(t) => return Ok(t),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

// ---------------------------------------------------------------------------------
// The soak: the database, the replicas, HAProxy, the proxy, the clients, the faults.
// ---------------------------------------------------------------------------------

async fn soak(flags: &Flags) -> bool {
    let Some(pg) = TestPostgres::start("durable_soak") else {
        return true; // SKIPPED, said loudly by the harness (a failure under CI=true)
    };
    let pg = Arc::new(pg);
    let database = pg.fresh_database().await;
    // No unique constraint: a call run twice is two rows.
    connect(&database)
        .await
        .batch_execute(
            "CREATE TABLE ledger (session bigint NOT NULL, number bigint NOT NULL,
                client int NOT NULL, call bigint NOT NULL, attempt int NOT NULL,
                replica int NOT NULL)",
        )
        .await
        .expect("create the ledger");
    let ports = free_ports(REPLICAS + 1).await;
    let (router, addrs) = (ports[0], &ports[1..]);
    let mut replicas = Vec::new();
    for (id, &addr) in addrs.iter().enumerate() {
        replicas.push(Replica::start(id, addr, &database, flags.ledger_apart));
    }
    for &addr in addrs {
        wait_healthy(addr).await;
    }
    let Some(haproxy) = start_haproxy(router, addrs).await else {
        return false;
    };
    let faults = proxy::Faults::random(flags.fault_rate);
    let proxy = proxy::start(router, Arc::clone(&faults)).await;
    let url = format!("http://{proxy}/call");

    let start = Instant::now();
    let until = start + Duration::from_secs_f64(flags.seconds);
    let seen = Arc::new(Seen::default());
    let clients: Vec<_> = (0..flags.clients)
        .map(|c| tokio::spawn(client(c, url.clone(), until, Arc::clone(&seen))))
        .collect();
    let chaos = tokio::spawn(chaos(
        replicas,
        Arc::clone(&pg),
        Duration::from_secs_f64(flags.kill_every),
        until,
    ));
    let mut calls = Calls::default();
    for handle in clients {
        calls.add(handle.await.expect("a client task panicked"));
    }
    let elapsed = start.elapsed();
    let (chaos, replicas) = chaos.await.expect("the chaos task panicked");
    // Stopped, the router first (it would report each replica going down).
    drop(haproxy);
    drop(replicas);
    // A new connection: the database's restart closed the first one.
    let ledger = Ledger::read(&connect(&database).await, &calls).await;
    report(flags, &calls, &seen, &faults, &chaos, &ledger, elapsed)
}

async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the soak's database");
    tokio::spawn(connection);
    client
}

/// `n` loopback addresses free a moment ago (bound to port 0, then let go).
async fn free_ports(n: usize) -> Vec<SocketAddr> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// `config` as a libpq connection string, for the replicas' command lines.
fn connection_string(config: &tokio_postgres::Config) -> String {
    let mut parts = Vec::new();
    for host in config.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(name) => parts.push(format!("host={name}")),
            tokio_postgres::config::Host::Unix(path) => {
                parts.push(format!("host={}", path.display()))
            }
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!("password={}", String::from_utf8_lossy(password)));
    }
    if let Some(dbname) = config.get_dbname() {
        parts.push(format!("dbname={dbname}"));
    }
    parts.join(" ")
}

/// How to start a replica (again).
struct ReplicaCommand {
    id: usize,
    addr: SocketAddr,
    database: String,
    ledger_apart: bool,
}

impl ReplicaCommand {
    fn spawn(&self) -> Child {
        let mut command = Command::new(std::env::current_exe().expect("the soak's own binary"));
        command
            .args(["--replica", &self.id.to_string()])
            .args(["--listen", &self.addr.to_string()])
            .env(DATABASE_ENV, &self.database);
        if self.ledger_apart {
            command.arg("--ledger-apart");
        }
        command
            .stdin(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a replica")
    }
}

/// A replica process.
struct Replica {
    command: ReplicaCommand,
    child: Child,
}

impl Replica {
    fn start(
        id: usize,
        addr: SocketAddr,
        database: &tokio_postgres::Config,
        ledger_apart: bool,
    ) -> Replica {
        let command = ReplicaCommand {
            id,
            addr,
            database: connection_string(database),
            ledger_apart,
        };
        let child = command.spawn();
        Replica { command, child }
    }

    /// SIGKILL, then the same replica (same port, same database) again.
    async fn kill_and_restart(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.child = self.command.spawn();
    }
}

/// Waits until `addr` answers `GET /health` 200 (30 s at most).
async fn wait_healthy(addr: SocketAddr) {
    let pool = Pool::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url: http::Uri = format!("http://{addr}/health").parse().unwrap();
    until_ok(Duration::from_secs(30), || async {
        let answer = pool.get(url.clone()).await?;
        match answer.status() {
            StatusCode::OK => Ok(()),
            status => Err(BoxError::from(format!("health: {status}"))),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("replica {addr} not healthy within 30 s: {e}"));
}

/// HAProxy on `listen` over `replicas`, with the shipped configuration; `None` (after
/// saying why) when it is not installed or does not start.
async fn start_haproxy(listen: SocketAddr, replicas: &[SocketAddr]) -> Option<Child> {
    let mut command = Command::new("haproxy");
    command
        .args(["-db", "-f", HAPROXY_CFG])
        .env("EO_LISTEN", listen.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (i, addr) in replicas.iter().enumerate() {
        command.env(format!("EO_REPLICA_{}", i + 1), addr.to_string());
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("FAILED: cannot start haproxy ({e}): install Debian's `haproxy`");
            return None;
        }
    };
    let up = until_ok(Duration::from_secs(10), || TcpStream::connect(listen)).await;
    if let Err(e) = up {
        eprintln!("FAILED: haproxy does not listen on {listen}: {e}");
        return None;
    }
    Some(child)
}

/// What the faults did.
#[derive(Debug, Default)]
struct Chaos {
    kills: u64,
    /// How long the immediate restart of PostgreSQL took, if it was restarted.
    database_restart: Option<Duration>,
}

/// Kills a replica every `every` (in turn) and restarts PostgreSQL once, halfway,
/// until `until`; hands the replicas back, to serve the calls still under way.
async fn chaos(
    mut replicas: Vec<Replica>,
    pg: Arc<TestPostgres>,
    every: Duration,
    until: Instant,
) -> (Chaos, Vec<Replica>) {
    let halfway = Instant::now() + (until - Instant::now()) / 2;
    let restart = tokio::spawn(async move {
        tokio::time::sleep_until(halfway.into()).await;
        if !pg.can_restart() {
            return None;
        }
        let start = Instant::now();
        tokio::task::spawn_blocking(move || pg.restart())
            .await
            .expect("the database restarts");
        Some(start.elapsed())
    });
    let mut chaos = Chaos::default();
    let mut next = Instant::now() + every;
    while next < until {
        tokio::time::sleep_until(next.into()).await;
        let victim = chaos.kills as usize % replicas.len();
        replicas[victim].kill_and_restart().await;
        chaos.kills += 1;
        next += every;
    }
    chaos.database_restart = restart.await.expect("the restart task");
    (chaos, replicas)
}

// ---------------------------------------------------------------------------------
// The clients.
// ---------------------------------------------------------------------------------

/// What the clients' attempts met, beside their answers.
#[derive(Default)]
struct Seen {
    /// Answers 5xx by the layer's error code (`-`: not the layer's; HAProxy's own 502,
    /// 503 and 504, or the handler's 503 when the database went away).
    server_errors: Mutex<BTreeMap<(u16, String), u64>>,
    /// Attempts that got no answer (a connection cut or closed).
    connection_errors: AtomicU64,
    /// Calls answered from the stored record of an earlier attempt's run.
    replays: AtomicU64,
}

/// Below the core's [`Client`], on each attempt: numbers the attempt (so that the
/// handler can name the one that ran), and turns a 5xx answer into an error, so that
/// the client sends the same number again. The client takes any answer without the
/// layer's error code (HAProxy's own 502, 503 and 504, the handler's 503) as the
/// call's answer; but every 5xx here means "not committed, or not known": sending the
/// same number again replays or runs it once.
#[derive(Clone)]
struct Attempts {
    pool: Pool<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    seen: Arc<Seen>,
    last: Arc<Mutex<LastAttempt>>,
}

/// The key (session, number) of a client's last attempt, and its attempt count.
#[derive(Default)]
struct LastAttempt {
    session: Option<HeaderValue>,
    number: Option<HeaderValue>,
    count: u32,
}

impl Service<Request<Full<Bytes>>> for Attempts {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.pool.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<Full<Bytes>>) -> Self::Future {
        let attempt = self.next_attempt(request.headers());
        request
            .headers_mut()
            .insert(ATTEMPT, HeaderValue::from(attempt));
        let seen = Arc::clone(&self.seen);
        let answer = self.pool.call(request);
        Box::pin(async move {
            let answer = match answer.await {
                Ok(answer) => answer,
                Err(e) => {
                    seen.connection_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(e.into());
                }
            };
            let status = answer.status();
            if status.is_server_error() {
                let code = answer
                    .headers()
                    .get(ERROR_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                let line = format!("answered {status} {code}");
                *seen
                    .server_errors
                    .lock()
                    .unwrap()
                    .entry((status.as_u16(), code))
                    .or_default() += 1;
                return Err(line.into());
            }
            let ran_on = answer
                .headers()
                .get(RAN_ON)
                .and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
            if ran_on.is_some_and(|ran_on| ran_on < attempt) {
                seen.replays.fetch_add(1, Ordering::Relaxed);
            }
            Ok(answer)
        })
    }
}

impl Attempts {
    /// 1 for a new (session, number), one more for each copy of the same.
    fn next_attempt(&self, headers: &HeaderMap) -> u32 {
        let session = headers.get(exactly_once::tower::SESSION_HEADER).cloned();
        let number = headers.get(REQUEST_HEADER).cloned();
        let mut last = self.last.lock().unwrap();
        if number.is_some() && last.session == session && last.number == number {
            last.count += 1;
        } else {
            *last = LastAttempt {
                session,
                number,
                count: 1,
            };
        }
        last.count
    }
}

/// What one client saw.
#[derive(Default)]
struct Calls {
    /// (client, call) of every call answered 200.
    answered: Vec<(i32, i64)>,
    wrong_answers: u64,
    failed: u64,
    retries: u64,
}

impl Calls {
    fn add(&mut self, other: Calls) {
        self.answered.extend(other.answered);
        self.wrong_answers += other.wrong_answers;
        self.failed += other.failed;
        self.retries += other.retries;
    }
}

/// One client calling back to back until `until`: call k's body is "c k".
async fn client(c: usize, url: String, until: Instant, seen: Arc<Seen>) -> Calls {
    let attempts = Attempts {
        pool: Pool::builder(TokioExecutor::new()).build_http(),
        seen,
        last: Arc::default(),
    };
    let mut client = Client::new(attempts, ClientConfig::default());
    let mut calls = Calls::default();
    let mut k: i64 = 0;
    while Instant::now() < until {
        k += 1;
        let sent = format!("{c} {k}");
        let request = Request::post(&url).body(Full::new(Bytes::from(sent.clone())));
        match client.call(request.unwrap()).await {
            Ok(answer) if answer.status() == StatusCode::OK => {
                let body = answer.into_body().collect().await.unwrap().to_bytes();
                if body == sent.as_bytes() {
                    calls.answered.push((c as i32, k));
                } else {
                    calls.wrong_answers += 1;
                }
            }
            Ok(answer) => {
                eprintln!("client {c} call {k}: answered {}", answer.status());
                calls.wrong_answers += 1;
            }
            Err(e) => {
                eprintln!("client {c} call {k} failed: {e}");
                calls.failed += 1;
            }
        }
    }
    calls.retries = client.retries();
    calls
}

// ---------------------------------------------------------------------------------
// The verdict.
// ---------------------------------------------------------------------------------

/// The ledger, read after the run, against the calls the clients saw answered.
struct Ledger {
    rows: i64,
    /// How many (session, number) pairs have 1, 2, … rows.
    rows_per_number: BTreeMap<i64, i64>,
    /// Rows beyond the first of each call: runs of a call that ran before.
    duplicates: i64,
    /// Calls answered 200 with no row: answered but not committed.
    losses: usize,
    /// Calls with rows under more than one (session, number).
    renumbered: i64,
    /// Rows written by each replica (HAProxy's round-robin at work).
    per_replica: Vec<i64>,
}

impl Ledger {
    async fn read(db: &tokio_postgres::Client, calls: &Calls) -> Ledger {
        let one = |sql: &'static str| async move {
            let row = db.query_one(sql, &[]).await.expect("read the ledger");
            row.get::<_, i64>(0)
        };
        let rows = one("SELECT count(*) FROM ledger").await;
        let duplicates = rows - one("SELECT count(DISTINCT (client, call)) FROM ledger").await;
        let renumbered = one("SELECT count(DISTINCT (session, number)) FROM ledger").await
            - one("SELECT count(DISTINCT (client, call)) FROM ledger").await;
        let rows_per_number = db
            .query(
                "SELECT n, count(*) FROM (SELECT count(*) AS n FROM ledger
                 GROUP BY session, number) per GROUP BY n ORDER BY n",
                &[],
            )
            .await
            .expect("read the ledger")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let per_replica = db
            .query(
                "SELECT count(*) FROM ledger GROUP BY replica ORDER BY replica",
                &[],
            )
            .await
            .expect("read the ledger")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let ran: HashSet<(i32, i64)> = db
            .query("SELECT DISTINCT client, call FROM ledger", &[])
            .await
            .expect("read the ledger")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let losses = calls
            .answered
            .iter()
            .filter(|call| !ran.contains(call))
            .count();
        Ledger {
            rows,
            rows_per_number,
            duplicates,
            losses,
            renumbered,
            per_replica,
        }
    }
}

fn report(
    flags: &Flags,
    calls: &Calls,
    seen: &Seen,
    faults: &proxy::Faults,
    chaos: &Chaos,
    ledger: &Ledger,
    elapsed: Duration,
) -> bool {
    let answered = calls.answered.len();
    let server_errors = seen.server_errors.lock().unwrap();
    let count_503: u64 = server_errors
        .iter()
        .filter(|((status, _), _)| *status == 503)
        .map(|(_, n)| n)
        .sum();
    println!("clients            {}", flags.clients);
    println!("calls              {answered}");
    println!("ledger rows        {}", ledger.rows);
    println!(
        "rows per number    {}",
        ledger
            .rows_per_number
            .iter()
            .map(|(rows, numbers)| format!("{numbers} number(s) with {rows} row(s)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("rows per replica   {:?}", ledger.per_replica);
    println!("duplicates         {}", ledger.duplicates);
    println!("losses             {}", ledger.losses);
    println!("renumbered calls   {}", ledger.renumbered);
    println!("wrong answers      {}", calls.wrong_answers);
    println!("failed calls       {}", calls.failed);
    println!(
        "replays            {}",
        seen.replays.load(Ordering::Relaxed)
    );
    println!("503s               {count_503}");
    for ((status, code), n) in server_errors.iter() {
        println!("  {status} {code:<16} {n}");
    }
    println!(
        "no answer          {} (connections cut or closed)",
        seen.connection_errors.load(Ordering::Relaxed)
    );
    println!("client retries     {}", calls.retries);
    println!(
        "proxy cuts         {} over {} connections",
        faults.total_cuts(),
        faults.connections()
    );
    println!("replica kills      {}", chaos.kills);
    match chaos.database_restart {
        Some(took) => println!("database restart   1 (immediate mode, {took:.2?})"),
        None => println!("database restart   none (DATABASE_URL's server cannot be restarted)"),
    }
    println!(
        "calls/s            {:.0}",
        answered as f64 / elapsed.as_secs_f64()
    );
    let ok = ledger.duplicates == 0
        && ledger.losses == 0
        && ledger.renumbered == 0
        && calls.wrong_answers == 0
        && calls.failed == 0;
    if !ok {
        eprintln!("FAILED: a call was duplicated, lost, answered wrongly or failed");
    }
    let faulted = chaos.kills > 0 && chaos.database_restart.is_some() && answered > 0;
    if !faulted {
        eprintln!("FAILED: no replica was killed, the database was not restarted, or nothing was answered");
    }
    ok && faulted
}
