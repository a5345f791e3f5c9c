//! Stress tests: many sessions, thread per connection, connections dropped and re-made,
//! processors that are slow, panic or die after completing. Every request is counted:
//! each must be executed exactly once and its outcome delivered to its client.
//!
//! The simulation itself lives in `tests/support/sim.rs` and is shared with the
//! `dropped_connections` example (the crate's main job), which runs it larger. Each
//! fault test runs once per response slot (`counted::*`, `arc_swap::*`).

#![allow(missing_docs)]

#[path = "support/sim.rs"]
mod sim;
mod support;

use exactly_once::{CountedSlot, Slot};
use sim::{Config, Payload, Report};
use std::time::Duration;
use support::for_each_slot;

/// Runs the simulation on sessions with the response slot `S`.
fn run<S: Slot<Payload> + 'static>(config: &Config) -> Report {
    sim::run::<S>(std::any::type_name::<S>(), config)
}

/// CI-sized and fault-heavy; fixed seed (thread timing still varies between runs).
fn faulty() -> Config {
    Config {
        sessions: 16,
        requests_per_session: 300,
        drop_probability: 0.2,
        panic_probability: 0.01,
        crash_after_complete_probability: 0.01,
        slow_probability: 0.05,
        late_probability: 0.05,
        seed: 0xD0C0_FFEE,
        wait_deadline: Duration::from_secs(5),
        watchdog: Duration::from_secs(20),
        ..Config::default()
    }
}

fn assert_exactly_once(report: &Report) {
    println!("{report}");
    assert!(report.is_exactly_once(), "not exactly once:\n{report}");
    assert!(
        report.wall < Duration::from_secs(20),
        "took too long:\n{report}"
    );
}

/// The fault paths the simulation is meant to drive must actually have been driven.
fn assert_faults_exercised(report: &Report) {
    assert!(report.reconnects > 0, "no reconnects:\n{report}");
    assert!(report.dropped > 0, "no dropped connections:\n{report}");
    assert!(report.resends_served > 0, "no resend served:\n{report}");
    assert!(report.abandoned > 0, "no request abandoned:\n{report}");
    assert!(report.panics > 0, "no processor panicked:\n{report}");
    assert!(
        report.crashes_after_complete > 0,
        "no processor died after completing:\n{report}"
    );
    assert!(
        report.sends_on_dead_connections > 0,
        "no send on a dead connection:\n{report}"
    );
    assert!(
        report.stale + report.gone > 0,
        "neither stale nor gone:\n{report}"
    );
    assert_eq!(report.abandoned, report.panics, "{report}");
}

fn dropped_connections_panics_and_late_frames<S: Slot<Payload> + 'static>() {
    let report = run::<S>(&faulty());
    assert_exactly_once(&report);
    assert_faults_exercised(&report);
}

/// Mostly drops, with short reply timeouts: many connections of one session at once,
/// racing on the same request.
fn reconnect_storm<S: Slot<Payload> + 'static>() {
    let config = Config {
        sessions: 8,
        requests_per_session: 200,
        drop_probability: 0.6,
        slow_probability: 0.3,
        reply_timeout: (Duration::from_micros(100), Duration::from_millis(2)),
        seed: 0x0057_0E4A,
        ..faulty()
    };
    let report = run::<S>(&config);
    assert_exactly_once(&report);
    assert_faults_exercised(&report);
    assert!(report.resends > report.requests / 4, "{report}");
}

/// No faults: every request is processed on its first connection and answered with
/// its own response; no resend, stale, gone or abandon happens.
fn without_faults_every_response_arrives_first_time<S: Slot<Payload> + 'static>() {
    let config = Config {
        watchdog: Duration::from_secs(20),
        seed: 0x000F_A170,
        ..Config::no_faults(64, 100)
    };
    let report = run::<S>(&config);
    assert_exactly_once(&report);
    assert_eq!(report.responses, report.requests, "{report}");
    assert_eq!(report.processed, report.requests, "{report}");
    assert_eq!(report.attempts, report.requests, "{report}");
    assert_eq!(report.handler_threads, report.requests, "{report}");
    assert_eq!(
        (report.abandoned, report.reconnects, report.resends),
        (0, 0, 0),
        "{report}"
    );
    assert_eq!((report.stale, report.gone), (0, 0), "{report}");
}

for_each_slot!(Payload =>
    dropped_connections_panics_and_late_frames,
    reconnect_storm,
    without_faults_every_response_arrives_first_time,
);

#[test]
fn responses_encode_their_request() {
    let frame = sim::encode(7, 42);
    assert_eq!(sim::decode(&frame), Some((7, 42)));
    let mut corrupt = frame.clone();
    corrupt[20] ^= 1;
    assert_eq!(sim::decode(&corrupt), None);
    assert_eq!(sim::decode(&frame[..16]), None);
}

/// The checker itself: a server that re-executes resends and answers them with another
/// request's response must be caught, not pass.
#[test]
fn a_broken_server_is_caught() {
    let config = Config {
        sessions: 4,
        requests_per_session: 100,
        broken_server_probability: 0.5,
        ..faulty()
    };
    let report = run::<CountedSlot<Payload>>(&config);
    println!("{report}");
    assert!(!report.is_exactly_once(), "{report}");
    assert!(report.duplicates > 0, "{report}");
    assert!(report.wrong_responses > 0, "{report}");
    assert!(report.executions > report.requests, "{report}");
    assert!(!report.problems.is_empty(), "{report}");
}

/// The watchdog: a run that cannot finish in time stops and reports the requests it
/// never settled instead of hanging.
#[test]
fn a_run_out_of_time_is_reported_not_waited_for() {
    let config = Config {
        sessions: 4,
        requests_per_session: 100_000,
        watchdog: Duration::from_millis(300),
        ..faulty()
    };
    let report = run::<CountedSlot<Payload>>(&config);
    println!("{report}");
    assert!(report.watchdog_fired, "{report}");
    assert!(report.losses > 0, "{report}");
    assert!(!report.is_exactly_once(), "{report}");
    assert_eq!(report.hung_threads, 0, "{report}");
    assert!(report.wall < Duration::from_secs(10), "{report}");
}
