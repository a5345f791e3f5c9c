//! A waiter that timed out leaves no wake-up to pay for: the next transition makes no
//! futex system call, because nobody is parked. Counted with `strace` on a child run
//! of this binary, between markers (`getppid` calls) that fence each scenario.
#![cfg(target_os = "linux")]

use exactly_once::{RequestNr, SessionState, Triage, WaitTimeoutError};
use std::process::Command;
use std::time::Duration;
use std::{env, fs, thread};

const CHILD: &str = "EXACTLY_ONCE_STRACE_CHILD";
const ROUNDS: u64 = 20;

fn nr(n: u64) -> RequestNr {
    RequestNr::new(n).unwrap()
}

/// The marker system call between scenarios.
fn marker() {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() };
}

/// Scenario 1: on one thread, `ROUNDS` times: a deadline wait on a request being
/// processed times out (it parked, so `PARKED` stays set), then the request completes.
/// Scenario 2, the control: a waiter really parked in another thread is woken.
#[test]
fn child_scenarios() {
    if env::var_os(CHILD).is_none() {
        return;
    }
    let s = SessionState::<u64>::new();
    marker();
    for m in 1..=ROUNDS {
        let Triage::Process(guard) = s.triage(nr(m)) else {
            panic!("not Process")
        };
        let waited = s.wait_timeout(nr(m), Duration::from_micros(200));
        assert_eq!(waited, Err(WaitTimeoutError::TimedOut));
        drop(guard.complete(m));
    }
    marker();
    let Triage::Process(guard) = s.triage(nr(ROUNDS + 1)) else {
        panic!("not Process")
    };
    thread::scope(|scope| {
        let waiter = scope.spawn(|| s.wait(nr(ROUNDS + 1)).map(|r| *r));
        thread::sleep(Duration::from_millis(100));
        drop(guard.complete(7));
        assert_eq!(waiter.join().unwrap(), Ok(7));
    });
    marker();
}

/// The futex wakes in each stretch between markers of a `strace -f` log.
fn wakes_between_markers(log: &str) -> Vec<usize> {
    let mut stretches = Vec::new();
    let mut wakes = None;
    for line in log.lines() {
        if line.contains("getppid(") {
            if let Some(n) = wakes {
                stretches.push(n);
            }
            wakes = Some(0);
        } else if line.contains("FUTEX_WAKE") && !line.contains("resumed>") {
            wakes = wakes.map(|n| n + 1);
        }
    }
    stretches
}

#[test]
fn a_timed_out_waiter_leaves_no_futex_wake_to_the_next_transition() {
    if env::var_os(CHILD).is_some() {
        return;
    }
    let log = env::temp_dir().join(format!("exactly-once-strace-{}.log", std::process::id()));
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
    assert_eq!(stretches.len(), 2, "markers not found: {run:?}\n{text}");
    assert_eq!(
        stretches[0], 0,
        "{ROUNDS} completions after timed-out waits made futex wakes:\n{text}"
    );
    assert!(
        stretches[1] >= 1,
        "the control saw no wake of a parked waiter:\n{text}"
    );
}
