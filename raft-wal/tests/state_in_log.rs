//! The state value travels in the log as a state record behind the batch's records, so one
//! flush covers both (FORMAT.md, "State records"). These tests check that a crash at any
//! point of that combined write recovers the old state with at least the old records, or
//! the new state with every record of its batch; and that truncation, compaction and reset
//! (which destroy log bytes) never take the newest state with them.

use std::path::{Path, PathBuf};

use raft_core::{LogIndex, Term};
use raft_wal::{Record, RecordKind, SyncPolicy, Wal, WalConfig};

const PAGE_BYTES: usize = 4096;

fn config(sync_policy: SyncPolicy) -> WalConfig {
    WalConfig {
        segment_bytes: 64 * 1024,
        sync_policy,
        ..WalConfig::default()
    }
}

fn payload(index: u64) -> Vec<u8> {
    vec![u8::try_from(index % 251).expect("below 251"); 700]
}

fn append_batch(wal: &mut Wal, count: u64, state: &[u8]) {
    let first = wal.last_index().next();
    for index in first.0..first.0 + count {
        let payload = payload(index);
        let record = Record {
            index: LogIndex(index),
            term: Term(1),
            kind: RecordKind(2),
            payload: &payload,
        };
        wal.append(&record).expect("append");
    }
    wal.set_state(state).expect("set state");
    wal.sync().expect("sync");
}

fn tail_segment(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    names.sort();
    names.pop().expect("a segment")
}

/// Reopens `dir` and checks the recovered log and state against the two allowed outcomes.
fn check_recovered(dir: &Path, old_last: u64, new_last: u64, what: &str) {
    let wal = Wal::open(dir, config(SyncPolicy::Never)).expect("reopen");
    let last = wal.last_index().0;
    assert!(
        (old_last..=new_last).contains(&last),
        "{what}: last {last} outside {old_last}..={new_last}"
    );
    for index in 1..=last {
        let record = wal.get(LogIndex(index)).expect("record in log");
        assert_eq!(record.payload, &payload(index)[..], "{what}: index {index}");
    }
    match wal.state() {
        Some(b"old") => {}
        Some(b"new") => assert_eq!(last, new_last, "{what}: new state without its batch"),
        other => panic!("{what}: state {other:?} is neither old nor new"),
    }
}

struct Written {
    _root: tempfile::TempDir,
    dir: PathBuf,
    tail: PathBuf,
    before: Vec<u8>,
    after: Vec<u8>,
}

/// A log whose last synced batch (records 11..=15 and state "new") follows a synced
/// batch (records 1..=10 and state "old"); the tail file's bytes before and after it.
fn write_two_batches() -> Written {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("wal");
    let mut wal = Wal::open(&dir, config(SyncPolicy::Always)).expect("open");
    append_batch(&mut wal, 10, b"old");
    let tail = tail_segment(&dir);
    let before = std::fs::read(&tail).expect("read");
    append_batch(&mut wal, 5, b"new");
    drop(wal);
    let after = std::fs::read(&tail).expect("read");
    Written {
        _root: root,
        dir,
        tail,
        before,
        after,
    }
}

#[test]
fn a_cut_anywhere_in_a_batch_with_its_state_recovers_old_state_or_the_whole_batch() {
    let written = write_two_batches();
    let first = written
        .before
        .iter()
        .zip(&written.after)
        .position(|(a, b)| a != b)
        .expect("the batch changed the file");
    let end = written.after.len()
        - written
            .before
            .iter()
            .rev()
            .zip(written.after.iter().rev())
            .position(|(a, b)| a != b)
            .expect("the batch changed the file");
    // Bound: the bytes the last batch changed (a few KiB).
    for cut in first..=end {
        let mut bytes = written.after[..cut].to_vec();
        bytes.extend_from_slice(&written.before[cut..]);
        std::fs::write(&written.tail, &bytes).expect("write");
        check_recovered(&written.dir, 10, 15, &format!("cut at {cut}"));
    }
}

#[test]
fn pages_of_a_batch_with_its_state_landing_in_any_order_never_give_state_without_records() {
    let written = write_two_batches();
    let pages: Vec<usize> = (0..written.after.len() / PAGE_BYTES)
        .filter(|page| {
            let range = page * PAGE_BYTES..(page + 1) * PAGE_BYTES;
            written.before[range.clone()] != written.after[range]
        })
        .collect();
    assert!(pages.len() >= 2, "the batch spans {} pages", pages.len());
    // Bound: 2^pages combinations, pages <= 3 for a 3.5 KiB batch.
    for mask in 0u32..(1 << pages.len()) {
        let mut bytes = written.before.clone();
        for (bit, page) in pages.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                let range = page * PAGE_BYTES..(page + 1) * PAGE_BYTES;
                bytes[range.clone()].copy_from_slice(&written.after[range]);
            }
        }
        std::fs::write(&written.tail, &bytes).expect("write");
        check_recovered(&written.dir, 10, 15, &format!("page mask {mask:b}"));
    }
}

#[test]
fn truncating_away_the_record_holding_the_newest_state_keeps_the_state() {
    for sync_after in [false, true] {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("wal");
        let mut wal = Wal::open(&dir, config(SyncPolicy::Always)).expect("open");
        append_batch(&mut wal, 10, b"old");
        append_batch(&mut wal, 5, b"new");
        // The state record of "new" lies after index 15's record: cut before index 12.
        wal.truncate_suffix(LogIndex(12)).expect("truncate");
        if sync_after {
            wal.sync().expect("sync");
        }
        assert_eq!(wal.state(), Some(&b"new"[..]));
        drop(wal);
        let wal = Wal::open(&dir, config(SyncPolicy::Always)).expect("reopen");
        assert_eq!(wal.state(), Some(&b"new"[..]), "sync after: {sync_after}");
        assert!(wal.last_index() <= LogIndex(15));
        assert!(wal.last_index() >= LogIndex(11));
        wal.check_invariants();
    }
}

#[test]
fn compaction_and_reset_keep_the_newest_state() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("wal");
    let mut wal = Wal::open(&dir, config(SyncPolicy::Always)).expect("open");
    // About 90 records fill a 64 KiB segment; 300 make several.
    for batch in 0..30u64 {
        append_batch(&mut wal, 10, format!("s{batch}").as_bytes());
    }
    wal.compact_prefix(LogIndex(250)).expect("compact");
    drop(wal);
    let mut wal = Wal::open(&dir, config(SyncPolicy::Always)).expect("reopen");
    assert_eq!(wal.state(), Some(&b"s29"[..]));
    assert!(wal.first_index() > LogIndex(1));
    wal.reset(LogIndex(1000)).expect("reset");
    drop(wal);
    let mut wal = Wal::open(&dir, config(SyncPolicy::Always)).expect("reopen");
    assert_eq!(wal.state(), Some(&b"s29"[..]));
    assert_eq!(wal.last_index(), LogIndex(999));
    // New states after the reset go to the log again and win over the file's.
    append_batch(&mut wal, 3, b"after reset");
    drop(wal);
    let wal = Wal::open(&dir, config(SyncPolicy::Always)).expect("reopen");
    assert_eq!(wal.state(), Some(&b"after reset"[..]));
    wal.check_invariants();
}

#[test]
fn a_state_record_needing_a_new_segment_rolls_the_tail_first() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("wal");
    let mut wal = Wal::open(&dir, config(SyncPolicy::Always)).expect("open");
    // Fill the first segment to within a few bytes of its end, then set a state.
    let mut index = 1;
    let mut state_number = 0u32;
    while wal.dir().read_dir().expect("list").count() < 4 {
        append_batch(&mut wal, 1, &state_number.to_le_bytes());
        state_number += 1;
        index += 1;
    }
    drop(wal);
    let wal = Wal::open(&dir, config(SyncPolicy::Always)).expect("reopen");
    assert_eq!(wal.last_index(), LogIndex(index - 1));
    assert_eq!(wal.state(), Some(&(state_number - 1).to_le_bytes()[..]));
    wal.check_invariants();
}
