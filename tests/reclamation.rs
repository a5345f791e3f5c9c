//! Readers racing the next request: the response a reader clones must stay alive until
//! it has its own count, for both slots. This is the test that catches a missing drain
//! of the reader count (crash in a normal run, use-after-free under Miri, a data race
//! under ThreadSanitizer), so it is sized to run under all three.

mod support;

use exactly_once::{RequestNr, SessionState, Slot, Triage, TryGetError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use support::for_each_slot;

const REQUESTS: u64 = if cfg!(miri) { 40 } else { 2_000 };
const READERS: usize = 2;

/// A response that knows its request number and checks, when dropped, that it was not
/// dropped twice or read after its drop (a poisoned value shows up as a wrong number).
struct Response {
    request: u64,
    alive: AtomicBool,
}

impl Drop for Response {
    fn drop(&mut self) {
        assert!(
            self.alive.swap(false, Ordering::Relaxed),
            "response {} dropped twice",
            self.request
        );
    }
}

fn readers_never_see_a_freed_or_foreign_response<S: Slot<Response>>() {
    let session: SessionState<Response, S> = SessionState::new();
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    thread::scope(|scope| {
        for _ in 0..READERS {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let n = session.status().request;
                    let Ok(m) = RequestNr::new(n) else { continue };
                    match session.try_get(m) {
                        Ok(response) => {
                            assert_eq!(response.request, n, "got another request's response");
                            assert!(
                                response.alive.load(Ordering::Relaxed),
                                "read a dropped response"
                            );
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(TryGetError::Gone | TryGetError::Pending) => {}
                        Err(TryGetError::Abandoned) => panic!("nothing was abandoned"),
                    }
                }
            });
        }
        for n in 1..=REQUESTS {
            let m = RequestNr::new(n).unwrap();
            match session.triage(m) {
                Triage::Process(guard) => {
                    guard.complete(Response {
                        request: n,
                        alive: AtomicBool::new(true),
                    });
                }
                other => panic!("request {n}: {other:?}"),
            }
            // Give readers a window on each response.
            if n % 4 == 0 {
                thread::yield_now();
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    assert!(
        reads.load(Ordering::Relaxed) > 0,
        "the readers never read a response"
    );
}

for_each_slot!(Response => readers_never_see_a_freed_or_foreign_response);
