//! Async waits: hand-off between two tasks on a multi-threaded tokio runtime, against
//! the seed on tokio's `Mutex` + `Notify` and against `spawn_blocking` + `wait`; a
//! publish with 0, 1, 16 and 256 async waiters; and the notification mechanisms the
//! design chose between.
//!
//! 1. `async_handoff/{async,tokio_seed,spawn_blocking}`: the ping-pong of
//!    `benches/handoff.rs` (two sessions per direction, each side triaging a round
//!    ahead), played by two tokio tasks; one iteration is a round trip.
//! 2. `async_publish/W`: W tasks wait (registered) for request `m`; one iteration lasts
//!    from the publish until the last waiter has returned. `W = 0` is the publish
//!    alone, the cost a publisher pays when nobody waits.
//! 3. `mechanism/*`: one thread, notifying nobody, and listen + notify + drop once,
//!    with `event-listener` and with tokio's `Notify`, beside the bit test.
//! 4. `settled/*`: one iteration awaits a request that is settled already: one poll
//!    outside any runtime (`wait_async_polled_once`), and in a loop in a tokio task,
//!    with tokio's cooperative budget lifted (`wait_async_in_task_unconstrained`: the
//!    budget's bookkeeping alone) and in force (`wait_async_in_task`: the loop yields to
//!    the runtime once a budget is spent); beside `try_get`, the read without a future.
//! 5. `must_park/async`: one iteration is a wait that must register: on a
//!    current-thread runtime a waiter awaits request `m` while another task yields 16
//!    times and only then publishes it; the iteration lasts until the waiter has it.
//!
//! `cargo bench --features tokio --bench async`.

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

#[path = "peers/tokio_seed.rs"]
mod tokio_seed;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use exactly_once::{ProcessGuard, RequestNr, SessionState, Triage};
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio_seed::TokioSeed;

type Response = Arc<u64>;

fn nr(m: u64) -> RequestNr {
    RequestNr::new(m).expect("a valid request number")
}

/// A session as the ping-pong uses it: triage (a round ahead), publish, wait.
trait AsyncPeer: Default + Send + Sync + 'static {
    const ID: &'static str;
    type Guard<'a>: Send
    where
        Self: 'a;
    fn process(&self, m: u64) -> impl Future<Output = Self::Guard<'_>> + Send;
    fn complete<'a>(
        guard: Self::Guard<'a>,
        response: Response,
    ) -> impl Future<Output = ()> + Send + 'a
    where
        Self: 'a;
    fn wait_for(&self, m: u64) -> impl Future<Output = ()> + Send;
}

fn process(s: &SessionState<u64>, m: u64) -> ProcessGuard<'_, u64> {
    match s.triage(nr(m)) {
        Triage::Process(guard) => guard,
        other => panic!("triage({m}): {other:?}"),
    }
}

/// `SessionState`, awaited with `wait_async` (`BLOCKING = false`) or waited for with
/// `wait` on tokio's blocking pool (`BLOCKING = true`).
#[derive(Default)]
struct Lockfree<const BLOCKING: bool>(Arc<SessionState<u64>>);

type Awaited = Lockfree<false>;
type OnBlockingPool = Lockfree<true>;

impl<const BLOCKING: bool> AsyncPeer for Lockfree<BLOCKING> {
    const ID: &'static str = if BLOCKING { "spawn_blocking" } else { "async" };
    type Guard<'a> = ProcessGuard<'a, u64>;
    async fn process(&self, m: u64) -> ProcessGuard<'_, u64> {
        process(&self.0, m)
    }
    fn complete<'a>(
        guard: ProcessGuard<'a, u64>,
        response: Response,
    ) -> impl Future<Output = ()> + Send + 'a
    where
        Self: 'a,
    {
        guard.publish(response);
        std::future::ready(())
    }
    async fn wait_for(&self, m: u64) {
        if BLOCKING {
            let s = Arc::clone(&self.0);
            let waited = tokio::task::spawn_blocking(move || s.wait(nr(m)).is_ok());
            assert!(waited.await.expect("the blocking wait returns"));
        } else {
            black_box(self.0.wait_async(nr(m)).await.expect("a response"));
        }
    }
}

/// The seed on tokio's `Mutex` + `Notify`.
impl AsyncPeer for TokioSeed<u64> {
    const ID: &'static str = "tokio_seed";
    type Guard<'a> = &'a TokioSeed<u64>;
    async fn process(&self, m: u64) -> &TokioSeed<u64> {
        assert_eq!(self.triage_request(m).await, (true, true));
        self
    }
    fn complete<'a>(
        guard: &'a TokioSeed<u64>,
        response: Response,
    ) -> impl Future<Output = ()> + Send + 'a
    where
        Self: 'a,
    {
        guard.set_response(response)
    }
    async fn wait_for(&self, m: u64) {
        black_box(self.wait_get_response(m).await.expect("a response"));
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime")
}

fn round_trips<P: AsyncPeer>(rt: &Runtime, rounds: u64) -> Duration {
    let a_to_b: Arc<[P; 2]> = Arc::new(Default::default());
    let b_to_a: Arc<[P; 2]> = Arc::new(Default::default());
    let ready = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let echo = tokio::spawn(play(
            Arc::clone(&b_to_a),
            Arc::clone(&a_to_b),
            rounds,
            false,
            Arc::clone(&ready),
        ));
        let lead = tokio::spawn(play(a_to_b, b_to_a, rounds, true, ready));
        let elapsed = lead.await.expect("the leader finishes");
        echo.await.expect("the echo finishes");
        elapsed
    })
}

/// One side of the ping-pong (see `benches/handoff.rs`): publishes round `k` on
/// `own[k % 2]` and waits for round `k` on `other[k % 2]`.
async fn play<P: AsyncPeer>(
    own: Arc<[P; 2]>,
    other: Arc<[P; 2]>,
    rounds: u64,
    leads: bool,
    ready: Arc<AtomicUsize>,
) -> Duration {
    let response: Response = Arc::new(7);
    let mut triaged = [None, Some(own[1].process(1).await)];
    ready.fetch_add(1, Ordering::AcqRel);
    while ready.load(Ordering::Acquire) < 2 {
        tokio::task::yield_now().await;
    }
    let began = Instant::now();
    for k in 1..=rounds {
        let (this, next) = ((k % 2) as usize, ((k + 1) % 2) as usize);
        if !leads {
            other[this].wait_for(k).await;
        }
        triaged[next] = Some(own[next].process(k + 1).await);
        let processing = triaged[this].take().expect("triaged a round ahead");
        P::complete(processing, Arc::clone(&response)).await;
        if leads {
            other[this].wait_for(k).await;
        }
    }
    began.elapsed()
}

fn async_handoff(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("async_handoff");
    group.bench_function(Awaited::ID, |b| {
        b.iter_custom(|n| round_trips::<Awaited>(&rt, n))
    });
    group.bench_function(TokioSeed::<u64>::ID, |b| {
        b.iter_custom(|n| round_trips::<TokioSeed<u64>>(&rt, n))
    });
    group.bench_function(OnBlockingPool::ID, |b| {
        b.iter_custom(|n| round_trips::<OnBlockingPool>(&rt, n))
    });
    group.finish();
}

/// From the publish of request 1 until `waiters` registered tasks have its response.
fn publish_to(rt: &Runtime, waiters: usize) -> Duration {
    let s = Arc::new(SessionState::<u64>::new());
    let registered = Arc::new(AtomicUsize::new(0));
    let returned = Arc::new(AtomicU64::new(0));
    let guard = process(&s, 1);
    rt.block_on(async {
        let tasks: Vec<_> = (0..waiters)
            .map(|_| {
                let (s, registered, returned) = (
                    Arc::clone(&s),
                    Arc::clone(&registered),
                    Arc::clone(&returned),
                );
                tokio::spawn(async move {
                    let mut wait = s.wait_async(nr(1));
                    // Past the first few polls, which yield rather than register.
                    for _ in 0..16 {
                        assert!(futures_lite::future::poll_once(&mut wait).await.is_none());
                    }
                    registered.fetch_add(1, Ordering::AcqRel);
                    black_box(wait.await.expect("a response"));
                    returned.fetch_add(1, Ordering::AcqRel);
                })
            })
            .collect();
        while registered.load(Ordering::Acquire) < waiters {
            tokio::task::yield_now().await;
        }
        let began = Instant::now();
        guard.publish(7);
        for task in tasks {
            task.await.expect("the waiter returns");
        }
        began.elapsed()
    })
}

fn async_publish(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("async_publish");
    group.bench_function(BenchmarkId::from_parameter(0), |b| {
        let s = SessionState::<u64>::new();
        let response: Response = Arc::new(7);
        let mut m = 0;
        b.iter(|| {
            m += 1;
            process(&s, m).publish(Arc::clone(&response));
        })
    });
    for waiters in [1, 16, 256] {
        group.bench_function(BenchmarkId::from_parameter(waiters), |b| {
            b.iter_custom(|n| (0..n).map(|_| publish_to(&rt, waiters)).sum())
        });
    }
    group.finish();
}

fn mechanism(c: &mut Criterion) {
    let mut group = c.benchmark_group("mechanism");
    let word = AtomicU64::new(0);
    group.bench_function("nobody/bit_test", |b| {
        b.iter(|| black_box(word.load(Ordering::Acquire)) & (1 << 5) != 0)
    });
    let event = event_listener::Event::new();
    drop(event.listen());
    group.bench_function("nobody/event_listener", |b| {
        b.iter(|| event.notify(usize::MAX))
    });
    let notify = tokio::sync::Notify::new();
    group.bench_function("nobody/tokio_notify", |b| {
        b.iter(|| notify.notify_waiters())
    });
    group.bench_function("one/event_listener", |b| {
        b.iter(|| {
            let listener = event.listen();
            event.notify(usize::MAX);
            drop(listener)
        })
    });
    group.bench_function("one/tokio_notify", |b| {
        b.iter(|| {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            notify.notify_waiters();
        })
    });
    group.finish();
}

/// `n` awaits of a settled request in a loop, in one task on `rt`; `unconstrained`
/// lifts tokio's cooperative budget (the loop then never yields, but each poll still
/// looks the budget up).
fn settled_waits(
    rt: &Runtime,
    s: &Arc<SessionState<u64>>,
    n: u64,
    unconstrained: bool,
) -> Duration {
    let s = Arc::clone(s);
    let waits = async move {
        let began = Instant::now();
        for _ in 0..n {
            black_box(s.wait_async(nr(1)).await.expect("settled"));
        }
        began.elapsed()
    };
    let task = if unconstrained {
        rt.spawn(tokio::task::coop::unconstrained(waits))
    } else {
        rt.spawn(waits)
    };
    rt.block_on(task).expect("the loop finishes")
}

/// A waker for a poll that is ready at once (`Waker::noop` is newer than the MSRV).
struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

fn settled(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("settled");
    let s = Arc::new(SessionState::<u64>::new());
    process(&s, 1).publish(7);
    group.bench_function("try_get", |b| {
        b.iter(|| black_box(s.try_get(nr(1)).expect("settled")))
    });
    group.bench_function("wait_async_polled_once", |b| {
        let waker = Waker::from(Arc::new(NoWake));
        let mut cx = Context::from_waker(&waker);
        b.iter(|| {
            let mut wait = s.wait_async(nr(1));
            match Pin::new(&mut wait).poll(&mut cx) {
                Poll::Ready(outcome) => black_box(outcome.expect("settled")),
                Poll::Pending => panic!("a settled wait is ready at once"),
            }
        })
    });
    group.bench_function("wait_async_in_task_unconstrained", |b| {
        b.iter_custom(|n| settled_waits(&rt, &s, n, true))
    });
    group.bench_function("wait_async_in_task", |b| {
        b.iter_custom(|n| settled_waits(&rt, &s, n, false))
    });
    group.finish();
}

/// Yields of the publishing task before it publishes: more than a wait yields before it
/// registers, so that the wait must register and be woken.
const PUBLISHER_YIELDS: usize = 16;

fn must_park(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let mut group = c.benchmark_group("must_park");
    group.bench_function("async", |b| {
        b.iter_custom(|n| {
            rt.block_on(async {
                let s = Arc::new(SessionState::<u64>::new());
                let began = Instant::now();
                for m in 1..=n {
                    let guard = process(&s, m);
                    let waiter = tokio::spawn({
                        let s = Arc::clone(&s);
                        async move { black_box(s.wait_async(nr(m)).await.expect("a response")) }
                    });
                    for _ in 0..PUBLISHER_YIELDS {
                        tokio::task::yield_now().await;
                    }
                    guard.publish(7);
                    waiter.await.expect("the waiter returns");
                }
                began.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    async_handoff,
    async_publish,
    mechanism,
    settled,
    must_park
);
criterion_main!(benches);
