//! `chaos stall` and `chaos rejoin`: the availability measurements (see
//! `benches::chaos::stall` and `benches::chaos::rejoin`), their options and their output.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use benches::chaos::host::HostOptions;
use benches::chaos::net::BlockBackend;
use benches::chaos::rejoin::{self, RejoinConfig};
use benches::chaos::stall::{self, StallConfig, StallFault};
use benches::chaos::sys;
use clap::Parser;

/// Most faults (or cuts per length) in one invocation.
const COUNT_MAX: usize = 1000;
/// Longest hold or cut accepted.
const HOLD_MS_MAX: u64 = 600_000;

/// Options both measurements share.
#[derive(Parser, Debug)]
pub struct ClusterArgs {
    /// Voters in the cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// kvnode's heartbeat in ms (default: kvnode's own, 50).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// kvnode's minimum election timeout in ms (default: kvnode's own, 150).
    #[arg(long)]
    election_ms: Option<u64>,
    /// The kvnode binary (default: `kvnode` beside this binary).
    #[arg(long)]
    kvnode: Option<PathBuf>,
    /// Where the nodes' directories and logs go.
    #[arg(long, default_value = "chaos-report")]
    out: PathBuf,
    /// How cuts are made: nft (silent drops), route (blackhole routes), auto.
    #[arg(long, default_value = "auto")]
    block_backend: String,
}

#[derive(Parser, Debug)]
pub struct StallArgs {
    /// kill-leader, pause-leader, isolate-leader or isolate-follower.
    #[arg(long)]
    fault: String,
    /// Faults to measure.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// How long each fault is held before the heal (ms).
    #[arg(long, default_value_t = 3000)]
    hold_ms: u64,
    /// Quiet time after each heal and before the first fault (ms).
    #[arg(long, default_value_t = 2000)]
    quiet_ms: u64,
    /// Writers' per-request deadline (ms).
    #[arg(long, default_value_t = 1000)]
    request_timeout_ms: u64,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Parser, Debug)]
pub struct RejoinArgs {
    /// Cut lengths in ms, comma-separated.
    #[arg(long, default_value = "1000,5000,20000")]
    cuts_ms: String,
    /// Measurements per cut length.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Exit 1 if any node takes longer than this (ms) after the heal to know the leader.
    #[arg(long)]
    bound_ms: Option<u64>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

fn host_and_backend(args: &ClusterArgs) -> Result<(HostOptions, BlockBackend)> {
    sys::require_root()?;
    if !(1..=9).contains(&args.nodes) {
        bail!("--nodes must be in 1..=9");
    }
    let kvnode = match &args.kvnode {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the binary has no directory")?
            .join("kvnode"),
    };
    if !kvnode.is_file() {
        bail!(
            "no kvnode binary at {} (build it, or pass --kvnode)",
            kvnode.display()
        );
    }
    let backend = BlockBackend::parse(&args.block_backend)
        .with_context(|| format!("unknown --block-backend {:?}", args.block_backend))?;
    let host = HostOptions {
        kvnode: kvnode.canonicalize()?,
        heartbeat_ms: args.heartbeat_ms,
        election_ms: args.election_ms,
        snapshot_entries: None,
        extra_args: Vec::new(),
        faketime: false,
    };
    Ok((host, backend))
}

fn timing(args: &ClusterArgs) -> String {
    let or_default = |v: Option<u64>, default: &str| {
        v.map_or(format!("{default} (kvnode's default)"), |ms| {
            format!("{ms}")
        })
    };
    format!(
        "heartbeat {} ms, election {} ms",
        or_default(args.heartbeat_ms, "50"),
        or_default(args.election_ms, "150")
    )
}

/// `chaos stall`: prints each fault's stall, then median, p90 and max.
pub fn stall(args: &StallArgs) -> Result<bool> {
    let (host, backend) = host_and_backend(&args.cluster)?;
    let fault = StallFault::parse(&args.fault).with_context(|| {
        format!(
            "unknown --fault {:?} (kill-leader, pause-leader, isolate-leader, isolate-follower)",
            args.fault
        )
    })?;
    if !(1..=COUNT_MAX).contains(&args.count) {
        bail!("--count must be in 1..={COUNT_MAX}");
    }
    if args.hold_ms > HOLD_MS_MAX || args.quiet_ms > HOLD_MS_MAX {
        bail!("--hold-ms and --quiet-ms must be at most {HOLD_MS_MAX}");
    }
    if !(10..=60_000).contains(&args.request_timeout_ms) {
        bail!("--request-timeout-ms must be in 10..=60000");
    }
    let run_dir = std::path::absolute(&args.cluster.out)?
        .join(format!("stall-{fault}-{}", std::process::id()));
    let config = StallConfig {
        fault,
        count: args.count,
        nodes: args.cluster.nodes,
        hold: Duration::from_millis(args.hold_ms),
        quiet: Duration::from_millis(args.quiet_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        host,
        run_dir: run_dir.clone(),
        backend,
    };
    println!(
        "chaos stall: {} x {fault} on {} nodes ({}), held {} ms, {} writers bound to each node; nodes' logs in {}",
        args.count,
        args.cluster.nodes,
        timing(&args.cluster),
        args.hold_ms,
        stall::WRITERS_PER_NODE,
        run_dir.display()
    );
    let report = stall::run_stall(&config)?;
    let secs = |us: u64| us as f64 / 1e6;
    for (i, f) in report.faults.iter().enumerate() {
        println!(
            "fault {:>2}: {fault} node {} (leader {}) at {:.3} s, healed {:.3} s: stall {:.0} ms (from {:.3} s, {:+.0} ms after the fault)",
            i + 1,
            f.target,
            f.leader,
            secs(f.start_us),
            secs(f.healed_us),
            f.stall_us as f64 / 1000.0,
            secs(f.stall_from_us),
            (f.stall_from_us as f64 - f.start_us as f64) / 1000.0,
        );
    }
    let (median, p90, max) = report.stats_us();
    println!(
        "{fault}: {} faults, {} acknowledged writes, {} failed or unknown; stall median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        report.faults.len(),
        report.acks,
        report.failures,
        median as f64 / 1000.0,
        p90 as f64 / 1000.0,
        max as f64 / 1000.0
    );
    Ok(true)
}

/// `chaos rejoin`: prints each cut's rejoin time; false if one exceeds `--bound-ms`, never
/// rejoined, or still named the leader before the heal (nothing was measured then).
pub fn rejoin(args: &RejoinArgs) -> Result<bool> {
    let (host, backend) = host_and_backend(&args.cluster)?;
    let cuts: Vec<Duration> = args
        .cuts_ms
        .split(',')
        .map(|ms| {
            ms.trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=HOLD_MS_MAX).contains(ms))
                .map(Duration::from_millis)
                .with_context(|| format!("bad cut length {ms:?} (ms, 1..={HOLD_MS_MAX})"))
        })
        .collect::<Result<_>>()?;
    if !(1..=COUNT_MAX).contains(&args.repeat) {
        bail!("--repeat must be in 1..={COUNT_MAX}");
    }
    let run_dir =
        std::path::absolute(&args.cluster.out)?.join(format!("rejoin-{}", std::process::id()));
    println!(
        "chaos rejoin: cuts {} ms x {} on {} nodes ({}); status polled every {} ms from the client namespace; nodes' logs in {}",
        args.cuts_ms,
        args.repeat,
        args.cluster.nodes,
        timing(&args.cluster),
        rejoin::POLL_EVERY.as_millis(),
        run_dir.display()
    );
    let config = RejoinConfig {
        cuts,
        repeat: args.repeat,
        nodes: args.cluster.nodes,
        host,
        run_dir,
        backend,
    };
    let results = rejoin::run_rejoin(&config)?;
    let bound = args.bound_ms.map(Duration::from_millis);
    let mut ok = true;
    for result in &results {
        let over = match (result.rejoined_after, bound) {
            (None, _) => true,
            (Some(took), Some(bound)) => took > bound,
            (Some(_), None) => false,
        };
        let meaningless = !result.was_cut_off();
        ok &= !over && !meaningless;
        let flag = if over {
            "  OVER THE BOUND"
        } else if meaningless {
            "  NOT CUT OFF (still named the leader)"
        } else {
            ""
        };
        println!("{}{flag}", rejoin::describe(result));
    }
    let mut lengths: Vec<Duration> = results.iter().map(|r| r.cut).collect();
    lengths.dedup();
    for cut in lengths {
        let took: Vec<u64> = results
            .iter()
            .filter(|r| r.cut == cut)
            .filter_map(|r| r.rejoined_after)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .collect();
        let (median, _, max) = stall::summary_us(&took);
        println!(
            "cut {:.1} s: {} measured, median {:.1} ms, max {:.1} ms",
            cut.as_secs_f64(),
            took.len(),
            median as f64 / 1000.0,
            max as f64 / 1000.0
        );
    }
    if let Some(bound) = bound {
        println!(
            "bound {} ms: {}",
            bound.as_millis(),
            if ok { "held" } else { "EXCEEDED" }
        );
    }
    Ok(ok)
}
