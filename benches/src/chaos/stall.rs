//! `chaos stall`: how long writes stall when one fault hits, measured fault by fault.
//!
//! One cluster, writers bound to every node (each sends `SET` to its own node, one request
//! at a time, and reconnects to that node after a failure), and one fault of a single kind
//! repeated `count` times: kill the leader (SIGKILL, restarted at the heal), pause the
//! leader (SIGSTOP, SIGCONT at the heal), isolate the leader, or isolate a follower (both
//! directions cut from every other member, healed after the hold). Before each fault the
//! cluster must be quiet: every member answering with the same leader.
//!
//! The stall of a fault is the longest interval without an acknowledged write (from any
//! writer) in its stretch: from the last acknowledgement before the fault started to the
//! start of the next fault (the heal and the quiet time after it included, so the heal's
//! own effects count). [`stall_around`] is that rule, pure.
//!
//! Bounded: `count` faults, each held for `hold`; every wait for a quiet cluster has a
//! deadline; writers stop at the stop flag (within one request timeout) or after
//! [`ACKS_PER_WRITER_MAX`] acknowledgements.

use std::fmt;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kvnode::resp::Frame;
use tokio::time::Instant;

use super::client::Dialer;
use super::cluster::Cluster;
use super::host::HostOptions;
use super::net::BlockBackend;

/// Writers per node.
pub const WRITERS_PER_NODE: usize = 2;
/// Most acknowledgements one writer records (about an hour of writes at a millisecond each).
pub const ACKS_PER_WRITER_MAX: usize = 4_000_000;
/// Wait after a failed request or connection before the next. Pacing only; it bounds the
/// measurement's resolution after a failure, so it stays well under the stalls measured.
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// Longest wait for the first leader and for a quiet cluster before a fault.
const QUIET_TIMEOUT: Duration = Duration::from_secs(30);

/// The fault a stall run repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallFault {
    KillLeader,
    PauseLeader,
    IsolateLeader,
    IsolateFollower,
}

impl StallFault {
    pub const ALL: [StallFault; 4] = [
        StallFault::KillLeader,
        StallFault::PauseLeader,
        StallFault::IsolateLeader,
        StallFault::IsolateFollower,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StallFault::KillLeader => "kill-leader",
            StallFault::PauseLeader => "pause-leader",
            StallFault::IsolateLeader => "isolate-leader",
            StallFault::IsolateFollower => "isolate-follower",
        }
    }

    pub fn parse(name: &str) -> Option<StallFault> {
        StallFault::ALL.into_iter().find(|f| f.name() == name)
    }

    fn hits_leader(self) -> bool {
        self != StallFault::IsolateFollower
    }
}

impl fmt::Display for StallFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything a stall run needs.
#[derive(Clone, Debug)]
pub struct StallConfig {
    pub fault: StallFault,
    pub count: usize,
    pub nodes: usize,
    /// How long each fault is held before the heal.
    pub hold: Duration,
    /// Quiet time after each heal (and before the first fault).
    pub quiet: Duration,
    pub request_timeout: Duration,
    pub host: HostOptions,
    pub run_dir: PathBuf,
    pub backend: BlockBackend,
}

/// One fault as it happened, with its stall.
#[derive(Clone, Debug)]
pub struct FaultStall {
    pub target: u64,
    pub leader: u64,
    pub start_us: u64,
    pub healed_us: u64,
    /// The longest interval without an acknowledged write around the fault.
    pub stall_us: u64,
    /// When that interval began (the acknowledgement before it).
    pub stall_from_us: u64,
}

/// What a stall run measured.
#[derive(Clone, Debug)]
pub struct StallReport {
    pub fault: StallFault,
    pub faults: Vec<FaultStall>,
    pub acks: usize,
    pub failures: usize,
}

impl StallReport {
    /// (median, p90, max) of the stalls, in µs.
    pub fn stats_us(&self) -> (u64, u64, u64) {
        let stalls: Vec<u64> = self.faults.iter().map(|f| f.stall_us).collect();
        summary_us(&stalls)
    }
}

/// Median (the mean of the middle two for an even count), p90 (nearest rank) and max;
/// zeros for no values.
pub fn summary_us(values: &[u64]) -> (u64, u64, u64) {
    if values.is_empty() {
        return (0, 0, 0);
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    };
    let rank = (n * 90).div_ceil(100).max(1);
    (median, sorted[rank - 1], sorted[n - 1])
}

/// The longest interval without a time of `acks` (sorted) in the stretch from `start` to
/// `end`, counting the interval that straddles `start` whole (from the last ack at or
/// before it, or from `start` if there is none) and the one that straddles `end` only up
/// to `end` (the next fault starts there, and what follows is its stall). Returns
/// (length, where it began).
pub fn stall_around(acks: &[u64], start: u64, end: u64) -> (u64, u64) {
    let first = acks.partition_point(|&t| t <= start);
    let mut last = if first > 0 { acks[first - 1] } else { start };
    let mut longest = (0, last);
    for &t in acks[first..].iter().take_while(|&&t| t <= end) {
        if t - last > longest.0 {
            longest = (t - last, last);
        }
        last = t;
    }
    if end.saturating_sub(last) > longest.0 {
        longest = (end - last, last);
    }
    longest
}

/// Runs the faults; returns the report.
///
/// # Errors
/// If the cluster cannot be set up, or it never becomes quiet before a fault.
pub fn run_stall(config: &StallConfig) -> Result<StallReport> {
    std::fs::create_dir_all(&config.run_dir)
        .with_context(|| format!("creating {}", config.run_dir.display()))?;
    let octet = u8::try_from(20 + std::process::id() % 200).expect("below 256");
    let mut cluster = Cluster::start(
        config.nodes,
        config.host.clone(),
        config.run_dir.clone(),
        octet,
        config.backend,
        QUIET_TIMEOUT,
    )?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (node, addr) in cluster.endpoints.read().expect("endpoints lock").iter() {
        for _ in 0..WRITERS_PER_NODE {
            let task = writer(
                cluster.dialer(),
                *node,
                *addr,
                started,
                stop.clone(),
                config.request_timeout,
            );
            writers.push(cluster.client.spawn(task));
        }
    }
    let elapsed_us = || u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut faults = Vec::new();
    let mut error = None;
    for i in 0..config.count {
        std::thread::sleep(config.quiet);
        let fault = cluster
            .wait_agreed_leader(QUIET_TIMEOUT)
            .and_then(|leader| one_fault(&mut cluster, config, i, leader, &elapsed_us));
        match fault {
            Ok(fault) => faults.push(fault),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    std::thread::sleep(config.quiet);
    // The last fault's stretch ends here: no write is acknowledged after the stop.
    let stopped_us = elapsed_us();
    stop.store(true, Ordering::Relaxed);
    let results = cluster.client.run(async move {
        let mut all = Vec::new();
        for writer in writers {
            all.push(writer.await);
        }
        all
    })?;
    cluster.teardown();
    if let Some(error) = error {
        return Err(error);
    }
    let mut acks = Vec::new();
    let mut failures = 0;
    for result in results {
        let (times, failed) = result.context("a writer task failed")?;
        acks.extend(times);
        failures += failed;
    }
    acks.sort_unstable();
    let ends: Vec<u64> = faults
        .iter()
        .skip(1)
        .map(|f: &FaultStall| f.start_us)
        .chain(std::iter::once(stopped_us))
        .collect();
    for (fault, end) in faults.iter_mut().zip(ends) {
        let (stall, from) = stall_around(&acks, fault.start_us, end);
        fault.stall_us = stall;
        fault.stall_from_us = from;
    }
    Ok(StallReport {
        fault: config.fault,
        faults,
        acks: acks.len(),
        failures,
    })
}

/// Starts fault `i` on `leader` (or a follower), holds it, heals it.
fn one_fault(
    cluster: &mut Cluster,
    config: &StallConfig,
    i: usize,
    leader: u64,
    elapsed_us: &dyn Fn() -> u64,
) -> Result<FaultStall> {
    let members = cluster.member_ids();
    let target = if config.fault.hits_leader() {
        leader
    } else {
        let followers: Vec<u64> = members.iter().copied().filter(|m| *m != leader).collect();
        followers[i % followers.len()]
    };
    let start_us = elapsed_us();
    match config.fault {
        StallFault::KillLeader => cluster.hosts.get_mut(&target).expect("member").kill(),
        StallFault::PauseLeader => cluster.hosts.get_mut(&target).expect("member").pause()?,
        StallFault::IsolateLeader | StallFault::IsolateFollower => {
            let others: Vec<u64> = members.iter().copied().filter(|m| *m != target).collect();
            cluster.net.isolate(target, &others)?;
        }
    }
    std::thread::sleep(config.hold);
    match config.fault {
        StallFault::KillLeader => {
            let options = cluster.options.clone();
            cluster
                .hosts
                .get_mut(&target)
                .expect("member")
                .start(&options)?;
        }
        StallFault::PauseLeader => cluster.hosts.get_mut(&target).expect("member").resume()?,
        StallFault::IsolateLeader | StallFault::IsolateFollower => cluster.net.heal()?,
    }
    Ok(FaultStall {
        target,
        leader,
        start_us,
        healed_us: elapsed_us(),
        stall_us: 0,
        stall_from_us: 0,
    })
}

/// Writes to `addr` until `stop`; returns the completion times (µs since `started`) of the
/// acknowledged writes and the number of failed ones.
async fn writer(
    dialer: Dialer,
    node: u64,
    addr: SocketAddrV4,
    started: Instant,
    stop: Arc<AtomicBool>,
    timeout: Duration,
) -> (Vec<u64>, usize) {
    let mut acks = Vec::new();
    let mut failures = 0;
    let mut connection = None;
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) && acks.len() < ACKS_PER_WRITER_MAX {
        let deadline = Instant::now() + timeout;
        let mut conn = match connection.take() {
            Some(conn) => conn,
            None => match dialer.connect(addr, deadline).await {
                Ok(conn) => conn,
                Err(_) => {
                    failures += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        seq += 1;
        let key = format!("w{node}");
        let value = seq.to_string();
        let reply = conn.call(&["SET", &key, &value], deadline).await;
        if matches!(&reply, Ok(Frame::Simple(ok)) if ok == "OK") {
            acks.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            connection = Some(conn);
        } else {
            failures += 1;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    (acks, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_is_the_longest_ack_interval_around_the_fault() {
        // Acks every 10 until 100, a hole to 400, then every 10 again.
        let mut acks: Vec<u64> = (0..=10).map(|i| i * 10).collect();
        acks.extend((40..=60).map(|i| i * 10));
        assert_eq!(stall_around(&acks, 95, 450), (300, 100), "the hole");
        // The interval that straddles the fault's start counts whole.
        assert_eq!(stall_around(&acks, 105, 450), (300, 100));
        // A fault long after the hole sees only the regular spacing.
        assert_eq!(stall_around(&acks, 500, 590), (10, 500));
        // A stretch that ends just before the hole (the next fault's) sees none of it.
        assert_eq!(stall_around(&acks, 50, 105), (10, 50));
        // No ack after the stretch: it runs to the end.
        assert_eq!(stall_around(&acks, 590, 900), (300, 600));
        // No ack at all.
        assert_eq!(stall_around(&[], 100, 250), (150, 100));
    }

    #[test]
    fn summary_takes_median_p90_and_max() {
        assert_eq!(summary_us(&[]), (0, 0, 0));
        assert_eq!(summary_us(&[7]), (7, 7, 7));
        assert_eq!(summary_us(&[4, 1, 3, 2]), (2, 4, 4));
        let ten: Vec<u64> = (1..=10).rev().collect();
        assert_eq!(summary_us(&ten), (5, 9, 10));
    }

    #[test]
    fn fault_names_round_trip() {
        for fault in StallFault::ALL {
            assert_eq!(StallFault::parse(fault.name()), Some(fault));
        }
        assert_eq!(StallFault::parse("kill"), None);
    }
}
