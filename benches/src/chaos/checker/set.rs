//! Sets: `APPEND key "e,"` of elements unique in the run, read back whole with `GET key`.
//!
//! Each acknowledged read over `[invoke, complete]` must:
//! - hold no element twice (`duplicated`);
//! - hold only elements some APPEND sent to this key (`invented`), whose APPEND was not
//!   refused (`refused-append-visible`) and began before the read ended (`from-the-future`);
//! - hold every element whose APPEND was acknowledged before the read began (`lost`).
//!
//! The final reads through every node after healing are reads like any other, so every
//! acknowledged element must be in each of them.

use std::collections::{BTreeMap, BTreeSet};

use super::super::history::{Call, Op, Outcome, Ret};
use super::{window_of, Anomaly};

/// Checks one set key; at most one anomaly per read, and at most [`ANOMALIES_MAX`] in all.
pub fn check_key(key: &str, ops: &[&Op]) -> Vec<Anomaly> {
    let appends: BTreeMap<u64, &Op> = ops
        .iter()
        .filter_map(|op| match op.call {
            Call::Append(element) => Some((element, *op)),
            _ => None,
        })
        .collect();
    let mut anomalies = Vec::new();
    for read in ops {
        let Outcome::Ok(Ret::Elements(elements)) = &read.outcome else {
            continue;
        };
        if let Some(anomaly) = check_key_read(key, &appends, read, elements) {
            anomalies.push(anomaly);
            if anomalies.len() >= ANOMALIES_MAX {
                break;
            }
        }
    }
    anomalies
}

/// Most anomalies reported per key (one lost element is usually seen by many reads).
pub const ANOMALIES_MAX: usize = 3;

fn check_key_read(
    key: &str,
    appends: &BTreeMap<u64, &Op>,
    read: &Op,
    elements: &[u64],
) -> Option<Anomaly> {
    let anomaly = |kind, detail: String, other: Option<&Op>| {
        let mut involved = vec![read];
        involved.extend(other);
        Anomaly {
            workload: read.workload,
            key: key.to_owned(),
            kind,
            detail,
            ops: involved.iter().map(|op| op.index).collect(),
            window_us: window_of(&involved),
        }
    };
    let mut seen = BTreeSet::new();
    for element in elements {
        if !seen.insert(*element) {
            return Some(anomaly(
                "duplicated",
                format!("read #{} holds element {element} twice", read.index),
                appends.get(element).copied(),
            ));
        }
        let Some(append) = appends.get(element) else {
            return Some(anomaly(
                "invented",
                format!(
                    "read #{} holds element {element}, never appended to this key",
                    read.index
                ),
                None,
            ));
        };
        if let Outcome::Failed(why) = &append.outcome {
            return Some(anomaly(
                "refused-append-visible",
                format!(
                    "read #{} holds element {element}, whose APPEND #{} was answered {why:?} \
                     (certainly not applied)",
                    read.index, append.index
                ),
                Some(append),
            ));
        }
        if append.invoke_us > read.complete_us {
            return Some(anomaly(
                "from-the-future",
                format!(
                    "read #{} holds element {element}, whose APPEND #{} began after the read \
                     ended",
                    read.index, append.index
                ),
                Some(append),
            ));
        }
    }
    let lost: Vec<&Op> = appends
        .iter()
        .filter(|(element, append)| {
            append.outcome.is_ok()
                && append.complete_us < read.invoke_us
                && !seen.contains(*element)
        })
        .map(|(_, append)| *append)
        .collect();
    let first = lost.first()?;
    Some(anomaly(
        "lost",
        format!(
            "read #{} misses {} element(s) acknowledged before it began, e.g. {:?} (#{})",
            read.index,
            lost.len(),
            first.call,
            first.index
        ),
        Some(first),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::super::history::{Phase, Workload};
    use super::*;

    fn op(index: usize, call: Call, span: (u64, u64), outcome: Outcome) -> Op {
        Op {
            index,
            process: index as u64,
            workload: Workload::Set,
            key: "s".into(),
            node: 1,
            call,
            invoke_us: span.0,
            complete_us: span.1,
            outcome,
            phase: Phase::Main,
        }
    }

    fn append(index: usize, element: u64, span: (u64, u64), outcome: Outcome) -> Op {
        op(index, Call::Append(element), span, outcome)
    }

    fn read(index: usize, span: (u64, u64), elements: &[u64]) -> Op {
        op(
            index,
            Call::Read,
            span,
            Outcome::Ok(Ret::Elements(elements.to_vec())),
        )
    }

    fn kinds(ops: &[Op]) -> Vec<&'static str> {
        let refs: Vec<&Op> = ops.iter().collect();
        check_key("s", &refs).iter().map(|a| a.kind).collect()
    }

    #[test]
    fn table_of_set_histories() {
        let ok = || Outcome::Ok(Ret::Done);
        let unknown = || Outcome::Indeterminate("timeout".into());
        let refused = || Outcome::Failed("TRYAGAIN".into());
        let cases: Vec<(&str, Vec<Op>, Vec<&str>)> = vec![
            (
                "everything acknowledged is read",
                vec![
                    append(0, 1, (0, 1), ok()),
                    append(1, 2, (2, 3), ok()),
                    read(2, (4, 5), &[1, 2]),
                ],
                vec![],
            ),
            (
                "an acknowledged element is missing",
                vec![
                    append(0, 1, (0, 1), ok()),
                    append(1, 2, (2, 3), ok()),
                    read(2, (4, 5), &[2]),
                ],
                vec!["lost"],
            ),
            (
                "a concurrent append may be missing",
                vec![append(0, 1, (0, 10), ok()), read(1, (4, 5), &[])],
                vec![],
            ),
            (
                "an indeterminate element may appear or not",
                vec![
                    append(0, 1, (0, 1), unknown()),
                    read(1, (4, 5), &[1]),
                    read(2, (6, 7), &[1]),
                ],
                vec![],
            ),
            (
                "a refused element must not appear",
                vec![append(0, 1, (0, 1), refused()), read(1, (4, 5), &[1])],
                vec!["refused-append-visible"],
            ),
            (
                "an element twice",
                vec![append(0, 1, (0, 1), ok()), read(1, (4, 5), &[1, 1])],
                vec!["duplicated"],
            ),
            (
                "an element never sent",
                vec![read(0, (4, 5), &[7])],
                vec!["invented"],
            ),
            (
                "an element appended after the read ended",
                vec![read(0, (0, 1), &[3]), append(1, 3, (2, 3), ok())],
                vec!["from-the-future"],
            ),
        ];
        for (name, ops, expected) in cases {
            assert_eq!(kinds(&ops), expected, "{name}");
        }
    }
}
