//! One run: start the cluster, run the workloads while the nemesis follows its schedule,
//! heal, settle, check, report, tear down.
//!
//! Bounded: the main phase ends at the run's duration (every client stops within one request
//! timeout after), settling has its own deadline, and the checker search has step bounds.
//! The nemesis waits for its next event by sleeping in short slices until that time (pacing,
//! not correctness), noticing crashed nodes between slices.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::checker;
use super::cluster::{Cluster, Undo};
use super::history::{History, Op, Workload};
use super::host::HostOptions;
use super::linear::Limits;
use super::nemesis::{Kind, Schedule, Timing};
use super::net::BlockBackend;
use super::plot;
use super::report::{self, FaultRecord, Finding, Summary};
use super::settle;
use super::workload::{client_loop, leader_watch, Shared};

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub duration: Duration,
    pub nodes: usize,
    pub kinds: Vec<Kind>,
    pub workloads: Vec<Workload>,
    pub clients_per_workload: usize,
    /// Extra clients per workload that only read.
    pub readers_per_workload: usize,
    pub request_timeout: Duration,
    pub stale_reads: bool,
    /// Transfers of the txn workload are sent without MULTI (a seeded client bug to catch).
    pub split_transfers: bool,
    /// Clients talk only to the node last seen leading.
    pub leader_only: bool,
    pub think_max: Duration,
    pub host: HostOptions,
    /// This run's directory (created).
    pub run_dir: PathBuf,
    pub backend: BlockBackend,
    pub timing: Timing,
    pub settle_timeout: Duration,
    pub limits: Limits,
}

/// Longest wait for the first leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// What kvnode logs when it installs a snapshot sent by the leader.
const SNAPSHOT_INSTALLED: &str = "restored a snapshot from the leader";
/// What kvnode logs when it becomes leader.
const BECAME_LEADER: &str = "role=Leader";
/// Slice of the nemesis's waits.
const NEMESIS_SLICE: Duration = Duration::from_millis(100);

/// A nemesis event in time order.
enum Event {
    Start(usize),
    End(usize),
    Membership(usize),
}

/// Runs once; returns the summary (anomalies are in it, not an error).
///
/// # Errors
/// If the cluster cannot be set up (no root, missing tools, a command failing).
pub fn run(config: &RunConfig) -> Result<Summary> {
    std::fs::create_dir_all(&config.run_dir)
        .with_context(|| format!("creating {}", config.run_dir.display()))?;
    let duration_ms = u64::try_from(config.duration.as_millis()).unwrap_or(u64::MAX);
    let schedule = Schedule::generate(
        config.seed,
        duration_ms,
        config.nodes,
        &config.kinds,
        config.timing,
    );
    let mut log = format!("seed {}\nschedule:\n", config.seed);
    for window in &schedule.windows {
        let _ = writeln!(
            log,
            "  [{} ms, {} ms] {}",
            window.start_ms, window.end_ms, window.fault
        );
    }
    for (at, step) in &schedule.membership {
        let _ = writeln!(log, "  {at} ms membership {step:?}");
    }
    let octet = u8::try_from(20 + config.seed % 200).expect("below 256");
    let mut cluster = Cluster::start(
        config.nodes,
        config.host.clone(),
        config.run_dir.clone(),
        octet,
        config.backend,
        LEADER_TIMEOUT,
    )?;
    let _ = writeln!(
        log,
        "subnet 10.231.{}.0/24, block backend {:?}",
        cluster.net.subnet.octet, config.backend
    );
    let shared = Arc::new(Shared {
        dialer: cluster.dialer(),
        endpoints: cluster.endpoints.clone(),
        started: Instant::now(),
        stop: AtomicBool::new(false),
        request_timeout: config.request_timeout,
        stale_reads: config.stale_reads,
        split_transfers: config.split_transfers,
        think_max: config.think_max,
        next_value: AtomicU64::new(1),
        started_ops: Default::default(),
        leader_only: config.leader_only,
        leader_hint: AtomicU64::new(0),
    });
    let clients = spawn_clients(&cluster, &shared, config);
    let faults = nemesis_phase(&mut cluster, &schedule, &shared, config.duration, &mut log);
    let mut findings = Vec::new();
    shared.stop.store(true, Ordering::Relaxed);
    let mut history = collect_history(&cluster, clients, &mut findings)?;
    let main_end_us = shared.elapsed_us();
    findings.extend(settle::settle(
        &mut cluster,
        &shared,
        &mut history,
        config.settle_timeout,
        &mut log,
    ));
    finish(config, cluster, history, faults, findings, main_end_us, log)
}

/// Starts every workload's clients on the client runtime.
fn spawn_clients(
    cluster: &Cluster,
    shared: &Arc<Shared>,
    config: &RunConfig,
) -> Vec<JoinHandle<Vec<Op>>> {
    let mut clients = Vec::new();
    if config.leader_only {
        let watch = cluster.client.spawn(leader_watch(shared.clone()));
        clients.push(cluster.client.spawn(async move {
            // Ends with the stop flag; its result is no operations.
            let _ = watch.await; // a panic here shows up as missing hints, not lost ops
            Vec::new()
        }));
    }
    for (w, workload) in config.workloads.iter().enumerate() {
        for c in 0..config.clients_per_workload + config.readers_per_workload {
            let number = (w * 100 + c) as u64 + 1;
            let seed = config.seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let reader = c >= config.clients_per_workload;
            clients.push(cluster.client.spawn(client_loop(
                shared.clone(),
                *workload,
                number,
                seed,
                reader,
            )));
        }
    }
    clients
}

/// Waits for the clients (each stops within a request timeout of the stop flag) and puts
/// their operations into one history, in completion order.
fn collect_history(
    cluster: &Cluster,
    clients: Vec<JoinHandle<Vec<Op>>>,
    findings: &mut Vec<Finding>,
) -> Result<History> {
    let results = cluster.client.run(async move {
        let mut all = Vec::new();
        for client in clients {
            all.push(client.await.map_err(|e| e.to_string()));
        }
        all
    })?;
    let mut ops: Vec<Op> = Vec::new();
    for result in results {
        match result {
            Ok(client_ops) => ops.extend(client_ops),
            // A client task that panicked loses its operations: a tool bug, reported.
            Err(error) => findings.push(Finding {
                kind: "tool-error".to_owned(),
                detail: format!("a client task failed: {error}"),
                witness: String::new(),
            }),
        }
    }
    ops.sort_by_key(|op| (op.complete_us, op.invoke_us));
    let mut history = History::new();
    for op in ops {
        history.push(op);
    }
    Ok(history)
}

/// Follows the schedule until `duration`; returns the faults as they happened.
fn nemesis_phase(
    cluster: &mut Cluster,
    schedule: &Schedule,
    shared: &Shared,
    duration: Duration,
    log: &mut String,
) -> Vec<FaultRecord> {
    let mut events: Vec<(u64, Event)> = Vec::new();
    for (i, window) in schedule.windows.iter().enumerate() {
        events.push((window.start_ms, Event::Start(i)));
        events.push((window.end_ms, Event::End(i)));
    }
    for (i, (at, _)) in schedule.membership.iter().enumerate() {
        events.push((*at, Event::Membership(i)));
    }
    // Ends before starts at the same time, so a window is healed before the next begins.
    events.sort_by_key(|(at, event)| (*at, matches!(event, Event::Start(_)) as u8));
    let mut faults: Vec<FaultRecord> = Vec::new();
    let mut open: Vec<(usize, Undo, usize)> = Vec::new();
    let end_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let mut next = events.into_iter().peekable();
    loop {
        let now_ms = shared.elapsed_us() / 1000;
        // Reported from each host's record at the end; logged here with the time.
        for (id, status) in cluster.poll_crashes() {
            let _ = writeln!(log, "{now_ms} ms: node {id} exited by itself: {status}");
        }
        if now_ms >= end_ms {
            break;
        }
        match next.peek() {
            Some((at, _)) if *at <= now_ms => {
                let (_, event) = next.next().expect("peeked");
                nemesis_event(
                    cluster,
                    schedule,
                    event,
                    shared,
                    &mut faults,
                    &mut open,
                    log,
                );
            }
            _ => std::thread::sleep(NEMESIS_SLICE),
        }
    }
    // Windows cut off by the end of the run are healed in the settle phase.
    for (_, _, record) in open {
        faults[record].end_us = shared.elapsed_us();
    }
    faults
}

fn nemesis_event(
    cluster: &mut Cluster,
    schedule: &Schedule,
    event: Event,
    shared: &Shared,
    faults: &mut Vec<FaultRecord>,
    open: &mut Vec<(usize, Undo, usize)>,
    log: &mut String,
) {
    let at_us = shared.elapsed_us();
    let ms = at_us / 1000;
    match event {
        Event::Start(i) => {
            let fault = &schedule.windows[i].fault;
            match cluster.apply(fault) {
                Ok((undo, what)) => {
                    let _ = writeln!(log, "{ms} ms: start {fault}: {what}");
                    faults.push(FaultRecord {
                        kind: fault.kind(),
                        what,
                        start_us: at_us,
                        end_us: at_us,
                    });
                    open.push((i, undo, faults.len() - 1));
                }
                Err(error) => {
                    let _ = writeln!(log, "{ms} ms: start {fault} FAILED: {error:#}");
                }
            }
        }
        Event::End(i) => {
            let Some(position) = open.iter().position(|(w, _, _)| *w == i) else {
                return;
            };
            let (_, undo, record) = open.remove(position);
            let result = cluster.undo(undo);
            faults[record].end_us = shared.elapsed_us();
            match result {
                Ok(what) => {
                    let _ = writeln!(log, "{ms} ms: end: {what}");
                }
                Err(error) => {
                    let _ = writeln!(log, "{ms} ms: end FAILED: {error:#}");
                }
            }
        }
        Event::Membership(i) => {
            let step = schedule.membership[i].1;
            let what = cluster
                .membership(step)
                .unwrap_or_else(|error| format!("FAILED: {error:#}"));
            let _ = writeln!(log, "{ms} ms: membership: {what}");
            faults.push(FaultRecord {
                kind: Kind::Membership,
                what,
                start_us: at_us,
                end_us: shared.elapsed_us(),
            });
        }
    }
}

/// Checks, writes the report, tears down; keeps data directories only after an anomaly.
fn finish(
    config: &RunConfig,
    mut cluster: Cluster,
    history: History,
    faults: Vec<FaultRecord>,
    mut findings: Vec<Finding>,
    main_end_us: u64,
    log: String,
) -> Result<Summary> {
    cluster.teardown();
    // Every exit the tool did not cause, noticed while running or at teardown.
    for host in cluster.hosts.values() {
        for status in &host.crashes {
            findings.push(Finding {
                kind: "node-crashed".to_owned(),
                detail: format!(
                    "node {} exited by itself: {status} (see node-{}/kvnode.log)",
                    host.id, host.id
                ),
                witness: String::new(),
            });
        }
    }
    let checked = checker::check(&history, config.limits);
    for anomaly in &checked.anomalies {
        findings.push(Finding {
            kind: anomaly.kind.to_owned(),
            detail: format!(
                "{} key {}: {}",
                anomaly.workload.name(),
                anomaly.key,
                anomaly.detail
            ),
            witness: report::witness(anomaly, &history, &faults),
        });
    }
    let unexpected: Vec<&Op> = history
        .ops()
        .iter()
        .filter(|op| settle::is_unexpected(&op.outcome))
        .collect();
    if let Some(first) = unexpected.first() {
        findings.push(Finding {
            kind: "unexpected-reply".to_owned(),
            detail: format!(
                "{} replies were neither a value, TRYAGAIN nor UNKNOWN, e.g. {first}",
                unexpected.len()
            ),
            witness: String::new(),
        });
    }
    let run_dir = config.run_dir.display().to_string();
    let count_in_logs = |needle: &str| -> usize {
        cluster
            .hosts
            .values()
            .map(|host| {
                std::fs::read_to_string(host.log_path())
                    .map(|log| log.matches(needle).count())
                    .unwrap_or(0)
            })
            .sum()
    };
    let snapshot_installs = count_in_logs(SNAPSHOT_INSTALLED);
    let elections = count_in_logs(BECAME_LEADER);
    let summary = Summary {
        seed: config.seed,
        nodes: config.nodes,
        nemesis: config.kinds.clone(),
        duration_s: config.duration.as_secs_f64(),
        snapshot_entries: config.host.snapshot_entries,
        stale_reads: config.stale_reads,
        leader_only: config.leader_only,
        counts: report::counts(&history),
        gaps_us: report::availability(&history, &faults, main_end_us),
        latency_us: report::latency_percentiles(&history),
        fault_gaps_us: faults
            .iter()
            .zip(report::gaps_per_fault(&history, &faults, main_end_us))
            .map(|(fault, gap)| (fault.kind, fault.start_us, gap))
            .collect(),
        findings,
        unknown_keys: checked.unknown_keys.len(),
        snapshot_installs,
        elections,
        first_anomaly_s: checked
            .anomalies
            .iter()
            .map(|a| a.window_us.1)
            .min()
            .map(|us| us as f64 / 1e6),
        faults: faults.len(),
        run_dir,
    };
    let mut log = log;
    for fault in &faults {
        let _ = writeln!(log, "{}", fault.log_line());
    }
    let path = config.run_dir.join("nemesis.log");
    std::fs::write(&path, log).with_context(|| format!("writing {}", path.display()))?;
    report::write(&config.run_dir, &history, &summary)?;
    let title = format!(
        "seed {} · {} nodes · {} · {} ops · {} anomalies",
        config.seed,
        config.nodes,
        config
            .kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(","),
        summary.ops(),
        summary.findings.len()
    );
    plot::draw(
        &config.run_dir.join("latency.svg"),
        &history,
        &faults,
        main_end_us,
        &title,
    )?;
    if summary.findings.is_empty() {
        for host in cluster.hosts.values() {
            let data = host.dir.join("data");
            if data.exists() {
                std::fs::remove_dir_all(&data)
                    .with_context(|| format!("removing {}", data.display()))?;
            }
        }
    }
    Ok(summary)
}
