//! Attacks run beside a well-behaved bystander: one connected client calling back to
//! back, and a probe that opens a new connection and a new session every 25 ms. A run
//! samples the server's budget, the process's threads and RSS, and checks afterwards
//! that every bystander call ran exactly once. Raw attack connections come from their
//! own address ([`ATTACKER`], 127.0.0.2), as a hostile client's would; the bystander
//! connects from 127.0.0.1.

use super::{connect_from, quick_client_config, Raw, ATTACKER};
use exactly_once::transport::{Client, Server, ServerConfig};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long an attack runs, and how long the bystander is watched after it.
pub const ATTACK: Duration = Duration::from_millis(1500);
pub const AFTER: Duration = Duration::from_millis(800);
const PROBE_EVERY: Duration = Duration::from_millis(25);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Limits small enough that an attack reaches them within a second.
pub fn attack_config() -> ServerConfig {
    ServerConfig {
        max_frame: 1 << 20,
        max_sessions: 64,
        max_connections: 32,
        idle_expiry: Duration::from_secs(5),
        unused_expiry: Duration::from_millis(300),
        handshake_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(500),
        message_timeout: Duration::from_millis(300),
        min_transfer_rate: 16 << 20,
        resend_timeout: Duration::from_secs(2),
        memory_budget: 8 << 20,
        response_reserve: 1 << 20,
        owner: 1,
    }
}

/// Bodies the handler has executed (bystander and probe calls only), and how often.
#[derive(Default)]
pub struct Ledger {
    runs: Mutex<HashMap<Vec<u8>, u64>>,
    executions: AtomicU64,
}

/// Echoes requests that start with `echo`, answers `big` with 1 MiB, and answers
/// everything else with its execution count; records bystander and probe bodies.
fn handler(ledger: Arc<Ledger>) -> impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static {
    move |request: &[u8]| {
        let n = ledger.executions.fetch_add(1, Ordering::SeqCst) + 1;
        if request.starts_with(b"by:") || request.starts_with(b"probe:") {
            *ledger
                .runs
                .lock()
                .unwrap()
                .entry(request.to_vec())
                .or_default() += 1;
        }
        if request.starts_with(b"echo") {
            request.to_vec()
        } else if request == b"big" {
            vec![7; 1 << 20]
        } else {
            n.to_le_bytes().to_vec()
        }
    }
}

/// What the attack's threads see.
pub struct Target {
    pub addr: SocketAddr,
    pub location: String,
    pub config: ServerConfig,
    stop: Arc<AtomicBool>,
}

impl Target {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Runs `attack` on `threads` threads until the attack ends.
    pub fn spread(&self, threads: usize, attack: impl Fn(&Target, usize) + Sync) {
        thread::scope(|s| {
            for t in 0..threads {
                let attack = &attack;
                s.spawn(move || attack(self, t));
            }
        });
    }

    /// A raw connection with short timeouts, from the attacker's address, if the
    /// server accepts one.
    pub fn raw(&self) -> Option<Raw> {
        let stream = connect_from(ATTACKER, self.addr, PROBE_TIMEOUT).ok()?;
        stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
        stream.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
        Some(Raw(stream))
    }
}

/// The figures of one attack.
#[derive(Debug)]
pub struct Figures {
    pub row: &'static str,
    pub probes_during: (usize, usize),
    pub probes_after: (usize, usize),
    /// When each failed probe began (since the attack began) and the step it failed at.
    pub probe_failures: Vec<(Duration, &'static str)>,
    pub calls_during: u64,
    pub calls_failed: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub peak_budget: usize,
    pub budget_limit: usize,
    pub max_connections: usize,
    pub rss_before_kib: u64,
    pub peak_rss_kib: u64,
    pub peak_threads: u64,
    /// The server's connection threads before its first connection, and once the
    /// attack and the bystander have ended (see [`Figures::assert_threads_return`]).
    pub threads_before: u64,
    pub threads_after: u64,
    /// The longest a bystander call took.
    pub slowest_call: Duration,
    pub server: Server,
}

impl Figures {
    /// One line for `scripts/attack` to collect.
    pub fn print(&self) {
        println!(
            "ATTACK|{}|{}/{}|{}/{}|{}|{:.1}|{}|+{}|{}|{}->{}|{}",
            self.row,
            self.probes_during.0,
            self.probes_during.1,
            self.probes_after.0,
            self.probes_after.1,
            self.calls_during,
            self.peak_budget as f64 / (1 << 20) as f64,
            self.peak_rss_kib / 1024,
            self.peak_rss_kib.saturating_sub(self.rss_before_kib) / 1024,
            self.peak_threads,
            self.threads_before,
            self.threads_after,
            self.slowest_call.as_millis(),
        );
    }

    /// The bystander's calls were answered promptly: none took a second or more.
    pub fn assert_calls_prompt(&self) {
        assert!(self.slowest_call < PROBE_TIMEOUT, "{self:?}");
    }

    /// The server is back to the threads it had before the attack: every connection
    /// thread the attack made it start has ended.
    pub fn assert_threads_return(&self) {
        assert!(self.threads_after <= self.threads_before, "{self:?}");
    }

    /// The bystander's guarantees: ≥ 95% of new connections and sessions succeed
    /// during and after, its calls keep going, nothing twice, nothing lost; and the
    /// server within its budget: the bytes it counts never above the limit, and the
    /// process's RSS (clients and server together) grown by little more than the limit.
    pub fn assert_bystander_unharmed(&self) {
        self.print();
        let rate = |(ok, total): (usize, usize)| ok as f64 / total.max(1) as f64;
        assert!(rate(self.probes_during) >= 0.95, "{self:?}");
        assert!(rate(self.probes_after) >= 0.95, "{self:?}");
        assert!(self.probes_during.1 >= 10, "too few probes: {self:?}");
        assert!(
            self.calls_during >= 10,
            "the bystander's calls stalled: {self:?}"
        );
        assert_eq!(self.calls_failed, 0, "{self:?}");
        assert_eq!((self.duplicates, self.lost), (0, 0), "{self:?}");
        assert!(self.peak_budget <= self.budget_limit, "{self:?}");
        let grown = self.peak_rss_kib.saturating_sub(self.rss_before_kib) << 10;
        // Unoptimised builds run the same attack with more threads at once, whose
        // allocator arenas keep what they freed: their RSS says little.
        assert!(
            cfg!(debug_assertions) || grown <= (self.budget_limit + RSS_SLACK) as u64,
            "RSS grew by {} MiB: {self:?}",
            grown >> 20
        );
    }
}

/// RSS the process may gain beyond the budget: the attack's and bystander's own
/// buffers (up to 8 clients with 1 MiB calls, each holding its request, its encoding
/// and its answer), thread stacks, read buffers, and what the allocator's per-thread
/// arenas keep of memory freed.
const RSS_SLACK: usize = 64 << 20;

/// Runs `attack` for [`ATTACK`] against a server with `config`, beside a bystander
/// watched for [`AFTER`] more.
pub fn run(
    row: &'static str,
    config: ServerConfig,
    attack: impl FnOnce(&Target) + Send,
) -> Figures {
    let _serial = serial();
    let ledger = Arc::new(Ledger::default());
    let server = Server::bind("127.0.0.1:0", config.clone(), handler(Arc::clone(&ledger)))
        .expect("bind 127.0.0.1");
    let target = Target {
        addr: server.local_addr(),
        location: server.location(),
        config: config.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let (rss_before_kib, _) = process_status();
    let threads_before = connection_threads();
    let watch = Watch::start(&server);
    let caller = Caller::start(&target.location);
    let prober = Prober::start(target.addr);
    let start = Instant::now();
    let attack_ended = thread::scope(|s| {
        let attacker = s.spawn(|| attack(&target));
        thread::sleep(ATTACK);
        target.stop.store(true, Ordering::SeqCst);
        let ended = Instant::now();
        attacker.join().expect("the attack thread panicked");
        ended
    });
    let calls_during = caller.calls.load(Ordering::SeqCst);
    thread::sleep(AFTER);
    let probes = prober.finish();
    let (calls, calls_failed, slowest_call) = caller.finish();
    let (peak_budget, peak_rss_kib, peak_threads) = watch.finish();
    let threads_after = threads_settled(threads_before);
    let (duplicates, lost) = ledger.check(&calls, &probes);
    let phase = |during: bool| {
        let chosen: Vec<_> = probes
            .iter()
            .filter(|p| (p.at < attack_ended) == during && p.at >= start)
            .collect();
        (chosen.iter().filter(|p| p.ok()).count(), chosen.len())
    };
    Figures {
        row,
        probes_during: phase(true),
        probe_failures: probes
            .iter()
            .filter_map(|p| Some((p.at.saturating_duration_since(start), p.failed?)))
            .collect(),
        probes_after: phase(false),
        calls_during,
        calls_failed,
        duplicates,
        lost,
        peak_budget,
        budget_limit: config.memory_budget,
        max_connections: config.max_connections,
        rss_before_kib,
        peak_rss_kib,
        peak_threads,
        threads_before,
        threads_after,
        slowest_call,
        server,
    }
}

/// The server's connection threads once they are down to `before` or, failing that,
/// after 3 s.
fn threads_settled(before: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let threads = connection_threads();
        if threads <= before || Instant::now() >= deadline {
            return threads;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// One attack at a time: they measure the whole process.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ledger {
    /// (bodies run more than once, answered bodies never run).
    fn check(&self, calls: &[Vec<u8>], probes: &[Probe]) -> (u64, u64) {
        let runs = self.runs.lock().unwrap();
        let duplicates = runs.values().filter(|&&n| n > 1).count() as u64;
        let answered = calls
            .iter()
            .chain(probes.iter().filter(|p| p.ok()).map(|p| &p.body));
        let lost = answered.filter(|b| !runs.contains_key(*b)).count() as u64;
        (duplicates, lost)
    }
}

/// The connected bystander: calls back to back until told to stop.
struct Caller {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    thread: JoinHandle<(Vec<Vec<u8>>, u64, Duration)>,
}

impl Caller {
    fn start(location: &str) -> Caller {
        let mut client = Client::connect(location, quick_client_config()).expect("bystander");
        let (stop, calls) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (stopping, counting) = (Arc::clone(&stop), Arc::clone(&calls));
        let thread = thread::spawn(move || {
            let (mut answered, mut failed, mut slowest) = (Vec::new(), 0, Duration::ZERO);
            while !stopping.load(Ordering::SeqCst) {
                let body = format!("by:{}", answered.len()).into_bytes();
                let start = Instant::now();
                let called = client.call(&body);
                slowest = slowest.max(start.elapsed());
                match called {
                    Ok(_) => answered.push(body),
                    Err(e) => {
                        eprintln!("bystander call failed: {e}");
                        failed += 1
                    }
                }
                counting.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(2));
            }
            client.close();
            (answered, failed, slowest)
        });
        Caller {
            stop,
            calls,
            thread,
        }
    }

    fn finish(self) -> (Vec<Vec<u8>>, u64, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the bystander's caller panicked")
    }
}

struct Probe {
    at: Instant,
    /// The step at which a failed probe failed.
    failed: Option<&'static str>,
    body: Vec<u8>,
}

impl Probe {
    fn ok(&self) -> bool {
        self.failed.is_none()
    }
}

/// The probing bystander: a new connection and a new session every [`PROBE_EVERY`].
struct Prober {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Probe>>,
}

impl Prober {
    fn start(addr: SocketAddr) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut probes = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                let at = Instant::now();
                let body = format!("probe:{}", probes.len()).into_bytes();
                let failed = probe(addr, &body).err();
                probes.push(Probe { at, failed, body });
                thread::sleep(PROBE_EVERY.saturating_sub(at.elapsed()));
            }
            probes
        });
        Prober { stop, thread }
    }

    fn finish(self) -> Vec<Probe> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the prober panicked")
    }
}

/// Connect, create a session, make one call, end the session, each within a second;
/// on failure, the step that failed.
fn probe(addr: SocketAddr, body: &[u8]) -> Result<(), &'static str> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|_| "connect")?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(|_| "connect")?;
    stream
        .write_all(&0u64.to_le_bytes())
        .map_err(|_| "send the handshake")?;
    let mut id = [0u8; 8];
    stream
        .read_exact(&mut id)
        .map_err(|_| "read the session id")?;
    let mut call = 1u64.to_le_bytes().to_vec();
    call.extend_from_slice(&(body.len() as u64).to_le_bytes());
    call.extend_from_slice(body);
    stream.write_all(&call).map_err(|_| "send the call")?;
    let mut answer = [0u8; 16];
    stream
        .read_exact(&mut answer)
        .map_err(|_| "read the answer")?;
    stream
        .write_all(&0u64.to_le_bytes())
        .map_err(|_| "end the session")
}

/// Samples the server's budget and the process's RSS and threads every 10 ms.
struct Watch {
    stop: Arc<AtomicBool>,
    peaks: Arc<[AtomicUsize; 3]>,
    thread: JoinHandle<()>,
}

impl Watch {
    fn start(server: &Server) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let budget = Arc::clone(server.budget());
        let (stopping, sampled) = (Arc::clone(&stop), Arc::clone(&peaks));
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let (rss, threads) = process_status();
                for (peak, now) in
                    sampled
                        .iter()
                        .zip([budget.used(), rss as usize, threads as usize])
                {
                    peak.fetch_max(now, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        Watch {
            stop,
            peaks,
            thread,
        }
    }

    fn finish(self) -> (usize, u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the watch panicked");
        let get = |i: usize| self.peaks[i].load(Ordering::SeqCst);
        (get(0), get(1) as u64, get(2) as u64)
    }
}

/// Threads of this process named as the server names its connection threads (other
/// tests of the file run beside an attack, but start no server while it runs).
fn connection_threads() -> u64 {
    let tasks = std::fs::read_dir("/proc/self/task").expect("Linux's /proc");
    let named = |task: &std::fs::DirEntry| {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        comm.trim_end() == "mcp-connection"
    };
    tasks.flatten().filter(named).count() as u64
}

/// (VmRSS in KiB, threads) of this process.
pub fn process_status() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}
