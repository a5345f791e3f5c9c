#![cfg(feature = "transport")]
//! Whatever bytes a client sends, the server closes or answers that connection and
//! carries on: random byte strings, and random well-formed prefixes followed by
//! garbage, each on its own connection to one live server with a bystander session.

mod transport_support;

use exactly_once::transport::{wire, ServerConfig};
use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;
use transport_support::*;

fn send_and_hang_up(server: &exactly_once::transport::Server, bytes: &[u8]) {
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The server may close early (that is its answer to garbage): a failed write is fine.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    // Drain until the server closes its side: it must, within the deadline.
    let mut sink = Vec::new();
    let drained = stream.read_to_end(&mut sink);
    assert!(
        !matches!(&drained, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut),
        "the server kept a garbage connection open"
    );
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let raw = prop::collection::vec(any::<u8>(), 0..200);
    let prefixed = (
        0u64..3,
        1u64..4,
        prop::collection::vec(any::<u8>(), 0..40),
        raw.clone(),
    )
        .prop_map(|(session, nr, body, tail)| {
            let mut bytes = session.to_le_bytes().to_vec();
            bytes.extend(wire::encode_call(nr, &body));
            bytes.extend(tail);
            bytes
        });
    prop_oneof![raw, prefixed]
}

#[test]
fn arbitrary_bytes_never_stop_the_server() {
    let config = ServerConfig {
        max_frame: 1024,
        ..ServerConfig::default()
    };
    let server = server(config);
    let mut other = bystander(&server);
    proptest!(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() },
    |(bytes in garbage())| {
        send_and_hang_up(&server, &bytes);
    });
    assert_still_serves(&server, &mut other);
    eventually("every garbage connection is gone", || {
        server.live_connections() == 1
    });
}
