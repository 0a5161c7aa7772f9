//! What the workers count while the run goes on.
//!
//! Two kinds of state: [`Live`] is shared (atomics only, so no worker ever waits on another)
//! and feeds the progress line and the throughput timeline; [`WorkerStats`] belongs to one
//! worker (its own HDR histogram and error counts for the measured window) and is merged once,
//! at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use kvnode::resp::Frame;
use tokio::time::Instant;

use super::workload::Op;

/// Largest latency the histogram holds, in microseconds (larger values are clamped to it).
/// The per-request timeout is capped below it.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant decimal digits of the histogram: 0.1 % resolution.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

const _: () = assert!(super::options::TIMEOUT_MS_MAX * 1000 < LATENCY_US_MAX);

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `-TRYAGAIN`: not applied, safe to retry.
    TryAgain,
    /// `-UNKNOWN`: may or may not have been applied.
    Unknown,
    /// Any other error reply, or a reply of the wrong type.
    Err,
    /// Connect, read or write failed, the server closed, or sent bytes that are not RESP.
    Connection,
    /// No reply within the per-request timeout.
    Timeout,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::TryAgain,
        ErrorKind::Unknown,
        ErrorKind::Err,
        ErrorKind::Connection,
        ErrorKind::Timeout,
    ];

    /// The name in the text and JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::TryAgain => "tryagain",
            ErrorKind::Unknown => "unknown",
            ErrorKind::Err => "err",
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
        }
    }

    fn index(self) -> usize {
        ErrorKind::ALL
            .iter()
            .position(|kind| *kind == self)
            .expect("ALL lists every kind")
    }
}

/// Judges a reply: `+OK` for SET, an array of integers for a MULTI/INCR/EXEC write, a
/// bulk or nil for GET.
///
/// # Errors
/// The [`ErrorKind`] the reply counts as.
pub fn classify_reply(op: Op, reply: &Frame) -> Result<(), ErrorKind> {
    match (op, reply) {
        (_, Frame::Error(message)) => Err(match message.split(' ').next() {
            Some("TRYAGAIN") => ErrorKind::TryAgain,
            Some("UNKNOWN") => ErrorKind::Unknown,
            _ => ErrorKind::Err,
        }),
        (Op::Set, Frame::Simple(text)) if text == "OK" => Ok(()),
        (Op::Set, Frame::Array(items))
            if items.iter().all(|item| matches!(item, Frame::Integer(_))) =>
        {
            Ok(())
        }
        (Op::Get, Frame::Bulk(_) | Frame::Null) => Ok(()),
        _ => Err(ErrorKind::Err),
    }
}

/// Error counts by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; 5]);

impl ErrorCounts {
    pub fn add(&mut self, kind: ErrorKind, count: u64) {
        self.0[kind.index()] += count;
    }

    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.0[kind.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        for kind in ErrorKind::ALL {
            self.add(kind, other.get(kind));
        }
    }
}

/// A fresh latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant bounds: 1 <= low, high >= 2 * low, digits <= 5")
}

/// One worker's results for the measured window.
#[derive(Clone, Debug)]
pub struct WorkerStats {
    pub latency_us: Histogram<u64>,
    pub reads_ok: u64,
    pub writes_ok: u64,
    pub errors: ErrorCounts,
}

impl Default for WorkerStats {
    fn default() -> WorkerStats {
        WorkerStats {
            latency_us: new_histogram(),
            reads_ok: 0,
            writes_ok: 0,
            errors: ErrorCounts::default(),
        }
    }
}

impl WorkerStats {
    pub fn record_ok(&mut self, op: Op, latency: Duration) {
        self.latency_us.saturating_record(latency_us(latency));
        match op {
            Op::Get => self.reads_ok += 1,
            Op::Set => self.writes_ok += 1,
        }
    }

    pub fn merge(&mut self, other: &WorkerStats) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms share their bounds, so adding cannot fail");
        self.reads_ok += other.reads_ok;
        self.writes_ok += other.writes_ok;
        self.errors.merge(&other.errors);
    }
}

/// A latency in whole microseconds, at least 1 (the histogram's lowest value).
pub fn latency_us(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Counters every worker updates, read by the progress line and the report.
#[derive(Debug)]
pub struct Live {
    pub started: Instant,
    pub warmup: Duration,
    /// Successful operations, warm-up included.
    pub ops_ok: AtomicU64,
    /// Sum of their latencies, for the progress line's mean.
    pub latency_sum_us: AtomicU64,
    /// Failed operations, warm-up included.
    pub errors: AtomicU64,
    /// Successful operations in the measured window, for `--ops`.
    pub measured_ops: AtomicU64,
    /// Successful operations per second of the run (index = whole seconds since start).
    /// Its length covers warm-up plus duration; completions past the end land in the last slot.
    pub timeline: Vec<AtomicU64>,
    /// Set when the run must end (deadline or `--ops` reached).
    pub stop: AtomicBool,
    /// When `--ops` was reached, in microseconds since the start (0: not reached).
    pub stopped_at_us: AtomicU64,
    /// Leader changes seen so far, for the progress line.
    pub leader_changes: AtomicU64,
    /// The next key index with `--sequential` (taken modulo the keyspace).
    pub next_key: AtomicU64,
}

impl Live {
    pub fn new(started: Instant, warmup: Duration, total: Duration) -> Live {
        let seconds = usize::try_from(total.as_secs()).expect("run length is capped at a day") + 1;
        Live {
            started,
            warmup,
            ops_ok: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            measured_ops: AtomicU64::new(0),
            timeline: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
            stopped_at_us: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            next_key: AtomicU64::new(0),
        }
    }

    /// True once the warm-up is over at `now`.
    pub fn is_measuring(&self, now: Instant) -> bool {
        now.duration_since(self.started) >= self.warmup
    }

    /// Counts `count` successes finishing at `now`, with their summed latency.
    pub fn record_ok(&self, now: Instant, count: u64, latency_sum: Duration) {
        self.ops_ok.fetch_add(count, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(latency_us(latency_sum), Ordering::Relaxed);
        let second =
            usize::try_from(now.duration_since(self.started).as_secs()).unwrap_or(usize::MAX);
        let slot = second.min(self.timeline.len() - 1);
        self.timeline[slot].fetch_add(count, Ordering::Relaxed);
    }

    pub fn timeline_snapshot(&self) -> Vec<u64> {
        self.timeline
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn replies_are_classified_by_kind() {
        let cases = [
            (Op::Set, Frame::ok(), Ok(())),
            (Op::Get, Frame::Bulk(Bytes::from_static(b"v")), Ok(())),
            (Op::Get, Frame::Null, Ok(())),
            (
                Op::Set,
                Frame::error("TRYAGAIN no leader; the request was not applied"),
                Err(ErrorKind::TryAgain),
            ),
            (
                Op::Get,
                Frame::error("UNKNOWN leader lost; may or may not"),
                Err(ErrorKind::Unknown),
            ),
            (
                Op::Set,
                Frame::error("ERR wrong number of arguments"),
                Err(ErrorKind::Err),
            ),
            (Op::Set, Frame::error("NOTLEADER 2"), Err(ErrorKind::Err)),
            (Op::Set, Frame::Integer(1), Err(ErrorKind::Err)),
            (Op::Get, Frame::ok(), Err(ErrorKind::Err)),
        ];
        for (op, reply, expected) in cases {
            assert_eq!(classify_reply(op, &reply), expected, "{op:?} {reply:?}");
        }
    }

    #[test]
    fn worker_stats_merge_adds_everything() {
        let mut a = WorkerStats::default();
        a.record_ok(Op::Set, Duration::from_micros(100));
        a.errors.add(ErrorKind::TryAgain, 2);
        let mut b = WorkerStats::default();
        b.record_ok(Op::Get, Duration::from_micros(300));
        b.record_ok(Op::Get, Duration::ZERO);
        b.errors.add(ErrorKind::Timeout, 1);
        a.merge(&b);
        assert_eq!((a.reads_ok, a.writes_ok), (2, 1));
        assert_eq!(a.latency_us.len(), 3);
        assert_eq!(a.latency_us.min(), 1, "zero latency is recorded as 1 µs");
        assert_eq!(
            (
                a.errors.get(ErrorKind::TryAgain),
                a.errors.get(ErrorKind::Timeout)
            ),
            (2, 1)
        );
        assert_eq!(a.errors.total(), 3);
    }

    #[test]
    fn timeline_slots_by_second_and_clamps_late_completions() {
        let started = Instant::now();
        let live = Live::new(started, Duration::from_secs(1), Duration::from_secs(2));
        live.record_ok(started, 1, Duration::from_micros(5));
        live.record_ok(
            started + Duration::from_millis(1500),
            2,
            Duration::from_micros(5),
        );
        live.record_ok(
            started + Duration::from_secs(60),
            4,
            Duration::from_micros(5),
        );
        assert_eq!(live.timeline_snapshot(), vec![1, 2, 4]);
        assert!(!live.is_measuring(started + Duration::from_millis(999)));
        assert!(live.is_measuring(started + Duration::from_secs(1)));
    }
}
