//! Small helpers shared by the transport examples: flags, Ctrl-C, logging, latency
//! histograms and progress reports.

#![allow(dead_code)]

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The value after `--name`, if given.
pub fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| usage(name)))
}

/// The value after `--name` parsed, or `default`.
pub fn parsed<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match flag(args, name) {
        Some(v) => v.parse().unwrap_or_else(|_| usage(name)),
        None => default,
    }
}

fn usage(name: &str) -> ! {
    eprintln!("bad or missing value for {name}");
    std::process::exit(2)
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C (SIGINT) or SIGTERM has arrived since `on_interrupt` was called.
pub fn interrupted() -> bool {
    // ORDERING: a flag polled by the main loop; nothing else is published with it.
    INTERRUPTED.load(Ordering::Relaxed)
}

#[cfg(target_os = "linux")]
pub fn on_interrupt() {
    extern "C" fn note(_signal: libc::c_int) {
        // ORDERING: see `interrupted`. An atomic store is async-signal-safe.
        INTERRUPTED.store(true, Ordering::Relaxed);
    }
    let handler: extern "C" fn(libc::c_int) = note;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `note` only stores to an atomic, which is async-signal-safe, and
        // `signal` is given a valid handler address for a valid signal number.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

#[cfg(not(target_os = "linux"))]
pub fn on_interrupt() {}

/// Logs warnings (or `level`) to stderr.
pub fn log_to_stderr(level: &str) {
    let level = match level {
        "off" => return,
        "error" => tracing::Level::ERROR,
        "info" => tracing::Level::INFO,
        "debug" => tracing::Level::DEBUG,
        _ => tracing::Level::WARN,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .init();
}

/// Parses a probability, `0 <= p <= 1`, for `clap`.
pub fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a probability between 0 and 1")),
    }
}

/// Parses a number of seconds, finite and not negative, for `clap`.
pub fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("{text:?} is not a number of seconds")),
    }
}

/// Call latencies in a fixed-size histogram: 1 µs to 60 s at 3 significant digits
/// (longer calls count as 60 s), whatever the number of calls.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        let histogram =
            Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds");
        Latencies(histogram)
    }
}

impl Latencies {
    /// Records one call's latency.
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.0.saturating_record(nanos);
    }

    /// Adds every latency that `other` recorded.
    pub fn add(&mut self, other: &Latencies) {
        self.0.add(&other.0).expect("histograms of the same bounds");
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at quantile `q` (0 to 1), in microseconds (0 when there are none).
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// The mean latency in microseconds (0 when there are none).
    pub fn mean_us(&self) -> f64 {
        self.0.mean() / 1000.0
    }

    /// The largest latency in microseconds (0 when there are none).
    pub fn max_us(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }

    /// `p50 … p99 … p99.9 … max …`, in the unit given (`"ms"` or `"us"`).
    pub fn summary(&self, unit: &str) -> String {
        let scale = if unit == "ms" { 1000.0 } else { 1.0 };
        format!(
            "p50 {:.3} {unit}, p99 {:.3} {unit}, p99.9 {:.3} {unit}, max {:.3} {unit}",
            self.quantile_us(0.50) / scale,
            self.quantile_us(0.99) / scale,
            self.quantile_us(0.999) / scale,
            self.max_us() / scale
        )
    }
}

/// Progress of a timed run on stderr: a bar when stdout is a terminal, otherwise one
/// plain line per report (for logs).
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
    total: Duration,
}

impl Progress {
    /// Starts reporting a run of `total`.
    pub fn new(total: Duration) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(total.as_millis().max(1) as u64);
            let style = ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {msg}")
                .expect("a valid progress template");
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            start: Instant::now(),
            total,
        }
    }

    /// Reports `message` at the time elapsed since `new`.
    pub fn report(&self, message: &str) {
        let elapsed = self.start.elapsed().min(self.total);
        match &self.bar {
            Some(bar) => {
                bar.set_position(elapsed.as_millis() as u64);
                bar.set_message(message.to_owned());
            }
            None => eprintln!("[{:>7.1} s] {message}", elapsed.as_secs_f64()),
        }
    }

    /// Ends the bar, leaving its last state on screen.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
