//! The adapter between raft-core's storage traits and the WAL: it alone knows what an
//! entry, a hard state and a snapshot are.
//!
//! - An entry is one record: index and term in the record header, the payload kind as
//!   the record kind (1 blank, 2 command, 3 membership). A command's bytes are stored
//!   as they are (postcard would only add a length the record already has); a
//!   membership change is postcard-encoded.
//! - The hard state is the WAL's state value: term, vote, commit as three `u64` LE.
//! - The latest snapshot (meta and data) is the blob file `snapshot`, replaced by
//!   rename; only its metadata stays in memory. It is written before the WAL is compacted or reset, so it is the commit
//!   point of `apply_snapshot`; `open` finishes an interrupted one (see `open_reconcile`).
//!
//! Invariant: `wal.first_index() <= snapshot.index + 1 <= wal.last_index() + 1`; the log
//! the core sees is `[snapshot.index + 1, wal.last_index()]`.
//!
//! Never: let the core see a record below the snapshot (the WAL compacts by whole
//! segments, so such records may still be on disk).

use std::path::Path;

use bytes::Bytes;
use raft_core::{
    Entry, EntryPayload, HardState, InitialState, LogIndex, LogStore, LogStoreMut, Membership,
    NodeId, Snapshot, SnapshotMeta, StorageError, Term,
};

use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::flush::Flush;
use crate::meta::{read_blob, stage_blob_with, BlobSink, StagedBlob};
use crate::record::{Record, RecordKind};
use crate::wal::Wal;

const SNAPSHOT_FILE_NAME: &str = "snapshot";
const KIND_BLANK: RecordKind = RecordKind(1);
const KIND_COMMAND: RecordKind = RecordKind(2);
const KIND_MEMBERSHIP: RecordKind = RecordKind(3);
const HARD_STATE_BYTES: usize = 24;

#[derive(serde::Serialize, serde::Deserialize)]
struct MembershipRecord {
    membership: Membership,
    context: Bytes,
}

/// A snapshot written and synced by [`WalStore::stage_snapshot`], waiting to be installed.
#[derive(Debug)]
pub struct StagedSnapshot {
    meta: SnapshotMeta,
    blob: StagedBlob,
}

impl StagedSnapshot {
    /// The last log index the snapshot covers.
    pub fn index(&self) -> LogIndex {
        self.meta.index
    }

    /// Deletes the staged file without installing it.
    pub fn discard(self) {
        self.blob.discard();
    }
}

/// A durable Raft log store: implements [`LogStore`] and [`LogStoreMut`] over a [`Wal`].
pub struct WalStore {
    wal: Wal,
    /// The latest snapshot's metadata; its data stays on disk (it can be as large as the
    /// whole state) and is read back when asked for, which a leader does once per
    /// snapshot it sends.
    snapshot_meta: SnapshotMeta,
    hard_state: HardState,
}

fn backend(error: Error) -> StorageError {
    StorageError::Backend(Box::new(error))
}

fn encode_hard_state(hard_state: &HardState) -> [u8; HARD_STATE_BYTES] {
    let mut out = [0u8; HARD_STATE_BYTES];
    out[0..8].copy_from_slice(&hard_state.term.0.to_le_bytes());
    out[8..16].copy_from_slice(&hard_state.vote.0.to_le_bytes());
    out[16..24].copy_from_slice(&hard_state.commit.0.to_le_bytes());
    out
}

fn decode_hard_state(dir: &Path, bytes: &[u8]) -> Result<HardState> {
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if bytes.len() != HARD_STATE_BYTES {
        return Err(Error::Corrupt {
            path: dir.join("state"),
            offset: 0,
            reason: "hard state has the wrong length",
        });
    }
    Ok(HardState {
        term: Term(word(0)),
        vote: NodeId(word(8)),
        commit: LogIndex(word(16)),
    })
}

impl WalStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// As [`Wal::open`]; also `Corrupt` for a damaged snapshot or hard state, or a log that
    /// does not reach back to the snapshot.
    pub fn open(dir: impl AsRef<Path>, config: WalConfig) -> Result<WalStore> {
        let dir = dir.as_ref();
        let mut wal = Wal::open(dir, config)?;
        let snapshot = read_snapshot(dir)?;
        let hard_state = match wal.state() {
            None => HardState::default(),
            Some(bytes) => decode_hard_state(dir, bytes)?,
        };
        open_reconcile(&mut wal, &snapshot)?;
        Ok(WalStore {
            wal,
            snapshot_meta: snapshot.meta,
            hard_state,
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        self.wal.dir()
    }

    /// The underlying log, for inspection.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The first half of `sync` ([`Wal::begin_sync`]): the returned flush, run on any
    /// thread, makes every entry appended and the hard state set before this call
    /// durable, while the store goes on appending, truncating and installing snapshots.
    /// What waits on persistence (an acknowledgement, a vote) waits for its `run`.
    ///
    /// # Errors
    /// As [`Wal::begin_sync`].
    pub fn begin_sync(&mut self) -> Result<Flush, StorageError> {
        self.wal.begin_sync().map_err(backend)
    }

    /// Writes `snapshot` durably beside the store in `dir` without touching the log or
    /// the current snapshot: the slow half of `apply_snapshot` (encoding, writing and
    /// syncing what may be a large blob), which may run on any thread while the store
    /// goes on appending. [`WalStore::install_snapshot`] then puts it in effect.
    ///
    /// # Errors
    /// `Io` writing the file; `Encoding`; `RecordTooLarge` past 4 GiB.
    pub fn stage_snapshot(dir: &Path, snapshot: Snapshot) -> Result<StagedSnapshot> {
        let Snapshot { meta, data } = snapshot;
        WalStore::stage_snapshot_with(dir, meta, data.len() as u64, |sink| {
            std::io::Write::write_all(sink, &data)
        })
    }

    /// As [`WalStore::stage_snapshot`], with the data produced by `write_data`, which
    /// must write exactly `data_len` bytes: the caller streams a large state to the file
    /// through a bounded buffer instead of building it in memory first.
    ///
    /// # Errors
    /// As [`WalStore::stage_snapshot`], and `Io` when `write_data` fails or writes another
    /// length than `data_len`.
    pub fn stage_snapshot_with(
        dir: &Path,
        meta: SnapshotMeta,
        data_len: u64,
        write_data: impl FnOnce(&mut BlobSink) -> std::io::Result<()>,
    ) -> Result<StagedSnapshot> {
        let prefix = snapshot_prefix(&meta, data_len).map_err(|source| Error::Encoding {
            action: "encode snapshot for",
            path: dir.to_owned(),
            source,
        })?;
        let total = prefix.len() as u64 + data_len;
        let blob = stage_blob_with(dir, SNAPSHOT_FILE_NAME, total, |sink| {
            std::io::Write::write_all(sink, &prefix)?;
            let before = sink.written();
            write_data(sink)?;
            let produced = sink.written() - before;
            if produced != data_len {
                return Err(std::io::Error::other(format!(
                    "snapshot writer produced {produced} bytes, {data_len} declared"
                )));
            }
            Ok(())
        })?;
        Ok(StagedSnapshot { meta, blob })
    }

    /// Makes a staged snapshot the store's snapshot and drops the log it covers, as
    /// `apply_snapshot` does. A snapshot no newer than the current one (another was
    /// installed while this one was staged) is discarded; returns whether it was installed.
    ///
    /// The caller must only stage snapshots of entries it has persisted (an applied
    /// index, or a leader's snapshot); the renamed blob is the commit point, so a crash
    /// between it and the compaction is finished by `open`.
    ///
    /// # Errors
    /// As `apply_snapshot`.
    pub fn install_snapshot(&mut self, staged: StagedSnapshot) -> Result<bool, StorageError> {
        let StagedSnapshot { meta, blob } = staged;
        let index = meta.index;
        if index <= self.snapshot_meta.index {
            blob.discard();
            return Ok(false);
        }
        let keeps_suffix =
            index <= self.wal.last_index() && self.wal.term(index) == Some(meta.term);
        let replaced = blob.commit().map_err(backend)?;
        self.wal.discard_later(replaced);
        let result = if keeps_suffix {
            self.wal.compact_prefix(index)
        } else {
            self.wal.reset(index.next())
        };
        result.map_err(backend)?;
        self.snapshot_meta = meta;
        Ok(true)
    }

    fn decode_entry(&self, record: Record<'_>) -> Result<Entry, StorageError> {
        let payload = match record.kind {
            KIND_BLANK => EntryPayload::Blank,
            KIND_COMMAND => EntryPayload::Command(Bytes::copy_from_slice(record.payload)),
            KIND_MEMBERSHIP => {
                let decoded: MembershipRecord =
                    postcard::from_bytes(record.payload).map_err(|source| {
                        backend(Error::Encoding {
                            action: "decode membership entry in",
                            path: self.wal.dir().to_owned(),
                            source,
                        })
                    })?;
                EntryPayload::Membership {
                    membership: decoded.membership,
                    context: decoded.context,
                }
            }
            _ => {
                return Err(backend(Error::Corrupt {
                    path: self.wal.dir().to_owned(),
                    offset: record.index.0,
                    reason: "unknown record kind (offset field holds the log index)",
                }))
            }
        };
        Ok(Entry {
            index: record.index,
            term: record.term,
            payload,
        })
    }
}

/// Finishes an `apply_snapshot` interrupted by a crash: the snapshot file is the commit
/// point, so the log is compacted behind it, or reset if it does not continue it.
/// The bytes `postcard` puts before a snapshot's data: the encoded metadata, then the
/// data's length as a varint. Written ahead of the data itself, the file holds exactly
/// `postcard::to_allocvec(snapshot)` without a second copy of what can be the whole state.
fn snapshot_prefix(
    meta: &SnapshotMeta,
    data_len: u64,
) -> std::result::Result<Vec<u8>, postcard::Error> {
    let mut prefix = postcard::to_allocvec(meta)?;
    let mut len = data_len;
    loop {
        let low = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            prefix.push(low);
            return Ok(prefix);
        }
        prefix.push(low | 0x80);
    }
}

/// The snapshot blob in `dir`, or the empty snapshot if there is none.
fn read_snapshot(dir: &Path) -> Result<Snapshot> {
    match read_blob(dir, SNAPSHOT_FILE_NAME)? {
        None => Ok(Snapshot::default()),
        Some(bytes) => postcard::from_bytes(&bytes).map_err(|source| Error::Encoding {
            action: "decode snapshot",
            path: dir.join(SNAPSHOT_FILE_NAME),
            source,
        }),
    }
}

fn open_reconcile(wal: &mut Wal, snapshot: &Snapshot) -> Result<()> {
    let index = snapshot.meta.index;
    if wal.first_index() > index.next() {
        return Err(Error::Corrupt {
            path: wal.dir().to_owned(),
            offset: wal.first_index().0,
            reason: "log starts after the snapshot's next index: entries are missing (offset field holds the index)",
        });
    }
    if wal.first_index() == index.next() {
        return Ok(());
    }
    if index <= wal.last_index() && wal.term(index) == Some(snapshot.meta.term) {
        return wal.compact_prefix(index);
    }
    tracing::warn!(
        snapshot_index = index.0,
        "log does not continue the snapshot: starting it empty after the snapshot"
    );
    wal.reset(index.next())
}

impl LogStore for WalStore {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(InitialState {
            hard_state: self.hard_state,
            snapshot_meta: self.snapshot_meta.clone(),
        })
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if low < self.first_index() {
            return Err(StorageError::Compacted { index: low });
        }
        if high > self.last_index().next() {
            return Err(StorageError::Unavailable { index: high.prev() });
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        // Bound: the requested range, cut further by the byte budget.
        for i in low.0..high.0 {
            let record = self
                .wal
                .get(LogIndex(i))
                .expect("index within the log invariant");
            let entry = self.decode_entry(record)?;
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index == self.snapshot_meta.index {
            return Ok(self.snapshot_meta.term);
        }
        if index < self.first_index() {
            return Err(StorageError::Compacted { index });
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable { index });
        }
        Ok(self
            .wal
            .term(index)
            .expect("index within the log invariant"))
    }

    fn first_index(&self) -> LogIndex {
        self.snapshot_meta.index.next()
    }

    fn last_index(&self) -> LogIndex {
        self.wal.last_index()
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        if self.snapshot_meta.index == LogIndex::ZERO {
            return Ok(Snapshot::default());
        }
        let snapshot = read_snapshot(self.wal.dir()).map_err(backend)?;
        if snapshot.meta != self.snapshot_meta {
            // Only this store writes the file, so another snapshot there means the
            // directory was tampered with.
            return Err(backend(Error::Corrupt {
                path: self.wal.dir().join(SNAPSHOT_FILE_NAME),
                offset: 0,
                reason: "snapshot file does not hold the snapshot the store installed",
            }));
        }
        Ok(snapshot)
    }
}

impl WalStore {
    fn append_one(&mut self, entry: &Entry) -> Result<()> {
        let encoded;
        let (kind, payload): (RecordKind, &[u8]) = match &entry.payload {
            EntryPayload::Blank => (KIND_BLANK, &[]),
            EntryPayload::Command(data) => (KIND_COMMAND, data),
            EntryPayload::Membership {
                membership,
                context,
            } => {
                let record = MembershipRecord {
                    membership: membership.clone(),
                    context: context.clone(),
                };
                encoded = postcard::to_allocvec(&record).map_err(|source| Error::Encoding {
                    action: "encode membership entry for",
                    path: self.wal.dir().to_owned(),
                    source,
                })?;
                (KIND_MEMBERSHIP, &encoded)
            }
        };
        self.wal.append(&Record {
            index: entry.index,
            term: entry.term,
            kind,
            payload,
        })
    }
}

impl LogStoreMut for WalStore {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let last = self.last_index();
        assert!(
            first.index <= last.next(),
            "append at {:?} leaves a gap after last index {last:?}",
            first.index
        );
        assert!(
            first.index >= self.first_index(),
            "append at {:?} overwrites compacted entries (first index {:?})",
            first.index,
            self.first_index()
        );
        if first.index <= last {
            self.wal.truncate_suffix(first.index).map_err(backend)?;
        }
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                first.index.plus(offset as u64),
                "appended entries must be consecutive"
            );
            self.append_one(entry).map_err(backend)?;
        }
        Ok(())
    }

    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        self.wal
            .set_state(&encode_hard_state(&hard_state))
            .map_err(backend)?;
        self.hard_state = hard_state;
        Ok(())
    }

    fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        if snapshot.meta.index <= self.snapshot_meta.index {
            return Ok(());
        }
        let staged = WalStore::stage_snapshot(self.wal.dir(), snapshot).map_err(backend)?;
        self.install_snapshot(staged)?;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.wal.sync().map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The snapshot file must stay readable by `postcard::from_bytes` (`read_snapshot`):
    /// prefix plus data has to be byte for byte postcard's own encoding.
    #[test]
    fn snapshot_prefix_and_data_are_postcards_encoding() {
        for data_len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000, 2_100_000] {
            let snapshot = Snapshot {
                meta: SnapshotMeta {
                    index: LogIndex(u64::MAX - 3),
                    term: Term(77),
                    membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
                },
                data: Bytes::from(vec![0x5a; data_len]),
            };
            let mut ours =
                snapshot_prefix(&snapshot.meta, snapshot.data.len() as u64).expect("encode");
            ours.extend_from_slice(&snapshot.data);
            let theirs = postcard::to_allocvec(&snapshot).expect("encode");
            assert!(ours == theirs, "encodings differ for {data_len} data bytes");
        }
    }
}
