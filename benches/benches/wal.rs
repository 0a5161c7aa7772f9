//! raft-wal benches: what a Raft follower does per batch (append the entries, set the hard
//! state, which changes every batch as the commit index moves, and one sync) at batch
//! sizes 1 / 16 / 256 and entry sizes 128 B / 4 KiB, beside a plain `pwrite` + `fdatasync`
//! loop writing the same bytes on the same file system (so the ratio to the raw disk
//! shows), and the time to reopen a 1 GiB log.
//!
//! Like with like: the raw loop wraps around in one 512 MiB file, overwriting blocks it
//! wrote before (written extents, pages still cached). The WAL runs as a Raft node runs it:
//! after every batch it compacts its prefix behind a snapshot point that trails the tail
//! by the same 512 MiB, so its files stay bounded the same way and compacted segments are
//! recycled (`WalConfig::spare_segments_max`). Both are filled to that steady state before
//! a case is measured (the first 512 MiB would otherwise be fresh blocks for both). A
//! third group, `raw_write_fdatasync_fresh`, writes into fresh preallocated 64 MiB files
//! (what the WAL does without recycling), as an extra row.
//!
//! Run: `cargo bench -p benches --bench wal`. Files go to a temp dir under
//! `$WAL_BENCH_DIR` (default: the system temp dir, i.e. the same disk as the repo here).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use raft_core::{LogIndex, Term};
use raft_wal::{Record, RecordKind, SyncPolicy, Wal, WalConfig};

const BATCH_SIZES: [usize; 3] = [1, 16, 256];
const ENTRY_SIZES_BYTES: [usize; 2] = [128, 4096];
/// The raw loop wraps around in a preallocated file of this size.
const RAW_FILE_BYTES: u64 = 512 * 1024 * 1024;
/// The WAL keeps this many bytes of log behind its tail (its snapshot point trails by as
/// much), matching the raw file.
const WAL_RETAINED_BYTES: u64 = RAW_FILE_BYTES;
/// The fresh-file raw variant starts a new preallocated file every this many bytes (the
/// WAL's default segment size).
const RAW_FRESH_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes per entry on disk, in the WAL and in the raw loops: a 32-byte record header, the
/// entry (both entry sizes are multiples of 8, so no padding).
const RECORD_HEADER_BYTES: usize = 32;

fn bench_root() -> tempfile::TempDir {
    match std::env::var_os("WAL_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(PathBuf::from(dir)),
        None => tempfile::tempdir(),
    }
    .expect("create bench temp dir")
}

/// One follower batch: append, set the hard state, sync, then compact behind the snapshot
/// point (`retained` entries behind the tail), as a node does after each snapshot.
fn wal_batch(wal: &mut Wal, payload: &[u8], batch: usize, retained: u64) {
    benches::follower_batch::append(wal, payload, batch as u64);
    wal.sync().expect("sync");
    if let Some(through) = wal.last_index().0.checked_sub(retained) {
        if through >= wal.first_index().0 {
            wal.compact_prefix(LogIndex(through)).expect("compact");
        }
    }
}

/// Brings a new WAL to the steady state: the retained window full, plus a few segments,
/// so compaction has freed segments before the measurement starts.
fn wal_prefill(wal: &mut Wal, payload: &[u8], retained: u64) {
    let record_bytes = (RECORD_HEADER_BYTES + payload.len()) as u64;
    let prefill = retained + 4 * WalConfig::default().segment_bytes / record_bytes;
    let batch = usize::try_from((4 << 20) / record_bytes).expect("small");
    // Bound: prefill / batch batches.
    while wal.last_index().0 < prefill {
        wal_batch(wal, payload, batch, retained);
    }
}

/// A group for the append cases, all measured alike so their rows compare.
fn append_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

fn wal_append_sync(c: &mut Criterion) {
    let root = bench_root();
    let mut group = append_group(c, "wal_append_sync");
    for entry_bytes in ENTRY_SIZES_BYTES {
        for batch in BATCH_SIZES {
            let dir = root.path().join(format!("wal-{batch}x{entry_bytes}"));
            let mut wal = Wal::open(&dir, WalConfig::default()).expect("open");
            let payload = vec![0x5au8; entry_bytes];
            let retained = WAL_RETAINED_BYTES / (RECORD_HEADER_BYTES + entry_bytes) as u64;
            let mut prefilled = false;
            group.throughput(Throughput::Bytes((batch * entry_bytes) as u64));
            group.bench_function(BenchmarkId::new(format!("{entry_bytes}B"), batch), |b| {
                // Here, not outside, so that a filtered run fills only the cases it measures.
                if !prefilled {
                    wal_prefill(&mut wal, &payload, retained);
                    prefilled = true;
                }
                b.iter(|| wal_batch(&mut wal, &payload, batch, retained));
            });
            drop(wal);
            std::fs::remove_dir_all(&dir).expect("remove bench WAL");
        }
    }
    group.finish();
}

/// Writes the whole raw file once and syncs it, so every raw case overwrites written
/// blocks, as the WAL in its steady state writes into recycled segments.
fn raw_prefill(file: &File) {
    let chunk = vec![0x5au8; 4 << 20];
    let mut offset = 0u64;
    // Bound: RAW_FILE_BYTES / 4 MiB writes.
    while offset < RAW_FILE_BYTES {
        file.write_all_at(&chunk, offset).expect("write");
        offset += chunk.len() as u64;
    }
    file.sync_data().expect("fdatasync");
}

fn raw_write_fdatasync(c: &mut Criterion) {
    let root = bench_root();
    let path = root.path().join("raw");
    let file = benches::raw_file::preallocated(&path, RAW_FILE_BYTES);
    let mut prefilled = false;
    let mut group = append_group(c, "raw_write_fdatasync");
    let mut offset = 0u64;
    for entry_bytes in ENTRY_SIZES_BYTES {
        for batch in BATCH_SIZES {
            // The same bytes the WAL writes: a 32-byte header per entry, 8-byte aligned.
            let buf = vec![0x5au8; batch * (RECORD_HEADER_BYTES + entry_bytes)];
            group.throughput(Throughput::Bytes((batch * entry_bytes) as u64));
            group.bench_function(BenchmarkId::new(format!("{entry_bytes}B"), batch), |b| {
                if !prefilled {
                    raw_prefill(&file);
                    prefilled = true;
                }
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

/// Fresh preallocated files of [`RAW_FRESH_FILE_BYTES`], the oldest deleted once more than
/// [`RAW_FILE_BYTES`] are kept: the WAL's situation without recycling.
struct RawFreshFiles {
    dir: PathBuf,
    files: std::collections::VecDeque<(PathBuf, File)>,
    offset: u64,
    created: u64,
}

impl RawFreshFiles {
    fn new(dir: &Path) -> RawFreshFiles {
        std::fs::create_dir_all(dir).expect("create raw fresh dir");
        let mut files = RawFreshFiles {
            dir: dir.to_owned(),
            files: std::collections::VecDeque::new(),
            offset: 0,
            created: 0,
        };
        files.roll();
        files
    }

    fn roll(&mut self) {
        let path = self.dir.join(format!("raw-{}", self.created));
        self.created += 1;
        let file = benches::raw_file::preallocated(&path, RAW_FRESH_FILE_BYTES);
        self.files.push_back((path, file));
        self.offset = 0;
        // Bound: at most one file over the limit at a time.
        while self.files.len() as u64 * RAW_FRESH_FILE_BYTES > RAW_FILE_BYTES {
            let (old, _) = self.files.pop_front().expect("non-empty");
            std::fs::remove_file(&old).expect("remove old raw file");
        }
    }

    fn write_sync(&mut self, buf: &[u8]) {
        if self.offset + buf.len() as u64 > RAW_FRESH_FILE_BYTES {
            self.roll();
        }
        let (_, file) = self.files.back().expect("non-empty");
        file.write_all_at(buf, self.offset).expect("write");
        file.sync_data().expect("fdatasync");
        self.offset += buf.len() as u64;
    }
}

fn raw_write_fdatasync_fresh(c: &mut Criterion) {
    let root = bench_root();
    let mut files = RawFreshFiles::new(&root.path().join("raw-fresh"));
    let mut group = append_group(c, "raw_write_fdatasync_fresh");
    for entry_bytes in ENTRY_SIZES_BYTES {
        for batch in BATCH_SIZES {
            let buf = vec![0x5au8; batch * (RECORD_HEADER_BYTES + entry_bytes)];
            group.throughput(Throughput::Bytes((batch * entry_bytes) as u64));
            group.bench_function(BenchmarkId::new(format!("{entry_bytes}B"), batch), |b| {
                b.iter(|| files.write_sync(&buf));
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
    raw_write_fdatasync_fresh,
    wal_reopen_1gib
);
criterion_main!(benches);
