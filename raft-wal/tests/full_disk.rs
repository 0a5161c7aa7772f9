//! A full disk: appends fail with an error (never a SIGBUS: segments are preallocated
//! with `posix_fallocate` before they are mapped), nothing already synced is damaged,
//! and the log reopens cleanly.
//!
//! Two ways of filling the disk, both run by the one test in this file (one test, because
//! the second changes a process-wide limit): a small tmpfs the test mounts (we run as
//! root; if mounting is refused the tmpfs part says so and the rlimit part still runs),
//! and `RLIMIT_FSIZE` with `SIGXFSZ` ignored, so writing past the limit fails with EFBIG.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use raft_core::storage::contract::{entries, read_all};
use raft_core::{LogIndex, LogStore, LogStoreMut, Snapshot, SnapshotMeta, Term};
use raft_wal::{Error, SyncPolicy, WalConfig, WalStore};

/// Unmounts on drop, so a failing assertion does not leave a mount behind.
struct TmpfsMount {
    point: PathBuf,
}

impl TmpfsMount {
    fn mount(point: &Path, size_bytes: u64) -> Option<TmpfsMount> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}"), "tmpfs"])
            .arg(point)
            .status();
        match status {
            Ok(status) if status.success() => Some(TmpfsMount {
                point: point.to_owned(),
            }),
            other => {
                eprintln!("cannot mount a tmpfs ({other:?}); only the RLIMIT_FSIZE half runs");
                None
            }
        }
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // Nothing more can be done if this fails; the temp dir removal will report it.
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

fn config(segment_bytes: u64) -> WalConfig {
    WalConfig {
        segment_bytes,
        sync_policy: SyncPolicy::Always,
        ..WalConfig::default()
    }
}

/// Appends batches of 10 entries, syncing each, until an append fails; returns the
/// error and the last synced index.
fn fill(store: &mut WalStore) -> (raft_core::StorageError, u64) {
    let mut synced = store.last_index().0;
    // Bound: the disk is small; 100_000 batches would be megabytes past any limit here.
    for _ in 0..100_000 {
        let next = store.last_index().0 + 1;
        if let Err(error) = store.append(&entries(next, next + 9, 1)) {
            return (error, synced);
        }
        store
            .sync()
            .expect("sync of a batch whose segment is preallocated");
        synced = store.last_index().0;
    }
    panic!("the disk never filled up");
}

fn assert_io_error(error: &raft_core::StorageError, codes: &[i32]) {
    let raft_core::StorageError::Backend(inner) = error else {
        panic!("expected a backend error, got {error:?}");
    };
    let wal_error = inner.downcast_ref::<Error>().expect("a raft-wal error");
    let Error::Io { source, .. } = wal_error else {
        panic!("expected an I/O error, got {wal_error}");
    };
    assert!(
        codes.contains(&source.raw_os_error().unwrap_or(0)),
        "unexpected error {source}"
    );
}

fn snapshot(index: u64, data_bytes: usize) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index: LogIndex(index),
            term: Term(1),
            membership: Default::default(),
        },
        data: Bytes::from(vec![7u8; data_bytes]),
    }
}

/// With `spare_segments_max` 0 compaction deletes the segments it drops, and their space
/// comes back only once the WAL's reaper thread has dropped them: the roll right after must
/// wait for that, not fail.
fn full_tmpfs(root: &Path, spare_segments_max: usize) {
    let point = root.join(format!("mnt-{spare_segments_max}-spares"));
    std::fs::create_dir(&point).expect("mkdir");
    let Some(_mount) = TmpfsMount::mount(&point, 256 * 1024) else {
        return;
    };
    let dir = point.join("wal");
    let config = |segment_bytes| WalConfig {
        spare_segments_max,
        ..config(segment_bytes)
    };
    let mut store = WalStore::open(&dir, config(16 * 1024)).expect("open");
    store.append(&entries(1, 20, 1)).expect("append");
    store.sync().expect("sync");
    store
        .apply_snapshot(snapshot(10, 1000))
        .expect("small snapshot fits");
    let (error, synced) = fill(&mut store);
    assert_io_error(&error, &[libc::ENOSPC]);
    let written = read_all(&store);
    // A snapshot too big for the disk fails and leaves the old one whole.
    let too_big = store.apply_snapshot(snapshot(synced, 512 * 1024));
    assert!(
        too_big.is_err(),
        "a snapshot larger than the disk cannot be written"
    );
    drop(store);
    let mut store = WalStore::open(&dir, config(16 * 1024)).expect("reopen a full disk");
    // Entries of the failed batch written before the failure may be there (unsynced
    // writes may survive); every synced one must be, unchanged.
    assert!(
        store.last_index() >= LogIndex(synced),
        "lost synced entries"
    );
    let kept = read_all(&store);
    let synced_count = usize::try_from(synced - 10).expect("small");
    assert_eq!(
        kept[..synced_count],
        written[..synced_count],
        "synced entries intact"
    );
    assert_eq!(store.snapshot().expect("snapshot"), snapshot(10, 1000));
    // Compaction frees whole segments, after which appends work again.
    store
        .apply_snapshot(snapshot(synced - 5, 10))
        .expect("compact");
    let next = store.last_index().0 + 1;
    store
        .append(&entries(next, next + 9, 1))
        .expect("append after freeing space");
    store.sync().expect("sync");
}

fn full_rlimit(root: &Path) {
    let dir = root.join("wal-rlimit");
    let mut store = WalStore::open(&dir, config(16 * 1024)).expect("open");
    store.append(&entries(1, 50, 1)).expect("append");
    store.sync().expect("sync");
    let written = read_all(&store);
    drop(store);
    // SAFETY: plain system calls; this test binary runs this one test, so no other thread
    // depends on the signal disposition or the file size limit.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: 64 * 1024,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
    }
    // Segments of 1 MiB cannot be preallocated under a 64 KiB file size limit.
    let mut store = WalStore::open(&dir, config(1024 * 1024)).expect("reopen under the limit");
    let (error, synced) = fill(&mut store);
    assert_io_error(&error, &[libc::EFBIG]);
    drop(store);
    // SAFETY: as above.
    unsafe {
        let limit = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
    }
    let mut store = WalStore::open(&dir, config(1024 * 1024)).expect("reopen");
    assert!(
        store.last_index() >= LogIndex(synced),
        "lost synced entries"
    );
    assert_eq!(
        read_all(&store)[..written.len()],
        written[..],
        "synced entries intact"
    );
    let next = store.last_index().0 + 1;
    store
        .append(&entries(next, next + 4, 1))
        .expect("append once there is room");
    store.sync().expect("sync");
}

#[test]
fn a_full_disk_fails_appends_and_keeps_synced_entries() {
    let root = tempfile::tempdir().expect("tempdir");
    full_tmpfs(root.path(), WalConfig::default().spare_segments_max);
    full_tmpfs(root.path(), 0);
    full_rlimit(root.path());
}
