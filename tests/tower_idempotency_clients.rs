//! The `Idempotency-Key` mode with clients nobody here wrote, through the proxy that
//! cuts connections at random (before and after requests and responses, and part-way
//! through request bodies): Python's `httpx` (from PyPI, in a venv under `target/` the
//! test makes) and curl, each retrying with the same key. The server counts the runs of
//! every key: each ran once.
//!
//! Without python3 (or its venv, or PyPI) or curl the part that needs it says SKIPPED
//! on stderr; with `CI` set (`CI=true`) it fails instead.
#![cfg(feature = "tower")]

mod tower_support;

use axum::{extract::State, http::HeaderMap, routing::post, Router};
use bytes::Bytes;
use exactly_once::table::Budget;
use exactly_once::tower::IdempotencyLayer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use tower_layer::Layer;
use tower_support::proxy::{self, Faults};

/// Runs per key, as the handler saw them.
type Runs = Arc<Mutex<HashMap<String, u64>>>;

/// Echoes the body, counting a run of the request's key.
async fn handle(State(runs): State<Runs>, headers: HeaderMap, body: Bytes) -> Bytes {
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().trim_matches('"'));
    *runs
        .lock()
        .unwrap()
        .entry(key.unwrap_or("").to_owned())
        .or_default() += 1;
    body
}

/// The server in the mode, behind the cutting proxy: the proxy's address, the runs.
async fn server(fault_rate: f64) -> (SocketAddr, Runs, Arc<Faults>) {
    let runs = Runs::default();
    let router = Router::new()
        .route("/charge", post(handle))
        .with_state(Arc::clone(&runs));
    let layer = IdempotencyLayer::new(1 << 20, Budget::new(64 << 20));
    let app = layer.answering(axum::body::Body::new).layer(router);
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let faults = Faults::random(fault_rate);
    (proxy::start(addr, Arc::clone(&faults)).await, runs, faults)
}

/// Says the part is skipped, loudly; with `CI` set, fails instead.
fn skipped(what: &str) {
    // As the other tests that need a tool do (tests/support/strace.rs): CI set, it runs.
    assert!(
        std::env::var_os("CI").is_none(),
        "{what}: under CI this test must run"
    );
    eprintln!("\n*** SKIPPED: {what} ***\n");
}

/// The python of a venv under `target/` with httpx installed, made if missing.
fn httpx_python() -> Result<String, String> {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/idempotency-venv");
    let python = format!("{venv}/bin/python");
    let has_httpx = |python: &str| {
        let import = Command::new(python).args(["-c", "import httpx"]).output();
        import.is_ok_and(|o| o.status.success())
    };
    if has_httpx(&python) {
        return Ok(python);
    }
    let run = |command: &mut Command| -> Result<(), String> {
        let output: Output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
        match output.status.success() {
            true => Ok(()),
            false => Err(format!(
                "{command:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            )),
        }
    };
    run(Command::new("python3").args(["-m", "venv", venv]))?;
    run(Command::new(format!("{venv}/bin/pip")).args(["install", "--quiet", "httpx==0.28.1"]))?;
    has_httpx(&python)
        .then_some(python)
        .ok_or("httpx did not install".into())
}

/// Every key that an operation sent ran exactly once, and no other key ran.
fn each_ran_once(runs: &Runs, keys: &[String]) {
    let runs = runs.lock().unwrap();
    for key in keys {
        assert_eq!(runs.get(key), Some(&1), "key {key}");
    }
    assert_eq!(runs.len(), keys.len(), "runs of keys no operation sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httpx_retrying_with_the_same_key_through_cut_connections_runs_each_operation_once() {
    let python = match tokio::task::spawn_blocking(httpx_python).await.unwrap() {
        Ok(python) => python,
        Err(why) => return skipped(&format!("no python3 venv with httpx ({why})")),
    };
    let (proxy, runs, faults) = server(0.05).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/idempotency_httpx.py"
    );
    let url = format!("http://{proxy}/charge");
    let output = tokio::task::spawn_blocking(move || {
        // Bounded by the client: a 10 s timeout per request, 500 tries per operation.
        Command::new(&python)
            .args([script, &url, "300"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the httpx client failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys: Vec<String> = report["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 300);
    each_ran_once(&runs, &keys);
    eprintln!(
        "httpx: 300 operations, {} retries, {} replayed answers, cuts {:?}",
        report["retries"],
        report["replayed"],
        faults.cuts()
    );
    assert!(faults.total_cuts() > 0, "the proxy cut nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_retrying_with_the_same_key_through_cut_connections_runs_each_operation_once() {
    if Command::new("curl").arg("--version").output().is_err() {
        return skipped("no curl");
    }
    let (proxy, runs, faults) = server(0.05).await;
    let url = format!("http://{proxy}/charge");
    let keys: Vec<String> = (0..40).map(|i| format!("curl-op-{i}")).collect();
    let calls = keys.clone();
    let answers = tokio::task::spawn_blocking(move || {
        calls
            .iter()
            .map(|key| {
                // curl sends the same request again after a cut (its --retry), as is.
                let header = format!("Idempotency-Key: \"{key}\"");
                let output = Command::new("curl")
                    .args(["-sS", "--fail", "--retry", "50", "--retry-all-errors"])
                    .args(["--retry-delay", "0", "--max-time", "30"])
                    .args(["-H", &header, "--data-binary", key, &url])
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
                assert!(output.status.success(), "curl {key}: {stderr}");
                String::from_utf8(output.stdout).unwrap()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(answers, keys, "each answer is its operation's body");
    each_ran_once(&runs, &keys);
    eprintln!("curl: 40 operations, cuts {:?}", faults.cuts());
}
