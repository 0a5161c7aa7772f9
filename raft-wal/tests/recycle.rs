//! Crash tests for recycled segments (FORMAT.md, "Recycled segments"). A recycled file
//! still holds its old incarnation's records behind the new header; with equal record
//! sizes they sit exactly where the scan of the new records stops, chained among
//! themselves. Whatever mix of new and old bytes a crash leaves, recovery must return a
//! prefix of what was written holding every synced record, and never an old record.

mod common;

use std::collections::BTreeMap;

use raft_core::{LogIndex, Term};
use raft_wal::record::encoded_len;
use raft_wal::segment::{self, SEGMENT_HEADER_BYTES};
use raft_wal::{SyncPolicy, Wal, WalConfig};

const SEGMENT_BYTES: u64 = 8 * 1024;
/// Equal sizes put the old records exactly on the new records' boundaries.
const PAYLOAD_BYTES: usize = 200;
/// Records per segment: (8192 - 32) / 232.
const PER_SEGMENT: u64 = 35;

fn config(sync_policy: SyncPolicy) -> WalConfig {
    WalConfig {
        segment_bytes: SEGMENT_BYTES,
        sync_policy,
        spare_segments_max: 2,
    }
}

/// The same payload for every index: old and new records differ only in their headers.
fn payload() -> Vec<u8> {
    (0..PAYLOAD_BYTES).map(|i| (i * 7 + 1) as u8).collect()
}

fn append_range(wal: &mut Wal, first: u64, last: u64, term: u64) {
    let data = payload();
    for index in first..=last {
        common::append(wal, index, term, &data);
        if index % 5 == 0 {
            wal.sync().expect("sync");
        }
    }
    wal.sync().expect("sync");
}

/// Asserts the WAL holds exactly records `first..=last`, all with the test's payload and
/// the term the scenario wrote them with (old incarnations had other indexes).
fn assert_holds(wal: &Wal, first: u64, last: u64) {
    assert_eq!(wal.last_index(), LogIndex(last), "last index");
    assert!(wal.first_index() <= LogIndex(first), "first index");
    let data = payload();
    for index in first..=last {
        let record = wal.get(LogIndex(index)).expect("record");
        assert_eq!(record.index, LogIndex(index));
        let term = if index > 3 * PER_SEGMENT { 2 } else { 1 };
        assert_eq!(
            (record.term, record.payload),
            (Term(term), &data[..]),
            "{index}"
        );
    }
    assert!(
        wal.get(LogIndex(last + 1)).is_none(),
        "nothing after {last}"
    );
}

/// The scenario's disk images.
struct Recycled {
    _guard: tempfile::TempDir,
    path: std::path::PathBuf,
    /// The first segment's bytes just before it was compacted (its old incarnation).
    old_first: Vec<u8>,
    /// The directory after the first compaction, holding one spare.
    with_spare: BTreeMap<String, Vec<u8>>,
    /// The directory at the end: the spare recycled as the tail, all records synced.
    after: BTreeMap<String, Vec<u8>>,
    tail_name: String,
    tail_first: u64,
    last: u64,
}

/// Writes four segments (term 1 for the first three), compacts the first one (a spare),
/// fills the fourth with term 2 and rolls into the recycled spare, writing 10 records.
fn recycled() -> Recycled {
    let guard = tempfile::tempdir().expect("tempdir");
    let path = guard.path().join("wal");
    let mut wal = Wal::open(&path, config(SyncPolicy::Always)).expect("open");
    append_range(&mut wal, 1, 3 * PER_SEGMENT, 1);
    append_range(&mut wal, 3 * PER_SEGMENT + 1, 3 * PER_SEGMENT + 15, 2);
    let first_name = segment::file_name(LogIndex(1));
    let old_first = std::fs::read(path.join(&first_name)).expect("first segment");
    wal.compact_prefix(LogIndex(PER_SEGMENT)).expect("compact");
    let with_spare = common::dir_files(&path);
    let spare_name = segment::spare_file_name(0);
    assert!(
        with_spare.contains_key(&spare_name),
        "{:?}",
        with_spare.keys()
    );
    assert!(!with_spare.contains_key(&first_name));
    let tail_first = 4 * PER_SEGMENT + 1;
    let last = tail_first + 9;
    append_range(&mut wal, 3 * PER_SEGMENT + 16, last, 2);
    drop(wal);
    let after = common::dir_files(&path);
    let tail_name = segment::file_name(LogIndex(tail_first));
    assert!(!after.contains_key(&spare_name), "the spare was reused");
    // Proof of reuse: the old incarnation's records are still there after the new ones.
    let new_end = SEGMENT_HEADER_BYTES + 10 * encoded_len(PAYLOAD_BYTES);
    assert_eq!(
        after[&tail_name][new_end..new_end + 64],
        old_first[new_end..new_end + 64]
    );
    Recycled {
        _guard: guard,
        path,
        old_first,
        with_spare,
        after,
        tail_name,
        tail_first,
        last,
    }
}

#[test]
fn a_recycled_tail_cut_anywhere_recovers_new_records_and_never_an_old_one() {
    let scenario = recycled();
    let new = &scenario.after[&scenario.tail_name];
    let record_bytes = encoded_len(PAYLOAD_BYTES);
    let new_end = SEGMENT_HEADER_BYTES + 10 * record_bytes;
    // From right after the (synced) header: cut = 32 is a crash just after the rename.
    for cut in SEGMENT_HEADER_BYTES..=new_end {
        // The pages not yet written back still hold the old incarnation.
        let mut damaged = scenario.after.clone();
        let tail = damaged.get_mut(&scenario.tail_name).expect("tail");
        tail[cut..].copy_from_slice(&scenario.old_first[cut..]);
        // A new record survives if every byte of it is the new one (old bytes may equal
        // new ones, e.g. in the payload).
        let whole = (0..10u64)
            .take_while(|k| {
                let start = SEGMENT_HEADER_BYTES + *k as usize * record_bytes;
                tail[start..start + record_bytes] == new[start..start + record_bytes]
            })
            .count() as u64;
        let expected_last = scenario.tail_first - 1 + whole;
        common::restore(&scenario.path, &damaged);
        let mut wal = Wal::open(&scenario.path, config(SyncPolicy::Never))
            .unwrap_or_else(|error| panic!("cut at {cut}: {error}"));
        assert_holds(&wal, 2 * PER_SEGMENT, expected_last);
        // It carries on, and the old bytes cleared by recovery stay gone.
        append_range(&mut wal, expected_last + 1, expected_last + 3, 2);
        drop(wal);
        let wal = Wal::open(&scenario.path, config(SyncPolicy::Never)).expect("reopen");
        assert_holds(&wal, 2 * PER_SEGMENT, expected_last + 3);
    }
}

#[test]
fn spare_files_present_on_open_are_removed_and_never_read_as_log() {
    let scenario = recycled();
    let spare_name = segment::spare_file_name(0);
    // 1. A crash after the compaction: the spare holds its old incarnation (indexes 1..35,
    //    which would fit in front of the log if it were ever taken for a segment).
    // 2. A crash inside the recycling, after the new header was written and synced but
    //    before the rename was durable: the spare already has the new header.
    // 3. Garbage under a spare name.
    let mut new_header = scenario.with_spare.clone();
    new_header.get_mut(&spare_name).expect("spare")[..SEGMENT_HEADER_BYTES]
        .copy_from_slice(&scenario.after[&scenario.tail_name][..SEGMENT_HEADER_BYTES]);
    let mut garbage = scenario.with_spare.clone();
    garbage.insert(spare_name.clone(), vec![0xee; 100]);
    garbage.insert(segment::spare_file_name(7), Vec::new());
    for image in [&scenario.with_spare, &new_header, &garbage] {
        common::restore(&scenario.path, image);
        let mut wal = Wal::open(&scenario.path, config(SyncPolicy::Always)).expect("open");
        assert_holds(&wal, PER_SEGMENT + 1, 3 * PER_SEGMENT + 15);
        assert_eq!(wal.first_index(), LogIndex(PER_SEGMENT + 1));
        let names: Vec<String> = common::dir_files(&scenario.path).into_keys().collect();
        assert!(
            names.iter().all(|name| !name.ends_with(".spare")),
            "{names:?}"
        );
        // The log goes on as if the spare had never existed.
        append_range(&mut wal, 3 * PER_SEGMENT + 16, scenario.last, 2);
        drop(wal);
        let wal = Wal::open(&scenario.path, config(SyncPolicy::Always)).expect("reopen");
        assert_holds(&wal, PER_SEGMENT + 1, scenario.last);
    }
}

#[test]
fn a_spare_is_not_reused_below_the_indexes_it_held_and_zero_spares_delete() {
    let guard = tempfile::tempdir().expect("tempdir");
    let path = guard.path().join("wal");
    let mut wal = Wal::open(&path, config(SyncPolicy::Always)).expect("open");
    append_range(&mut wal, 1, 3 * PER_SEGMENT, 1);
    wal.compact_prefix(LogIndex(PER_SEGMENT)).expect("compact");
    assert!(path.join(segment::spare_file_name(0)).exists());
    // A reset back to index 10 (below what the spare held): the spare must not become the
    // new segment, and is deleted instead.
    wal.reset(LogIndex(10)).expect("reset");
    assert!(!path.join(segment::spare_file_name(0)).exists());
    let segment = std::fs::read(path.join(segment::file_name(LogIndex(10)))).expect("segment");
    assert!(
        segment[SEGMENT_HEADER_BYTES..].iter().all(|b| *b == 0),
        "a fresh segment"
    );
    drop(wal);
    // With recycling off, compaction deletes.
    let path = guard.path().join("wal-no-spares");
    let no_spares = WalConfig {
        spare_segments_max: 0,
        ..config(SyncPolicy::Always)
    };
    let mut wal = Wal::open(&path, no_spares).expect("open");
    append_range(&mut wal, 1, 3 * PER_SEGMENT, 1);
    wal.compact_prefix(LogIndex(PER_SEGMENT)).expect("compact");
    let names: Vec<String> = common::dir_files(&path).into_keys().collect();
    assert!(
        names.iter().all(|name| !name.ends_with(".spare")),
        "{names:?}"
    );
}
