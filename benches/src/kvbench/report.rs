//! The results of one run, as text for people and as one JSON line for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::gaps::Gap;
use super::leader::LeaderWatch;
use super::options::{Settings, Target};
use super::stats::{ErrorCounts, ErrorKind, WorkerStats};

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    /// The percentiles of `histogram`; all zero when it is empty.
    pub fn from_histogram(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency {
                p50_us: 0,
                p90_us: 0,
                p99_us: 0,
                p999_us: 0,
                max_us: 0,
                mean_us: 0.0,
            };
        }
        Latency {
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
        }
    }
}

/// Everything a run reports.
#[derive(Clone, Debug)]
pub struct Report {
    pub failover: bool,
    /// `redis` or `etcd`.
    pub protocol: &'static str,
    pub endpoints: Vec<String>,
    /// The endpoint(s) loaded: the leader found, or all of them with `--spread`.
    pub targets: Vec<String>,
    pub spread: bool,
    pub connections: usize,
    pub pipeline: usize,
    pub keyspace: u64,
    pub key_bytes: usize,
    pub value_bytes: usize,
    pub read_fraction: f64,
    pub sequential: bool,
    pub warmup: Duration,
    /// The measured window: from the end of warm-up until the run stopped.
    pub measured: Duration,
    pub reads_ok: u64,
    pub writes_ok: u64,
    pub latency: Latency,
    pub errors: ErrorCounts,
    pub leader: LeaderWatch,
    /// Successful operations per second since the run started (warm-up included).
    pub timeline: Vec<u64>,
    /// Longest gaps between successful writes, longest first (failover mode only).
    pub gaps: Option<Vec<Gap>>,
}

impl Report {
    /// Builds the report of a run.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: &Settings,
        targets: Vec<String>,
        measured: Duration,
        stats: &WorkerStats,
        leader: LeaderWatch,
        timeline: Vec<u64>,
        gaps: Option<Vec<Gap>>,
    ) -> Report {
        Report {
            failover: settings.failover,
            protocol: settings.protocol.name(),
            endpoints: settings.endpoints.clone(),
            targets,
            spread: settings.target == Target::Spread,
            connections: settings.connections,
            pipeline: settings.pipeline,
            keyspace: settings.keyspace,
            key_bytes: settings.key_bytes,
            value_bytes: settings.value_bytes,
            read_fraction: settings.read_fraction,
            sequential: settings.sequential,
            warmup: settings.warmup,
            measured,
            reads_ok: stats.reads_ok,
            writes_ok: stats.writes_ok,
            latency: Latency::from_histogram(&stats.latency_us),
            errors: stats.errors,
            leader,
            timeline,
            gaps,
        }
    }

    pub fn ops(&self) -> u64 {
        self.reads_ok + self.writes_ok
    }

    /// Successful operations per second over the measured window (0 for an empty window).
    pub fn throughput_ops_per_sec(&self) -> f64 {
        let secs = self.measured.as_secs_f64();
        if secs > 0.0 {
            self.ops() as f64 / secs
        } else {
            0.0
        }
    }

    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "kvbench {} ({}): {} connection(s) x pipeline {} to {} ({}), keys {} x {} B{}, values {} B, reads {:.0} %",
            if self.failover { "failover" } else { "load" },
            self.protocol,
            self.connections,
            self.pipeline,
            self.targets.join(","),
            if self.spread { "spread" } else { "leader" },
            self.keyspace,
            self.key_bytes,
            if self.sequential { " in order" } else { "" },
            self.value_bytes,
            self.read_fraction * 100.0
        );
        let _ = writeln!(
            out,
            "ops       {} in {:.2} s (after {:.1} s warm-up): {:.0} ops/s ({} reads, {} writes)",
            self.ops(),
            self.measured.as_secs_f64(),
            self.warmup.as_secs_f64(),
            self.throughput_ops_per_sec(),
            self.reads_ok,
            self.writes_ok
        );
        let l = &self.latency;
        let _ = writeln!(
            out,
            "latency   p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  mean {:.3} ms",
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us),
            l.mean_us / 1000.0
        );
        let kinds: Vec<String> = ErrorKind::ALL
            .iter()
            .map(|kind| format!("{} {}", kind.name(), self.errors.get(*kind)))
            .collect();
        let _ = writeln!(
            out,
            "errors    {} ({})",
            self.errors.total(),
            kinds.join(", ")
        );
        let events: Vec<String> = self
            .leader
            .events
            .iter()
            .map(|e| format!("node {} term {} at {:.1} s", e.leader, e.term, e.at_secs))
            .collect();
        let _ = writeln!(
            out,
            "leaders   {} change(s) seen [{}]",
            self.leader.changes,
            events.join("; ")
        );
        if let Some(gaps) = &self.gaps {
            let listed: Vec<String> = gaps
                .iter()
                .map(|gap| {
                    format!(
                        "{:.0} ms at {:.2} s",
                        gap.length.as_secs_f64() * 1000.0,
                        gap.start.as_secs_f64()
                    )
                })
                .collect();
            let _ = writeln!(out, "write gaps longest first: {}", listed.join(", "));
        }
        out
    }

    /// The machine-readable summary; latencies in microseconds, times in seconds.
    pub fn to_json(&self) -> Value {
        let l = &self.latency;
        let errors: serde_json::Map<String, Value> = ErrorKind::ALL
            .iter()
            .map(|kind| (kind.name().to_owned(), json!(self.errors.get(*kind))))
            .chain(std::iter::once((
                "total".to_owned(),
                json!(self.errors.total()),
            )))
            .collect();
        let events: Vec<Value> = self
            .leader
            .events
            .iter()
            .map(|e| json!({"at_s": e.at_secs, "term": e.term.0, "leader_id": e.leader.0}))
            .collect();
        let gaps = self.gaps.as_ref().map(|gaps| {
            gaps.iter()
                .map(|gap| json!({"start_s": gap.start.as_secs_f64(), "length_ms": gap.length.as_secs_f64() * 1000.0}))
                .collect::<Vec<_>>()
        });
        json!({
            "tool": "kvbench",
            "mode": if self.failover { "failover" } else { "load" },
            "protocol": self.protocol,
            "endpoints": self.endpoints,
            "targets": self.targets,
            "spread": self.spread,
            "connections": self.connections,
            "pipeline": self.pipeline,
            "keyspace": self.keyspace,
            "key_bytes": self.key_bytes,
            "value_bytes": self.value_bytes,
            "reads": self.read_fraction,
            "sequential": self.sequential,
            "warmup_s": self.warmup.as_secs_f64(),
            "measured_s": self.measured.as_secs_f64(),
            "ops": self.ops(),
            "reads_ok": self.reads_ok,
            "writes_ok": self.writes_ok,
            "throughput_ops_s": self.throughput_ops_per_sec(),
            "latency_us": {
                "p50": l.p50_us, "p90": l.p90_us, "p99": l.p99_us, "p999": l.p999_us,
                "max": l.max_us, "mean": l.mean_us,
            },
            "errors": errors,
            "leader_changes": self.leader.changes,
            "leader_events": events,
            "status_polls_failed": self.leader.polls_failed,
            "timeline_ops_per_s": self.timeline,
            "longest_write_gap_ms": gaps.as_ref().and_then(|g| g.first().cloned()).map(|g| g["length_ms"].clone()),
            "longest_write_gap_start_s": gaps.as_ref().and_then(|g| g.first().cloned()).map(|g| g["start_s"].clone()),
            "write_gaps": gaps,
        })
    }

    /// [`Self::to_json`] as one line, no newline.
    pub fn json_line(&self) -> String {
        self.to_json().to_string()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::options::Options;
    use super::super::stats::new_histogram;
    use super::super::workload::Op;
    use super::*;

    fn settings(args: &[&str]) -> Settings {
        let options =
            Options::try_parse_from(std::iter::once("kvbench").chain(args.iter().copied()))
                .expect("valid options");
        Settings::from_options(&options).expect("valid settings")
    }

    /// 1000 operations with latencies 1..=1000 µs: percentiles are known exactly (within the
    /// histogram's 0.1 % resolution).
    fn stats_one_to_thousand() -> WorkerStats {
        let mut stats = WorkerStats::default();
        for us in 1..=1000u64 {
            let op = if us % 10 == 0 { Op::Set } else { Op::Get };
            stats.record_ok(op, Duration::from_micros(us));
        }
        stats.errors.add(ErrorKind::TryAgain, 3);
        stats.errors.add(ErrorKind::Connection, 1);
        stats
    }

    fn report() -> Report {
        Report::new(
            &settings(&[
                "--endpoints",
                "127.0.0.1:1,127.0.0.1:2",
                "--reads",
                "0.9",
                "-c",
                "4",
            ]),
            vec!["127.0.0.1:2".to_owned()],
            Duration::from_secs(4),
            &stats_one_to_thousand(),
            LeaderWatch::default(),
            vec![10, 250, 250, 250, 250],
            None,
        )
    }

    #[test]
    fn percentiles_and_throughput_follow_from_the_histogram() {
        let report = report();
        let l = report.latency;
        assert_eq!(
            (l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us),
            (500, 900, 990, 999, 1000)
        );
        assert!((l.mean_us - 500.5).abs() < 1.0, "mean {}", l.mean_us);
        assert_eq!(
            (report.reads_ok, report.writes_ok, report.ops()),
            (900, 100, 1000)
        );
        assert_eq!(report.throughput_ops_per_sec(), 250.0);
        assert_eq!(report.errors.total(), 4);
    }

    #[test]
    fn empty_run_reports_zeros_not_nan() {
        let latency = Latency::from_histogram(&new_histogram());
        assert_eq!(latency.max_us, 0);
        assert_eq!(latency.mean_us, 0.0);
        let mut report = report();
        report.measured = Duration::ZERO;
        assert_eq!(report.throughput_ops_per_sec(), 0.0);
    }

    #[test]
    fn json_line_is_one_line_of_valid_json_with_every_result() {
        let line = report().json_line();
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(value["tool"], "kvbench");
        assert_eq!(value["mode"], "load");
        assert_eq!(value["protocol"], "redis");
        assert_eq!(value["sequential"], false);
        assert_eq!(value["connections"], 4);
        assert_eq!(value["reads"], 0.9);
        assert_eq!(value["ops"], 1000);
        assert_eq!(value["throughput_ops_s"], 250.0);
        assert_eq!(value["latency_us"]["p50"], 500);
        assert_eq!(value["latency_us"]["p999"], 999);
        assert_eq!(value["latency_us"]["max"], 1000);
        assert_eq!(value["errors"]["tryagain"], 3);
        assert_eq!(value["errors"]["connection"], 1);
        assert_eq!(value["errors"]["total"], 4);
        assert_eq!(value["leader_changes"], 0);
        assert_eq!(value["timeline_ops_per_s"][1], 250);
        assert!(value["write_gaps"].is_null());
        assert_eq!(value["targets"][0], "127.0.0.1:2");
    }

    #[test]
    fn failover_report_names_the_longest_gap() {
        let mut report = report();
        report.failover = true;
        report.gaps = Some(vec![
            Gap {
                start: Duration::from_millis(3250),
                length: Duration::from_millis(420),
            },
            Gap {
                start: Duration::from_millis(1000),
                length: Duration::from_millis(3),
            },
        ]);
        let value = report.to_json();
        assert_eq!(value["mode"], "failover");
        assert_eq!(value["longest_write_gap_ms"], 420.0);
        assert_eq!(value["longest_write_gap_start_s"], 3.25);
        assert_eq!(value["write_gaps"].as_array().map(Vec::len), Some(2));
        let text = report.to_text();
        assert!(
            text.contains("write gaps longest first: 420 ms at 3.25 s, 3 ms at 1.00 s"),
            "{text}"
        );
        assert!(
            text.contains("errors    4 (tryagain 3, unknown 0, err 0, connection 1, timeout 0)"),
            "{text}"
        );
    }
}
