//! Replays of the `ops` fuzz target's inputs, as plain tests over the public API.
//!
//! The target's harness, `fuzz/src/ops.rs`, uses only the typed API, the seed's calls
//! and `Baseline`, so it is included here as it is: an input replays exactly as the
//! fuzzer ran it, with every check, and without libFuzzer or `cfg(fuzzing)`. A finding
//! of the fuzzer becomes a test below: its input as bytes (hex) and, where it helps,
//! the same schedule spelled out as operations.
//!
//! - Every file of the committed corpus `fuzz/corpus/ops/` replays clean.
//! - The named schedules below are each one situation of the transition table with
//!   several handler threads; each is also in the committed corpus under its name (the
//!   test checks that the file is its encoding; `FUZZ_CORPUS_WRITE=1` rewrites the
//!   files).
//!
//! (The `state_word` target drives the packed word's internals, which exist only under
//! `cfg(fuzzing)`; its findings are pinned by unit tests in `src/state.rs` instead.)

#[path = "../fuzz/src/ops.rs"]
mod ops;

use ops::{decode, encode, fuzz_one, run_both, Op, Schedule, Summary, Target};
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ops")
}

fn read(handler: u8, target: Target) -> Op {
    Op::Read { handler, target }
}

fn complete(handler: u8, value: u16) -> Op {
    Op::Complete {
        handler,
        value,
        by_publish: false,
    }
}

/// Completes through `Processing::publish`, which hands no copy back.
fn publish(handler: u8, value: u16) -> Op {
    Op::Complete {
        handler,
        value,
        by_publish: true,
    }
}

fn poll(handler: u8) -> Op {
    Op::Poll { handler }
}

/// Two handlers read request 1 on two connections: one processes it, the other is told
/// to resend, finds it pending, and then gets exactly the response completed for 1.
fn resend_waits_for_the_processor() -> Schedule {
    Schedule {
        handlers: 2,
        ops: vec![
            read(0, Target::Near(1)),
            read(1, Target::Near(0)),
            poll(1),
            complete(0, 7),
            poll(1),
            Op::WaitSettled {
                target: Target::Near(0),
                how: 0,
            },
        ],
    }
}

/// A processor drops out while two handlers wait to resend: both see `Abandoned`, the
/// number is never processed again, and the next number starts normally; the
/// abandoned one is `Gone` afterwards.
fn abandon_settles_every_waiter() -> Schedule {
    Schedule {
        handlers: 3,
        ops: vec![
            read(0, Target::Near(1)),
            read(1, Target::Near(0)),
            read(2, Target::Near(0)),
            Op::Abandon {
                handler: 0,
                by_drop: true,
            },
            poll(1),
            poll(2),
            read(0, Target::Near(0)),
            read(1, Target::Near(1)),
            publish(1, 1),
            Op::TryGet {
                target: Target::Near(-1),
            },
            Op::WaitNow {
                target: Target::Near(-1),
            },
        ],
    }
}

/// The client sends 2 while 1 is being processed: `Busy { current: 1 }`; the seed's
/// `set_response` cannot steal the guarded request; a stale 1 after 2 is `Stale`.
fn busy_names_the_request_in_processing() -> Schedule {
    Schedule {
        handlers: 3,
        ops: vec![
            read(0, Target::Near(1)),
            read(1, Target::Near(1)),
            Op::SetResponseOnTyped { value: 9 },
            complete(0, 3),
            Op::SetResponseOnTyped { value: 9 },
            read(2, Target::Near(1)),
            read(1, Target::Near(-1)),
            complete(2, 4),
        ],
    }
}

/// A gap straight to `MAX`, completed; `MAX + 1`, 0 and `u64::MAX` are refused with an
/// error by `RequestNr::new` and by the seed's calls, never a panic or a wrap.
fn numbers_stop_at_max() -> Schedule {
    Schedule {
        handlers: 2,
        ops: vec![
            read(0, Target::BelowMax(1)),
            complete(0, 1),
            read(1, Target::Max),
            publish(1, 2),
            read(0, Target::Near(1)),
            Op::Numbers {
                target: Target::AboveMax(0),
            },
            Op::Numbers {
                target: Target::U64Max,
            },
            Op::Numbers {
                target: Target::Zero,
            },
            Op::Numbers {
                target: Target::Max,
            },
            Op::SeedTriage {
                target: Target::AboveMax(3),
            },
            Op::SeedWait {
                target: Target::Zero,
            },
            Op::TryGet {
                target: Target::Max,
            },
            Op::WaitSettled {
                target: Target::Max,
                how: 2,
            },
            Op::TryGet {
                target: Target::BelowMax(1),
            },
        ],
    }
}

/// The seed's three calls on their own session, with a typed triage mixed in.
fn seed_calls_follow_the_seed() -> Schedule {
    Schedule {
        handlers: 2,
        ops: vec![
            Op::SeedWait {
                target: Target::Near(1),
            },
            Op::SeedTriage {
                target: Target::Near(1),
            },
            Op::SeedTriage {
                target: Target::Near(0),
            },
            Op::SeedTriage {
                target: Target::Near(1),
            },
            Op::SeedWait {
                target: Target::Near(0),
            },
            Op::SeedRespond { value: 5 },
            Op::SeedRespond { value: 6 },
            Op::SeedWait {
                target: Target::Near(0),
            },
            Op::SeedTypedTriage {
                target: Target::Gap(3),
                value: 8,
            },
            Op::SeedWait {
                target: Target::Back(0),
            },
            Op::SeedTriage {
                target: Target::Back(2),
            },
        ],
    }
}

/// Handlers still waiting when the schedule ends: the guard is dropped at the end and
/// none of them may find its request pending.
fn no_waiter_outlives_the_guard() -> Schedule {
    Schedule {
        handlers: 4,
        ops: vec![
            read(0, Target::Gap(0)),
            read(1, Target::Near(0)),
            read(2, Target::Near(0)),
            read(3, Target::Near(1)),
            Op::WaitNow {
                target: Target::Near(0),
            },
            Op::WaitSettled {
                target: Target::Near(0),
                how: 1,
            },
        ],
    }
}

fn scenarios() -> Vec<(&'static str, Schedule)> {
    vec![
        (
            "resend_waits_for_the_processor",
            resend_waits_for_the_processor(),
        ),
        (
            "abandon_settles_every_waiter",
            abandon_settles_every_waiter(),
        ),
        (
            "busy_names_the_request_in_processing",
            busy_names_the_request_in_processing(),
        ),
        ("numbers_stop_at_max", numbers_stop_at_max()),
        ("seed_calls_follow_the_seed", seed_calls_follow_the_seed()),
        (
            "no_waiter_outlives_the_guard",
            no_waiter_outlives_the_guard(),
        ),
    ]
}

#[test]
fn resend_gets_exactly_the_response_completed_for_its_number() {
    let seen = run_both(&resend_waits_for_the_processor());
    assert_eq!((seen.processed, seen.resends, seen.completed), (1, 1, 1));
    assert_eq!(
        seen.responses_read, 2,
        "the poll after complete and the wait"
    );
    assert_eq!(seen.abandoned, 0);
}

#[test]
fn an_abandoned_request_settles_every_waiter_and_is_never_processed_again() {
    let seen = run_both(&abandon_settles_every_waiter());
    assert_eq!((seen.processed, seen.abandoned, seen.completed), (2, 1, 1));
    assert_eq!(seen.resends, 3, "two waiters for 1, then a late 1");
    assert_eq!(
        seen.gone, 2,
        "try_get(1) once 2 started, and the late 1 at the end"
    );
}

#[test]
fn busy_names_the_request_being_processed() {
    let seen = run_both(&busy_names_the_request_in_processing());
    assert_eq!((seen.busy, seen.stale, seen.processed), (1, 1, 2));
}

#[test]
fn numbers_above_max_are_refused_without_a_panic() {
    let seen = run_both(&numbers_stop_at_max());
    assert_eq!((seen.processed, seen.gaps), (2, 1));
    assert_eq!(
        seen.refused, 4,
        "MAX + 1 read; MAX + 1, u64::MAX and 0 checked"
    );
    assert_eq!((seen.responses_read, seen.gone), (2, 1));
}

#[test]
fn seed_calls_match_the_seed_port() {
    let seen = run_both(&seed_calls_follow_the_seed());
    assert_eq!(seen.processed, 0, "the typed session is untouched");
}

#[test]
fn no_waiter_is_left_pending_once_the_guard_is_gone() {
    let seen = run_both(&no_waiter_outlives_the_guard());
    assert_eq!(
        (seen.processed, seen.gaps, seen.resends, seen.busy),
        (1, 1, 2, 1)
    );
    assert_eq!(seen.abandoned, 1, "the guard dropped at the end");
}

#[test]
fn named_schedules_round_trip_and_are_in_the_committed_corpus() {
    let write = std::env::var_os("FUZZ_CORPUS_WRITE").is_some();
    for (name, schedule) in scenarios() {
        let bytes = encode(&schedule);
        assert_eq!(decode(&bytes), schedule, "{name}");
        let path = corpus_dir().join(name);
        if write {
            std::fs::write(&path, &bytes).expect("corpus file written");
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert_eq!(committed, bytes, "{name}: rerun with FUZZ_CORPUS_WRITE=1");
    }
}

#[test]
fn committed_ops_corpus_replays_clean() {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("fuzz/corpus/ops")
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "only {} corpus files", files.len());
    let mut total = Summary::default();
    for path in &files {
        let bytes = std::fs::read(path).expect("a corpus file");
        let seen = fuzz_one(&bytes);
        total.processed += seen.processed;
        total.abandoned += seen.abandoned;
        total.compared_with_seed += seen.compared_with_seed;
    }
    assert!(total.processed > 0 && total.abandoned > 0 && total.compared_with_seed > 0);
}

/// Every byte string is a schedule; the empty input, a lone handler count and
/// truncated arguments decode without a panic.
#[test]
fn truncated_inputs_decode_and_run() {
    for bytes in [&[][..], &[7], &[1, 0], &[2, 15, 0, 15, 1, 2], &[0, 11, 13]] {
        fuzz_one(bytes);
    }
    let schedule = decode(&[5, 3]);
    assert_eq!(schedule.handlers, 2 + 5 % 3);
    assert_eq!(schedule.ops, [complete(0, 0)]);
}
