//! Read your writes while reads move first: the proxy remembers, for a short while, which side
//! took the latest write of each sticky key, so a read of that key on a route with
//! `read_your_writes_ms = N` goes to that side for N ms after the write — even where the read
//! route's split would send it to the other side, whose copy of the data (a follower, a
//! mirror) may not have the write yet.
//!
//! [`RecentWrites`] is one bounded, lock-free map per proxy, shared by its workers: key hash →
//! (side, time on the proxy's clock). A key is the value of a route's sticky key *and its
//! source* (`header:x-user-id` and `cookie:uid` with the same value are different keys), so a
//! read matches the writes made on any route whose sticky key comes from the same source.
//! Entries are never removed: they expire (a read judges their age on the proxy's clock) and
//! are overwritten — 4-way set-associative, [`CAPACITY`] entries, a write replacing the oldest
//! entry of its set when all four are taken. A key whose entry was overwritten within its
//! window (more than four keys of one set written within N ms) is read as if never written:
//! the read follows the split. A different key matching an entry needs the same 14 bits of set
//! and 24 bits of tag (about one chance in 2^24 per live entry in the set); it would send one
//! read to the side another key's write took.
//!
//! Cost: a write on a route whose sticky source some read route uses hashes its key and stores
//! one word (after its side answered); a read on a route with the setting hashes its key and
//! loads four words. Routes without the setting pay one branch; nothing allocates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::split::{Side, Sticky};

/// Sets; a power of two.
const SETS: usize = 1 << 14;
/// Entries per set.
const WAYS: usize = 4;
/// Keys remembered at most.
pub const CAPACITY: usize = SETS * WAYS;

const TAG_SHIFT: u32 = 40;
const SIDE_BIT: u64 = 1 << 39;
const MS_MASK: u64 = SIDE_BIT - 1;

/// The seed that makes a key's hash depend on where the key comes from (`header:x-user-id`).
/// Computed once per route when a table is built.
pub(crate) fn source_seed(sticky: &Sticky) -> u64 {
    xxh3_64(sticky.to_string().as_bytes())
}

/// A key's hash under its source's seed.
#[inline]
pub(crate) fn key_hash(seed: u64, key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, seed)
}

/// Which side took the latest write of recently written keys; see the module doc.
pub(crate) struct RecentWrites {
    /// `SETS × WAYS` words: tag (24 bits) | side (1 bit, set = new) | ms since `base` + 1
    /// (39 bits); 0 = empty.
    slots: Box<[AtomicU64]>,
    /// Times are kept as milliseconds since this reading of the proxy's clock.
    base: Instant,
}

impl RecentWrites {
    /// An empty map; times are measured from `now` (the proxy's clock).
    pub fn new(now: Instant) -> RecentWrites {
        RecentWrites {
            slots: (0..CAPACITY).map(|_| AtomicU64::new(0)).collect(),
            base: now,
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.base).as_millis();
        u64::try_from(ms)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
            .min(MS_MASK)
    }

    fn set(&self, hash: u64) -> &[AtomicU64] {
        let i = (hash as usize & (SETS - 1)) * WAYS;
        &self.slots[i..i + WAYS]
    }

    /// Remembers that `side` took a write of the key hashed to `hash` at `now`.
    pub fn record(&self, hash: u64, side: Side, now: Instant) {
        let tag = hash >> TAG_SHIFT;
        let side_bit = if side == Side::New { SIDE_BIT } else { 0 };
        let word = (tag << TAG_SHIFT) | side_bit | self.ms(now);
        let set = self.set(hash);
        // The key's own entry, else an empty one, else the oldest.
        let mut pick = 0;
        let mut oldest = u64::MAX;
        for (i, slot) in set.iter().enumerate() {
            let v = slot.load(Ordering::Relaxed);
            if v != 0 && v >> TAG_SHIFT == tag {
                pick = i;
                break;
            }
            let age_key = if v == 0 { 0 } else { v & MS_MASK };
            if age_key < oldest {
                oldest = age_key;
                pick = i;
            }
        }
        set[pick].store(word, Ordering::Relaxed);
    }

    /// The side that took the key's latest write, if it was less than `within` before `now`.
    #[inline]
    pub fn lookup(&self, hash: u64, within: Duration, now: Instant) -> Option<Side> {
        let tag = hash >> TAG_SHIFT;
        let now_ms = self.ms(now);
        let within = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        let mut newest: Option<u64> = None;
        for slot in self.set(hash) {
            let v = slot.load(Ordering::Relaxed);
            if v != 0 && v >> TAG_SHIFT == tag && newest.is_none_or(|n| v & MS_MASK > n & MS_MASK) {
                newest = Some(v);
            }
        }
        let v = newest?;
        let age = now_ms.saturating_sub(v & MS_MASK);
        (age < within).then_some(if v & SIDE_BIT != 0 {
            Side::New
        } else {
            Side::Legacy
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: Duration = Duration::from_millis(2000);

    #[test]
    fn a_write_is_remembered_for_its_window_then_forgotten() {
        let t0 = Instant::now();
        let m = RecentWrites::new(t0);
        let seed = source_seed(&Sticky::parse("header:X-User-Id").unwrap());
        let h = key_hash(seed, b"alice");
        assert_eq!(m.lookup(h, N, t0), None);
        m.record(h, Side::Legacy, t0 + Duration::from_millis(10));
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(m.lookup(h, N, at(10)), Some(Side::Legacy));
        assert_eq!(m.lookup(h, N, at(2009)), Some(Side::Legacy));
        assert_eq!(m.lookup(h, N, at(2010)), None, "N ms after: expired");
        // The latest write wins.
        m.record(h, Side::New, at(3000));
        assert_eq!(m.lookup(h, N, at(3000)), Some(Side::New));
        // Another source with the same value is another key.
        let cookie = source_seed(&Sticky::parse("cookie:uid").unwrap());
        assert_eq!(m.lookup(key_hash(cookie, b"alice"), N, at(3000)), None);
    }

    #[test]
    fn a_full_set_forgets_its_oldest_entry() {
        let t0 = Instant::now();
        let m = RecentWrites::new(t0);
        // Five hashes in set 7 with different tags.
        let h = |i: u64| (i << TAG_SHIFT) | 7;
        for i in 1..=5u64 {
            m.record(h(i), Side::New, t0 + Duration::from_millis(i));
        }
        let now = t0 + Duration::from_millis(10);
        assert_eq!(m.lookup(h(1), N, now), None, "the oldest was replaced");
        for i in 2..=5u64 {
            assert_eq!(m.lookup(h(i), N, now), Some(Side::New), "{i}");
        }
        // Rewriting a key reuses its own entry.
        m.record(h(3), Side::Legacy, now);
        for i in [2u64, 4, 5] {
            assert_eq!(m.lookup(h(i), N, now), Some(Side::New), "{i}");
        }
        assert_eq!(m.lookup(h(3), N, now), Some(Side::Legacy));
    }
}
