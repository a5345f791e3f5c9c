//! A replica process killed with SIGKILL between its handler's write and COMMIT: the
//! write is gone, and the resend, on another replica, runs once.
//!
//! The replica is this test binary run again as a child, in the test
//! `child_replica` (which does nothing unless the parent set its environment).

mod support;

use http::StatusCode;
use std::process::{Command, Stdio};
use support::{Db, Replica};

const CHILD_CONFIG: &str = "EXACTLY_ONCE_PG_CHILD_CONFIG";
const CHILD_SESSION: &str = "EXACTLY_ONCE_PG_CHILD_SESSION";
/// Where the child writes the pid of its run's backend once its run has paused.
const CHILD_PAUSED: &str = "EXACTLY_ONCE_PG_CHILD_PAUSED";

/// The child: a replica that runs call 1 of the session, pauses after its handler's
/// last statement, says so, and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_replica() {
    let (Ok(config), Ok(session), Ok(paused)) = (
        std::env::var(CHILD_CONFIG),
        std::env::var(CHILD_SESSION),
        std::env::var(CHILD_PAUSED),
    ) else {
        return; // run as a test of its own: nothing to do
    };
    let replica = Replica::on(config.parse().unwrap(), Default::default());
    let (pid, _go) = replica.hooks.pause_next();
    let call = tokio::spawn(async move { replica.call(&session, 1, "x").await });
    let pid = tokio::select! {
        pid = pid => pid.unwrap(),
        answer = call => panic!("the call ended unpaused: {:?}", answer),
    };
    std::fs::write(&paused, pid.to_string()).unwrap();
    std::future::pending::<()>().await;
    unreachable!("the parent kills this process before the run goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_between_the_write_and_commit_leaves_no_write_and_the_resend_runs_once() {
    let Some(db) = Db::start("a_replica_killed_between_the_write_and_commit").await else {
        return;
    };
    let Some(socket_dir) = db.pg.socket_dir() else {
        eprintln!("SKIPPED: the child replica needs the test's own server (not DATABASE_URL's)");
        return;
    };
    let config = format!(
        "host={} user=postgres dbname={}",
        socket_dir.display(),
        db.config.get_dbname().unwrap()
    );
    let survivor = db.replica();
    let session = survivor.create().await;

    let paused = db.pg.socket_dir().unwrap().join("child-paused");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_replica", "--test-threads", "1"])
        .env(CHILD_CONFIG, &config)
        .env(CHILD_SESSION, &session)
        .env(CHILD_PAUSED, &paused)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The child's run has written its row and waits before its COMMIT (20 s at most).
    for _ in 0..200 {
        if paused.exists() || child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let is_paused = paused.exists();
    if !is_paused {
        let _ = child.kill();
    }
    assert!(is_paused, "the child replica paused in its run");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(
        db.ledger(&format!("{session}-1")).await,
        0,
        "the killed run's write is gone"
    );
    let ran = survivor.call_until_settled(&session, 1, "x").await;
    assert_eq!(ran.status, StatusCode::OK, "{ran:?}");
    assert!(ran.body.contains(" 1 row(s)"), "{ran:?}");
    assert_eq!(
        db.ledger(&format!("{session}-1")).await,
        1,
        "the resend ran once"
    );
    assert_eq!(
        db.replica().call(&session, 1, "x").await,
        ran,
        "and replays after"
    );
}
