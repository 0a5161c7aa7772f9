//! An in-memory log store: the `memory` backend of kvnode and the store behind the tests.
//!
//! It keeps two images: what has been written and what has been synced. `crash()` throws
//! away everything written since the last `sync`, which is how the simulator models a
//! power failure. As a kvnode backend it holds nothing across a process restart.

use std::collections::VecDeque;

use crate::error::StorageError;
use crate::storage::{InitialState, LogStore, LogStoreMut};
use crate::types::{Entry, EntryPayload, HardState, LogIndex, Snapshot, Term};
use crate::Membership;

#[derive(Clone, Default, Debug)]
struct Image {
    hard_state: HardState,
    snapshot: Snapshot,
    /// Entries after `snapshot.meta.index`, consecutive.
    entries: VecDeque<Entry>,
}

/// The written image as of [`MemStore::sync_point`], waiting to become the durable one.
#[derive(Clone, Debug)]
pub struct SyncPoint(Image);

/// A log store held in memory, with an explicit durable image for crash simulation.
///
/// `sync` is O(1): the durable image is described as "the written log cut back to
/// `synced_last`, with `synced_hard_state`", and a full copy is taken only when a write
/// destroys synced data (a truncation of synced entries or a snapshot), which is rare.
#[derive(Clone, Default, Debug)]
pub struct MemStore {
    written: Image,
    synced_last: LogIndex,
    synced_hard_state: HardState,
    /// The whole durable image, saved before the first destructive write since the last sync.
    synced_full: Option<Image>,
}

impl MemStore {
    /// An empty store: a node started on it waits to be added to a cluster.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// A store for the first start of a new cluster: every initial member bootstraps with
    /// the same entry 1 (term 1) holding the initial membership, already committed, so the
    /// log-matching property holds from the start and a member added later learns the
    /// initial configuration by ordinary replication.
    pub fn bootstrap(membership: Membership) -> MemStore {
        let mut store = MemStore::new();
        store
            .append(&bootstrap_entries(membership))
            .expect("memory append cannot fail");
        store
            .set_hard_state(bootstrap_hard_state())
            .expect("memory write cannot fail");
        store.sync().expect("memory sync cannot fail");
        store
    }

    /// What a sync begun now would make durable: everything written so far. For a driver
    /// that finishes its syncs later, off the write path ([`crate::Ready`], "Asynchronous
    /// sync"); the simulator uses it to model a flush still running while writes go on.
    pub fn sync_point(&self) -> SyncPoint {
        SyncPoint(self.written.clone())
    }

    /// Finishes a sync begun at `point`: the durable image becomes what was written then,
    /// whatever was written since. Points must be finished in the order they were taken,
    /// and none after a later plain `sync`.
    pub fn sync_through(&mut self, point: SyncPoint) {
        self.synced_last = point.0.last_index();
        self.synced_hard_state = point.0.hard_state;
        self.synced_full = Some(point.0);
    }

    /// Forgets everything not yet synced, as a power failure would.
    pub fn crash(&mut self) {
        if let Some(full) = self.synced_full.take() {
            self.written = full;
            // What survived is durable as a whole, however it was described before.
            self.synced_last = self.written.last_index();
            self.synced_hard_state = self.written.hard_state;
            return;
        }
        let keep = usize::try_from(self.synced_last.0 - self.written.snapshot.meta.index.0)
            .expect("in-memory log fits in usize");
        self.written.entries.truncate(keep);
        self.written.hard_state = self.synced_hard_state;
    }

    /// Saves the durable image before a write that would destroy part of it.
    fn preserve_synced_image(&mut self) {
        if self.synced_full.is_some() {
            return;
        }
        let mut image = self.written.clone();
        let keep = usize::try_from(
            self.synced_last
                .0
                .saturating_sub(image.snapshot.meta.index.0),
        )
        .expect("in-memory log fits in usize");
        image.entries.truncate(keep);
        image.hard_state = self.synced_hard_state;
        self.synced_full = Some(image);
    }

    fn image(&self) -> &Image {
        &self.written
    }
}

/// The entries every initial member of a new cluster starts with (see [`MemStore::bootstrap`]).
pub fn bootstrap_entries(membership: Membership) -> Vec<Entry> {
    vec![Entry {
        index: LogIndex(1),
        term: Term(1),
        payload: EntryPayload::Membership {
            membership,
            context: bytes::Bytes::new(),
        },
    }]
}

/// The hard state every initial member of a new cluster starts with.
pub fn bootstrap_hard_state() -> HardState {
    HardState {
        term: Term(1),
        vote: crate::NodeId::NONE,
        commit: LogIndex(1),
    }
}

impl Image {
    fn first_index(&self) -> LogIndex {
        self.snapshot.meta.index.next()
    }

    fn last_index(&self) -> LogIndex {
        self.snapshot
            .meta
            .index
            .plus(u64::try_from(self.entries.len()).expect("usize fits in u64"))
    }

    fn position(&self, index: LogIndex) -> usize {
        usize::try_from(index.0 - self.first_index().0).expect("in-memory log fits in usize")
    }
}

impl LogStore for MemStore {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(InitialState {
            hard_state: self.image().hard_state,
            snapshot_meta: self.image().snapshot.meta.clone(),
        })
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let image = self.image();
        if low < image.first_index() {
            return Err(StorageError::Compacted { index: low });
        }
        if high > image.last_index().next() {
            return Err(StorageError::Unavailable { index: high.prev() });
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for i in low.0..high.0 {
            let entry = &image.entries[image.position(LogIndex(i))];
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        let image = self.image();
        if index == image.snapshot.meta.index {
            return Ok(image.snapshot.meta.term);
        }
        if index < image.first_index() {
            return Err(StorageError::Compacted { index });
        }
        if index > image.last_index() {
            return Err(StorageError::Unavailable { index });
        }
        Ok(image.entries[image.position(index)].term)
    }

    fn first_index(&self) -> LogIndex {
        self.image().first_index()
    }

    fn last_index(&self) -> LogIndex {
        self.image().last_index()
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.image().snapshot.clone())
    }
}

impl LogStoreMut for MemStore {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.synced_last {
            self.preserve_synced_image();
        }
        let image = &mut self.written;
        assert!(
            first.index <= image.last_index().next(),
            "append at {:?} leaves a gap after last index {:?}",
            first.index,
            image.last_index()
        );
        assert!(
            first.index >= image.first_index(),
            "append at {:?} overwrites compacted entries (first index {:?})",
            first.index,
            image.first_index()
        );
        let keep = image.position(first.index);
        image.entries.truncate(keep);
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                first.index.plus(offset as u64),
                "appended entries must be consecutive"
            );
            image.entries.push_back(entry.clone());
        }
        Ok(())
    }

    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        self.written.hard_state = hard_state;
        Ok(())
    }

    fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        if snapshot.meta.index <= self.written.snapshot.meta.index {
            return Ok(());
        }
        self.preserve_synced_image();
        let image = &mut self.written;
        let index = snapshot.meta.index;
        let keeps_suffix = index <= image.last_index()
            && image.entries[image.position(index)].term == snapshot.meta.term;
        if keeps_suffix {
            let drop = image.position(index) + 1;
            image.entries.drain(..drop);
        } else {
            image.entries.clear();
        }
        image.snapshot = snapshot;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.synced_full = None;
        self.synced_last = self.written.last_index();
        self.synced_hard_state = self.written.hard_state;
        Ok(())
    }
}
