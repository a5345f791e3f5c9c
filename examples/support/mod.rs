//! Small helpers shared by the transport examples: flags and Ctrl-C.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};

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
