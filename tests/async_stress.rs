//! Stress under a multi-threaded tokio runtime: many sessions, every request sent on
//! several connections at once (tasks, and a blocking thread now and then), processors
//! that panic, owned guards whose runs are spawned (and some of them cancelled), waiters
//! cancelled at random and waiting again. Every request is counted: each is processed
//! exactly once, every copy gets its outcome, every task finishes.

#![cfg(feature = "tokio")]
#![allow(missing_docs)]

use exactly_once::{
    OwnedProcessGuard, OwnedTriage, RequestNr, SessionState, Triage, WaitTimeoutError,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Session = SessionState<u64>;

const SESSIONS: u64 = 48;
const REQUESTS: u64 = 300;
const COPIES: u64 = 3;
/// One processor in this many panics.
const PANIC_ONE_IN: u32 = 25;
/// One wait in this many is cancelled after a short while, then waits again.
const CANCEL_ONE_IN: u32 = 4;
const PLANTED: &str = "a planted processor panic";
const WATCHDOG: Duration = Duration::from_secs(60);
const GENEROUS: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Counts {
    processed: AtomicU64,
    panicked: AtomicU64,
    responses: AtomicU64,
    abandoned: AtomicU64,
    cancelled: AtomicU64,
    blocking: AtomicU64,
    /// Runs spawned with their owned guard and cancelled before they published.
    runs_cancelled: AtomicU64,
}

fn response(session: u64, m: u64) -> u64 {
    session << 32 | m
}

/// What one copy of request `m` saw: its outcome, as a value or `None` for abandoned.
/// Half the copies triage with a borrowed guard, half with an owned one.
async fn one_copy(
    id: u64,
    s: Arc<Session>,
    m: RequestNr,
    counts: Arc<Counts>,
    seed: u64,
) -> Option<u64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    if rng.bool() {
        return match s.triage_owned(m) {
            OwnedTriage::Process(guard) => process_owned(id, guard, &counts, &mut rng).await,
            OwnedTriage::Resend => resend(s, m, &counts, &mut rng).await,
            other => panic!("copy of request {m} of session {id}: {other:?}"),
        };
    }
    match s.triage(m) {
        Triage::Process(guard) => {
            counts.processed.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
            if rng.u32(..PANIC_ONE_IN) == 0 {
                counts.panicked.fetch_add(1, Ordering::Relaxed);
                let processor = AssertUnwindSafe(move || {
                    let _guard = guard;
                    panic!("{PLANTED}");
                });
                assert!(catch_unwind(processor).is_err());
                return None;
            }
            Some(*guard.complete(response(id, m.get())))
        }
        Triage::Resend => resend(Arc::clone(&s), m, &counts, &mut rng).await,
        other => panic!("copy of request {m} of session {id}: {other:?}"),
    }
}

/// The run of a request with an owned guard: spawned, then awaited by this copy as a
/// resend would be; one run in `PANIC_ONE_IN` panics, and one is cancelled while it
/// holds its guard.
async fn process_owned(
    id: u64,
    guard: OwnedProcessGuard<u64>,
    counts: &Counts,
    rng: &mut fastrand::Rng,
) -> Option<u64> {
    counts.processed.fetch_add(1, Ordering::Relaxed);
    let (s, m) = (Arc::clone(guard.session()), guard.request());
    let fate = rng.u32(..PANIC_ONE_IN);
    let run = tokio::spawn(async move {
        tokio::task::yield_now().await;
        match fate {
            0 => panic!("{PLANTED}"),
            1 => std::future::pending::<()>().await,
            _ => guard.publish(response(id, m.get())),
        }
    });
    match fate {
        0 => {
            counts.panicked.fetch_add(1, Ordering::Relaxed);
            assert!(run.await.unwrap_err().is_panic());
        }
        1 => {
            counts.runs_cancelled.fetch_add(1, Ordering::Relaxed);
            run.abort();
            assert!(run.await.unwrap_err().is_cancelled());
        }
        _ => {}
    }
    settled(s.wait_async_owned_timeout(m, GENEROUS).await)
}

/// A copy that found its request processed already: waits for its outcome, on the
/// blocking pool now and then, cancelled and waiting again at random.
async fn resend(
    s: Arc<Session>,
    m: RequestNr,
    counts: &Counts,
    rng: &mut fastrand::Rng,
) -> Option<u64> {
    if rng.u32(..8) == 0 {
        counts.blocking.fetch_add(1, Ordering::Relaxed);
        let waited = tokio::task::spawn_blocking(move || s.wait_timeout(m, GENEROUS));
        return settled(waited.await.expect("the blocking waiter returns"));
    }
    while rng.u32(..CANCEL_ONE_IN) == 0 {
        let short = Duration::from_micros(rng.u64(0..200));
        match tokio::time::timeout(short, s.wait_async(m)).await {
            Ok(outcome) => return settled(outcome.map_err(WaitTimeoutError::from)),
            Err(_) => counts.cancelled.fetch_add(1, Ordering::Relaxed),
        };
    }
    settled(s.wait_async_owned_timeout(m, GENEROUS).await)
}

fn settled(outcome: Result<Arc<u64>, WaitTimeoutError>) -> Option<u64> {
    match outcome {
        Ok(r) => Some(*r),
        Err(WaitTimeoutError::Abandoned) => None,
        Err(e) => panic!("a copy of the newest request must get its outcome, got {e}"),
    }
}

/// One client: each request sent on `COPIES` connections at once, the next only after
/// every copy has its outcome; they must all agree.
async fn client(id: u64, counts: Arc<Counts>) {
    let s = Arc::new(Session::new());
    for m in 1..=REQUESTS {
        let nr = RequestNr::new(m).unwrap();
        let copies: Vec<_> = (0..COPIES)
            .map(|c| {
                tokio::spawn(one_copy(
                    id,
                    Arc::clone(&s),
                    nr,
                    Arc::clone(&counts),
                    id * 1_000_003 + m * 7 + c,
                ))
            })
            .collect();
        let mut outcomes = Vec::new();
        for copy in copies {
            outcomes.push(copy.await.expect("no copy panics"));
        }
        let first = outcomes[0];
        assert!(
            outcomes.iter().all(|o| *o == first),
            "copies disagree on {m} of {id}: {outcomes:?}"
        );
        match first {
            Some(r) => {
                assert_eq!(r, response(id, m));
                counts.responses.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                counts.abandoned.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[test]
fn every_request_is_processed_once_and_every_copy_gets_its_outcome() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains(PLANTED) {
            default_hook(info);
        }
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let counts = Arc::new(Counts::default());
    runtime.block_on(async {
        let clients: Vec<_> = (0..SESSIONS)
            .map(|id| tokio::spawn(client(id, Arc::clone(&counts))))
            .collect();
        tokio::time::timeout(WATCHDOG, async {
            for c in clients {
                c.await.expect("no client fails");
            }
        })
        .await
        .expect("every task finishes");
    });
    let total = SESSIONS * REQUESTS;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "processed {} responses {} abandoned {} cancelled {} blocking {} runs cancelled {}",
        get(&counts.processed),
        get(&counts.responses),
        get(&counts.abandoned),
        get(&counts.cancelled),
        get(&counts.blocking),
        get(&counts.runs_cancelled)
    );
    assert_eq!(
        get(&counts.processed),
        total,
        "each request processed exactly once"
    );
    assert_eq!(get(&counts.responses) + get(&counts.abandoned), total);
    assert_eq!(
        get(&counts.abandoned),
        get(&counts.panicked) + get(&counts.runs_cancelled),
        "abandoned exactly when a processor panicked or its run was cancelled"
    );
    assert!(get(&counts.panicked) > 0 && get(&counts.runs_cancelled) > 0);
    assert!(get(&counts.cancelled) > 0 && get(&counts.blocking) > 0);
}
