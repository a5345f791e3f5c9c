//! Counting futex wake system calls with `strace`: a test binary runs its own
//! `child_scenarios` test under `strace -f`, and the scenarios fence each stretch with a
//! marker system call (`getppid`). Included by `#[path]` where a test needs it.
#![allow(dead_code)]

use std::process::Command;
use std::{env, fs};

/// The marker system call between scenarios.
pub fn marker() {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() };
}

/// Runs this test binary's `child_scenarios` test (with `child_var` set, so that it
/// runs its scenarios) under `strace -f`, and returns the number of futex wakes in each
/// stretch between markers. `None` where strace is missing or may not trace here,
/// which is a failure under CI (`CI` set), so that CI never skips the count.
pub fn futex_wakes_between_markers(child_var: &str) -> Option<Vec<usize>> {
    let log = env::temp_dir().join(format!(
        "exactly-once-strace-{child_var}-{}.log",
        std::process::id()
    ));
    let run = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=futex,getppid", "-o"])
        .arg(&log)
        .arg(env::current_exe().unwrap())
        .args(["--exact", "child_scenarios", "--test-threads=1"])
        .env(child_var, "1")
        .output();
    let skipped = match run {
        Ok(run) if run.status.success() => None,
        Ok(run) if String::from_utf8_lossy(&run.stderr).contains("ptrace") => {
            Some(format!("strace may not trace here: {run:?}"))
        }
        Ok(run) => panic!("the child run failed: {run:?}"),
        Err(e) => Some(format!(
            "strace is not installed ({e}); apt-get install strace"
        )),
    };
    if let Some(why) = skipped {
        assert!(
            env::var_os("CI").is_none(),
            "under CI the count must run: {why}"
        );
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let text = fs::read_to_string(&log).unwrap();
    let _ = fs::remove_file(&log);
    Some(wakes_between_markers(&text))
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
