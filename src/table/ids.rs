//! Session ids: unguessable, never 0, unique within a table, and carrying the number of
//! the process that owns the session in their top bits.
//!
//! An id is `owner << RANDOM_BITS | random`, where `random` is SipHash-2-4 of a counter
//! under a 128-bit key drawn from the operating system's random source (`getrandom`)
//! when the table is made: different on every start, unguessable without the key, and
//! never 0. Holding one id tells nothing about any other. Log fingerprints are keyed
//! with a second key drawn the same way, so a fingerprint says nothing of the id key.
//! A router in front of several processes reads the owner with [`owner_of`] and sends a
//! reconnecting client back to the process that holds its session.

use std::cell::Cell;
use std::fmt;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of an id that name its owner (the top ones).
pub const OWNER_BITS: u32 = 8;

/// Bits of an id drawn at random (the rest).
pub const RANDOM_BITS: u32 = 64 - OWNER_BITS;

const RANDOM_MASK: u64 = (1 << RANDOM_BITS) - 1;

/// The owner number an id carries: the `owner` of the table that made it.
pub fn owner_of(id: u64) -> u8 {
    (id >> RANDOM_BITS) as u8
}

/// Numbers handed out to threads in blocks, so that threads making sessions at once
/// do not all increment one shared counter.
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(0);

const BLOCK: u64 = 1024;

thread_local! {
    /// The rest of this thread's block: (next, end).
    static BLOCK_LEFT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A number no other call in this process gets (the input of the keyed hash: only
/// its uniqueness matters).
fn next_unique() -> u64 {
    BLOCK_LEFT.with(|left| {
        let (mut next, mut end) = left.get();
        if next == end {
            // ORDERING: only uniqueness of the block matters.
            next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
            end = next + BLOCK;
        }
        left.set((next + 1, end));
        next
    })
}

/// A 128-bit key for SipHash-2-4, drawn from the operating system's random source.
#[derive(Clone, Copy)]
struct Key(u64, u64);

impl Key {
    /// # Panics
    /// If the operating system's random source fails: ids made without it could be
    /// guessed, and an id is a session's only credential.
    fn draw() -> Key {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        let (k0, k1) = bytes.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        Key(word(k0), word(k1))
    }

    /// The keyed hash of `n`: a pseudo-random function of it, for whoever lacks the key.
    fn hash(self, n: u64) -> u64 {
        // std's SipHash-2-4 with a caller's key is deprecated only in favour of
        // `DefaultHasher`, whose key cannot be set; it is the PRF this needs.
        #[allow(deprecated)]
        let mut hasher = std::hash::SipHasher::new_with_keys(self.0, self.1);
        hasher.write_u64(n);
        hasher.finish()
    }
}

/// Makes the ids of one table.
pub(crate) struct IdMaker {
    ids: Key,
    fingerprints: Key,
    owner: u8,
}

impl IdMaker {
    pub(crate) fn new(owner: u8) -> Self {
        IdMaker {
            ids: Key::draw(),
            fingerprints: Key::draw(),
            owner,
        }
    }

    /// A fresh candidate id (the table checks it is not live yet).
    pub(crate) fn next(&self) -> u64 {
        loop {
            let n = next_unique();
            let random = self.ids.hash(n) & RANDOM_MASK;
            if random != 0 {
                return u64::from(self.owner) << RANDOM_BITS | random;
            }
        }
    }

    pub(crate) fn fingerprint(&self, id: u64) -> Fingerprint {
        Fingerprint(self.fingerprints.hash(id) as u32)
    }
}

impl fmt::Debug for IdMaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdMaker")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// A short keyed hash of a session id, for logs: the same session always shows the same
/// fingerprint in one process, but the fingerprint does not reveal the id (which is the
/// session's only credential).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u32);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_carry_their_owner_and_are_never_zero() {
        for owner in [0u8, 1, 200, 255] {
            let maker = IdMaker::new(owner);
            // Each id is a keyed hash: a few under Miri, which interprets every step.
            for _ in 0..if cfg!(miri) { 50 } else { 1000 } {
                let id = maker.next();
                assert_ne!(id, 0);
                assert_ne!(id & RANDOM_MASK, 0);
                assert_eq!(owner_of(id), owner);
            }
        }
    }

    #[test]
    fn ids_of_one_maker_are_distinct_and_two_makers_differ() {
        let (a, b) = (IdMaker::new(3), IdMaker::new(3));
        let n = if cfg!(miri) { 200 } else { 10_000 };
        let first: HashSet<u64> = (0..n).map(|_| a.next()).collect();
        assert_eq!(first.len(), n);
        let second: HashSet<u64> = (0..n).map(|_| b.next()).collect();
        assert!(
            first.is_disjoint(&second),
            "another start draws other ids from the same counter"
        );
    }

    /// Consecutive ids share no structure a guesser could use: each random bit is set
    /// about half the time, and the difference of consecutive ids is not constant.
    #[test]
    #[cfg_attr(miri, ignore = "statistical: 4,096 keyed hashes, too slow under Miri")]
    fn the_random_bits_look_random() {
        let maker = IdMaker::new(7);
        let ids: Vec<u64> = (0..4096).map(|_| maker.next()).collect();
        for bit in 0..RANDOM_BITS {
            let set = ids.iter().filter(|id| *id >> bit & 1 == 1).count();
            assert!((1700..2400).contains(&set), "bit {bit} set {set} of 4096");
        }
        let steps: HashSet<u64> = ids.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        assert!(steps.len() > 4000, "ids follow a pattern");
    }

    #[test]
    fn the_two_keys_are_drawn_apart_and_differ_on_every_start() {
        let (a, b) = (IdMaker::new(0), IdMaker::new(0));
        let keys = [a.ids, a.fingerprints, b.ids, b.fingerprints].map(|k| (k.0, k.1));
        let distinct: HashSet<(u64, u64)> = keys.into_iter().collect();
        assert_eq!(distinct.len(), 4, "a key was drawn twice");
        // The fingerprint of an id is not its id hash under the id key.
        let id = a.next();
        assert_ne!(a.fingerprint(id).0, a.ids.hash(id) as u32);
    }

    /// SipHash-2-4's published test vector for the key 00..0f and the 8-byte message
    /// 00..07: the hash is the PRF it claims to be.
    #[test]
    fn the_keyed_hash_is_siphash_2_4() {
        let key = Key(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        assert_eq!(key.hash(0x0706_0504_0302_0100), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn a_fingerprint_is_stable_and_hides_the_id() {
        let maker = IdMaker::new(0);
        let id = maker.next();
        assert_eq!(maker.fingerprint(id), maker.fingerprint(id));
        let shown = maker.fingerprint(id).to_string();
        assert_eq!(shown.len(), 8);
        assert!(!shown.contains(&format!("{:x}", id & 0xffff_ffff)));
    }
}
