//! Placeholder: the simulation lands with the stress test.
fn main() {}
