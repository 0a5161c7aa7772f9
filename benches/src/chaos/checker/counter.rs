//! Counters: `INCR key` (which returns the new value) and `GET key` (nil counts as 0).
//!
//! For every acknowledged observation (a read's value, or an INCR's result) made over
//! `[invoke, complete]`:
//! - lower bound: the INCRs acknowledged before `invoke` have all happened (and an INCR's
//!   own result includes itself);
//! - upper bound: at most the INCRs invoked before `complete` that were not refused
//!   (acknowledged or indeterminate) can have happened.
//!
//! And no two INCRs return the same value (each adds exactly one). Refused INCRs
//! (`-TRYAGAIN`) never count: that is the server's claim. The final reads after healing are
//! observations like any other, so the final value lies within
//! [acknowledged, acknowledged + indeterminate].

use std::collections::BTreeMap;

use super::super::history::{Call, Op, Outcome, Ret};
use super::{window_of, Anomaly};

/// Checks one counter key; at most one anomaly of each kind.
pub fn check_key(key: &str, ops: &[&Op]) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    let incrs: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| op.call == Call::Incr)
        .collect();
    // Sorted completion times of acknowledged INCRs, and invocation times of INCRs that may
    // have happened.
    let mut acked_complete: Vec<u64> = incrs
        .iter()
        .filter(|op| op.outcome.is_ok())
        .map(|op| op.complete_us)
        .collect();
    acked_complete.sort_unstable();
    let mut possible_invoke: Vec<u64> = incrs
        .iter()
        .filter(|op| !matches!(op.outcome, Outcome::Failed(_)))
        .map(|op| op.invoke_us)
        .collect();
    possible_invoke.sort_unstable();
    if let Some(anomaly) = check_key_duplicates(key, &incrs) {
        anomalies.push(anomaly);
    }
    for op in ops {
        let Outcome::Ok(Ret::Counter(value)) = op.outcome else {
            continue;
        };
        let acked_before = acked_complete.partition_point(|&t| t < op.invoke_us) as i64;
        let own = i64::from(op.call == Call::Incr);
        let lower = acked_before + own;
        let upper = possible_invoke.partition_point(|&t| t <= op.complete_us) as i64;
        if value < lower || value > upper {
            let kind = if value < lower {
                "lost-increment"
            } else {
                "phantom-increment"
            };
            let what = if op.call == Call::Incr {
                "INCR"
            } else {
                "read"
            };
            anomalies.push(Anomaly {
                workload: op.workload,
                key: key.to_owned(),
                kind,
                detail: format!(
                    "{what} #{} saw {value}, outside [{lower}, {upper}]: {lower} increments \
                     were acknowledged before it began, at most {upper} not refused had begun \
                     before it ended",
                    op.index
                ),
                ops: vec![op.index],
                window_us: (op.invoke_us.saturating_sub(2_000_000), op.complete_us),
            });
            break;
        }
    }
    anomalies
}

fn check_key_duplicates(key: &str, incrs: &[&Op]) -> Option<Anomaly> {
    let mut by_value: BTreeMap<i64, &Op> = BTreeMap::new();
    for op in incrs {
        if let Outcome::Ok(Ret::Counter(value)) = op.outcome {
            if let Some(first) = by_value.insert(value, op) {
                let involved = [first, *op];
                return Some(Anomaly {
                    workload: op.workload,
                    key: key.to_owned(),
                    kind: "duplicate-increment",
                    detail: format!(
                        "INCRs #{} and #{} both returned {value}",
                        first.index, op.index
                    ),
                    ops: vec![first.index, op.index],
                    window_us: window_of(&involved),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::super::history::{Phase, Workload};
    use super::*;

    fn op(index: usize, call: Call, span: (u64, u64), outcome: Outcome) -> Op {
        Op {
            index,
            process: index as u64,
            workload: Workload::Counter,
            key: "c".into(),
            node: 1,
            call,
            invoke_us: span.0,
            complete_us: span.1,
            outcome,
            phase: Phase::Main,
        }
    }

    fn incr(index: usize, span: (u64, u64), value: i64) -> Op {
        op(index, Call::Incr, span, Outcome::Ok(Ret::Counter(value)))
    }

    fn read(index: usize, span: (u64, u64), value: i64) -> Op {
        op(index, Call::Read, span, Outcome::Ok(Ret::Counter(value)))
    }

    fn kinds(ops: &[Op]) -> Vec<&'static str> {
        let refs: Vec<&Op> = ops.iter().collect();
        check_key("c", &refs).iter().map(|a| a.kind).collect()
    }

    #[test]
    fn table_of_counter_histories() {
        let unknown = |i, span| op(i, Call::Incr, span, Outcome::Indeterminate("t".into()));
        let refused = |i, span| op(i, Call::Incr, span, Outcome::Failed("TRYAGAIN".into()));
        let cases: Vec<(&str, Vec<Op>, Vec<&str>)> = vec![
            (
                "sequential increments and a read",
                vec![incr(0, (0, 1), 1), incr(1, (2, 3), 2), read(2, (4, 5), 2)],
                vec![],
            ),
            (
                "a read that misses an acknowledged increment",
                vec![incr(0, (0, 1), 1), incr(1, (2, 3), 2), read(2, (4, 5), 1)],
                vec!["lost-increment"],
            ),
            (
                "an indeterminate increment may count",
                vec![incr(0, (0, 1), 1), unknown(1, (2, 3)), read(2, (4, 5), 2)],
                vec![],
            ),
            (
                "an indeterminate increment may not count",
                vec![incr(0, (0, 1), 1), unknown(1, (2, 3)), read(2, (4, 5), 1)],
                vec![],
            ),
            (
                "a refused increment must not count",
                vec![incr(0, (0, 1), 1), refused(1, (2, 3)), read(2, (4, 5), 2)],
                vec!["phantom-increment"],
            ),
            (
                "a read cannot see an increment invoked after it",
                vec![read(0, (0, 1), 1), incr(1, (2, 3), 1)],
                vec!["phantom-increment"],
            ),
            (
                "two increments returning the same value",
                vec![incr(0, (0, 10), 1), incr(1, (0, 10), 1)],
                vec!["duplicate-increment"],
            ),
            (
                "concurrent increments in either order",
                vec![
                    incr(0, (0, 10), 2),
                    incr(1, (0, 10), 1),
                    read(2, (11, 12), 2),
                ],
                vec![],
            ),
        ];
        for (name, ops, expected) in cases {
            assert_eq!(kinds(&ops), expected, "{name}");
        }
    }
}
