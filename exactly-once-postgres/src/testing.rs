//! A throwaway PostgreSQL for tests, the durable soak and the benchmark (feature
//! `testing`).
//!
//! [`TestPostgres::start`] uses `DATABASE_URL` when it is set; otherwise it finds the
//! installed server (`/usr/lib/postgresql/*/bin/{initdb,pg_ctl,postgres}`, or on `PATH`),
//! `initdb`s a temporary directory and starts the server on a Unix socket in that
//! directory only (`listen_addresses=''`: no TCP port to collide with another test run).
//! PostgreSQL refuses to run as root: as root, the directory is given to the `postgres`
//! system user and the binaries run through `runuser -u postgres --`. The server can be
//! restarted in immediate mode (a crash, as far as open transactions can tell) and is
//! stopped when the value is dropped.
//!
//! When no PostgreSQL can be found, [`TestPostgres::start`] prints a loud `SKIPPED`
//! line and returns `None`, except under `CI=true`, where it panics: CI must not pass by
//! skipping.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A PostgreSQL server for one test binary (or one soak run); see the [module
/// docs](self).
#[derive(Debug)]
pub struct TestPostgres {
    server: Server,
    databases: AtomicU32,
}

#[derive(Debug)]
enum Server {
    /// `DATABASE_URL`: someone else's server; it cannot be restarted from here.
    External(Box<tokio_postgres::Config>),
    /// A server of our own in a temporary directory.
    Owned(Owned),
}

#[derive(Debug)]
struct Owned {
    /// Holds the socket, the data directory and the log; removed on drop.
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `Some("postgres")` when running as root.
    run_as: Option<&'static str>,
}

impl TestPostgres {
    /// Starts a server (or takes `DATABASE_URL`'s); `None`, after a loud `SKIPPED` line,
    /// when none can be found; panics under `CI=true` instead of skipping, and on any
    /// failure to start one that was found.
    pub fn start(test: &str) -> Option<TestPostgres> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            let config = url
                .parse()
                .expect("DATABASE_URL is a PostgreSQL connection string");
            return Some(TestPostgres::with(Server::External(Box::new(config))));
        }
        let Some(bin) = find_binaries() else {
            let line = format!(
                "SKIPPED {test}: no PostgreSQL found (install Debian's `postgresql`, or set DATABASE_URL)"
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{line} (CI=true: failing)"
            );
            eprintln!("\n!!!!!!!! {line} !!!!!!!!\n");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("exactly-once-pg-")
            .tempdir()
            .expect("a temporary directory");
        let run_as = is_root().then_some("postgres");
        if let Some(user) = run_as {
            run(Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path()));
        }
        let owned = Owned { dir, bin, run_as };
        let data = owned.data();
        run(owned
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        owned.pg_ctl("start");
        Some(TestPostgres::with(Server::Owned(owned)))
    }

    fn with(server: Server) -> TestPostgres {
        TestPostgres {
            server,
            databases: AtomicU32::new(0),
        }
    }

    /// The connection settings of the server's `postgres` database.
    pub fn config(&self) -> tokio_postgres::Config {
        match &self.server {
            Server::External(config) => (**config).clone(),
            Server::Owned(owned) => {
                let mut config = tokio_postgres::Config::new();
                config
                    .host_path(owned.dir.path())
                    .user("postgres")
                    .dbname("postgres");
                config
            }
        }
    }

    /// A new, empty database on the server, and the settings to reach it: one per test,
    /// so that tests sharing a server share no rows.
    pub async fn fresh_database(&self) -> tokio_postgres::Config {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("exactly_once_test_{}_{n}", std::process::id());
        let admin = self.config();
        let (client, connection) = admin
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        let task = tokio::spawn(connection);
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            client
                .batch_execute(&sql)
                .await
                .expect("create a test database");
        }
        drop(client);
        let _ = task.await;
        let mut config = admin;
        config.dbname(&name);
        config
    }

    /// Whether [`restart`](Self::restart) can restart this server (not `DATABASE_URL`'s).
    pub fn can_restart(&self) -> bool {
        matches!(self.server, Server::Owned(_))
    }

    /// Restarts the server in immediate mode: every connection is cut and every open
    /// transaction is lost, as in a crash; committed data stays. Blocks until the server
    /// accepts connections again. Panics for `DATABASE_URL`'s server.
    pub fn restart(&self) {
        match &self.server {
            Server::External(_) => panic!("DATABASE_URL's server cannot be restarted"),
            Server::Owned(owned) => owned.pg_ctl("restart"),
        }
    }

    /// Whether the server counts statements in `pg_stat_statements` (its library is
    /// preloaded; `CREATE EXTENSION pg_stat_statements` in a database shows them).
    pub fn counts_statements(&self) -> bool {
        match &self.server {
            Server::External(_) => false,
            Server::Owned(owned) => owned
                .bin
                .parent()
                .is_some_and(|v| v.join("lib/pg_stat_statements.so").is_file()),
        }
    }

    /// The directory holding the server's socket (None for `DATABASE_URL`).
    pub fn socket_dir(&self) -> Option<&Path> {
        match &self.server {
            Server::External(_) => None,
            Server::Owned(owned) => Some(owned.dir.path()),
        }
    }
}

/// Statements the server ran in `client`'s database since `pg_stat_statements` was last
/// reset, less the counting's own (needs [`TestPostgres::counts_statements`] and the
/// extension created in that database).
pub async fn server_statements(
    client: &tokio_postgres::Client,
) -> Result<u64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%pg_stat_statements%'",
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

impl Owned {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.stdin(Stdio::null());
        command
    }

    /// `pg_ctl start` or `restart`, immediate mode, waiting until the server is up.
    fn pg_ctl(&self, action: &str) {
        let mut options = format!(
            "-c listen_addresses='' -k {} -c fsync=off -c max_connections=300 \
             -c shared_buffers=32MB",
            self.dir.path().display()
        );
        // Statement counts from the server's side, where the extension is installed
        // (Debian's postgresql-contrib, which the `postgresql` package pulls in).
        let library = self
            .bin
            .parent()
            .map(|v| v.join("lib/pg_stat_statements.so"));
        if library.is_some_and(|l| l.is_file()) {
            options.push_str(" -c shared_preload_libraries=pg_stat_statements");
        }
        run(self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-o", &options, action]));
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Server::Owned(owned) = &self.server {
            let _ = owned
                .command("pg_ctl")
                .args(["-w", "-m", "immediate", "-D"])
                .arg(owned.data())
                .arg("stop")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: Debian's versioned directory
/// (the newest), else wherever `PATH` has them.
fn find_binaries() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|dir| has_all(dir))
        .collect();
    debian.sort_by_key(|dir| {
        let version = dir.parent().and_then(Path::file_name);
        version
            .and_then(|v| v.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    debian
        .pop()
        .or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| has_all(dir)))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Runs `command` and panics with its output if it fails.
fn run(command: &mut Command) {
    let out = command.output().expect("run a PostgreSQL program");
    assert!(
        out.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
