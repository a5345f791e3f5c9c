//! What the store's tests share: a database with the schema and a ledger table, replicas
//! (a store and its layer around a handler that writes one ledger row per run), calls,
//! and faults (a paused handler, a proxy that cuts a connection at its COMMIT).

#![allow(dead_code)] // each test binary uses its own part

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use exactly_once::tower::{WholeBody, REQUEST_HEADER, SESSION_HEADER};
use exactly_once_postgres::testing::TestPostgres;
use exactly_once_postgres::{
    migrate, pool, Durable, DurableLayer, PgStore, RunKey, RunTransaction, StoreConfig,
};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tower::ServiceExt;
use tower_layer::Layer;

/// A server of the test's own and a fresh database on it, migrated, with the ledger.
pub struct Db {
    pub pg: Arc<TestPostgres>,
    pub config: tokio_postgres::Config,
}

impl Db {
    /// `None` (after TestPostgres's SKIPPED line) when no PostgreSQL can be found.
    pub async fn start(test: &str) -> Option<Db> {
        let pg = Arc::new(TestPostgres::start(test)?);
        let config = pg.fresh_database().await;
        let client = connect(&config).await;
        let mut client = client;
        migrate(&mut client).await.unwrap();
        // No unique constraint: a request run twice shows as two rows.
        client
            .batch_execute("CREATE TABLE ledger (key text NOT NULL, body text NOT NULL)")
            .await
            .unwrap();
        Some(Db { pg, config })
    }

    /// Ledger rows written by runs of `key` (session-number).
    pub async fn ledger(&self, key: &str) -> i64 {
        let client = connect(&self.config).await;
        client
            .query_one("SELECT count(*) FROM ledger WHERE key = $1", &[&key])
            .await
            .unwrap()
            .get(0)
    }

    /// A replica: its own store (pool and in-process table) on the database.
    pub fn replica(&self) -> Replica {
        Replica::on(self.config.clone(), StoreConfig::default())
    }

    /// A [`cut::CommitCutter`] in front of the test's own server and the connection
    /// settings that go through it; `None` (after a SKIPPED line) on `DATABASE_URL`'s
    /// server, whose socket the proxy cannot reach.
    pub async fn through_commit_cutter(
        &self,
    ) -> Option<(cut::CommitCutter, tokio_postgres::Config)> {
        let Some(socket_dir) = self.pg.socket_dir() else {
            eprintln!("SKIPPED: the proxy needs the test's own server (not DATABASE_URL's)");
            return None;
        };
        let cutter = cut::CommitCutter::start(socket_dir).await;
        let mut through = tokio_postgres::Config::new();
        through
            .host("127.0.0.1")
            .port(cutter.port)
            .user("postgres")
            .dbname(self.config.get_dbname().unwrap());
        Some((cutter, through))
    }
}

pub async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// What the handler is told to do with its next runs.
#[derive(Default)]
pub struct Hooks {
    /// Runs that write their row and then answer 500.
    pub fail: AtomicU32,
    /// Runs that write their row and then panic.
    pub panic: AtomicU32,
    /// A run that has written its row and made its last statement sends its backend's
    /// pid and waits to be let go.
    pub pause: Mutex<Option<(oneshot::Sender<i32>, oneshot::Receiver<()>)>>,
}

impl Hooks {
    /// Pauses the next run after its write: its backend's pid, and the sender that lets
    /// it go on.
    pub fn pause_next(&self) -> (oneshot::Receiver<i32>, oneshot::Sender<()>) {
        let (pid_tx, pid_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        *self.pause.lock().unwrap() = Some((pid_tx, go_rx));
        (pid_rx, go_tx)
    }
}

/// The handler: one ledger row in the run's transaction, then an answer that names the
/// run (its key and the row count it saw), so that a replay is told from a second run.
async fn write_ledger(
    State(hooks): State<Arc<Hooks>>,
    tx: RunTransaction,
    key: RunKey,
    body: Bytes,
) -> Result<String, StatusCode> {
    let client = tx.client().await.unwrap();
    let key = key.to_string();
    let body = String::from_utf8_lossy(&body).into_owned();
    client
        .execute(
            "INSERT INTO ledger (key, body) VALUES ($1, $2)",
            &[&key, &body],
        )
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let seen: i64 = client
        .query_one("SELECT count(*) FROM ledger WHERE key = $1", &[&key])
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
        .get(0);
    let pause = hooks.pause.lock().unwrap().take();
    if let Some((pid_tx, go)) = pause {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        pid_tx.send(pid).unwrap();
        // The handler's last statement is done: what happens now happens between its
        // writes and the layer's COMMIT.
        let _ = go.await;
    }
    if take_one(&hooks.fail) {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    if take_one(&hooks.panic) {
        panic!("the handler panics after its write");
    }
    Ok(format!("{key} ran, {seen} row(s), body {body}"))
}

fn take_one(count: &AtomicU32) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// One replica: a store and the layer around the ledger handler.
#[derive(Clone)]
pub struct Replica {
    pub store: PgStore,
    pub hooks: Arc<Hooks>,
    service: Durable<Router>,
}

impl Replica {
    pub fn on(config: tokio_postgres::Config, store_config: StoreConfig) -> Replica {
        let store = PgStore::new(pool(config, 16), store_config);
        let hooks = Arc::new(Hooks::default());
        let router = Router::new()
            .route("/ledger", post(write_ledger))
            .with_state(Arc::clone(&hooks));
        let service = DurableLayer::new(store.clone()).layer(router);
        Replica {
            store,
            hooks,
            service,
        }
    }

    /// Sends a request with these key headers (`None`: left out) and body.
    pub async fn send(&self, session: Option<&str>, number: Option<&str>, body: &str) -> Answer {
        let mut request = Request::post("/ledger");
        if let Some(session) = session {
            request = request.header(SESSION_HEADER, session);
        }
        if let Some(number) = number {
            request = request.header(REQUEST_HEADER, number);
        }
        let request = request
            .body(http_body_util::Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        Answer::of(self.service.clone().oneshot(request).await.unwrap()).await
    }

    /// [`call`](Self::call) in a task of its own, for a call that will be paused.
    pub fn spawn_call(
        &self,
        session: &str,
        number: u64,
        body: &str,
    ) -> tokio::task::JoinHandle<Answer> {
        let (replica, session, body) = (self.clone(), session.to_owned(), body.to_owned());
        tokio::spawn(async move { replica.call(&session, number, &body).await })
    }

    /// Call `number` of `session` with `body`.
    pub async fn call(&self, session: &str, number: u64, body: &str) -> Answer {
        self.send(Some(session), Some(&number.to_string()), body)
            .await
    }

    /// As a client does: sends again while the answer says 503 (at most 50 times).
    pub async fn call_until_settled(&self, session: &str, number: u64, body: &str) -> Answer {
        for _ in 0..50 {
            let answer = self.call(session, number, body).await;
            if answer.status != StatusCode::SERVICE_UNAVAILABLE {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("still 503 after 50 tries");
    }

    /// As a client does after a failure it may resend: sends again while the answer is a
    /// 5xx (503, or a run rolled back), at most 100 times.
    pub async fn call_until_answered(&self, session: &str, number: u64, body: &str) -> Answer {
        for _ in 0..100 {
            let answer = self.call(session, number, body).await;
            if !answer.status.is_server_error() {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("still failing after 100 tries");
    }

    /// A new session's id.
    pub async fn create(&self) -> String {
        let answer = self.send(Some("new"), None, "").await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.header(SESSION_HEADER).unwrap()
    }

    /// The store's sweep of idle sessions: rows deleted.
    pub async fn sweep_now(&self) -> u64 {
        self.store.sweep().await.unwrap()
    }

    pub async fn end(&self, session: &str) -> Answer {
        let request = Request::delete("/ledger")
            .header(SESSION_HEADER, session)
            .header(REQUEST_HEADER, "0")
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        Answer::of(self.service.clone().oneshot(request).await.unwrap()).await
    }
}

/// A whole answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    async fn of(response: Response<WholeBody>) -> Answer {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        Some(self.headers.get(name)?.to_str().ok()?.to_owned())
    }

    /// The layer's error code, if the layer answered instead of the handler.
    pub fn code(&self) -> Option<String> {
        self.header(exactly_once::tower::ERROR_HEADER)
    }
}

pub mod cut;
