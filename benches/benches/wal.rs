//! raft-wal benches: what a Raft follower does per batch (append the entries, set the hard
//! state, which changes every batch as the commit index moves, and one sync) at batch
//! sizes 1 / 16 / 256 and entry sizes 128 B / 4 KiB, beside a plain `pwrite` + `fdatasync` loop writing the same bytes
//! to a preallocated file on the same file system (so the ratio to the raw disk shows),
//! and the time to reopen a 1 GiB log.
//!
//! Run: `cargo bench -p benches --bench wal`. Files go to a temp dir under
//! `$WAL_BENCH_DIR` (default: the system temp dir, i.e. the same disk as the repo here).

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raft_core::{LogIndex, Term};
use raft_wal::{Record, RecordKind, SyncPolicy, Wal, WalConfig};

const BATCH_SIZES: [usize; 3] = [1, 16, 256];
const ENTRY_SIZES_BYTES: [usize; 2] = [128, 4096];
/// The raw loop wraps around in a preallocated file of this size.
const RAW_FILE_BYTES: u64 = 512 * 1024 * 1024;
/// Keeps the WAL bench's disk use bounded: compact once the log holds this many bytes.
const WAL_RETAINED_BYTES: u64 = 512 * 1024 * 1024;

fn bench_root() -> tempfile::TempDir {
    match std::env::var_os("WAL_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(PathBuf::from(dir)),
        None => tempfile::tempdir(),
    }
    .expect("create bench temp dir")
}

fn wal_append_sync(c: &mut Criterion) {
    let root = bench_root();
    let mut group = c.benchmark_group("wal_append_sync");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for entry_bytes in ENTRY_SIZES_BYTES {
        for batch in BATCH_SIZES {
            let dir = root.path().join(format!("wal-{batch}x{entry_bytes}"));
            let mut wal = Wal::open(&dir, WalConfig::default()).expect("open");
            let payload = vec![0x5au8; entry_bytes];
            let retained = WAL_RETAINED_BYTES / entry_bytes as u64;
            group.throughput(Throughput::Bytes((batch * entry_bytes) as u64));
            group.bench_function(BenchmarkId::new(format!("{entry_bytes}B"), batch), |b| {
                b.iter(|| {
                    let first = wal.last_index().next();
                    for k in 0..batch as u64 {
                        let record = Record {
                            index: first.plus(k),
                            term: Term(1),
                            kind: RecordKind(2),
                            payload: &payload,
                        };
                        wal.append(&record).expect("append");
                    }
                    // term, vote, commit: the commit index moves with every batch.
                    let mut hard_state = [0u8; 24];
                    hard_state[0..8].copy_from_slice(&1u64.to_le_bytes());
                    hard_state[16..24].copy_from_slice(&wal.last_index().0.to_le_bytes());
                    wal.set_state(&hard_state).expect("set state");
                    wal.sync().expect("sync");
                    if wal.last_index().0 - wal.first_index().0 > 2 * retained {
                        wal.compact_prefix(LogIndex(wal.last_index().0 - retained))
                            .expect("compact");
                    }
                });
            });
        }
    }
    group.finish();
}

fn raw_write_fdatasync(c: &mut Criterion) {
    let root = bench_root();
    let path = root.path().join("raw");
    let file = benches::raw_file::preallocated(&path, RAW_FILE_BYTES);
    let mut group = c.benchmark_group("raw_write_fdatasync");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut offset = 0u64;
    for entry_bytes in ENTRY_SIZES_BYTES {
        for batch in BATCH_SIZES {
            // The same bytes the WAL writes: a 32-byte header per entry, 8-byte aligned.
            let buf = vec![0x5au8; batch * (32 + entry_bytes)];
            group.throughput(Throughput::Bytes((batch * entry_bytes) as u64));
            group.bench_function(BenchmarkId::new(format!("{entry_bytes}B"), batch), |b| {
                b.iter(|| {
                    if offset + buf.len() as u64 > RAW_FILE_BYTES {
                        offset = 0;
                    }
                    file.write_all_at(&buf, offset).expect("write");
                    file.sync_data().expect("fdatasync");
                    offset += buf.len() as u64;
                });
            });
        }
    }
    group.finish();
}

fn wal_reopen_1gib(c: &mut Criterion) {
    let root = bench_root();
    let dir = root.path().join("wal-1gib");
    let config = WalConfig {
        sync_policy: SyncPolicy::Never,
        ..WalConfig::default()
    };
    let mut wal = Wal::open(&dir, config.clone()).expect("open");
    let payload = vec![0xa5u8; 4096];
    let entries = (1u64 << 30) / 4096;
    for index in 1..=entries {
        let record = Record {
            index: LogIndex(index),
            term: Term(1),
            kind: RecordKind(2),
            payload: &payload,
        };
        wal.append(&record).expect("append");
    }
    drop(wal);
    let mut group = c.benchmark_group("wal_reopen");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(1 << 30));
    group.bench_function("1GiB_page_cache_warm", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let wal = Wal::open(&dir, config.clone()).expect("reopen");
                total += start.elapsed();
                assert_eq!(wal.last_index(), LogIndex(entries));
            }
            total
        });
    });
    group.finish();
    // Cold: drop the page cache first (needs root; skipped with a note otherwise). The log
    // was written with `SyncPolicy::Never`, so flush it first, as the kernel's drop_caches
    // documentation asks: dirty pages are not dropped, and their write-back would race
    // the cold reads (with MADV_RANDOM segments it tripled the time), while a real WAL
    // reopened after a crash or restart holds only synced data.
    let flushed = std::process::Command::new("sync")
        .status()
        .is_ok_and(|status| status.success());
    let dropped = flushed && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    if dropped {
        let start = Instant::now();
        let wal = Wal::open(&dir, config).expect("reopen");
        eprintln!(
            "wal_reopen/1GiB_page_cache_cold: {:?} ({} entries)",
            start.elapsed(),
            wal.last_index().0
        );
    } else {
        eprintln!(
            "wal_reopen/1GiB_page_cache_cold: skipped (cannot flush and drop the page cache)"
        );
    }
}

criterion_group!(
    benches,
    wal_append_sync,
    raw_write_fdatasync,
    wal_reopen_1gib
);
criterion_main!(benches);
