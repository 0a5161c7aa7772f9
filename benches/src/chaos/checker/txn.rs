//! The bank (the txn workload): transfers in `MULTI`/`EXEC`, reads of every account at one
//! read point.
//!
//! - **Atomicity:** every transfer keeps the total, and the accounts start absent (0), so
//!   every acknowledged read must sum to 0. A read that does not has seen part of a
//!   transfer (or money made or lost). This holds whatever became of indeterminate
//!   transfers: each either happened whole or not at all.
//! - **Bounds per account**, as for counters: for a read over `[invoke, complete]`, the
//!   transfers acknowledged before `invoke` have happened, and at most those invoked before
//!   `complete` and not refused can have. So account k's balance lies within
//!   `[in(acked) - out(possible), in(possible) - out(acked)]`. Outside it, an acknowledged
//!   transfer was lost, or a refused (`-TRYAGAIN`) or later one was applied.
//!
//! Pure; one pass per account with prefix sums, so a long run checks in linear-log time.

use super::super::history::{Call, Op, Outcome, Ret};
use super::Anomaly;

/// Money moving into or out of one account, by time: (time µs, amount), sorted by time,
/// with running sums.
struct Flow {
    times: Vec<u64>,
    /// `sums[i]`: the amounts of the first `i` entries.
    sums: Vec<i64>,
}

impl Flow {
    fn new(mut entries: Vec<(u64, i64)>) -> Flow {
        entries.sort_unstable();
        let mut sums = Vec::with_capacity(entries.len() + 1);
        sums.push(0);
        for (_, amount) in &entries {
            sums.push(sums.last().expect("starts with 0") + amount);
        }
        Flow {
            times: entries.into_iter().map(|(t, _)| t).collect(),
            sums,
        }
    }

    /// The amounts with time strictly before `t`.
    fn before(&self, t: u64) -> i64 {
        self.sums[self.times.partition_point(|&x| x < t)]
    }

    /// The amounts with time at or before `t`.
    fn until(&self, t: u64) -> i64 {
        self.sums[self.times.partition_point(|&x| x <= t)]
    }
}

/// Checks the bank (every operation of the txn workload); at most one anomaly of each kind.
pub fn check_bank(key: &str, ops: &[&Op]) -> Vec<Anomaly> {
    let reads: Vec<(&Op, &Vec<i64>)> = ops
        .iter()
        .filter_map(|op| match &op.outcome {
            Outcome::Ok(Ret::Balances(balances)) => Some((*op, balances)),
            _ => None,
        })
        .collect();
    let accounts = reads.iter().map(|(_, b)| b.len()).max().unwrap_or(0);
    let mut anomalies = Vec::new();
    let unbalanced: Vec<&(&Op, &Vec<i64>)> = reads
        .iter()
        .filter(|(_, b)| b.iter().sum::<i64>() != 0)
        .collect();
    if let Some((op, balances)) = unbalanced.first() {
        anomalies.push(Anomaly {
            workload: op.workload,
            key: key.to_owned(),
            kind: "partial-transfer",
            detail: format!(
                "read #{} saw balances {balances:?} summing to {}, not 0: part of a transfer \
                 was visible ({} such reads)",
                op.index,
                balances.iter().sum::<i64>(),
                unbalanced.len()
            ),
            ops: vec![op.index],
            window_us: (op.invoke_us.saturating_sub(2_000_000), op.complete_us),
        });
    }
    for account in 0..accounts {
        let flows = flows_of(ops, account);
        let bad = reads.iter().find_map(|(op, balances)| {
            let balance = *balances.get(account)?;
            let (lower, upper) = flows.bounds(op);
            (balance < lower || balance > upper).then_some((op, balance, lower, upper))
        });
        if let Some((op, balance, lower, upper)) = bad {
            anomalies.push(Anomaly {
                workload: op.workload,
                key: key.to_owned(),
                kind: "transfer-out-of-bounds",
                detail: format!(
                    "read #{} saw account {account} at {balance}, outside [{lower}, {upper}]: \
                     an acknowledged transfer was lost, or a refused or later one applied",
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

/// One account's flows: in and out, acknowledged (by completion) and possible (not refused,
/// by invocation).
struct AccountFlows {
    in_acked: Flow,
    out_acked: Flow,
    in_possible: Flow,
    out_possible: Flow,
}

impl AccountFlows {
    /// The balance range a read over `[op.invoke_us, op.complete_us]` may see.
    fn bounds(&self, op: &Op) -> (i64, i64) {
        let lower = self.in_acked.before(op.invoke_us) - self.out_possible.until(op.complete_us);
        let upper = self.in_possible.until(op.complete_us) - self.out_acked.before(op.invoke_us);
        (lower, upper)
    }
}

fn flows_of(ops: &[&Op], account: usize) -> AccountFlows {
    let mut flows: [Vec<(u64, i64)>; 4] = Default::default();
    for op in ops {
        let Call::Transfer { from, to, amount } = op.call else {
            continue;
        };
        let amount = i64::try_from(amount).unwrap_or(i64::MAX);
        let refused = matches!(op.outcome, Outcome::Failed(_));
        for (side, touches) in [(0, to), (1, from)] {
            if usize::try_from(touches).ok() != Some(account) {
                continue;
            }
            if op.outcome.is_ok() {
                flows[side].push((op.complete_us, amount));
            }
            if !refused {
                flows[2 + side].push((op.invoke_us, amount));
            }
        }
    }
    let [in_acked, out_acked, in_possible, out_possible] = flows.map(Flow::new);
    AccountFlows {
        in_acked,
        out_acked,
        in_possible,
        out_possible,
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
            workload: Workload::Txn,
            key: "t".into(),
            node: 1,
            call,
            invoke_us: span.0,
            complete_us: span.1,
            outcome,
            phase: Phase::Main,
        }
    }

    fn transfer(
        index: usize,
        from: u32,
        to: u32,
        amount: u64,
        span: (u64, u64),
        outcome: Outcome,
    ) -> Op {
        op(index, Call::Transfer { from, to, amount }, span, outcome)
    }

    fn read(index: usize, span: (u64, u64), balances: &[i64]) -> Op {
        op(
            index,
            Call::Read,
            span,
            Outcome::Ok(Ret::Balances(balances.to_vec())),
        )
    }

    fn kinds(ops: &[Op]) -> Vec<&'static str> {
        let refs: Vec<&Op> = ops.iter().collect();
        check_bank("t", &refs).iter().map(|a| a.kind).collect()
    }

    #[test]
    fn table_of_bank_histories() {
        let done = || Outcome::Ok(Ret::Done);
        let unknown = || Outcome::Indeterminate("timed out".into());
        let refused = || Outcome::Failed("TRYAGAIN".into());
        let cases: Vec<(&str, Vec<Op>, Vec<&str>)> = vec![
            (
                "a transfer, then a read that sees it",
                vec![
                    transfer(0, 0, 1, 5, (0, 1), done()),
                    read(1, (2, 3), &[-5, 5, 0]),
                ],
                vec![],
            ),
            (
                "a read concurrent with a transfer may see it or not",
                vec![
                    transfer(0, 0, 1, 5, (0, 10), done()),
                    read(1, (2, 3), &[0, 0, 0]),
                    read(2, (4, 5), &[-5, 5, 0]),
                ],
                vec![],
            ),
            (
                "an indeterminate transfer, seen whole",
                vec![
                    transfer(0, 2, 0, 7, (0, 1), unknown()),
                    read(1, (5, 6), &[7, 0, -7]),
                ],
                vec![],
            ),
            (
                "an indeterminate transfer, not seen",
                vec![
                    transfer(0, 2, 0, 7, (0, 1), unknown()),
                    read(1, (5, 6), &[0, 0, 0]),
                ],
                vec![],
            ),
            (
                "half of an indeterminate transfer: not atomic",
                vec![
                    transfer(0, 2, 0, 7, (0, 1), unknown()),
                    read(1, (5, 6), &[0, 0, -7]),
                ],
                vec!["partial-transfer"],
            ),
            (
                "half of an acknowledged transfer: not atomic, and the credit lost",
                vec![
                    transfer(0, 0, 1, 5, (0, 1), done()),
                    read(1, (2, 3), &[-5, 0, 0]),
                ],
                vec!["partial-transfer", "transfer-out-of-bounds"],
            ),
            (
                "an acknowledged transfer lost whole",
                vec![
                    transfer(0, 0, 1, 5, (0, 1), done()),
                    read(1, (2, 3), &[0, 0, 0]),
                ],
                vec!["transfer-out-of-bounds"],
            ),
            (
                "a refused transfer applied",
                vec![
                    transfer(0, 0, 1, 5, (0, 1), refused()),
                    read(1, (2, 3), &[-5, 5, 0]),
                ],
                vec!["transfer-out-of-bounds"],
            ),
            (
                "a read that sees a transfer invoked after it ended",
                vec![
                    read(0, (0, 1), &[-5, 5, 0]),
                    transfer(1, 0, 1, 5, (2, 3), done()),
                ],
                vec!["transfer-out-of-bounds"],
            ),
        ];
        for (name, ops, expected) in cases {
            assert_eq!(kinds(&ops), expected, "{name}");
        }
    }
}
