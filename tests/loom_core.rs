//! Loom models of the triage door and of the parked-waiter count: every interleaving
//! (up to `LOOM_MAX_PREEMPTIONS`) of the races each protocol exists for.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_core`. The planted
//! bugs these models must catch are in `loom_core_planted.rs` (a binary of its own,
//! because the switch is process-wide).
#![cfg(loom)]

#[path = "loom_core/models.rs"]
mod models;

#[test]
fn a_triage_racing_a_reader_and_a_finished_triage_leaves_the_door_open() {
    models::door_left_open();
}

#[test]
fn a_waiter_parking_behind_a_timed_out_one_is_woken() {
    models::parked_behind_a_timed_out_waiter();
}
