//! The linearizability search checked against the brute-force checker on thousands of small
//! random register histories (with indeterminate writes), plus Knossos-style known cases.
//! Pure: no processes, no root.

use benches::chaos::brute;
use benches::chaos::linear::{check, Limits, Operation, RegisterInput, RegisterModel, Verdict};
use benches::kvbench::workload::Rng;

type Op = Operation<RegisterInput, Option<u64>>;

/// Histories per run of the cross-check.
const SEEDS: u64 = 4000;

/// A random history of up to 7 operations on one register. About half the reads return what
/// a real sequential execution of the writes would show at some point; the rest are random,
/// so both linearizable and non-linearizable histories come out.
fn random_history(seed: u64) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    let count = 1 + (rng.next_u64() % 7) as usize;
    let mut ops = Vec::with_capacity(count);
    let mut next_value = 1;
    for _ in 0..count {
        let call = rng.next_u64() % 100;
        let length = rng.next_u64() % 40;
        let is_write = rng.next_u64() % 2 == 0;
        if is_write {
            let indeterminate = rng.next_u64() % 4 == 0;
            ops.push(Operation {
                input: RegisterInput::Write(next_value),
                output: if indeterminate { None } else { Some(None) },
                call_us: call,
                return_us: if indeterminate {
                    None
                } else {
                    Some(call + length)
                },
            });
            next_value += 1;
        } else {
            ops.push(Operation {
                input: RegisterInput::Read,
                output: Some(None),
                call_us: call,
                return_us: Some(call + length),
            });
        }
    }
    // Reads: a value among those written (or nil, or one never written).
    for op in ops.iter_mut().filter(|op| op.input == RegisterInput::Read) {
        let pick = rng.next_u64() % (next_value + 1);
        let seen = match pick {
            0 => None,
            v => Some(v), // next_value itself was never written
        };
        op.output = Some(seen);
    }
    ops
}

#[test]
fn search_agrees_with_brute_force_on_random_histories() {
    let (mut yes, mut no) = (0, 0);
    for seed in 0..SEEDS {
        let ops = random_history(seed);
        let expected = brute::is_linearizable(&RegisterModel, &ops);
        let verdict = check(&RegisterModel, &ops, Limits::default());
        let got = match verdict {
            Verdict::Linearizable => true,
            Verdict::Violation(_) => false,
            Verdict::Unknown { steps } => panic!("seed {seed}: gave up after {steps} steps"),
        };
        assert_eq!(
            got, expected,
            "seed {seed}: search says {got}, brute force {expected}: {ops:#?}"
        );
        if expected {
            yes += 1
        } else {
            no += 1
        }
    }
    // The generator must exercise both answers, or the agreement means little.
    assert!(
        yes > SEEDS / 10 && no > SEEDS / 10,
        "{yes} linearizable, {no} not"
    );
}

fn w(value: u64, call: u64, ret: Option<u64>) -> Op {
    Operation {
        input: RegisterInput::Write(value),
        output: ret.map(|_| None),
        call_us: call,
        return_us: ret,
    }
}

fn r(seen: Option<u64>, call: u64, ret: u64) -> Op {
    Operation {
        input: RegisterInput::Read,
        output: Some(seen),
        call_us: call,
        return_us: Some(ret),
    }
}

#[test]
fn known_histories_both_ways() {
    let cases: Vec<(&str, Vec<Op>, bool)> = vec![
        (
            "nil before any write",
            vec![r(None, 0, 1), w(1, 2, Some(3))],
            true,
        ),
        (
            "nil after a completed write",
            vec![w(1, 0, Some(1)), r(None, 2, 3)],
            false,
        ),
        (
            "concurrent write seen, then unseen (new-old inversion)",
            vec![w(1, 0, Some(100)), r(Some(1), 10, 20), r(None, 30, 40)],
            false,
        ),
        (
            "concurrent write seen by both readers",
            vec![w(1, 0, Some(100)), r(Some(1), 10, 20), r(Some(1), 30, 40)],
            true,
        ),
        (
            "indeterminate write seen late",
            vec![w(1, 0, None), r(None, 10, 20), r(Some(1), 500, 510)],
            true,
        ),
        (
            "indeterminate write seen, then the older value",
            vec![
                w(1, 0, Some(5)),
                w(2, 6, None),
                r(Some(2), 10, 20),
                r(Some(1), 30, 40),
            ],
            false,
        ),
        (
            "two indeterminate writes in both orders",
            vec![
                w(1, 0, None),
                w(2, 0, None),
                r(Some(2), 10, 20),
                r(Some(1), 30, 40),
            ],
            true,
        ),
        (
            "lost acknowledged write: later reads see the older value",
            vec![
                w(1, 0, Some(5)),
                w(2, 10, Some(15)),
                r(Some(1), 20, 25),
                r(Some(1), 30, 35),
            ],
            false,
        ),
    ];
    for (name, ops, expected) in cases {
        assert_eq!(
            brute::is_linearizable(&RegisterModel, &ops),
            expected,
            "brute: {name}"
        );
        let verdict = check(&RegisterModel, &ops, Limits::default());
        assert_eq!(
            verdict == Verdict::Linearizable,
            expected,
            "search: {name}: {verdict:?}"
        );
    }
}

#[test]
fn long_history_with_many_concurrent_indeterminate_writes_stays_bounded() {
    // 60 rounds of 4 concurrent writers, one of them indeterminate each round, and a read of
    // the last acknowledged write after each round: linearizable, and the memo keeps it fast.
    let mut ops = Vec::new();
    let mut value = 1;
    for round in 0..60u64 {
        let start = round * 100;
        for writer in 0..4 {
            let indeterminate = writer == 3;
            ops.push(w(
                value,
                start,
                if indeterminate {
                    None
                } else {
                    Some(start + 50)
                },
            ));
            value += 1;
        }
        ops.push(r(Some(value - 2), start + 60, start + 70));
    }
    let limits = Limits {
        steps_max: 2_000_000,
        cache_entries_max: 1_000_000,
    };
    assert_eq!(check(&RegisterModel, &ops, limits), Verdict::Linearizable);
}

// ----- counters and sets: the bound checkers must never flag a linearizable history -----

use benches::chaos::checker::{counter, set};
use benches::chaos::history::{Call, Op as HistoryOp, Outcome, Phase, Ret, Workload};
use benches::chaos::linear::Model;

/// INCR returns the new value; GET returns the value.
struct CounterModel;

impl Model for CounterModel {
    type State = i64;
    type Input = Call;
    type Output = Ret;

    fn init(&self) -> i64 {
        0
    }

    fn step(&self, state: &i64, input: &Call, output: Option<&Ret>) -> Option<i64> {
        let next = match input {
            Call::Incr => state + 1,
            _ => *state,
        };
        match output {
            None => Some(next),
            Some(Ret::Counter(seen)) if *seen == next => Some(next),
            Some(_) => None,
        }
    }
}

/// APPEND adds an element at the end; GET returns the elements in order.
struct SetModel;

impl Model for SetModel {
    type State = Vec<u64>;
    type Input = Call;
    type Output = Ret;

    fn init(&self) -> Vec<u64> {
        Vec::new()
    }

    fn step(&self, state: &Vec<u64>, input: &Call, output: Option<&Ret>) -> Option<Vec<u64>> {
        let mut next = state.clone();
        if let Call::Append(element) = input {
            next.push(*element);
        }
        match (input, output) {
            (_, None) | (Call::Append(_), Some(Ret::Done)) => Some(next),
            (Call::Read, Some(Ret::Elements(seen))) if *seen == next => Some(next),
            _ => None,
        }
    }
}

/// A random small history of `workload` (counter or set): intervals and outcomes random,
/// read results sometimes from a real sequential execution, sometimes off by a little.
fn random_history_of(workload: Workload, seed: u64) -> Vec<HistoryOp> {
    let mut rng = Rng::new(seed);
    let count = 1 + (rng.next_u64() % 6) as usize;
    let mut ops = Vec::with_capacity(count);
    let mut applied = 0u64;
    for index in 0..count {
        let invoke_us = rng.next_u64() % 100;
        let complete_us = invoke_us + rng.next_u64() % 40;
        let write = rng.next_u64() % 2 == 0;
        let (call, outcome) = if write {
            let call = match workload {
                Workload::Set => Call::Append(index as u64 + 1),
                _ => Call::Incr,
            };
            let outcome = match rng.next_u64() % 5 {
                0 => Outcome::Indeterminate("timeout".into()),
                1 => Outcome::Failed("TRYAGAIN".into()),
                _ => {
                    applied += 1;
                    match workload {
                        Workload::Set => Outcome::Ok(Ret::Done),
                        _ => Outcome::Ok(Ret::Counter((applied + rng.next_u64() % 2) as i64)),
                    }
                }
            };
            (call, outcome)
        } else {
            let ret = match workload {
                Workload::Set => {
                    let len = rng.next_u64() % (count as u64 + 1);
                    Ret::Elements((1..=len).filter(|_| rng.next_u64() % 4 != 0).collect())
                }
                _ => Ret::Counter((rng.next_u64() % (count as u64 + 1)) as i64),
            };
            (Call::Read, Outcome::Ok(ret))
        };
        ops.push(HistoryOp {
            index,
            process: index as u64,
            workload,
            key: "k".into(),
            node: 1,
            call,
            invoke_us,
            complete_us,
            outcome,
            phase: Phase::Main,
        });
    }
    ops
}

/// The history as the brute-force checker sees it: refused operations dropped (the server
/// says they did not happen), indeterminate ones optional.
fn as_operations(ops: &[HistoryOp]) -> Vec<Operation<Call, Ret>> {
    ops.iter()
        .filter(|op| !matches!(op.outcome, Outcome::Failed(_)))
        .map(|op| Operation {
            input: op.call.clone(),
            output: match &op.outcome {
                Outcome::Ok(ret) => Some(ret.clone()),
                _ => None,
            },
            call_us: op.invoke_us,
            return_us: op.return_us(),
        })
        .collect()
}

#[test]
fn counter_and_set_checkers_never_flag_a_linearizable_history() {
    let mut linearizable = [0u32; 2];
    let mut flagged_bad = [0u32; 2];
    for seed in 0..SEEDS {
        for (slot, workload) in [Workload::Counter, Workload::Set].into_iter().enumerate() {
            let ops = random_history_of(workload, seed);
            let refs: Vec<&HistoryOp> = ops.iter().collect();
            let anomalies = match workload {
                Workload::Set => set::check_key("k", &refs),
                _ => counter::check_key("k", &refs),
            };
            let operations = as_operations(&ops);
            let ok = match workload {
                Workload::Set => brute::is_linearizable(&SetModel, &operations),
                _ => brute::is_linearizable(&CounterModel, &operations),
            };
            if ok {
                linearizable[slot] += 1;
                assert!(
                    anomalies.is_empty(),
                    "seed {seed}: {workload:?} history is linearizable but flagged {anomalies:#?}\n{ops:#?}"
                );
            } else if !anomalies.is_empty() {
                flagged_bad[slot] += 1;
            }
        }
    }
    // Both kinds of history must occur, and the checkers must catch a fair share of the bad
    // ones (they check necessary conditions, not full linearizability).
    for slot in 0..2 {
        assert!(linearizable[slot] > SEEDS as u32 / 20, "{linearizable:?}");
        assert!(flagged_bad[slot] > SEEDS as u32 / 20, "{flagged_bad:?}");
    }
}

// ----- the bank (txn): its checker must never flag a linearizable history -----

use benches::chaos::checker::txn;

/// Accounts in the random bank histories.
const BANK_ACCOUNTS: usize = 3;

/// A transfer moves the amount whole; a read returns every balance.
struct BankModel;

impl Model for BankModel {
    type State = Vec<i64>;
    type Input = Call;
    type Output = Ret;

    fn init(&self) -> Vec<i64> {
        vec![0; BANK_ACCOUNTS]
    }

    fn step(&self, state: &Vec<i64>, input: &Call, output: Option<&Ret>) -> Option<Vec<i64>> {
        let mut next = state.clone();
        if let Call::Transfer { from, to, amount } = input {
            next[*from as usize] -= *amount as i64;
            next[*to as usize] += *amount as i64;
        }
        match (input, output) {
            (_, None) | (Call::Transfer { .. }, Some(Ret::Done)) => Some(next),
            (Call::Read, Some(Ret::Balances(seen))) if *seen == next => Some(next),
            _ => None,
        }
    }
}

/// A random small bank history: transfers acknowledged, refused or indeterminate; reads
/// that show a real sequential state, that state with half a transfer (not atomic), or
/// one transfer too few or too many.
fn random_bank_history(seed: u64) -> Vec<HistoryOp> {
    let mut rng = Rng::new(seed);
    let count = 1 + (rng.next_u64() % 6) as usize;
    let mut ops = Vec::with_capacity(count);
    let mut state = vec![0i64; BANK_ACCOUNTS];
    for index in 0..count {
        let invoke_us = rng.next_u64() % 100;
        let complete_us = invoke_us + rng.next_u64() % 40;
        let accounts = BANK_ACCOUNTS as u64;
        let from = rng.next_u64() % accounts;
        let to = (from + 1 + rng.next_u64() % (accounts - 1)) % accounts;
        let amount = 1 + rng.next_u64() % 3;
        let (call, outcome) = if rng.next_u64() % 2 == 0 {
            let outcome = match rng.next_u64() % 5 {
                0 => Outcome::Indeterminate("timeout".into()),
                1 => Outcome::Failed("TRYAGAIN".into()),
                _ => Outcome::Ok(Ret::Done),
            };
            if !matches!(outcome, Outcome::Failed(_)) && rng.next_u64() % 4 != 0 {
                state[from as usize] -= amount as i64;
                state[to as usize] += amount as i64;
            }
            let (from, to) = (from as u32, to as u32);
            (Call::Transfer { from, to, amount }, outcome)
        } else {
            let mut seen = state.clone();
            match rng.next_u64() % 4 {
                0 => seen[from as usize] -= amount as i64, // half a transfer
                1 => {
                    seen[from as usize] -= amount as i64;
                    seen[to as usize] += amount as i64;
                }
                _ => {}
            }
            (Call::Read, Outcome::Ok(Ret::Balances(seen)))
        };
        ops.push(HistoryOp {
            index,
            process: index as u64,
            workload: Workload::Txn,
            key: "t".into(),
            node: 1,
            call,
            invoke_us,
            complete_us,
            outcome,
            phase: Phase::Main,
        });
    }
    ops
}

#[test]
fn bank_checker_never_flags_a_linearizable_history_and_catches_partial_transfers() {
    let (mut linearizable, mut flagged_bad, mut partial) = (0, 0, 0);
    for seed in 0..SEEDS {
        let ops = random_bank_history(seed);
        let refs: Vec<&HistoryOp> = ops.iter().collect();
        let anomalies = txn::check_bank("t", &refs);
        if brute::is_linearizable(&BankModel, &as_operations(&ops)) {
            linearizable += 1;
            assert!(
                anomalies.is_empty(),
                "seed {seed}: the bank history is linearizable but flagged {anomalies:#?}\n{ops:#?}"
            );
            continue;
        }
        if !anomalies.is_empty() {
            flagged_bad += 1;
        }
        // Every read summing to anything but 0 is flagged as a partial transfer.
        let unbalanced = ops.iter().any(
            |op| matches!(&op.outcome, Outcome::Ok(Ret::Balances(b)) if b.iter().sum::<i64>() != 0),
        );
        if unbalanced {
            partial += 1;
            assert!(
                anomalies.iter().any(|a| a.kind == "partial-transfer"),
                "seed {seed}: a non-atomic read went unflagged\n{ops:#?}"
            );
        }
    }
    assert!(linearizable > SEEDS / 20, "{linearizable}");
    assert!(flagged_bad > SEEDS / 20, "{flagged_bad}");
    assert!(partial > SEEDS / 20, "{partial}");
}

/// A known-bad history from a store without atomic transactions: the debit of an
/// indeterminate transfer applied, its credit not.
#[test]
fn bank_checker_rejects_a_transfer_seen_half_applied() {
    let transfer = HistoryOp {
        index: 0,
        process: 1,
        workload: Workload::Txn,
        key: "t".into(),
        node: 1,
        call: Call::Transfer {
            from: 0,
            to: 2,
            amount: 30,
        },
        invoke_us: 1_000,
        complete_us: 2_000,
        outcome: Outcome::Indeterminate("UNKNOWN leadership changed".into()),
        phase: Phase::Main,
    };
    let read = |index, balances: Vec<i64>| HistoryOp {
        index,
        process: 2,
        call: Call::Read,
        invoke_us: 3_000 + index as u64 * 1_000,
        complete_us: 3_500 + index as u64 * 1_000,
        outcome: Outcome::Ok(Ret::Balances(balances)),
        ..transfer.clone()
    };
    let good = [
        transfer.clone(),
        read(1, vec![0, 0, 0]),
        read(2, vec![-30, 0, 30]),
    ];
    let refs: Vec<&HistoryOp> = good.iter().collect();
    assert_eq!(txn::check_bank("t", &refs), vec![], "happened later: fine");
    let bad = [transfer.clone(), read(1, vec![-30, 0, 0])];
    let refs: Vec<&HistoryOp> = bad.iter().collect();
    let anomalies = txn::check_bank("t", &refs);
    assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
    assert_eq!(anomalies[0].kind, "partial-transfer");
    assert!(
        anomalies[0].detail.contains("summing to -30"),
        "{}",
        anomalies[0].detail
    );
}
