//! What a Raft follower writes to its log per batch, shared by the WAL bench and the
//! `wal_sync_writers` example so both measure the same thing.

use raft_core::Term;
use raft_wal::{Record, RecordKind, Wal};

/// Appends `batch` entries of `payload` after the tail, then the hard state (term, vote,
/// commit), which changes with every batch as the commit index moves. Not synced.
///
/// # Panics
/// If the WAL refuses a write: these are benchmarks, and a failed write ends them.
#[inline]
pub fn append(wal: &mut Wal, payload: &[u8], batch: u64) {
    let first = wal.last_index().next();
    for k in 0..batch {
        let record = Record {
            index: first.plus(k),
            term: Term(1),
            kind: RecordKind(2),
            payload,
        };
        wal.append(&record).expect("append");
    }
    let mut hard_state = [0u8; 24];
    hard_state[0..8].copy_from_slice(&1u64.to_le_bytes());
    hard_state[16..24].copy_from_slice(&wal.last_index().0.to_le_bytes());
    wal.set_state(&hard_state).expect("set state");
}
