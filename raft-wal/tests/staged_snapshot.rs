//! A snapshot staged on another thread (`WalStore::stage_snapshot`) and installed later
//! (`install_snapshot`): staging changes nothing a reopen sees, installing is the same
//! commit as `apply_snapshot`, and a staged snapshot overtaken by a newer one (a leader's,
//! installed meanwhile) is discarded instead of replacing it.

use std::path::Path;

use bytes::Bytes;
use raft_core::{
    Entry, EntryPayload, LogIndex, LogStore, LogStoreMut, Snapshot, SnapshotMeta, Term,
};
use raft_wal::{SyncPolicy, WalConfig, WalStore};

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 * 1024,
        sync_policy: SyncPolicy::Always,
        ..WalConfig::default()
    }
}

fn entries(low: u64, high: u64) -> Vec<Entry> {
    (low..=high)
        .map(|index| Entry {
            index: LogIndex(index),
            term: Term(1),
            payload: EntryPayload::Command(Bytes::from(vec![
                u8::try_from(index % 251)
                    .expect("below 251");
                300
            ])),
        })
        .collect()
}

fn snapshot(index: u64, fill: u8) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index: LogIndex(index),
            term: Term(1),
            membership: Default::default(),
        },
        data: Bytes::from(vec![fill; 5000]),
    }
}

fn store_with_log(dir: &Path, last: u64) -> WalStore {
    let mut store = WalStore::open(dir, config()).expect("open");
    store.append(&entries(1, last)).expect("append");
    store.sync().expect("sync");
    store
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

#[test]
fn staging_changes_nothing_until_installed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = store_with_log(dir.path(), 400);
    let staged = WalStore::stage_snapshot(store.dir(), snapshot(300, 1)).expect("stage");
    assert_eq!(staged.index(), LogIndex(300));
    // The store goes on appending while the snapshot is staged.
    store.append(&entries(401, 450)).expect("append");
    store.sync().expect("sync");
    assert_eq!(store.first_index(), LogIndex(1));
    assert_eq!(store.snapshot().expect("snapshot").meta.index, LogIndex(0));

    // A crash before the install: the reopened store has no snapshot and the whole log;
    // the staged file is a leftover removed on open.
    drop(store);
    let mut store = WalStore::open(dir.path(), config()).expect("reopen");
    assert_eq!(store.snapshot().expect("snapshot").meta.index, LogIndex(0));
    assert_eq!(store.last_index(), LogIndex(450));
    assert!(temp_files(dir.path()).is_empty(), "leftover staged file");

    let staged = WalStore::stage_snapshot(store.dir(), snapshot(300, 2)).expect("stage");
    assert!(store.install_snapshot(staged).expect("install"));
    assert_eq!(store.first_index(), LogIndex(301));
    assert_eq!(store.last_index(), LogIndex(450));
    drop(store);
    let store = WalStore::open(dir.path(), config()).expect("reopen");
    let recovered = store.snapshot().expect("snapshot");
    assert_eq!(recovered.meta.index, LogIndex(300));
    assert_eq!(recovered.data, snapshot(300, 2).data);
    assert_eq!(store.first_index(), LogIndex(301));
    assert_eq!(
        store
            .entries(LogIndex(301), LogIndex(451), u64::MAX)
            .expect("entries"),
        entries(301, 450)
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn an_overtaken_staged_snapshot_is_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = store_with_log(dir.path(), 400);
    let older = WalStore::stage_snapshot(store.dir(), snapshot(200, 1)).expect("stage");
    // Meanwhile a newer snapshot (say, the leader's) is applied on the store's thread.
    store
        .apply_snapshot(snapshot(350, 9))
        .expect("apply newer snapshot");
    assert!(!store.install_snapshot(older).expect("install"));
    assert_eq!(
        store.snapshot().expect("snapshot").meta.index,
        LogIndex(350)
    );
    assert_eq!(store.first_index(), LogIndex(351));
    assert!(
        temp_files(dir.path()).is_empty(),
        "discarded file left behind"
    );
    drop(store);
    let store = WalStore::open(dir.path(), config()).expect("reopen");
    let recovered = store.snapshot().expect("snapshot");
    assert_eq!(recovered.meta.index, LogIndex(350));
    assert_eq!(recovered.data, snapshot(350, 9).data);
}

#[test]
fn snapshots_staged_at_once_use_separate_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = store_with_log(dir.path(), 400);
    let path = store.dir().to_owned();
    let (first, second) = std::thread::scope(|scope| {
        let a = scope.spawn(|| WalStore::stage_snapshot(&path, snapshot(100, 3)));
        let b = scope.spawn(|| WalStore::stage_snapshot(&path, snapshot(250, 4)));
        (
            a.join().expect("join").expect("stage"),
            b.join().expect("join").expect("stage"),
        )
    });
    assert_eq!(temp_files(dir.path()).len(), 2);
    assert!(store.install_snapshot(first).expect("install"));
    assert!(store.install_snapshot(second).expect("install"));
    drop(store);
    let store = WalStore::open(dir.path(), config()).expect("reopen");
    let recovered = store.snapshot().expect("snapshot");
    assert_eq!(recovered.meta.index, LogIndex(250));
    assert_eq!(recovered.data, snapshot(250, 4).data);
    assert_eq!(store.first_index(), LogIndex(251));
}

#[test]
fn a_snapshot_larger_than_one_sync_chunk_reads_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = store_with_log(dir.path(), 50);
    // 9 MiB + a bit: three chunks of the blob writer, the last one partial.
    let data: Vec<u8> = (0..9 * 1024 * 1024 + 4321)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let big = Snapshot {
        data: Bytes::from(data),
        ..snapshot(40, 0)
    };
    let staged = WalStore::stage_snapshot(store.dir(), big.clone()).expect("stage");
    assert!(store.install_snapshot(staged).expect("install"));
    assert_eq!(store.snapshot().expect("snapshot"), big);
    drop(store);
    let store = WalStore::open(dir.path(), config()).expect("reopen");
    assert_eq!(store.snapshot().expect("snapshot"), big);
    assert_eq!(store.first_index(), LogIndex(41));
}

#[test]
fn a_streamed_snapshot_reads_back_as_if_staged_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = store_with_log(dir.path(), 50);
    // Written in pieces of every size, small ones buffered and large ones passed
    // through, crossing the 1 MiB buffer and the 4 MiB sync chunk.
    let data: Vec<u8> = (0..6 * 1024 * 1024 + 777)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let meta = snapshot(40, 0).meta;
    let staged =
        WalStore::stage_snapshot_with(store.dir(), meta.clone(), data.len() as u64, |sink| {
            let mut rest = &data[..];
            let mut piece = 1;
            while !rest.is_empty() {
                let (now, later) = rest.split_at(piece.min(rest.len()));
                std::io::Write::write_all(sink, now)?;
                rest = later;
                piece = (piece * 7 + 3) % (3 << 20);
            }
            Ok(())
        })
        .expect("stage");
    assert!(store.install_snapshot(staged).expect("install"));
    drop(store);
    let store = WalStore::open(dir.path(), config()).expect("reopen");
    let recovered = store.snapshot().expect("snapshot");
    assert_eq!(recovered.meta, meta);
    assert!(recovered.data == data, "streamed data differs");
}

#[test]
fn a_streamed_snapshot_of_the_wrong_length_or_a_failing_writer_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_log(dir.path(), 50);
    let meta = snapshot(40, 0).meta;
    let short = WalStore::stage_snapshot_with(store.dir(), meta.clone(), 100, |sink| {
        std::io::Write::write_all(sink, &[1; 99])
    });
    let message = chain(&short.expect_err("one byte short"));
    assert!(
        message.contains("produced 99 bytes, 100 declared"),
        "{message}"
    );
    let long = WalStore::stage_snapshot_with(store.dir(), meta.clone(), 100, |sink| {
        std::io::Write::write_all(sink, &[1; 101])
    });
    assert!(long.is_err(), "one byte long");
    let failing = WalStore::stage_snapshot_with(store.dir(), meta, 100, |_| {
        Err(std::io::Error::other("the state machine went away"))
    });
    let message = chain(&failing.expect_err("writer failed"));
    assert!(message.contains("the state machine went away"), "{message}");
    assert!(
        temp_files(dir.path()).is_empty(),
        "failed stages left files"
    );
    assert_eq!(store.snapshot().expect("snapshot").meta.index, LogIndex(0));
}

/// An error with its sources, as a log line shows it.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
