//! The `ops` target: a schedule of operations by 2–4 simulated handler threads on one
//! session, run deterministically on one OS thread against the lock-free
//! `SessionState` (both slots), the seed's `Mutex`+`Condvar` port (`Baseline`) and the
//! reference model of the transition table ([`model`], the main crate's
//! `tests/support/model.rs`, which its differential tests use too).
//!
//! Shared, through `#[path]`, by the fuzz target and by the main crate's
//! `tests/fuzz_regressions.rs`: it uses only the public API, so a finding replays as
//! a plain `cargo test`.
//!
//! # Input format
//!
//! Byte 0: the number of handlers, `2 + b % 3`. Then operations, each an opcode byte
//! (`b % 20`, see [`decode`]) followed by its arguments; a missing byte reads as 0, and
//! at most [`MAX_OPS`] operations are decoded. Request numbers are [`Target`]s, resolved
//! against the session's newest number when the operation runs, so that most of them
//! land near it. [`encode`] is the inverse of [`decode`] on the values it produces.
//!
//! # What is checked
//!
//! Every observable result is compared with the model, and with the `Baseline` while
//! it is defined: the seed has no abandon, so the first abandon of a run ends the
//! comparison with the baseline on that session (the model goes on). Invariants: one
//! `Process` per accepted number and at most one guard alive, held exactly while the
//! session is processing; `Busy` names the number being processed; a response read
//! back is the one completed for that number (responses carry their number); `status`
//! agrees with the model; numbers outside `1..=MAX` are refused with an error by
//! `RequestNr` and by the seed's calls; no waiter is left pending once every guard is
//! gone. The seed's three calls run against a second pair of sessions.

use exactly_once::baseline::Baseline;
use exactly_once::{
    ArcSwapSlot, CountedSlot, InvalidRequestNr, Phase, ProcessGuard, RequestNr, SessionState,
    SetResponseError, Slot, Triage, TryGetError, WaitError, WaitTimeoutError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The reference model, shared with the main crate's differential tests.
#[path = "../../tests/support/model.rs"]
pub mod model;

use model::{seed_view, Decided, Model, Outcome};
pub use model::{Target, MAX};

/// At most this many operations are decoded from one input.
pub const MAX_OPS: usize = 256;

/// One operation of a schedule. `handler` is taken modulo the number of handlers; an
/// operation on a handler in another phase does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// An idle handler reads request `target` and triages it (typed API; the seed's
    /// `triage_request` on the baseline).
    Read {
        /// Which handler.
        handler: u8,
        /// The number it read.
        target: Target,
    },
    /// A handler holding a guard completes it with `(m << 16) | value`.
    Complete {
        /// Which handler.
        handler: u8,
        /// The low bits of the response.
        value: u16,
        /// Through `publish` (no copy handed back) rather than `complete`.
        by_publish: bool,
    },
    /// A handler holding a guard abandons it, by `abandon()` or by dropping it.
    Abandon {
        /// Which handler.
        handler: u8,
        /// Drop the guard rather than call `abandon()`.
        by_drop: bool,
    },
    /// A handler told to resend polls `try_get` once; it goes idle once settled.
    Poll {
        /// Which handler.
        handler: u8,
    },
    /// `try_get` of any number.
    TryGet {
        /// The number.
        target: Target,
    },
    /// `wait_until(now)` and `wait_timeout(0)`: they must not block.
    WaitNow {
        /// The number.
        target: Target,
    },
    /// A blocking wait, performed only where the model says the outcome is settled.
    WaitSettled {
        /// The number.
        target: Target,
        /// Which wait (`wait`, `wait_timeout`, `wait_get_response`).
        how: u8,
    },
    /// The seed's `set_response` on the typed session: it must refuse.
    SetResponseOnTyped {
        /// The low bits of the response.
        value: u16,
    },
    /// The seed's `triage_request` on the second session.
    SeedTriage {
        /// The number.
        target: Target,
    },
    /// The seed's `set_response` on the second session, with `(n << 16) | value`.
    SeedRespond {
        /// The low bits of the response.
        value: u16,
    },
    /// The seed's `wait_get_response` on the second session, where the seed returns.
    SeedWait {
        /// The number.
        target: Target,
    },
    /// The typed `triage` on the second session; a guard is completed at once.
    SeedTypedTriage {
        /// The number.
        target: Target,
        /// The low bits of the response.
        value: u16,
    },
    /// `RequestNr::new` of a number, and the seed's calls with it when it is invalid.
    Numbers {
        /// The number.
        target: Target,
    },
}

/// A decoded input: how many handlers, and what they do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// 2..=4.
    pub handlers: u8,
    /// In order.
    pub ops: Vec<Op>,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        bytes.iter_mut().for_each(|b| *b = self.u8());
        u64::from_le_bytes(bytes)
    }

    fn target(&mut self) -> Target {
        let b = self.u8();
        match b % 16 {
            k @ 0..=7 => Target::Near(k as i8 - 2),
            8 => Target::Back(self.u16()),
            9 => Target::Gap(self.u16()),
            10 => Target::Zero,
            11 => Target::Max,
            12 => Target::BelowMax(self.u8()),
            13 => Target::AboveMax(self.u8()),
            14 => Target::U64Max,
            _ => Target::Raw(self.u64()),
        }
    }
}

/// Decodes fuzz input into a schedule. Total: every byte string is a schedule.
pub fn decode(data: &[u8]) -> Schedule {
    let mut r = Reader(data);
    let handlers = 2 + r.u8() % 3;
    let mut ops = Vec::new();
    while !r.is_empty() && ops.len() < MAX_OPS {
        let op = match r.u8() % 20 {
            0..=2 | 18 | 19 => Op::Read {
                handler: r.u8(),
                target: r.target(),
            },
            b @ (3 | 4) => Op::Complete {
                handler: r.u8(),
                value: r.u16(),
                by_publish: b == 4,
            },
            b @ (5 | 6) => Op::Abandon {
                handler: r.u8(),
                by_drop: b == 6,
            },
            7 | 8 => Op::Poll { handler: r.u8() },
            9 => Op::TryGet { target: r.target() },
            10 => Op::WaitNow { target: r.target() },
            11 => Op::WaitSettled {
                target: r.target(),
                how: r.u8(),
            },
            12 => Op::SetResponseOnTyped { value: r.u16() },
            13 => Op::SeedTriage { target: r.target() },
            14 => Op::SeedRespond { value: r.u16() },
            15 => Op::SeedWait { target: r.target() },
            16 => Op::SeedTypedTriage {
                target: r.target(),
                value: r.u16(),
            },
            _ => Op::Numbers { target: r.target() },
        };
        ops.push(op);
    }
    Schedule { handlers, ops }
}

fn put_target(out: &mut Vec<u8>, t: Target) {
    match t {
        Target::Near(offset) => {
            assert!((-2..=5).contains(&offset), "Near({offset}) has no encoding");
            out.push((offset + 2) as u8);
        }
        Target::Back(back) => {
            out.push(8);
            out.extend(back.to_le_bytes());
        }
        Target::Gap(gap) => {
            out.push(9);
            out.extend(gap.to_le_bytes());
        }
        Target::Zero => out.push(10),
        Target::Max => out.push(11),
        Target::BelowMax(below) => out.extend([12, below]),
        Target::AboveMax(above) => out.extend([13, above]),
        Target::U64Max => out.push(14),
        Target::Raw(m) => {
            out.push(15);
            out.extend(m.to_le_bytes());
        }
    }
}

/// The bytes that [`decode`] turns into `schedule` (for hand-made corpus entries).
pub fn encode(schedule: &Schedule) -> Vec<u8> {
    assert!((2..=4).contains(&schedule.handlers));
    let mut out = vec![schedule.handlers - 2];
    for &op in &schedule.ops {
        match op {
            Op::Read { handler, target } => {
                out.extend([0, handler]);
                put_target(&mut out, target);
            }
            Op::Complete {
                handler,
                value,
                by_publish,
            } => {
                out.extend([if by_publish { 4 } else { 3 }, handler]);
                out.extend(value.to_le_bytes());
            }
            Op::Abandon { handler, by_drop } => out.extend([if by_drop { 6 } else { 5 }, handler]),
            Op::Poll { handler } => out.extend([7, handler]),
            Op::TryGet { target } => {
                out.push(9);
                put_target(&mut out, target);
            }
            Op::WaitNow { target } => {
                out.push(10);
                put_target(&mut out, target);
            }
            Op::WaitSettled { target, how } => {
                out.push(11);
                put_target(&mut out, target);
                out.push(how);
            }
            Op::SetResponseOnTyped { value } => {
                out.push(12);
                out.extend(value.to_le_bytes());
            }
            Op::SeedTriage { target } => {
                out.push(13);
                put_target(&mut out, target);
            }
            Op::SeedRespond { value } => {
                out.push(14);
                out.extend(value.to_le_bytes());
            }
            Op::SeedWait { target } => {
                out.push(15);
                put_target(&mut out, target);
            }
            Op::SeedTypedTriage { target, value } => {
                out.push(16);
                put_target(&mut out, target);
                out.extend(value.to_le_bytes());
            }
            Op::Numbers { target } => {
                out.push(17);
                put_target(&mut out, target);
            }
        }
    }
    out
}

/// What a run saw on the typed session, counted; both slots must see the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// `Process` results (each a distinct number).
    pub processed: u32,
    /// Of those, how many skipped numbers (a gap).
    pub gaps: u32,
    /// Guards completed.
    pub completed: u32,
    /// Guards abandoned, by the schedule or at its end.
    pub abandoned: u32,
    /// `Resend` results.
    pub resends: u32,
    /// `Stale` results.
    pub stale: u32,
    /// `Busy` results.
    pub busy: u32,
    /// Responses read back by `try_get` and the waits.
    pub responses_read: u32,
    /// `Gone` seen by `try_get` and the waits.
    pub gone: u32,
    /// Numbers refused by `RequestNr::new`.
    pub refused: u32,
    /// Operations after which the seed's port was still compared (no abandon yet).
    pub compared_with_seed: u32,
}

/// Runs `schedule` against both response slots; they must see the same.
pub fn run_both(schedule: &Schedule) -> Summary {
    let counted = run::<CountedSlot<u64>>(schedule);
    let arc_swap = run::<ArcSwapSlot<u64>>(schedule);
    assert_eq!(counted, arc_swap, "the two slots saw different runs");
    counted
}

/// Decodes and runs one fuzz input: the whole target.
pub fn fuzz_one(data: &[u8]) -> Summary {
    run_both(&decode(data))
}

/// A simulated handler thread.
enum Handler<'s, S: Slot<u64>> {
    Idle,
    Holding(ProcessGuard<'s, u64, S>),
    Resending(RequestNr),
}

/// The lock-free session, its baseline and model, and the handlers; plus the second
/// pair of sessions for the seed's calls.
struct Run<'s, S: Slot<u64>> {
    lf: &'s SessionState<u64, S>,
    base: &'s Baseline<u64>,
    /// False once an abandon happened: the seed has none, so it no longer models `lf`.
    base_defined: bool,
    model: Model,
    handlers: Vec<Handler<'s, S>>,
    seed_lf: &'s SessionState<u64, S>,
    seed_base: &'s Baseline<u64>,
    summary: Summary,
}

/// Runs `schedule` against the slot `S`; panics at the first divergence.
pub fn run<S: Slot<u64>>(schedule: &Schedule) -> Summary {
    let (lf, base) = (SessionState::<u64, S>::new(), Baseline::new());
    let (seed_lf, seed_base) = (SessionState::<u64, S>::new(), Baseline::new());
    let handlers = usize::from(schedule.handlers.clamp(2, 4));
    let mut run = Run {
        lf: &lf,
        base: &base,
        base_defined: true,
        model: Model::new(),
        handlers: (0..handlers).map(|_| Handler::Idle).collect(),
        seed_lf: &seed_lf,
        seed_base: &seed_base,
        summary: Summary::default(),
    };
    for (i, &op) in schedule.ops.iter().enumerate() {
        run.apply(op);
        run.check_state(i, op);
    }
    run.finish()
}

fn response(m: u64, value: u16) -> u64 {
    m << 16 | u64::from(value)
}

/// The error `RequestNr::new(m)` must give, or `None` for a valid number.
fn expected_invalid(m: u64) -> Option<InvalidRequestNr> {
    match m {
        0 => Some(InvalidRequestNr::Zero),
        m if m > MAX => Some(InvalidRequestNr::TooLarge(m)),
        _ => None,
    }
}

/// Validates `m` as a handler would, checking `RequestNr::new` against the spec.
fn request_nr(m: u64) -> Option<RequestNr> {
    let got = RequestNr::new(m);
    match expected_invalid(m) {
        Some(e) => {
            assert_eq!(got, Err(e), "RequestNr::new({m})");
            assert_eq!(RequestNr::try_from(m), Err(e));
            None
        }
        None => {
            let nr = got.unwrap_or_else(|e| panic!("RequestNr::new({m}) refused: {e}"));
            assert_eq!((nr.get(), u64::from(nr)), (m, m));
            Some(nr)
        }
    }
}

impl<'s, S: Slot<u64>> Run<'s, S> {
    fn handler(&self, handler: u8) -> usize {
        usize::from(handler) % self.handlers.len()
    }

    fn guards(&self) -> impl Iterator<Item = &ProcessGuard<'s, u64, S>> {
        self.handlers.iter().filter_map(|h| match h {
            Handler::Holding(g) => Some(g),
            _ => None,
        })
    }

    /// Validates `m` as a handler would (see [`request_nr`]), counting refusals.
    fn nr(&mut self, m: u64) -> Option<RequestNr> {
        let nr = request_nr(m);
        self.summary.refused += u32::from(nr.is_none());
        nr
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Read { handler, target } => self.read(handler, target),
            Op::Complete {
                handler,
                value,
                by_publish,
            } => self.complete(handler, value, by_publish),
            Op::Abandon { handler, by_drop } => self.abandon(handler, by_drop),
            Op::Poll { handler } => self.poll(handler),
            Op::TryGet { target } => {
                if let Some(m) = self.nr(target.resolve(self.model.n)) {
                    self.check_get(m, self.lf.try_get(m));
                }
            }
            Op::WaitNow { target } => self.wait_now(target),
            Op::WaitSettled { target, how } => self.wait_settled(target, how),
            Op::SetResponseOnTyped { value } => {
                let expected = match self.model.outcome {
                    Outcome::Processing => SetResponseError::Claimed,
                    _ => SetResponseError::NotProcessing,
                };
                let got = self.lf.set_response(response(self.model.n, value));
                assert_eq!(got, Err(expected), "set_response on a typed session");
            }
            Op::SeedTriage { target } => self.seed_triage(target),
            Op::SeedRespond { value } => self.seed_respond(value),
            Op::SeedWait { target } => self.seed_wait(target),
            Op::SeedTypedTriage { target, value } => self.seed_typed_triage(target, value),
            Op::Numbers { target } => self.numbers(target),
        }
    }

    fn read(&mut self, handler: u8, target: Target) {
        let h = self.handler(handler);
        if !matches!(self.handlers[h], Handler::Idle) {
            return;
        }
        let m = target.resolve(self.model.n);
        let Some(nr) = self.nr(m) else {
            return;
        };
        let expected = self.model.triage(m);
        let seed = self.base_defined.then(|| self.base.triage_request(m));
        let got = match self.lf.triage(nr) {
            Triage::Process(guard) => {
                let previous = guard.previous();
                assert_eq!(guard.request(), nr);
                assert_eq!(
                    Some(guard.skipped()),
                    m.checked_sub(previous + 1),
                    "skip to {m}"
                );
                assert_eq!(self.guards().count(), 0, "a second guard, for {m}");
                assert!(self.model.start(m), "{m} processed twice");
                self.handlers[h] = Handler::Holding(guard);
                self.summary.processed += 1;
                self.summary.gaps += u32::from(m > previous + 1);
                Decided::Process { previous }
            }
            Triage::Resend => {
                self.handlers[h] = Handler::Resending(nr);
                self.summary.resends += 1;
                Decided::Resend
            }
            Triage::Stale => {
                self.summary.stale += 1;
                Decided::Stale
            }
            Triage::Busy { current } => {
                let held: Vec<u64> = self.guards().map(|g| g.request().get()).collect();
                assert_eq!(held, [current], "Busy {{ current: {current} }} for {m}");
                self.summary.busy += 1;
                Decided::Busy { current }
            }
        };
        assert_eq!(got, expected, "triage({m})");
        if let Some(seed) = seed {
            assert_eq!(got.as_seed(), seed, "triage({m}) vs the seed");
        }
    }

    fn complete(&mut self, handler: u8, value: u16, by_publish: bool) {
        let h = self.handler(handler);
        let Handler::Holding(guard) = std::mem::replace(&mut self.handlers[h], Handler::Idle)
        else {
            return;
        };
        let m = guard.request().get();
        let v = response(m, value);
        if by_publish {
            guard.publish(v);
        } else {
            assert_eq!(*guard.complete(v), v);
        }
        assert!(self.model.complete(v), "{m} completed twice");
        self.summary.completed += 1;
        if self.base_defined {
            self.base.set_response(v);
        }
    }

    fn abandon(&mut self, handler: u8, by_drop: bool) {
        let h = self.handler(handler);
        let Handler::Holding(guard) = std::mem::replace(&mut self.handlers[h], Handler::Idle)
        else {
            return;
        };
        let m = guard.request();
        if by_drop {
            drop(guard);
        } else {
            guard.abandon();
        }
        self.model.abandon();
        self.summary.abandoned += 1;
        self.base_defined = false;
        assert_eq!(self.lf.try_get(m).map(|r| *r), Err(TryGetError::Abandoned));
    }

    fn poll(&mut self, handler: u8) {
        let h = self.handler(handler);
        let Handler::Resending(m) = self.handlers[h] else {
            return;
        };
        let got = self.lf.try_get(m);
        let settled = got != Err(TryGetError::Pending);
        self.check_get(m, got);
        if settled {
            self.handlers[h] = Handler::Idle;
        }
    }

    /// Checks a `try_get(m)` result against the model and, where defined, the seed.
    fn check_get(&mut self, m: RequestNr, got: Result<Arc<u64>, TryGetError>) {
        let got = got.map(|r| *r);
        let n = m.get();
        assert_eq!(got, self.model.try_get(n), "try_get({n})");
        self.summary.responses_read += u32::from(got.is_ok());
        self.summary.gone += u32::from(got == Err(TryGetError::Gone));
        if let Ok(v) = got {
            assert_eq!(v >> 16, n, "the response of {n} belongs to {}", v >> 16);
            assert_eq!(self.model.completed(n), Some(v), "never completed");
        }
        if !self.base_defined {
            return;
        }
        if self.base.would_block(n) {
            assert_eq!(
                got,
                Err(TryGetError::Pending),
                "the seed would wait for {n}"
            );
        } else {
            let seed = self.base.wait_get_response(n).map(|r| *r);
            assert_eq!(got.ok(), seed, "try_get({n}) vs the seed");
            if seed.is_none() {
                assert_eq!(got, Err(TryGetError::Gone), "try_get({n}) vs the seed");
            }
        }
    }

    fn wait_now(&mut self, target: Target) {
        let Some(m) = self.nr(target.resolve(self.model.n)) else {
            return;
        };
        let expected = self.model.wait_expired(m.get());
        let until = self.lf.wait_until(m, Instant::now()).map(|r| *r);
        assert_eq!(until, expected, "wait_until({m}, now)");
        let timeout = self.lf.wait_timeout(m, Duration::ZERO).map(|r| *r);
        assert_eq!(timeout, expected, "wait_timeout({m}, 0)");
    }

    fn wait_settled(&mut self, target: Target, how: u8) {
        let Some(m) = self.nr(target.resolve(self.model.n)) else {
            return;
        };
        // Checked without blocking first: a wrongly pending session must fail here,
        // not hang the single thread below.
        self.check_get(m, self.lf.try_get(m));
        let expected = match self.model.try_get(m.get()) {
            Err(TryGetError::Pending) => return,
            Ok(v) => Ok(v),
            Err(TryGetError::Abandoned) => Err(WaitError::Abandoned),
            Err(TryGetError::Gone) => Err(WaitError::Gone),
        };
        match how % 3 {
            0 => assert_eq!(self.lf.wait(m).map(|r| *r), expected, "wait({m})"),
            1 => {
                let got = self.lf.wait_timeout(m, Duration::MAX).map(|r| *r);
                assert_eq!(
                    got,
                    expected.map_err(WaitTimeoutError::from),
                    "wait_timeout"
                );
            }
            _ => {
                let got = self.lf.wait_get_response(m.get()).map(|r| r.map(|r| *r));
                assert_eq!(got, Ok(expected.ok()), "wait_get_response({m})");
            }
        }
    }

    fn seed_triage(&self, target: Target) {
        let m = target.resolve(self.seed_lf.status().request);
        match expected_invalid(m) {
            Some(e) => assert_eq!(self.seed_lf.triage_request(m), Err(e)),
            None => {
                let seed = self.seed_base.triage_request(m);
                assert_eq!(
                    self.seed_lf.triage_request(m),
                    Ok(seed),
                    "triage_request({m})"
                );
            }
        }
    }

    fn seed_respond(&self, value: u16) {
        let v = response(self.seed_lf.status().request, value);
        match self.seed_lf.set_response(v) {
            Ok(()) => self.seed_base.set_response(v),
            // Documented divergence: the seed would overwrite the response it holds.
            Err(SetResponseError::NotProcessing) => {
                assert!(self.seed_base.state().answered, "{:?}", self.seed_base);
            }
            Err(SetResponseError::Claimed) => panic!("set_response: Claimed with no guard"),
        }
    }

    fn seed_wait(&self, target: Target) {
        let m = target.resolve(self.seed_lf.status().request);
        if let Some(e) = expected_invalid(m) {
            assert_eq!(self.seed_lf.wait_get_response(m), Err(e));
            return;
        }
        let nr = request_nr(m).expect("checked valid");
        let polled = self.seed_lf.try_get(nr).map(|r| *r);
        if self.seed_base.would_block(m) {
            assert_eq!(
                polled,
                Err(TryGetError::Pending),
                "the seed would wait for {m}"
            );
            return;
        }
        let seed = self.seed_base.wait_get_response(m).map(|r| *r);
        assert_eq!(polled.ok(), seed, "try_get({m}) vs the seed");
        let got = self.seed_lf.wait_get_response(m).map(|r| r.map(|r| *r));
        assert_eq!(got, Ok(seed), "wait_get_response({m}) vs the seed");
    }

    fn seed_typed_triage(&mut self, target: Target, value: u16) {
        let n = self.seed_lf.status().request;
        let m = target.resolve(n);
        let Some(nr) = self.nr(m) else {
            return;
        };
        let seed = self.seed_base.triage_request(m);
        let got = match self.seed_lf.triage(nr) {
            Triage::Process(guard) => {
                assert_eq!(
                    (guard.previous(), Some(guard.skipped())),
                    (n, m.checked_sub(n + 1))
                );
                let claimed = self.seed_lf.set_response(response(m, value));
                assert_eq!(claimed, Err(SetResponseError::Claimed), "guarded {m}");
                let v = response(m, value);
                assert_eq!(*guard.complete(v), v);
                self.seed_base.set_response(v);
                (true, true)
            }
            Triage::Resend => (false, true),
            Triage::Stale => (false, false),
            Triage::Busy { current } => {
                assert_eq!(current, n, "Busy on the seed session");
                (false, false)
            }
        };
        assert_eq!(got, seed, "typed triage({m}) vs the seed");
    }

    fn numbers(&mut self, target: Target) {
        let m = target.resolve(self.model.n);
        match self.nr(m) {
            Some(nr) => {
                let next = nr.next().map(RequestNr::get);
                let expected = expected_invalid(m + 1).map_or(Ok(m + 1), Err);
                assert_eq!(next, expected, "{m}.next()");
            }
            None => {
                let e = expected_invalid(m).expect("refused");
                assert!(!e.to_string().is_empty());
                assert_eq!(self.lf.triage_request(m), Err(e));
                assert_eq!(self.lf.wait_get_response(m), Err(e));
                assert_eq!(self.seed_lf.triage_request(m), Err(e));
                assert_eq!(self.seed_lf.wait_get_response(m), Err(e));
            }
        }
    }

    /// After every operation: both sessions agree with their references, and a guard
    /// is alive exactly while the typed session is processing.
    fn check_state(&mut self, i: usize, op: Op) {
        let status = self.lf.status();
        assert_eq!(status, self.model.status(), "after op {i}: {op:?}");
        let held: Vec<u64> = self.guards().map(|g| g.request().get()).collect();
        let processing = self.model.outcome == Outcome::Processing;
        assert_eq!(
            held,
            processing.then_some(self.model.n).as_slice(),
            "guards"
        );
        if self.base_defined {
            self.summary.compared_with_seed += 1;
            assert_eq!(
                self.base.state(),
                seed_view(status),
                "seed after op {i}: {op:?}"
            );
        }
        // The seed's calls never abandon: the second session is Ready or Processing.
        let seed_status = self.seed_lf.status();
        assert_ne!(seed_status.phase, Phase::Abandoned, "after op {i}: {op:?}");
        assert_eq!(
            self.seed_base.state(),
            seed_view(seed_status),
            "seed session after op {i}: {op:?}"
        );
    }

    /// Drops every guard still held (abandoning its request); then no handler told to
    /// resend may still find its request pending.
    fn finish(mut self) -> Summary {
        for h in 0..self.handlers.len() {
            if matches!(self.handlers[h], Handler::Holding(_)) {
                self.abandon(h as u8, true);
            }
        }
        for h in 0..self.handlers.len() {
            if let Handler::Resending(m) = self.handlers[h] {
                let got = self.lf.try_get(m);
                assert_ne!(got, Err(TryGetError::Pending), "{m} pending with no guard");
                self.check_get(m, got);
                self.handlers[h] = Handler::Idle;
            }
        }
        assert_ne!(self.lf.status().phase, Phase::Processing);
        self.summary
    }
}
