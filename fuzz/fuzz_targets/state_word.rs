//! The packed state word, through the internals `cargo fuzz` exposes (`cfg(fuzzing)`).
//!
//! Input: first one set of [`Fields`] (request numbers biased to the edges 0, 1,
//! MAX - 1, MAX, MAX + 1 and u64::MAX, readers to 0..=1024), checked through
//! `Word::encode`: valid fields round-trip exactly through `decode`, a request above
//! MAX is `RequestTooLarge`, more than 1023 readers `TooManyReaders` (the request is
//! checked first), an impossible combination `Invalid`; nothing wraps. Then the rest of
//! the bytes drive a `StateWord` through transitions, each called only where its
//! precondition (state.rs) holds, `enter_from` with a snapshot the word held a few
//! steps ago, against a model of the fields: after each, the word is the model's,
//! `encode(decode(word))` gives it back, and `decide` follows the transition table.

#![no_main]

use exactly_once::fuzzing::{decide, Decision, EncodeError, Fields, Refusal, StateWord, Word};
use exactly_once::RequestNr;
use libfuzzer_sys::fuzz_target;

const MAX: u64 = RequestNr::MAX;
const MAX_READERS: u64 = 1023;
const MAX_TRANSITIONS: usize = 512;

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
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

    /// A request number, mostly at the edges of the 48-bit field.
    fn request(&mut self) -> u64 {
        match self.u8() % 12 {
            0 => 0,
            1 => 1,
            2 => 2,
            3 => MAX - 1,
            4 => MAX,
            5 => MAX + 1,
            6 => u64::MAX,
            7 => MAX + 1 + u64::from(self.u16()),
            8 => MAX - u64::from(self.u16()),
            9 => 1 << (self.u8() % 64),
            10 => self.u64() & MAX,
            _ => self.u64(),
        }
    }

    /// A reader count, mostly in 0..=1024.
    fn readers(&mut self) -> u64 {
        match self.u8() % 8 {
            0 => 0,
            1 => 1,
            2 => MAX_READERS - 1,
            3 => MAX_READERS,
            4 => MAX_READERS + 1,
            5 => u64::from(self.u16()) % (MAX_READERS + 2),
            6 => u64::from(self.u16()),
            _ => self.u64(),
        }
    }

    fn fields(&mut self) -> Fields {
        let request = self.request();
        let readers = self.readers();
        let flags = self.u8();
        Fields {
            request,
            readers,
            ready: flags & 1 != 0,
            abandoned: flags & 2 != 0,
            parked: flags & 4 != 0,
            unguarded: flags & 8 != 0,
            door: flags & 16 != 0,
        }
    }
}

/// The invariants of state.rs, restated: abandoned only when ready, unguarded only when
/// processing, and no reader once unguarded.
fn combination_is_possible(f: Fields) -> bool {
    (!f.abandoned || f.ready) && (!f.unguarded || !f.ready)
}

/// The transition table, for the word `f` and request `m`.
fn table(f: Fields, m: u64) -> Decision {
    if m < f.request {
        Decision::Stale
    } else if m == f.request {
        Decision::Resend
    } else if f.ready {
        Decision::Start
    } else {
        Decision::Busy
    }
}

/// A valid word: its accessors agree with its fields, it re-encodes to itself, and
/// `decide` follows the table around its request number and at the edges.
fn check_word(w: Word, f: Fields) {
    assert_eq!(w.decode(), f, "{w:?}");
    assert!(w.is_valid(), "{w:?}");
    assert_eq!(Word::encode(f), Ok(w));
    assert_eq!(w.request(), f.request);
    assert_eq!(w.readers(), f.readers);
    assert_eq!(
        (
            w.is_ready(),
            w.is_abandoned(),
            w.is_parked(),
            w.is_unguarded()
        ),
        (f.ready, f.abandoned, f.parked, f.unguarded)
    );
    assert_eq!(w.has_response(), f.ready && !f.abandoned);
    let n = f.request;
    for m in [
        0,
        1,
        n.saturating_sub(1),
        n,
        n + 1,
        n + 2,
        MAX,
        MAX + 1,
        u64::MAX,
    ] {
        assert_eq!(decide(w, m), table(f, m), "decide({w:?}, {m})");
    }
    assert!(!format!("{w:?}").is_empty());
}

fn check_encode(f: Fields) {
    let got = Word::encode(f);
    if f.request > MAX {
        assert_eq!(got, Err(EncodeError::RequestTooLarge(f.request)), "{f:?}");
    } else if f.readers > MAX_READERS {
        assert_eq!(got, Err(EncodeError::TooManyReaders(f.readers)), "{f:?}");
    } else if !combination_is_possible(f) {
        assert_eq!(got, Err(EncodeError::Invalid), "{f:?}");
    } else {
        let w = got.unwrap_or_else(|e| panic!("encode({f:?}): {e:?}"));
        check_word(w, f);
    }
}

/// Who may settle the `Processing(n)` in the word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// The word is `Ready`.
    Nobody,
    /// The thread whose `start` won (a guard, or the seed's `triage_request`).
    Starter,
    /// Started unguarded: waiting for the seed's `set_response` to claim it.
    Unclaimed,
    /// The `set_response` whose `claim` won.
    Claimer,
}

struct Driver {
    word: StateWord,
    model: Fields,
    owner: Owner,
    /// Words the state held after recent steps: the snapshots a reader may still hold.
    snapshots: Vec<Word>,
}

const SNAPSHOTS: usize = 8;

impl Driver {
    fn new() -> Self {
        let model = Fields {
            ready: true,
            ..Fields::default()
        };
        let driver = Driver {
            word: StateWord::new(),
            model,
            owner: Owner::Nobody,
            snapshots: vec![Word::INITIAL],
        };
        assert_eq!(driver.word.load(), Word::encode(model).expect("Ready(0)"));
        driver
    }

    fn current(&self) -> Word {
        Word::encode(self.model).expect("the model is valid")
    }

    /// A number to start, near the current one or at the edges.
    fn next_request(&self, r: &mut Reader) -> u64 {
        let n = self.model.request;
        match r.u8() % 4 {
            0 => n + 1,
            1 => n + 2 + u64::from(r.u16()),
            _ => r.request(),
        }
    }

    fn step(&mut self, r: &mut Reader) {
        match r.u8() % 15 {
            0 | 1 => {
                let m = self.next_request(r);
                self.start(m);
            }
            2 => {
                let m = self.next_request(r);
                self.start_refused(m);
            }
            3 => self.settle(false),
            4 => self.settle(true),
            5 | 6 => {
                let m = match r.u8() % 4 {
                    0 => self.model.request.wrapping_sub(1),
                    1 => self.model.request + 1,
                    _ => self.model.request,
                };
                self.enter(m);
            }
            7 => {
                let times = r.u16();
                self.enter_many(times);
            }
            8 => self.leave(),
            9 => self.leave_all(),
            10 => {
                let stale = r.u8() & 1 != 0;
                self.park(stale);
            }
            11 => {
                let m = self.next_request(r);
                self.start_unguarded(m);
            }
            12 => self.claim(),
            13 => {
                let m = r.request();
                assert_eq!(decide(self.word.load(), m), table(self.model, m));
            }
            _ => {
                let i = usize::from(r.u8()) % self.snapshots.len();
                self.enter_from(self.snapshots[i]);
            }
        }
        let w = self.word.load();
        if self.snapshots.len() == SNAPSHOTS {
            self.snapshots.remove(0);
        }
        self.snapshots.push(w);
        check_word(w, self.model);
        assert_eq!(Word::encode(w.decode()), Ok(w));
        assert!(!format!("{:?}", self.word).is_empty());
    }

    /// `Ready(n) -> Processing(m)`, only for `n < m <= MAX` (else `decide` says why not).
    fn start(&mut self, m: u64) {
        let seen = self.word.load();
        let can_start = self.model.ready && m > self.model.request && m <= MAX;
        if !can_start {
            let d = decide(seen, m);
            assert_eq!(d, table(self.model, m));
            assert!(
                d != Decision::Start || RequestNr::new(m).is_err(),
                "{seen:?} {m}"
            );
            return;
        }
        assert_eq!(decide(seen, m), Decision::Start);
        assert_eq!(self.word.start(m, false, drop), Ok(seen), "start({seen:?}, {m})");
        self.model = Fields {
            request: m,
            readers: self.model.readers,
            ..Fields::default()
        };
        self.owner = Owner::Starter;
    }

    /// A `start` the table refuses returns the table's answer and leaves the word.
    fn start_refused(&mut self, m: u64) {
        let seen = self.word.load();
        // `start` takes valid request numbers only (callers check through `RequestNr`).
        if m > MAX {
            return;
        }
        if let Some(refusal) = Refusal::of(seen, m) {
            assert_eq!(self.word.start(m, false, drop), Err(refusal));
            assert_eq!(self.word.load(), seen);
        }
    }

    /// `complete` or `abandon`, by the owner of `Processing(n)` once readers drained.
    fn settle(&mut self, abandon: bool) {
        let owns = matches!(self.owner, Owner::Starter | Owner::Claimer);
        if self.model.ready || self.model.readers > 0 || !owns {
            return;
        }
        let before = self.current();
        let n = self.model.request;
        let previous = if abandon {
            self.word.abandon(n)
        } else {
            self.word.complete(n)
        };
        assert_eq!(previous, before);
        self.model = Fields {
            request: n,
            ready: true,
            abandoned: abandon,
            ..Fields::default()
        };
        self.owner = Owner::Nobody;
    }

    /// Whether `enter(m)` registers a reader now.
    fn may_enter(&self, m: u64) -> bool {
        self.model.ready && !self.model.abandoned && m == self.model.request
    }

    fn enter(&mut self, m: u64) {
        if !self.may_enter(m) {
            assert_eq!(self.word.enter(m), Err(self.current()), "enter({m})");
        } else if self.model.readers < MAX_READERS {
            assert_eq!(self.word.enter(m), Ok(()));
            self.model.readers += 1;
        }
        // With every reader place taken, `enter` waits for a `leave`: not single-threaded.
    }

    /// `enter_from` a snapshot that may be out of date, as a reader does with the word
    /// it loaded and found `Ready(m)` with a response (the only snapshots it passes).
    fn enter_from(&mut self, snapshot: Word) {
        if !snapshot.has_response() {
            return;
        }
        let m = snapshot.request();
        if !self.may_enter(m) {
            assert_eq!(self.word.enter_from(snapshot, m), Err(self.current()));
        } else if self.model.readers < MAX_READERS {
            assert_eq!(
                self.word.enter_from(snapshot, m),
                Ok(()),
                "from {snapshot:?}"
            );
            self.model.readers += 1;
        }
    }

    fn enter_many(&mut self, times: u16) {
        let n = self.model.request;
        if !self.may_enter(n) {
            return;
        }
        let times = u64::from(times).min(MAX_READERS - self.model.readers);
        for _ in 0..times {
            assert_eq!(self.word.enter(n), Ok(()));
        }
        self.model.readers += times;
    }

    fn leave(&mut self) {
        if self.model.readers > 0 {
            self.word.leave();
            self.model.readers -= 1;
        }
    }

    fn leave_all(&mut self) {
        for _ in 0..self.model.readers {
            self.word.leave();
        }
        self.model.readers = 0;
        self.word.drain_readers();
    }

    /// `park` with the current word (sets PARKED) or a snapshot that is out of date
    /// (fails with the current word unless the snapshot already says PARKED).
    fn park(&mut self, stale: bool) {
        if !stale {
            assert_eq!(self.word.park(self.current()), Ok(()));
            self.model.parked = true;
            return;
        }
        let other = if self.model.request == MAX {
            MAX - 1
        } else {
            self.model.request + 1
        };
        let snapshot = Fields {
            request: other,
            parked: false,
            ..self.model
        };
        let snapshot = Word::encode(snapshot).expect("another request keeps a word valid");
        assert_eq!(self.word.park(snapshot), Err(self.current()));
    }

    /// A seed `triage_request` starts `Processing(m)` unguarded, for whichever
    /// `set_response` claims it (that one drains the readers).
    fn start_unguarded(&mut self, m: u64) {
        let seen = self.word.load();
        if !(self.model.ready && m > self.model.request && m <= MAX) {
            return;
        }
        assert_eq!(self.word.start(m, true, drop), Ok(seen));
        self.model = Fields {
            request: m,
            readers: self.model.readers,
            unguarded: true,
            ..Fields::default()
        };
        self.owner = Owner::Unclaimed;
    }

    fn claim(&mut self) {
        let got = self.word.claim();
        if !self.model.ready && self.model.unguarded {
            assert_eq!(self.owner, Owner::Unclaimed);
            assert_eq!(got, Ok(self.current()));
            self.model.unguarded = false;
            self.owner = Owner::Claimer;
        } else {
            assert_eq!(got, Err(self.current()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    check_encode(r.fields());
    let mut driver = Driver::new();
    for _ in 0..MAX_TRANSITIONS {
        if r.0.is_empty() {
            break;
        }
        driver.step(&mut r);
    }
});
