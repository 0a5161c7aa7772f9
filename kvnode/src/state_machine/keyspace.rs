//! The key space of one database: values by key with their metadata (modification
//! revision, deadline), plus the fixed order KEYS, SCAN and snapshots walk, and a per-bucket
//! earliest deadline that makes finding expired keys cheap.
//!
//! Order: by `(scan_position(key), key)`, where the position is a fixed 64-bit hash
//! (FNV-1a then a SplitMix64 finaliser, never 0). A SCAN cursor is the position to resume
//! from, a plain `u64` as clients expect. A page always ends between two positions, so a
//! key present for the whole scan is returned exactly once whatever else is added or
//! deleted meanwhile (Redis' guarantee, without its rehash duplicates). The hash is fixed
//! forever: it decides snapshot order, which every replica must produce identically.
//!
//! Layout, chosen for memory and for snapshots:
//! - Each key and its value live in one allocation (an [`Item`]); a key costs that plus a
//!   40-byte [`Slot`] (position, item handle, revision, deadline).
//! - Slots sit in sorted buckets of at most [`BUCKET_SPLIT`], each covering a range of
//!   positions, found by binary search in a flat array of the buckets' first positions,
//!   then a binary search inside the bucket. Splitting a bucket shifts that array
//!   (O(keys / 96)), which costs less per insert than a tree's node hops cost per lookup
//!   up to millions of keys.
//! - Buckets and items are reference counted, so cloning a key space (what a snapshot
//!   does, on the raft loop) copies only the bucket handles: O(keys / 96), not O(keys).
//!   A write to a bucket a snapshot still shares copies that one bucket first
//!   (`Arc::make_mut`), so a snapshot in progress costs at most one copy of the slots,
//!   never of the keys and values.
//! - The deadline index is a flat array beside the bucket starts: each bucket's earliest
//!   deadline, kept exact by every write (a write that removes the earliest deadline
//!   rescans that one bucket, at most [`BUCKET_SPLIT`] slots). Finding expired keys walks
//!   that array and opens only buckets whose earliest deadline has passed: no per-key
//!   index to allocate, and a clone stays O(keys / 96).
//!
//! Keys whose positions collide stay in one bucket (a bucket is only split between two
//! positions), so a crafted set of colliding keys makes that bucket large and its inserts
//! linear in its size: slower, never wrong.
//!
//! This layer keeps keys whether or not they have expired: the logical rule (a key past
//! its deadline is gone) is applied by the callers that know the time, through
//! [`Slot::expired_at`] and the `*_live` helpers here.

mod item;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

pub use item::{Item, Slot, NO_DEADLINE};

use super::glob::glob_match;

/// A bucket past this many slots is split in two.
const BUCKET_SPLIT: usize = 128;
/// A bucket under this many slots after a delete is merged into its predecessor when
/// the two fit in [`BUCKET_MERGED_MAX`] (keeps sparse key spaces from paying a bucket per key).
const BUCKET_MERGE_BELOW: usize = 32;
const BUCKET_MERGED_MAX: usize = 96;
/// Restoring sorted input fills buckets to this many slots (a split would leave halves).
const BUCKET_FILL: usize = 96;
/// Random probes RANDOMKEY makes before it falls back to walking the key space (all the
/// probes landing on expired keys means almost every key has expired unreclaimed).
const RANDOM_PROBES_MAX: usize = 64;

/// Keys and values with their metadata, in a deterministic iteration order.
#[derive(Clone)]
pub struct KeySpace {
    /// Each bucket's first position, strictly ascending. Invariant: `starts[0] == 0` (so
    /// every position has a bucket) and as many starts as buckets.
    starts: Vec<u64>,
    /// Invariants: no bucket but the first is empty; each holds slots strictly ascending
    /// by `(position, key)`, positions in `[its start, the next bucket's start)`.
    buckets: Vec<Arc<Vec<Slot>>>,
    /// Invariant: `earliest[b]` is the smallest deadline in bucket `b` ([`NO_DEADLINE`]
    /// when none has one); as many as buckets.
    earliest: Vec<u64>,
    len: usize,
    /// Keys with a deadline (Redis' `expires` count).
    expiring: usize,
    /// Sum of key and value lengths (a snapshot's size, known before writing it).
    data_bytes: usize,
}

impl Default for KeySpace {
    fn default() -> KeySpace {
        KeySpace {
            starts: vec![0],
            buckets: vec![Arc::new(Vec::new())],
            earliest: vec![NO_DEADLINE],
            len: 0,
            expiring: 0,
            data_bytes: 0,
        }
    }
}

impl PartialEq for KeySpace {
    fn eq(&self, other: &KeySpace) -> bool {
        let same = |a: &Slot, b: &Slot| {
            a.key() == b.key()
                && a.value() == b.value()
                && a.revision == b.revision
                && a.deadline == b.deadline
        };
        self.len == other.len && self.slots().zip(other.slots()).all(|(a, b)| same(a, b))
    }
}

impl Eq for KeySpace {}

impl fmt::Debug for KeySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.slots()).finish()
    }
}

/// A key's place in iteration order; never 0, because cursor 0 means "finished".
pub fn scan_position(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (hash ^ (hash >> 31)).max(1)
}

fn earliest_of(slots: &[Slot]) -> u64 {
    slots
        .iter()
        .map(|slot| slot.deadline)
        .min()
        .unwrap_or(NO_DEADLINE)
}

impl KeySpace {
    /// Keys stored, including keys past their deadline not yet reclaimed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys stored with a deadline.
    pub fn expiring(&self) -> usize {
        self.expiring
    }

    /// Total bytes of all keys and values (without any framing); O(1).
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    /// The bucket covering `position`.
    fn bucket_of(&self, position: u64) -> usize {
        // starts[0] == 0, so at least one start is <= any position.
        self.starts.partition_point(|&start| start <= position) - 1
    }

    /// The slot of `key`, expired or not.
    pub fn get(&self, key: &[u8]) -> Option<&Slot> {
        let position = scan_position(key);
        let slots = &self.buckets[self.bucket_of(position)];
        let at = slots
            .binary_search_by(|slot| slot.order(position, key))
            .ok()?;
        Some(&slots[at])
    }

    /// The slot of `key` if it exists and has not expired at `now`.
    pub fn get_live(&self, key: &[u8], now: u64) -> Option<&Slot> {
        self.get(key).filter(|slot| !slot.expired_at(now))
    }

    /// Sets `key` to `value` with its metadata; returns the old slot.
    pub fn insert(
        &mut self,
        key: &[u8],
        value: &[u8],
        revision: u64,
        deadline: Option<u64>,
    ) -> Option<Slot> {
        self.insert_item(Item::new(key, value), revision, deadline)
    }

    /// Stores an existing item (shared, not copied) under its key.
    pub fn insert_item(
        &mut self,
        item: Item,
        revision: u64,
        deadline: Option<u64>,
    ) -> Option<Slot> {
        let position = scan_position(item.key());
        let bucket = self.bucket_of(position);
        let deadline = deadline.unwrap_or(NO_DEADLINE);
        let slot = Slot {
            position,
            item,
            revision,
            deadline,
        };
        self.data_bytes += slot.item.data_bytes();
        self.expiring += usize::from(deadline != NO_DEADLINE);
        let slots = Arc::make_mut(&mut self.buckets[bucket]);
        let found = slots.binary_search_by(|other| other.order(position, slot.key()));
        match found {
            Ok(at) => {
                let old = std::mem::replace(&mut slots[at], slot);
                self.data_bytes -= old.item.data_bytes();
                self.expiring -= usize::from(old.deadline != NO_DEADLINE);
                self.deadline_changed(bucket, old.deadline, deadline);
                Some(old)
            }
            Err(at) => {
                slots.insert(at, slot);
                self.len += 1;
                self.earliest[bucket] = self.earliest[bucket].min(deadline);
                if self.buckets[bucket].len() > BUCKET_SPLIT {
                    self.split(bucket);
                }
                None
            }
        }
    }

    /// Changes the metadata of an existing key (its value stays); false if it is absent.
    pub fn set_meta(&mut self, key: &[u8], revision: u64, deadline: Option<u64>) -> bool {
        let position = scan_position(key);
        let bucket = self.bucket_of(position);
        let Ok(at) = self.buckets[bucket].binary_search_by(|slot| slot.order(position, key)) else {
            return false;
        };
        let deadline = deadline.unwrap_or(NO_DEADLINE);
        let slot = &mut Arc::make_mut(&mut self.buckets[bucket])[at];
        let old = std::mem::replace(&mut slot.deadline, deadline);
        slot.revision = revision;
        self.expiring =
            self.expiring + usize::from(deadline != NO_DEADLINE) - usize::from(old != NO_DEADLINE);
        self.deadline_changed(bucket, old, deadline);
        true
    }

    /// Keeps `earliest[bucket]` exact after one slot's deadline went from `old` to `new`.
    fn deadline_changed(&mut self, bucket: usize, old: u64, new: u64) {
        if new < self.earliest[bucket] {
            self.earliest[bucket] = new;
        } else if old == self.earliest[bucket] && new != old {
            self.earliest[bucket] = earliest_of(&self.buckets[bucket]);
        }
    }

    /// Removes `key`; returns its slot.
    pub fn remove(&mut self, key: &[u8]) -> Option<Slot> {
        let position = scan_position(key);
        let bucket = self.bucket_of(position);
        // Searched before `make_mut`, so a miss never copies a bucket a snapshot shares.
        let at = self.buckets[bucket]
            .binary_search_by(|slot| slot.order(position, key))
            .ok()?;
        let slots = Arc::make_mut(&mut self.buckets[bucket]);
        let removed = slots.remove(at);
        let left = slots.len();
        self.len -= 1;
        self.data_bytes -= removed.item.data_bytes();
        self.expiring -= usize::from(removed.deadline != NO_DEADLINE);
        if removed.deadline == self.earliest[bucket] && removed.deadline != NO_DEADLINE {
            self.earliest[bucket] = earliest_of(&self.buckets[bucket]);
        }
        if bucket != 0 && left == 0 {
            // An empty bucket goes whatever its predecessor's size: that one's range
            // simply grows. Kept, it could never be merged later (a remove finds nothing
            // in it), and it would break the layout's invariant.
            self.starts.remove(bucket);
            self.buckets.remove(bucket);
            self.earliest.remove(bucket);
        } else if bucket != 0 && left < BUCKET_MERGE_BELOW {
            self.merge_into_predecessor(bucket);
        }
        Some(removed)
    }

    /// Splits `bucket` in two, between two positions near its middle.
    fn split(&mut self, bucket: usize) {
        let slots = Arc::make_mut(&mut self.buckets[bucket]);
        let differs = |at: &usize| slots[*at - 1].position != slots[*at].position;
        let middle = slots.len() / 2;
        let Some(cut) = (middle..slots.len())
            .find(differs)
            .or_else(|| (1..middle).rev().find(differs))
        else {
            return; // one position throughout: colliding keys stay together
        };
        let upper = slots.split_off(cut);
        slots.shrink_to(BUCKET_SPLIT);
        self.earliest[bucket] = earliest_of(slots);
        self.starts.insert(bucket + 1, upper[0].position);
        self.earliest.insert(bucket + 1, earliest_of(&upper));
        self.buckets.insert(bucket + 1, Arc::new(upper));
    }

    fn merge_into_predecessor(&mut self, bucket: usize) {
        if self.buckets[bucket - 1].len() + self.buckets[bucket].len() > BUCKET_MERGED_MAX {
            return;
        }
        self.starts.remove(bucket);
        let moved = self.buckets.remove(bucket);
        let moved_earliest = self.earliest.remove(bucket);
        self.earliest[bucket - 1] = self.earliest[bucket - 1].min(moved_earliest);
        Arc::make_mut(&mut self.buckets[bucket - 1]).extend(moved.iter().cloned());
    }

    /// Adds `key` after every key present; the caller guarantees `(position, key)` order
    /// (restoring a snapshot, which the reader checks). Fills buckets instead of splitting.
    ///
    /// # Panics
    /// If the order is broken (a caller bug: the snapshot reader checks it first).
    pub fn push_sorted(&mut self, key: &[u8], value: &[u8], revision: u64, deadline: Option<u64>) {
        let position = scan_position(key);
        let last = self.buckets.last_mut().expect("a bucket starts at 0");
        if let Some(tail) = last.last() {
            assert!(
                tail.order(position, key).is_lt(),
                "push_sorted out of order"
            );
        }
        let deadline = deadline.unwrap_or(NO_DEADLINE);
        let item = Item::new(key, value);
        self.len += 1;
        self.data_bytes += item.data_bytes();
        self.expiring += usize::from(deadline != NO_DEADLINE);
        let slot = Slot {
            position,
            item,
            revision,
            deadline,
        };
        let full =
            last.len() >= BUCKET_FILL && last.last().is_some_and(|tail| tail.position != position);
        if full {
            let mut fresh = Vec::with_capacity(BUCKET_SPLIT);
            fresh.push(slot);
            self.starts.push(position);
            self.buckets.push(Arc::new(fresh));
            self.earliest.push(deadline);
        } else {
            Arc::make_mut(last).push(slot);
            let earliest = self.earliest.last_mut().expect("one per bucket");
            *earliest = (*earliest).min(deadline);
        }
    }

    /// Every slot, in iteration order (expired ones included).
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.buckets.iter().flat_map(|slots| slots.iter())
    }

    /// Every live key matching `pattern`, in iteration order.
    pub fn keys_matching(&self, pattern: &[u8], now: u64) -> Vec<Bytes> {
        let all = pattern == b"*";
        self.slots()
            .filter(|slot| !slot.expired_at(now))
            .map(Slot::key)
            .filter(|key| all || glob_match(pattern, key))
            .map(Bytes::copy_from_slice)
            .collect()
    }

    /// One SCAN page: visits at least `count` keys from `cursor` (more only to finish the
    /// last position), returns the live ones matching `pattern` and the cursor to resume
    /// from (0 when the scan is complete).
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        pattern: Option<&[u8]>,
        now: u64,
    ) -> (u64, Vec<Bytes>) {
        let mut found = Vec::new();
        let mut last_position = 0u64;
        let range = self.buckets[self.bucket_of(cursor)..]
            .iter()
            .flat_map(|slots| slots.iter())
            .skip_while(|slot| slot.position < cursor);
        for (visited, slot) in range.enumerate() {
            if visited >= count && slot.position != last_position {
                return (slot.position, found);
            }
            last_position = slot.position;
            let key = slot.key();
            if !slot.expired_at(now) && pattern.is_none_or(|pattern| glob_match(pattern, key)) {
                found.push(Bytes::copy_from_slice(key));
            }
        }
        (0, found)
    }

    /// Buckets holding at least one key expired at `now`.
    fn buckets_with_expired(&self, now: u64) -> impl Iterator<Item = &Arc<Vec<Slot>>> {
        self.earliest
            .iter()
            .zip(&self.buckets)
            .filter(move |(earliest, _)| now > **earliest)
            .map(|(_, slots)| slots)
    }

    /// Keys stored but expired at `now`: O(buckets + slots of the buckets holding one).
    pub fn count_expired(&self, now: u64) -> usize {
        self.buckets_with_expired(now)
            .map(|slots| slots.iter().filter(|slot| slot.expired_at(now)).count())
            .sum()
    }

    /// Keys live at `now`.
    pub fn live_len(&self, now: u64) -> usize {
        self.len - self.count_expired(now)
    }

    /// Up to `keys_max` keys expired at `now` whose lengths add up to at most `bytes_max`
    /// (at least one key when any has expired), in iteration order.
    pub fn expired_keys(&self, now: u64, keys_max: usize, bytes_max: usize) -> Vec<Bytes> {
        let mut found = Vec::new();
        let mut bytes = 0usize;
        let expired = self
            .buckets_with_expired(now)
            .flat_map(|slots| slots.iter())
            .filter(|slot| slot.expired_at(now));
        for slot in expired {
            let key = slot.key();
            if found.len() >= keys_max || (!found.is_empty() && bytes + key.len() > bytes_max) {
                break;
            }
            bytes += key.len();
            found.push(Bytes::copy_from_slice(key));
        }
        found
    }

    /// A live key chosen by `seed` (deterministic: the same seed and state give the same
    /// key), or `None` when no key is live.
    pub fn random_live(&self, seed: u64, now: u64) -> Option<&Slot> {
        if self.len == 0 {
            return None;
        }
        let mut state = seed;
        for _ in 0..RANDOM_PROBES_MAX {
            state = splitmix64(state);
            let bucket = usize::try_from(state % self.buckets.len() as u64).expect("fits");
            let slots = &self.buckets[bucket];
            if slots.is_empty() {
                continue;
            }
            let at = usize::try_from((state >> 32) % slots.len() as u64).expect("fits");
            if !slots[at].expired_at(now) {
                return Some(&slots[at]);
            }
        }
        self.slots().find(|slot| !slot.expired_at(now))
    }

    /// Checks the layout's invariants (O(n): tests and debug builds).
    pub fn check_invariants(&self) {
        assert_eq!(self.starts.first(), Some(&0), "no bucket starts at 0");
        assert_eq!(
            self.starts.len(),
            self.buckets.len(),
            "starts and buckets differ"
        );
        assert_eq!(
            self.earliest.len(),
            self.buckets.len(),
            "earliest deadlines and buckets differ"
        );
        assert!(
            self.starts.is_sorted_by(|a, b| a < b),
            "bucket starts out of order"
        );
        let (mut count, mut bytes, mut expiring) = (0, 0, 0);
        let mut previous: Option<&Slot> = None;
        for (index, (start, slots)) in self.starts.iter().zip(&self.buckets).enumerate() {
            assert!(index == 0 || !slots.is_empty(), "empty bucket at {start}");
            assert_eq!(
                self.earliest[index],
                earliest_of(slots),
                "bucket {index}'s earliest deadline is stale"
            );
            let end = self.starts.get(index + 1).copied();
            for slot in slots.iter() {
                let key = slot.key();
                assert_eq!(
                    slot.position,
                    scan_position(key),
                    "key {key:?} filed at the wrong position"
                );
                assert!(
                    slot.position >= *start && end.is_none_or(|end| slot.position < end),
                    "key {key:?} in the wrong bucket"
                );
                if let Some(previous) = previous {
                    assert!(
                        previous.order(slot.position, key).is_lt(),
                        "slots out of order at {key:?}"
                    );
                }
                previous = Some(slot);
                count += 1;
                bytes += slot.item.data_bytes();
                expiring += usize::from(slot.deadline != NO_DEADLINE);
            }
        }
        assert_eq!(count, self.len, "len disagrees with the slots");
        assert_eq!(
            bytes, self.data_bytes,
            "data_bytes disagrees with the slots"
        );
        assert_eq!(expiring, self.expiring, "expiring disagrees with the slots");
    }
}

/// SplitMix64: the step of a seeded generator (RANDOMKEY's choices), never a global RNG.
pub fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
