//! The pluggable log store: `storage = "wal"` or `"memory"` in the config.

use std::path::{Path, PathBuf};

use raft_core::{
    Entry, HardState, InitialState, LogIndex, LogStore, LogStoreMut, MemStore, Snapshot,
    SnapshotMeta, StorageError, Term,
};
use raft_wal::{WalConfig, WalStore};

use crate::config::{NodeConfig, StorageKind};
use crate::state_machine::StateMachine;

pub enum Storage {
    Wal(Box<WalStore>),
    Memory(Box<MemStore>),
}

impl Storage {
    /// Opens the backend the config names (creating the WAL directory if needed).
    ///
    /// # Errors
    /// The WAL cannot be opened: unreadable, corrupt (the error names file and offset), or
    /// another format version.
    pub fn open(config: &NodeConfig) -> anyhow::Result<Storage> {
        match config.storage {
            StorageKind::Memory => {
                claim_memory_identity(config)?;
                Ok(Storage::Memory(Box::default()))
            }
            StorageKind::Wal => {
                let dir = config.data_dir.join("wal");
                let wal_config = WalConfig {
                    segment_bytes: config.wal_segment_bytes,
                    sync_policy: config.sync,
                    spare_segments_max: config.wal_spare_segments,
                };
                let store = WalStore::open(&dir, wal_config).map_err(|error| {
                    anyhow::anyhow!("opening the WAL in {}: {error}", dir.display())
                })?;
                Ok(Storage::Wal(Box::new(store)))
            }
        }
    }

    /// Begins a sync of everything written so far, to be run off the raft loop (raft-core's
    /// `Ready`, "Asynchronous sync"); `None` when it is already done (the memory backend).
    ///
    /// # Errors
    /// `Backend` if the WAL cannot write its state record; the node must stop.
    pub fn begin_sync(&mut self) -> Result<Option<raft_wal::Flush>, StorageError> {
        match self {
            Storage::Wal(store) => store.begin_sync().map(Some),
            Storage::Memory(store) => {
                store.sync()?;
                Ok(None)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.last_index() == LogIndex::ZERO && self.first_index() == LogIndex(1)
    }

    pub fn describe(&self, data_dir: &Path) -> String {
        match self {
            Storage::Wal(_) => format!("wal in {}", data_dir.join("wal").display()),
            Storage::Memory(_) => "memory".to_string(),
        }
    }

    /// What another thread needs to write this store's snapshots.
    pub fn snapshot_writer(&self) -> SnapshotWriter {
        match self {
            Storage::Wal(store) => SnapshotWriter::Wal(store.dir().to_owned()),
            Storage::Memory(_) => SnapshotWriter::Memory,
        }
    }

    /// Puts a snapshot staged by [`SnapshotWriter::stage`] in effect and drops the log it
    /// covers; one no newer than the current snapshot is discarded. Returns whether it
    /// was installed.
    ///
    /// # Errors
    /// As `apply_snapshot`.
    pub fn install_snapshot(&mut self, staged: StagedSnapshot) -> Result<bool, StorageError> {
        match (self, staged) {
            (Storage::Wal(store), StagedSnapshot::Wal(staged)) => store.install_snapshot(staged),
            (store, StagedSnapshot::Memory(snapshot)) => {
                if snapshot.meta.index <= store.snapshot()?.meta.index {
                    return Ok(false);
                }
                store.apply_snapshot(snapshot)?;
                Ok(true)
            }
            (Storage::Memory(_), StagedSnapshot::Wal(staged)) => {
                staged.discard();
                Err(StorageError::Backend(
                    "a WAL snapshot cannot be installed in a memory store".into(),
                ))
            }
        }
    }
}

/// Writes snapshots off the raft loop's thread: a large state takes long to encode and
/// sync, and the loop must keep heartbeating meanwhile.
#[derive(Clone, Debug)]
pub enum SnapshotWriter {
    Wal(PathBuf),
    Memory,
}

/// A snapshot written (for the WAL: encoded, written and synced) and not yet installed.
pub enum StagedSnapshot {
    Wal(raft_wal::StagedSnapshot),
    Memory(Snapshot),
}

impl StagedSnapshot {
    /// The last log index the snapshot covers.
    pub fn index(&self) -> LogIndex {
        match self {
            StagedSnapshot::Wal(staged) => staged.index(),
            StagedSnapshot::Memory(snapshot) => snapshot.meta.index,
        }
    }
}

impl SnapshotWriter {
    /// Does the slow part of installing a snapshot of `machine` at `meta`: for the WAL,
    /// streams it to a file and syncs it. Safe on any thread. Returns the staged snapshot
    /// and its size in bytes.
    ///
    /// # Errors
    /// Writing or syncing the snapshot file failed.
    pub fn stage(
        &self,
        meta: SnapshotMeta,
        machine: &StateMachine,
    ) -> Result<(StagedSnapshot, u64), raft_wal::Error> {
        let len = machine.snapshot_len();
        let staged = match self {
            SnapshotWriter::Wal(dir) => {
                WalStore::stage_snapshot_with(dir, meta, len, |sink| {
                    // This runs on the snapshot thread; the raft loop's syncs come first.
                    sink.pace();
                    machine.write_snapshot(sink)
                })
                .map(StagedSnapshot::Wal)?
            }
            SnapshotWriter::Memory => StagedSnapshot::Memory(Snapshot {
                meta,
                data: machine.snapshot(),
            }),
        };
        Ok((staged, len))
    }
}

/// Marks `data_dir` as used by a memory-backed node, refusing if it already was.
///
/// A memory-backed node forgets its votes and the entries it acknowledged when its process
/// ends. Coming back under the same id, as a founder or with `--join`, could let it vote
/// for a candidate missing an entry it helped commit (losing an acknowledged write) or
/// vote twice in one term; and since peers may still hold messages from its previous life,
/// an id is never reused even after `RAFT.REMOVE`. So the restart is refused: the operator
/// removes the old id and adds the node back under a new id with `--join`. Deleting the
/// marker overrides this, for a node that never joined any cluster.
fn claim_memory_identity(config: &NodeConfig) -> anyhow::Result<()> {
    let marker = config.data_dir.join("MEMORY_NODE_STARTED");
    if marker.exists() {
        anyhow::bail!(
            "node {} ran before with storage = \"memory\" and lost its Raft log when it stopped; \
             restarting it under the same id is unsafe (with or without --join). Remove it \
             from the cluster (RAFT.REMOVE {}) and add it back with a new --node-id and \
             --join (delete {} only if this node never joined a cluster)",
            config.node_id,
            config.node_id,
            marker.display()
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", config.data_dir.display()))?;
    std::fs::write(
        &marker,
        format!("node {} (memory storage)\n", config.node_id),
    )
    .map_err(|e| anyhow::anyhow!("writing {}: {e}", marker.display()))?;
    Ok(())
}

macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Storage::Wal($store) => $call,
            Storage::Memory($store) => $call,
        }
    };
}

impl LogStore for Storage {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        delegate!(self, store => store.initial_state())
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        delegate!(self, store => store.entries(low, high, max_bytes))
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        delegate!(self, store => store.term(index))
    }

    fn first_index(&self) -> LogIndex {
        delegate!(self, store => store.first_index())
    }

    fn last_index(&self) -> LogIndex {
        delegate!(self, store => store.last_index())
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        delegate!(self, store => store.snapshot())
    }
}

impl LogStoreMut for Storage {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        delegate!(self, store => store.append(entries))
    }

    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        delegate!(self, store => store.set_hard_state(hard_state))
    }

    fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        delegate!(self, store => store.apply_snapshot(snapshot))
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        delegate!(self, store => store.sync())
    }
}
