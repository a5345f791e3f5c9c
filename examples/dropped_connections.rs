//! The crate's main job: many client sessions whose connections drop and are re-made,
//! served thread-per-connection, with processors that are slow, panic or die after
//! completing. Every request is counted; the run fails (exit status 1) on any double
//! execution, lost request, wrong response or hang.
//!
//! Runs the simulation of `tests/support/sim.rs` (the one the stress test runs, at CI
//! size) once per session type: `SessionState` and `ArcSwapSessionState`.
//!
//! ```text
//! cargo run --release --example dropped_connections -- \
//!     [--sessions N] [--requests N] [--drop P] [--panic P] [--slow P] [--seed S]
//! ```

#[path = "../tests/support/sim.rs"]
mod sim;

use sim::{Config, SlotKind};
use std::process::exit;
use std::time::Duration;

const USAGE: &str = "usage: dropped_connections [--sessions N] [--requests N] [--drop P] \
                     [--panic P] [--slow P] [--seed S]";

fn main() {
    let config = match parse(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            exit(2);
        }
    };
    println!(
        "{} sessions x {} requests, drop {}, panic {}, slow {}, late {}, seed {:#x}\n",
        config.sessions,
        config.requests_per_session,
        config.drop_probability,
        config.panic_probability,
        config.slow_probability,
        config.late_probability,
        config.seed
    );
    let mut all_ok = true;
    for kind in SlotKind::ALL {
        let report = kind.run(&config);
        println!("{report}\n");
        all_ok &= report.is_exactly_once();
    }
    if !all_ok {
        eprintln!("FAILED: a request was duplicated, lost, answered wrongly, or a thread hung");
        exit(1);
    }
    println!("every request executed exactly once and its outcome delivered");
}

/// The defaults of the main job: larger than the stress test's.
fn defaults() -> Config {
    Config {
        sessions: 64,
        requests_per_session: 2_000,
        drop_probability: 0.2,
        panic_probability: 0.005,
        crash_after_complete_probability: 0.005,
        slow_probability: 0.02,
        late_probability: 0.02,
        seed: 0x0EC0_FFEE,
        // Long enough that a loaded machine rarely times a healthy reply out: the
        // faults come from the drops, not from the scheduler.
        reply_timeout: (Duration::from_millis(10), Duration::from_millis(50)),
        wait_deadline: Duration::from_secs(10),
        watchdog: Duration::from_secs(120),
        ..Config::default()
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut config = defaults();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sessions" => config.sessions = number(&flag, &value)?,
            "--requests" => config.requests_per_session = number(&flag, &value)?,
            "--drop" => config.drop_probability = probability(&flag, &value)?,
            "--panic" => config.panic_probability = probability(&flag, &value)?,
            "--slow" => config.slow_probability = probability(&flag, &value)?,
            "--seed" => config.seed = number(&flag, &value)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if config.requests_per_session > exactly_once::RequestNr::MAX {
        return Err(format!(
            "--requests must be at most {}",
            exactly_once::RequestNr::MAX
        ));
    }
    Ok(config)
}

fn number<N: std::str::FromStr>(flag: &str, value: &str) -> Result<N, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a non-negative integer"))
}

fn probability(flag: &str, value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{flag}: {value:?} is not a probability in [0, 1]")),
    }
}
