//! Detached flushes (`Wal::begin_sync`, `Flush::run`; FORMAT.md, Claim 7): flushes run on
//! another thread while the log is appended, truncated, compacted and reset, and the log
//! reopens equal to a model; a roll with a flush still pending leaves its sealed segment
//! whole and durable; a truncation with a flush pending flushes the log before it copies
//! the state to the state file; a flush of a segment removed meanwhile succeeds.
//!
//! Durability itself shows only after a power cut, which a test cannot make. What a test
//! can see is the page cache: `cachestat(2)` (Linux 6.5) counts a file's dirty pages, and a
//! page stays dirty until a flush writes it to the device. So the roll tests assert that
//! the sealed segment has no dirty page left right after the roll, and the truncation
//! test that none is left in front of the cut. They skip that check where it cannot tell
//! (an older kernel, or a file system like tmpfs whose pages stay dirty after
//! `fdatasync`), and say so.

mod common;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc::sync_channel;

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, HardState, LogIndex, LogStore, LogStoreMut, NodeId, Term};
use raft_wal::record::encoded_len;
use raft_wal::segment::{SEGMENT_HEADER_BYTES, STATE_SEQ_BYTES};
use raft_wal::{Flush, SyncPolicy, Wal, WalConfig, WalStore};

fn config(segment_bytes: u64, spare_segments_max: usize) -> WalConfig {
    WalConfig {
        segment_bytes,
        sync_policy: SyncPolicy::Always,
        spare_segments_max,
    }
}

/// SplitMix64: a seeded, dependency-free generator, so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// What every index holds, from `first` on, and the state value (as in tests/model.rs).
struct Model {
    first: u64,
    records: BTreeMap<u64, (u64, Vec<u8>)>,
    term: u64,
    state: Option<Vec<u8>>,
}

impl Model {
    fn new() -> Model {
        Model {
            first: 1,
            records: BTreeMap::new(),
            term: 1,
            state: None,
        }
    }

    fn last(&self) -> u64 {
        self.records
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.first - 1)
    }

    fn append(&mut self, wal: &mut Wal, len: usize) {
        let index = self.last() + 1;
        let payload: Vec<u8> = (0..len).map(|i| (i as u64 * 31 + index) as u8).collect();
        common::append(wal, index, self.term, &payload);
        self.records.insert(index, (self.term, payload));
    }

    fn check(&self, wal: &Wal) {
        wal.check_invariants();
        assert_eq!(wal.last_index(), LogIndex(self.last()), "last index");
        assert!(wal.first_index().0 <= self.first, "first index");
        for (index, (term, payload)) in &self.records {
            let record = wal.get(LogIndex(*index)).expect("readable");
            assert_eq!(record.term, Term(*term), "term at {index}");
            assert_eq!(record.payload, &payload[..], "payload at {index}");
        }
        assert_eq!(wal.state(), self.state.as_deref(), "state");
    }
}

/// One random step of the WAL's thread: appends (most of the time), a state change, or
/// an operation that removes log bytes while flushes may be running.
fn step(wal: &mut Wal, model: &mut Model, rng: &mut Rng) {
    match rng.below(16) {
        0..=8 => {
            if rng.below(8) == 0 {
                model.term += 1;
            }
            for _ in 0..1 + rng.below(8) {
                let len = usize::try_from(rng.below(600)).expect("small");
                model.append(wal, len);
            }
        }
        9 | 10 => {
            let value = vec![u8::try_from(rng.below(256)).expect("byte"); 24];
            wal.set_state(&value).expect("set state");
            model.state = Some(value);
        }
        11 | 12 => {
            let span = model.last() + 1 - model.first;
            let from = model.first + rng.below(span + 1);
            wal.truncate_suffix(LogIndex(from)).expect("truncate");
            model.records.retain(|index, _| *index < from);
        }
        13 | 14 => {
            // Behind the tail mostly (whole segments freed, maybe recycled), sometimes
            // past the end (a reset).
            let span = model.last() + 1 - model.first;
            let through = model.first - 1 + rng.below(span + 2);
            wal.compact_prefix(LogIndex(through)).expect("compact");
            model.records.retain(|index, _| *index > through);
            model.first = model.first.max(through + 1);
        }
        _ => {
            let next = model.last() + 1 + rng.below(3);
            wal.reset(LogIndex(next)).expect("reset");
            model.records.clear();
            model.first = next;
        }
    }
}

/// The WAL's thread appends, truncates, compacts and resets, calling `begin_sync` after
/// most steps and handing each flush to a second thread, which runs them as they come,
/// concurrently with the steps that follow. Every flush must succeed (also those of
/// segments removed meanwhile), and after close and reopen the log must equal the model.
#[test]
fn flushes_run_on_another_thread_while_the_log_changes_and_the_log_reopens_as_written() {
    for seed in 1..=4u64 {
        let spares = usize::try_from(seed % 3).expect("small");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let mut wal = Wal::open(&path, config(8 * 1024, spares)).expect("open");
        let mut model = Model::new();
        let mut rng = Rng(seed);
        // Small, so the WAL's thread sometimes waits for the flusher, as a real one does.
        let (flushes, pending) = sync_channel::<Flush>(4);
        let flusher = std::thread::spawn(move || {
            let mut ran = 0u32;
            for flush in pending {
                flush
                    .run()
                    .unwrap_or_else(|error| panic!("seed {seed}: flush {ran} failed: {error}"));
                ran += 1;
            }
            ran
        });
        // Bound: a fixed number of steps.
        for _ in 0..400 {
            step(&mut wal, &mut model, &mut rng);
            if rng.below(4) != 0 {
                flushes
                    .send(wal.begin_sync().expect("begin sync"))
                    .expect("flusher alive");
            }
        }
        let last = wal.begin_sync().expect("begin sync");
        drop(flushes);
        let ran = flusher.join().expect("every flush succeeded");
        assert!(ran > 100, "seed {seed}: only {ran} flushes ran");
        last.run().expect("last flush");
        model.check(&wal);
        drop(wal);
        let wal = Wal::open(&path, config(8 * 1024, spares)).expect("reopen");
        model.check(&wal);
    }
}

/// `cachestat(2)` of a whole file: (pages dirty, pages under write-back), or `None` where
/// the kernel has no such call.
fn dirty_pages(path: &Path) -> Option<(u64, u64)> {
    dirty_pages_below(path, u64::MAX)
}

/// As [`dirty_pages`], for the pages before byte `end` (rounded down to a page).
fn dirty_pages_below(path: &Path, end: u64) -> Option<(u64, u64)> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        cache: u64,
        dirty: u64,
        writeback: u64,
        evicted: u64,
        recently_evicted: u64,
    }
    // The same number on every architecture (added after the syscall tables were unified).
    const SYS_CACHESTAT: libc::c_long = 451;
    let file = std::fs::File::open(path).expect("open segment to inspect");
    // Length 0 means "to the end of the file".
    let len = if end == u64::MAX { 0 } else { end - end % 4096 };
    assert!(end == u64::MAX || len > 0, "a range of no page");
    let range = Range { off: 0, len };
    let mut stat = Stat::default();
    // SAFETY: both structs match the kernel's layout and outlive the call.
    let code = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    (code == 0).then_some((stat.dirty, stat.writeback))
}

/// Whether `dirty_pages` tells a flushed file from an unflushed one here: a store through
/// a shared mapping shows as a dirty page, and `fdatasync` cleans it.
fn dirty_pages_are_observable(dir: &Path) -> bool {
    let path = dir.join("probe");
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("create probe");
    file.set_len(16 * 1024).expect("size probe");
    // SAFETY: the file is private to this test and never shrunk while mapped.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.expect("map probe");
    map[..8192].fill(7);
    let before = dirty_pages(&path);
    file.sync_data().expect("sync probe");
    let after = dirty_pages(&path);
    drop(map);
    std::fs::remove_file(&path).expect("remove probe");
    matches!((before, after), (Some((dirty, _)), Some((0, 0))) if dirty > 0)
}

fn segment_names(dir: &Path) -> Vec<String> {
    common::dir_files(dir)
        .into_keys()
        .filter(|name| name.ends_with(".seg"))
        .collect()
}

/// Appends records of `len` bytes until the log rolls to a new segment; returns the last
/// index before the roll.
fn append_until_roll(wal: &mut Wal, model: &mut Model, dir: &Path, len: usize) -> u64 {
    let segments = segment_names(dir).len();
    // Bound: a segment holds a bounded number of records.
    loop {
        let before = model.last();
        model.append(wal, len);
        if segment_names(dir).len() > segments {
            return before;
        }
    }
}

/// A roll while the flush of an earlier `begin_sync` is still pending (`flush_first`
/// false), or after it ran, with more written since and no `begin_sync` (true). Either
/// way the roll alone must leave the sealed segment durable whole: with the pending flush
/// it must not flush only what it wrote since `begin_sync`, and after the flush it must
/// not take the completed flush for all of it.
fn roll_leaves_the_sealed_segment_whole(flush_first: bool) {
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path().join("wal");
    let observable = dirty_pages_are_observable(root.path());
    if !observable {
        eprintln!(
            "dirty pages not observable here (kernel or file system): checking recovery only"
        );
    }
    let mut wal = Wal::open(&path, config(64 * 1024, 0)).expect("open");
    let mut model = Model::new();
    // About 40 KiB, ten pages, before `begin_sync`.
    for _ in 0..40 {
        model.append(&mut wal, 1000);
    }
    wal.set_state(b"state before the roll").expect("set state");
    model.state = Some(b"state before the roll".to_vec());
    let flush = wal.begin_sync().expect("begin sync");
    if flush_first {
        flush.run().expect("flush");
        model.append(&mut wal, 1000);
    }
    let sealed = segment_names(&path).pop().expect("a segment");
    if observable {
        let (dirty, _) = dirty_pages(&path.join(&sealed)).expect("observable");
        // Zero would mean background write-back cleaned the pages first, and the check
        // below could not fail: say so rather than pass silently.
        if dirty == 0 {
            eprintln!("write-back cleaned the segment before the roll: this run proves less");
        }
    }
    let sealed_last = append_until_roll(&mut wal, &mut model, &path, 1000);
    if observable {
        let (dirty, writeback) = dirty_pages(&path.join(&sealed)).expect("observable");
        assert_eq!(
            (dirty, writeback),
            (0, 0),
            "sealed segment {sealed} has dirty or in-flight pages after the roll"
        );
    }
    // The image right after the roll: the sealed segment recovers whole, and chains into
    // the new tail.
    let image = common::dir_files(&path);
    let copy = root.path().join("copy");
    common::restore(&copy, &image);
    let recovered = Wal::open(&copy, config(64 * 1024, 0)).expect("open the image");
    model.check(&recovered);
    assert_eq!(recovered.first_index(), LogIndex(1));
    assert!(
        recovered.last_index().0 > sealed_last,
        "the new tail holds a record"
    );
    drop(recovered);
    flush
        .run()
        .expect("the pending flush still runs after the roll");
}

#[test]
fn a_roll_with_a_flush_pending_flushes_the_sealed_segment_whole() {
    roll_leaves_the_sealed_segment_whole(false);
}

#[test]
fn a_roll_after_a_completed_flush_still_flushes_what_was_written_since() {
    roll_leaves_the_sealed_segment_whole(true);
}

/// Two segments, and a flush begun on the second (the tail) that has real work to do.
fn two_segments_with_a_pending_flush(dir: &Path) -> (Wal, Model, Flush, String) {
    let mut wal = Wal::open(dir, config(8 * 1024, 1)).expect("open");
    let mut model = Model::new();
    append_until_roll(&mut wal, &mut model, dir, 500);
    model.append(&mut wal, 500);
    let flush = wal.begin_sync().expect("begin sync");
    let tail = segment_names(dir).pop().expect("a segment");
    // The flush must target the tail, or this test would only check a no-op.
    assert!(
        format!("{flush:?}").contains(&tail),
        "{flush:?} does not flush {tail}"
    );
    (wal, model, flush, tail)
}

#[test]
fn a_flush_of_a_segment_removed_by_truncation_or_reset_succeeds() {
    for reset in [false, true] {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("wal");
        let (mut wal, mut model, flush, tail) = two_segments_with_a_pending_flush(&path);
        if reset {
            let next = model.last() + 1;
            wal.reset(LogIndex(next)).expect("reset");
            model.records.clear();
            model.first = next;
        } else {
            wal.truncate_suffix(LogIndex(2)).expect("truncate");
            model.records.retain(|index, _| *index < 2);
        }
        assert!(
            !segment_names(&path).contains(&tail),
            "{tail} should be gone"
        );
        flush.run().expect("flush of a removed segment");
        model.append(&mut wal, 100);
        wal.sync().expect("sync");
        drop(wal);
        model.check(&Wal::open(&path, config(8 * 1024, 1)).expect("reopen"));
    }
}

#[test]
fn a_flush_of_a_compacted_segment_succeeds_whether_it_was_deleted_or_kept_as_a_spare() {
    for spares in [0, 1] {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("wal");
        let mut wal = Wal::open(&path, config(8 * 1024, spares)).expect("open");
        let mut model = Model::new();
        model.append(&mut wal, 500);
        let flush = wal.begin_sync().expect("begin sync");
        let sealed = segment_names(&path).pop().expect("a segment");
        // The roll flushes the segment whole, so this flush finds its generation durable
        // and makes no system call; it must still report success.
        let through = append_until_roll(&mut wal, &mut model, &path, 500);
        wal.compact_prefix(LogIndex(through)).expect("compact");
        model.records.retain(|index, _| *index > through);
        model.first = through + 1;
        assert!(
            !segment_names(&path).contains(&sealed),
            "{sealed} should be gone"
        );
        flush.run().expect("flush of a compacted segment");
        wal.sync().expect("sync");
        drop(wal);
        model.check(&Wal::open(&path, config(8 * 1024, spares)).expect("reopen"));
    }
}

/// The store's `begin_sync`: entries and hard state flushed on another thread reopen.
#[test]
fn a_store_flush_run_on_another_thread_covers_entries_and_hard_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wal");
    let mut store = WalStore::open(&path, config(16 * 1024, 2)).expect("open");
    let entries: Vec<Entry> = (1..=200u64)
        .map(|index| Entry {
            index: LogIndex(index),
            term: Term(3),
            payload: EntryPayload::Command(Bytes::from(vec![(index % 251) as u8; 100])),
        })
        .collect();
    store.append(&entries).expect("append");
    let hard_state = HardState {
        term: Term(3),
        vote: NodeId(2),
        commit: LogIndex(150),
    };
    store.set_hard_state(hard_state).expect("hard state");
    let flush = store.begin_sync().expect("begin sync");
    std::thread::spawn(move || flush.run())
        .join()
        .expect("flush thread")
        .expect("flush");
    drop(store);
    let store = WalStore::open(&path, config(16 * 1024, 2)).expect("reopen");
    assert_eq!(store.initial_state().expect("state").hard_state, hard_state);
    assert_eq!(
        store
            .entries(LogIndex(1), LogIndex(201), u64::MAX)
            .expect("entries"),
        entries
    );
}

/// A truncation while the flush covering the newest state record is pending: the state
/// goes to the state file first (FORMAT.md, Claim 5), and that copy must not become
/// durable before the records it refers to, so the log through the state record is
/// flushed before it. Observed as: no dirty page left in front of the cut (the cut itself
/// dirties the pages it zeroes, at and after the cut's page).
#[test]
fn a_truncation_with_a_flush_pending_flushes_the_log_before_copying_the_state() {
    let root = tempfile::tempdir().expect("tempdir");
    if !dirty_pages_are_observable(root.path()) {
        eprintln!("dirty pages not observable here (kernel or file system): skipped");
        return;
    }
    let path = root.path().join("wal");
    let mut wal = Wal::open(&path, config(64 * 1024, 0)).expect("open");
    let mut model = Model::new();
    for _ in 0..20 {
        model.append(&mut wal, 1000);
    }
    let state = [9u8; 24];
    wal.set_state(&state).expect("set state");
    model.state = Some(state.to_vec());
    let flush = wal.begin_sync().expect("begin sync");
    for _ in 0..10 {
        model.append(&mut wal, 1000);
    }
    let cut = 25;
    wal.truncate_suffix(LogIndex(cut)).expect("truncate");
    model.records.retain(|index, _| *index < cut);
    let record_bytes = encoded_len(1000) as u64;
    let state_bytes = encoded_len(STATE_SEQ_BYTES + state.len()) as u64;
    let cut_offset = SEGMENT_HEADER_BYTES as u64 + (cut - 1) * record_bytes + state_bytes;
    let segment = path.join(segment_names(&path).pop().expect("a segment"));
    assert!(
        cut_offset >= 4096 * 5,
        "the state record lies pages before the cut"
    );
    let (dirty, writeback) = dirty_pages_below(&segment, cut_offset).expect("observable");
    assert_eq!(
        (dirty, writeback),
        (0, 0),
        "log pages before the cut not flushed before the state was copied"
    );
    flush.run().expect("flush");
    wal.sync().expect("sync");
    drop(wal);
    model.check(&Wal::open(&path, config(64 * 1024, 0)).expect("reopen"));
}

#[test]
fn reopening_after_a_process_died_with_a_flush_pending_makes_the_tail_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !dirty_pages_are_observable(dir.path()) {
        eprintln!("skipped: cachestat(2) cannot tell dirty pages here");
        return;
    }
    let path = dir.path().join("wal");
    let mut wal = Wal::open(&path, config(64 * 1024, 0)).expect("open");
    let mut model = Model::new();
    for _ in 0..20 {
        model.append(&mut wal, 300);
    }
    // The process "dies" before running its flush: the writes stay in the page cache.
    let never_run = wal.begin_sync().expect("begin");
    drop(never_run);
    drop(wal);
    let tail = dir_tail(&path);
    let (dirty, _) = dirty_pages(&tail).expect("observable");
    assert!(
        dirty > 0,
        "the unflushed records are dirty before the reopen"
    );
    let wal = Wal::open(&path, config(64 * 1024, 0)).expect("reopen");
    model.check(&wal);
    assert_eq!(
        dirty_pages(&tail),
        Some((0, 0)),
        "recovery left records it serves as durable only in the page cache"
    );
}

fn dir_tail(dir: &Path) -> std::path::PathBuf {
    dir.join(segment_names(dir).pop().expect("a segment"))
}
