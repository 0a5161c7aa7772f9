//! Sync latency of N concurrent log writers, each appending a follower-sized batch (25
//! entries of 128 B and the hard state) and then syncing, as the nodes of a local cluster
//! do on one disk. Three kinds of writer, interleaved in 1.5 s slices so the disk's drift
//! falls on all of them alike:
//! - `wal`: raft-wal in a fresh directory (its segments are preallocated, so each sync
//!   also converts unwritten extents, as in any log younger than its first recycled
//!   segment);
//! - `raw-fresh`: `pwrite` + `fdatasync` of the same bytes into a preallocated file;
//! - `raw-rewritten`: the same into a file whose blocks were written before.
//!
//! ```sh
//! cargo run --release -p benches --example wal_sync_writers -- DIR [WRITERS] [ROUNDS]
//! ```
//! DIR must be on the disk under test, with about 600 MiB free per writer; the example
//! works in a temporary directory inside it and removes it when it finishes. A failed
//! write stops the run (release builds abort on a panic) and leaves that directory behind.
//! The WAL's timed sync includes writing its state record; the raw writers' is the
//! `fdatasync` alone.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use raft_wal::wal::Wal;
use raft_wal::WalConfig;

const BATCH: u64 = 25;
const PAYLOAD_BYTES: usize = 128;
/// A record's header in the WAL; the raw writers write the same bytes per entry.
const RECORD_HEADER_BYTES: usize = 32;
/// The hard state's record in the WAL: header, sequence number and the 24-byte state.
const STATE_RECORD_BYTES: usize = 32 + 8 + 24;
const RAW_FILE_BYTES: u64 = 256 << 20;
const SLICE: Duration = Duration::from_millis(1500);
const KINDS: [&str; 3] = ["wal", "raw-fresh", "raw-rewritten"];

enum Writer {
    Wal(Box<Wal>),
    Raw { file: File, offset: u64 },
}

fn raw_file(path: &Path, rewritten: bool) -> File {
    let file = benches::raw_file::preallocated(path, RAW_FILE_BYTES);
    if rewritten {
        let chunk = vec![0u8; 4 << 20];
        // Bound: RAW_FILE_BYTES / 4 MiB writes.
        for offset in (0..RAW_FILE_BYTES).step_by(chunk.len()) {
            file.write_all_at(&chunk, offset).expect("write");
        }
    }
    file.sync_all().expect("sync raw file");
    file
}

/// Appends one batch and syncs it; returns how long the sync took.
fn batch_and_sync(writer: &mut Writer, payload: &[u8]) -> Duration {
    match writer {
        Writer::Wal(wal) => {
            benches::follower_batch::append(wal, payload, BATCH);
            let began = Instant::now();
            wal.sync().expect("sync");
            began.elapsed()
        }
        Writer::Raw { file, offset } => {
            let bytes = usize::try_from(BATCH).expect("small")
                * (RECORD_HEADER_BYTES + PAYLOAD_BYTES)
                + STATE_RECORD_BYTES;
            if *offset + bytes as u64 > RAW_FILE_BYTES {
                *offset = 0;
            }
            file.write_all_at(&vec![0x5a; bytes], *offset)
                .expect("write");
            *offset += bytes as u64;
            let began = Instant::now();
            file.sync_data().expect("fdatasync");
            began.elapsed()
        }
    }
}

fn run_writer(dir: PathBuf, rounds: usize, start: Arc<Barrier>) -> Vec<Vec<f64>> {
    std::fs::create_dir_all(&dir).expect("create writer dir");
    let payload = vec![7u8; PAYLOAD_BYTES];
    let mut writers = [
        Writer::Wal(Box::new(
            Wal::open(dir.join("wal"), WalConfig::default()).expect("open wal"),
        )),
        Writer::Raw {
            file: raw_file(&dir.join("fresh"), false),
            offset: 0,
        },
        Writer::Raw {
            file: raw_file(&dir.join("rewritten"), true),
            offset: 0,
        },
    ];
    let mut micros = vec![Vec::new(); KINDS.len()];
    for _ in 0..rounds {
        for (writer, samples) in writers.iter_mut().zip(&mut micros) {
            start.wait();
            let end = Instant::now() + SLICE;
            // Bound: one slice of time.
            while Instant::now() < end {
                samples.push(batch_and_sync(writer, &payload).as_secs_f64() * 1e6);
            }
        }
    }
    micros
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: wal_sync_writers DIR [WRITERS] [ROUNDS]"),
    );
    let writers: usize = args
        .next()
        .map_or(3, |n| n.parse().expect("WRITERS: a number"));
    let rounds: usize = args
        .next()
        .map_or(4, |n| n.parse().expect("ROUNDS: a number"));
    assert!((1..=16).contains(&writers) && (1..=100).contains(&rounds));
    let root = tempfile::tempdir_in(&dir).expect("temporary directory in DIR");
    let start = Arc::new(Barrier::new(writers));
    let threads: Vec<_> = (0..writers)
        .map(|n| {
            let (dir, start) = (root.path().join(format!("writer-{n}")), Arc::clone(&start));
            std::thread::spawn(move || run_writer(dir, rounds, start))
        })
        .collect();
    let mut all = vec![Vec::new(); KINDS.len()];
    for thread in threads {
        for (kind, samples) in thread
            .join()
            .expect("writer thread")
            .into_iter()
            .enumerate()
        {
            all[kind].extend(samples);
        }
    }
    for (kind, samples) in KINDS.iter().zip(&mut all) {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let mean = samples.iter().sum::<f64>() / n as f64;
        println!(
            "{writers} writer(s), {kind:13} {n:6} syncs: p50 {:5.0} µs, p90 {:5.0} µs, mean {mean:5.0} µs",
            samples[n / 2],
            samples[n * 9 / 10]
        );
    }
}
