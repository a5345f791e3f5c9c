//! The floor under `mcp_server`: a bare MCP-over-TCP echo server that `scripts/bench-transport`
//! runs under the same load, to show what any server of the same shape pays per call.
//!
//! ```sh
//! cargo run --release --example mcp_floor -- --listen 127.0.0.1:0 --model threads
//! cargo run --release --example mcp_floor -- --model epoll    # Linux only
//! ```
//!
//! It speaks the same wire format as `mcp_server`, read and written by the crate's own
//! `transport::wire`, and keeps nothing else: no session table, no memory budget, no
//! per-message deadlines, no counters per call, no logging. It is **not** exactly-once:
//! every call is echoed, a resend too, and any session id is taken back on resume.
//!
//! Two models:
//! - `threads` (the default) is `mcp_server`'s own: an accept thread and a thread per
//!   connection on blocking sockets, read through an 8 KiB buffer, so that a small call
//!   costs one `recvfrom` (the number, the length and the bytes together) and one
//!   `writev` (the length and the bytes), as in `mcp_server`.
//! - `epoll` serves every connection from one thread: non-blocking sockets under a
//!   level-triggered epoll, one `recvfrom` and one `sendto` per ready connection (a
//!   call, or as many as arrived together), and one `epoll_wait` for all the connections
//!   ready at once.
//!
//! Bad input (a negative or too long frame length, a close in the middle of a message)
//! closes that connection only. A connection of the `threads` model that stays silent
//! (or does not take its answer) for `--idle-timeout` is closed, so no thread waits on
//! a client forever; under `epoll` a silent connection holds no thread, only its socket.
//! Prints its location, `tcp:HOST:PORT`, as the first line on stdout, serves until
//! Ctrl-C (or SIGTERM), then prints on stderr what it served.

mod support;

use clap::{Parser, ValueEnum};
use exactly_once::transport::wire::{self, WireError};
use exactly_once::transport::ServerConfig;
use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// `mcp_server`'s read buffer, so that a call arrives with one read.
const READ_BUFFER: usize = 8 * 1024;

/// `mcp_server`'s connection-thread stack.
const CONNECTION_STACK: usize = 512 * 1024;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    /// A thread per connection, blocking sockets (as `mcp_server`).
    Threads,
    /// One thread, non-blocking sockets under epoll (Linux only).
    Epoll,
}

/// A bare MCP-over-TCP echo server: the floor under `mcp_server`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// How connections are served.
    #[arg(long, value_enum, default_value = "threads")]
    model: Model,
    /// The largest request frame accepted, in bytes (`mcp_server`'s default).
    #[arg(long, default_value_t = ServerConfig::default().max_frame)]
    max_frame: u64,
    /// Seconds a connection of the `threads` model may be silent, or not take its
    /// answer, before it is closed (`mcp_server`'s idle time).
    #[arg(long, default_value_t = ServerConfig::default().idle_timeout.as_secs_f64())]
    idle_timeout: f64,
}

/// What every connection shares: the limits, the next new session id, and the tally.
#[derive(Debug)]
struct Floor {
    max_frame: u64,
    idle_timeout: Duration,
    next_id: AtomicU64,
    tally: Tally,
}

/// Added to once per connection, when it ends (nothing is counted per call).
#[derive(Debug, Default)]
struct Tally {
    connections: AtomicU64,
    calls: AtomicU64,
    bad_input: AtomicU64,
}

impl Floor {
    fn new(max_frame: u64, idle_timeout: Duration) -> Arc<Floor> {
        Arc::new(Floor {
            max_frame,
            idle_timeout,
            next_id: AtomicU64::new(1),
            tally: Tally::default(),
        })
    }

    /// The id answered to a handshake: a fresh non-zero one for 0 (new), else the same.
    fn session_id(&self, requested: u64) -> u64 {
        match requested {
            // ORDERING: only uniqueness is needed; nothing is published with it.
            0 => self.next_id.fetch_add(1, Ordering::Relaxed),
            id => id,
        }
    }

    /// Counts a connection that has ended after `calls` calls, and whether it broke
    /// the protocol.
    fn ended(&self, calls: u64, outcome: Result<(), WireError>) {
        // ORDERING: tallies read once, at the end; they publish nothing.
        self.tally.connections.fetch_add(1, Ordering::Relaxed);
        self.tally.calls.fetch_add(calls, Ordering::Relaxed);
        if matches!(
            outcome,
            Err(WireError::NegativeLength(_) | WireError::TooLong { .. } | WireError::Truncated)
        ) {
            self.tally.bad_input.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn summary(&self) -> String {
        let t = &self.tally;
        // ORDERING: see `ended`.
        let read = |n: &AtomicU64| n.load(Ordering::Relaxed);
        format!(
            "connections ended: {}, calls answered on them: {}, closed for bad input: {}",
            read(&t.connections),
            read(&t.calls),
            read(&t.bad_input)
        )
    }
}

/// The `threads` model: accepts on a thread of its own, and serves each connection on
/// a thread of its own until the client leaves.
fn serve_threads(listener: TcpListener, floor: Arc<Floor>) -> io::Result<()> {
    thread::Builder::new()
        .name("floor-accept".into())
        .spawn(move || loop {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                // Out of descriptors, say: let connections end rather than spin.
                Err(_) => {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let floor = Arc::clone(&floor);
            let spawned = thread::Builder::new()
                .stack_size(CONNECTION_STACK)
                .spawn(move || {
                    let mut calls = 0;
                    let outcome = echo_blocking(&floor, &stream, &mut calls);
                    floor.ended(calls, outcome);
                });
            // Out of threads: the connection's socket, moved into the closure, closes.
            drop(spawned);
        })
        .map(drop)
}

/// One connection of the `threads` model: the handshake, then echoes until the client
/// leaves or ends its session.
fn echo_blocking(floor: &Floor, stream: &TcpStream, calls: &mut u64) -> Result<(), WireError> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(floor.idle_timeout))?;
    stream.set_write_timeout(Some(floor.idle_timeout))?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, stream);
    let mut writer = stream;
    let Some(requested) = wire::read_u64_or_eof(&mut reader)? else {
        return Ok(());
    };
    wire::write_u64(&mut writer, floor.session_id(requested))?;
    while let Some(nr) = wire::read_u64_or_eof(&mut reader)? {
        if nr == 0 {
            break;
        }
        let frame = wire::read_frame(&mut reader, floor.max_frame)?;
        wire::write_frame(&mut writer, &frame)?;
        *calls += 1;
    }
    Ok(())
}

/// The answers to the complete messages at the start of `input`, appended to `output`.
/// Returns how many bytes of `input` they took, or why the connection ends: `Ok(None)`
/// for request number 0 (the session ends), an error for bad input.
fn echo_parsed(
    floor: &Floor,
    handshaken: &mut bool,
    input: &[u8],
    output: &mut Vec<u8>,
    calls: &mut u64,
) -> Result<Option<usize>, WireError> {
    let number = |at: usize| {
        let bytes = input.get(at..at + 8)?;
        Some(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    };
    let mut used = 0;
    if !*handshaken {
        let Some(requested) = number(0) else {
            return Ok(Some(0));
        };
        output.extend_from_slice(&floor.session_id(requested).to_le_bytes());
        *handshaken = true;
        used = 8;
    }
    loop {
        match number(used) {
            None => return Ok(Some(used)),
            Some(0) => return Ok(None),
            Some(_) => {}
        }
        let Some(header) = input.get(used + 8..used + 16) else {
            return Ok(Some(used));
        };
        let length = wire::read_frame_length(&mut &header[..], floor.max_frame)?;
        // Checked against `max_frame` above: it fits in memory as a frame would.
        let end = used + 16 + length as usize;
        let Some(frame) = input.get(used + 8..end) else {
            return Ok(Some(used));
        };
        output.extend_from_slice(frame);
        *calls += 1;
        used = end;
    }
}

#[cfg(target_os = "linux")]
mod epoll {
    //! The `epoll` model: one thread, non-blocking sockets, level-triggered readiness.

    use super::{echo_parsed, Floor, READ_BUFFER};
    use exactly_once::transport::wire::WireError;
    use std::io::{self, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    /// The listener's token; a connection's is its index in `Loop::connections`.
    const LISTENER: u64 = u64::MAX;

    /// How long `epoll_wait` blocks before `stop` is asked again.
    const STOP_POLL_MS: i32 = 100;

    struct Connection {
        stream: TcpStream,
        handshaken: bool,
        /// The start of a message whose rest has not arrived.
        input: Vec<u8>,
        /// Answers the socket has not taken yet. Nothing more is read meanwhile, so a
        /// client that sends without reading its answers cannot make it grow.
        output: Vec<u8>,
        /// What epoll watches it for: `EPOLLIN`, or `EPOLLOUT` while `output` waits.
        interest: i32,
        calls: u64,
    }

    struct Loop<'a> {
        floor: &'a Floor,
        epoll: OwnedFd,
        connections: Vec<Option<Connection>>,
        free: Vec<usize>,
        scratch: Box<[u8; READ_BUFFER]>,
    }

    /// Serves `listener` from this thread until `stop` says so.
    pub(super) fn serve(
        listener: TcpListener,
        floor: &Floor,
        stop: impl Fn() -> bool,
    ) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        // SAFETY: epoll_create1 takes no pointers; its result is checked below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut looped = Loop {
            floor,
            // SAFETY: `fd` is a new descriptor that nothing else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            connections: Vec::new(),
            free: Vec::new(),
            scratch: Box::new([0; READ_BUFFER]),
        };
        looped.control(
            libc::EPOLL_CTL_ADD,
            listener.as_raw_fd(),
            libc::EPOLLIN,
            LISTENER,
        )?;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        while !stop() {
            // SAFETY: `events` has room for the `len` events epoll_wait may write.
            let ready = unsafe {
                libc::epoll_wait(
                    looped.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    STOP_POLL_MS,
                )
            };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in &events[..ready as usize] {
                let (token, flags) = (event.u64, event.events);
                if token == LISTENER {
                    looped.accept_all(&listener)?;
                } else {
                    looped.ready(token as usize, flags);
                }
            }
        }
        for connection in looped.connections.iter_mut().filter_map(Option::take) {
            floor.ended(connection.calls, Ok(()));
        }
        Ok(())
    }

    impl Loop<'_> {
        fn control(&self, op: i32, fd: RawFd, interest: i32, token: u64) -> io::Result<()> {
            let mut event = libc::epoll_event {
                events: interest as u32,
                u64: token,
            };
            // SAFETY: `event` is a valid epoll_event that outlives the call.
            let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) };
            match rc {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        }

        fn accept_all(&mut self, listener: &TcpListener) -> io::Result<()> {
            loop {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // Out of descriptors, say: the listener stays ready, so it is
                    // tried again after the connections that are ready are served.
                    Err(_) => return Ok(()),
                };
                if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
                    continue;
                }
                let token = self.free.pop().unwrap_or(self.connections.len());
                let fd = stream.as_raw_fd();
                if self
                    .control(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN, token as u64)
                    .is_err()
                {
                    continue;
                }
                let connection = Connection {
                    stream,
                    handshaken: false,
                    input: Vec::new(),
                    output: Vec::new(),
                    interest: libc::EPOLLIN,
                    calls: 0,
                };
                match self.connections.get_mut(token) {
                    Some(slot) => *slot = Some(connection),
                    None => self.connections.push(Some(connection)),
                }
            }
        }

        /// Serves a ready connection; closes it when it ends or fails.
        fn ready(&mut self, token: usize, flags: u32) {
            let Some(mut connection) = self.connections.get_mut(token).and_then(Option::take)
            else {
                return;
            };
            let outcome = match connection.output.is_empty() {
                true => self.read_and_answer(&mut connection),
                false if flags & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 => {
                    Self::write(&mut connection).map(|()| true)
                }
                false => Ok(true),
            };
            let interest = match connection.output.is_empty() {
                true => libc::EPOLLIN,
                false => libc::EPOLLOUT,
            };
            // Changed only when a write is left unfinished or finishes it: a call
            // costs no epoll_ctl.
            let watched = interest == connection.interest || {
                let fd = connection.stream.as_raw_fd();
                connection.interest = interest;
                self.control(libc::EPOLL_CTL_MOD, fd, interest, token as u64)
                    .is_ok()
            };
            match outcome {
                Ok(true) if watched => self.connections[token] = Some(connection),
                outcome => {
                    self.floor.ended(connection.calls, outcome.map(drop));
                    // Closing the socket takes it out of the epoll set.
                    self.free.push(token);
                }
            }
        }

        /// One read, the answers to every message it completes, and one write.
        /// `Ok(false)` when the client has left or ended its session.
        fn read_and_answer(&mut self, connection: &mut Connection) -> Result<bool, WireError> {
            let n = match connection.stream.read(&mut self.scratch[..]) {
                Ok(0) if connection.input.is_empty() => return Ok(false),
                Ok(0) => return Err(WireError::Truncated),
                Ok(n) => n,
                Err(e) if is_transient(&e) => return Ok(true),
                Err(e) => return Err(e.into()),
            };
            let Connection {
                handshaken,
                input,
                output,
                calls,
                ..
            } = connection;
            // Parsed from the scratch buffer where no earlier part is waiting (a small
            // call arrives whole): only an incomplete rest is copied.
            let parsed = match input.is_empty() {
                true => {
                    let arrived = &self.scratch[..n];
                    let parsed = echo_parsed(self.floor, handshaken, arrived, output, calls)?;
                    if let Some(used) = parsed {
                        input.extend_from_slice(&arrived[used..]);
                    }
                    parsed
                }
                false => {
                    input.extend_from_slice(&self.scratch[..n]);
                    let parsed = echo_parsed(self.floor, handshaken, input, output, calls)?;
                    if let Some(used) = parsed {
                        input.drain(..used);
                    }
                    parsed
                }
            };
            // The answers before a request number 0 are sent before the connection closes.
            Self::write(connection)?;
            Ok(parsed.is_some())
        }

        fn write(connection: &mut Connection) -> Result<(), WireError> {
            if connection.output.is_empty() {
                return Ok(());
            }
            match connection.stream.write(&connection.output) {
                Ok(0) => Err(WireError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    connection.output.drain(..n);
                    Ok(())
                }
                Err(e) if is_transient(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }

    fn is_transient(e: &io::Error) -> bool {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        )
    }
}

fn main() {
    let args = Args::parse();
    let idle_timeout = Duration::try_from_secs_f64(args.idle_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or_else(|| exit_with(2, "--idle-timeout is not a positive duration"));
    let listener = TcpListener::bind(&args.listen)
        .unwrap_or_else(|e| exit_with(1, &format!("cannot listen on {}: {e}", args.listen)));
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    let floor = Floor::new(args.max_frame, idle_timeout);
    support::on_interrupt();
    println!("tcp:{address}");
    std::io::stdout().flush().expect("stdout");
    let served = match args.model {
        Model::Threads => serve_threads(listener, Arc::clone(&floor)).map(|()| {
            while !support::interrupted() {
                thread::sleep(Duration::from_millis(50));
            }
        }),
        #[cfg(target_os = "linux")]
        Model::Epoll => epoll::serve(listener, &floor, support::interrupted),
        #[cfg(not(target_os = "linux"))]
        Model::Epoll => exit_with(2, "--model epoll: Linux only"),
    };
    if let Err(e) = served {
        exit_with(1, &format!("serving stopped: {e}"));
    }
    eprintln!("{}", floor.summary());
}

fn exit_with(code: i32, message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactly_once::transport::{Client, ClientConfig};
    use std::io::Read;

    const MAX_FRAME: u64 = 1 << 20;

    /// A floor of each model on a port of its own, serving until the test process ends.
    fn each_model() -> Vec<(Model, String, Arc<Floor>)> {
        let start = |model: Model| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let location = format!("tcp:{}", listener.local_addr().unwrap());
            let floor = Floor::new(MAX_FRAME, Duration::from_secs(10));
            match model {
                Model::Threads => serve_threads(listener, Arc::clone(&floor)).unwrap(),
                Model::Epoll => {
                    let floor = Arc::clone(&floor);
                    thread::spawn(move || epoll::serve(listener, &floor, || false).unwrap());
                }
            }
            (model, location, floor)
        };
        vec![start(Model::Threads), start(Model::Epoll)]
    }

    /// A connection whose handshake has been answered.
    fn raw(location: &str) -> TcpStream {
        let mut stream = TcpStream::connect(location.trim_start_matches("tcp:")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        wire::write_u64(&mut stream, 0).unwrap();
        assert_ne!(wire::read_u64(&mut stream).unwrap(), 0);
        stream
    }

    /// Whether the floor's summary comes to end with `tail` within a few seconds (a
    /// connection is counted once its end has been seen, on the server's thread).
    fn summary_ends_with(floor: &Floor, tail: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !floor.summary().ends_with(tail) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// True once the server has closed `stream` (nothing more arrives).
    fn closed(stream: &mut TcpStream) -> bool {
        let mut byte = [0u8];
        matches!(stream.read(&mut byte), Ok(0))
    }

    #[test]
    fn every_call_is_answered_with_its_request_small_or_larger_than_a_read() {
        for (model, location, _) in each_model() {
            let mut client = Client::connect(&location, ClientConfig::default()).unwrap();
            for size in [0, 1, 64, 8 * 1024 - 16, 8 * 1024, 100_000] {
                let request: Vec<u8> = (0..size).map(|i| i as u8).collect();
                assert_eq!(
                    client.call(&request).unwrap(),
                    request,
                    "{model:?}, {size} bytes"
                );
            }
            client.close();
        }
    }

    #[test]
    fn a_new_session_gets_a_fresh_non_zero_id_and_a_resumed_one_its_own() {
        for (model, location, _) in each_model() {
            let first = Client::connect(&location, ClientConfig::default()).unwrap();
            let second = Client::connect(&location, ClientConfig::default()).unwrap();
            assert_ne!(first.session_id(), 0, "{model:?}");
            assert_ne!(first.session_id(), second.session_id(), "{model:?}");
            let mut stream = TcpStream::connect(location.trim_start_matches("tcp:")).unwrap();
            wire::write_u64(&mut stream, first.session_id()).unwrap();
            assert_eq!(
                wire::read_u64(&mut stream).unwrap(),
                first.session_id(),
                "{model:?}"
            );
        }
    }

    #[test]
    fn a_call_sent_a_byte_at_a_time_is_answered_whole() {
        for (model, location, _) in each_model() {
            let mut stream = raw(&location);
            stream.set_nodelay(true).unwrap();
            for byte in wire::encode_call(1, b"trickled") {
                stream.write_all(&[byte]).unwrap();
                thread::sleep(Duration::from_millis(1));
            }
            let answer = wire::read_frame(&mut stream, MAX_FRAME).unwrap();
            assert_eq!(answer, b"trickled", "{model:?}");
        }
    }

    #[test]
    fn calls_sent_together_are_answered_in_order() {
        for (model, location, _) in each_model() {
            let mut stream = raw(&location);
            let mut together = wire::encode_call(1, b"first");
            together.extend(wire::encode_call(2, b"second"));
            together.extend(wire::encode_call(3, b""));
            stream.write_all(&together).unwrap();
            for expected in [&b"first"[..], b"second", b""] {
                let answer = wire::read_frame(&mut stream, MAX_FRAME).unwrap();
                assert_eq!(answer, expected, "{model:?}");
            }
        }
    }

    #[test]
    fn answers_larger_than_the_socket_takes_at_once_arrive_whole_and_in_order() {
        for (model, location, _) in each_model() {
            let mut stream = raw(&location);
            let mut sender = stream.try_clone().unwrap();
            // More than the socket buffers of both directions hold (a few MiB each on
            // loopback), sent together from another thread; this one starts reading
            // late, so that an answer waits for room, and the server stops reading
            // meanwhile.
            let frames: Vec<Vec<u8>> = (0..24u8).map(|i| vec![i; MAX_FRAME as usize]).collect();
            let sending = {
                let frames = frames.clone();
                thread::spawn(move || {
                    for (nr, frame) in (1..).zip(&frames) {
                        sender.write_all(&wire::encode_call(nr, frame)).unwrap();
                    }
                })
            };
            thread::sleep(Duration::from_millis(300));
            for frame in &frames {
                let answer = wire::read_frame(&mut stream, MAX_FRAME).unwrap();
                assert!(
                    answer == *frame,
                    "{model:?}: answer {} out of order",
                    frame[0]
                );
            }
            sending.join().unwrap();
        }
    }

    #[test]
    fn request_number_zero_closes_the_connection_without_an_answer() {
        for (model, location, floor) in each_model() {
            let mut stream = raw(&location);
            let mut message = wire::encode_call(1, b"last");
            message.extend(0u64.to_le_bytes());
            stream.write_all(&message).unwrap();
            assert_eq!(wire::read_frame(&mut stream, MAX_FRAME).unwrap(), b"last");
            assert!(closed(&mut stream), "{model:?}");
            let tail = "calls answered on them: 1, closed for bad input: 0";
            assert!(summary_ends_with(&floor, tail), "{model:?}");
        }
    }

    #[test]
    fn a_negative_or_too_long_frame_length_closes_only_that_connection() {
        for (model, location, floor) in each_model() {
            let mut served = Client::connect(&location, ClientConfig::default()).unwrap();
            for length in [(-1i64) as u64, MAX_FRAME + 1, u64::MAX >> 1] {
                let mut stream = raw(&location);
                let mut call = 1u64.to_le_bytes().to_vec();
                call.extend(length.to_le_bytes());
                stream.write_all(&call).unwrap();
                assert!(closed(&mut stream), "{model:?}, length {length}");
                assert_eq!(served.call(b"still here").unwrap(), b"still here");
            }
            assert!(
                summary_ends_with(&floor, "closed for bad input: 3"),
                "{model:?}"
            );
        }
    }

    #[test]
    fn a_close_in_the_middle_of_a_call_is_bad_input_and_others_carry_on() {
        for (model, location, floor) in each_model() {
            let mut stream = raw(&location);
            stream
                .write_all(&wire::encode_call(1, b"cut short")[..20])
                .unwrap();
            drop(stream);
            let mut client = Client::connect(&location, ClientConfig::default()).unwrap();
            assert_eq!(client.call(b"next").unwrap(), b"next", "{model:?}");
            assert!(
                summary_ends_with(&floor, "closed for bad input: 1"),
                "{model:?}"
            );
        }
    }

    #[test]
    fn a_silent_connection_of_the_threads_model_is_closed_at_the_idle_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let location = format!("tcp:{}", listener.local_addr().unwrap());
        serve_threads(listener, Floor::new(MAX_FRAME, Duration::from_millis(200))).unwrap();
        let mut stream = raw(&location);
        assert!(closed(&mut stream));
    }
}
