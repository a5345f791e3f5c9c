#![cfg(feature = "transport")]
//! Exactly-once through the transport while connections break at random, and a
//! panicking handler.

mod transport_support;

use exactly_once::transport::faults::random_shutdowns;
use exactly_once::transport::{
    Client, ClientConfig, ClientError, CloseReason, Direction, Server, ServerConfig,
};
use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transport_support::*;

/// Records which execution ran each request body; a body seen twice is a duplicate.
#[derive(Default)]
struct Ledger {
    executions: AtomicU64,
    by_request: Mutex<HashMap<Vec<u8>, u64>>,
    duplicates: AtomicU64,
}

#[test]
fn every_call_runs_exactly_once_while_connections_break_at_random() {
    const CLIENTS: u64 = 4;
    const CALLS: u64 = 150;
    let ledger = Arc::new(Ledger::default());
    let recording = Arc::clone(&ledger);
    let server = Server::bind("127.0.0.1:0", ServerConfig::default(), move |request| {
        let index = recording.executions.fetch_add(1, Ordering::SeqCst) + 1;
        let previous = recording
            .by_request
            .lock()
            .unwrap()
            .insert(request.to_vec(), index);
        if previous.is_some() {
            recording.duplicates.fetch_add(1, Ordering::SeqCst);
        }
        index.to_le_bytes().to_vec()
    })
    .unwrap();

    let answers: Vec<(Vec<u8>, u64)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let location = server.location();
                s.spawn(move || {
                    let config = ClientConfig {
                        fault_hook: Some(random_shutdowns(0.05, c)),
                        initial_backoff: Duration::from_millis(1),
                        max_backoff: Duration::from_millis(20),
                        reconnect_deadline: Duration::from_secs(20),
                        ..ClientConfig::default()
                    };
                    let mut client = Client::connect(&location, config).unwrap();
                    let mut answers = Vec::new();
                    for i in 0..CALLS {
                        let body = format!("client {c} call {i}").into_bytes();
                        let answer = client.call(&body).expect("the call gets through");
                        answers.push((body, as_count(&answer)));
                    }
                    assert!(client.reconnects() > 0, "the hook broke no connection");
                    answers
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });

    let counters = server.counters();
    assert_eq!(
        ledger.duplicates.load(Ordering::SeqCst),
        0,
        "a request ran twice"
    );
    assert_eq!(
        ledger.executions.load(Ordering::SeqCst),
        CLIENTS * CALLS,
        "lost or extra"
    );
    let executed = ledger.by_request.lock().unwrap();
    let mut seen = std::collections::HashSet::new();
    for (body, answer) in &answers {
        assert_eq!(
            executed.get(body),
            Some(answer),
            "answer is not its execution"
        );
        assert!(seen.insert(*answer), "two calls got the same answer");
    }
    assert_eq!(counters.requests_processed, CLIENTS * CALLS);
    assert!(counters.sessions_resumed > 0);
    assert_eq!(counters.requests_busy, 0);
}

#[test]
fn a_panicking_handler_abandons_its_request_and_the_server_survives() {
    let server = server(ServerConfig::default());
    let mut other = bystander(&server);
    let config = ClientConfig {
        reconnect_deadline: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let mut victim = Client::connect(&server.location(), config).unwrap();
    match victim.call(b"panic") {
        Err(ClientError::Unreachable { .. }) => {}
        other => panic!("an abandoned request has no answer, got {other:?}"),
    }
    // The client may give up before it has re-sent the request (its deadline is
    // wall-clock time, and a loaded machine can spend it on the first attempt): the
    // re-request is made here, whatever the client managed.
    let mut again = Raw::connect(server.local_addr());
    assert_eq!(again.handshake(victim.session_id()), victim.session_id());
    again.call(1, b"panic");
    again.assert_closed();
    let counters = server.counters();
    assert_eq!(counters.requests_abandoned, 1);
    assert_eq!(counters.requests_processed, 2, "never run a second time");
    assert_eq!(counters.closed(CloseReason::HandlerPanicked), 1);
    assert!(
        counters.closed(CloseReason::Abandoned) >= 1,
        "re-requests are refused"
    );
    assert_still_serves(&server, &mut other);
}

#[test]
fn a_cut_before_the_answer_is_healed_by_resuming_and_resending() {
    let server = server(ServerConfig::default());
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trigger = Arc::clone(&armed);
    let config = ClientConfig {
        fault_hook: Some(Arc::new(move |stream, direction| {
            if direction == Direction::Receive && trigger.swap(false, Ordering::SeqCst) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        })),
        ..quick_client_config()
    };
    let mut client = Client::connect(&server.location(), config).unwrap();
    let id = client.session_id();
    assert_eq!(as_count(&client.call(b"a").unwrap()), 1);
    armed.store(true, Ordering::SeqCst);
    assert_eq!(
        as_count(&client.call(b"b").unwrap()),
        2,
        "run once, answered once"
    );
    // Linux still delivers bytes that arrived before `shutdown(Read)`: when the answer
    // beat the cut, the client never notices it.
    assert!(
        client.reconnects() <= 1,
        "reconnects: {}",
        client.reconnects()
    );
    assert_eq!(client.session_id(), id);
    assert_eq!(server.counters().sessions_resumed, client.reconnects());
    assert_eq!(server.counters().requests_processed, 2);
    client.close();
    eventually("the session ended", || {
        server.counters().sessions_ended == 1
    });
    assert_eq!(server.live_sessions(), 0);
}

/// Set in the environment of the process `handler_panics_print_nothing_on_stderr` starts.
const PANIC_CHILD: &str = "EXACTLY_ONCE_PANIC_CHILD";

/// In a child process only: a server whose handler panics answers a few calls.
#[test]
fn panicking_handler_child() {
    if std::env::var_os(PANIC_CHILD).is_none() {
        return;
    }
    let server = exactly_once::transport::Server::bind(
        "127.0.0.1:0",
        ServerConfig::default(),
        |_: &[u8]| -> Vec<u8> { panic!("boom in the child's handler") },
    )
    .unwrap();
    for _ in 0..3 {
        let mut raw = Raw::connect(server.local_addr());
        raw.handshake(0);
        raw.call(1, b"x");
        raw.assert_closed();
    }
    assert_eq!(server.counters().closed(CloseReason::HandlerPanicked), 3);
}

#[test]
fn handler_panics_print_nothing_on_stderr() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "panicking_handler_child", "--nocapture"])
        .env(PANIC_CHILD, "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child ran: {stdout}");
    assert!(
        !stderr.contains("boom") && !stderr.contains("panicked"),
        "a handler panic reached stderr: {stderr}"
    );
}
