//! The bugs the models of `loom_core.rs` must catch, planted one at a time by one test
//! (the switch is process-wide):
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_core_planted`.
#![cfg(loom)]

#[path = "loom_core/models.rs"]
mod models;

use exactly_once::planted_bugs::{plant, Bug};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `model` with `bug` planted and returns the panic message it must end with.
fn caught(bug: Bug, model: fn()) -> String {
    plant(Some(bug));
    let outcome = catch_unwind(AssertUnwindSafe(model));
    plant(None);
    let Err(panic) = outcome else {
        panic!("the model passed with {bug:?} planted")
    };
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn each_planted_bug_is_caught() {
    let message = caught(Bug::KeepDoorOnRefusal, models::door_left_open);
    assert!(
        message.contains("deadlock") || message.contains("branches"),
        "a door left closed: {message}"
    );
    let message = caught(
        Bug::TrustForeignParked,
        models::parked_behind_a_timed_out_waiter,
    );
    assert!(
        message.contains("deadlock"),
        "a foreign PARKED trusted: {message}"
    );
}
