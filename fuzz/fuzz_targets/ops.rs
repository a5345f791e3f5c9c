//! Handler threads on one session, simulated on one OS thread, against the seed's port
//! and a model: see `exactly_once_fuzz::ops` for the input format and the checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exactly_once_fuzz::ops::fuzz_one(data);
});
