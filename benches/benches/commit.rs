//! End-to-end commit latency of one write in a 3-node cluster over loopback TCP with every
//! WAL syncing (`benches::tcp_cluster`: real raft-core, raft-wal and raft-net, one thread
//! per node, kvnode's timing: 50 ms heartbeat, election timeout in [150, 300) ms).
//!
//! - `commit/proposers/1`: one 128 B proposal at a time, from submission to the leader
//!   applying it (leader append + sync, follower append + sync + acknowledgement, commit).
//! - `commit/proposers/32`: 32 proposals submitted together, all awaited (`Throughput` is
//!   32 elements, so criterion's rate is per proposal): group commit should make the
//!   per-proposal cost far lower than one sync each.
//! - `fdatasync/128B`: a plain `pwrite` + `fdatasync` loop on the same file system, the
//!   floor under any durable write.
//!
//! Criterion reports means; a fixed pass after each group prints percentiles to stderr,
//! the fdatasync floor measured just before and just after it (this disk's sync cost moves
//! by an order of magnitude with other jobs' I/O), and the broadcast time (a one-entry
//! AppendEntries from the leader's hand-off to the transport until the follower's
//! acknowledgement, sent after its WAL sync, arrives back) beside the configured heartbeat
//! and election timeouts and the ratio electionTimeout / broadcastTime (DESIGN.md "Timing").
//!
//! Run: `cargo bench -p benches --bench commit` (about a minute plus the build). Files go
//! to the system temp dir (`$TMPDIR`), on the same disk as the repo here.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use benches::tcp_cluster::{Commit, NodeStats, TcpCluster, ELECTION_TICKS, HEARTBEAT_TICKS, TICK};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raft_core::NodeId;

/// The workload: 128 B values (the key rides inside the command).
const PAYLOAD_BYTES: usize = 128;
const PROPOSERS: [usize; 2] = [1, 32];
const ELECTION_DEADLINE: Duration = Duration::from_secs(10);
const COMMIT_DEADLINE: Duration = Duration::from_secs(10);
/// Retries of one commit after a leader change (each waits for the new leader).
const RETRIES_MAX: usize = 5;
/// Proposals (or waves of proposals) before measuring: connections up, caches warm.
const WARM_UP_ROUNDS: usize = 100;
/// Rounds of the fixed percentile pass per proposer count (a few seconds each).
const PERCENTILE_ROUNDS: usize = 400;
/// The raw loop writes in turn at offsets inside a preallocated file of this size.
const RAW_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Rounds of each fdatasync floor measurement.
const FLOOR_ROUNDS: usize = 200;
const STATS_DEADLINE: Duration = Duration::from_secs(5);

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let last = (sorted.len() - 1) as f64;
    sorted[(last * fraction).round() as usize]
}

/// "p50 x / p90 y / p99 z / max w (n samples)".
fn summary(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "no samples".to_string();
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    format!(
        "p50 {:.2?} / p90 {:.2?} / p99 {:.2?} / max {:.2?} ({} samples)",
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.90),
        percentile(&sorted, 0.99),
        sorted[sorted.len() - 1],
        sorted.len()
    )
}

/// Write and flush (cache flush) requests completed by the block devices so far, from
/// `/sys/block/*/stat` (fields 5 and 16); `None` where that is not readable. Other jobs'
/// I/O on the machine is counted too.
fn device_writes_flushes() -> Option<(u64, u64)> {
    let mut totals = (0, 0);
    for device in std::fs::read_dir("/sys/block").ok()?.flatten() {
        let name = device.file_name().to_string_lossy().into_owned();
        if name.starts_with("loop") || name.starts_with("ram") {
            continue;
        }
        let stat = std::fs::read_to_string(device.path().join("stat")).ok()?;
        let fields: Vec<u64> = stat
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        totals.0 += fields.get(4).copied().unwrap_or(0);
        totals.1 += fields.get(15).copied().unwrap_or(0);
    }
    Some(totals)
}

fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    (!sorted.is_empty()).then(|| percentile(&sorted, 0.50))
}

/// Commits `payloads` together, waiting for a new leader and retrying (bounded) if
/// leadership changed underneath; an election with healthy nodes is reported, not hidden.
fn commit_with_retry(cluster: &TcpCluster, payloads: &[Bytes]) -> Vec<Commit> {
    for attempt in 1..=RETRIES_MAX {
        match cluster.commit(payloads, COMMIT_DEADLINE) {
            Ok(commits) => return commits,
            Err(failure) if failure.is_retryable() => {
                eprintln!("commit attempt {attempt} failed ({failure}); waiting for a leader");
                cluster
                    .wait_for_leader(ELECTION_DEADLINE)
                    .expect("a leader is elected again");
            }
            Err(failure) => panic!("commit failed: {failure}"),
        }
    }
    panic!("commit failed {RETRIES_MAX} times in a row");
}

fn commit_latency(c: &mut Criterion) {
    let cluster = TcpCluster::start().expect("start the 3-node cluster");
    let leader = cluster
        .wait_for_leader(ELECTION_DEADLINE)
        .expect("a leader is elected");
    let payload = Bytes::from(vec![0x5au8; PAYLOAD_BYTES]);
    for _ in 0..WARM_UP_ROUNDS {
        commit_with_retry(&cluster, std::slice::from_ref(&payload));
    }
    let mut group = c.benchmark_group("commit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for proposers in PROPOSERS {
        let payloads = vec![payload.clone(); proposers];
        group.throughput(Throughput::Elements(proposers as u64));
        group.bench_function(BenchmarkId::new("proposers", proposers), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    commit_with_retry(&cluster, &payloads);
                }
                started.elapsed()
            });
        });
    }
    group.finish();
    let mut raw = RawSync::new();
    for proposers in PROPOSERS {
        percentile_pass(&cluster, &mut raw, &payload, proposers);
    }
    raw.close();
    eprintln!(
        "leader at start: node {leader}; elections won during the run: {} (1 = no leader change)",
        cluster.elections_won()
    );
    cluster.shutdown().expect("clean cluster shutdown");
}

/// A fixed run with every proposal's latency kept, then every node's timings.
fn percentile_pass(cluster: &TcpCluster, raw: &mut RawSync, payload: &Bytes, proposers: usize) {
    let payloads = vec![payload.clone(); proposers];
    // The disk's sync cost moves with other jobs' I/O, so the floor is taken right beside.
    let floor_before = raw.floor();
    // Clear what the criterion runs collected.
    cluster.take_stats(STATS_DEADLINE).expect("stats");
    let mut latencies = Vec::with_capacity(PERCENTILE_ROUNDS * proposers);
    let mut waves = Vec::with_capacity(PERCENTILE_ROUNDS);
    let device_before = device_writes_flushes();
    for _ in 0..PERCENTILE_ROUNDS {
        let started = Instant::now();
        let commits = commit_with_retry(cluster, &payloads);
        waves.push(started.elapsed());
        latencies.extend(commits.iter().map(|commit| commit.latency));
    }
    let device_after = device_writes_flushes();
    let stats = cluster.take_stats(STATS_DEADLINE).expect("stats");
    let floor_after = raw.floor();
    let leader = cluster.leader().unwrap_or(NodeId::NONE);
    eprintln!(
        "\n== commit, {proposers} proposer(s), {PAYLOAD_BYTES} B, 3 nodes, TCP, WAL sync always =="
    );
    eprintln!(
        "per-proposal latency (propose -> leader applies): {}",
        summary(&latencies)
    );
    if proposers > 1 {
        let wave = median(&waves).expect("waves ran");
        eprintln!(
            "wave of {proposers} (all submitted, all applied): {}",
            summary(&waves)
        );
        eprintln!(
            "per-proposal cost at the median wave: {:.2?}",
            wave / proposers as u32
        );
    }
    report_node_stats(&stats, leader);
    if let (Some(before), Some(after)) = (device_before, device_after) {
        let syncs: usize = stats.iter().map(|(_, node)| node.sync.len()).sum();
        eprintln!(
            "block devices during the pass (all jobs on the machine): {} writes, {} cache \
             flushes, for {syncs} WAL syncs on the 3 nodes",
            after.0 - before.0,
            after.1 - before.1
        );
    }
    eprintln!("before the pass: {floor_before}\nafter the pass:  {floor_after}");
}

fn report_node_stats(stats: &[(NodeId, NodeStats)], leader: NodeId) {
    for (id, node) in stats {
        let role = if *id == leader { "leader" } else { "follower" };
        eprintln!("node {id} ({role}) WAL sync: {}", summary(&node.sync));
    }
    let Some((_, leader_stats)) = stats.iter().find(|(id, _)| *id == leader) else {
        return;
    };
    let heartbeat = TICK * HEARTBEAT_TICKS;
    let election_min = TICK * ELECTION_TICKS;
    let election_max = TICK * (2 * ELECTION_TICKS);
    eprintln!(
        "broadcast time (one-entry append sent -> follower ack back, follower sync included): {}",
        summary(&leader_stats.broadcast)
    );
    let mut sorted = leader_stats.broadcast.clone();
    sorted.sort();
    if sorted.is_empty() {
        return;
    }
    let p50 = percentile(&sorted, 0.50);
    let p99 = percentile(&sorted, 0.99);
    let ratio =
        |timeout: Duration, broadcast: Duration| timeout.as_secs_f64() / broadcast.as_secs_f64();
    eprintln!(
        "heartbeat {heartbeat:?}, election timeout [{election_min:?}, {election_max:?}); \
         electionTimeout / broadcastTime: {:.0}-{:.0} at p50 broadcast, {:.0}-{:.0} at p99",
        ratio(election_min, p50),
        ratio(election_max, p50),
        ratio(election_min, p99),
        ratio(election_max, p99),
    );
}

/// A plain `pwrite` + `fdatasync` loop on a preallocated file in the system temp dir: the
/// floor under any durable write on this disk.
struct RawSync {
    file: File,
    /// What the WAL writes for one 128 B entry: a 32-byte header and the entry.
    buf: Vec<u8>,
    offset: u64,
    root: tempfile::TempDir,
}

impl RawSync {
    fn new() -> RawSync {
        let root = tempfile::tempdir().expect("create a temp dir");
        let path = root.path().join("raw");
        let file = benches::raw_file::preallocated(&path, RAW_FILE_BYTES);
        RawSync {
            file,
            buf: vec![0x5au8; 32 + PAYLOAD_BYTES],
            offset: 0,
            root,
        }
    }

    fn write_sync(&mut self) {
        if self.offset + self.buf.len() as u64 > RAW_FILE_BYTES {
            self.offset = 0;
        }
        self.file
            .write_all_at(&self.buf, self.offset)
            .expect("pwrite");
        self.file.sync_data().expect("fdatasync");
        self.offset += self.buf.len() as u64;
    }

    /// `FLOOR_ROUNDS` timed rounds, summarised.
    fn floor(&mut self) -> String {
        let mut samples = Vec::with_capacity(FLOOR_ROUNDS);
        for _ in 0..FLOOR_ROUNDS {
            let started = Instant::now();
            self.write_sync();
            samples.push(started.elapsed());
        }
        format!(
            "fdatasync floor (pwrite {} B + fdatasync in {}): {}",
            self.buf.len(),
            self.root.path().display(),
            summary(&samples)
        )
    }

    fn close(self) {
        drop(self.file);
        self.root.close().expect("remove the raw file's temp dir");
    }
}

fn fdatasync_floor(c: &mut Criterion) {
    let mut raw = RawSync::new();
    let mut group = c.benchmark_group("fdatasync");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{PAYLOAD_BYTES}B"), |b| b.iter(|| raw.write_sync()));
    group.finish();
    eprintln!("\n== right after the criterion run ==\n{}", raw.floor());
    raw.close();
}

criterion_group!(benches, fdatasync_floor, commit_latency);
criterion_main!(benches);
