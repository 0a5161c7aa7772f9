//! Registers: `SET key v` with values unique in the run, `GET key`, checked for
//! linearizability per key.
//!
//! Before the search: a write answered `-TRYAGAIN` is dropped (the server says it did not
//! happen, so a read that returns its value is a violation, reported as such); failed and
//! indeterminate reads are dropped (a read changes nothing); an indeterminate write whose value
//! no read returned is dropped too, which is sound: if a linearization includes it, removing it
//! leaves every read valid, because no read sits between it and the next write.

use std::collections::{BTreeMap, BTreeSet};

use super::super::history::{Call, Op, Outcome, Ret};
use super::super::linear::{self, Limits, Operation, RegisterInput, RegisterModel, Verdict};
use super::{window_of, Anomaly};

/// The verdict on one key.
#[derive(Debug)]
pub enum KeyVerdict {
    Ok,
    Unknown,
    Anomaly(Box<Anomaly>),
}

/// Checks one key's operations.
pub fn check_key(key: &str, ops: &[&Op], limits: Limits) -> KeyVerdict {
    let read_values: BTreeSet<u64> = ops
        .iter()
        .filter_map(|op| match (&op.call, &op.outcome) {
            (Call::Read, Outcome::Ok(Ret::Register(Some(v)))) => Some(*v),
            _ => None,
        })
        .collect();
    if let Some(anomaly) = check_key_read_sources(key, ops, &read_values) {
        return KeyVerdict::Anomaly(Box::new(anomaly));
    }
    let kept: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| match (&op.call, &op.outcome) {
            (_, Outcome::Failed(_)) => false,
            (Call::Read, Outcome::Ok(_)) => true,
            (Call::Read, _) => false,
            (Call::Write(_), Outcome::Ok(_)) => true,
            (Call::Write(v), Outcome::Indeterminate(_)) => read_values.contains(v),
            _ => false,
        })
        .collect();
    let operations: Vec<Operation<RegisterInput, Option<u64>>> =
        kept.iter().map(|op| to_operation(op)).collect();
    match linear::check(&RegisterModel, &operations, limits) {
        Verdict::Linearizable => KeyVerdict::Ok,
        Verdict::Unknown { .. } => KeyVerdict::Unknown,
        Verdict::Violation(failure) => {
            let stuck = kept[failure.stuck];
            let last = failure.prefix.last().map(|&i| kept[i]);
            let mut involved: Vec<&Op> = vec![stuck];
            involved.extend(last);
            // The write whose value the stuck read returned, if any.
            if let Outcome::Ok(Ret::Register(Some(v))) = &stuck.outcome {
                involved.extend(kept.iter().copied().filter(|op| op.call == Call::Write(*v)));
            }
            let state = match failure.state {
                Some(v) => v.to_string(),
                None => "nil".to_owned(),
            };
            KeyVerdict::Anomaly(Box::new(Anomaly {
                workload: stuck.workload,
                key: key.to_owned(),
                kind: "not-linearizable",
                detail: format!(
                    "after linearizing {} operations (register = {state}), no order of the \
                     pending operations explains #{}: {stuck}",
                    failure.prefix.len(),
                    stuck.index
                ),
                ops: involved.iter().map(|op| op.index).collect(),
                window_us: window_of(&involved),
            }))
        }
    }
}

/// A read must return a value some write that was not refused wrote.
fn check_key_read_sources(key: &str, ops: &[&Op], read_values: &BTreeSet<u64>) -> Option<Anomaly> {
    let mut writes: BTreeMap<u64, &Op> = BTreeMap::new();
    for op in ops {
        if let Call::Write(v) = op.call {
            writes.insert(v, op);
        }
    }
    for v in read_values {
        let reader = ops
            .iter()
            .copied()
            .find(|op| op.call == Call::Read && op.outcome == Outcome::Ok(Ret::Register(Some(*v))))
            .expect("the value came from a read");
        let (kind, detail, involved) = match writes.get(v) {
            None => (
                "invented",
                format!(
                    "read #{} returned {v}, a value never written to this key",
                    reader.index
                ),
                vec![reader],
            ),
            Some(write) => match &write.outcome {
                Outcome::Failed(why) => (
                    "refused-write-visible",
                    format!(
                        "read #{} returned {v}, written by #{} which was answered {why:?} \
                         (certainly not applied)",
                        reader.index, write.index
                    ),
                    vec![reader, *write],
                ),
                _ => continue,
            },
        };
        return Some(Anomaly {
            workload: reader.workload,
            key: key.to_owned(),
            kind,
            detail,
            ops: involved.iter().map(|op| op.index).collect(),
            window_us: window_of(&involved),
        });
    }
    None
}

fn to_operation(op: &Op) -> Operation<RegisterInput, Option<u64>> {
    let (input, output) = match (&op.call, &op.outcome) {
        (Call::Write(v), Outcome::Ok(_)) => (RegisterInput::Write(*v), Some(None)),
        (Call::Write(v), _) => (RegisterInput::Write(*v), None),
        (Call::Read, Outcome::Ok(Ret::Register(seen))) => (RegisterInput::Read, Some(*seen)),
        other => unreachable!("filtered out before the search: {other:?}"),
    };
    Operation {
        input,
        output,
        call_us: op.invoke_us,
        return_us: op.return_us(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::history::{Phase, Workload};
    use super::*;

    fn op(index: usize, call: Call, span: (u64, u64), outcome: Outcome) -> Op {
        Op {
            index,
            process: index as u64,
            workload: Workload::Register,
            key: "r".into(),
            node: 1,
            call,
            invoke_us: span.0,
            complete_us: span.1,
            outcome,
            phase: Phase::Main,
        }
    }

    fn read(index: usize, span: (u64, u64), seen: Option<u64>) -> Op {
        op(index, Call::Read, span, Outcome::Ok(Ret::Register(seen)))
    }

    fn verdict(ops: &[Op]) -> KeyVerdict {
        let refs: Vec<&Op> = ops.iter().collect();
        check_key("r", &refs, Limits::default())
    }

    fn kind(ops: &[Op]) -> Option<&'static str> {
        match verdict(ops) {
            KeyVerdict::Anomaly(a) => Some(a.kind),
            KeyVerdict::Ok => None,
            KeyVerdict::Unknown => Some("unknown"),
        }
    }

    #[test]
    fn a_refused_write_must_never_be_seen() {
        let ops = [
            op(
                0,
                Call::Write(5),
                (0, 10),
                Outcome::Failed("TRYAGAIN".into()),
            ),
            read(1, (20, 30), Some(5)),
        ];
        assert_eq!(kind(&ops), Some("refused-write-visible"));
    }

    #[test]
    fn a_value_never_written_is_invented() {
        assert_eq!(kind(&[read(0, (0, 10), Some(9))]), Some("invented"));
    }

    #[test]
    fn an_unread_indeterminate_write_is_pruned_and_a_read_one_kept() {
        let unknown = |i, v| {
            op(
                i,
                Call::Write(v),
                (5, 6),
                Outcome::Indeterminate("t".into()),
            )
        };
        // The pruned write cannot explain anything; the history stays linearizable.
        let ops = [
            op(0, Call::Write(1), (0, 10), Outcome::Ok(Ret::Done)),
            unknown(1, 2),
            read(2, (20, 30), Some(1)),
        ];
        assert_eq!(kind(&ops), None);
        // A stale read after an indeterminate write was seen is still caught.
        let ops = [
            op(0, Call::Write(1), (0, 10), Outcome::Ok(Ret::Done)),
            unknown(1, 2),
            read(2, (20, 30), Some(2)),
            read(3, (40, 50), Some(1)),
        ];
        assert_eq!(kind(&ops), Some("not-linearizable"));
    }

    #[test]
    fn stale_read_is_reported_with_its_operations() {
        let ops = [
            op(0, Call::Write(1), (0, 10), Outcome::Ok(Ret::Done)),
            op(1, Call::Write(2), (20, 30), Outcome::Ok(Ret::Done)),
            read(2, (40, 50), Some(1)),
        ];
        let KeyVerdict::Anomaly(anomaly) = verdict(&ops) else {
            panic!("stale read accepted");
        };
        assert_eq!(anomaly.kind, "not-linearizable");
        assert!(anomaly.ops.contains(&2), "{anomaly:?}");
        assert!(
            anomaly.detail.contains("register = 2"),
            "{}",
            anomaly.detail
        );
        assert_eq!(anomaly.window_us, (0, 50));
    }
}
