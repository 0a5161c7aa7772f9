//! The key space's layout, order, scan guarantee and deadline index.

use super::*;
use std::collections::BTreeMap;

fn space(keys: impl IntoIterator<Item = String>) -> KeySpace {
    let mut space = KeySpace::default();
    for key in keys {
        space.insert(key.as_bytes(), b"v", 0, None);
    }
    space
}

fn full_scan(space: &KeySpace, count: usize) -> Vec<Bytes> {
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let (next, keys) = space.scan(cursor, count, None, 0);
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
    let (mut cursor, mut seen) = space.scan(0, 20, None, 0);
    let mut round = 0;
    while cursor != 0 {
        space.insert(format!("new:{round}").as_bytes(), b"", 0, None);
        space.remove(format!("gone:{round}").as_bytes());
        let (next, keys) = space.scan(cursor, 20, None, 0);
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
    assert!(space.insert(b"a", b"1", 0, None).is_none());
    let old = space.insert(b"a", b"2", 0, None).expect("a was set");
    assert_eq!(old.value(), b"1");
    assert_eq!(space.len(), 1);
    assert_eq!(space.data_bytes(), 2);
    assert_eq!(space.remove(b"a").expect("a is set").item.into_value(), "2");
    assert!(space.remove(b"a").is_none());
    assert_eq!(space.data_bytes(), 0);
    assert!(space.is_empty());
    space.check_invariants();
}

/// A model: the same operations on a `BTreeMap` ordered by `(position, key)`.
#[test]
fn random_inserts_and_removes_match_a_sorted_map_through_splits_and_merges() {
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
            let old = space.insert(&key, &value, round, None);
            assert_eq!(
                old.map(|slot| slot.value().to_vec()),
                model.insert(place, value.to_vec())
            );
        } else {
            let old = space.remove(&key);
            assert_eq!(old.map(|slot| slot.value().to_vec()), model.remove(&place));
        }
        if round % 1_000 == 0 {
            space.check_invariants();
        }
    }
    space.check_invariants();
    assert_eq!(space.len(), model.len());
    assert!(space.buckets.len() > 1, "the test never split a bucket");
    let ours: Vec<_> = space
        .slots()
        .map(|s| (s.key().to_vec(), s.value().to_vec()))
        .collect();
    let theirs: Vec<_> = model.into_iter().map(|((_, k), v)| (k, v)).collect();
    assert_eq!(ours, theirs);
}

/// Found in review: emptying a bucket whose predecessor was too full to merge with
/// left an empty bucket behind.
#[test]
fn removing_every_key_in_reverse_order_leaves_no_empty_bucket() {
    let mut space = space((0..5_000).map(|i| format!("key:{i}")));
    let keys: Vec<Vec<u8>> = space.slots().map(|s| s.key().to_vec()).collect();
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
        .slots()
        .map(|s| (s.key().to_vec(), s.value().to_vec()))
        .collect();
    let frozen = space.clone();
    for i in 0..1_000 {
        if i % 2 == 0 {
            space.remove(format!("key:{i}").as_bytes());
        } else {
            space.insert(format!("key:{i}").as_bytes(), b"changed", 0, None);
        }
    }
    space.insert(b"brand new", b"x", 0, None);
    let after: Vec<_> = frozen
        .slots()
        .map(|s| (s.key().to_vec(), s.value().to_vec()))
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
    for slot in inserted.slots() {
        pushed.push_sorted(slot.key(), slot.value(), slot.revision(), slot.deadline());
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
            revision: 0,
            deadline: NO_DEADLINE,
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

/// A model of the deadline index: random inserts, TTL changes and removals, checked
/// against a naive scan after every few operations, through splits and merges.
#[test]
fn expired_keys_and_counts_match_a_naive_scan_through_splits_and_merges() {
    let mut space = KeySpace::default();
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed = splitmix64(seed);
        seed
    };
    for round in 0..30_000u64 {
        let key = format!("k{}", next() % 3_000).into_bytes();
        let deadline = match next() % 4 {
            0 => None,
            _ => Some(1_000 + next() % 1_000),
        };
        match next() % 10 {
            0..=4 => {
                space.insert(&key, b"v", round, deadline);
            }
            5..=6 => {
                space.set_meta(&key, round, deadline);
            }
            _ => {
                space.remove(&key);
            }
        }
        if round % 997 == 0 {
            space.check_invariants();
            for now in [0, 1_000, 1_500, 2_000, 5_000] {
                let naive: Vec<Vec<u8>> = space
                    .slots()
                    .filter(|slot| slot.expired_at(now))
                    .map(|slot| slot.key().to_vec())
                    .collect();
                assert_eq!(space.count_expired(now), naive.len(), "now {now}");
                let found: Vec<Vec<u8>> = space
                    .expired_keys(now, usize::MAX, usize::MAX)
                    .iter()
                    .map(|key| key.to_vec())
                    .collect();
                assert_eq!(found, naive, "now {now}");
                assert_eq!(space.live_len(now), space.len() - naive.len());
            }
        }
    }
    space.check_invariants();
    assert!(space.buckets.len() > 1, "the test never split a bucket");
}

#[test]
fn expired_keys_respect_the_key_and_byte_bounds() {
    let mut space = KeySpace::default();
    for i in 0..100 {
        space.insert(format!("key:{i:04}").as_bytes(), b"v", 1, Some(10));
    }
    assert_eq!(
        space.expired_keys(10, 1_000, 1_000).len(),
        0,
        "alive at its deadline"
    );
    assert_eq!(space.expired_keys(11, 7, 1_000).len(), 7);
    // Each key is 8 bytes: 3 fit in 24 bytes.
    assert_eq!(space.expired_keys(11, 1_000, 24).len(), 3);
    assert_eq!(space.expired_keys(11, 1_000, 1).len(), 1, "at least one");
}

#[test]
fn random_live_is_deterministic_and_skips_expired_keys() {
    let mut space = KeySpace::default();
    assert!(space.random_live(7, 0).is_none());
    for i in 0..1_000 {
        let deadline = (i % 10 != 0).then_some(5);
        space.insert(format!("key:{i}").as_bytes(), b"v", 1, deadline);
    }
    for seed in 0..200 {
        let chosen = space.random_live(seed, 6).expect("100 keys are live");
        assert!(chosen.deadline().is_none(), "expired key chosen");
        let again = space.random_live(seed, 6).expect("same");
        assert_eq!(chosen.key(), again.key(), "same seed, same key");
    }
    let mut all_expired = KeySpace::default();
    for i in 0..1_000 {
        all_expired.insert(format!("key:{i}").as_bytes(), b"v", 1, Some(5));
    }
    all_expired.insert(b"the one", b"v", 1, None);
    assert_eq!(
        all_expired.random_live(3, 6).map(Slot::key),
        Some(&b"the one"[..])
    );
}
