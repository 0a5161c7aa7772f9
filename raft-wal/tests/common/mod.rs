//! Helpers the WAL's integration tests share. Each test binary compiles this module and
//! uses only some of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use raft_core::{LogIndex, Term};
use raft_wal::{Record, RecordKind, Wal};

/// Appends one log record (kind 1) at `index` in `term`.
pub fn append(wal: &mut Wal, index: u64, term: u64, payload: &[u8]) {
    wal.append(&Record {
        index: LogIndex(index),
        term: Term(term),
        kind: RecordKind(1),
        payload,
    })
    .expect("append");
}

/// The directory's files by name, without the lock file: an image to damage and restore.
pub fn dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| {
            (
                e.file_name().into_string().expect("utf8"),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

/// Replaces the directory's contents with `files`.
pub fn restore(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let _ = std::fs::remove_dir_all(dir); // Absent on the first restore.
    std::fs::create_dir_all(dir).expect("mkdir");
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
}
