//! Crash and damage tests on the disk image: cut the last segment at every byte offset of
//! its final records, flip single bits in sealed segments and in the tail, zero tail
//! pages, and mix pages of the old and new image as out-of-order mmap write-back would.
//! Recovery must return exactly the records that are whole on disk (a prefix of what was
//! written, holding everything synced), or an error for damage before the tail.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use raft_core::{LogIndex, Term};
use raft_wal::record::encoded_len;
use raft_wal::segment::SEGMENT_HEADER_BYTES;
use raft_wal::{Error, Record, RecordKind, SyncPolicy, Wal, WalConfig};

const SEGMENT_BYTES: u64 = 8 * 1024;

fn config(sync_policy: SyncPolicy) -> WalConfig {
    WalConfig {
        segment_bytes: SEGMENT_BYTES,
        sync_policy,
        ..WalConfig::default()
    }
}

/// What the test wrote: (index, term, payload).
type Written = Vec<(u64, u64, Vec<u8>)>;

fn payload(index: u64) -> Vec<u8> {
    let len = usize::try_from((index * 53) % 200 + 1).expect("small");
    (0..len).map(|i| (index as usize * 7 + i) as u8).collect()
}

/// Writes `count` records with a sync every 3, starting at term 1 (term 2 from index 30).
fn write_log(dir: &Path, count: u64) -> Written {
    let mut wal = Wal::open(dir, config(SyncPolicy::Always)).expect("open");
    let mut written = Vec::new();
    for index in 1..=count {
        let term = if index < 30 { 1 } else { 2 };
        let data = payload(index);
        common::append(&mut wal, index, term, &data);
        written.push((index, term, data));
        if index % 3 == 0 {
            wal.sync().expect("sync");
        }
    }
    wal.sync().expect("sync");
    written
}

fn segment_names(files: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    files
        .keys()
        .filter(|n| n.ends_with(".seg"))
        .cloned()
        .collect()
}

/// Record `[start, end)` offsets in the segment starting at `first`, up to `last`.
fn record_spans(first: u64, last: u64, written: &Written) -> Vec<(u64, usize, usize)> {
    let mut offset = SEGMENT_HEADER_BYTES;
    (first..=last)
        .map(|index| {
            let len = encoded_len(written[index as usize - 1].2.len());
            offset += len;
            (index, offset - len, offset)
        })
        .collect()
}

/// Asserts the reopened WAL holds exactly `written[..expected_last]`.
fn assert_recovered(wal: &Wal, written: &Written, expected_last: u64) {
    assert_eq!(
        wal.last_index(),
        LogIndex(expected_last),
        "recovered last index"
    );
    for (index, term, data) in &written[wal.first_index().0 as usize - 1..expected_last as usize] {
        let record = wal.get(LogIndex(*index)).expect("recovered record");
        assert_eq!(
            (record.term, record.payload),
            (Term(*term), &data[..]),
            "record {index}"
        );
    }
}

/// A log with several segments, and its disk image.
struct Setup {
    /// Removes the directory when the test ends.
    _guard: tempfile::TempDir,
    path: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
    written: Written,
    last_name: String,
    /// `(index, start, end)` of the last segment's records.
    spans: Vec<(u64, usize, usize)>,
}

fn setup() -> Setup {
    let guard = tempfile::tempdir().expect("tempdir");
    let path = guard.path().join("wal");
    let written = write_log(&path, 160);
    let files = common::dir_files(&path);
    let names = segment_names(&files);
    assert!(names.len() >= 3, "want several segments, got {names:?}");
    let last_name = names.last().expect("segments").clone();
    let first: u64 = last_name.trim_end_matches(".seg").parse().expect("name");
    let spans = record_spans(first, 160, &written);
    Setup {
        _guard: guard,
        path,
        files,
        written,
        last_name,
        spans,
    }
}

#[test]
fn cut_at_every_offset_of_the_final_records_recovers_the_whole_records() {
    let Setup {
        path,
        files,
        written,
        last_name,
        spans,
        ..
    } = setup();
    let final_start = spans[spans.len() - 4].1;
    let final_end = spans.last().expect("records").2;
    for cut in final_start..=final_end {
        for truncate_file in [false, true] {
            let mut damaged = files.clone();
            let bytes = damaged.get_mut(&last_name).expect("last segment");
            if truncate_file {
                bytes.truncate(cut);
            } else {
                bytes[cut..].fill(0);
            }
            common::restore(&path, &damaged);
            // Zeroing bytes that are already zero (padding, a payload ending in zeros)
            // changes nothing: a record is damaged only if a non-zero byte is cut.
            let original = &files[&last_name];
            let whole = |(_, start, end): &&(u64, usize, usize)| {
                let last_nonzero = (*start..*end)
                    .rev()
                    .find(|i| original[*i] != 0)
                    .expect("header is non-zero");
                if truncate_file {
                    *end <= cut
                } else {
                    last_nonzero < cut
                }
            };
            let expected_last = spans.iter().filter(whole).map(|s| s.0).max().expect("some");
            let mut wal =
                Wal::open(&path, config(SyncPolicy::Never)).expect("a torn tail is not an error");
            assert_recovered(&wal, &written, expected_last);
            // The log carries on from the cut and survives another reopen.
            let data = payload(expected_last + 1);
            let next = Record {
                index: LogIndex(expected_last + 1),
                term: Term(3),
                kind: RecordKind(2),
                payload: &data,
            };
            wal.append(&next).expect("append after recovery");
            drop(wal);
            let wal = Wal::open(&path, config(SyncPolicy::Never)).expect("reopen");
            assert_eq!(wal.last_index(), LogIndex(expected_last + 1), "cut {cut}");
        }
    }
}

#[test]
fn bit_flips_in_sealed_segments_are_errors() {
    let Setup {
        path,
        files,
        written,
        last_name: _last_name,
        spans: _spans,
        ..
    } = setup();
    let sealed = segment_names(&files)[1].clone();
    let first: u64 = sealed.trim_end_matches(".seg").parse().expect("name");
    let next_first: u64 = segment_names(&files)[2]
        .trim_end_matches(".seg")
        .parse()
        .expect("name");
    let spans = record_spans(first, next_first - 1, &written);
    // Every bit of the header, the first record and the last record (the rest is alike).
    let ranges = [
        0..SEGMENT_HEADER_BYTES,
        spans[0].1..spans[0].2,
        spans[spans.len() - 1].1..spans[spans.len() - 1].2,
    ];
    for byte in ranges.into_iter().flatten() {
        for bit in 0..8 {
            let mut damaged = files.clone();
            damaged.get_mut(&sealed).expect("sealed")[byte] ^= 1 << bit;
            common::restore(&path, &damaged);
            match Wal::open(&path, config(SyncPolicy::Never)) {
                Err(Error::Corrupt { path, .. }) => {
                    assert!(path.ends_with(&sealed), "error names {path:?}")
                }
                Err(Error::UnsupportedVersion { .. }) => assert!((8..12).contains(&byte)),
                Err(other) => panic!("unexpected error {other}"),
                Ok(_) => panic!("flip of bit {bit} of byte {byte} in {sealed} went unnoticed"),
            }
        }
    }
}

#[test]
fn bit_flips_in_the_tail_cut_it_before_the_flipped_record_or_fail() {
    let Setup {
        path,
        files,
        written,
        last_name,
        spans,
        ..
    } = setup();
    for (index, start, end) in spans.iter().rev().take(3).copied() {
        for byte in start..end {
            let mut damaged = files.clone();
            damaged.get_mut(&last_name).expect("tail")[byte] ^= 0x10;
            common::restore(&path, &damaged);
            let wal =
                Wal::open(&path, config(SyncPolicy::Never)).expect("a damaged tail record is cut");
            assert_recovered(&wal, &written, index - 1);
        }
    }
    for byte in 0..SEGMENT_HEADER_BYTES {
        let mut damaged = files.clone();
        damaged.get_mut(&last_name).expect("tail")[byte] ^= 0x01;
        common::restore(&path, &damaged);
        assert!(
            Wal::open(&path, config(SyncPolicy::Never)).is_err(),
            "tail header byte {byte}"
        );
    }
}

#[test]
fn zeroed_tail_pages_cut_the_log_at_the_first_damaged_record() {
    let Setup {
        path,
        files,
        written,
        last_name,
        spans,
        ..
    } = setup();
    let end = spans.last().expect("records").2;
    for page_start in (0..end).step_by(4096).skip(1) {
        let mut damaged = files.clone();
        let bytes = damaged.get_mut(&last_name).expect("tail");
        let page_end = (page_start + 4096).min(bytes.len());
        bytes[page_start..page_end].fill(0);
        common::restore(&path, &damaged);
        let expected_last = spans
            .iter()
            .take_while(|(_, _, e)| *e <= page_start)
            .map(|s| s.0)
            .last()
            .expect("some");
        let wal =
            Wal::open(&path, config(SyncPolicy::Never)).expect("zeroed tail pages are a torn tail");
        assert_recovered(&wal, &written, expected_last);
    }
}

#[test]
fn a_missing_middle_segment_is_an_error_naming_the_file() {
    let Setup {
        path,
        mut files,
        written: _written,
        last_name: _last_name,
        spans: _spans,
        ..
    } = setup();
    let names = segment_names(&files);
    files.remove(&names[1]);
    common::restore(&path, &files);
    match Wal::open(&path, config(SyncPolicy::Never)) {
        Err(Error::Corrupt { path, .. }) => assert!(path.ends_with(&names[0])),
        other => panic!("expected Corrupt, got {:?}", other.map(|w| w.last_index())),
    }
}

#[test]
fn another_format_version_is_refused_with_a_clear_message() {
    // Version 1 (never deployed, no migration) and a future version 4.
    for version in [1u32, 4] {
        let Setup {
            path, mut files, ..
        } = setup();
        let first = segment_names(&files)[0].clone();
        let bytes = files.get_mut(&first).expect("segment");
        bytes[8..12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..28]);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        common::restore(&path, &files);
        let error = Wal::open(&path, config(SyncPolicy::Never))
            .err()
            .expect("refused");
        assert!(
            matches!(
                error,
                Error::UnsupportedVersion {
                    found,
                    supported: 3,
                    ..
                } if found == version
            ),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains(&format!("format version {version}")),
            "{error}"
        );
    }
}

/// Every combination of old and new content of the pages an unsynced write changed, as
/// mmap write-back in any order would leave them, recovers to a state that existed.
fn check_mixed_pages(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
    states: &[Written],
    kept: u64,
) {
    let guard = tempfile::tempdir().expect("tempdir");
    let path = guard.path().join("wal");
    let mut changed = Vec::new();
    for (name, new) in after.iter().filter(|(n, _)| n.ends_with(".seg")) {
        let old = before
            .get(name)
            .cloned()
            .unwrap_or_else(|| vec![0; new.len()]);
        for page in 0..new.len().div_ceil(4096) {
            let range = page * 4096..((page + 1) * 4096).min(new.len());
            if old[range.clone()] != new[range.clone()] {
                changed.push((name.clone(), range));
            }
        }
    }
    assert!(
        (2..=10).contains(&changed.len()),
        "pages changed: {}",
        changed.len()
    );
    for mask in 0u32..(1 << changed.len()) {
        let mut image = before.clone();
        for (bit, (name, range)) in changed.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                let target = image
                    .entry(name.clone())
                    .or_insert_with(|| after[name].iter().map(|_| 0).collect());
                target[range.clone()].copy_from_slice(&after[name][range.clone()]);
            }
        }
        common::restore(&path, &image);
        let wal = Wal::open(&path, config(SyncPolicy::Never)).expect("open mixed image");
        let last = wal.last_index().0;
        assert!(
            last >= kept,
            "mask {mask:b}: lost synced records, last {last} < {kept}"
        );
        let fits = states.iter().any(|state| {
            state.len() as u64 >= last
                && state[wal.first_index().0 as usize - 1..last as usize]
                    .iter()
                    .all(|(index, term, data)| {
                        let record = wal.get(LogIndex(*index)).expect("record");
                        record.term == Term(*term) && record.payload == &data[..]
                    })
        });
        assert!(
            fits,
            "mask {mask:b}: recovered log (last {last}) is not a prefix of any state"
        );
    }
}

#[test]
fn out_of_order_page_write_back_never_yields_a_log_that_did_not_exist() {
    let guard = tempfile::tempdir().expect("tempdir");
    let path = guard.path().join("wal");
    let config = WalConfig {
        segment_bytes: 64 * 1024,
        sync_policy: SyncPolicy::Always,
        ..WalConfig::default()
    };
    let mut wal = Wal::open(&path, config.clone()).expect("open");
    let mut old: Written = Vec::new();
    for index in 1..=40 {
        let data = vec![index as u8; 300];
        common::append(&mut wal, index, 1, &data);
        old.push((index, 1, data));
    }
    wal.sync().expect("sync");
    let before = common::dir_files(&path);
    // Plain appends, unsynced: any mix keeps the 40 synced records.
    let mut longer = old.clone();
    for index in 41..=60 {
        let data = vec![index as u8; 300];
        common::append(&mut wal, index, 1, &data);
        longer.push((index, 1, data));
    }
    check_mixed_pages(&before, &common::dir_files(&path), &[longer], 40);
    // A truncation and a rewrite of the same size, unsynced: old or new, never a mix.
    wal.truncate_suffix(LogIndex(20)).expect("truncate");
    let mut new: Written = old[..19].to_vec();
    for index in 20..=45 {
        let data = vec![(index + 100) as u8; 300];
        common::append(&mut wal, index, 2, &data);
        new.push((index, 2, data));
    }
    check_mixed_pages(&before, &common::dir_files(&path), &[old, new.clone()], 19);
    // Once synced, a truncation is final: the stale records never come back.
    wal.sync().expect("sync");
    wal.truncate_suffix(LogIndex(30)).expect("truncate");
    common::append(&mut wal, 30, 2, &new[29].2);
    wal.sync().expect("sync");
    drop(wal);
    let wal = Wal::open(&path, config).expect("reopen");
    assert_eq!(
        wal.last_index(),
        LogIndex(30),
        "identical rewrite must not resurrect the truncated records"
    );
}
