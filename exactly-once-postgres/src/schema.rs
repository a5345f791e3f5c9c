//! The versioned schema: [`migrate`] brings a database to [`SCHEMA_VERSION`].

use tokio_postgres::Client;

/// The schema version this crate reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// Serialises concurrent `migrate` calls (replicas starting together): the key of a
/// transaction-scoped advisory lock.
const MIGRATION_LOCK: i64 = 0x6578_6163_746c_7931; // "exactly1"

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    // 1: one row per session. `request` is the last committed number (0: none yet) and
    // the other columns its stored response; the response of n is overwritten when n+1
    // commits, so a session holds at most one. The hot path reads and updates a row by
    // its primary key only: no other index, so that the update of `touched_at` on every
    // commit stays a HOT update (fillfactor leaves room for it on the page); the sweep
    // of idle sessions scans the table instead, rarely.
    "CREATE TABLE exactly_once_sessions (
        id         bigint PRIMARY KEY,
        request    bigint NOT NULL DEFAULT 0 CHECK (request >= 0),
        status     smallint,
        headers    bytea,
        body       bytea,
        trailers   bytea,
        touched_at timestamptz NOT NULL DEFAULT now()
    ) WITH (fillfactor = 70)",
];

/// Why [`migrate`] failed.
#[derive(Debug)]
pub enum MigrateError {
    /// The database's schema is newer than this crate knows (a newer replica migrated
    /// it): this one must not write to it.
    TooNew {
        /// The database's version.
        found: i32,
    },
    /// The database refused or the connection failed.
    Database(tokio_postgres::Error),
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrateError::TooNew { found } => write!(
                f,
                "the database's exactly-once schema is version {found}, newer than this crate's {SCHEMA_VERSION}"
            ),
            MigrateError::Database(e) => write!(f, "migrating the exactly-once schema: {e}"),
        }
    }
}

impl std::error::Error for MigrateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MigrateError::TooNew { .. } => None,
            MigrateError::Database(e) => Some(e),
        }
    }
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Database(e)
    }
}

/// Creates the schema or brings it up to [`SCHEMA_VERSION`], in one transaction under an
/// advisory lock (replicas may call it at once; each migration runs once). Returns the
/// version found before.
pub async fn migrate(client: &mut Client) -> Result<i32, MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS exactly_once_schema (
            version    integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM exactly_once_schema",
            &[],
        )
        .await?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(MigrateError::TooNew { found });
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(found as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO exactly_once_schema (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}
