//! The rounds of the loopback benchmarks that compare setups in one run (`http`, `grpc`):
//! their flags, when a client stops, a round's calls/s and p99 from its clients'
//! latencies, and the report of each setup's medians against a bare setup. Included by
//! `#[path]` beside `args.rs`.

use crate::args::{self, flag};
use std::time::{Duration, Instant};

/// The flags: `--seconds`, `--rounds`, `--clients`, `--calls`, `--only`.
pub struct Settings {
    pub seconds: f64,
    pub rounds: usize,
    pub clients: usize,
    /// Calls per client and round instead of `seconds` (`--calls 1000`), for counting
    /// instructions per call.
    pub calls: Option<usize>,
    /// Only the setups whose index is listed (`--only 0,2`), for profiling one at a time.
    pub only: Option<Vec<usize>>,
}

impl Settings {
    /// From the command line, and prints the CPU model and the shape of the run.
    pub fn from_args() -> Settings {
        let s = Settings {
            seconds: flag("--seconds", 2.0),
            rounds: flag("--rounds", 3),
            clients: flag("--clients", 4),
            calls: Some(flag("--calls", 0)).filter(|&n| n > 0),
            only: args::value_of("--only")
                .map(|list| list.split(',').filter_map(|n| n.parse().ok()).collect()),
        };
        let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpu
            .lines()
            .find(|l| l.starts_with("model name"))
            .unwrap_or("model name: ?")
            .to_owned();
        println!(
            "{cpu}; {} clients, {} rounds of {} s each",
            s.clients, s.rounds, s.seconds
        );
        s
    }

    /// Whether setup `i` is left out of this run (`--only`).
    pub fn skips(&self, i: usize) -> bool {
        self.only.as_ref().is_some_and(|only| !only.contains(&i))
    }

    /// When the clients of a round that starts at `start` stop.
    pub fn end(&self, start: Instant) -> End {
        match self.calls {
            Some(calls) => End::After(calls),
            None => End::At(start + Duration::from_secs_f64(self.seconds)),
        }
    }

    /// A round's calls/s and p99, from the latencies its clients returned (a round that
    /// started at `start`).
    pub fn tally(&self, start: Instant, clients: Vec<Vec<Duration>>) -> (f64, Duration) {
        let mut latencies: Vec<Duration> = clients.into_iter().flatten().collect();
        latencies.sort();
        let p99 = latencies[(latencies.len() - 1) * 99 / 100];
        let seconds = match self.calls {
            Some(_) => start.elapsed().as_secs_f64(),
            None => self.seconds,
        };
        (latencies.len() as f64 / seconds, p99)
    }
}

/// When a client stops calling: at an instant, or after a number of calls.
#[derive(Clone, Copy)]
pub enum End {
    At(Instant),
    After(usize),
}

impl End {
    pub fn more(self, done: usize) -> bool {
        match self {
            End::At(until) => Instant::now() < until,
            End::After(calls) => done < calls,
        }
    }
}

/// What a setup left out by `--only` reports for a round.
pub const SKIPPED: (f64, Duration) = (1.0, Duration::ZERO);

fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Each setup's median calls/s and median p99 over its rounds.
pub fn medians(rounds: &[Vec<(f64, Duration)>]) -> Vec<(f64, Duration)> {
    rounds
        .iter()
        .map(|r| {
            let rate = median(r.iter().map(|r| r.0).collect());
            let p99 = median(r.iter().map(|r| r.1).collect());
            (rate, p99)
        })
        .collect()
}

/// The report's header, its first column `width` wide.
pub fn print_header(width: usize) {
    println!(
        "{:<width$} {:>10} {:>12} {:>16} {:>14}",
        "setup", "calls/s", "p99", "cost of calls/s", "extra at p99"
    );
}

/// One row per setup: its medians and what they cost against `bare`'s.
pub fn print_rows(
    width: usize,
    names: &[&str],
    summary: &[(f64, Duration)],
    bare: (f64, Duration),
) {
    let (bare_rate, bare_p99) = bare;
    for (name, (rate, p99)) in names.iter().zip(summary) {
        let cost = 100.0 * (1.0 - rate / bare_rate);
        let extra = (p99.as_secs_f64() - bare_p99.as_secs_f64()) * 1e6;
        println!(
            "{name:<width$} {rate:>10.0} {:>12?} {cost:>15.1}% {extra:>+11.1} us",
            p99
        );
    }
}

/// The goal line under the table of the layers' costs.
pub const GOAL: &str =
    "costs against the bare setup; goal: the layers cost at most 5% of calls/s and 10 us at p99";
