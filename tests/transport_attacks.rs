#![cfg(feature = "transport")]
//! One hostile client must not deny service to others or exhaust the server's memory.
//! Each attack runs for a second and a half beside a bystander (a connected client
//! calling back to back, and a probe opening a new connection and session every 25 ms,
//! from another address than the attack's raw connections);
//! see `transport_support::attack` for what every run asserts. `scripts/attack` prints
//! the figures of these runs as a table.

mod transport_support;

use exactly_once::transport::{Client, ClientConfig, CloseReason, ServerConfig};
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use transport_support::attack::{attack_config, process_status, run, serial, Target};
use transport_support::{quick_client_config, Raw};

/// Opens connections with `open` on `threads` threads, each keeping its newest `keep`,
/// until the attack ends.
fn keep_opening(
    target: &Target,
    threads: usize,
    keep: usize,
    open: impl Fn(&Target) -> Option<Raw> + Sync,
) {
    target.spread(threads, |target, _| {
        let mut held = std::collections::VecDeque::new();
        while !target.stopped() {
            if let Some(raw) = open(target) {
                held.push_back(raw);
            }
            if held.len() > keep {
                held.pop_front();
            }
            thread::sleep(Duration::from_millis(2));
        }
    });
}

#[test]
fn connections_that_finish_the_handshake_then_idle() {
    let figures = run("idle after handshake", attack_config(), |target| {
        keep_opening(target, 4, 20, |t| {
            let mut raw = t.raw()?;
            raw.try_handshake(0).map(|_| raw)
        });
    });
    figures.assert_bystander_unharmed();
    let counters = figures.server.counters();
    assert!(counters.connections_evicted > 0, "{counters:?}");
}

#[test]
fn partial_headers_and_frames_then_stall() {
    let figures = run(
        "partial header or frame, then stall",
        attack_config(),
        |target| {
            keep_opening(target, 4, 20, |t| {
                let mut raw = t.raw()?;
                raw.try_handshake(0)?;
                match fastrand::u8(0..2) {
                    0 => raw.send(&[1, 0, 0]),
                    _ => {
                        raw.send_u64(1);
                        raw.send_u64(1 << 20);
                        raw.send(&[0; 1000]);
                    }
                }
                Some(raw)
            });
        },
    );
    figures.assert_bystander_unharmed();
    let counters = figures.server.counters();
    let stalled = counters.closed(CloseReason::MessageTimeout) + counters.connections_evicted;
    assert!(stalled > 0, "{counters:?}");
}

#[test]
fn slowloris_connects_and_never_sends_its_handshake() {
    let figures = run("slowloris (never handshake)", attack_config(), |target| {
        keep_opening(target, 4, 40, Target::raw);
    });
    figures.assert_bystander_unharmed();
}

#[test]
fn a_handshake_sent_one_byte_at_a_time_is_closed_at_its_deadline() {
    let config = attack_config();
    let deadline = config.handshake_timeout;
    let figures = run("one byte of handshake at a time", config, |target| {
        target.spread(4, |target, _| {
            while !target.stopped() {
                let Some(mut raw) = target.raw() else {
                    continue;
                };
                let start = Instant::now();
                for _ in 0..8 {
                    raw.send(&[0]);
                    thread::sleep(Duration::from_millis(60));
                }
                raw.assert_closed();
                assert!(start.elapsed() < deadline + Duration::from_millis(400));
            }
        });
    });
    figures.assert_bystander_unharmed();
    let counters = figures.server.counters();
    assert!(
        counters.closed(CloseReason::HandshakeTimeout) > 0,
        "{counters:?}"
    );
}

#[test]
fn a_session_fill_neither_locks_newcomers_out_nor_lasts() {
    let config = attack_config();
    let unused_expiry = config.unused_expiry;
    let figures = run("session fill (send 0, close; resume)", config, |target| {
        target.spread(2, |target, t| {
            let mut ids = Vec::new();
            while !target.stopped() {
                let Some(raw) = target.raw() else { continue };
                // Half the threads keep their sessions alive by resuming them.
                let resume = t == 1 && !ids.is_empty();
                let id = if resume {
                    ids[fastrand::usize(..ids.len())]
                } else {
                    0
                };
                if let Some(id) = raw.handshake_or_close(id) {
                    ids.push(id);
                }
            }
        });
    });
    figures.assert_bystander_unharmed();
    let counters = figures.server.counters();
    assert!(
        counters.sessions_evicted + counters.sessions_expired > 0,
        "{counters:?}"
    );
    thread::sleep(unused_expiry + Duration::from_millis(100));
    figures.server.expire_idle();
    assert!(
        figures.server.live_sessions() <= 2,
        "sessions that never completed a request outlived their expiry: {}",
        figures.server.live_sessions()
    );
}

#[test]
fn concurrent_large_echo_calls_stay_within_the_budget() {
    let figures = run("8 concurrent 1 MiB echo calls", attack_config(), |target| {
        // A client whose session was evicted to make room (its connection was closed
        // while its frame waited for room) retries until its deadline: a short one, so
        // that the attack ends with the run.
        let config = ClientConfig {
            reconnect_deadline: Duration::from_millis(500),
            ..quick_client_config()
        };
        target.spread(8, |target, _| {
            let Ok(mut client) = Client::connect(&target.location, config.clone()) else {
                return;
            };
            let mut body = b"echo".to_vec();
            body.resize(1 << 20, 1);
            while !target.stopped() {
                let _ = client.call(&body);
            }
            client.close();
        });
    });
    figures.assert_bystander_unharmed();
    // The budget was short: calls made room by closing connections whose frames
    // waited for it (or, failing that, closed their own).
    let counters = figures.server.counters();
    let short = counters.frames_cut + counters.closed(CloseReason::OverBudget);
    assert!(short > 0, "{counters:?}");
    eventually_budget_is_free(&figures.server);
}

fn eventually_budget_is_free(server: &exactly_once::transport::Server) {
    transport_support::eventually("ended sessions free their responses", || {
        server.memory_used() < 64 << 10
    });
}

#[test]
fn clients_that_never_read_their_answers_stay_within_the_budget() {
    // The default table size: with 64 sessions, this attack's session churn alone would
    // evict the bystander's session while its connection is being re-made, which the
    // session-fill attack covers.
    let config = ServerConfig {
        max_sessions: 1024,
        ..attack_config()
    };
    let figures = run("clients that never read (4 x 1 MiB)", config, |target| {
        keep_opening(target, 4, 8, |t| {
            let mut raw = t.raw()?;
            raw.try_handshake(0)?;
            for nr in 1..=4 {
                raw.call(nr, b"big");
            }
            Some(raw)
        });
    });
    // The bystander's calls and probes, and the budget (checked by the line above),
    // hold: every response is counted from before its handler runs until the last
    // byte is written or the session lets it go.
    figures.assert_bystander_unharmed();
    let counters = figures.server.counters();
    let closed = counters.closed(CloseReason::WriteTimeout) + counters.closed(CloseReason::Io);
    assert!(closed > 0, "{counters:?}");
}

#[test]
fn resends_of_a_large_response_do_not_copy_it() {
    let figures = run("resends of a 1 MiB response", attack_config(), |target| {
        let mut first = target.raw().expect("connect");
        let id = first.handshake(0);
        first.call(1, b"big");
        assert_eq!(first.read_frame().map(|f| f.len()), Some(1 << 20));
        target.spread(8, |target, _| {
            while !target.stopped() {
                let Some(mut raw) = target.raw() else {
                    continue;
                };
                raw.send_u64(id);
                if raw.read_u64().is_some() {
                    raw.call(1, b"");
                    let _ = raw.read_frame();
                }
            }
        });
        first.send_u64(0);
    });
    figures.assert_bystander_unharmed();
    assert!(figures.server.counters().requests_resent > 0);
    // The retained response, and the room the bystander's two connections reserve for
    // theirs; eight resends copying the response would hold 8 MiB more.
    assert!(
        figures.peak_budget <= 3 << 20,
        "resends were counted as copies"
    );
}

/// Every log line the process writes through `tracing`, from the first test on.
fn log_lines() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<&'static Mutex<Vec<String>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines: &'static Mutex<Vec<String>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || Tap(lines))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        lines
    })
}

struct Tap(&'static Mutex<Vec<String>>);

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.extend(text.lines().map(str::to_owned));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_flood_of_bad_connections_logs_a_few_lines_a_second_without_session_ids() {
    let lines = log_lines();
    let before = lines.lock().unwrap().len();
    let config = ServerConfig {
        max_connections: 8,
        ..attack_config()
    };
    let mut ids = Vec::new();
    let figures = run("connection flood beyond the limit", config, |target| {
        keep_opening(target, 4, 4, |t| {
            let mut raw = t.raw()?;
            raw.send_u64(0x5EC2E7 + fastrand::u64(..1000)); // unknown sessions
            None
        });
    });
    figures.assert_bystander_unharmed();
    for _ in 0..3 {
        let mut raw = Raw::connect(figures.server.local_addr());
        ids.push(raw.handshake(0));
        raw.call(1, &[0; 8]);
        raw.send_u64(1 << 62); // a bad request number: a logged close
    }
    let closes = figures.server.counters().connections_closed_with_error;
    let logged = lines.lock().unwrap()[before..].to_vec();
    println!("ATTACK-LOG|{} closes|{} lines", closes, logged.len());
    assert!(closes > 100, "the flood was too small to tell: {closes}");
    let seconds =
        (transport_support::attack::ATTACK + transport_support::attack::AFTER).as_secs() + 2;
    assert!(
        logged.len() as u64 <= seconds * 4 * 6,
        "{} lines for {closes} closes",
        logged.len()
    );
    for id in ids {
        assert!(
            !logged.iter().any(|l| l.contains(&id.to_string())),
            "a session id was logged"
        );
    }
}

#[test]
fn a_panicking_handler_reaches_tracing() {
    let lines = log_lines();
    let _serial = serial();
    let server =
        exactly_once::transport::Server::bind("127.0.0.1:0", attack_config(), |_: &[u8]| {
            panic!("boom in the handler")
        })
        .unwrap();
    let mut raw = Raw::connect(server.local_addr());
    raw.handshake(0);
    raw.call(1, b"x");
    raw.assert_closed();
    transport_support::eventually("the panic is logged", || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("boom in the handler"))
    });
}

#[test]
fn a_connection_costs_the_server_one_file_descriptor() {
    let _serial = serial();
    let server = transport_support::server(attack_config());
    let raws: Vec<Raw> = (0..10)
        .map(|_| {
            let mut raw = Raw::connect(server.local_addr());
            raw.handshake(0);
            raw
        })
        .collect();
    let client_ports: Vec<u16> = raws
        .iter()
        .map(|r| r.0.local_addr().unwrap().port())
        .collect();
    // A socket shows up in /proc/net/tcp a moment before its descriptor does: wait for
    // every one to have one, and never see one on two.
    transport_support::eventually("one descriptor per server-side socket", || {
        let sockets = server_side_sockets(server.local_addr().port(), &client_ports);
        let fds = descriptors_per_socket();
        for inode in &sockets {
            let count = fds.get(&format!("socket:[{inode}]")).copied().unwrap_or(0);
            assert!(count <= 1, "socket {inode} is open on {count} descriptors");
        }
        sockets.len() == raws.len()
            && sockets
                .iter()
                .all(|inode| fds.contains_key(&format!("socket:[{inode}]")))
    });
    let (_, threads) = process_status();
    assert!(threads > 10);
}

/// How many of this process's descriptors point at each file or socket.
fn descriptors_per_socket() -> std::collections::HashMap<String, usize> {
    let mut fds = std::collections::HashMap::new();
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(link) = std::fs::read_link(fd.path()) {
            *fds.entry(link.to_string_lossy().into_owned()).or_insert(0) += 1;
        }
    }
    fds
}

/// Inodes of the established sockets from `port` (the server's side) to `client_ports`.
fn server_side_sockets(port: u16, client_ports: &[u16]) -> Vec<String> {
    let port_of = |address: &str| u16::from_str_radix(address.rsplit(':').next()?, 16).ok();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let ours = port_of(fields[1])? == port && client_ports.contains(&port_of(fields[2])?);
            (ours && fields[3] == "01").then(|| fields[9].to_owned())
        })
        .collect()
}

/// The documented frame limit (64 MiB) with a budget that holds one such frame and its
/// response's room: an announced length is a promise of bytes, not bytes.
fn large_frame_config() -> ServerConfig {
    ServerConfig {
        max_frame: 64 << 20,
        memory_budget: 128 << 20,
        ..attack_config()
    }
}

/// Sends a call's number and a 64 MiB length, then the first 16 bytes of the frame.
fn announce_64_mib_send_16(raw: &mut Raw) {
    raw.send_u64(1);
    raw.send_u64(64 << 20);
    raw.send(&[0; 16]);
}

/// Opens `connections` new sessions, sends each what `stall` sends, and holds them all,
/// silent, until the attack is over.
fn stall_until_stopped(target: &Target, connections: usize, stall: impl Fn(&mut Raw)) {
    let mut held = Vec::new();
    for _ in 0..connections {
        let mut raw = target.raw().expect("connect");
        raw.handshake(0);
        stall(&mut raw);
        held.push(raw);
    }
    while !target.stopped() {
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn frames_announced_at_64_mib_hold_only_the_bytes_sent() {
    let figures = run(
        "8 x 64 MiB announced, 16 B sent",
        large_frame_config(),
        |target| stall_until_stopped(target, 8, announce_64_mib_send_16),
    );
    figures.assert_bystander_unharmed();
    figures.assert_calls_prompt();
    figures.assert_threads_return();
    // Eight stalled frames hold their 16 bytes (and at most one read step each); the
    // bystander's calls hold their response reserve.
    assert!(figures.peak_budget <= 8 << 20, "{figures:?}");
}

#[test]
fn new_connections_announcing_64_mib_frames_do_not_lock_out_probes() {
    // The documented budget: seven such frames fit in it if counted at their length.
    let config = ServerConfig {
        memory_budget: ServerConfig::default().memory_budget,
        ..large_frame_config()
    };
    let row = "partial 64 MiB frames (new connections)";
    let figures = run(row, config, |target| {
        keep_opening(target, 4, 20, |t| {
            let mut raw = t.raw()?;
            raw.try_handshake(0)?;
            announce_64_mib_send_16(&mut raw);
            Some(raw)
        });
    });
    figures.assert_bystander_unharmed();
    figures.assert_calls_prompt();
    figures.assert_threads_return();
    assert!(figures.peak_budget <= 16 << 20, "{figures:?}");
}

#[test]
fn frames_stalled_near_their_end_give_way_to_calls_that_fit() {
    // Twelve connections each send all but 16 bytes of a 1 MiB frame and stall:
    // together they would hold three times the 8 MiB budget.
    let row = "12 x 1 MiB frames stalled 16 B short";
    let figures = run(row, attack_config(), |target| {
        stall_until_stopped(target, 12, |raw| {
            raw.send_u64(1);
            raw.send_u64(1 << 20);
            raw.send(&vec![0; (1 << 20) - 16]);
        });
    });
    figures.assert_bystander_unharmed();
    figures.assert_calls_prompt();
    figures.assert_threads_return();
    assert!(figures.server.counters().frames_cut > 0, "{figures:?}");
}

#[test]
fn an_honest_crowd_that_fetched_1_mib_each_and_went_idle_does_not_lock_out_the_next() {
    // Enough sessions for the crowd: only memory is short, never a session slot.
    let config = ServerConfig {
        max_sessions: 1024,
        ..attack_config()
    };
    let row = "64 clients fetch 1 MiB, go idle";
    let figures = run(row, config, |target| {
        let fetched = std::sync::atomic::AtomicUsize::new(0);
        target.spread(8, |target, _| {
            while fetched.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 64 {
                let mut raw = target.raw().expect("connect");
                raw.handshake(0);
                raw.call(1, b"big");
                assert_eq!(raw.read_frame().map(|f| f.len()), Some(1 << 20));
                // Idle: the session keeps its response, without a connection.
            }
        });
        while !target.stopped() {
            thread::sleep(Duration::from_millis(10));
        }
    });
    figures.assert_bystander_unharmed();
    figures.assert_calls_prompt();
    figures.assert_threads_return();
}
