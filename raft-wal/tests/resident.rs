//! The log's pages do not stay in the process's resident memory: a synced stretch of the
//! tail, a sealed segment and a reopened log are unmapped from this process (they stay in
//! the file and the page cache) and read back intact. Measured from `/proc/self/smaps`,
//! the kernel's own account of each mapping's resident bytes.

mod common;

use std::path::Path;

use raft_core::LogIndex;
use raft_wal::{SyncPolicy, Wal, WalConfig};

const SEGMENT_BYTES: u64 = 16 << 20;

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: SEGMENT_BYTES,
        sync_policy: SyncPolicy::Always,
        ..WalConfig::default()
    }
}

fn payload(index: u64) -> Vec<u8> {
    vec![u8::try_from(index % 251).expect("below 251"); 4000]
}

/// Resident KiB of every mapping of a file in `dir`, by file name.
fn resident_kib(dir: &Path) -> Vec<(String, u64)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read smaps");
    let dir = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            current = line
                .split_whitespace()
                .nth(5)
                .filter(|path| path.starts_with(&dir))
                .map(|path| path.rsplit('/').next().unwrap_or(path).to_owned());
        } else if let (Some(name), Some(kib)) = (&current, line.strip_prefix("Rss:")) {
            let kib = kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .expect("Rss value");
            found.push((name.clone(), kib));
        }
    }
    found
}

#[test]
fn synced_log_pages_leave_resident_memory_and_read_back_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wal = Wal::open(dir.path(), config()).expect("open");
    // 6,000 records of 4 KiB: about 24 MiB, so one sealed 16 MiB segment and a tail.
    let count = 6_000;
    for index in 1..=count {
        common::append(&mut wal, index, 1, &payload(index));
        if index % 50 == 0 {
            wal.sync().expect("sync");
        }
    }
    wal.sync().expect("sync");
    let resident = resident_kib(dir.path());
    assert_eq!(resident.len(), 2, "two segments mapped: {resident:?}");
    for (name, kib) in &resident {
        // At most the last MiB written since a release, plus the page being written.
        assert!(
            *kib <= 1_100,
            "{name}: {kib} KiB resident after 24 MiB written"
        );
    }
    for index in [1, 2_000, 3_999, count] {
        let record = wal.get(LogIndex(index)).expect("record is there");
        assert!(
            record.payload == payload(index).as_slice(),
            "record {index} reads back wrong"
        );
    }

    drop(wal);
    let wal = Wal::open(dir.path(), config()).expect("reopen");
    // The recovery scan read every record; none of it stays mapped.
    for (name, kib) in resident_kib(dir.path()) {
        assert!(kib <= 8, "{name}: {kib} KiB resident after reopen");
    }
    assert_eq!(wal.last_index(), LogIndex(count));
    let record = wal.get(LogIndex(77)).expect("record is there");
    assert!(record.payload == payload(77).as_slice());
}
