//! Harnesses shared by the fuzz targets and by `tests/fuzz_regressions.rs`.
//!
//! [`ops`] knows only the crate's public API (the typed API, the seed's calls and the
//! `Baseline`), so the main crate's regression tests include the same file and replay
//! an input exactly as the fuzzer ran it, without libFuzzer or `cfg(fuzzing)`.

pub mod ops;
