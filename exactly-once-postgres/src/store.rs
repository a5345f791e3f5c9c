//! The store: sessions in PostgreSQL, the claim of a request in its run's transaction,
//! the completion record written in that transaction before COMMIT, and an in-process
//! table where copies that meet in one process are settled without the database.

use crate::local::LocalSessions;
use crate::record::{decode_response, Columns};
use crate::run::{InTransaction, Run, RunKey};
use deadpool_postgres::{Pool, PoolError};
use exactly_once::tower::{SessionId, StoredResponse};
use exactly_once::RequestNr;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;

/// Locks the session's row for the run's transaction and reads its last committed
/// number; the stored response only when `$2` is that number (a resend), so that a new
/// number does not carry the previous response over the wire.
const CLAIM: &str = "SELECT request,
        CASE WHEN request = $2 THEN status END,
        CASE WHEN request = $2 THEN headers END,
        CASE WHEN request = $2 THEN body END,
        CASE WHEN request = $2 THEN trailers END
    FROM exactly_once_sessions WHERE id = $1 FOR UPDATE";

/// The completion record: number `$2` and its response replace the previous ones (the
/// client has acknowledged those by sending `$2`).
const RECORD: &str = "UPDATE exactly_once_sessions
    SET request = $2, status = $3, headers = $4, body = $5, trailers = $6, touched_at = now()
    WHERE id = $1";

const CREATE: &str = "INSERT INTO exactly_once_sessions (id) VALUES ($1) ON CONFLICT DO NOTHING";

const END: &str = "DELETE FROM exactly_once_sessions WHERE id = $1";

/// Sessions idle for `$1` seconds, or `$2` if they never committed a request; rows
/// locked by a run are skipped (their session is not idle) rather than waited for.
const SWEEP: &str = "DELETE FROM exactly_once_sessions WHERE id IN (
        SELECT id FROM exactly_once_sessions
        WHERE touched_at < now() - make_interval(secs => CASE WHEN request = 0 THEN $2::float8 ELSE $1::float8 END)
        FOR UPDATE SKIP LOCKED)";

/// A connection pool for the store on `config`'s database: at most `max_size`
/// connections, handed back without a check query (deadpool's fast recycling: a
/// connection that died is noticed as closed; a run's connection that failed is dropped
/// rather than handed back), and 5 s limits on waiting for one and on connecting, so
/// that no call waits forever for a database that is gone.
pub fn pool(config: tokio_postgres::Config, max_size: usize) -> Pool {
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .expect("a runtime is set, so the timeouts can be")
}

/// The store's settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Sessions with no committed request for this long are deleted by
    /// [`PgStore::sweep`]; a resend after that is answered `unknown-session`.
    pub idle_expiry: Duration,
    /// Sessions that never committed a request are deleted after this long (a flood of
    /// sessions created and never used is gone at the next sweep after it).
    pub unused_expiry: Duration,
    /// The largest response body kept (and answered); a longer one rolls its run back.
    pub response_limit: usize,
    /// The largest request body taken; a longer one is refused before it runs.
    pub request_limit: usize,
    /// How many sessions the in-process table keeps between their requests (their last
    /// answer, for copies that meet in this process). Forgetting one costs a database
    /// round trip later, never a second run: the database decides.
    pub local_sessions: usize,
    /// The largest response (body and headers) the in-process table keeps between
    /// requests; a larger one is handed to the copies waiting for it and then read from
    /// the database by later resends. With `local_sessions`, this bounds the memory the
    /// table keeps: 4 096 × 16 KiB = 64 MiB by default.
    pub local_response_limit: usize,
}

impl Default for StoreConfig {
    /// The in-memory table's expiries (600 s idle, 10 s unused), 1 MiB bodies each way,
    /// 4 096 sessions in memory with responses up to 16 KiB.
    fn default() -> Self {
        StoreConfig {
            idle_expiry: Duration::from_secs(600),
            unused_expiry: Duration::from_secs(10),
            response_limit: 1 << 20,
            request_limit: 1 << 20,
            local_sessions: 4096,
            local_response_limit: 16 << 10,
        }
    }
}

/// What the store has sent to the database, and what it answered without it, since it
/// was made: to count statements and round trips per call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Statements sent (BEGIN and COMMIT included; preparing a statement, once per
    /// connection, not).
    pub statements: u64,
    /// Round trips: statements sent together (pipelined) and answered together count
    /// once.
    pub round_trips: u64,
    /// Calls answered from the in-process table, with no statement: copies that waited
    /// for a copy in this process, stale numbers and busy sessions this process knew of.
    pub answered_locally: u64,
}

/// Why the store could not do what was asked; nothing was run or changed.
#[derive(Debug)]
pub enum StoreError {
    /// No connection could be had from the pool.
    Pool(PoolError),
    /// The database refused, or the connection failed.
    Database(tokio_postgres::Error),
    /// A session's row holds a response this crate cannot read.
    Damaged,
    /// The operating system's random source failed: no session id can be made.
    NoRandomness,
    /// The handler still held the run's transaction when it answered (in a task it left
    /// running): the run is rolled back rather than wait for it.
    TransactionHeld,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Pool(e) => write!(f, "no database connection: {e}"),
            StoreError::Database(e) => write!(f, "database: {e}"),
            StoreError::Damaged => f.write_str("a session's stored response cannot be read"),
            StoreError::NoRandomness => f.write_str("the operating system's random source failed"),
            StoreError::TransactionHeld => {
                f.write_str("the handler held the run's transaction after it answered")
            }
        }
    }
}

impl StoreError {
    /// What a client is told: the kind of failure, not the database's own words (table
    /// names, addresses).
    pub(crate) fn public_detail(&self) -> &'static str {
        match self {
            StoreError::Pool(_) => "no database connection could be had",
            StoreError::Database(_) => "the database refused, or the connection to it failed",
            StoreError::Damaged => "the session's stored response cannot be read",
            StoreError::NoRandomness => "no session id could be made",
            StoreError::TransactionHeld => {
                "the handler held the run's transaction after it answered"
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Pool(e) => Some(e),
            StoreError::Database(e) => Some(e),
            StoreError::Damaged | StoreError::NoRandomness | StoreError::TransactionHeld => None,
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database(e)
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        StoreError::Pool(e)
    }
}

/// The PostgreSQL session store: one per process, shared by every layer instance in it
/// (clones share everything).
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    config: StoreConfig,
    local: LocalSessions,
    statements: AtomicU64,
    round_trips: AtomicU64,
    answered_locally: AtomicU64,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("config", &self.inner.config)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

/// What the claim of a request found. (Moved once, from the claim to the run; the
/// response is not boxed, since it moves into the local verdict next.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Claimed {
    /// The number is new: run it in this transaction.
    Run(Run),
    /// The number is the last one committed: its response.
    Replay(StoredResponse),
    /// The session has moved past the number.
    Stale,
    /// No such session (never created, expired or ended).
    Unknown,
}

impl PgStore {
    /// A store on `pool`'s database, whose schema [`migrate`](crate::migrate) has made.
    pub fn new(pool: Pool, config: StoreConfig) -> PgStore {
        PgStore {
            inner: Arc::new(Inner {
                local: LocalSessions::new(config.local_sessions),
                pool,
                config,
                statements: AtomicU64::new(0),
                round_trips: AtomicU64::new(0),
                answered_locally: AtomicU64::new(0),
            }),
        }
    }

    /// The pool the store draws its connections from.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The store's settings.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// What the store has sent to the database so far.
    pub fn counters(&self) -> Counters {
        // ORDERING: plain counts, read for reports; no other memory depends on them.
        Counters {
            statements: self.inner.statements.load(Ordering::Relaxed),
            round_trips: self.inner.round_trips.load(Ordering::Relaxed),
            answered_locally: self.inner.answered_locally.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn local(&self) -> &LocalSessions {
        &self.inner.local
    }

    /// Counts `statements` sent in one round trip.
    fn sent(&self, statements: u64) {
        // ORDERING: plain counts (see `counters`).
        self.inner
            .statements
            .fetch_add(statements, Ordering::Relaxed);
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn answered_locally(&self) {
        // ORDERING: a plain count (see `counters`).
        self.inner.answered_locally.fetch_add(1, Ordering::Relaxed);
    }

    /// Creates a session with a new id (64 bits from the operating system's random
    /// source, so that any replica can make one and nobody can guess one) and commits
    /// it: one statement.
    pub async fn create_session(&self) -> Result<SessionId, StoreError> {
        let conn = self.inner.pool.get().await?;
        let statement = conn.prepare_cached(CREATE).await?;
        loop {
            let Some(id) = SessionId::new(getrandom::u64().map_err(|_| StoreError::NoRandomness)?)
            else {
                continue;
            };
            self.sent(1);
            // An id already taken (one chance in 2^64 per session) is drawn again.
            if conn.execute(&statement, &[&column_id(id)]).await? == 1 {
                return Ok(id);
            }
        }
    }

    /// Ends `session`: its row (and its stored response) is deleted, and every later
    /// request of it is answered `unknown-session`. Waits for a run of it in progress
    /// on any replica to settle first (the run holds the row). Whether it existed.
    pub async fn end_session(&self, session: SessionId) -> Result<bool, StoreError> {
        self.inner.local.forget_session(session.get());
        let conn = self.inner.pool.get().await?;
        let statement = conn.prepare_cached(END).await?;
        self.sent(1);
        let deleted = conn.execute(&statement, &[&column_id(session)]).await? == 1;
        // A copy that came in while the row was being deleted may have set up a local
        // entry: it is gone as well.
        self.inner.local.forget_session(session.get());
        Ok(deleted)
    }

    /// Deletes the sessions idle for longer than [`StoreConfig::idle_expiry`] (or
    /// [`StoreConfig::unused_expiry`], if they never committed a request), skipping any
    /// that a run holds, and forgets this process's idle local entries as old;
    /// returns how many rows were deleted. Any replica may sweep, at any time.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        let age = self.inner.config.idle_expiry;
        self.inner.local.expire(age);
        let conn = self.inner.pool.get().await?;
        let statement = conn.prepare_cached(SWEEP).await?;
        self.sent(1);
        let unused = self.inner.config.unused_expiry.as_secs_f64();
        Ok(conn
            .execute(&statement, &[&age.as_secs_f64(), &unused])
            .await?)
    }

    /// Runs [`sweep`](Self::sweep) every `every` on the current tokio runtime until the
    /// handle is aborted; a failed sweep is tried again at the next tick.
    pub fn spawn_sweeper(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let _ = store.sweep().await;
            }
        })
    }

    /// Opens the transaction of request `request` of `session` and locks the session's
    /// row in it (BEGIN and the claim in one round trip): a copy on another replica
    /// blocks here until this transaction ends, then finds its outcome. Only a new
    /// number keeps the transaction open (for the run); otherwise it is ended here.
    pub(crate) async fn claim(
        &self,
        session: SessionId,
        request: RequestNr,
    ) -> Result<Claimed, StoreError> {
        let conn = self.inner.pool.get().await?;
        let statement = conn.prepare_cached(CLAIM).await?;
        // From here on, a failure drops the connection (rolling the transaction back)
        // instead of handing it back to the pool inside a transaction.
        let conn = InTransaction::new(conn);
        let (id, number) = (column_id(session), column_number(request));
        let params: [&(dyn ToSql + Sync); 2] = [&id, &number];
        self.sent(2);
        // Pipelined: tokio-postgres sends each request when its future is first polled,
        // so both go out before the first answer comes back.
        let (begun, row) = tokio::join!(
            conn.client().batch_execute("BEGIN"),
            conn.client().query_opt(&statement, &params)
        );
        begun?;
        let Some(row) = row? else {
            self.rollback(conn).await?;
            return Ok(Claimed::Unknown);
        };
        let last: i64 = row.try_get(0)?;
        if number > last {
            let key = RunKey { session, request };
            let skipped = (number - last - 1) as u64;
            return Ok(Claimed::Run(Run::new(self.clone(), conn, key, skipped)));
        }
        if number < last {
            self.rollback(conn).await?;
            return Ok(Claimed::Stale);
        }
        let stored = decode_response(
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get::<_, Option<&[u8]>>(4)?,
        );
        self.rollback(conn).await?;
        stored.map(Claimed::Replay).ok_or(StoreError::Damaged)
    }

    /// Rolls a run's transaction back and hands its connection back (or drops it, if
    /// even that failed: the server rolls back a transaction whose connection closes).
    pub(crate) async fn rollback(&self, conn: InTransaction) -> Result<(), StoreError> {
        self.sent(1);
        conn.client().batch_execute("ROLLBACK").await?;
        conn.release();
        Ok(())
    }

    /// Writes the completion record of `key` with `response` and commits, in one round
    /// trip.
    pub(crate) async fn commit(
        &self,
        conn: InTransaction,
        key: RunKey,
        response: &StoredResponse,
    ) -> Result<(), CommitError> {
        let statement = match conn.client().prepare_cached(RECORD).await {
            Ok(statement) => statement,
            // Nothing was committed: the transaction ends with the dropped connection.
            Err(e) => return Err(CommitError::RolledBack(e.into())),
        };
        let columns = Columns::of(response);
        let (id, number) = (column_id(key.session), column_number(key.request));
        let params: [&(dyn ToSql + Sync); 6] = [
            &id,
            &number,
            &columns.status,
            &columns.headers,
            &columns.body,
            &columns.trailers,
        ];
        self.sent(2);
        let (recorded, committed) = tokio::join!(
            conn.client().execute(&statement, &params),
            conn.client().batch_execute("COMMIT")
        );
        match (recorded, committed) {
            (Ok(1), Ok(())) => {
                conn.release();
                Ok(())
            }
            // The record failed on a live connection: the transaction was aborted, and
            // PostgreSQL answered the COMMIT by rolling back. Nothing of the run stays.
            (Err(e), Ok(())) if !conn.client().is_closed() => {
                conn.release();
                Err(CommitError::RolledBack(e.into()))
            }
            // The row is locked by this transaction since the claim: it cannot be gone.
            (Ok(_), Ok(())) => Err(CommitError::Unknown(StoreError::Damaged)),
            // The connection failed with the COMMIT sent: it may have committed or not.
            (Err(e), _) | (_, Err(e)) => Err(CommitError::Unknown(e.into())),
        }
    }
}

/// Why a run's completion record did not commit, or may not have.
#[derive(Debug)]
pub(crate) enum CommitError {
    /// Nothing of the run stays: a resend runs it again.
    RolledBack(StoreError),
    /// The COMMIT was sent and no answer came (the connection or the server went
    /// away): it committed or not, and only a resend can tell (it replays or runs).
    Unknown(StoreError),
}

/// A session id as its `bigint` column holds it (the same 64 bits).
fn column_id(session: SessionId) -> i64 {
    session.get() as i64
}

/// A request number as its column holds it (numbers are far below `i64::MAX`).
fn column_number(request: RequestNr) -> i64 {
    i64::try_from(request.get()).expect("request numbers fit in a bigint")
}
