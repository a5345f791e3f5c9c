//! Log lines the network can provoke, rate-limited per kind, and the panic hook that
//! sends handler panics to `tracing` instead of stderr.

use std::collections::HashMap;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Lines of one kind allowed per window; the rest are counted and summed up in one line
/// when the next window opens (or at [`RateLimit::flush`]).
const LINES_PER_WINDOW: u32 = 5;
const WINDOW: Duration = Duration::from_secs(1);

/// The name of every connection thread; the panic hook recognises them by it.
pub(crate) const CONNECTION_THREAD: &str = "mcp-connection";

#[derive(Debug)]
struct Window {
    opened: Instant,
    lines: u32,
    suppressed: u64,
}

/// Per-kind log rate limits.
#[derive(Debug, Default)]
pub(crate) struct RateLimit {
    windows: Mutex<HashMap<&'static str, Window>>,
}

impl RateLimit {
    /// Whether a line of `kind` may be logged now. Reports lines suppressed in the
    /// window that just closed, once, as a summary line.
    pub(crate) fn allow(&self, kind: &'static str) -> bool {
        let now = Instant::now();
        // A poisoned map only holds counts: still usable.
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(kind).or_insert(Window {
            opened: now,
            lines: 0,
            suppressed: 0,
        });
        if now.duration_since(window.opened) >= WINDOW {
            summarise(kind, window.suppressed);
            *window = Window {
                opened: now,
                lines: 0,
                suppressed: 0,
            };
        }
        if window.lines < LINES_PER_WINDOW {
            window.lines += 1;
            true
        } else {
            window.suppressed += 1;
            false
        }
    }

    /// Logs the summary of every window with suppressed lines.
    pub(crate) fn flush(&self) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, window) in windows.iter_mut() {
            summarise(kind, std::mem::take(&mut window.suppressed));
        }
    }
}

fn summarise(kind: &str, suppressed: u64) {
    if suppressed > 0 {
        tracing::warn!(kind, suppressed, "similar log lines suppressed");
    }
}

/// Sends panics on connection threads to `tracing` (rate-limited, without a
/// backtrace) and every other panic to the hook that was installed before. Installed
/// once per process, by the first server.
pub(crate) fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    static PANICS: Mutex<Option<RateLimit>> = Mutex::new(None);
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(CONNECTION_THREAD) {
                return previous(info);
            }
            let mut limit = PANICS.lock().unwrap_or_else(|e| e.into_inner());
            if limit
                .get_or_insert_with(RateLimit::default)
                .allow("handler panic")
            {
                tracing::error!(panic = %info, "handler panicked; its request is abandoned");
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_limited_per_window_and_others_are_not() {
        let limit = RateLimit::default();
        let allowed = (0..100).filter(|_| limit.allow("a")).count();
        assert_eq!(allowed, LINES_PER_WINDOW as usize);
        assert!(limit.allow("b"));
        let windows = limit.windows.lock().unwrap();
        assert_eq!(windows["a"].suppressed, 100 - u64::from(LINES_PER_WINDOW));
    }
}
