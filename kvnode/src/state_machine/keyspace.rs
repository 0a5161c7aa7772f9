//! The key space: values by key, plus the fixed order KEYS, SCAN and snapshots walk.
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
//!   24-byte slot, where a `HashMap<Bytes, Bytes>` with a sorted index cost three to five
//!   allocations and about twice the bytes.
//! - Slots sit in sorted buckets of at most [`BUCKET_SPLIT`], each covering a range of
//!   positions, found by binary search in a flat array of the buckets' first positions
//!   (about 1,000 for 100k keys: 8 KiB, cache-resident), then a binary search inside the
//!   bucket. Splitting a bucket shifts that array (O(keys / 96)), which costs less per
//!   insert than a tree's node hops cost per lookup up to millions of keys.
//! - Buckets and items are reference counted, so cloning a key space (what a snapshot
//!   does, on the raft loop) copies only the bucket handles: O(keys / 96), not O(keys).
//!   A write to a bucket a snapshot still shares copies that one bucket first
//!   (`Arc::make_mut`), so a snapshot in progress costs at most one copy of the slots,
//!   never of the keys and values.
//!
//! Keys whose positions collide stay in one bucket (a bucket is only split between two
//! positions), so a crafted set of colliding keys makes that bucket large and its inserts
//! linear in its size: slower, never wrong.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::glob::glob_match;

/// A bucket past this many slots is split in two.
const BUCKET_SPLIT: usize = 128;
/// A bucket under this many slots after a delete is merged into its predecessor when
/// the two fit in [`BUCKET_MERGED_MAX`] (keeps sparse key spaces from paying a bucket per key).
const BUCKET_MERGE_BELOW: usize = 32;
const BUCKET_MERGED_MAX: usize = 96;
/// Restoring sorted input fills buckets to this many slots (a split would leave halves).
const BUCKET_FILL: usize = 96;

/// One key and its value in a single shared allocation: `key_len: u32le, key, value`.
#[derive(Clone)]
pub struct Item(Arc<[u8]>);

impl Item {
    fn new(key: &[u8], value: &[u8]) -> Item {
        let key_len = u32::try_from(key.len()).expect("keys are capped far below 4 GiB");
        let mut joined = Vec::with_capacity(4 + key.len() + value.len());
        joined.extend_from_slice(&key_len.to_le_bytes());
        joined.extend_from_slice(key);
        joined.extend_from_slice(value);
        Item(Arc::from(joined))
    }

    fn key_len(&self) -> usize {
        let prefix: [u8; 4] = self.0[..4]
            .try_into()
            .expect("an item starts with its key length");
        u32::from_le_bytes(prefix) as usize
    }

    pub fn key(&self) -> &[u8] {
        &self.0[4..4 + self.key_len()]
    }

    pub fn value(&self) -> &[u8] {
        &self.0[4 + self.key_len()..]
    }

    /// The value as `Bytes` sharing this item's allocation (no copy of the value).
    pub fn into_value(self) -> Bytes {
        Bytes::from_owner(self)
    }

    fn data_bytes(&self) -> usize {
        self.0.len() - 4
    }
}

impl AsRef<[u8]> for Item {
    /// The value: what [`Bytes::from_owner`] exposes.
    fn as_ref(&self) -> &[u8] {
        self.value()
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} => {:?}",
            Bytes::copy_from_slice(self.key()),
            Bytes::copy_from_slice(self.value())
        )
    }
}

#[derive(Clone)]
struct Slot {
    position: u64,
    item: Item,
}

impl Slot {
    fn order(&self, position: u64, key: &[u8]) -> std::cmp::Ordering {
        self.position
            .cmp(&position)
            .then_with(|| self.item.key().cmp(key))
    }
}

/// Keys and values, with a deterministic iteration order.
#[derive(Clone)]
pub struct KeySpace {
    /// Each bucket's first position, strictly ascending. Invariant: `starts[0] == 0` (so
    /// every position has a bucket) and as many starts as buckets.
    starts: Vec<u64>,
    /// Invariants: no bucket but the first is empty; each holds slots strictly ascending
    /// by `(position, key)`, positions in `[its start, the next bucket's start)`.
    buckets: Vec<Arc<Vec<Slot>>>,
    len: usize,
    /// Sum of key and value lengths (a snapshot's size, known before writing it).
    data_bytes: usize,
}

impl Default for KeySpace {
    fn default() -> KeySpace {
        KeySpace {
            starts: vec![0],
            buckets: vec![Arc::new(Vec::new())],
            len: 0,
            data_bytes: 0,
        }
    }
}

impl PartialEq for KeySpace {
    fn eq(&self, other: &KeySpace) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for KeySpace {}

impl fmt::Debug for KeySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter().map(|(key, value)| {
                    (Bytes::copy_from_slice(key), Bytes::copy_from_slice(value))
                }),
            )
            .finish()
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

impl KeySpace {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
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

    pub fn get(&self, key: &[u8]) -> Option<&Item> {
        let position = scan_position(key);
        let slots = &self.buckets[self.bucket_of(position)];
        let at = slots
            .binary_search_by(|slot| slot.order(position, key))
            .ok()?;
        Some(&slots[at].item)
    }

    /// Sets `key` to `value`; returns the old item.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Option<Item> {
        let position = scan_position(key);
        let bucket = self.bucket_of(position);
        let slots = Arc::make_mut(&mut self.buckets[bucket]);
        let item = Item::new(key, value);
        self.data_bytes += item.data_bytes();
        match slots.binary_search_by(|slot| slot.order(position, key)) {
            Ok(at) => {
                let old = std::mem::replace(&mut slots[at].item, item);
                self.data_bytes -= old.data_bytes();
                Some(old)
            }
            Err(at) => {
                slots.insert(at, Slot { position, item });
                self.len += 1;
                if slots.len() > BUCKET_SPLIT {
                    self.split(bucket);
                }
                None
            }
        }
    }

    /// Removes `key`; returns its item.
    pub fn remove(&mut self, key: &[u8]) -> Option<Item> {
        let position = scan_position(key);
        let bucket = self.bucket_of(position);
        // Searched before `make_mut`, so a miss never copies a bucket a snapshot shares.
        let at = self.buckets[bucket]
            .binary_search_by(|slot| slot.order(position, key))
            .ok()?;
        let slots = Arc::make_mut(&mut self.buckets[bucket]);
        let removed = slots.remove(at).item;
        let left = slots.len();
        self.len -= 1;
        self.data_bytes -= removed.data_bytes();
        if bucket != 0 && left == 0 {
            // An empty bucket goes whatever its predecessor's size: that one's range
            // simply grows. Kept, it could never be merged later (a remove finds nothing
            // in it), and it would break the layout's invariant.
            self.starts.remove(bucket);
            self.buckets.remove(bucket);
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
        self.starts.insert(bucket + 1, upper[0].position);
        self.buckets.insert(bucket + 1, Arc::new(upper));
    }

    fn merge_into_predecessor(&mut self, bucket: usize) {
        if self.buckets[bucket - 1].len() + self.buckets[bucket].len() > BUCKET_MERGED_MAX {
            return;
        }
        self.starts.remove(bucket);
        let moved = self.buckets.remove(bucket);
        Arc::make_mut(&mut self.buckets[bucket - 1]).extend(moved.iter().cloned());
    }

    /// Adds `key` after every key present; the caller guarantees `(position, key)` order
    /// (restoring a snapshot, which the reader checks). Fills buckets instead of splitting.
    ///
    /// # Panics
    /// If the order is broken (a caller bug: the snapshot reader checks it first).
    pub fn push_sorted(&mut self, key: &[u8], value: &[u8]) {
        let position = scan_position(key);
        let last = self.buckets.last_mut().expect("a bucket starts at 0");
        if let Some(tail) = last.last() {
            assert!(
                tail.order(position, key).is_lt(),
                "push_sorted out of order"
            );
        }
        let item = Item::new(key, value);
        self.len += 1;
        self.data_bytes += item.data_bytes();
        let slot = Slot { position, item };
        let full =
            last.len() >= BUCKET_FILL && last.last().is_some_and(|tail| tail.position != position);
        if full {
            let mut fresh = Vec::with_capacity(BUCKET_SPLIT);
            fresh.push(slot);
            self.starts.push(position);
            self.buckets.push(Arc::new(fresh));
        } else {
            Arc::make_mut(last).push(slot);
        }
    }

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.buckets.iter().flat_map(|slots| slots.iter())
    }

    /// Every key and value, in iteration order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.slots()
            .map(|slot| (slot.item.key(), slot.item.value()))
    }

    /// Every key matching `pattern`, in iteration order.
    pub fn keys_matching(&self, pattern: &[u8]) -> Vec<Bytes> {
        let all = pattern == b"*";
        self.slots()
            .map(|slot| slot.item.key())
            .filter(|key| all || glob_match(pattern, key))
            .map(Bytes::copy_from_slice)
            .collect()
    }

    /// One SCAN page: visits at least `count` keys from `cursor` (more only to finish the
    /// last position), returns those matching `pattern` and the cursor to resume from
    /// (0 when the scan is complete).
    pub fn scan(&self, cursor: u64, count: usize, pattern: Option<&[u8]>) -> (u64, Vec<Bytes>) {
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
            let key = slot.item.key();
            if pattern.is_none_or(|pattern| glob_match(pattern, key)) {
                found.push(Bytes::copy_from_slice(key));
            }
        }
        (0, found)
    }

    /// Checks the layout's invariants (O(n): tests and debug builds).
    pub fn check_invariants(&self) {
        assert_eq!(self.starts.first(), Some(&0), "no bucket starts at 0");
        assert_eq!(
            self.starts.len(),
            self.buckets.len(),
            "starts and buckets differ"
        );
        assert!(
            self.starts.is_sorted_by(|a, b| a < b),
            "bucket starts out of order"
        );
        let mut count = 0;
        let mut bytes = 0;
        let mut previous: Option<&Slot> = None;
        for (index, (start, slots)) in self.starts.iter().zip(&self.buckets).enumerate() {
            assert!(index == 0 || !slots.is_empty(), "empty bucket at {start}");
            let end = self.starts.get(index + 1).copied();
            for slot in slots.iter() {
                let key = slot.item.key();
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
            }
        }
        assert_eq!(count, self.len, "len disagrees with the slots");
        assert_eq!(
            bytes, self.data_bytes,
            "data_bytes disagrees with the slots"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(keys: impl IntoIterator<Item = String>) -> KeySpace {
        let mut space = KeySpace::default();
        for key in keys {
            space.insert(key.as_bytes(), b"v");
        }
        space
    }

    fn full_scan(space: &KeySpace, count: usize) -> Vec<Bytes> {
        let mut cursor = 0;
        let mut seen = Vec::new();
        loop {
            let (next, keys) = space.scan(cursor, count, None);
            seen.extend(keys);
            if next == 0 {
                return seen;
            }
            assert!(next > cursor, "cursor must advance");
            cursor = next;
        }
    }

    #[test]
    fn scan_returns_every_key_exactly_once_for_any_page_size() {
        let space = space((0..500).map(|i| format!("key:{i:012}")));
        for count in [1, 3, 10, 499, 500, 10_000] {
            let mut seen = full_scan(&space, count);
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 500, "count {count}");
        }
    }

    #[test]
    fn scan_keeps_its_guarantee_while_keys_change() {
        let mut space = space((0..200).map(|i| format!("stay:{i}")));
        let (mut cursor, mut seen) = space.scan(0, 20, None);
        let mut round = 0;
        while cursor != 0 {
            space.insert(format!("new:{round}").as_bytes(), b"");
            space.remove(format!("gone:{round}").as_bytes());
            let (next, keys) = space.scan(cursor, 20, None);
            seen.extend(keys);
            cursor = next;
            round += 1;
        }
        let stays: Vec<_> = seen.iter().filter(|k| k.starts_with(b"stay:")).collect();
        assert_eq!(stays.len(), 200);
        space.check_invariants();
    }

    #[test]
    fn insert_and_remove_keep_the_index_in_step() {
        let mut space = KeySpace::default();
        assert!(space.insert(b"a", b"1").is_none());
        let old = space.insert(b"a", b"2").expect("a was set");
        assert_eq!(old.value(), b"1");
        assert_eq!(space.len(), 1);
        assert_eq!(space.data_bytes(), 2);
        assert_eq!(space.remove(b"a").expect("a is set").into_value(), "2");
        assert!(space.remove(b"a").is_none());
        assert_eq!(space.data_bytes(), 0);
        assert!(space.is_empty());
        space.check_invariants();
    }

    /// A model: the same operations on a `BTreeMap` ordered by `(position, key)`.
    #[test]
    fn random_inserts_and_removes_match_a_sorted_map_through_splits_and_merges() {
        use std::collections::BTreeMap;
        let mut space = KeySpace::default();
        let mut model: BTreeMap<(u64, Vec<u8>), Vec<u8>> = BTreeMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..40_000u64 {
            // Grow to ~3,000 keys, then shrink to a few, then grow again: every split and
            // merge path runs.
            let grow = !(15_000..30_000).contains(&round);
            let key = format!("k{}", next() % 4_000).into_bytes();
            let place = (scan_position(&key), key.clone());
            if grow || next() % 8 == 0 {
                let value = round.to_le_bytes();
                let old = space.insert(&key, &value);
                assert_eq!(
                    old.map(|item| item.value().to_vec()),
                    model.insert(place, value.to_vec())
                );
            } else {
                let old = space.remove(&key);
                assert_eq!(old.map(|item| item.value().to_vec()), model.remove(&place));
            }
            if round % 1_000 == 0 {
                space.check_invariants();
            }
        }
        space.check_invariants();
        assert_eq!(space.len(), model.len());
        assert!(space.buckets.len() > 1, "the test never split a bucket");
        let ours: Vec<_> = space
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let theirs: Vec<_> = model.into_iter().map(|((_, k), v)| (k, v)).collect();
        assert_eq!(ours, theirs);
    }

    /// Found in review: emptying a bucket whose predecessor was too full to merge with
    /// left an empty bucket behind.
    #[test]
    fn removing_every_key_in_reverse_order_leaves_no_empty_bucket() {
        let mut space = space((0..5_000).map(|i| format!("key:{i}")));
        let keys: Vec<Vec<u8>> = space.iter().map(|(key, _)| key.to_vec()).collect();
        for (removed, key) in keys.iter().rev().enumerate() {
            assert!(space.remove(key).is_some());
            if removed % 50 == 0 {
                space.check_invariants();
            }
        }
        space.check_invariants();
        assert!(space.is_empty());
        assert_eq!(space.buckets.len(), 1, "only the first bucket remains");
    }

    #[test]
    fn a_clone_keeps_its_contents_while_the_original_changes() {
        let mut space = space((0..1_000).map(|i| format!("key:{i}")));
        let before: Vec<_> = space
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let frozen = space.clone();
        for i in 0..1_000 {
            if i % 2 == 0 {
                space.remove(format!("key:{i}").as_bytes());
            } else {
                space.insert(format!("key:{i}").as_bytes(), b"changed");
            }
        }
        space.insert(b"brand new", b"x");
        let after: Vec<_> = frozen
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(before, after);
        assert_eq!(frozen.len(), 1_000);
        frozen.check_invariants();
        space.check_invariants();
        assert_eq!(space.len(), 501);
    }

    #[test]
    fn sorted_pushes_build_the_same_space_as_inserts() {
        let inserted = space((0..5_000).map(|i| format!("key:{i}")));
        let mut pushed = KeySpace::default();
        for (key, value) in inserted.iter() {
            pushed.push_sorted(key, value);
        }
        pushed.check_invariants();
        assert_eq!(pushed, inserted);
        assert!(
            pushed.buckets.len() < inserted.buckets.len(),
            "pushes fill buckets fuller"
        );
    }

    #[test]
    fn a_bucket_of_one_position_is_not_split() {
        // Not real collisions (the hash is fixed), so build them: slots with one position.
        let mut space = KeySpace::default();
        let slots: Vec<Slot> = (0..200)
            .map(|i| Slot {
                position: 7,
                item: Item::new(format!("c{i:03}").as_bytes(), b"v"),
            })
            .collect();
        space.len = slots.len();
        space.data_bytes = slots.iter().map(|slot| slot.item.data_bytes()).sum();
        space.buckets[0] = Arc::new(slots);
        space.split(0);
        assert_eq!(
            space.buckets.len(),
            1,
            "a bucket of one position cannot be split"
        );
    }
}
