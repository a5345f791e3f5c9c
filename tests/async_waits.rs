//! `wait_async` and its deadline and owned forms as a specification: the outcomes of
//! `wait` (response, abandoned, gone, timed out), on three executors, blocking and async
//! waiters side by side, cancellation, and the futures' auto traits.
//!
//! No test can hang the suite: every wait that is expected to return is raced against
//! a generous timer, and every thread is joined.

#![cfg(feature = "async")]
#![allow(missing_docs)]

use exactly_once::{
    ArcSwapSessionState, OwnedWaitFuture, ProcessGuard, RequestNr, SessionState, Slot, Triage,
    WaitError, WaitFuture, WaitTimeoutError,
};
use futures_lite::future::{block_on, poll_once};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

type Response = Vec<u8>;
type Session = SessionState<Response>;

/// The bound on every wait that is expected to return: far above any real latency.
const GENEROUS: Duration = Duration::from_secs(10);
/// How long a waiter must stay pending to count as waiting.
const STILL_WAITING: Duration = Duration::from_millis(50);

fn nr(n: u64) -> RequestNr {
    RequestNr::new(n).expect("a valid request number")
}

fn response(m: u64) -> Response {
    format!("response to {m}").into_bytes()
}

fn process<S: Slot<Response>>(
    s: &SessionState<Response, S>,
    m: u64,
) -> ProcessGuard<'_, Response, S> {
    match s.triage(nr(m)) {
        Triage::Process(guard) => guard,
        other => panic!("triage({m}) on {s:?}: expected Process, got {other:?}"),
    }
}

/// A timer on a thread of its own, so that the runtime-agnostic forms are tested on
/// executors without a timer.
struct ThreadTimer {
    shared: Arc<Mutex<(bool, Option<Waker>)>>,
}

fn thread_timer(after: Duration) -> ThreadTimer {
    let shared = Arc::new(Mutex::new((false, None::<Waker>)));
    let fired = Arc::clone(&shared);
    thread::spawn(move || {
        thread::sleep(after);
        let mut state = fired.lock().unwrap();
        state.0 = true;
        if let Some(waker) = state.1.take() {
            waker.wake();
        }
    });
    ThreadTimer { shared }
}

impl Future for ThreadTimer {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.shared.lock().unwrap();
        if state.0 {
            return Poll::Ready(());
        }
        state.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

type Waited = Result<Arc<Response>, WaitTimeoutError>;
type Executor = fn(Pin<&mut dyn Future<Output = Waited>>) -> Waited;

/// `wait_async(m)` on the calling thread with `executor`, bounded by `GENEROUS`.
fn wait_bounded<S: Slot<Response>>(
    s: &SessionState<Response, S>,
    m: u64,
    executor: Executor,
) -> Waited {
    executor(std::pin::pin!(
        s.wait_async_with_timer(nr(m), thread_timer(GENEROUS))
    ))
}

fn on_futures_lite(f: Pin<&mut dyn Future<Output = Waited>>) -> Waited {
    block_on(f)
}

fn on_futures_executor(f: Pin<&mut dyn Future<Output = Waited>>) -> Waited {
    futures_executor::block_on(f)
}

fn on_tokio(f: Pin<&mut dyn Future<Output = Waited>>) -> Waited {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

const EXECUTORS: [(&str, Executor); 3] = [
    ("futures-lite", on_futures_lite),
    ("futures-executor", on_futures_executor),
    ("tokio", on_tokio),
];

/// Settles request `m` of `s` from another thread once a waiter has had time to register.
fn settle_later<'s>(
    scope: &'s thread::Scope<'s, '_>,
    guard: ProcessGuard<'s, Response, impl Slot<Response>>,
    complete: bool,
) {
    scope.spawn(move || {
        thread::sleep(STILL_WAITING);
        if complete {
            let m = guard.request().get();
            guard.publish(response(m));
        } else {
            guard.abandon();
        }
    });
}

#[test]
fn an_async_waiter_gets_the_response_published_while_it_waits_on_every_executor() {
    for (name, executor) in EXECUTORS {
        let s = Session::new();
        thread::scope(|scope| {
            settle_later(scope, process(&s, 1), true);
            assert_eq!(
                wait_bounded(&s, 1, executor).as_deref(),
                Ok(&response(1)),
                "{name}"
            );
        });
    }
}

#[test]
fn an_async_waiter_gets_abandoned_when_the_processor_drops_out_on_every_executor() {
    for (name, executor) in EXECUTORS {
        let s = Session::new();
        thread::scope(|scope| {
            settle_later(scope, process(&s, 1), false);
            assert_eq!(
                wait_bounded(&s, 1, executor),
                Err(WaitTimeoutError::Abandoned),
                "{name}"
            );
        });
    }
}

#[test]
fn an_async_waiter_gets_gone_when_the_session_has_moved_past_its_request() {
    let s = Session::new();
    process(&s, 1).publish(response(1));
    let guard = process(&s, 2);
    assert_eq!(
        wait_bounded(&s, 1, on_futures_lite),
        Err(WaitTimeoutError::Gone)
    );
    drop(guard);
}

#[test]
fn a_waiter_for_an_old_request_is_woken_by_the_triage_of_a_newer_one() {
    let s = Session::new();
    let first = process(&s, 1);
    thread::scope(|scope| {
        let waiter = scope.spawn(|| wait_bounded(&s, 1, on_futures_lite));
        thread::sleep(STILL_WAITING);
        first.publish(response(1));
        assert_eq!(waiter.join().unwrap().as_deref(), Ok(&response(1)));
    });
    // Waiting for 2 while 1 is Ready, then 3 is triaged (a gap): 2 is gone.
    thread::scope(|scope| {
        let waiter = scope.spawn(|| wait_bounded(&s, 2, on_futures_lite));
        thread::sleep(STILL_WAITING);
        let guard = process(&s, 3);
        assert_eq!(waiter.join().unwrap(), Err(WaitTimeoutError::Gone));
        drop(guard);
    });
}

#[test]
fn waiting_for_a_request_not_yet_triaged_waits_for_its_triage_and_its_outcome() {
    let s = Session::new();
    thread::scope(|scope| {
        let waiter = scope.spawn(|| wait_bounded(&s, 1, on_futures_executor));
        thread::sleep(STILL_WAITING);
        let guard = process(&s, 1);
        thread::sleep(STILL_WAITING);
        guard.publish(response(1));
        assert_eq!(waiter.join().unwrap().as_deref(), Ok(&response(1)));
    });
}

#[test]
fn a_settled_outcome_is_returned_at_the_first_poll() {
    let s = Session::new();
    process(&s, 1).publish(response(1));
    assert_eq!(
        block_on(poll_once(s.wait_async(nr(1)))).unwrap().as_deref(),
        Ok(&response(1))
    );
    process(&s, 2).abandon();
    assert_eq!(
        block_on(poll_once(s.wait_async(nr(2)))),
        Some(Err(WaitError::Abandoned))
    );
    assert_eq!(
        block_on(poll_once(s.wait_async(nr(1)))),
        Some(Err(WaitError::Gone))
    );
}

#[test]
fn a_pending_wait_stays_pending() {
    let s = Session::new();
    let guard = process(&s, 1);
    let mut wait = s.wait_async(nr(1));
    assert!(block_on(poll_once(&mut wait)).is_none());
    assert!(block_on(poll_once(&mut wait)).is_none());
    guard.publish(response(1));
    assert_eq!(
        block_on(poll_once(&mut wait)).unwrap().as_deref(),
        Ok(&response(1))
    );
}

#[test]
fn blocking_and_async_waiters_on_one_session_are_all_woken_by_one_publish() {
    let s = Arc::new(Session::new());
    let guard = process(&s, 1);
    thread::scope(|scope| {
        let blocking: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| s.wait_timeout(nr(1), GENEROUS)))
            .collect();
        let asynchronous: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| wait_bounded(&s, 1, on_futures_lite)))
            .collect();
        thread::sleep(STILL_WAITING);
        guard.publish(response(1));
        for waiter in blocking {
            assert_eq!(waiter.join().unwrap().as_deref(), Ok(&response(1)));
        }
        for waiter in asynchronous {
            assert_eq!(waiter.join().unwrap().as_deref(), Ok(&response(1)));
        }
    });
}

#[test]
fn dropping_a_pending_wait_takes_no_wake_up_from_the_others() {
    let s = Session::new();
    let guard = process(&s, 1);
    thread::scope(|scope| {
        let staying = scope.spawn(|| wait_bounded(&s, 1, on_futures_lite));
        for _ in 0..3 {
            let mut cancelled = s.wait_async(nr(1));
            assert!(block_on(poll_once(&mut cancelled)).is_none());
            drop(cancelled);
        }
        thread::sleep(STILL_WAITING);
        let mut cancelled_late = s.wait_async(nr(1));
        assert!(block_on(poll_once(&mut cancelled_late)).is_none());
        guard.publish(response(1));
        drop(cancelled_late);
        assert_eq!(staying.join().unwrap().as_deref(), Ok(&response(1)));
    });
    // Waiting again after a drop sees the same outcome.
    assert_eq!(block_on(s.wait_async(nr(1))).as_deref(), Ok(&response(1)));
}

#[test]
fn a_timer_that_fires_first_gives_timed_out_and_a_settled_outcome_wins_over_it() {
    let s = Session::new();
    let guard = process(&s, 1);
    let timed_out = block_on(s.wait_async_with_timer(nr(1), thread_timer(STILL_WAITING)));
    assert_eq!(timed_out, Err(WaitTimeoutError::TimedOut));
    // A timer that is ready at once: the outcome is still looked at first.
    assert_eq!(
        block_on(s.wait_async_with_timer(nr(1), std::future::ready(()))),
        Err(WaitTimeoutError::TimedOut)
    );
    guard.publish(response(1));
    let settled = block_on(s.wait_async_with_timer(nr(1), std::future::ready(())));
    assert_eq!(settled.as_deref(), Ok(&response(1)));
}

#[test]
fn the_arc_swap_slot_serves_async_waiters_too() {
    let s = ArcSwapSessionState::<Response>::new();
    thread::scope(|scope| {
        settle_later(scope, process(&s, 1), true);
        assert_eq!(wait_bounded(&s, 1, on_tokio).as_deref(), Ok(&response(1)));
    });
}

#[test]
fn the_futures_are_send_and_the_owned_ones_static() {
    fn send<F: Future + Send>(_: &F) {}
    fn send_static<F: Future + Send + 'static>(_: &F) {}
    let s = Arc::new(Session::new());
    let wait: WaitFuture<'_, Response> = s.wait_async(nr(1));
    send(&wait);
    let owned: OwnedWaitFuture<Response> = s.wait_async_owned(nr(1));
    send_static(&owned);
    send_static(&s.wait_async_owned_with_timer(nr(1), std::future::ready(())));
    send(&s.wait_async_with_timer(nr(1), std::future::ready(())));
}

#[cfg(feature = "tokio")]
mod with_tokio {
    use super::*;
    use std::pin::pin;
    use tokio::time::Instant;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn owned_waits_run_in_spawned_tasks_and_see_the_response() {
        let s = Arc::new(Session::new());
        let waiters: Vec<_> = (0..8)
            .map(|_| tokio::spawn(s.wait_async_owned_timeout(nr(1), GENEROUS)))
            .collect();
        let plain = tokio::spawn(s.wait_async_owned(nr(1)));
        tokio::time::sleep(STILL_WAITING).await;
        process(&s, 1).publish(response(1));
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap().as_deref(), Ok(&response(1)));
        }
        let plain = tokio::time::timeout(GENEROUS, plain)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(plain.as_deref(), Ok(&response(1)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokio_deadlines_time_out_while_pending_and_return_what_settled_before() {
        let s = Arc::new(Session::new());
        let guard = process(&s, 1);
        assert_eq!(
            s.wait_async_timeout(nr(1), STILL_WAITING).await,
            Err(WaitTimeoutError::TimedOut)
        );
        let deadline = Instant::now() + STILL_WAITING;
        assert_eq!(
            s.wait_async_until(nr(1), deadline).await,
            Err(WaitTimeoutError::TimedOut)
        );
        assert_eq!(
            s.wait_async_owned_until(nr(1), deadline).await,
            Err(WaitTimeoutError::TimedOut)
        );
        let waiting = tokio::spawn(s.wait_async_owned_until(nr(1), Instant::now() + GENEROUS));
        guard.publish(response(1));
        assert_eq!(waiting.await.unwrap().as_deref(), Ok(&response(1)));
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(
            s.wait_async_until(nr(1), past).await.as_deref(),
            Ok(&response(1))
        );
    }

    #[test]
    fn the_tokio_deadline_forms_are_made_outside_a_runtime_and_need_one_only_to_wait() {
        let s = Arc::new(Session::new());
        let guard = process(&s, 1);
        // Made outside any runtime: no timer yet, so no panic.
        let pending = s.wait_async_timeout(nr(1), GENEROUS);
        let owned = s.wait_async_owned_until(nr(1), Instant::now() + GENEROUS);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        thread::scope(|scope| {
            settle_later(scope, guard, true);
            // `block_on` of the future itself, not of an `async` block around it.
            assert_eq!(rt.block_on(pending).as_deref(), Ok(&response(1)));
        });
        assert_eq!(rt.block_on(owned).as_deref(), Ok(&response(1)));
        // A settled outcome never touches the timer: no runtime needed at all.
        let settled = block_on(s.wait_async_timeout(nr(1), GENEROUS));
        assert_eq!(settled.as_deref(), Ok(&response(1)));
    }

    #[test]
    #[should_panic(expected = "runtime")]
    fn a_tokio_deadline_wait_that_has_to_wait_outside_a_runtime_panics() {
        let s = Session::new();
        let _guard = process(&s, 1);
        let _ = block_on(s.wait_async_timeout(nr(1), GENEROUS));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadlines_are_on_tokios_clock_so_a_paused_clock_drives_them() {
        let s = Arc::new(Session::new());
        let _guard = process(&s, 1);
        tokio::time::advance(Duration::from_secs(3600)).await;
        let began = Instant::now();
        let ten = Duration::from_secs(10);
        let mut until = pin!(s.wait_async_until(nr(1), began + ten));
        let mut timeout = pin!(s.wait_async_timeout(nr(1), ten));
        let owned = tokio::spawn(s.wait_async_owned_timeout(nr(1), ten));
        tokio::time::advance(ten - Duration::from_millis(1)).await;
        assert!(poll_once(&mut until).await.is_none(), "timed out early");
        assert!(poll_once(&mut timeout).await.is_none(), "timed out early");
        assert!(!owned.is_finished(), "timed out early");
        // Nothing else to do: the paused clock jumps to the deadline.
        assert_eq!(until.await, Err(WaitTimeoutError::TimedOut));
        assert_eq!(Instant::now() - began, ten);
        assert_eq!(timeout.await, Err(WaitTimeoutError::TimedOut));
        assert_eq!(owned.await.unwrap(), Err(WaitTimeoutError::TimedOut));
        assert_eq!(Instant::now() - began, ten);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timeout_too_long_to_represent_never_fires() {
        let s = Arc::new(Session::new());
        let guard = process(&s, 1);
        let waiting = tokio::spawn(s.wait_async_owned_timeout(nr(1), Duration::MAX));
        tokio::time::sleep(STILL_WAITING).await;
        assert!(!waiting.is_finished(), "returned before the publish");
        guard.publish(response(1));
        let outcome = tokio::time::timeout(GENEROUS, waiting).await.unwrap();
        assert_eq!(outcome.unwrap().as_deref(), Ok(&response(1)));
    }

    /// tokio's budget is 128 polls a turn; any bound well below the loop's length shows
    /// that the loop yields.
    const YIELDS_WITHIN: u32 = 1_000;

    #[tokio::test(flavor = "current_thread")]
    async fn a_loop_of_settled_waits_spends_tokios_budget_and_lets_another_task_run() {
        let s = Arc::new(Session::new());
        process(&s, 1).publish(response(1));
        let looping = tokio::spawn(async move {
            // Queued behind this task on the one thread: it runs only if this yields.
            let other = tokio::spawn(async {});
            for waits in 0..100_000 {
                if other.is_finished() {
                    return Some(waits);
                }
                let outcome = match waits % 3 {
                    0 => s.wait_async(nr(1)).await.map_err(WaitTimeoutError::from),
                    1 => s
                        .wait_async_owned(nr(1))
                        .await
                        .map_err(WaitTimeoutError::from),
                    _ => s.wait_async_timeout(nr(1), GENEROUS).await,
                };
                assert_eq!(outcome.as_deref(), Ok(&response(1)));
            }
            None
        });
        let waits = looping.await.unwrap();
        let waits = waits.expect("100,000 settled waits in a row never let another task run");
        assert!(waits <= YIELDS_WITHIN, "yielded only after {waits} waits");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unconstrained_lifts_the_budget() {
        let s = Arc::new(Session::new());
        process(&s, 1).publish(response(1));
        let looping = tokio::spawn(tokio::task::coop::unconstrained(async move {
            let other = tokio::spawn(async {});
            // Far past one budget (128 polls), few enough for Miri.
            for _ in 0..YIELDS_WITHIN {
                assert_eq!(s.wait_async(nr(1)).await.as_deref(), Ok(&response(1)));
            }
            other.is_finished()
        }));
        assert!(!looping.await.unwrap(), "an unconstrained loop yielded");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_select_that_drops_the_wait_leaves_the_session_usable() {
        let s = Session::new();
        let guard = process(&s, 1);
        tokio::select! {
            _ = s.wait_async(nr(1)) => panic!("nothing was published"),
            _ = tokio::time::sleep(STILL_WAITING) => {}
        }
        guard.publish(response(1));
        let again = tokio::time::timeout(GENEROUS, s.wait_async(nr(1)))
            .await
            .unwrap();
        assert_eq!(again.as_deref(), Ok(&response(1)));
    }
}

#[test]
fn the_async_waiters_add_one_pointer_and_the_session_stays_within_32_bytes() {
    assert!(
        std::mem::size_of::<Session>() <= 32,
        "{}",
        std::mem::size_of::<Session>()
    );
    assert!(std::mem::size_of::<ArcSwapSessionState<Response>>() <= 32);
}

#[cfg(feature = "futures")]
mod fused {
    use super::*;
    use futures_core::FusedFuture;

    #[test]
    fn a_wait_is_terminated_once_it_has_returned_its_outcome() {
        let s = Arc::new(Session::new());
        let guard = process(&s, 1);
        let mut wait = s.wait_async(nr(1));
        let mut owned = s.wait_async_owned(nr(1));
        assert!(block_on(poll_once(&mut wait)).is_none());
        assert!(!wait.is_terminated() && !owned.is_terminated());
        guard.publish(response(1));
        assert_eq!(block_on(&mut wait).as_deref(), Ok(&response(1)));
        assert_eq!(block_on(&mut owned).as_deref(), Ok(&response(1)));
        assert!(wait.is_terminated() && owned.is_terminated());
    }

    #[test]
    fn a_deadline_wait_is_terminated_once_settled_or_timed_out() {
        let s = Session::new();
        let guard = process(&s, 1);
        let mut timed_out = Box::pin(s.wait_async_with_timer(nr(1), std::future::ready(())));
        assert!(!timed_out.is_terminated());
        assert_eq!(
            block_on(timed_out.as_mut()),
            Err(WaitTimeoutError::TimedOut)
        );
        assert!(timed_out.is_terminated());
        guard.publish(response(1));
        let mut settled = Box::pin(s.wait_async_with_timer(nr(1), std::future::pending::<()>()));
        assert!(!settled.is_terminated());
        assert_eq!(block_on(settled.as_mut()).as_deref(), Ok(&response(1)));
        assert!(settled.is_terminated());
    }
}
