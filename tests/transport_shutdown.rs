#![cfg(feature = "transport")]
//! Graceful shutdown answers every call whose bytes have arrived; forced shutdown cuts
//! every connection at once; both return once every connection thread has ended.

mod transport_support;

use exactly_once::transport::{Client, ClientConfig, ClientError, ServerConfig};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use transport_support::*;

#[test]
fn graceful_shutdown_lets_the_call_in_progress_finish() {
    let server = server(ServerConfig::default());
    let addr = server.local_addr();
    let mut idle = Client::connect(&server.location(), quick_client_config()).unwrap();
    idle.call(b"a").unwrap();
    let mut busy = Client::connect(&server.location(), quick_client_config()).unwrap();
    let caller = std::thread::spawn(move || busy.call(b"slow"));
    eventually("the slow call is being processed", || {
        server.counters().requests_processed == 2
    });
    let start = Instant::now();
    let cut = server.shutdown(Duration::from_secs(5));
    assert_eq!(cut, 0, "nothing had to be cut");
    assert!(start.elapsed() < Duration::from_secs(3));
    let answer = caller
        .join()
        .unwrap()
        .expect("the call in progress finished");
    assert_eq!(as_count(&answer), 2);
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
}

#[test]
fn graceful_shutdown_does_not_wait_for_idle_connections() {
    let server = server(ServerConfig::default());
    let mut clients: Vec<Client> = (0..3)
        .map(|_| Client::connect(&server.location(), quick_client_config()).unwrap())
        .collect();
    for c in &mut clients {
        c.call(b"x").unwrap();
    }
    let start = Instant::now();
    assert_eq!(server.shutdown(Duration::from_secs(10)), 0);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "waited for idle connections"
    );
}

#[test]
fn forced_shutdown_cuts_a_call_in_progress_at_once() {
    let server = server(ServerConfig::default());
    let config = ClientConfig {
        reconnect_deadline: Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let mut busy = Client::connect(&server.location(), config).unwrap();
    let caller = std::thread::spawn(move || busy.call(b"slow"));
    eventually("the slow call is being processed", || {
        server.counters().requests_processed == 1
    });
    let start = Instant::now();
    let stopped = server.stop_now();
    assert_eq!(stopped.cut, 1);
    assert_eq!(
        stopped.still_running, 0,
        "the handler's thread was waited for"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "forced shutdown waited for more than the handler"
    );
    assert!(matches!(
        caller.join().unwrap(),
        Err(ClientError::Unreachable { .. })
    ));
}

#[test]
fn a_graceful_shutdown_cuts_what_outlives_the_grace_period() {
    let server = server(ServerConfig::default());
    let config = ClientConfig {
        reconnect_deadline: Duration::from_millis(100),
        ..ClientConfig::default()
    };
    let mut busy = Client::connect(&server.location(), config).unwrap();
    let caller = std::thread::spawn(move || busy.call(b"slow"));
    eventually("the slow call is being processed", || {
        server.counters().requests_processed == 1
    });
    assert_eq!(server.shutdown(Duration::from_millis(50)), 1);
    assert!(caller.join().unwrap().is_err());
}

/// Regression: `close` ended the session and then `Drop` resumed it to end it again,
/// which the server refused as a resume of an unknown session.
#[test]
fn closing_a_client_ends_its_session_exactly_once() {
    use exactly_once::transport::CloseReason;
    let server = server(ServerConfig::default());
    let mut client = Client::connect(&server.location(), quick_client_config()).unwrap();
    client.call(b"x").unwrap();
    client.close();
    eventually("the session ended", || {
        server.counters().sessions_ended == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    let counters = server.counters();
    assert_eq!(
        counters.closed(CloseReason::UnknownSession),
        0,
        "{counters:?}"
    );
    assert_eq!(counters.sessions_resumed, 0, "{counters:?}");
    assert_eq!(server.live_sessions(), 0);
}

#[test]
fn graceful_shutdown_answers_a_call_whose_bytes_arrived_and_does_not_wait_for_a_stalled_frame() {
    let server = server(ServerConfig::default());
    let mut pipelined = Raw::connect(server.local_addr());
    pipelined.handshake(0);
    pipelined.call(1, b"slow");
    pipelined.call(2, b"after the slow one");
    let mut stalled = Raw::connect(server.local_addr());
    stalled.handshake(0);
    stalled.send_u64(1);
    stalled.send_u64(1000);
    stalled.send(b"a tenth");
    eventually("the slow call is being processed", || {
        server.counters().requests_processed == 1
    });
    let start = Instant::now();
    let stopped = server.stop(Duration::from_secs(10));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "waited for the stalled frame"
    );
    assert_eq!(
        stopped.still_running, 0,
        "every connection thread has ended"
    );
    assert_eq!(pipelined.read_frame().map(|f| as_count(&f)), Some(1));
    assert_eq!(
        pipelined.read_frame().map(|f| as_count(&f)),
        Some(2),
        "the call that had arrived is answered"
    );
    pipelined.assert_closed();
    stalled.assert_closed();
}
