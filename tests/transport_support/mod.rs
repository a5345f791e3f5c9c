//! Helpers shared by the `transport_*` tests: a raw peer that speaks the wire format
//! byte by byte (so it can also speak it wrongly), handlers, and polling.

#![allow(dead_code)]

use exactly_once::transport::{Client, ClientConfig, Server, ServerConfig};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A handler answering with how many requests it has executed, as 8 bytes LE; it
/// sleeps `slow_ms` first for requests that start with `b"slow"` and panics for `b"panic"`.
pub fn counter_handler() -> impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static {
    let executions = AtomicU64::new(0);
    move |request: &[u8]| {
        if request == b"panic" {
            panic!("the handler panics on request");
        }
        if request.starts_with(b"slow") {
            std::thread::sleep(Duration::from_millis(400));
        }
        (executions.fetch_add(1, Ordering::SeqCst) + 1)
            .to_le_bytes()
            .to_vec()
    }
}

pub fn server(config: ServerConfig) -> Server {
    Server::bind("127.0.0.1:0", config, counter_handler()).expect("bind 127.0.0.1")
}

pub fn quick_client_config() -> ClientConfig {
    ClientConfig {
        reconnect_deadline: Duration::from_secs(10),
        ..ClientConfig::default()
    }
}

/// A session that must keep working whatever another connection does.
pub fn bystander(server: &Server) -> Client {
    let mut client = Client::connect(&server.location(), quick_client_config()).unwrap();
    client.call(b"hello").unwrap();
    client
}

pub fn assert_still_serves(server: &Server, bystander: &mut Client) {
    bystander
        .call(b"still there?")
        .expect("the other session carries on");
    let mut fresh = Client::connect(&server.location(), quick_client_config()).unwrap();
    fresh.call(b"new").expect("the server carries on");
}

/// Polls `condition` for up to 5 s.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A peer that writes raw bytes.
pub struct Raw(pub TcpStream);

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::reading_within_5_s(TcpStream::connect(addr).unwrap())
    }

    /// Connects from the local address `from` (on Linux every 127.x.y.z is this
    /// machine's), so that the server sees another client address than the default
    /// 127.0.0.1.
    pub fn connect_from(from: IpAddr, addr: SocketAddr) -> Raw {
        Raw::reading_within_5_s(connect_from(from, addr, Duration::from_secs(5)).unwrap())
    }

    fn reading_within_5_s(stream: TcpStream) -> Raw {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Raw(stream)
    }

    /// Sends `bytes`; a failure is ignored, since the server may already have closed
    /// the connection for what came before (the test then checks that it did).
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.0.write_all(bytes);
    }

    pub fn send_u64(&mut self, n: u64) {
        self.send(&n.to_le_bytes());
    }

    /// Sends a handshake and closes; the id the server answered with, if any.
    pub fn handshake_or_close(mut self, session: u64) -> Option<u64> {
        self.try_handshake(session)
    }

    /// Sends a handshake; the id the server answered with, if any.
    pub fn try_handshake(&mut self, session: u64) -> Option<u64> {
        self.send_u64(session);
        self.read_u64()
    }

    pub fn handshake(&mut self, session: u64) -> u64 {
        self.send_u64(session);
        self.read_u64().expect("handshake answered")
    }

    /// Sends a call (number, length, bytes) in one write.
    pub fn call(&mut self, nr: u64, body: &[u8]) {
        let mut message = nr.to_le_bytes().to_vec();
        message.extend_from_slice(&(body.len() as u64).to_le_bytes());
        message.extend_from_slice(body);
        self.send(&message);
    }

    pub fn read_u64(&mut self) -> Option<u64> {
        let mut buf = [0u8; 8];
        self.0.read_exact(&mut buf).ok()?;
        Some(u64::from_le_bytes(buf))
    }

    pub fn read_frame(&mut self) -> Option<Vec<u8>> {
        let len = self.read_u64()?;
        let mut body = vec![0u8; len as usize];
        self.0.read_exact(&mut body).ok()?;
        Some(body)
    }

    pub fn shutdown_write(&self) {
        let _ = self.0.shutdown(Shutdown::Write);
    }

    /// Asserts the server closed the connection: a read ends (EOF or reset) rather
    /// than timing out.
    pub fn assert_closed(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) => {
                    assert!(
                        !matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ),
                        "the server left the connection open"
                    );
                    return;
                }
            }
        }
    }
}

/// The address attacks connect from; bystanders use the default, 127.0.0.1.
pub const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A connection to `addr` from the local address `from`, within `timeout`.
pub fn connect_from(from: IpAddr, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

pub fn as_count(response: &[u8]) -> u64 {
    u64::from_le_bytes(response.try_into().expect("8-byte count"))
}
pub mod attack;
