//! What a run leaves behind, in its own directory:
//!
//! - `summary.json`: one line, the run's numbers (also printed);
//! - `history.jsonl`: every operation, one JSON object per line;
//! - `nemesis.log`: the schedule, then every fault as it started and ended;
//! - `latency.svg`: latency over time, fault windows shaded ([`super::plot`]);
//! - `anomalies.txt`: each anomaly with its witness (the operations on that key around it and
//!   the faults active then), only when there is one;
//! - `node-<id>/`: each node's config and log (`kvnode.log`); its data directory is kept
//!   only when the run found an anomaly.
//!
//! Availability: after each fault starts, the longest gap without a successful write until
//! the next fault starts (or the run ends), taken over all workloads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::checker::Anomaly;
use super::history::{History, Op, Outcome, Phase, Workload};
use super::nemesis::Kind;

/// One fault as it happened (membership steps have `start_us == end_us`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    pub kind: Kind,
    pub what: String,
    pub start_us: u64,
    pub end_us: u64,
}

impl FaultRecord {
    /// The `nemesis.log` line for this fault.
    pub fn log_line(&self) -> String {
        format!(
            "fault [{:.3} s, {:.3} s] {}: {}",
            self.start_us as f64 / 1e6,
            self.end_us as f64 / 1e6,
            self.kind.name(),
            self.what
        )
    }

    /// Parses a [`FaultRecord::log_line`]; `None` for any other line.
    pub fn parse_log_line(line: &str) -> Option<FaultRecord> {
        let rest = line.strip_prefix("fault [")?;
        let (start, rest) = rest.split_once(" s, ")?;
        let (end, rest) = rest.split_once(" s] ")?;
        let (kind, what) = rest.split_once(": ")?;
        let micros = |text: &str| text.parse::<f64>().ok().map(|s| (s * 1e6).round() as u64);
        Some(FaultRecord {
            kind: Kind::parse(kind)?,
            what: what.to_owned(),
            start_us: micros(start)?,
            end_us: micros(end)?,
        })
    }
}

/// Something wrong the run found: a checker anomaly, a node that did not converge or
/// crashed, or replies the server should never send.
#[derive(Clone, Debug)]
pub struct Finding {
    pub kind: String,
    pub detail: String,
    /// The witness: operations and faults around it (empty when none apply).
    pub witness: String,
}

/// Operations per outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
    pub indeterminate: u64,
}

/// Counts of the main phase's operations per workload.
pub fn counts(history: &History) -> BTreeMap<Workload, Counts> {
    let mut counts: BTreeMap<Workload, Counts> = BTreeMap::new();
    for op in history.ops().iter().filter(|op| op.phase == Phase::Main) {
        let entry = counts.entry(op.workload).or_default();
        match op.outcome {
            Outcome::Ok(_) => entry.ok += 1,
            Outcome::Failed(_) => entry.failed += 1,
            Outcome::Indeterminate(_) => entry.indeterminate += 1,
        }
    }
    counts
}

/// For each fault (in `faults` order), the longest gap (µs) without a successful write from
/// its start until the next fault starts (or `end_us`). A membership step's stretch ends at
/// the next event of any kind; a window's at the next window's start.
pub fn gaps_per_fault(history: &History, faults: &[FaultRecord], end_us: u64) -> Vec<u64> {
    let mut writes: Vec<u64> = history
        .ops()
        .iter()
        .filter(|op| op.phase == Phase::Main && op.is_write() && op.outcome.is_ok())
        .map(|op| op.complete_us)
        .collect();
    writes.sort_unstable();
    let mut window_starts: Vec<u64> = faults
        .iter()
        .filter(|f| f.kind != Kind::Membership)
        .map(|f| f.start_us)
        .collect();
    window_starts.sort_unstable();
    let mut all_starts: Vec<u64> = faults.iter().map(|f| f.start_us).collect();
    all_starts.sort_unstable();
    faults
        .iter()
        .map(|fault| {
            let marks = if fault.kind == Kind::Membership {
                &all_starts
            } else {
                &window_starts
            };
            let until = marks
                .iter()
                .copied()
                .find(|&m| m > fault.start_us)
                .unwrap_or(end_us);
            longest_gap(&writes, fault.start_us, until)
        })
        .collect()
}

/// Latency percentiles (µs) of the main phase's acknowledged operations: p50, p99, p99.9,
/// max, from an HDR histogram (kvbench's bounds).
pub fn latency_percentiles(history: &History) -> [u64; 4] {
    let mut histogram = crate::kvbench::stats::new_histogram();
    for op in history.ops() {
        if op.phase == Phase::Main && op.outcome.is_ok() {
            histogram.saturating_record(op.complete_us.saturating_sub(op.invoke_us).max(1));
        }
    }
    if histogram.is_empty() {
        return [0; 4];
    }
    [
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max(),
    ]
}

/// Per fault kind, the longest of [`gaps_per_fault`].
pub fn availability(history: &History, faults: &[FaultRecord], end_us: u64) -> BTreeMap<Kind, u64> {
    let mut gaps: BTreeMap<Kind, u64> = BTreeMap::new();
    for (fault, gap) in faults.iter().zip(gaps_per_fault(history, faults, end_us)) {
        let entry = gaps.entry(fault.kind).or_default();
        *entry = (*entry).max(gap);
    }
    gaps
}

/// The longest stretch of `[from, until]` with no time in `sorted` (µs).
pub fn longest_gap(sorted: &[u64], from: u64, until: u64) -> u64 {
    let first = sorted.partition_point(|&t| t < from);
    let mut last = from;
    let mut longest = 0;
    for &t in sorted[first..].iter().take_while(|&&t| t <= until) {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(until.saturating_sub(last))
}

/// Most operations a witness lists.
pub const WITNESS_OPS_MAX: usize = 40;
/// Context before an anomaly's window in a witness.
const WITNESS_MARGIN_US: u64 = 1_000_000;

/// The witness of a checker anomaly: the operations on its key that overlap its window
/// (widened by a second before), marking those involved, and the faults active then.
pub fn witness(anomaly: &Anomaly, history: &History, faults: &[FaultRecord]) -> String {
    let (start, end) = anomaly.window_us;
    let from = start.saturating_sub(WITNESS_MARGIN_US);
    let overlapping: Vec<&Op> = history
        .ops()
        .iter()
        .filter(|op| op.workload == anomaly.workload && op.key == anomaly.key)
        .filter(|op| op.invoke_us <= end && op.return_us().is_none_or(|r| r >= from))
        .collect();
    // Keep the involved operations and the closest others, up to the cap.
    let mut shown: Vec<&Op> = overlapping
        .iter()
        .copied()
        .filter(|op| anomaly.ops.contains(&op.index))
        .collect();
    let mut others: Vec<&Op> = overlapping
        .iter()
        .copied()
        .filter(|op| !anomaly.ops.contains(&op.index))
        .collect();
    others.sort_by_key(|op| std::cmp::Reverse(op.invoke_us));
    shown.extend(
        others
            .into_iter()
            .take(WITNESS_OPS_MAX.saturating_sub(shown.len())),
    );
    shown.sort_by_key(|op| (op.invoke_us, op.index));
    let mut text = format!(
        "{} on {} key {:?}: {}\noperations on this key in [{:.3} s, {:.3} s] ({} of {}; * = involved):\n",
        anomaly.kind,
        anomaly.workload.name(),
        anomaly.key,
        anomaly.detail,
        from as f64 / 1e6,
        end as f64 / 1e6,
        shown.len(),
        overlapping.len()
    );
    for op in shown {
        let mark = if anomaly.ops.contains(&op.index) {
            '*'
        } else {
            ' '
        };
        let _ = writeln!(text, " {mark} {op}");
    }
    text.push_str(&faults_during(faults, from, end));
    text
}

/// The faults that overlap `[from, until]`, one per line.
pub fn faults_during(faults: &[FaultRecord], from: u64, until: u64) -> String {
    let mut text = String::from("faults active then:\n");
    let mut any = false;
    for fault in faults
        .iter()
        .filter(|f| f.start_us <= until && f.end_us >= from)
    {
        any = true;
        let _ = writeln!(
            text,
            "   [{:.3} s, {:.3} s] {}: {}",
            fault.start_us as f64 / 1e6,
            fault.end_us as f64 / 1e6,
            fault.kind.name(),
            fault.what
        );
    }
    if !any {
        text.push_str("   (none)\n");
    }
    text
}

/// The summary of one run.
#[derive(Clone, Debug)]
pub struct Summary {
    pub seed: u64,
    pub nodes: usize,
    pub nemesis: Vec<Kind>,
    pub duration_s: f64,
    pub snapshot_entries: Option<u64>,
    pub stale_reads: bool,
    pub leader_only: bool,
    pub counts: BTreeMap<Workload, Counts>,
    pub gaps_us: BTreeMap<Kind, u64>,
    /// [`latency_percentiles`] of the run.
    pub latency_us: [u64; 4],
    /// Each fault with the longest gap (µs) after it: (kind, start µs, gap µs).
    pub fault_gaps_us: Vec<(Kind, u64, u64)>,
    pub findings: Vec<Finding>,
    pub unknown_keys: usize,
    /// Snapshots nodes received from a leader (InstallSnapshot), counted from the node logs'
    /// "restored a snapshot from the leader" lines: informational, not a check.
    pub snapshot_installs: usize,
    /// Times a node became leader (the first election included), from the node logs'
    /// "role=Leader" lines: informational, not a check.
    pub elections: usize,
    /// When the earliest checker anomaly happened (seconds since start), if any.
    pub first_anomaly_s: Option<f64>,
    pub faults: usize,
    pub run_dir: String,
}

impl Summary {
    pub fn ops(&self) -> u64 {
        self.counts
            .values()
            .map(|c| c.ok + c.failed + c.indeterminate)
            .sum()
    }

    pub fn indeterminate(&self) -> u64 {
        self.counts.values().map(|c| c.indeterminate).sum()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let counts: serde_json::Map<String, serde_json::Value> = self
            .counts
            .iter()
            .map(|(w, c)| {
                (
                    w.name().to_owned(),
                    serde_json::json!({"ok": c.ok, "failed": c.failed, "indeterminate": c.indeterminate}),
                )
            })
            .collect();
        let gaps: serde_json::Map<String, serde_json::Value> = self
            .gaps_us
            .iter()
            .map(|(k, us)| (k.name().to_owned(), serde_json::Value::from(*us / 1000)))
            .collect();
        let findings: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| serde_json::json!({"kind": f.kind, "detail": f.detail}))
            .collect();
        serde_json::json!({
            "seed": self.seed,
            "nodes": self.nodes,
            "nemesis": self.nemesis.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "duration_s": self.duration_s,
            "snapshot_entries": self.snapshot_entries,
            "stale_reads": self.stale_reads,
            "leader_only": self.leader_only,
            "ops": self.ops(),
            "counts": counts,
            "faults": self.faults,
            "longest_gap_ms": gaps,
            "latency_ms": {
                "p50": self.latency_us[0] as f64 / 1000.0,
                "p99": self.latency_us[1] as f64 / 1000.0,
                "p999": self.latency_us[2] as f64 / 1000.0,
                "max": self.latency_us[3] as f64 / 1000.0,
            },
            "fault_gaps": self
                .fault_gaps_us
                .iter()
                .map(|(kind, start, gap)| serde_json::json!({
                    "kind": kind.name(),
                    "start_s": *start as f64 / 1e6,
                    "gap_ms": gap / 1000,
                }))
                .collect::<Vec<_>>(),
            "anomalies": self.findings.len(),
            "findings": findings,
            "unknown_keys": self.unknown_keys,
            "first_anomaly_s": self.first_anomaly_s,
            "snapshot_installs": self.snapshot_installs,
            "elections": self.elections,
            "run_dir": self.run_dir,
        })
    }
}

/// Writes the history, the summary and the anomalies into `dir`.
///
/// # Errors
/// If a file cannot be written.
pub fn write(dir: &Path, history: &History, summary: &Summary) -> Result<()> {
    let mut lines = String::with_capacity(history.len() * 200);
    for op in history.ops() {
        lines.push_str(&op.to_json().to_string());
        lines.push('\n');
    }
    let path = dir.join("history.jsonl");
    std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    let path = dir.join("summary.json");
    std::fs::write(&path, format!("{}\n", summary.to_json()))
        .with_context(|| format!("writing {}", path.display()))?;
    if !summary.findings.is_empty() {
        let mut text = String::new();
        for finding in &summary.findings {
            // A witness opens with the anomaly's own description.
            if finding.witness.is_empty() {
                let _ = writeln!(text, "=== {}: {}\n", finding.kind, finding.detail);
            } else {
                let _ = writeln!(text, "=== {}", finding.witness);
            }
        }
        let path = dir.join("anomalies.txt");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::history::{Call, Ret};
    use super::*;

    #[test]
    fn fault_log_lines_round_trip() {
        let fault = FaultRecord {
            kind: Kind::Partition,
            what: "blocked [(1, 2)]: x".into(),
            start_us: 2_007_000,
            end_us: 6_808_000,
        };
        assert_eq!(FaultRecord::parse_log_line(&fault.log_line()), Some(fault));
        assert_eq!(FaultRecord::parse_log_line("seed 1"), None);
    }

    #[test]
    fn latency_percentiles_of_acknowledged_operations() {
        let mut history = History::new();
        assert_eq!(latency_percentiles(&history), [0; 4]);
        for t in 1..=100u64 {
            let mut op = write_op(0, 10_000 + t * 1000);
            op.invoke_us = op.complete_us - t * 1000;
            history.push(op);
        }
        let [p50, p99, _, max] = latency_percentiles(&history);
        assert!((49_900..=50_100).contains(&p50), "{p50}");
        assert!((98_900..=99_100).contains(&p99), "{p99}");
        assert!((99_900..=100_100).contains(&max), "{max}");
    }

    #[test]
    fn longest_gap_counts_the_edges() {
        assert_eq!(longest_gap(&[], 10, 50), 40);
        assert_eq!(longest_gap(&[5, 20, 30, 60], 10, 50), 20);
        assert_eq!(longest_gap(&[12, 48], 10, 50), 36);
    }

    fn write_op(index: usize, complete_us: u64) -> Op {
        Op {
            index,
            process: 1,
            workload: Workload::Register,
            key: "r0:0".into(),
            node: 1,
            call: Call::Write(index as u64),
            invoke_us: complete_us - 1,
            complete_us,
            outcome: Outcome::Ok(Ret::Done),
            phase: Phase::Main,
        }
    }

    #[test]
    fn availability_takes_the_longest_gap_per_kind() {
        let mut history = History::new();
        for t in [1_000, 2_000, 9_000, 10_000, 11_000, 30_000] {
            history.push(write_op(0, t));
        }
        let fault = |kind, start_us| FaultRecord {
            kind,
            what: String::new(),
            start_us,
            end_us: start_us + 100,
        };
        let faults = [
            fault(Kind::Kill, 1_500),
            fault(Kind::Pause, 10_500),
            fault(Kind::Kill, 20_000),
        ];
        let gaps = availability(&history, &faults, 40_000);
        assert_eq!(
            gaps[&Kind::Kill],
            10_000,
            "30 000 - 20 000 and 40 000 - 30 000"
        );
        assert_eq!(
            gaps[&Kind::Pause],
            9_000,
            "from the write at 11 000 to the next fault at 20 000"
        );
    }

    #[test]
    fn witness_lists_the_key_and_the_faults() {
        let mut history = History::new();
        for t in [1_000_000, 2_000_000, 3_000_000] {
            history.push(write_op(0, t));
        }
        let anomaly = Anomaly {
            workload: Workload::Register,
            key: "r0:0".into(),
            kind: "not-linearizable",
            detail: "example".into(),
            ops: vec![2],
            window_us: (2_900_000, 3_000_000),
        };
        let faults = [FaultRecord {
            kind: Kind::Partition,
            what: "halves".into(),
            start_us: 2_500_000,
            end_us: 4_000_000,
        }];
        let text = witness(&anomaly, &history, &faults);
        assert!(text.contains(" * #2"), "{text}");
        assert!(text.contains("#1"), "{text}");
        assert!(!text.contains("#0"), "outside the window: {text}");
        assert!(text.contains("partition: halves"), "{text}");
    }
}
