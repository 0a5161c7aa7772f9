//! `sync_overlap`: how far two `fdatasync`s of different files on one disk overlap.
//!
//! A 3-node cluster on one machine needs two durable copies per commit, and their syncs
//! share the disk; a single durable Redis needs one. If the disk overlapped the two
//! completely, a commit would wait for one sync; if it serialised them, for two. This
//! measures which, in interleaved rounds (so a change in the disk's speed falls on all
//! three cases alike), each 1 ms apart as a lightly loaded node's syncs are:
//! - one 128 B `pwrite` + `fdatasync` alone;
//! - two threads doing the same on two files, released together;
//! - the second thread starting `--stagger-us` later, as a follower's sync follows the
//!   leader's by a network hop.
//!
//! ```sh
//! cargo run --release -p benches --bin sync_overlap -- --dir /var/lib/raftkv --rounds 400
//! ```
//! The directory must be on the disk under test (not tmpfs); the two files, preallocated
//! like WAL segments, are removed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Parser;

const RECORD: [u8; 128] = [0x5a; 128];
/// Each write goes to its own 4 KiB page, as a log's appends would.
const PAGE: u64 = 4096;
const PAUSE: Duration = Duration::from_millis(1);

#[derive(Parser)]
#[command(about = "How far fdatasyncs of two files on one disk overlap")]
struct Options {
    /// Directory on the disk under test.
    #[arg(long)]
    dir: PathBuf,
    /// Rounds of each case.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    rounds: u64,
    /// How much later the second writer starts in the staggered case, in µs.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    stagger_us: u64,
}

/// Removes the probe files however the run ends.
struct ProbeFiles(Vec<PathBuf>);

impl Drop for ProbeFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Creates `path` (never one that exists: it is removed at the end) preallocated to
/// `bytes`, as a WAL segment is, so a sync does not also allocate blocks. The path goes
/// into `created` as soon as the file exists.
fn create(path: PathBuf, bytes: u64, created: &mut ProbeFiles) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    created.0.push(path);
    benches::raw_file::preallocate(&file, bytes).context("preallocating")?;
    file.sync_all()?;
    Ok(file)
}

fn write_and_sync(file: &File, page: u64) -> Result<()> {
    file.write_all_at(&RECORD, page * PAGE)?;
    file.sync_data()?;
    Ok(())
}

/// Percentile `q` of `samples` (µs), which it sorts.
fn percentile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[rank]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

#[derive(Default)]
struct Pair {
    first_done: Vec<f64>,
    both_done: Vec<f64>,
}

fn main() -> Result<()> {
    let options = Options::parse();
    ensure!(
        options.dir.is_dir(),
        "{} is not a directory",
        options.dir.display()
    );
    let pid = std::process::id();
    // Pages used: `rounds` alone plus two pair cases on file a; two pair cases on file b.
    let bytes = (3 * options.rounds + 1) * PAGE;
    let mut created = ProbeFiles(Vec::new());
    let a = create(
        options.dir.join(format!("sync_overlap.{pid}.a")),
        bytes,
        &mut created,
    )?;
    let b = create(
        options.dir.join(format!("sync_overlap.{pid}.b")),
        bytes,
        &mut created,
    )?;

    let start = Arc::new(Barrier::new(2));
    let delay_us = Arc::new(AtomicU64::new(0));
    let second = {
        let (start, delay_us) = (Arc::clone(&start), Arc::clone(&delay_us));
        let rounds = options.rounds;
        thread::spawn(move || -> Result<Vec<Instant>> {
            let mut ends = Vec::new();
            // A failed write is reported at the end: leaving early would strand the main
            // thread at the barrier.
            let mut failure = None;
            for page in 0..2 * rounds {
                start.wait();
                let released = Instant::now();
                let delay = Duration::from_micros(delay_us.load(Ordering::SeqCst));
                // A spin, not a sleep: a sleep's wake-up is coarser than the delay.
                while released.elapsed() < delay {
                    std::hint::spin_loop();
                }
                if let Err(error) = write_and_sync(&b, page) {
                    failure.get_or_insert(error);
                }
                ends.push(Instant::now());
                start.wait();
            }
            failure.map_or(Ok(ends), Err)
        })
    };

    let mut alone = Vec::new();
    let mut pairs = [Pair::default(), Pair::default()];
    let mut starts = Vec::new();
    let mut page = 0;
    for _ in 0..options.rounds {
        let began = Instant::now();
        write_and_sync(&a, page)?;
        alone.push(micros(began.elapsed()));
        page += 1;
        thread::sleep(PAUSE);
        for delay in [0, options.stagger_us] {
            delay_us.store(delay, Ordering::SeqCst);
            start.wait();
            let began = Instant::now();
            let result = write_and_sync(&a, page);
            let ended = Instant::now();
            start.wait();
            result?;
            page += 1;
            starts.push((began, ended));
            thread::sleep(PAUSE);
        }
    }
    let second_ends = second
        .join()
        .map_err(|_| anyhow::anyhow!("the second writer panicked"))??;
    for (case, ((began, a_end), b_end)) in starts.iter().zip(&second_ends).enumerate() {
        let pair = &mut pairs[case % 2];
        pair.first_done.push(micros((*a_end).min(*b_end) - *began));
        pair.both_done.push(micros((*a_end).max(*b_end) - *began));
    }

    let alone_p50 = percentile(&mut alone, 0.5);
    println!(
        "one file alone:              p50 {alone_p50:5.0} µs, p90 {:5.0} µs",
        percentile(&mut alone, 0.9)
    );
    let labels = [
        "two files together:".to_owned(),
        format!("second {} µs later:", options.stagger_us),
    ];
    for (label, pair) in labels.iter().zip(&mut pairs) {
        let both_p50 = percentile(&mut pair.both_done, 0.5);
        println!(
            "{label:28} first done p50 {:5.0} µs; both done p50 {both_p50:5.0} µs, p90 {:5.0} µs ({:.2}x alone)",
            percentile(&mut pair.first_done, 0.5),
            percentile(&mut pair.both_done, 0.9),
            both_p50 / alone_p50
        );
    }
    Ok(())
}
