//! The log store contract: how the core reads the stable log, and how the driver writes it.
//!
//! The core only ever reads through [`LogStore`]; everything written to disk is written by
//! the driver, which takes it from a [`crate::Ready`] and calls [`LogStoreMut`]. Both
//! backends (the in-memory [`MemStore`] here and `raft-wal`) pass the same contract suite.
//!
//! Contract, for every implementation:
//! - The log is a contiguous run of entries `[first_index, last_index]`, preceded by the
//!   snapshot that covers `[1, first_index - 1]`. An empty log has
//!   `last_index == first_index - 1`.
//! - `term(i)` answers for `i == first_index - 1` (the snapshot's term) and for every
//!   stored entry; below that it is `Compacted`, above `last_index` it is `Unavailable`.
//! - `append` writes entries whose first index is at most `last_index + 1`; any stored
//!   entry at or after that index is discarded first (the conflicting suffix).
//! - Nothing is durable until `sync` returns; after a crash the store holds a prefix of
//!   what was appended that includes everything appended before the last `sync`.

pub mod contract;
mod memory;

pub use memory::{bootstrap_entries, bootstrap_hard_state};

pub use memory::{MemStore, SyncPoint};

use crate::error::StorageError;
use crate::types::{Entry, HardState, LogIndex, Snapshot, Term};

/// What a node needs to restart.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct InitialState {
    pub hard_state: HardState,
    /// Metadata of the snapshot the log starts after (index 0 and an empty membership for a
    /// fresh store).
    pub snapshot_meta: crate::types::SnapshotMeta,
}

/// Read side of the stable log, as the core sees it.
pub trait LogStore {
    /// Hard state and snapshot metadata as of the last sync.
    ///
    /// # Errors
    /// `Backend` if the store cannot be read.
    fn initial_state(&self) -> Result<InitialState, StorageError>;

    /// Entries in `[low, high)`, stopping early once `max_bytes` (by
    /// [`Entry::size_bytes`]) would be exceeded; at least one entry is returned when the
    /// range is not empty, whatever its size.
    ///
    /// # Errors
    /// `Compacted` if `low < first_index`, `Unavailable` if `high > last_index + 1`.
    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError>;

    /// The term of the entry at `index` (or the snapshot's term at `first_index - 1`).
    ///
    /// # Errors
    /// `Compacted` below `first_index - 1`, `Unavailable` above `last_index`.
    fn term(&self, index: LogIndex) -> Result<Term, StorageError>;

    fn first_index(&self) -> LogIndex;

    fn last_index(&self) -> LogIndex;

    /// The latest snapshot, to send to a follower that is behind `first_index`.
    ///
    /// # Errors
    /// `Backend` if the snapshot cannot be read.
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
}

/// Write side of the stable log, used by the driver (never by the core).
pub trait LogStoreMut: LogStore {
    /// Appends `entries` (consecutive indexes, non-decreasing terms), first discarding any
    /// stored entry at or after `entries[0].index`.
    ///
    /// # Errors
    /// `Backend` on I/O failure; the node must stop (fail-stop).
    ///
    /// # Panics
    /// If `entries[0].index > last_index + 1` or `entries[0].index < first_index` (a gap, or
    /// an overwrite of compacted entries: a bug in the caller).
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;

    /// Replaces the stored hard state.
    ///
    /// # Errors
    /// `Backend` on I/O failure.
    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError>;

    /// Makes `snapshot` the start of the log. Entries after `snapshot.meta.index` survive
    /// only if the store holds an entry at that index with `snapshot.meta.term` (local
    /// compaction); otherwise the log becomes empty after the snapshot (a leader's snapshot
    /// replacing a divergent or short log). A snapshot older than the current one is
    /// ignored.
    ///
    /// # Errors
    /// `Backend` on I/O failure.
    fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError>;

    /// Writes what a [`crate::Ready`] asks to persist, in the order it must be written:
    /// the snapshot, then the entries, then the hard state. Does not sync: the caller syncs
    /// when `ready.must_sync` says so (and may time it, or crash before it in a test).
    ///
    /// # Errors
    /// The first write that fails; the node must stop (fail-stop).
    fn write_ready(&mut self, ready: &crate::Ready) -> Result<(), StorageError> {
        if let Some(snapshot) = &ready.snapshot {
            self.apply_snapshot(snapshot.clone())?;
        }
        self.append(&ready.entries)?;
        if let Some(hard_state) = ready.hard_state {
            self.set_hard_state(hard_state)?;
        }
        Ok(())
    }

    /// Makes everything written so far durable: one call per batch (group commit).
    ///
    /// # Errors
    /// `Backend` on I/O failure; the node must stop rather than retry.
    fn sync(&mut self) -> Result<(), StorageError>;
}
