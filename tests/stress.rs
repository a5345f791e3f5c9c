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
    seed_calls_racing_read_back_only_the_response_of_their_number,
);

/// The seed's calls from threads racing on shared sessions: each number is triaged by
/// every thread, processed by exactly one, and every response a thread gets back
/// (through its own kept copy after publishing, or as a resend) is that number's; a
/// `None` is allowed only once the session has moved past the number.
fn seed_calls_racing_read_back_only_the_response_of_their_number<S: Slot<Payload> + 'static>() {
    use exactly_once::SessionState;
    use std::sync::atomic::{AtomicU64, Ordering};
    const THREADS: usize = 4;
    const NUMBERS: u64 = 20_000;
    let sessions: Vec<SessionState<Payload, S>> = (0..2).map(|_| SessionState::new()).collect();
    let executions: Vec<AtomicU64> = (0..2 * NUMBERS).map(|_| AtomicU64::new(0)).collect();
    let (read_back, nones) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let (sessions, executions) = (&sessions, &executions);
            let (read_back, nones) = (&read_back, &nones);
            scope.spawn(move || {
                for m in 1..NUMBERS {
                    // Alternating sessions: a thread's kept copy is often another
                    // session's when it reads.
                    for (id, session) in sessions.iter().enumerate() {
                        let id = id as u64;
                        let (process, send) = session.triage_request(m).unwrap();
                        if process {
                            // ORDERING: relaxed; counters read after the threads joined.
                            executions[(2 * m + id) as usize].fetch_add(1, Ordering::Relaxed);
                            session.set_response(sim::encode(id, m)).unwrap();
                        }
                        if !send {
                            continue;
                        }
                        match session.wait_get_response(m).unwrap() {
                            Some(got) => {
                                assert_eq!(sim::decode(&got), Some((id, m)), "wrong response");
                                read_back.fetch_add(u64::from(process), Ordering::Relaxed);
                            }
                            None => {
                                assert!(session.status().request > m, "None while at {m}");
                                nones.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            });
        }
    });
    for (i, count) in executions.iter().enumerate().skip(2) {
        assert_eq!(
            count.load(Ordering::Relaxed),
            1,
            "request {} of session {}",
            i / 2,
            i % 2
        );
    }
    println!(
        "{} read back by their processor, {} moved past",
        read_back.into_inner(),
        nones.into_inner()
    );
}

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
