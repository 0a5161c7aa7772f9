//! The checkers: what the clients observed, judged against what the store promises.
//!
//! - [`register`]: linearizability per key ([`super::linear`]), with quick checks first that
//!   name the simplest explanation (a value nobody wrote, a value whose write was refused).
//! - [`counter`]: every INCR result and read lies within the bounds the acknowledgements allow,
//!   and no two INCRs returned the same value.
//! - [`set`]: no acknowledged element lost, none duplicated, none that was never sent or whose
//!   APPEND was refused, none read before it was sent.
//! - [`txn`]: every read of the bank sums to its constant total (no partial transfer seen),
//!   and each balance lies within the bounds the acknowledged and refused transfers allow.
//!
//! Every checker is a pure function of the history: no clock, no I/O. An anomaly names the
//! operations involved and a time window; the report turns that into a witness with the
//! faults that were active.

pub mod counter;
pub mod register;
pub mod set;
pub mod txn;

use super::history::{History, Workload};
use super::linear::Limits;

/// A violation of what the store promises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub workload: Workload,
    pub key: String,
    /// A short name: `not-linearizable`, `lost`, `duplicated`, `invented`, ...
    pub kind: &'static str,
    /// One sentence with the values.
    pub detail: String,
    /// The operations that show it (history indexes).
    pub ops: Vec<usize>,
    /// The time window (µs since start) the witness should show.
    pub window_us: (u64, u64),
}

/// The result of checking one history.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    pub anomalies: Vec<Anomaly>,
    /// Register keys whose search hit its bound (neither proven nor refuted).
    pub unknown_keys: Vec<String>,
}

/// Runs every checker over `history`.
pub fn check(history: &History, limits: Limits) -> Checked {
    let mut checked = Checked::default();
    for (key, ops) in history.by_key(Workload::Register) {
        match register::check_key(&key, &ops, limits) {
            register::KeyVerdict::Ok => {}
            register::KeyVerdict::Unknown => checked.unknown_keys.push(key),
            register::KeyVerdict::Anomaly(anomaly) => checked.anomalies.push(*anomaly),
        }
    }
    for (key, ops) in history.by_key(Workload::Counter) {
        checked.anomalies.extend(counter::check_key(&key, &ops));
    }
    for (key, ops) in history.by_key(Workload::Set) {
        checked.anomalies.extend(set::check_key(&key, &ops));
    }
    for (key, ops) in history.by_key(Workload::Txn) {
        checked.anomalies.extend(txn::check_bank(&key, &ops));
    }
    checked
}

/// The window that covers `ops` (by invocation and completion times).
pub fn window_of(ops: &[&super::history::Op]) -> (u64, u64) {
    let start = ops.iter().map(|op| op.invoke_us).min().unwrap_or(0);
    let end = ops.iter().map(|op| op.complete_us).max().unwrap_or(start);
    (start, end)
}
