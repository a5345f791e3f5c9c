//! The server's input decoding: arbitrary bytes from a client, read in the order a
//! server connection reads them (session id; then request number, validated, and frame,
//! until 0 or the end), never panic, never read past what arrived, and never allocate
//! more than the frame limit, whatever length a frame claims. A counting allocator
//! records the largest single allocation of each run.

#![no_main]

use exactly_once::transport::wire::{self, WireError};
use exactly_once::RequestNr;
use libfuzzer_sys::fuzz_target;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Small, so that a frame claiming more than it may is common in the inputs.
const MAX_FRAME: u64 = 300;

struct LargestAllocation;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // ORDERING: relaxed, a statistic read by this thread after the run.
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // ORDERING: as in `alloc`.
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// What a connection fed `data` ends with.
#[derive(Debug)]
enum End {
    Disconnected,
    SessionEnded,
    BadRequestNr,
    Wire(WireError),
}

fn serve(mut data: &[u8]) -> (End, usize) {
    let mut calls = 0;
    match wire::read_u64_or_eof(&mut data) {
        Ok(None) => return (End::Disconnected, calls),
        Ok(Some(_session)) => {}
        Err(e) => return (End::Wire(e), calls),
    }
    loop {
        let nr = match wire::read_u64_or_eof(&mut data) {
            Ok(None) => return (End::Disconnected, calls),
            Ok(Some(0)) => return (End::SessionEnded, calls),
            Ok(Some(nr)) => nr,
            Err(e) => return (End::Wire(e), calls),
        };
        if RequestNr::new(nr).is_err() {
            return (End::BadRequestNr, calls);
        }
        match wire::read_frame(&mut data, MAX_FRAME) {
            Ok(frame) => assert!(frame.len() as u64 <= MAX_FRAME),
            Err(e) => return (End::Wire(e), calls),
        }
        calls += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    // ORDERING: relaxed, see `LargestAllocation`.
    LARGEST.store(0, Ordering::Relaxed);
    let (end, calls) = serve(data);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= MAX_FRAME as usize,
        "allocated {largest} bytes (limit {MAX_FRAME}) ending with {end:?}"
    );
    // Every complete call takes at least its 16-byte header.
    assert!(calls * 16 <= data.len());
    match end {
        End::Wire(WireError::TooLong { length, max }) => assert!(length > max && max == MAX_FRAME),
        End::Wire(WireError::NegativeLength(n)) => assert!(n < 0),
        End::Wire(WireError::Io(e)) => panic!("reading a slice failed: {e}"),
        _ => {}
    }
});
