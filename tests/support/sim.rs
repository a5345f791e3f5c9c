//! A simulation of many client sessions whose connections drop and are re-made.
//!
//! Included by `tests/stress.rs` as a module, so it knows only `exactly_once` and std.
//! (`examples/dropped_connections.rs` runs the same kind of load through the library's
//! session table, without this harness.)
//!
//! Each session has one client thread that sends requests `1..=N` in order. Every
//! attempt to send request `m` is a new simulated connection: a freshly spawned handler
//! thread (thread per connection, as in the real server) and a channel back to the
//! client. The handler triages `m` and acts as a server would: it processes, resends,
//! or drops the request. Faults are injected on both sides:
//!
//! - the client drops a connection, before or after the handler has answered (the
//!   handler's send then fails, like a TCP send on a dead socket), or gives up on a
//!   reply after a short timeout, and sends the same `m` on a new connection;
//! - a request frame arrives late on an old connection (the handler sleeps before it
//!   triages), so that it meets a session that has moved on;
//! - a processor is slow, panics before completing (its guard abandons the request), or
//!   dies after completing but before sending (the response must still be resent).
//!
//! Every execution is counted in a per-request atomic, so a second execution is always
//! seen, and every response encodes its (session, request) so a wrong one is seen. The
//! run has a watchdog: a run that hangs reports failure instead of hanging.
//!
//! The simulation is generic over the response slot `S`, i.e. over the session type
//! `SessionState<Payload, S>`: [`SlotKind`] names the two slots of the crate.

#![allow(dead_code)]

use exactly_once::answer::{self, Refusal, Silence, Step};
use exactly_once::{ArcSwapSlot, CountedSlot, ProcessGuard, RequestNr, SessionState, Slot};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The response type of the simulated server: a frame that encodes (session, request).
pub type Payload = Vec<u8>;

/// Bytes of filler after the 16 bytes of (session, request), so a response is a frame
/// of realistic shape rather than a bare integer.
const FILLER: usize = 16;

/// Stack of a handler thread: they are many and shallow.
const HANDLER_STACK: usize = 256 * 1024;

/// At most this many problem descriptions are kept for the report.
const MAX_PROBLEMS: usize = 20;

/// The knobs of one run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Number of client sessions, one client thread each.
    pub sessions: usize,
    /// Requests each client sends, numbered `1..=requests_per_session`.
    pub requests_per_session: u64,
    /// Chance that the client drops a connection (before or after the handler answers).
    pub drop_probability: f64,
    /// Chance that a processor panics before completing (its request is abandoned).
    pub panic_probability: f64,
    /// Chance that a processor dies after completing, before sending its response.
    pub crash_after_complete_probability: f64,
    /// Chance that a processor takes `slow_time`.
    pub slow_probability: f64,
    /// Chance that a request frame arrives `late_time` late on its connection.
    pub late_probability: f64,
    /// Seed of every random choice (thread timing still varies from run to run).
    pub seed: u64,
    /// How long a slow processor takes (uniform in the range).
    pub slow_time: (Duration, Duration),
    /// How late a late frame arrives (uniform in the range).
    pub late_time: (Duration, Duration),
    /// How long a client waits for a reply before it gives the connection up.
    pub reply_timeout: (Duration, Duration),
    /// How long a client waits before it drops a connection it has chosen to drop.
    pub drop_delay: (Duration, Duration),
    /// The deadline of a resending handler's wait; reaching it is a failure.
    pub wait_deadline: Duration,
    /// The whole run must end within this; otherwise it reports a hang.
    pub watchdog: Duration,
    /// Attempts per request before the client counts it lost and moves on.
    pub max_attempts: u32,
    /// Chance that a handler told `Resend` behaves like a broken server: it executes
    /// the request again and answers with another request's response. Only for checking
    /// that the simulation catches duplicates and wrong responses; 0 otherwise.
    pub broken_server_probability: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sessions: 16,
            requests_per_session: 300,
            drop_probability: 0.2,
            panic_probability: 0.01,
            crash_after_complete_probability: 0.01,
            slow_probability: 0.05,
            late_probability: 0.05,
            seed: 0x5EED_0FE1_AC71,
            slow_time: (Duration::from_micros(200), Duration::from_millis(3)),
            late_time: (Duration::from_micros(500), Duration::from_millis(8)),
            reply_timeout: (Duration::from_millis(2), Duration::from_millis(20)),
            drop_delay: (Duration::ZERO, Duration::from_micros(500)),
            wait_deadline: Duration::from_secs(10),
            watchdog: Duration::from_secs(60),
            max_attempts: 1_000,
            broken_server_probability: 0.0,
        }
    }
}

impl Config {
    /// No faults at all: every request must be answered on its first connection.
    pub fn no_faults(sessions: usize, requests_per_session: u64) -> Self {
        Config {
            sessions,
            requests_per_session,
            drop_probability: 0.0,
            panic_probability: 0.0,
            crash_after_complete_probability: 0.0,
            slow_probability: 0.0,
            late_probability: 0.0,
            reply_timeout: (Duration::from_secs(10), Duration::from_secs(10)),
            ..Config::default()
        }
    }

    /// Total number of requests of the run.
    pub fn requests(&self) -> u64 {
        self.sessions as u64 * self.requests_per_session
    }
}

/// The two response slots of the crate, i.e. the two session types simulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    /// `SessionState<Payload>` (the default `CountedSlot`).
    Counted,
    /// `ArcSwapSessionState<Payload>`.
    ArcSwap,
}

impl SlotKind {
    /// Both kinds, in the order the example runs them.
    pub const ALL: [SlotKind; 2] = [SlotKind::Counted, SlotKind::ArcSwap];

    /// The session type's name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            SlotKind::Counted => "SessionState (CountedSlot)",
            SlotKind::ArcSwap => "ArcSwapSessionState (ArcSwapSlot)",
        }
    }

    /// Runs the simulation on this kind of session.
    pub fn run(self, config: &Config) -> Report {
        match self {
            SlotKind::Counted => run::<CountedSlot<Payload>>(self.name(), config),
            SlotKind::ArcSwap => run::<ArcSwapSlot<Payload>>(self.name(), config),
        }
    }
}

/// What a run did, counted from both the client and the handler side.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The session type simulated.
    pub session_type: &'static str,
    /// Client sessions.
    pub sessions: usize,
    /// Requests the clients meant to send (sessions × requests per session).
    pub requests: u64,
    /// Executions counted by the processors (panicked ones included).
    pub executions: u64,
    /// Requests executed more than once.
    pub duplicates: u64,
    /// Requests the client never got a verified response or abandoned outcome for.
    pub losses: u64,
    /// Responses (or abandoned outcomes) that do not belong to the request asked for.
    pub wrong_responses: u64,
    /// Requests the client got a verified response for.
    pub responses: u64,
    /// Requests the client got a verified "abandoned" outcome for.
    pub abandoned: u64,
    /// Connections made (one handler thread each).
    pub attempts: u64,
    /// Connections beyond the first for a request.
    pub reconnects: u64,
    /// Connections the client dropped on purpose.
    pub dropped: u64,
    /// Connections the client gave up on after its reply timeout.
    pub reply_timeouts: u64,
    /// Connections the handler closed without an answer (panic, crash, stale, gone).
    pub closed_without_answer: u64,
    /// Triages that said `Process`.
    pub processed: u64,
    /// `Process` triages that reported a gap (the client never skips: must be 0).
    pub gaps: u64,
    /// Triages that said `Resend`.
    pub resends: u64,
    /// Resends whose wait returned an outcome (response or abandoned) to send.
    pub resends_served: u64,
    /// Triages that said `Stale`.
    pub stale: u64,
    /// Triages that said `Busy` (a well-behaved client never causes one: must be 0).
    pub busy: u64,
    /// Resend waits that returned `Gone`.
    pub gone: u64,
    /// Resend waits that reached their deadline (a failure).
    pub wait_timeouts: u64,
    /// Processors that panicked on purpose before completing.
    pub panics: u64,
    /// Processors that died on purpose after completing, before sending.
    pub crashes_after_complete: u64,
    /// Handler sends that failed because the client had dropped the connection.
    pub sends_on_dead_connections: u64,
    /// Panics nobody planned (a bug in the simulation or the crate).
    pub unexpected_panics: u64,
    /// Sessions whose final state is not `Ready(N)` / `Abandoned(N)` with that outcome.
    pub final_state_errors: u64,
    /// Handler threads spawned.
    pub handler_threads: u64,
    /// Most handler threads alive at once.
    pub max_handlers_alive: usize,
    /// Threads (clients or handlers) still running when the run gave up waiting.
    pub hung_threads: u64,
    /// Whether the watchdog ended the run.
    pub watchdog_fired: bool,
    /// Wall time of the run.
    pub wall: Duration,
    /// The first few problems, described.
    pub problems: Vec<String>,
}

impl Report {
    /// Whether every request was executed exactly once and its outcome delivered, and
    /// nothing hung, timed out or broke the protocol.
    pub fn is_exactly_once(&self) -> bool {
        self.duplicates == 0
            && self.losses == 0
            && self.wrong_responses == 0
            && self.busy == 0
            && self.gaps == 0
            && self.wait_timeouts == 0
            && self.unexpected_panics == 0
            && self.final_state_errors == 0
            && self.hung_threads == 0
            && !self.watchdog_fired
            && self.executions == self.requests
            && self.responses + self.abandoned == self.requests
    }

    /// Requests settled (answered or abandoned) per second of wall time.
    pub fn calls_per_second(&self) -> f64 {
        (self.responses + self.abandoned) as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_exactly_once() {
            "exactly once: OK"
        } else {
            "exactly once: FAILED"
        };
        writeln!(f, "{}: {verdict}", self.session_type)?;
        writeln!(
            f,
            "  {} sessions, {} requests in {:.2} s ({:.0} calls/s, {:.0} connections/s)",
            self.sessions,
            self.requests,
            self.wall.as_secs_f64(),
            self.calls_per_second(),
            self.attempts as f64 / self.wall.as_secs_f64().max(1e-9),
        )?;
        writeln!(
            f,
            "  executions {}, duplicates {}, losses {}, wrong responses {}",
            self.executions, self.duplicates, self.losses, self.wrong_responses
        )?;
        writeln!(
            f,
            "  outcomes: {} responses, {} abandoned ({} panics before complete, {} crashes after)",
            self.responses, self.abandoned, self.panics, self.crashes_after_complete
        )?;
        writeln!(
            f,
            "  connections: {} made, {} reconnects; {} dropped by the client, {} reply timeouts, \
             {} closed without answer, {} sends on dead connections",
            self.attempts,
            self.reconnects,
            self.dropped,
            self.reply_timeouts,
            self.closed_without_answer,
            self.sends_on_dead_connections
        )?;
        writeln!(
            f,
            "  triage: {} process, {} resend ({} served), {} stale, {} gone, {} busy, {} gaps, \
             {} wait timeouts",
            self.processed,
            self.resends,
            self.resends_served,
            self.stale,
            self.gone,
            self.busy,
            self.gaps,
            self.wait_timeouts
        )?;
        write!(
            f,
            "  threads: {} handlers spawned, at most {} alive, {} hung; unexpected panics {}, \
             final state errors {}, watchdog {}",
            self.handler_threads,
            self.max_handlers_alive,
            self.hung_threads,
            self.unexpected_panics,
            self.final_state_errors,
            if self.watchdog_fired {
                "FIRED"
            } else {
                "quiet"
            }
        )?;
        for problem in &self.problems {
            write!(f, "\n  problem: {problem}")?;
        }
        Ok(())
    }
}

/// How long past the watchdog deadline a client may take to notice it.
const CLIENT_STOP_MARGIN: Duration = Duration::from_secs(5);

/// Runs the simulation with sessions of type `SessionState<Payload, S>`.
pub fn run<S: Slot<Payload> + 'static>(session_type: &'static str, config: &Config) -> Report {
    // The sessions' ground truth is built before the clock starts: under a sanitizer
    // on a loaded machine, allocating it can take longer than a short watchdog.
    let sessions: Vec<Arc<Session<S>>> = (0..config.sessions)
        .map(|_| Arc::new(Session::new(config.requests_per_session)))
        .collect();
    let start = Instant::now();
    let ctx = Arc::new(Context::new(config.clone(), start + config.watchdog));
    let clients: Vec<JoinHandle<Vec<JoinHandle<()>>>> = sessions
        .iter()
        .enumerate()
        .map(|(id, session)| {
            let (session, ctx) = (Arc::clone(session), Arc::clone(&ctx));
            thread::Builder::new()
                .name(format!("client-{id}"))
                .spawn(move || run_client(id as u64, &session, &ctx))
                .expect("spawn a client thread")
        })
        .collect();

    // Clients stop themselves at the watchdog deadline, at their next attempt; one still
    // running long past it is hung. The margin is wide because a client may not even
    // have been scheduled yet when a sanitizer build shares two cores with other tests.
    let (handlers, hung_clients) = join_by(clients, ctx.deadline + CLIENT_STOP_MARGIN);
    for _ in 0..hung_clients {
        ctx.problem("a client thread did not stop at the watchdog deadline".into());
    }
    // A handler that is not stuck ends within its wait deadline (plus a late frame).
    let grace = config.wait_deadline + config.late_time.1 + config.slow_time.1;
    let handlers: Vec<JoinHandle<()>> = handlers.into_iter().flatten().collect();
    let (_, hung_handlers) = join_by(handlers, Instant::now() + grace + Duration::from_secs(1));
    if hung_handlers > 0 {
        ctx.problem(format!(
            "{hung_handlers} handler threads still running after the grace time"
        ));
    }
    let wall = start.elapsed();
    let mut report = ctx.report(session_type, &sessions, hung_clients + hung_handlers);
    report.wall = wall;
    report
}

/// What a connection carries back to the client.
enum Reply {
    Response(Arc<Payload>),
    Abandoned,
}

/// What the client recorded for a request.
const OUTCOME_NONE: u8 = 0;
const OUTCOME_RESPONSE: u8 = 1;
const OUTCOME_ABANDONED: u8 = 2;

/// One session: the state under test and the ground truth kept beside it.
struct Session<S: Slot<Payload>> {
    state: SessionState<Payload, S>,
    /// Executions of each request (index `m`; index 0 unused).
    executions: Vec<AtomicU32>,
    /// Whether request `m`'s processor panicked before completing.
    panicked: Vec<AtomicBool>,
    /// What the client got for request `m`.
    outcomes: Vec<AtomicU8>,
}

impl<S: Slot<Payload>> Session<S> {
    fn new(requests: u64) -> Self {
        let slots = requests as usize + 1;
        Session {
            state: SessionState::new(),
            executions: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            panicked: (0..slots).map(|_| AtomicBool::new(false)).collect(),
            outcomes: (0..slots).map(|_| AtomicU8::new(OUTCOME_NONE)).collect(),
        }
    }
}

/// The counters of a run, bumped by clients and handlers alike.
#[derive(Default)]
struct Counters {
    attempts: AtomicU64,
    reconnects: AtomicU64,
    dropped: AtomicU64,
    reply_timeouts: AtomicU64,
    closed_without_answer: AtomicU64,
    wrong_responses: AtomicU64,
    processed: AtomicU64,
    gaps: AtomicU64,
    resends: AtomicU64,
    resends_served: AtomicU64,
    stale: AtomicU64,
    busy: AtomicU64,
    gone: AtomicU64,
    wait_timeouts: AtomicU64,
    panics: AtomicU64,
    crashes_after_complete: AtomicU64,
    sends_on_dead_connections: AtomicU64,
    unexpected_panics: AtomicU64,
    handler_threads: AtomicU64,
    handlers_alive: AtomicUsize,
    max_handlers_alive: AtomicUsize,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Context {
    config: Config,
    deadline: Instant,
    watchdog_fired: AtomicBool,
    counters: Counters,
    problems: Mutex<Vec<String>>,
}

impl Context {
    fn new(config: Config, deadline: Instant) -> Self {
        Context {
            config,
            deadline,
            watchdog_fired: AtomicBool::new(false),
            counters: Counters::default(),
            problems: Mutex::new(Vec::new()),
        }
    }

    fn problem(&self, what: String) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if problems.len() < MAX_PROBLEMS {
            problems.push(what);
        }
    }

    fn report<S: Slot<Payload>>(
        &self,
        session_type: &'static str,
        sessions: &[Arc<Session<S>>],
        hung_threads: u64,
    ) -> Report {
        let c = &self.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut report = Report {
            session_type,
            sessions: sessions.len(),
            requests: self.config.requests(),
            wrong_responses: get(&c.wrong_responses),
            attempts: get(&c.attempts),
            reconnects: get(&c.reconnects),
            dropped: get(&c.dropped),
            reply_timeouts: get(&c.reply_timeouts),
            closed_without_answer: get(&c.closed_without_answer),
            processed: get(&c.processed),
            gaps: get(&c.gaps),
            resends: get(&c.resends),
            resends_served: get(&c.resends_served),
            stale: get(&c.stale),
            busy: get(&c.busy),
            gone: get(&c.gone),
            wait_timeouts: get(&c.wait_timeouts),
            panics: get(&c.panics),
            crashes_after_complete: get(&c.crashes_after_complete),
            sends_on_dead_connections: get(&c.sends_on_dead_connections),
            unexpected_panics: get(&c.unexpected_panics),
            handler_threads: get(&c.handler_threads),
            max_handlers_alive: c.max_handlers_alive.load(Ordering::Relaxed),
            hung_threads,
            watchdog_fired: self.watchdog_fired.load(Ordering::Relaxed),
            ..Report::default()
        };
        for (id, session) in sessions.iter().enumerate() {
            self.tally_session(id as u64, session, &mut report);
        }
        report.problems =
            std::mem::take(&mut *self.problems.lock().unwrap_or_else(|e| e.into_inner()));
        report
    }

    /// Adds one session's ground truth to the report and checks its final state.
    fn tally_session<S: Slot<Payload>>(&self, id: u64, session: &Session<S>, report: &mut Report) {
        let n = self.config.requests_per_session;
        let (mut first_loss, mut lost) = (None, 0);
        for m in 1..=n {
            let executions = session.executions[m as usize].load(Ordering::Acquire);
            report.executions += u64::from(executions);
            if executions > 1 {
                report.duplicates += 1;
                self.problem(format!(
                    "session {id} request {m} executed {executions} times"
                ));
            }
            match session.outcomes[m as usize].load(Ordering::Acquire) {
                OUTCOME_RESPONSE => report.responses += 1,
                OUTCOME_ABANDONED => report.abandoned += 1,
                _ => {
                    lost += 1;
                    first_loss.get_or_insert((m, executions));
                }
            }
        }
        if let Some((m, executions)) = first_loss {
            self.problem(format!(
                "session {id}: no outcome for request {m} (executed {executions} times) \
                 and {} later ones",
                lost - 1
            ));
        }
        report.losses += lost;
        if n > 0 && !report.watchdog_fired && !final_state_is_right(id, n, session) {
            report.final_state_errors += 1;
            self.problem(format!(
                "session {id}: final state {:?} does not hold the outcome of request {n}",
                session.state
            ));
        }
    }
}

/// The session ends in `Ready(n)` holding the client's outcome of `n`.
fn final_state_is_right<S: Slot<Payload>>(id: u64, n: u64, session: &Session<S>) -> bool {
    let status = session.state.status();
    let Ok(last) = RequestNr::new(n) else {
        return false;
    };
    let held = session.state.try_get(last);
    let outcome = session.outcomes[n as usize].load(Ordering::Acquire);
    status.request == n
        && match outcome {
            OUTCOME_RESPONSE => held.is_ok_and(|r| decode(&r) == Some((id, n))),
            OUTCOME_ABANDONED => held == Err(exactly_once::TryGetError::Abandoned),
            _ => false,
        }
}

/// What one connection's handler will do if it gets to process (chosen by the client,
/// so that a seed fixes every choice).
#[derive(Clone, Copy, Debug)]
struct Plan {
    late: Option<Duration>,
    slow: Option<Duration>,
    panic_before_complete: bool,
    crash_after_complete: bool,
    broken: bool,
}

/// How the client treats one connection.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// Drop it after this delay, reply or not.
    Drop(Duration),
    /// Wait this long for a reply.
    Wait(Duration),
}

fn pick(rng: &mut fastrand::Rng, (low, high): (Duration, Duration)) -> Duration {
    let (low, high) = (low.as_nanos() as u64, high.as_nanos() as u64);
    Duration::from_nanos(if high > low { rng.u64(low..=high) } else { low })
}

fn chance(rng: &mut fastrand::Rng, p: f64) -> bool {
    p > 0.0 && rng.f64() < p
}

fn plan(rng: &mut fastrand::Rng, config: &Config) -> (Plan, Fate) {
    let plan = Plan {
        late: chance(rng, config.late_probability).then(|| pick(rng, config.late_time)),
        slow: chance(rng, config.slow_probability).then(|| pick(rng, config.slow_time)),
        panic_before_complete: chance(rng, config.panic_probability),
        crash_after_complete: chance(rng, config.crash_after_complete_probability),
        broken: chance(rng, config.broken_server_probability),
    };
    let fate = if chance(rng, config.drop_probability) {
        // Half the drops happen at once (before any answer), half a little later.
        let delay = if rng.bool() {
            Duration::ZERO
        } else {
            pick(rng, config.drop_delay)
        };
        Fate::Drop(delay)
    } else {
        Fate::Wait(pick(rng, config.reply_timeout))
    };
    (plan, fate)
}

/// One client: sends `1..=N` in order, each until it gets a verified outcome. Returns
/// the handler threads still running.
fn run_client<S: Slot<Payload> + 'static>(
    id: u64,
    session: &Arc<Session<S>>,
    ctx: &Arc<Context>,
) -> Vec<JoinHandle<()>> {
    let mut rng =
        fastrand::Rng::with_seed(ctx.config.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut handlers = Vec::new();
    for m in 1..=ctx.config.requests_per_session {
        if !send_until_settled(id, m, session, ctx, &mut rng, &mut handlers) {
            break;
        }
        reap(&mut handlers, &ctx.counters);
    }
    handlers
}

/// Sends request `m` on new connections until the client has its outcome. Returns
/// `false` if the watchdog fired.
fn send_until_settled<S: Slot<Payload> + 'static>(
    id: u64,
    m: u64,
    session: &Arc<Session<S>>,
    ctx: &Arc<Context>,
    rng: &mut fastrand::Rng,
    handlers: &mut Vec<JoinHandle<()>>,
) -> bool {
    let c = &ctx.counters;
    for attempt in 1..=ctx.config.max_attempts {
        if Instant::now() >= ctx.deadline {
            ctx.watchdog_fired.store(true, Ordering::Relaxed);
            ctx.problem(format!(
                "watchdog: session {id} at request {m}, attempt {attempt}, state {:?}",
                session.state
            ));
            return false;
        }
        bump(&c.attempts);
        if attempt > 1 {
            bump(&c.reconnects);
        }
        let (plan, fate) = plan(rng, &ctx.config);
        let (tx, rx) = mpsc::channel();
        handlers.push(spawn_handler(id, m, plan, tx, session, ctx));
        if let Some(reply) = await_reply(rx, fate, ctx) {
            if record(id, m, &reply, session, ctx) {
                return true;
            }
        }
    }
    ctx.problem(format!(
        "session {id} request {m}: no outcome after {} attempts, state {:?}",
        ctx.config.max_attempts, session.state
    ));
    true
}

/// What the client got on one connection, if anything.
fn await_reply(rx: Receiver<Reply>, fate: Fate, ctx: &Context) -> Option<Reply> {
    let c = &ctx.counters;
    match fate {
        Fate::Drop(delay) => {
            if !delay.is_zero() {
                thread::sleep(delay);
            }
            // A reply already in the channel is lost with the connection.
            drop(rx);
            bump(&c.dropped);
            None
        }
        Fate::Wait(timeout) => {
            let timeout = timeout.min(ctx.deadline.saturating_duration_since(Instant::now()));
            match rx.recv_timeout(timeout) {
                Ok(reply) => Some(reply),
                Err(RecvTimeoutError::Timeout) => {
                    bump(&c.reply_timeouts);
                    None
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bump(&c.closed_without_answer);
                    None
                }
            }
        }
    }
}

/// Verifies and records the outcome of `m`. Returns `false` for a reply that is not an
/// outcome of `m` (counted wrong; the client asks again).
fn record<S: Slot<Payload>>(
    id: u64,
    m: u64,
    reply: &Reply,
    session: &Session<S>,
    ctx: &Context,
) -> bool {
    let panicked = session.panicked[m as usize].load(Ordering::Acquire);
    let (outcome, right) = match reply {
        Reply::Response(r) => (OUTCOME_RESPONSE, decode(r) == Some((id, m)) && !panicked),
        Reply::Abandoned => (OUTCOME_ABANDONED, panicked),
    };
    if !right {
        bump(&ctx.counters.wrong_responses);
        let got = match reply {
            Reply::Response(r) => format!("response {:?}", decode(r)),
            Reply::Abandoned => "abandoned".to_string(),
        };
        ctx.problem(format!(
            "session {id} request {m}: got {got} (its processor panicked: {panicked})"
        ));
        return false;
    }
    session.outcomes[m as usize].store(outcome, Ordering::Release);
    true
}

/// Joins the handlers that have finished; keeps the rest.
fn reap(handlers: &mut Vec<JoinHandle<()>>, counters: &Counters) {
    let mut i = 0;
    while i < handlers.len() {
        if handlers[i].is_finished() {
            if handlers.swap_remove(i).join().is_err() {
                bump(&counters.unexpected_panics);
            }
        } else {
            i += 1;
        }
    }
}

/// Joins every thread that finishes before `deadline`; returns their results and how
/// many were still running (those are left detached).
fn join_by<T>(mut threads: Vec<JoinHandle<T>>, deadline: Instant) -> (Vec<T>, u64) {
    let mut results = Vec::with_capacity(threads.len());
    loop {
        let mut i = 0;
        while i < threads.len() {
            if threads[i].is_finished() {
                if let Ok(result) = threads.swap_remove(i).join() {
                    results.push(result);
                }
            } else {
                i += 1;
            }
        }
        if threads.is_empty() || Instant::now() >= deadline {
            return (results, threads.len() as u64);
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// A planned panic's payload; raised with `resume_unwind`, which unwinds exactly like
/// `panic!` but skips the panic hook, so the test output stays clean.
struct SimulatedPanic;

/// A new connection for request `m`: a handler thread that reads and serves it.
fn spawn_handler<S: Slot<Payload> + 'static>(
    id: u64,
    m: u64,
    plan: Plan,
    tx: Sender<Reply>,
    session: &Arc<Session<S>>,
    ctx: &Arc<Context>,
) -> JoinHandle<()> {
    let c = &ctx.counters;
    bump(&c.handler_threads);
    let alive = c.handlers_alive.fetch_add(1, Ordering::Relaxed) + 1;
    c.max_handlers_alive.fetch_max(alive, Ordering::Relaxed);
    let (session, ctx) = (Arc::clone(session), Arc::clone(ctx));
    thread::Builder::new()
        .stack_size(HANDLER_STACK)
        .spawn(move || {
            let served = panic::catch_unwind(AssertUnwindSafe(|| {
                handle(id, m, plan, tx, &session, &ctx);
            }));
            if let Err(payload) = served {
                if !payload.is::<SimulatedPanic>() {
                    bump(&ctx.counters.unexpected_panics);
                    ctx.problem(format!(
                        "handler for session {id} request {m} panicked: {}",
                        panic_message(&*payload)
                    ));
                }
            }
            ctx.counters.handlers_alive.fetch_sub(1, Ordering::Relaxed);
        })
        .expect("spawn a handler thread")
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string payload)".to_string()
    }
}

/// The server side of one connection: the request frame of `m` has arrived. Dispatches
/// as the real server does, through `exactly_once::answer`.
fn handle<S: Slot<Payload>>(
    id: u64,
    m: u64,
    plan: Plan,
    tx: Sender<Reply>,
    session: &Session<S>,
    ctx: &Context,
) {
    if let Some(late) = plan.late {
        thread::sleep(late);
    }
    let request = RequestNr::new(m).expect("the simulation sends valid request numbers");
    let reply = match answer::first_step(session.state.triage(request)) {
        Step::Process(guard) => process(id, m, &plan, guard, session, ctx),
        Step::AwaitResend if plan.broken => resend_broken(id, m, session, ctx),
        Step::AwaitResend => await_resend(request, session, ctx),
        Step::Reply(reply) => reply,
    };
    deliver(id, m, reply, &tx, session, ctx);
}

/// Runs request `m` once: counts the execution, then is slow, panics, or completes
/// (and perhaps dies before sending), as the plan says.
fn process<S: Slot<Payload>>(
    id: u64,
    m: u64,
    plan: &Plan,
    guard: ProcessGuard<'_, Payload, S>,
    session: &Session<S>,
    ctx: &Context,
) -> answer::Reply<Payload> {
    let c = &ctx.counters;
    bump(&c.processed);
    if guard.skipped() > 0 {
        bump(&c.gaps);
        ctx.problem(format!(
            "session {id} request {m}: gap of {}",
            guard.skipped()
        ));
    }
    // ORDERING: the count is only summed after every thread is joined; AcqRel keeps a
    // second execution's increment from ever reading a stale 0.
    session.executions[m as usize].fetch_add(1, Ordering::AcqRel);
    if let Some(slow) = plan.slow {
        thread::sleep(slow);
    }
    if plan.panic_before_complete {
        // ORDERING: release, then the guard's abandon (an AcqRel swap) on the unwind:
        // whoever learns "abandoned" from the session sees this flag.
        session.panicked[m as usize].store(true, Ordering::Release);
        bump(&c.panics);
        panic::resume_unwind(Box::new(SimulatedPanic));
    }
    let response = guard.complete(encode(id, m));
    if plan.crash_after_complete {
        bump(&c.crashes_after_complete);
        panic::resume_unwind(Box::new(SimulatedPanic));
    }
    answer::Reply::Send(response)
}

/// Waits for the outcome of a request another connection processes.
fn await_resend<S: Slot<Payload>>(
    request: RequestNr,
    session: &Session<S>,
    ctx: &Context,
) -> answer::Reply<Payload> {
    bump(&ctx.counters.resends);
    let waited = session
        .state
        .wait_timeout(request, ctx.config.wait_deadline);
    let reply = answer::after_wait(waited);
    if matches!(
        reply,
        answer::Reply::Send(_) | answer::Reply::Close(Refusal::Abandoned)
    ) {
        bump(&ctx.counters.resends_served);
    }
    reply
}

/// A broken server: told to resend, it executes the request again and answers with
/// another request's response (to check that the simulation catches both).
fn resend_broken<S: Slot<Payload>>(
    id: u64,
    m: u64,
    session: &Session<S>,
    ctx: &Context,
) -> answer::Reply<Payload> {
    bump(&ctx.counters.resends);
    session.executions[m as usize].fetch_add(1, Ordering::AcqRel);
    answer::Reply::Send(Arc::new(encode(id, m + 1)))
}

/// Sends the reply to the client, or counts why there is none.
fn deliver<S: Slot<Payload>>(
    id: u64,
    m: u64,
    reply: answer::Reply<Payload>,
    tx: &Sender<Reply>,
    session: &Session<S>,
    ctx: &Context,
) {
    let c = &ctx.counters;
    match reply {
        answer::Reply::Send(response) => send(tx, Reply::Response(response), c),
        answer::Reply::Close(Refusal::Abandoned) => send(tx, Reply::Abandoned, c),
        answer::Reply::Nothing(Silence::Gone) => bump(&c.gone),
        answer::Reply::Nothing(Silence::Stale) => bump(&c.stale),
        answer::Reply::Close(Refusal::ResendTimedOut) => {
            bump(&c.wait_timeouts);
            ctx.problem(format!(
                "session {id} request {m}: resend wait timed out, state {:?}",
                session.state
            ));
        }
        answer::Reply::Close(Refusal::Busy { current }) => {
            bump(&c.busy);
            ctx.problem(format!("session {id} request {m}: busy with {current}"));
        }
    }
}

fn send(tx: &Sender<Reply>, reply: Reply, counters: &Counters) {
    if tx.send(reply).is_err() {
        bump(&counters.sends_on_dead_connections);
    }
}

/// The response of request `m` of session `id`.
pub fn encode(id: u64, m: u64) -> Payload {
    let mut frame = Vec::with_capacity(16 + FILLER);
    frame.extend_from_slice(&id.to_le_bytes());
    frame.extend_from_slice(&m.to_le_bytes());
    frame.extend(std::iter::repeat((id ^ m) as u8).take(FILLER));
    frame
}

/// The (session, request) a response belongs to, if it is well formed.
pub fn decode(frame: &[u8]) -> Option<(u64, u64)> {
    if frame.len() != 16 + FILLER {
        return None;
    }
    let id = u64::from_le_bytes(frame[..8].try_into().ok()?);
    let m = u64::from_le_bytes(frame[8..16].try_into().ok()?);
    frame[16..]
        .iter()
        .all(|&b| b == (id ^ m) as u8)
        .then_some((id, m))
}
