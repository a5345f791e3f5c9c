//! The crate's main job: many client sessions whose connections drop and are re-made,
//! served thread-per-connection from a [`SessionTable`], with processors that are
//! slow, panic, or die after completing. Every execution is counted; the run fails
//! (exit status 1) on any double execution, lost request, wrong response or hang.
//!
//! Each attempt to send a request is a new connection: a fresh thread that attaches to
//! the session by id, answers through [`answer::answer_blocking`] as the MCP server
//! does, and replies on a channel the client may already have given up on.
//!
//! ```text
//! cargo run --release --example dropped_connections -- --help
//! ```

use clap::Parser;
use exactly_once::answer::{self, Refusal, Reply};
use exactly_once::table::{Budget, SessionTable, TableConfig};
use exactly_once::RequestNr;
use std::panic::{self, AssertUnwindSafe};
use std::process::exit;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Dropped connections, panicking and slow processors; every request counted.
#[derive(Clone, Debug, Parser)]
#[command(version)]
struct Args {
    /// Client sessions, one client thread each.
    #[arg(long, default_value_t = 64)]
    sessions: usize,
    /// Requests per session.
    #[arg(long, default_value_t = 2_000)]
    requests: u64,
    /// Chance that a client drops a connection before its reply.
    #[arg(long, default_value_t = 0.2)]
    drop: f64,
    /// Chance that a processor panics before completing (the request is abandoned).
    #[arg(long, default_value_t = 0.005)]
    panic: f64,
    /// Chance that a processor dies after completing, before replying.
    #[arg(long, default_value_t = 0.005)]
    crash: f64,
    /// Chance that a processor takes a few milliseconds.
    #[arg(long, default_value_t = 0.02)]
    slow: f64,
    /// Seed of the random choices.
    #[arg(long, default_value_t = 0x0EC0_FFEE)]
    seed: u64,
    /// Seconds the whole run may take before it counts as a hang.
    #[arg(long, default_value_t = 120)]
    watchdog: u64,
}

/// A processor's planned death, raised with `resume_unwind` (no panic message).
struct PlannedDeath;

/// What each request did: executions, and whether it was abandoned.
struct Ledger {
    executions: Vec<AtomicU8>,
    abandoned: Vec<AtomicU8>,
}

/// The client's view of one attempt.
enum Outcome {
    Answered(u64),
    Abandoned,
    NoReply,
}

fn main() {
    let args = Args::parse();
    let valid = [args.drop, args.panic, args.crash, args.slow]
        .iter()
        .all(|p| (0.0..=1.0).contains(p));
    if !valid || args.requests > RequestNr::MAX || args.sessions == 0 {
        eprintln!(
            "probabilities must be in [0, 1], --requests at most {}",
            RequestNr::MAX
        );
        exit(2);
    }
    println!("{args:?}");
    let (ledgers, answered, elapsed) = run(&args);
    exit(report(&args, &ledgers, answered, elapsed));
}

/// Runs every client to its last request, or until the watchdog.
fn run(args: &Args) -> (Vec<Arc<Ledger>>, u64, Duration) {
    let table = SessionTable::<Vec<u8>>::new(
        TableConfig {
            max_sessions: args.sessions,
            ..TableConfig::default()
        },
        Budget::new(usize::MAX),
    );
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.watchdog);
    let answered = AtomicU64::new(0);
    let ledgers: Vec<Arc<Ledger>> = thread::scope(|s| {
        let clients: Vec<_> = (0..args.sessions as u64)
            .map(|c| {
                let (table, answered) = (&table, &answered);
                s.spawn(move || client(c, args, table, deadline, answered))
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().expect("client"))
            .collect()
    });
    (ledgers, answered.into_inner(), start.elapsed())
}

/// One client: sends `1..=requests`, re-sending each on a new connection until it is
/// answered or abandoned.
fn client(
    c: u64,
    args: &Args,
    table: &SessionTable<Vec<u8>>,
    deadline: Instant,
    answered: &AtomicU64,
) -> Arc<Ledger> {
    let mut rng = fastrand::Rng::with_seed(args.seed ^ c.wrapping_mul(0x9E37_79B9));
    let n = args.requests as usize + 1;
    let ledger = Arc::new(Ledger {
        executions: (0..n).map(|_| AtomicU8::new(0)).collect(),
        abandoned: (0..n).map(|_| AtomicU8::new(0)).collect(),
    });
    let id = table.create().expect("a place per client").id();
    for m in 1..=args.requests {
        while Instant::now() < deadline {
            match attempt(table, id, m, args, &mut rng, &ledger) {
                Outcome::Answered(for_m) => {
                    assert_eq!(for_m, m, "session {id:x} request {m} got another's answer");
                    answered.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Outcome::Abandoned => break,
                Outcome::NoReply => continue,
            }
        }
    }
    table.end(id);
    ledger
}

/// One connection for request `m`: a thread that attaches, triages and answers.
fn attempt(
    table: &SessionTable<Vec<u8>>,
    id: u64,
    m: u64,
    args: &Args,
    rng: &mut fastrand::Rng,
    ledger: &Arc<Ledger>,
) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let plan = Plan {
        panic: rng.f64() < args.panic,
        crash: rng.f64() < args.crash,
        slow: (rng.f64() < args.slow).then_some(Duration::from_micros(rng.u64(200..3000))),
    };
    let (table, ledger) = (table.clone(), Arc::clone(ledger));
    thread::spawn(move || {
        let served = panic::catch_unwind(AssertUnwindSafe(|| serve(&table, id, m, plan, &ledger)));
        if let Ok(Some(reply)) = served {
            let _ = tx.send(reply); // the client may have dropped the connection
        }
    });
    let wait = if rng.f64() < args.drop {
        Duration::from_micros(rng.u64(0..500))
    } else {
        Duration::from_secs(10)
    };
    match rx.recv_timeout(wait) {
        Ok(Reply::Send(response)) => Outcome::Answered(u64::from_le_bytes(
            response[..8].try_into().expect("8-byte answer"),
        )),
        Ok(Reply::Close(Refusal::Abandoned)) => Outcome::Abandoned,
        Ok(_) | Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => Outcome::NoReply,
    }
}

#[derive(Clone, Copy)]
struct Plan {
    panic: bool,
    crash: bool,
    slow: Option<Duration>,
}

/// The server side of one connection.
fn serve(
    table: &SessionTable<Vec<u8>>,
    id: u64,
    m: u64,
    plan: Plan,
    ledger: &Ledger,
) -> Option<Reply<Vec<u8>>> {
    let session = table.attach(id).ok()?;
    let m_nr = RequestNr::new(m).expect("valid request numbers");
    let (_, reply) =
        answer::answer_blocking(session.state(), m_nr, Duration::from_secs(10), |guard| {
            ledger.executions[m as usize].fetch_add(1, Ordering::SeqCst);
            if let Some(slow) = plan.slow {
                thread::sleep(slow);
            }
            if plan.panic {
                ledger.abandoned[m as usize].store(1, Ordering::SeqCst);
                panic::resume_unwind(Box::new(PlannedDeath));
            }
            let response = guard.complete(m.to_le_bytes().to_vec());
            session.retain(&response);
            if plan.crash {
                panic::resume_unwind(Box::new(PlannedDeath));
            }
            response
        });
    Some(reply)
}

/// Prints the tallies; the exit status.
fn report(args: &Args, ledgers: &[Arc<Ledger>], answered: u64, elapsed: Duration) -> i32 {
    let (mut duplicates, mut lost, mut abandoned) = (0u64, 0u64, 0u64);
    for ledger in ledgers {
        for m in 1..=args.requests as usize {
            let runs = ledger.executions[m].load(Ordering::SeqCst);
            duplicates += u64::from(runs.saturating_sub(1));
            lost += u64::from(runs == 0);
            abandoned += u64::from(ledger.abandoned[m].load(Ordering::SeqCst));
        }
    }
    let total = args.sessions as u64 * args.requests;
    println!(
        "{total} requests in {elapsed:.2?}: {answered} answered, {abandoned} abandoned, \
         {duplicates} executed twice, {lost} never executed"
    );
    if duplicates > 0 || lost > 0 || answered + abandoned != total {
        eprintln!("FAILED: a request was duplicated, lost, or left unanswered");
        return 1;
    }
    println!("every request executed exactly once and its outcome delivered");
    0
}
