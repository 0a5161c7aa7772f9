//! The key space: values by key, plus the fixed order KEYS, SCAN and snapshots walk.
//!
//! Order: by `(scan_position(key), key)`, where the position is a fixed 64-bit hash
//! (FNV-1a then a SplitMix64 finaliser, never 0). A SCAN cursor is the position to resume
//! from, a plain `u64` as clients expect. A page always ends between two positions, so a
//! key present for the whole scan is returned exactly once whatever else is added or
//! deleted meanwhile (Redis' guarantee, without its rehash duplicates). The hash is fixed
//! forever: it decides snapshot order, which every replica must produce identically.
//!
//! Lookups go through a `HashMap` (randomly seeded, never iterated); the `BTreeSet` index
//! is the only thing iterated, so iteration order is deterministic.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;

use super::glob::glob_match;

/// Keys and values, with a deterministic iteration order.
#[derive(Default, Clone, Debug)]
pub struct KeySpace {
    /// Invariant: holds exactly the keys of `order`.
    values: HashMap<Bytes, Bytes>,
    /// Invariant: one `(scan_position(key), key)` per key of `values`.
    order: BTreeSet<(u64, Bytes)>,
}

impl PartialEq for KeySpace {
    fn eq(&self, other: &KeySpace) -> bool {
        self.values == other.values
    }
}

impl Eq for KeySpace {}

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
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.values.get(key)
    }

    /// Sets `key` to `value`; returns the old value.
    pub fn insert(&mut self, key: Bytes, value: Bytes) -> Option<Bytes> {
        let old = self.values.insert(key.clone(), value);
        if old.is_none() {
            self.order.insert((scan_position(&key), key));
        }
        old
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<Bytes> {
        let (stored_key, value) = self.values.remove_entry(key)?;
        let removed = self.order.remove(&(scan_position(key), stored_key));
        assert!(removed, "order index lacked a key the map held");
        Some(value)
    }

    /// Total bytes of all keys and values (without any framing).
    pub fn data_bytes(&self) -> usize {
        self.values
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum()
    }

    /// Every key and value, in iteration order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.order.iter().map(|(_, key)| {
            let value = self
                .values
                .get(key)
                .expect("order index and map hold the same keys");
            (key, value)
        })
    }

    /// Every key matching `pattern`, in iteration order.
    pub fn keys_matching(&self, pattern: &[u8]) -> Vec<Bytes> {
        let all = pattern == b"*";
        self.order
            .iter()
            .filter(|(_, key)| all || glob_match(pattern, key))
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// One SCAN page: visits at least `count` keys from `cursor` (more only to finish the
    /// last position), returns those matching `pattern` and the cursor to resume from
    /// (0 when the scan is complete).
    pub fn scan(&self, cursor: u64, count: usize, pattern: Option<&[u8]>) -> (u64, Vec<Bytes>) {
        let mut found = Vec::new();
        let mut last_position = 0u64;
        let range = self.order.range((cursor, Bytes::new())..);
        for (visited, (position, key)) in range.enumerate() {
            if visited >= count && *position != last_position {
                return (*position, found);
            }
            last_position = *position;
            if pattern.is_none_or(|pattern| glob_match(pattern, key)) {
                found.push(key.clone());
            }
        }
        (0, found)
    }

    /// Checks the two structures agree (O(n): tests and debug builds).
    pub fn check_invariants(&self) {
        assert_eq!(
            self.values.len(),
            self.order.len(),
            "map and order index sizes differ"
        );
        for (position, key) in &self.order {
            assert_eq!(
                *position,
                scan_position(key),
                "key {key:?} filed at the wrong position"
            );
            assert!(
                self.values.contains_key(key),
                "order index holds {key:?}, the map does not"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(keys: impl IntoIterator<Item = String>) -> KeySpace {
        let mut space = KeySpace::default();
        for key in keys {
            space.insert(Bytes::from(key), Bytes::from_static(b"v"));
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
            space.insert(Bytes::from(format!("new:{round}")), Bytes::new());
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
        assert_eq!(
            space.insert(Bytes::from_static(b"a"), Bytes::from_static(b"1")),
            None
        );
        assert_eq!(
            space.insert(Bytes::from_static(b"a"), Bytes::from_static(b"2")),
            Some(Bytes::from_static(b"1"))
        );
        assert_eq!(space.len(), 1);
        assert_eq!(space.remove(b"a"), Some(Bytes::from_static(b"2")));
        assert_eq!(space.remove(b"a"), None);
        assert!(space.is_empty());
        space.check_invariants();
    }
}
