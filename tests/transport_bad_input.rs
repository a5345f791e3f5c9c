#![cfg(feature = "transport")]
//! Untrusted input: each bad input closes only its own connection, with a
//! counted reason, and the server and another live session carry on.

mod transport_support;

use exactly_once::transport::{CloseReason, Server, ServerConfig};
use exactly_once::RequestNr;
use std::time::{Duration, Instant};
use transport_support::*;

fn assert_closed_for(reason: CloseReason, config: ServerConfig, bad: impl FnOnce(&mut Raw)) {
    let server = server(config);
    let mut other = bystander(&server);
    let mut raw = Raw::connect(server.local_addr());
    bad(&mut raw);
    raw.assert_closed();
    eventually("the close is counted", || {
        server.counters().closed(reason) == 1
    });
    assert_eq!(server.counters().connections_closed_with_error, 1);
    assert_still_serves(&server, &mut other);
}

#[test]
fn a_negative_frame_length_closes_the_connection() {
    assert_closed_for(
        CloseReason::NegativeLength,
        ServerConfig::default(),
        |raw| {
            raw.handshake(0);
            raw.send_u64(1);
            raw.send_u64((-5i64) as u64);
        },
    );
}

#[test]
fn a_frame_length_above_the_maximum_closes_the_connection() {
    let config = ServerConfig {
        max_frame: 1024,
        ..ServerConfig::default()
    };
    assert_closed_for(CloseReason::FrameTooLong, config, |raw| {
        raw.handshake(0);
        raw.send_u64(1);
        raw.send_u64(1025);
    });
}

#[test]
fn a_huge_frame_length_allocates_nothing_and_closes() {
    // 2^62 bytes: an up-front allocation of the claimed length would abort the process;
    // the budget refuses it before a byte is read.
    let config = ServerConfig {
        max_frame: u64::MAX >> 1,
        ..ServerConfig::default()
    };
    assert_closed_for(CloseReason::OverBudget, config, |raw| {
        raw.handshake(0);
        raw.send_u64(1);
        raw.send_u64(1 << 62);
        raw.send(b"only a few bytes");
    });
}

#[test]
fn a_frame_that_ends_early_allocates_only_what_arrived() {
    let config = ServerConfig {
        memory_budget: usize::MAX,
        max_frame: u64::MAX >> 1,
        ..ServerConfig::default()
    };
    assert_closed_for(CloseReason::Truncated, config, |raw| {
        raw.handshake(0);
        raw.send_u64(1);
        raw.send_u64(1 << 62);
        raw.send(b"only a few bytes");
        raw.shutdown_write();
    });
}

#[test]
fn a_request_number_above_the_maximum_closes_the_connection() {
    for nr in [RequestNr::MAX + 1, u64::MAX] {
        assert_closed_for(CloseReason::BadRequestNr, ServerConfig::default(), |raw| {
            raw.handshake(0);
            raw.call(nr, b"x");
        });
    }
}

#[test]
fn request_zero_mid_session_ends_the_session_without_an_error() {
    let server = server(ServerConfig::default());
    let mut other = bystander(&server);
    let mut raw = Raw::connect(server.local_addr());
    let id = raw.handshake(0);
    raw.call(1, b"a");
    assert_eq!(raw.read_frame().map(|r| as_count(&r)), Some(2));
    raw.send_u64(0);
    raw.assert_closed();
    eventually("the end is counted", || {
        server.counters().sessions_ended == 1
    });
    assert_eq!(server.counters().connections_closed_with_error, 0);

    let mut again = Raw::connect(server.local_addr());
    again.send_u64(id);
    again.assert_closed();
    eventually("the resume is refused", || {
        server.counters().closed(CloseReason::UnknownSession) == 1
    });
    assert_still_serves(&server, &mut other);
}

#[test]
fn a_newer_request_while_one_is_processed_is_busy_and_closes() {
    let server = server(ServerConfig::default());
    let mut other = bystander(&server);
    let mut first = Raw::connect(server.local_addr());
    let id = first.handshake(0);
    first.call(1, b"slow");
    eventually("request 1 is being processed", || {
        server.counters().requests_processed == 2
    });
    let mut second = Raw::connect(server.local_addr());
    assert_eq!(second.handshake(id), id);
    second.call(2, b"too early");
    second.assert_closed();
    eventually("busy is counted", || {
        server.counters().closed(CloseReason::Busy) == 1
    });
    assert_eq!(server.counters().requests_busy, 1);
    assert!(
        first.read_frame().is_some(),
        "request 1 still gets its answer"
    );
    assert_still_serves(&server, &mut other);
}

#[test]
fn a_client_that_sends_nothing_is_closed_at_the_handshake_deadline() {
    let config = ServerConfig {
        handshake_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let start = Instant::now();
    assert_closed_for(CloseReason::HandshakeTimeout, config, |_| {});
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_truncated_handshake_closes_the_connection() {
    assert_closed_for(CloseReason::Truncated, ServerConfig::default(), |raw| {
        raw.send(&[1, 2, 3]);
        raw.shutdown_write();
    });
}

#[test]
fn a_truncated_request_number_closes_the_connection() {
    assert_closed_for(CloseReason::Truncated, ServerConfig::default(), |raw| {
        raw.handshake(0);
        raw.send(&[1, 0, 0]);
        raw.shutdown_write();
    });
}

#[test]
fn a_truncated_frame_closes_the_connection() {
    assert_closed_for(CloseReason::Truncated, ServerConfig::default(), |raw| {
        raw.handshake(0);
        raw.send_u64(1);
        raw.send_u64(10);
        raw.send(b"abcd");
        raw.shutdown_write();
    });
}

#[test]
fn resuming_an_unknown_session_closes_the_connection() {
    assert_closed_for(
        CloseReason::UnknownSession,
        ServerConfig::default(),
        |raw| {
            raw.send_u64(12345);
        },
    );
}

#[test]
fn a_new_session_beyond_the_limit_is_refused() {
    let config = ServerConfig {
        max_sessions: 2,
        ..ServerConfig::default()
    };
    let server = server(config);
    let mut other = bystander(&server);
    let mut second = Raw::connect(server.local_addr());
    second.handshake(0);
    let mut third = Raw::connect(server.local_addr());
    third.send_u64(0);
    third.assert_closed();
    eventually("the refusal is counted", || {
        server.counters().closed(CloseReason::SessionLimit) == 1
    });
    other
        .call(b"still there?")
        .expect("a live session carries on");
    second.send_u64(0); // ends its session: there is room again
    eventually("the session ended", || server.live_sessions() == 1);
    assert_still_serves(&server, &mut other);
}

#[test]
fn at_the_connection_limit_a_newcomer_closes_the_longest_idle_connection() {
    let config = ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    };
    let server = server(config);
    let mut idle = Raw::connect(server.local_addr());
    idle.handshake(0);
    std::thread::sleep(Duration::from_millis(20));
    let mut other = bystander(&server);
    let mut third = Raw::connect(server.local_addr());
    assert_ne!(third.handshake(0), 0, "the newcomer is served");
    idle.assert_closed();
    assert_eq!(server.counters().connections_evicted, 1);
    assert_eq!(server.counters().connections_refused, 0);
    other
        .call(b"still there?")
        .expect("a live session carries on");
    assert_still_serves(&server, &mut other);
}

#[test]
fn at_the_connection_limit_the_address_with_the_most_connections_makes_room() {
    let config = ServerConfig {
        max_connections: 3,
        ..ServerConfig::default()
    };
    let server = server(config);
    // The longest idle, but alone at its address.
    let mut alone = Raw::connect(server.local_addr());
    alone.handshake(0);
    std::thread::sleep(Duration::from_millis(20));
    let mut flooding = [
        Raw::connect_from(ATTACKER, server.local_addr()),
        Raw::connect_from(ATTACKER, server.local_addr()),
    ];
    for raw in &mut flooding {
        raw.handshake(0);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut newcomer = Raw::connect(server.local_addr());
    assert_ne!(newcomer.handshake(0), 0, "the newcomer is served");
    flooding[0].assert_closed();
    assert_eq!(server.counters().connections_evicted, 1);
    alone.call(1, b"still here");
    assert_eq!(alone.read_frame().map(|r| r.len()), Some(8), "answered");
}

#[test]
fn at_the_connection_limit_a_client_that_does_not_read_goes_before_a_longer_idle_one() {
    const BIG: usize = 16 << 20;
    let config = ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    };
    let answer = |request: &[u8]| match request {
        b"big" => vec![7; BIG],
        _ => request.to_vec(),
    };
    let server = Server::bind("127.0.0.1:0", config, answer).expect("bind 127.0.0.1");
    let mut idle = Raw::connect(server.local_addr());
    idle.handshake(0);
    std::thread::sleep(Duration::from_millis(20));
    // Asks for more than the socket buffers hold, and never reads it.
    let mut not_reading = Raw::connect(server.local_addr());
    not_reading.handshake(0);
    not_reading.call(1, b"big");
    eventually("the answer is being written", || {
        server.budget().used() >= BIG
    });
    // Writing it fills the client's receive window within milliseconds.
    std::thread::sleep(Duration::from_millis(200));
    let mut newcomer = Raw::connect(server.local_addr());
    assert_ne!(newcomer.handshake(0), 0, "the newcomer is served");
    not_reading.assert_closed();
    assert_eq!(server.counters().connections_evicted, 1);
    // The connection that waited longer, but has taken everything it was sent, stays.
    idle.call(1, b"still here");
    assert_eq!(idle.read_frame().as_deref(), Some(&b"still here"[..]));
}

#[test]
fn an_idle_session_without_connections_expires() {
    let config = ServerConfig {
        idle_expiry: Duration::from_millis(100),
        unused_expiry: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let server = server(config);
    let mut raw = Raw::connect(server.local_addr());
    let id = raw.handshake(0);
    drop(raw);
    eventually("the connection is gone", || server.live_connections() == 0);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(server.expire_idle(), 1);
    assert_eq!(server.counters().sessions_expired, 1);
    let mut late = Raw::connect(server.local_addr());
    late.send_u64(id);
    late.assert_closed();
}

#[test]
fn session_ids_are_random_and_nonzero() {
    let server = server(ServerConfig::default());
    let ids: Vec<u64> = (0..3)
        .map(|_| Raw::connect(server.local_addr()).handshake(0))
        .collect();
    assert!(ids.iter().all(|&id| id != 0));
    assert!(ids.windows(2).all(|w| w[1] != w[0] + 1 && w[0] != w[1]));
}
