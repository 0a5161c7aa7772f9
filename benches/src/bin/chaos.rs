//! `chaos`: runs the fault suite (see `benches::chaos`) and prints a summary table.
//!
//! ```text
//! chaos run --runs 5 --duration 60 --nodes 5 --nemesis kill,partition --snapshot-entries 200
//! chaos cleanup            # remove namespaces left by a crashed run
//! chaos check chaos-report/run-7   # check a saved history again
//! chaos schedule --seed 7 --duration 60 --nemesis all   # the faults seed 7 gives
//! chaos stall --fault pause-leader --count 10   # write stall per fault, median/p90/max
//! chaos rejoin --cuts-ms 1000,5000,20000 --repeat 3   # a cut-off node knowing the leader
//! ```
//!
//! Exit status: 0 when every run was clean, 1 when any run found an anomaly, 2 when the
//! suite could not run (not root, missing tools, setup failure).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use benches::chaos::checker;
use benches::chaos::history::{History, Workload};
use benches::chaos::host::{HostOptions, LIBFAKETIME};
use benches::chaos::linear::Limits;
use benches::chaos::nemesis::{Kind, Schedule, Timing};
use benches::chaos::net::{self, BlockBackend};
use benches::chaos::report::{self, FaultRecord, Summary};
use benches::chaos::run::{run, RunConfig};
use benches::chaos::sys;
use clap::{Parser, Subcommand};

#[path = "chaos/availability.rs"]
mod availability;

/// Longest run the tool accepts (one hour).
const DURATION_S_MAX: u64 = 3600;
/// Most anomalies printed per run (all are in anomalies.txt).
const FINDINGS_PRINTED_MAX: usize = 10;
/// Most witness lines printed per run (the whole witness is in anomalies.txt).
const WITNESS_LINES_MAX: usize = 60;
/// Most runs in one invocation.
const RUNS_MAX: u64 = 10_000;

#[derive(Parser, Debug)]
#[command(
    name = "chaos",
    about = "Jepsen-style fault suite for raftkv (needs root)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run N seeded runs and print a summary table.
    Run(Box<RunArgs>),
    /// Check a run directory's saved history again (history.jsonl, faults from nemesis.log);
    /// needs no root.
    Check {
        /// A run directory (`.../run-SEED`).
        run_dir: PathBuf,
    },
    /// Print the fault schedule a seed gives (no root, nothing started).
    Schedule {
        #[arg(long)]
        seed: u64,
        #[arg(long, default_value_t = 30)]
        duration: u64,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value = "kill,pause,partition")]
        nemesis: String,
    },
    /// Measure the write stall of one fault kind, fault by fault (writers on every node).
    Stall(Box<availability::StallArgs>),
    /// Measure how soon a node cut off from the others knows the leader after the heal.
    Rejoin(Box<availability::RejoinArgs>),
    /// Remove namespaces and owner files left by runs whose process is gone.
    Cleanup {
        /// Also remove those of runs that still seem alive.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Parser, Debug)]
struct RunArgs {
    /// Number of runs (seeds SEED, SEED+1, ...).
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Seconds of faults and load per run.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Voters in the cluster (3 or 5; membership changes keep this size).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Comma-separated: kill, pause, partition, membership, skew, netem (or "all").
    #[arg(long, default_value = "kill,pause,partition")]
    nemesis: String,
    /// Comma-separated: register, counter, set, txn.
    #[arg(long, default_value = "register,counter,set,txn")]
    workloads: String,
    /// The first run's seed (default: from the clock; always printed).
    #[arg(long)]
    seed: Option<u64>,
    /// kvnode's snapshot threshold (small values make InstallSnapshot happen under faults).
    #[arg(long)]
    snapshot_entries: Option<u64>,
    /// The kvnode binary (default: `kvnode` beside this binary).
    #[arg(long)]
    kvnode: Option<PathBuf>,
    /// An extra argument for every kvnode (repeatable), e.g. a test-only fault switch.
    #[arg(long = "kvnode-arg", allow_hyphen_values = true)]
    kvnode_args: Vec<String>,
    /// Where run directories go.
    #[arg(long, default_value = "chaos-report")]
    out: PathBuf,
    /// Concurrent clients per workload.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Extra read-only clients per workload (with --leader-only they keep reading from a
    /// deposed leader while the writers move on).
    #[arg(long, default_value_t = 0)]
    readers: usize,
    /// Hard deadline of every request; past it the outcome is indeterminate.
    #[arg(long, default_value_t = 1000)]
    request_timeout_ms: u64,
    /// Longest pause between two requests of one client.
    #[arg(long, default_value_t = 10)]
    think_ms: u64,
    /// Clients send READONLY first: reads skip the ReadIndex round (a seeded bug to catch).
    #[arg(long)]
    stale_reads: bool,
    /// Transfers of the txn workload go out as DECRBY then INCRBY without MULTI (a seeded
    /// client bug: the txn checker must report partial transfers).
    #[arg(long)]
    split_transfers: bool,
    /// Clients talk only to the node last seen leading (RAFT.STATUS every 100 ms).
    #[arg(long)]
    leader_only: bool,
    /// kvnode's heartbeat (and tick).
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    /// kvnode's minimum election timeout (above its default of 150, so a loaded two-core
    /// machine does not see spurious elections).
    #[arg(long, default_value_t = 300)]
    election_ms: u64,
    /// How partitions are made: nft (silent drops), route (blackhole routes), auto.
    #[arg(long, default_value = "auto")]
    block_backend: String,
    /// Longest wait for convergence and for the final reads after healing.
    #[arg(long, default_value_t = 30)]
    settle_secs: u64,
    /// Stop after the first run with an anomaly.
    #[arg(long)]
    stop_on_anomaly: bool,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Cleanup { all } => cleanup(all).map(|()| true),
        Command::Check { run_dir } => check(&run_dir),
        Command::Schedule {
            seed,
            duration,
            nodes,
            nemesis,
        } => print_schedule(seed, duration, nodes, &nemesis).map(|()| true),
        Command::Run(args) => run_all(&args),
        Command::Stall(args) => availability::stall(&args),
        Command::Rejoin(args) => availability::rejoin(&args),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("chaos: {error:#}");
            std::process::exit(2);
        }
    }
}

fn cleanup(all: bool) -> Result<()> {
    sys::require_root()?;
    let removed = net::cleanup(all)?;
    println!(
        "chaos cleanup: removed {} namespace(s) {removed:?}",
        removed.len()
    );
    Ok(())
}

fn check(run_dir: &std::path::Path) -> Result<bool> {
    let path = run_dir.join("history.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let history =
        History::from_jsonl(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let faults: Vec<FaultRecord> = std::fs::read_to_string(run_dir.join("nemesis.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(FaultRecord::parse_log_line)
        .collect();
    let checked = checker::check(&history, Limits::default());
    println!(
        "{}: {} operations, {} faults, {} anomalies, {} key(s) undecided",
        run_dir.display(),
        history.len(),
        faults.len(),
        checked.anomalies.len(),
        checked.unknown_keys.len()
    );
    for anomaly in &checked.anomalies {
        println!("=== {}", report::witness(anomaly, &history, &faults));
    }
    Ok(checked.anomalies.is_empty())
}

fn print_schedule(seed: u64, duration_s: u64, nodes: usize, nemesis: &str) -> Result<()> {
    let kinds = parse_kinds(nemesis)?;
    let schedule = Schedule::generate(
        seed,
        duration_s.saturating_mul(1000),
        nodes,
        &kinds,
        Timing::default(),
    );
    for window in &schedule.windows {
        println!(
            "[{} ms, {} ms] {}",
            window.start_ms, window.end_ms, window.fault
        );
    }
    for (at, step) in &schedule.membership {
        println!("{at} ms membership {step:?}");
    }
    Ok(())
}

fn parse_kinds(nemesis: &str) -> Result<Vec<Kind>> {
    if nemesis == "all" {
        Ok(Kind::ALL.to_vec())
    } else {
        parse_list(nemesis, Kind::parse, "nemesis")
    }
}

fn parse_list<T>(text: &str, parse: impl Fn(&str) -> Option<T>, what: &str) -> Result<Vec<T>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| parse(name).with_context(|| format!("unknown {what} {name:?}")))
        .collect()
}

fn configs(args: &RunArgs) -> Result<(u64, Vec<RunConfig>)> {
    if !(1..=RUNS_MAX).contains(&args.runs) {
        bail!("--runs must be in 1..={RUNS_MAX}");
    }
    if !(5..=DURATION_S_MAX).contains(&args.duration) {
        bail!("--duration must be in 5..={DURATION_S_MAX} seconds");
    }
    if !(1..=9).contains(&args.nodes) {
        bail!("--nodes must be in 1..=9");
    }
    if !(1..=64).contains(&args.clients) {
        bail!("--clients must be in 1..=64");
    }
    if args.readers > 64 {
        bail!("--readers must be at most 64");
    }
    if !(10..=60_000).contains(&args.request_timeout_ms) {
        bail!("--request-timeout-ms must be in 10..=60000");
    }
    if args.think_ms > 10_000 {
        bail!("--think-ms must be at most 10000");
    }
    if !(1..=3600).contains(&args.settle_secs) {
        bail!("--settle-secs must be in 1..=3600");
    }
    let kinds = parse_kinds(&args.nemesis)?;
    let workloads = parse_list(&args.workloads, Workload::parse, "workload")?;
    if workloads.is_empty() {
        bail!("--workloads names none");
    }
    let backend = BlockBackend::parse(&args.block_backend)
        .with_context(|| format!("unknown --block-backend {:?}", args.block_backend))?;
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
    let faketime = kinds.contains(&Kind::Skew);
    if faketime && !std::path::Path::new(LIBFAKETIME).exists() {
        bail!("the skew nemesis needs libfaketime ({LIBFAKETIME}); apt-get install faketime");
    }
    let first_seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let host = HostOptions {
        kvnode: kvnode.canonicalize()?,
        heartbeat_ms: Some(args.heartbeat_ms),
        election_ms: Some(args.election_ms),
        snapshot_entries: args.snapshot_entries,
        extra_args: args.kvnode_args.clone(),
        faketime,
    };
    let out = std::path::absolute(&args.out)?;
    let configs = (0..args.runs)
        .map(|i| {
            let seed = first_seed.wrapping_add(i);
            RunConfig {
                seed,
                duration: Duration::from_secs(args.duration),
                nodes: args.nodes,
                kinds: kinds.clone(),
                workloads: workloads.clone(),
                clients_per_workload: args.clients,
                readers_per_workload: args.readers,
                request_timeout: Duration::from_millis(args.request_timeout_ms),
                stale_reads: args.stale_reads,
                split_transfers: args.split_transfers,
                leader_only: args.leader_only,
                think_max: Duration::from_millis(args.think_ms),
                host: host.clone(),
                run_dir: out.join(format!("run-{seed}")),
                backend,
                timing: Timing::default(),
                settle_timeout: Duration::from_secs(args.settle_secs),
                limits: Limits::default(),
            }
        })
        .collect();
    Ok((first_seed, configs))
}

fn run_all(args: &RunArgs) -> Result<bool> {
    sys::require_root()?;
    if !sys::has_program("ip") {
        bail!("`ip` (iproute2) is not installed");
    }
    let (first_seed, configs) = configs(args)?;
    println!(
        "chaos: {} run(s) of {} s, {} nodes, nemesis {}, first seed {first_seed} (replay one with --seed N --runs 1)",
        configs.len(),
        args.duration,
        args.nodes,
        args.nemesis
    );
    std::fs::create_dir_all(&args.out)?;
    let mut summaries = Vec::new();
    for config in &configs {
        let started = std::time::Instant::now();
        let summary = run(config).with_context(|| format!("run with seed {}", config.seed))?;
        println!(
            "run seed {}: {} ops ({} indeterminate; p50 {:.1} ms, p99 {:.1} ms), {} faults, {} snapshot installs, {} anomalies, {:.0} s  -> {}",
            summary.seed,
            summary.ops(),
            summary.indeterminate(),
            summary.latency_us[0] as f64 / 1000.0,
            summary.latency_us[1] as f64 / 1000.0,
            summary.faults,
            summary.snapshot_installs,
            summary.findings.len(),
            started.elapsed().as_secs_f64(),
            summary.run_dir
        );
        for finding in summary.findings.iter().take(FINDINGS_PRINTED_MAX) {
            println!("  ANOMALY {}: {}", finding.kind, finding.detail);
        }
        if summary.findings.len() > FINDINGS_PRINTED_MAX {
            println!(
                "  ... and {} more (all in {}/anomalies.txt)",
                summary.findings.len() - FINDINGS_PRINTED_MAX,
                summary.run_dir
            );
        }
        if summary.unknown_keys > 0 {
            println!(
                "  note: the linearizability search gave up on {} key(s) (bound reached; neither proven nor refuted)",
                summary.unknown_keys
            );
        }
        if let Some(finding) = summary.findings.iter().find(|f| !f.witness.is_empty()) {
            println!("  first witness:");
            for line in finding.witness.lines().take(WITNESS_LINES_MAX) {
                println!("    {line}");
            }
        }
        if let Some(at) = summary.first_anomaly_s {
            println!(
                "  first anomaly at {at:.1} s; witnesses in {}/anomalies.txt",
                summary.run_dir
            );
        }
        let line = format!("{}\n", summary.to_json());
        let path = args.out.join("summary.jsonl");
        std::io::Write::write_all(
            &mut std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?,
            line.as_bytes(),
        )?;
        let found = !summary.findings.is_empty();
        summaries.push(summary);
        if found && args.stop_on_anomaly {
            break;
        }
    }
    print!("{}", table(&summaries));
    Ok(summaries.iter().all(|s| s.findings.is_empty()))
}

/// The summary table: one row per run, then totals.
fn table(summaries: &[Summary]) -> String {
    let mut kinds: Vec<Kind> = summaries
        .iter()
        .flat_map(|s| s.gaps_us.keys().copied())
        .collect();
    kinds.sort();
    kinds.dedup();
    let mut out = String::from(
        "\n| seed | nodes | nemesis | snapshot entries | faults | elections | snapshot installs | ops | ok | failed | indeterminate | anomalies |",
    );
    for kind in &kinds {
        out.push_str(&format!(" gap {} ms |", kind.name()));
    }
    out.push_str("\n|---|---|---|---|---|---|---|---|---|---|---|---|");
    out.push_str(&"---|".repeat(kinds.len()));
    out.push('\n');
    let mut worst: BTreeMap<Kind, u64> = BTreeMap::new();
    for s in summaries {
        let ok: u64 = s.counts.values().map(|c| c.ok).sum();
        let failed: u64 = s.counts.values().map(|c| c.failed).sum();
        let nemesis: Vec<&str> = s.nemesis.iter().map(|k| k.name()).collect();
        let snapshot = s
            .snapshot_entries
            .map_or("default".to_owned(), |n| n.to_string());
        out.push_str(&format!(
            "| {} | {} | {} | {snapshot} | {} | {} | {} | {} | {ok} | {failed} | {} | {} |",
            s.seed,
            s.nodes,
            nemesis.join(","),
            s.faults,
            s.elections,
            s.snapshot_installs,
            s.ops(),
            s.indeterminate(),
            s.findings.len()
        ));
        for kind in &kinds {
            match s.gaps_us.get(kind) {
                Some(us) => {
                    out.push_str(&format!(" {} |", us / 1000));
                    let entry = worst.entry(*kind).or_default();
                    *entry = (*entry).max(*us);
                }
                None => out.push_str(" - |"),
            }
        }
        out.push('\n');
    }
    let anomalies: usize = summaries.iter().map(|s| s.findings.len()).sum();
    let ops: u64 = summaries.iter().map(Summary::ops).sum();
    let indeterminate: u64 = summaries.iter().map(Summary::indeterminate).sum();
    let gaps: Vec<String> = worst
        .iter()
        .map(|(k, us)| format!("{} {} ms", k.name(), us / 1000))
        .collect();
    out.push_str(&format!(
        "\nruns {}, anomalies {anomalies}, ops {ops}, indeterminate {indeterminate}, longest gap per fault kind: {}\n",
        summaries.len(),
        if gaps.is_empty() { "-".to_owned() } else { gaps.join(", ") }
    ));
    out
}
