//! The storage contract suite: one set of checks every [`LogStoreMut`] implementation must
//! pass (the in-memory [`crate::MemStore`] and raft-wal's `WalStore`), so the core can rely
//! on the contract in `storage.rs` whatever the backend.
//!
//! A backend supplies a [`Harness`]: how to make a fresh store and how to crash and
//! restart one. `MemStore` crashes with `crash()` (everything unsynced is lost); a disk
//! store drops itself and reopens from its files (unsynced writes may or may not have
//! reached the disk). The checks accept both: after a crash the log must be a prefix of a
//! state the log passed through since the last sync, and must keep every synced entry
//! that no later write discarded.
//!
//! Use [`crate::storage_contract_tests!`] to get one `#[test]` per check, or call the
//! functions one by one. Each panics (through `assert!`) on a contract violation.

use bytes::Bytes;

use crate::error::StorageError;
use crate::storage::{LogStore, LogStoreMut};
use crate::types::{
    Entry, EntryPayload, HardState, LogIndex, NodeId, Snapshot, SnapshotMeta, Term,
};
use crate::Membership;

/// How the suite makes and crashes stores of one backend.
pub trait Harness {
    type Store: LogStoreMut;

    /// A new, empty store (a fresh directory for a disk store).
    fn create(&mut self) -> Self::Store;

    /// Crashes `store` and restarts it from what it kept.
    fn crash(&mut self, store: Self::Store) -> Self::Store;
}

/// No budget on an `entries` read.
const BYTES_UNLIMITED: u64 = u64::MAX;

/// A deterministic entry: kinds and sizes vary with the index so every encoding is used.
pub fn entry(index: u64, term: u64) -> Entry {
    let payload = match index % 5 {
        0 => EntryPayload::Blank,
        3 => EntryPayload::Membership {
            membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(index)]),
            context: Bytes::from(format!("ctx-{index}")),
        },
        _ => {
            let len = usize::try_from((index * 37) % 300).expect("small");
            EntryPayload::Command(Bytes::from(vec![
                u8::try_from(index % 251).expect("< 251");
                len
            ]))
        }
    };
    Entry {
        index: LogIndex(index),
        term: Term(term),
        payload,
    }
}

/// Entries `[from, to]`, all of `term`.
pub fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
    (from..=to).map(|i| entry(i, term)).collect()
}

fn snapshot(index: u64, term: u64) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index: LogIndex(index),
            term: Term(term),
            membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
        },
        data: Bytes::from(format!("state machine image at {index}")),
    }
}

/// Every entry the store holds, in order.
pub fn read_all<S: LogStore>(store: &S) -> Vec<Entry> {
    store
        .entries(
            store.first_index(),
            store.last_index().next(),
            BYTES_UNLIMITED,
        )
        .expect("the whole stored range is readable")
}

fn assert_log<S: LogStore>(store: &S, expected: &[Entry]) {
    assert_eq!(read_all(store), expected, "stored entries");
    for entry in expected {
        assert_eq!(
            store.term(entry.index).expect("stored"),
            entry.term,
            "term of {:?}",
            entry.index
        );
    }
    let last = expected
        .last()
        .map_or(store.first_index().prev(), |e| e.index);
    assert_eq!(store.last_index(), last, "last index");
}

/// Asserts the crash rule: the log is a prefix of one of `states` (the states since the
/// last sync, oldest first), at least `kept` long.
fn assert_crashed_to_prefix<S: LogStore>(store: &S, states: &[Vec<Entry>], kept: u64) {
    let log = read_all(store);
    let is_prefix = states
        .iter()
        .any(|state| state.len() >= log.len() && state[..log.len()] == log[..]);
    assert!(
        is_prefix,
        "log after crash {log:?} is not a prefix of any state {states:?}"
    );
    assert!(
        store.last_index() >= LogIndex(kept),
        "crash lost synced entries: last {:?} < {kept}",
        store.last_index()
    );
}

/// A fresh store is empty, starts at index 1 and answers the boundary queries.
pub fn fresh_store_is_empty<H: Harness>(harness: &mut H) {
    let store = harness.create();
    assert_eq!(store.first_index(), LogIndex(1));
    assert_eq!(store.last_index(), LogIndex(0));
    assert_eq!(
        store.term(LogIndex(0)).expect("index 0 has term 0"),
        Term(0)
    );
    assert!(matches!(
        store.term(LogIndex(1)),
        Err(StorageError::Unavailable { .. })
    ));
    assert_eq!(
        store
            .entries(LogIndex(1), LogIndex(1), BYTES_UNLIMITED)
            .expect("empty range"),
        vec![]
    );
    assert!(matches!(
        store.entries(LogIndex(1), LogIndex(2), 0),
        Err(StorageError::Unavailable { .. })
    ));
    let initial = store.initial_state().expect("initial state");
    assert_eq!(initial, Default::default());
    assert_eq!(store.snapshot().expect("snapshot"), Snapshot::default());
}

/// Appended entries read back exactly, whole and in sub-ranges, with their terms.
pub fn append_reads_back<H: Harness>(harness: &mut H) {
    let mut store = harness.create();
    let mut written = entries(1, 6, 1);
    written.extend(entries(7, 20, 3));
    store.append(&written[..6]).expect("append");
    store.append(&written[6..]).expect("append");
    assert_log(&store, &written);
    let middle = store
        .entries(LogIndex(4), LogIndex(9), BYTES_UNLIMITED)
        .expect("range");
    assert_eq!(middle, written[3..8]);
    assert!(matches!(
        store.term(LogIndex(21)),
        Err(StorageError::Unavailable { .. })
    ));
    assert!(matches!(
        store.entries(LogIndex(15), LogIndex(22), BYTES_UNLIMITED),
        Err(StorageError::Unavailable { .. })
    ));
}

/// `entries` stops before the budget is exceeded but always returns at least one entry.
pub fn entries_respect_the_byte_budget<H: Harness>(harness: &mut H) {
    let mut store = harness.create();
    let written = entries(1, 10, 2);
    store.append(&written).expect("append");
    let (low, high) = (LogIndex(2), LogIndex(11));
    assert_eq!(
        store.entries(low, high, 0).expect("read"),
        written[1..2],
        "one entry whatever the budget"
    );
    let three: u64 = written[1..4].iter().map(Entry::size_bytes).sum();
    assert_eq!(
        store.entries(low, high, three).expect("read"),
        written[1..4]
    );
    assert_eq!(
        store.entries(low, high, three - 1).expect("read"),
        written[1..3]
    );
}

/// Appending at an index inside the log discards everything from that index on.
pub fn append_discards_the_conflicting_suffix<H: Harness>(harness: &mut H) {
    let mut store = harness.create();
    store.append(&entries(1, 10, 1)).expect("append");
    store.append(&entries(5, 7, 2)).expect("append");
    let mut expected = entries(1, 4, 1);
    expected.extend(entries(5, 7, 2));
    assert_log(&store, &expected);
    store.append(&entries(8, 8, 2)).expect("append at the end");
    expected.extend(entries(8, 8, 2));
    store
        .append(&entries(1, 1, 1))
        .expect("rewrite from the start");
    assert_log(&store, &entries(1, 1, 1));
    store.sync().expect("sync");
    let store = harness.crash(store);
    assert_log(&store, &entries(1, 1, 1));
}

/// Hard state reads back, and survives a crash once synced.
pub fn hard_state_is_durable_after_sync<H: Harness>(harness: &mut H) {
    let mut store = harness.create();
    let first = HardState {
        term: Term(3),
        vote: NodeId(2),
        commit: LogIndex(0),
    };
    store.set_hard_state(first).expect("set");
    assert_eq!(store.initial_state().expect("read").hard_state, first);
    store.sync().expect("sync");
    let mut store = harness.crash(store);
    assert_eq!(store.initial_state().expect("read").hard_state, first);
    let second = HardState {
        term: Term(4),
        vote: NodeId::NONE,
        commit: LogIndex(0),
    };
    store.set_hard_state(second).expect("set");
    let store = harness.crash(store);
    let after = store.initial_state().expect("read").hard_state;
    assert!(
        after == first || after == second,
        "hard state after crash is {after:?}"
    );
}

/// Everything synced survives a crash, across many sync batches.
pub fn synced_batches_survive_a_crash<H: Harness>(harness: &mut H) {
    let mut store = harness.create();
    let mut written = Vec::new();
    // 2000 entries in batches of 37: enough to cross segment boundaries of small segments.
    let mut next = 1u64;
    while next <= 2000 {
        let batch = entries(next, (next + 36).min(2000), 1 + next / 500);
        next += batch.len() as u64;
        store.append(&batch).expect("append");
        store
            .set_hard_state(HardState {
                term: Term(1 + next / 500),
                vote: NodeId(1),
                commit: LogIndex(next - 1),
            })
            .expect("set");
        store.sync().expect("sync");
        written.extend(batch);
    }
    let expected_state = store.initial_state().expect("read");
    let store = harness.crash(store);
    assert_log(&store, &written);
    assert_eq!(store.initial_state().expect("read"), expected_state);
}

/// Unsynced appends may be lost in a crash, but only as a suffix.
pub fn unsynced_appends_crash_to_a_prefix<H: Harness>(harness: &mut H) {
    let mut store = harness.create();
    store.append(&entries(1, 5, 1)).expect("append");
    store.sync().expect("sync");
    store.append(&entries(6, 12, 1)).expect("append");
    let store = harness.crash(store);
    assert_crashed_to_prefix(&store, &[entries(1, 12, 1)], 5);
    let mut store = store;
    let next = store.last_index().next().get();
    store
        .append(&entries(next, 15, 2))
        .expect("append after restart");
    store.sync().expect("sync");
    assert_eq!(store.last_index(), LogIndex(15));
}

/// An unsynced truncation may be undone by a crash, never half applied.
pub fn unsynced_truncation_crashes_to_old_or_new<H: Harness>(harness: &mut H) {
    let mut store = harness.create();
    store.append(&entries(1, 10, 1)).expect("append");
    store.sync().expect("sync");
    store.append(&entries(4, 6, 2)).expect("conflicting append");
    let mut new = entries(1, 3, 1);
    new.extend(entries(4, 6, 2));
    let store = harness.crash(store);
    assert_crashed_to_prefix(&store, &[entries(1, 10, 1), new], 3);
}

/// A snapshot covering a stored entry with the same term compacts the log and keeps the
/// entries after it.
pub fn snapshot_keeps_the_matching_suffix<H: Harness>(harness: &mut H) {
    let mut store = harness.create();
    let mut written = entries(1, 5, 1);
    written.extend(entries(6, 300, 2));
    store.append(&written).expect("append");
    store.sync().expect("sync");
    store.apply_snapshot(snapshot(250, 2)).expect("snapshot");
    let check = |store: &H::Store| {
        assert_eq!(store.first_index(), LogIndex(251));
        assert_eq!(store.term(LogIndex(250)).expect("snapshot term"), Term(2));
        assert!(matches!(
            store.term(LogIndex(249)),
            Err(StorageError::Compacted { .. })
        ));
        assert!(matches!(
            store.entries(LogIndex(249), LogIndex(252), BYTES_UNLIMITED),
            Err(StorageError::Compacted { .. })
        ));
        assert_log(store, &written[250..]);
        assert_eq!(store.snapshot().expect("snapshot"), snapshot(250, 2));
        assert_eq!(
            store.initial_state().expect("read").snapshot_meta,
            snapshot(250, 2).meta
        );
    };
    check(&store);
    store.sync().expect("sync");
    let mut store = harness.crash(store);
    check(&store);
    store
        .apply_snapshot(snapshot(100, 1))
        .expect("an older snapshot is ignored");
    check(&store);
    store
        .append(&entries(301, 305, 3))
        .expect("append after compaction");
    assert_eq!(store.last_index(), LogIndex(305));
}

/// A snapshot that the log does not match replaces the whole log.
pub fn snapshot_replaces_a_divergent_or_short_log<H: Harness>(harness: &mut H) {
    for (snapshot_index, snapshot_term) in [(7u64, 9u64), (50, 2)] {
        let mut store = harness.create();
        store.append(&entries(1, 10, 1)).expect("append");
        store.sync().expect("sync");
        store
            .apply_snapshot(snapshot(snapshot_index, snapshot_term))
            .expect("snapshot");
        let check = |store: &H::Store| {
            assert_eq!(store.first_index(), LogIndex(snapshot_index + 1));
            assert_eq!(store.last_index(), LogIndex(snapshot_index));
            assert_eq!(
                store.term(LogIndex(snapshot_index)).expect("term"),
                Term(snapshot_term)
            );
            assert!(matches!(
                store.term(LogIndex(snapshot_index + 1)),
                Err(StorageError::Unavailable { .. })
            ));
            assert_eq!(
                store.snapshot().expect("snapshot"),
                snapshot(snapshot_index, snapshot_term)
            );
        };
        check(&store);
        store.sync().expect("sync");
        let mut store = harness.crash(store);
        check(&store);
        let next = snapshot_index + 1;
        store
            .append(&entries(next, next + 3, snapshot_term))
            .expect("append after the snapshot");
        store.sync().expect("sync");
        let store = harness.crash(store);
        assert_log(&store, &entries(next, next + 3, snapshot_term));
    }
}

/// Appending with a gap after the last index is a caller bug and panics.
pub fn append_with_a_gap_panics<H: Harness>(harness: &mut H) {
    let mut store = harness.create();
    store.append(&entries(1, 3, 1)).expect("append");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.append(&entries(5, 6, 1)); // Expected to panic before returning.
    }));
    assert!(result.is_err(), "append with a gap must panic");
}

/// Runs every check against `harness`.
pub fn run_all<H: Harness>(harness: &mut H) {
    fresh_store_is_empty(harness);
    append_reads_back(harness);
    entries_respect_the_byte_budget(harness);
    append_discards_the_conflicting_suffix(harness);
    hard_state_is_durable_after_sync(harness);
    synced_batches_survive_a_crash(harness);
    unsynced_appends_crash_to_a_prefix(harness);
    unsynced_truncation_crashes_to_old_or_new(harness);
    snapshot_keeps_the_matching_suffix(harness);
    snapshot_replaces_a_divergent_or_short_log(harness);
    append_with_a_gap_panics(harness);
}

/// Expands to one `#[test]` per contract check, each calling it on `$harness` (an
/// expression building a fresh [`Harness`]).
#[macro_export]
macro_rules! storage_contract_tests {
    ($harness:expr) => {
        $crate::storage_contract_tests!(@each $harness;
            fresh_store_is_empty, append_reads_back, entries_respect_the_byte_budget,
            append_discards_the_conflicting_suffix, hard_state_is_durable_after_sync,
            synced_batches_survive_a_crash, unsynced_appends_crash_to_a_prefix,
            unsynced_truncation_crashes_to_old_or_new, snapshot_keeps_the_matching_suffix,
            snapshot_replaces_a_divergent_or_short_log, append_with_a_gap_panics);
    };
    (@each $harness:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                $crate::storage::contract::$check(&mut $harness);
            }
        )*
    };
}
