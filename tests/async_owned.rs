//! `triage_owned` and its `OwnedProcessGuard` as a specification: the same table as
//! `triage`, a guard that moves into `tokio::spawn`, settles its request once, and
//! abandons it when dropped, also when the task that holds it is cancelled; spawning
//! the run keeps it alive when the task that read the request is cancelled.

#![cfg(feature = "tokio")]
#![allow(missing_docs)]

use exactly_once::{
    OwnedProcessGuard, OwnedTriage, RequestNr, SessionState, WaitError, WaitTimeoutError,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

type Session = SessionState<String>;

/// The bound on every wait that is expected to return: far above any real latency.
const GENEROUS: Duration = Duration::from_secs(10);

fn nr(n: u64) -> RequestNr {
    RequestNr::new(n).expect("a valid request number")
}

fn process(s: &Arc<Session>, m: u64) -> OwnedProcessGuard<String> {
    match s.triage_owned(nr(m)) {
        OwnedTriage::Process(guard) => guard,
        other => panic!("triage_owned({m}): expected Process, got {other:?}"),
    }
}

type Waiter = tokio::task::JoinHandle<Result<Arc<String>, WaitTimeoutError>>;

/// Four tasks awaiting the outcome of `m`, each bounded by `GENEROUS`.
fn spawn_waiters(s: &Arc<Session>, m: u64) -> Vec<Waiter> {
    (0..4)
        .map(|_| tokio::spawn(s.wait_async_owned_timeout(nr(m), GENEROUS)))
        .collect()
}

#[test]
fn the_owned_guard_is_send_and_static() {
    fn send_static<G: Send + 'static>(_: &G) {}
    let s = Arc::new(Session::new());
    send_static(&process(&s, 1));
}

#[test]
fn triage_owned_follows_the_same_table_as_triage() {
    let s = Arc::new(Session::new());
    let first = process(&s, 1);
    assert_eq!(
        (first.request(), first.previous(), first.skipped()),
        (nr(1), 0, 0)
    );
    assert!(matches!(s.triage_owned(nr(1)), OwnedTriage::Resend));
    assert!(matches!(
        s.triage_owned(nr(2)),
        OwnedTriage::Busy { current: 1 }
    ));
    first.publish("one".to_string());
    assert!(matches!(s.triage_owned(nr(1)), OwnedTriage::Resend));
    let skipping = process(&s, 4);
    assert_eq!(
        (skipping.previous(), skipping.skipped()),
        (1, 2),
        "a skip is observable"
    );
    assert!(matches!(s.triage_owned(nr(3)), OwnedTriage::Stale));
    assert!(Arc::ptr_eq(skipping.session(), &s));
}

#[test]
fn completing_or_abandoning_lets_the_session_go() {
    let s = Arc::new(Session::new());
    let response = process(&s, 1).complete("one".to_string());
    assert_eq!(response.as_str(), "one");
    assert_eq!(Arc::strong_count(&s), 1, "the guard kept its session");
    process(&s, 2).publish("two".to_string());
    assert_eq!(Arc::strong_count(&s), 1, "the guard kept its session");
    process(&s, 3).abandon();
    assert_eq!(Arc::strong_count(&s), 1, "the guard kept its session");
    assert_eq!(s.try_get(nr(3)), Err(exactly_once::TryGetError::Abandoned));
}

#[test]
fn a_panic_in_the_response_conversion_abandons_and_lets_the_session_go() {
    struct Exploding;
    impl From<Exploding> for Arc<String> {
        fn from(_: Exploding) -> Self {
            panic!("the response could not be made")
        }
    }
    let s = Arc::new(Session::new());
    let guard = process(&s, 1);
    assert!(catch_unwind(AssertUnwindSafe(|| guard.complete(Exploding))).is_err());
    assert_eq!(s.try_get(nr(1)), Err(exactly_once::TryGetError::Abandoned));
    assert_eq!(Arc::strong_count(&s), 1, "the guard kept its session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_moves_into_a_spawned_task_that_publishes_to_every_waiter() {
    let s = Arc::new(Session::new());
    let guard = process(&s, 1);
    let waiters = spawn_waiters(&s, 1);
    let run = tokio::spawn(async move {
        tokio::task::yield_now().await;
        let response = format!("response to {}", guard.request());
        guard.complete(response)
    });
    assert_eq!(run.await.unwrap().as_str(), "response to 1");
    for waiter in waiters {
        assert_eq!(
            waiter.await.unwrap().as_deref().map(String::as_str),
            Ok("response to 1")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_task_that_holds_the_guard_abandons_and_wakes_every_waiter() {
    let s = Arc::new(Session::new());
    let guard = process(&s, 1);
    let waiters = spawn_waiters(&s, 1);
    let run = tokio::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await
    });
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), Err(WaitTimeoutError::Abandoned));
    }
    assert!(
        matches!(s.triage_owned(nr(1)), OwnedTriage::Resend),
        "an abandoned request is never processed again"
    );
    assert_eq!(
        Arc::strong_count(&s),
        1,
        "the cancelled guard kept its session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_spawned_with_its_guard_outlives_the_cancelled_task_that_read_the_request() {
    let s = Arc::new(Session::new());
    let (go, release) = tokio::sync::oneshot::channel::<()>();
    let (spawned, run_spawned) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn({
        let s = Arc::clone(&s);
        async move {
            if let OwnedTriage::Process(guard) = s.triage_owned(nr(1)) {
                tokio::spawn(async move {
                    release.await.expect("the test releases the run");
                    guard.publish("done".to_string());
                });
            }
            spawned
                .send(())
                .expect("the test waits for the run to be spawned");
            s.wait_async(nr(1)).await
        }
    });
    run_spawned.await.expect("the reader spawns the run");
    reader.abort();
    assert!(reader.await.unwrap_err().is_cancelled());
    go.send(()).unwrap();
    let outcome = tokio::time::timeout(GENEROUS, s.wait_async(nr(1)))
        .await
        .expect("the run publishes");
    assert_eq!(outcome.as_deref().map(String::as_str), Ok("done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_spawned_run_abandons() {
    let s = Arc::new(Session::new());
    let guard = process(&s, 1);
    let waiter = tokio::spawn(s.wait_async_owned(nr(1)));
    let run = tokio::spawn(async move {
        let _guard = guard;
        panic!("the handler failed");
    });
    assert!(run.await.unwrap_err().is_panic());
    let outcome = tokio::time::timeout(GENEROUS, waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Err(WaitError::Abandoned));
}
