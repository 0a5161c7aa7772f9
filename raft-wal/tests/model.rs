//! Model-based property test: random sequences of append / truncate suffix / compact
//! prefix / set state / sync / begin sync (its flush run at once or kept for a later
//! step) / close-and-reopen run against the WAL and against a plain in-memory model,
//! comparing every readable record after every step. Each case keeps 0 to 3 compacted
//! segments as spares, so compaction also recycles segments (with their old records
//! behind the new ones) and reopening drops spares. Kept flushes run later in any order,
//! after the log changed under them, even after a reopen: each must succeed.

use std::collections::BTreeMap;

use proptest::prelude::*;
use raft_core::{LogIndex, Term};
use raft_wal::{Flush, Record, RecordKind, SyncPolicy, Wal, WalConfig};

#[derive(Clone, Debug)]
enum Op {
    /// Append records with these payload lengths; bump the term first if the flag is set.
    Append(Vec<usize>, bool),
    /// Truncate from `first + (n % (len + 1))`.
    Truncate(u64),
    /// Compact through `first - 1 + (n % (len + 2))` (may reach past the end: a reset).
    Compact(u64),
    /// Compact through `last - n` if that is in the log: a node compacting behind its
    /// snapshot point, which frees whole segments one at a time and so recycles them.
    CompactBehind(u8),
    SetState(u8),
    Sync,
    /// `begin_sync`; run the flush at once if the flag is set, else keep it.
    BeginSync(bool),
    /// Run the kept flush at position `n % kept` (nothing if none is kept).
    RunFlush(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prop::collection::vec(0usize..700, 1..24), any::<bool>()).prop_map(|(lens, bump)| Op::Append(lens, bump)),
        2 => any::<u64>().prop_map(Op::Truncate),
        1 => any::<u64>().prop_map(Op::Compact),
        2 => any::<u8>().prop_map(Op::CompactBehind),
        1 => any::<u8>().prop_map(Op::SetState),
        2 => Just(Op::Sync),
        3 => any::<bool>().prop_map(Op::BeginSync),
        2 => any::<u8>().prop_map(Op::RunFlush),
        2 => Just(Op::Reopen),
    ]
}

/// The model: what every index holds, from `first` on.
struct Model {
    first: u64,
    records: BTreeMap<u64, (u64, u8, Vec<u8>)>,
    term: u64,
    state: Option<Vec<u8>>,
}

impl Model {
    fn last(&self) -> u64 {
        self.records
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.first - 1)
    }
}

fn config(spare_segments_max: usize) -> WalConfig {
    WalConfig {
        segment_bytes: 8 * 1024,
        sync_policy: SyncPolicy::Always,
        spare_segments_max,
    }
}

fn check(wal: &Wal, model: &Model) {
    wal.check_invariants();
    assert_eq!(wal.last_index(), LogIndex(model.last()), "last index");
    assert!(
        wal.first_index().0 <= model.first,
        "WAL first {:?} above model {}",
        wal.first_index(),
        model.first
    );
    for index in model.first..=model.last() {
        let record = wal.get(LogIndex(index)).expect("readable");
        let (term, kind, payload) = &model.records[&index];
        assert_eq!(record.term, Term(*term), "term at {index}");
        assert_eq!(wal.term(LogIndex(index)), Some(Term(*term)));
        assert_eq!(record.kind, RecordKind(*kind), "kind at {index}");
        assert_eq!(record.payload, &payload[..], "payload at {index}");
    }
    assert!(wal.get(LogIndex(model.last() + 1)).is_none());
    assert_eq!(wal.state(), model.state.as_deref());
}

fn apply(wal: &mut Wal, model: &mut Model, kept: &mut Vec<Flush>, op: &Op, spares: usize) {
    match op {
        Op::Append(lens, bump) => {
            model.term += u64::from(*bump);
            for len in lens {
                let index = model.last() + 1;
                let payload: Vec<u8> = (0..*len).map(|i| (i as u64 * 31 + index) as u8).collect();
                let kind = 1 + (index % 3) as u8;
                let record = Record {
                    index: LogIndex(index),
                    term: Term(model.term),
                    kind: RecordKind(kind),
                    payload: &payload,
                };
                wal.append(&record).expect("append");
                model.records.insert(index, (model.term, kind, payload));
            }
        }
        Op::Truncate(n) => {
            let span = model.last() + 1 - model.first;
            let from = model.first + n % (span + 1);
            wal.truncate_suffix(LogIndex(from)).expect("truncate");
            model.records.retain(|index, _| *index < from);
        }
        Op::Compact(n) => {
            let span = model.last() + 1 - model.first;
            let through = model.first - 1 + n % (span + 2);
            wal.compact_prefix(LogIndex(through)).expect("compact");
            if through >= model.last() {
                model.records.clear();
            } else {
                model.records.retain(|index, _| *index > through);
            }
            model.first = model.first.max(through + 1);
        }
        Op::CompactBehind(behind) => {
            let through = model.last().saturating_sub(u64::from(*behind % 24));
            if through >= model.first && through < model.last() {
                wal.compact_prefix(LogIndex(through)).expect("compact");
                model.records.retain(|index, _| *index > through);
                model.first = through + 1;
            }
        }
        Op::SetState(byte) => {
            let value = vec![*byte; usize::from(*byte % 41)];
            wal.set_state(&value).expect("set state");
            model.state = Some(value);
        }
        Op::Sync => wal.sync().expect("sync"),
        Op::BeginSync(run_now) => {
            let flush = wal.begin_sync().expect("begin sync");
            if *run_now {
                flush.run().expect("flush");
            } else {
                kept.push(flush);
            }
        }
        Op::RunFlush(n) => {
            if !kept.is_empty() {
                let flush = kept.remove(usize::from(*n) % kept.len());
                flush.run().expect("kept flush");
            }
        }
        Op::Reopen => {
            wal.sync().expect("sync before close");
            let dir = wal.dir().to_owned();
            let placeholder = tempfile::tempdir().expect("tempdir");
            let old = std::mem::replace(
                wal,
                Wal::open(placeholder.path(), config(spares)).expect("open placeholder"),
            );
            drop(old);
            *wal = Wal::open(&dir, config(spares)).expect("reopen");
            // After a reopen the WAL starts at its first kept segment, which may hold
            // records the model compacted away: the model only checks from its own first.
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn wal_matches_the_model(ops in prop::collection::vec(op(), 1..60), spares in 0usize..4) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let mut wal = Wal::open(&path, config(spares)).expect("open");
        let mut model = Model { first: 1, records: BTreeMap::new(), term: 1, state: None };
        let mut kept = Vec::new();
        for op in &ops {
            apply(&mut wal, &mut model, &mut kept, op, spares);
            check(&wal, &model);
        }
        for flush in kept {
            flush.run().expect("flush kept to the end");
        }
    }
}
