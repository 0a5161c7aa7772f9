//! The write-ahead log: an ordered run of segments holding records with consecutive
//! indexes, plus the small state value, with append / truncate suffix / compact prefix /
//! reset and one durable `sync` per batch.
//!
//! Invariants (checked by [`Wal::check_invariants`] in tests):
//! - `segments` is never empty, sorted, and each segment starts right after the
//!   previous one's last record; only the last segment (the tail) is ever written.
//! - Every segment but the tail was made durable *whole* before the tail was created
//!   (policy `always`): the roll flushes the old tail's whole file, not only what it
//!   wrote since the last `begin_sync`, because the flush of that `begin_sync` may not
//!   have run yet. Hence a flush of the tail makes the whole log durable.
//! - Every byte written before the `begin_sync` numbered `g` (`flush_generation`) is
//!   durable once the sync gate's durable generation reaches `g` (see the `flush`
//!   module); `flush_generation` never falls below it.
//! - Record terms never decrease.
//! - `spares` holds at most `config.spare_segments_max` compacted segments, renamed to
//!   `*.spare`, each of which only ever held indexes below the log's first index at the
//!   time it was compacted; a spare is reused for a new segment only if every index it
//!   held is below the new segment's first index - 1 ([`Spare::recyclable_for`]).
//! - `state_seq` is the sequence number of the newest state value written, to the log
//!   (a [`crate::RecordKind::WAL_STATE`] record) or to the state file; the state file's is never
//!   above it, and the newest state record in the log never above it either.
//!
//! The state value normally travels in the log: `sync` appends it as a state record
//! behind the batch's records, so one flush makes both durable, in chain order (a
//! recovered state never refers to records that were not recovered). Before any
//! operation that destroys log bytes (truncate, compact, reset) the newest state is first
//! written to the two-slot state file and synced, so it survives the loss of its record;
//! the log up to that record is flushed first if a flush covering it may not have
//! completed, so the copy never gets ahead of the records it refers to.
//!
//! A sync comes in two halves: [`Wal::begin_sync`] (on the WAL's thread) appends the
//! state record and returns a [`Flush`], which may run on another thread while the WAL
//! goes on changing the log; [`Wal::sync`] is both halves at once. No operation here
//! waits for an earlier flush: each one either does not depend on earlier flushes having
//! completed, or flushes what it depends on itself (the roll, the state-file copy).
//!
//! Never: interpret records (that is the adapter's job, see `store`), or retry a failed
//! sync (fail-stop: the caller must stop the process).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft_core::{LogIndex, Term};

use crate::config::{SyncPolicy, WalConfig};
use crate::error::{Error, Result};
use crate::flush::{Flush, SyncGate};
use crate::meta::{sync_dir, StateFile, STATE_BYTES_MAX};
use crate::reaper::Reaper;
use crate::record::Record;
use crate::recovery::recover;
use crate::segment::{Segment, Spare};

const LOCK_FILE_NAME: &str = "LOCK";
const STATE_FILE_NAME: &str = "state";

/// An exclusive `flock` on the directory's lock file, held for the WAL's life, so two
/// processes never map the same segments.
struct DirLock {
    _file: File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("open lock file", &path))?;
        // SAFETY: plain system call on a descriptor we own.
        let code = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if code != 0 {
            return Err(Error::io(
                "lock WAL directory (is another process using it?)",
                &path,
            )(std::io::Error::last_os_error()));
        }
        Ok(DirLock { _file: file })
    }
}

/// A write-ahead log in one directory.
pub struct Wal {
    dir: PathBuf,
    config: WalConfig,
    _lock: DirLock,
    segments: Vec<Segment>,
    state_file: StateFile,
    /// The newest state value set, written at the next `sync` if `state_dirty`.
    state: Option<Vec<u8>>,
    state_dirty: bool,
    /// Sequence number of the newest state value written (see the module header).
    state_seq: u64,
    /// Compacted segments kept for reuse, newest last (see the module header).
    spares: Vec<Spare>,
    /// Spares made since open, which numbers their file names.
    spares_made: u64,
    /// Numbers the flushes of the tail that found written bytes (see the module header).
    flush_generation: u64,
    /// Shared with every [`Flush`] this WAL hands out (see the `flush` module).
    gate: Arc<SyncGate>,
    /// Frees removed segments off the caller's thread. Declared last: dropped after the
    /// segments, it waits until every file handed to it is freed.
    reaper: Reaper,
}

impl Wal {
    /// Opens the WAL in `dir`, creating the directory if it is missing, and recovers it.
    ///
    /// # Errors
    /// `InvalidConfig`; `Corrupt` or `UnsupportedVersion` for damaged or foreign content;
    /// `Io` (including a directory locked by another process).
    pub fn open(dir: impl Into<PathBuf>, config: WalConfig) -> Result<Wal> {
        config.validate()?;
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(Error::io("create WAL directory", &dir))?;
        let lock = DirLock::acquire(&dir)?;
        let sync = config.sync_policy == SyncPolicy::Always;
        let segments = recover(&dir, &config)?;
        let (state_file, file_state) = StateFile::open(&dir.join(STATE_FILE_NAME), sync)?;
        let log_state = segments.iter().rev().find_map(Segment::newest_state);
        let (state_seq, state) = match log_state {
            Some((seq, value)) if seq > state_file.seq() => (seq, Some(value.to_vec())),
            _ => (state_file.seq(), file_state),
        };
        let wal = Wal {
            dir,
            config,
            _lock: lock,
            segments,
            state_file,
            state,
            state_dirty: false,
            state_seq,
            spares: Vec::new(),
            spares_made: 0,
            // Recovery synced what it changed: everything on disk now is durable.
            flush_generation: 0,
            gate: Arc::new(SyncGate::default()),
            reaper: Reaper::start(),
        };
        wal.check_invariants();
        // The recovery scan touched every page of the log (and the tail's zeroed rest);
        // none is needed mapped now.
        for segment in &wal.segments {
            segment.release_pages_below(usize::MAX);
        }
        tracing::info!(
            dir = %wal.dir.display(),
            first_index = wal.first_index().0,
            last_index = wal.last_index().0,
            segments = wal.segments.len(),
            "opened WAL"
        );
        Ok(wal)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Drops `item` on the WAL's background thread: for the last handle to a removed or
    /// replaced file, whose blocks and cached pages are freed when it closes (see the
    /// `reaper` module).
    pub fn discard_later<T: Send + 'static>(&self, item: T) {
        self.reaper.discard(item);
    }

    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    fn syncs(&self) -> bool {
        self.config.sync_policy == SyncPolicy::Always
    }

    fn tail(&self) -> &Segment {
        self.segments.last().expect("segments is never empty")
    }

    fn tail_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("segments is never empty")
    }

    /// Index of the first record held (records below it were compacted or never written).
    pub fn first_index(&self) -> LogIndex {
        self.segments[0].first_index()
    }

    /// Index of the last record, `first_index - 1` when empty.
    pub fn last_index(&self) -> LogIndex {
        self.tail().last_index()
    }

    /// Term of the last record, `Term::ZERO` when empty.
    pub fn last_term(&self) -> Term {
        let with_records = self.segments.iter().rev().find(|s| s.record_count() > 0);
        with_records.map_or(Term::ZERO, Segment::last_term)
    }

    fn segment_of(&self, index: LogIndex) -> Option<&Segment> {
        let after = self.segments.partition_point(|s| s.first_index() <= index);
        self.segments.get(after.checked_sub(1)?)
    }

    /// The record at `index`, borrowed from the mapping; `None` outside the log.
    pub fn get(&self, index: LogIndex) -> Option<Record<'_>> {
        self.segment_of(index)?.record(index)
    }

    /// The term of the record at `index`; `None` outside the log.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        self.segment_of(index)?.term(index)
    }

    /// Appends one record after the last. Not durable until [`Wal::sync`], or until the
    /// flush of a later [`Wal::begin_sync`] has run.
    ///
    /// # Errors
    /// `RecordTooLarge` for a payload that cannot fit in a segment; `Io` if the full tail
    /// cannot be flushed or a new segment cannot be created (a full disk shows up here,
    /// never as a SIGBUS).
    ///
    /// # Panics
    /// If the index does not follow the last one, the term decreases, or the kind is 0.
    pub fn append(&mut self, record: &Record<'_>) -> Result<()> {
        let limit_bytes = self.config.record_payload_bytes_max();
        if record.payload.len() as u64 > limit_bytes {
            return Err(Error::RecordTooLarge {
                size_bytes: record.payload.len() as u64,
                limit_bytes,
            });
        }
        assert!(
            record.kind.is_valid(),
            "record kind {:?} is reserved (0, or the WAL's state kind)",
            record.kind
        );
        let expected = self.last_index().next();
        assert_eq!(
            record.index, expected,
            "appended index must follow the last one"
        );
        let last_term = self.last_term();
        assert!(
            record.term >= last_term,
            "term {:?} below last term {:?}",
            record.term,
            last_term
        );
        if !self.tail().fits(record.payload.len()) {
            self.append_roll_segment()?;
        }
        self.tail_mut().append(record);
        Ok(())
    }

    /// Seals the tail and starts a new one after it. The seal makes the tail's whole file
    /// durable, not only what it wrote since the last `begin_sync`: that `begin_sync`'s
    /// flush may still be pending on another thread (or never run), and a sealed segment
    /// must be durable whole before its successor exists (FORMAT.md, "Operations").
    fn append_roll_segment(&mut self) -> Result<()> {
        self.begin_sync_tail().run()?;
        let tail = self.tail();
        let (next, prev_crc) = (tail.last_index().next(), tail.last_crc());
        tail.release_pages_below(tail.end_offset());
        let segment = self.new_segment(next, prev_crc)?;
        self.segments.push(segment);
        Ok(())
    }

    /// A new, empty segment starting at `first_index`: the newest spare that may hold it,
    /// recycled, or else a newly created file. Spares that may not (a reset moved the log
    /// below indexes they held) or whose size differs from the configured one are deleted.
    fn new_segment(&mut self, first_index: LogIndex, prev_crc: u32) -> Result<Segment> {
        let sync = self.syncs();
        // Bound: one step per spare, each popped.
        while let Some(spare) = self.spares.pop() {
            let size_matches = spare.len_bytes() as u64 == self.config.segment_bytes;
            if size_matches && spare.recyclable_for(first_index) {
                return Segment::recycle(spare, &self.dir, first_index, prev_crc, sync);
            }
            // Unsynced removal: a spare that survives a crash is deleted on open anyway.
            let spare = spare.remove()?;
            self.reaper.discard(spare);
        }
        let create = |wal: &Wal| {
            Segment::create(
                &wal.dir,
                first_index,
                prev_crc,
                wal.config.segment_bytes,
                sync,
            )
        };
        create(self).or_else(|_| {
            // On a nearly full disk the space may still be held by segments a compaction
            // just removed: the reaper frees them off this thread, some time later. A
            // roll failing there would stop a node right after it freed the space.
            self.reaper.wait_until_freed();
            create(self)
        })
    }

    /// Removes every record at or after `from`. Later segments are deleted (durably, at
    /// once); the segment holding `from` is cut there and zeroed after the cut, which is
    /// durable at the next sync.
    ///
    /// # Errors
    /// `Io` if a segment cannot be removed.
    ///
    /// # Panics
    /// If `from` is below `first_index` (that prefix is gone) or above `last_index + 1`.
    pub fn truncate_suffix(&mut self, from: LogIndex) -> Result<()> {
        assert!(
            from >= self.first_index(),
            "truncate at {from:?} below first {:?}",
            self.first_index()
        );
        assert!(
            from <= self.last_index().next(),
            "truncate at {from:?} past end {:?}",
            self.last_index()
        );
        if from > self.last_index() {
            return Ok(());
        }
        // Needs no earlier flush to have completed: removed segments take their records
        // with them (a pending flush of one still succeeds, on its open file), and kept
        // records are durable by whichever flush covers them, as before the cut.
        self.persist_state_to_file()?;
        let mut removed = false;
        // Bound: one step per segment. Last first, so a crash leaves a chained prefix.
        while self.segments.len() > 1 && self.tail().first_index() >= from {
            let segment = self.segments.pop().expect("len > 1");
            remove_segment(&segment)?;
            self.reaper.discard(segment);
            removed = true;
        }
        if removed && self.syncs() {
            sync_dir(&self.dir)?;
        }
        let tail = self.tail_mut();
        let keep = usize::try_from(from.0 - tail.first_index().0).expect("within one segment");
        tail.truncate(keep);
        Ok(())
    }

    /// Drops whole segments whose records all lie at or below `through`. Records of the
    /// segment holding `through + 1` stay readable (compaction is by segment), so
    /// `first_index` may stay below `through + 1`. If `through` is at or past the last
    /// record, the log is [`Wal::reset`] to start at `through + 1`.
    ///
    /// # Errors
    /// `Io` if a segment cannot be removed or created.
    pub fn compact_prefix(&mut self, through: LogIndex) -> Result<()> {
        if through >= self.last_index() {
            return self.reset(through.next());
        }
        let droppable = self
            .segments
            .iter()
            .take_while(|s| s.last_index() <= through)
            .count();
        let droppable = droppable.min(self.segments.len() - 1);
        if droppable == 0 {
            return Ok(());
        }
        // Drops only sealed segments, which their roll made durable whole, so no pending
        // flush matters here.
        self.persist_state_to_file()?;
        // First first: a crash part-way leaves a suffix of segments, still chained. A
        // renamed spare is as gone as a removed file: recovery deletes spares.
        let dropped: Vec<Segment> = self.segments.drain(..droppable).collect();
        for segment in dropped {
            if self.spares.len() < self.config.spare_segments_max {
                let spare = segment.retire(&self.dir, self.spares_made)?;
                self.spares_made += 1;
                self.spares.push(spare);
            } else {
                remove_segment(&segment)?;
                self.reaper.discard(segment);
            }
        }
        if self.syncs() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Discards every record and starts the log empty at `next` (after a snapshot that
    /// replaces the whole log). Segments are deleted and the deletion made durable before
    /// the new one is created, so a crash leaves no stale records behind.
    ///
    /// # Errors
    /// `Io` on failure.
    pub fn reset(&mut self, next: LogIndex) -> Result<()> {
        assert!(next > LogIndex::ZERO, "log indexes start at 1");
        // Every record goes, so no pending flush matters (one of a removed segment still
        // succeeds, on its open file); the newest state goes to the state file first.
        self.persist_state_to_file()?;
        // Bound: one step per segment.
        while let Some(segment) = self.segments.pop() {
            remove_segment(&segment)?;
            self.reaper.discard(segment);
        }
        let sync = self.syncs();
        if sync {
            sync_dir(&self.dir)?;
        }
        let segment = self.new_segment(next, 0)?;
        self.segments.push(segment);
        Ok(())
    }

    /// The newest state value set (synced or not), `None` if never set.
    pub fn state(&self) -> Option<&[u8]> {
        self.state.as_deref()
    }

    /// Sets the small state value (at most [`STATE_BYTES_MAX`] bytes); written at the next
    /// sync or `begin_sync`, as a state record after the records, covered by the same
    /// flush.
    ///
    /// # Errors
    /// `RecordTooLarge` if the value is too long.
    pub fn set_state(&mut self, value: &[u8]) -> Result<()> {
        if value.len() > STATE_BYTES_MAX {
            return Err(Error::RecordTooLarge {
                size_bytes: value.len() as u64,
                limit_bytes: STATE_BYTES_MAX as u64,
            });
        }
        if self.state.as_deref() != Some(value) {
            self.state = Some(value.to_vec());
            self.state_dirty = true;
        }
        Ok(())
    }

    /// Makes everything written so far durable (policy `always`): [`Wal::begin_sync`],
    /// then its flush, on this thread. Covers every write before it, whatever became of
    /// the flushes of earlier `begin_sync` calls.
    ///
    /// # Errors
    /// `Io`; the caller must stop (a failed sync is never retried).
    pub fn sync(&mut self) -> Result<()> {
        self.begin_sync()?.run()
    }

    /// Does what [`Wal::sync`] does up to the flush itself, and returns the flush without
    /// waiting for it: if the state value changed, it is appended to the log as a state
    /// record behind the records, so a recovered state never refers to records that were
    /// not recovered (they precede it in the CRC chain); then the tail's changed bytes are
    /// taken, and the mapped pages behind them released. Running the returned [`Flush`],
    /// on any thread and while this WAL goes on appending, truncating, compacting or
    /// resetting, makes every byte written before this call durable (see [`Flush`]).
    /// Under policy `never`, or if all of it is durable already, the flush does nothing.
    ///
    /// A caller that sends acknowledgements or votes must wait for the flush's `run` to
    /// return `Ok` first, exactly as it waits for `sync`.
    ///
    /// # Errors
    /// `Io` if appending the state record needs a new segment and that fails (see
    /// [`Wal::append`]), or if the roll to it cannot flush the old tail.
    pub fn begin_sync(&mut self) -> Result<Flush> {
        if self.state_dirty {
            let value = self.state.take().expect("dirty implies set");
            if !self.tail().fits_state(value.len()) {
                self.append_roll_segment()?;
            }
            self.state_seq += 1;
            let seq = self.state_seq;
            self.tail_mut().append_state(seq, &value);
            self.state = Some(value);
            self.state_dirty = false;
        }
        Ok(self.begin_sync_tail())
    }

    /// The flush that makes every write so far durable: the tail's changed bytes, if
    /// any, get the next generation; a generation already durable needs no flush.
    fn begin_sync_tail(&mut self) -> Flush {
        if !self.syncs() {
            self.tail_mut().forget_dirty();
            return Flush::nothing();
        }
        if self.tail_mut().begin_sync() {
            self.flush_generation += 1;
        }
        if self.gate.durable_generation() >= self.flush_generation {
            return Flush::nothing();
        }
        let tail = self.tail();
        Flush::of(
            Arc::clone(tail.file()),
            tail.path().to_owned(),
            Arc::clone(&self.gate),
            self.flush_generation,
        )
    }

    /// Writes the newest state value to the state file (durably, under policy `always`)
    /// if the log holds the only copy, so that an operation about to destroy log bytes
    /// cannot take the newest state with it.
    ///
    /// The log through that state record is made durable first if a flush covering it
    /// may not have completed (it was appended before the `begin_sync` numbered
    /// `flush_generation`, or an earlier one): a durable copy in the state file ahead of
    /// its records would let a crash recover a commit index past the recovered log.
    fn persist_state_to_file(&mut self) -> Result<()> {
        if self.state_seq <= self.state_file.seq() {
            return Ok(());
        }
        if self.syncs() && self.gate.durable_generation() < self.flush_generation {
            self.begin_sync_tail().run()?;
        }
        let seq = self.state_seq;
        let value = self
            .segments
            .iter()
            .rev()
            .find_map(Segment::newest_state)
            .filter(|(newest, _)| *newest == seq)
            .map(|(_, value)| value.to_vec())
            .expect("the newest state is in the log when the state file is behind");
        let sync = self.syncs();
        self.state_file.write(seq, &value, sync)
    }

    /// Checks the invariants in the module header (O(segments), plus each segment's own).
    pub fn check_invariants(&self) {
        assert!(!self.segments.is_empty(), "segments is never empty");
        for pair in self.segments.windows(2) {
            assert_eq!(
                pair[1].first_index(),
                pair[0].last_index().next(),
                "segments follow"
            );
            assert_eq!(pair[1].prev_crc(), pair[0].last_crc(), "segments chain");
        }
        for segment in &self.segments {
            segment.check_invariants();
        }
        assert!(
            self.spares.len() <= self.config.spare_segments_max,
            "{} spares, at most {}",
            self.spares.len(),
            self.config.spare_segments_max
        );
        assert!(
            self.state_file.seq() <= self.state_seq,
            "state file seq {} above state seq {}",
            self.state_file.seq(),
            self.state_seq
        );
        if let Some((log_seq, _)) = self.segments.iter().rev().find_map(Segment::newest_state) {
            assert!(
                log_seq <= self.state_seq,
                "log state seq {log_seq} above state seq {}",
                self.state_seq
            );
        }
    }
}

fn remove_segment(segment: &Segment) -> Result<()> {
    std::fs::remove_file(segment.path()).map_err(Error::io("remove segment", segment.path()))
}
