//! A version-2 directory (segments without a salt) is still read, continued and compacted
//! by this build: users' data is never refused for the version-3 change. The test turns a
//! freshly written log into its exact version-2 image (header version 2, salt bytes zero,
//! every record's CRC re-chained from `prev_crc`), as the previous build would have written.

use std::path::Path;

use raft_core::{LogIndex, Term};
use raft_wal::record::{encoded_len, RECORD_HEADER_BYTES};
use raft_wal::segment::{self, SEGMENT_HEADER_BYTES};
use raft_wal::{Record, RecordKind, SyncPolicy, Wal, WalConfig};

const SEGMENT_BYTES: u64 = 8 * 1024;

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: SEGMENT_BYTES,
        sync_policy: SyncPolicy::Always,
        spare_segments_max: 2,
    }
}

fn payload(index: u64) -> Vec<u8> {
    vec![index as u8; usize::try_from(index % 300).expect("small")]
}

fn append_range(wal: &mut Wal, first: u64, last: u64) {
    for index in first..=last {
        let data = payload(index);
        wal.append(&Record {
            index: LogIndex(index),
            term: Term(1 + index / 50),
            kind: RecordKind(2),
            payload: &data,
        })
        .expect("append");
        if index % 4 == 0 {
            wal.set_state(&index.to_le_bytes()).expect("state");
            wal.sync().expect("sync");
        }
    }
    wal.sync().expect("sync");
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn record_crc(seed: u32, record: &[u8], payload_len: usize) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(&record[0..4]);
    hasher.update(&record[8..RECORD_HEADER_BYTES + payload_len]);
    hasher.finalize()
}

/// Rewrites every segment of `dir` as version 2 would have: no salt, the first record
/// chained from `prev_crc` directly, and each segment's `prev_crc` the new last CRC.
fn downgrade_to_version_2(dir: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .filter(|name| segment::parse_file_name(name).is_some())
        .collect();
    names.sort();
    let mut prev_crc_v2 = 0u32;
    for name in names {
        let path = dir.join(&name);
        let mut bytes = std::fs::read(&path).expect("read");
        let prev_crc_v3 = u32_at(&bytes, 24);
        let salt = u32_at(&bytes, 12);
        let mut seed_v3 = segment::chain_seed(prev_crc_v3, salt);
        let mut seed_v2 = prev_crc_v2;
        let mut offset = SEGMENT_HEADER_BYTES;
        // Bound: each step moves past one record; stops at the first one not in the chain.
        while offset + RECORD_HEADER_BYTES <= bytes.len() {
            let len = u32_at(&bytes, offset) as usize;
            let end = offset + encoded_len(len);
            if end > bytes.len()
                || bytes[offset + 24] == 0
                || record_crc(seed_v3, &bytes[offset..], len) != u32_at(&bytes, offset + 4)
            {
                break;
            }
            seed_v3 = u32_at(&bytes, offset + 4);
            seed_v2 = record_crc(seed_v2, &bytes[offset..], len);
            bytes[offset + 4..offset + 8].copy_from_slice(&seed_v2.to_le_bytes());
            offset = end;
        }
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        bytes[12..16].fill(0);
        bytes[24..28].copy_from_slice(&prev_crc_v2.to_le_bytes());
        let header_crc = crc32fast::hash(&bytes[0..28]);
        bytes[28..32].copy_from_slice(&header_crc.to_le_bytes());
        std::fs::write(&path, &bytes).expect("write");
        prev_crc_v2 = seed_v2;
    }
}

fn assert_holds(wal: &Wal, first: u64, last: u64) {
    assert_eq!(wal.last_index(), LogIndex(last));
    for index in first..=last {
        let record = wal.get(LogIndex(index)).expect("record");
        assert_eq!(record.term, Term(1 + index / 50), "{index}");
        assert_eq!(record.payload, &payload(index)[..], "{index}");
    }
}

#[test]
fn a_version_2_directory_is_read_continued_and_compacted() {
    let guard = tempfile::tempdir().expect("tempdir");
    let path = guard.path().join("wal");
    let mut wal = Wal::open(&path, config()).expect("open");
    append_range(&mut wal, 1, 100);
    drop(wal);
    downgrade_to_version_2(&path);
    let first_header = std::fs::read(path.join(segment::file_name(LogIndex(1)))).expect("read");
    assert_eq!(u32_at(&first_header, 8), 2, "the image is version 2");

    let mut wal = Wal::open(&path, config()).expect("a version-2 directory opens");
    assert_holds(&wal, 1, 100);
    assert_eq!(wal.state(), Some(&100u64.to_le_bytes()[..]));
    // New segments are version 3, chained from the version-2 tail; compacted version-2
    // segments become spares and come back as version-3 segments.
    append_range(&mut wal, 101, 400);
    wal.compact_prefix(LogIndex(150)).expect("compact");
    assert!(path.join(segment::spare_file_name(0)).exists(), "a spare");
    append_range(&mut wal, 401, 700);
    assert_holds(&wal, 151, 700);
    drop(wal);
    let wal = Wal::open(&path, config()).expect("reopen");
    assert_holds(&wal, 151, 700);
    assert_eq!(wal.state(), Some(&700u64.to_le_bytes()[..]));
}
