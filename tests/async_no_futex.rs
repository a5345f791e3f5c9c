//! Async waiters cost a publisher no futex system call: a transition that only async
//! waiters wait for notifies their event (an uncontended lock and the wakers) and
//! never calls `FUTEX_WAKE`; a cancelled waiter leaves nothing to pay for. Counted with
//! `strace` on a child run of this binary, between markers (`getppid` calls).
#![cfg(all(feature = "async", target_os = "linux"))]
#![allow(missing_docs)]

use exactly_once::{RequestNr, SessionState, Triage};
use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use std::{env, fs, thread};

const CHILD: &str = "EXACTLY_ONCE_ASYNC_STRACE_CHILD";
const ROUNDS: u64 = 20;
const WAITERS: usize = 4;
/// More polls than a wait yields before it registers.
const POLLS_TO_REGISTER: usize = 16;

fn nr(n: u64) -> RequestNr {
    RequestNr::new(n).unwrap()
}

/// The marker system call between scenarios.
fn marker() {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() };
}

/// A waker that does nothing, so that waking makes no system call of its own.
struct Silent;

impl Wake for Silent {
    fn wake(self: Arc<Self>) {}
}

fn poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(Silent));
    Pin::new(f).poll(&mut Context::from_waker(&waker))
}

/// Scenario 1: `ROUNDS` times, `WAITERS` registered async waiters and a publish.
/// Scenario 2: `ROUNDS` times, a waiter registers and is dropped, then a publish.
/// Scenario 3, the control: a blocking waiter really parked in another thread.
#[test]
fn child_scenarios() {
    if env::var_os(CHILD).is_none() {
        return;
    }
    let s = SessionState::<u64>::new();
    let process = |m: u64| match s.triage(nr(m)) {
        Triage::Process(guard) => guard,
        other => panic!("not Process: {other:?}"),
    };
    marker();
    for m in 1..=ROUNDS {
        let guard = process(m);
        let mut waits: Vec<_> = (0..WAITERS).map(|_| s.wait_async(nr(m))).collect();
        for wait in &mut waits {
            (0..POLLS_TO_REGISTER).for_each(|_| assert!(poll(wait).is_pending()));
        }
        guard.publish(m);
        for wait in &mut waits {
            assert!(matches!(poll(wait), Poll::Ready(Ok(r)) if *r == m));
        }
    }
    marker();
    for m in ROUNDS + 1..=2 * ROUNDS {
        let guard = process(m);
        let mut wait = s.wait_async(nr(m));
        (0..POLLS_TO_REGISTER).for_each(|_| assert!(poll(&mut wait).is_pending()));
        drop(wait);
        guard.publish(m);
    }
    marker();
    let guard = process(2 * ROUNDS + 1);
    thread::scope(|scope| {
        let waiter = scope.spawn(|| s.wait(nr(2 * ROUNDS + 1)).map(|r| *r));
        thread::sleep(Duration::from_millis(100));
        guard.publish(7);
        assert_eq!(waiter.join().unwrap(), Ok(7));
    });
    marker();
}

/// The futex wakes in each stretch between markers of a `strace -f` log.
fn wakes_between_markers(log: &str) -> Vec<usize> {
    let marks = log.lines().filter(|l| {
        l.contains("getppid(") || (l.contains("FUTEX_WAKE") && !l.contains("resumed>"))
    });
    let mut stretches: Vec<usize> = Vec::new();
    for line in marks {
        match (line.contains("getppid("), stretches.last_mut()) {
            (true, _) => stretches.push(0),
            (false, Some(n)) => *n += 1,
            (false, None) => {}
        }
    }
    stretches.pop();
    stretches
}

#[test]
fn async_waiters_cost_the_publisher_no_futex_wake() {
    if env::var_os(CHILD).is_some() {
        return;
    }
    let log = env::temp_dir().join(format!(
        "exactly-once-async-strace-{}.log",
        std::process::id()
    ));
    let run = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=futex,getppid", "-o"])
        .arg(&log)
        .arg(env::current_exe().unwrap())
        .args(["--exact", "child_scenarios", "--test-threads=1"])
        .env(CHILD, "1")
        .output();
    let run = match run {
        Ok(run) if run.status.success() => run,
        Ok(run) if String::from_utf8_lossy(&run.stderr).contains("ptrace") => {
            eprintln!("SKIPPED: strace may not trace here: {run:?}");
            return;
        }
        Ok(run) => panic!("the child run failed: {run:?}"),
        Err(e) => {
            eprintln!("SKIPPED: strace is not installed ({e}); apt-get install strace");
            return;
        }
    };
    let text = fs::read_to_string(&log).unwrap();
    let _ = fs::remove_file(&log);
    let stretches = wakes_between_markers(&text);
    assert_eq!(stretches.len(), 3, "markers not found: {run:?}\n{text}");
    assert_eq!(
        stretches[0], 0,
        "publishes to async waiters made futex wakes:\n{text}"
    );
    assert_eq!(
        stretches[1], 0,
        "publishes after cancelled waiters made futex wakes:\n{text}"
    );
    assert!(
        stretches[2] >= 1,
        "the control saw no wake of a parked waiter:\n{text}"
    );
}
