//! One segment file: a header, then records back to back, then zeros to the preallocated
//! end. The file is preallocated with `posix_fallocate` (so a full disk is an error at
//! creation, never a SIGBUS on a sparse page) and written through a shared memory map.
//!
//! Invariants (checked where they are cheap, see [`Segment::check_invariants`]):
//! - `offsets[k]` is where the record with index `first_index + k` starts; offsets
//!   increase and the records between them are valid and chained.
//! - `state_offsets` lists, in increasing order, where the WAL's state records start
//!   (kind [`RecordKind::WAL_STATE`]); they sit in the same chain but take no index.
//! - Every byte at or after `zero_from` is zero in the mapping, or, in a recycled segment
//!   (`stale_after_zero_from`), a byte some earlier incarnation of the file wrote; and
//!   `end <= zero_from`. Such stale bytes never validate as records of this incarnation
//!   (FORMAT.md, "Recycled segments"), so only bytes this incarnation wrote need zeroing
//!   on truncation.
//! - The file is never shrunk while mapped.
//!
//! Never: panic on file content, or write outside `[SEGMENT_HEADER_BYTES, len)`.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Advice, MmapMut, UncheckedAdvice};
use raft_core::{LogIndex, Term};

use crate::error::{Error, Result};
use crate::meta::sync_dir;
use crate::meta::STATE_BYTES_MAX;
use crate::record::{self, Record, RecordKind};

/// Segment header: magic, version, salt, first index, previous CRC, header CRC.
pub const SEGMENT_HEADER_BYTES: usize = 32;

/// Identifies a raft-wal segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RKVWAL\r\n";

/// The segment format this build writes (see FORMAT.md, "Versions").
pub const FORMAT_VERSION: u32 = 3;

/// The older segment format this build still reads (and appends to, as an open tail): the
/// same records, with no salt (the header's salt bytes are zero and the chain seed of the
/// first record is `prev_crc` itself).
pub const FORMAT_VERSION_READABLE_OLDEST: u32 = 2;

/// Suffix of a spare file: a compacted segment kept for reuse, never part of the log.
pub const SPARE_SUFFIX: &str = ".spare";

const SEGMENT_SUFFIX: &str = ".seg";

/// Where a scan of a segment's records stopped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanStop {
    pub offset: usize,
    pub reason: &'static str,
}

/// A state record's payload starts with its sequence number (`u64`), then the value.
pub const STATE_SEQ_BYTES: usize = 8;

fn state_payload_split(payload: &[u8]) -> (u64, &[u8]) {
    let seq = u64::from_le_bytes(
        payload[..STATE_SEQ_BYTES]
            .try_into()
            .expect("validated state payload"),
    );
    (seq, &payload[STATE_SEQ_BYTES..])
}

/// Why a checksum-valid state record is still not acceptable, if it is not.
fn open_scan_check_state(header: &record::DecodedHeader, last_term: Term) -> Option<&'static str> {
    let len = header.payload_len as usize;
    if !(STATE_SEQ_BYTES..=STATE_SEQ_BYTES + STATE_BYTES_MAX).contains(&len) {
        return Some("state record payload length out of range");
    }
    if header.term != last_term {
        return Some("state record term differs from the previous record's");
    }
    None
}

/// An open, mapped segment.
pub struct Segment {
    path: PathBuf,
    /// Kept open for the life of the mapping, and shared with the segment's pending
    /// flushes ([`crate::Flush`]), which sync the file through it.
    file: Arc<File>,
    map: MmapMut,
    first_index: LogIndex,
    /// The CRC of the previous segment's last record (0 for a log's first segment).
    prev_crc: u32,
    /// Chain seed of the first record: [`chain_seed`] of `prev_crc` and the header's salt
    /// (version 3), or `prev_crc` itself (version 2).
    seed: u32,
    /// True if bytes at or after `zero_from` may be stale bytes of an earlier incarnation
    /// of this file (a recycled segment not yet cleaned by a recovery).
    stale_after_zero_from: bool,
    offsets: Vec<u32>,
    /// Where this segment's state records start, in order (see the module header).
    state_offsets: Vec<u32>,
    end: usize,
    last_crc: u32,
    last_term: Term,
    zero_from: usize,
    /// Bytes changed since the last sync.
    dirty: Option<Range<usize>>,
}

/// A compacted segment kept, under a spare name, for reuse as a later segment (FORMAT.md,
/// "Recycled segments"). Its file and mapping stay open, so its pages stay mapped.
pub struct Spare {
    path: PathBuf,
    file: Arc<File>,
    map: MmapMut,
    /// The highest index any incarnation of the file held: its last incarnation's last
    /// index (each incarnation starts above every index an earlier one held).
    held_index_max: LogIndex,
    /// The chain seed of its last incarnation's first record.
    seed: u32,
}

impl Spare {
    /// Whether the file may become the segment starting at `first_index`: only if every
    /// index it ever held is below `first_index - 1`, so that none of its stale records
    /// (state records repeat the index before them) can pass recovery's index check.
    pub fn recyclable_for(&self, first_index: LogIndex) -> bool {
        self.held_index_max.0.saturating_add(1) < first_index.0
    }

    /// Size of the file in bytes.
    pub fn len_bytes(&self) -> usize {
        self.map.len()
    }

    /// Deletes the spare's file (not durable until the directory is synced). Returns the
    /// spare, whose mapping keeps the file's blocks and pages until it is dropped.
    ///
    /// # Errors
    /// `Io` if the file cannot be removed.
    pub fn remove(self) -> Result<Spare> {
        std::fs::remove_file(&self.path).map_err(Error::io("remove spare", &self.path))?;
        Ok(self)
    }
}

/// The file name of the segment whose first record has `first_index`.
pub fn file_name(first_index: LogIndex) -> String {
    format!("{:020}{SEGMENT_SUFFIX}", first_index.0)
}

/// The first index a segment file name stands for, or `None` if it is not a segment name.
pub fn parse_file_name(name: &str) -> Option<LogIndex> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(LogIndex)
}

/// The file name of the `number`th spare this process made (numbered, not named by index:
/// after a reset to a lower index two spares could come from segments with one name).
pub fn spare_file_name(number: u64) -> String {
    format!("{number:020}{SPARE_SUFFIX}")
}

/// The chain seed of a version-3 segment's first record: the CRC chain continued from the
/// previous segment's last CRC over the 4 salt bytes. For a fixed `prev_crc` this is a
/// bijection of the salt (CRC-32 maps distinct 32-bit messages to distinct values), so two
/// salts never give the same seed: recycling relies on that (FORMAT.md).
pub fn chain_seed(prev_crc: u32, salt: u32) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(prev_crc);
    hasher.update(&salt.to_le_bytes());
    hasher.finalize()
}

/// A fresh salt. It need not be secret, only unlikely to repeat: the std hasher's keys come
/// from the OS once per thread and change with every `RandomState`; the clock and a
/// counter make repeats within one process impossible in practice.
fn new_salt() -> u32 {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let count = DRAWN.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let hash = std::hash::RandomState::new().hash_one((count, now, std::process::id()));
    (hash ^ (hash >> 32)) as u32
}

fn encode_header(first_index: LogIndex, prev_crc: u32, salt: u32) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&salt.to_le_bytes());
    header[16..24].copy_from_slice(&first_index.0.to_le_bytes());
    header[24..28].copy_from_slice(&prev_crc.to_le_bytes());
    let crc = crc32fast::hash(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A segment header that passed [`decode_header`].
struct DecodedSegmentHeader {
    first_index: LogIndex,
    prev_crc: u32,
    /// Chain seed of the first record.
    seed: u32,
}

/// Checks a segment header (version 3, or version 2 which has no salt).
fn decode_header(path: &Path, bytes: &[u8]) -> Result<DecodedSegmentHeader> {
    let corrupt = |offset, reason| Error::Corrupt {
        path: path.to_owned(),
        offset,
        reason,
    };
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(corrupt(0, "file is shorter than a segment header"));
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err(corrupt(0, "bad magic: not a raft-wal segment"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if !(FORMAT_VERSION_READABLE_OLDEST..=FORMAT_VERSION).contains(&version) {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let stored_crc = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[0..28]) != stored_crc {
        return Err(corrupt(0, "segment header checksum mismatch"));
    }
    let salt = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if version == FORMAT_VERSION_READABLE_OLDEST && salt != 0 {
        return Err(corrupt(
            12,
            "version-2 segment header with non-zero reserved bytes",
        ));
    }
    let first_index = LogIndex(u64::from_le_bytes(
        bytes[16..24].try_into().expect("8 bytes"),
    ));
    let prev_crc = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
    let seed = if version == FORMAT_VERSION {
        chain_seed(prev_crc, salt)
    } else {
        prev_crc
    };
    Ok(DecodedSegmentHeader {
        first_index,
        prev_crc,
        seed,
    })
}

/// A sync releases the mapped pages behind it each time the log crosses a multiple of
/// this ([`Segment::release_pages_below`]): one extra system call per MiB written.
const RELEASE_STEP_BYTES: usize = 1 << 20;
/// Page size for rounding releases down: the smallest Linux page. On a kernel with larger
/// pages `madvise` rounds the length up, releasing the page being written too, which
/// costs a fault to map it again, never data.
const RELEASE_PAGE_BYTES: usize = 4096;

fn map_file(file: &File, path: &Path) -> Result<MmapMut> {
    // SAFETY: the WAL directory is locked by this process (see `wal::DirLock`), and no code
    // shrinks a mapped file, so the mapping stays backed for its whole life. Another
    // process truncating the file behind our back is outside the contract (FORMAT.md).
    unsafe { MmapMut::map_mut(file) }.map_err(Error::io("map", path))
}

impl Segment {
    /// Creates a segment durably: a temporary file is preallocated, its header written and
    /// synced, then it is renamed into place and the directory synced. A crash leaves
    /// either no segment or a complete empty one.
    ///
    /// # Errors
    /// `Io` if the disk is full or any call fails.
    pub fn create(
        dir: &Path,
        first_index: LogIndex,
        prev_crc: u32,
        segment_bytes: u64,
        sync: bool,
    ) -> Result<Segment> {
        let path = dir.join(file_name(first_index));
        let temp = dir.join(format!("{}.tmp", file_name(first_index)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(Error::io("create segment", &temp))?;
        let len = libc::off_t::try_from(segment_bytes).expect("segment size validated below 4 GiB");
        // SAFETY: plain system call on a file descriptor we own.
        let code = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if code != 0 {
            // Best effort: the temporary file is also removed by the next open.
            let _ = std::fs::remove_file(&temp);
            return Err(Error::io("preallocate segment", &temp)(
                std::io::Error::from_raw_os_error(code),
            ));
        }
        let mut map = map_file(&file, &temp)?;
        // Before the first touch: with default readahead a fault on this fresh file pulls
        // in large page-cache folios (read_ahead_kb, up to 8 MiB), and a write to any byte
        // of a folio dirties all of it, so every msync wrote back whole folios reaching far
        // past the last record: at 64 writers the sync took 1.65 ms instead of 0.6 ms.
        // Random-access advice makes faults allocate single pages, so write-back matches
        // what was written. Only a hint: a refusal costs speed, never correctness.
        if let Err(refused) = map.advise(Advice::Random) {
            tracing::debug!(path = %temp.display(), error = %refused, "madvise(MADV_RANDOM) refused");
        }
        let salt = new_salt();
        map[..SEGMENT_HEADER_BYTES].copy_from_slice(&encode_header(first_index, prev_crc, salt));
        if sync {
            map.flush_range(0, SEGMENT_HEADER_BYTES)
                .map_err(Error::io("sync segment header", &temp))?;
            file.sync_all().map_err(Error::io("sync segment", &temp))?;
        }
        std::fs::rename(&temp, &path).map_err(Error::io("rename segment into place", &path))?;
        if sync {
            sync_dir(dir)?;
        }
        Ok(Segment::new_empty(
            path,
            Arc::new(file),
            map,
            first_index,
            prev_crc,
            chain_seed(prev_crc, salt),
        ))
    }

    /// A segment with a header and no records yet (created or recycled).
    fn new_empty(
        path: PathBuf,
        file: Arc<File>,
        map: MmapMut,
        first_index: LogIndex,
        prev_crc: u32,
        seed: u32,
    ) -> Segment {
        Segment {
            path,
            file,
            map,
            first_index,
            prev_crc,
            seed,
            stale_after_zero_from: false,
            offsets: Vec::new(),
            state_offsets: Vec::new(),
            end: SEGMENT_HEADER_BYTES,
            last_crc: seed,
            last_term: Term::ZERO,
            zero_from: SEGMENT_HEADER_BYTES,
            dirty: None,
        }
    }

    /// Turns a spare back into a segment starting at `first_index`, chained from
    /// `prev_crc`: a new header with a new salt is written into the spare and synced, then
    /// the spare is renamed into place and the directory synced. The records of the
    /// spare's earlier incarnations stay on disk behind the header and never validate as
    /// records of this one (FORMAT.md, "Recycled segments"): they all have indexes below
    /// `first_index - 1`, and the salt is chosen so that the first record's chain seed
    /// differs from the previous incarnation's. A crash before the rename leaves a spare
    /// (deleted on open); after it, a complete empty segment (its header synced first).
    ///
    /// # Errors
    /// `Io` if the header sync, the rename or the directory sync fails; the spare file may
    /// then remain (it is removed on the next open).
    ///
    /// # Panics
    /// If the spare ever held an index at or above `first_index - 1` (the caller checks
    /// [`Spare::recyclable_for`]).
    pub fn recycle(
        spare: Spare,
        dir: &Path,
        first_index: LogIndex,
        prev_crc: u32,
        sync: bool,
    ) -> Result<Segment> {
        assert!(
            spare.recyclable_for(first_index),
            "spare held index {:?}, cannot start at {first_index:?}",
            spare.held_index_max
        );
        let Spare {
            path: spare_path,
            file,
            mut map,
            seed: old_seed,
            ..
        } = spare;
        let mut salt = new_salt();
        if chain_seed(prev_crc, salt) == old_seed {
            // The seed is a bijection of the salt, so another salt gives another seed.
            salt = salt.wrapping_add(1);
        }
        let seed = chain_seed(prev_crc, salt);
        assert_ne!(seed, old_seed, "recycled segment must get a new chain seed");
        map[..SEGMENT_HEADER_BYTES].copy_from_slice(&encode_header(first_index, prev_crc, salt));
        if sync {
            // Outside the WAL's sync gate (the `flush` module), though a pending flush of the
            // file's last incarnation may share this file description: the roll that sealed
            // it flushed it whole through the gate, so such a flush finds its generation
            // durable and makes no system call that could take this one's error.
            map.flush_range(0, SEGMENT_HEADER_BYTES)
                .map_err(Error::io("sync recycled segment header", &spare_path))?;
        }
        let path = dir.join(file_name(first_index));
        std::fs::rename(&spare_path, &path).map_err(Error::io("rename spare into place", &path))?;
        if sync {
            sync_dir(dir)?;
        }
        let mut segment = Segment::new_empty(path, file, map, first_index, prev_crc, seed);
        segment.stale_after_zero_from = true;
        Ok(segment)
    }

    /// Renames this (compacted, synced) segment to a spare name, keeping its file and
    /// mapping for [`Segment::recycle`]. Not durable until the caller syncs the directory;
    /// a crash either way leaves the segment or a spare, and spares are deleted on open.
    ///
    /// # Errors
    /// `Io` if the rename fails.
    pub fn retire(self, dir: &Path, spare_number: u64) -> Result<Spare> {
        let spare_path = dir.join(spare_file_name(spare_number));
        std::fs::rename(&self.path, &spare_path).map_err(Error::io(
            "rename compacted segment to a spare",
            &spare_path,
        ))?;
        Ok(Spare {
            held_index_max: self.last_index(),
            seed: self.seed,
            path: spare_path,
            file: self.file,
            map: self.map,
        })
    }

    /// Opens and maps a segment and scans its records up to the first one that is not
    /// valid. Returns the segment and where the scan stopped.
    ///
    /// # Errors
    /// `Corrupt` or `UnsupportedVersion` for a bad header or a header that disagrees with
    /// the file name; `Io` if the file cannot be opened or mapped.
    pub fn open(path: &Path, name_index: LogIndex) -> Result<(Segment, ScanStop)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(Error::io("open segment", path))?;
        let len = file
            .metadata()
            .map_err(Error::io("stat segment", path))?
            .len();
        if len > crate::config::SEGMENT_BYTES_MAX || len < SEGMENT_HEADER_BYTES as u64 {
            return Err(Error::Corrupt {
                path: path.to_owned(),
                offset: 0,
                reason: "segment file size out of range",
            });
        }
        let map = map_file(&file, path)?;
        let DecodedSegmentHeader {
            first_index,
            prev_crc,
            seed,
        } = decode_header(path, &map)?;
        if first_index != name_index || first_index == LogIndex::ZERO {
            return Err(Error::Corrupt {
                path: path.to_owned(),
                offset: 16,
                reason: "first index in the header differs from the file name",
            });
        }
        let mut segment = Segment {
            path: path.to_owned(),
            file: Arc::new(file),
            map,
            first_index,
            prev_crc,
            seed,
            stale_after_zero_from: false,
            offsets: Vec::new(),
            state_offsets: Vec::new(),
            end: SEGMENT_HEADER_BYTES,
            last_crc: seed,
            last_term: Term::ZERO,
            zero_from: usize::try_from(len).expect("checked below 4 GiB"),
            dirty: None,
        };
        let stop = segment.open_scan();
        Ok((segment, stop))
    }

    /// Walks the records from the header on, filling the index. Stops at the first record
    /// that does not validate, or whose term is lower than its predecessor's.
    fn open_scan(&mut self) -> ScanStop {
        let mut offset = SEGMENT_HEADER_BYTES;
        // Bound: each step advances `offset` by at least one header, within the mapping.
        loop {
            let expected = self.first_index.plus(self.offsets.len() as u64);
            let header = match record::decode(&self.map[offset..], self.last_crc, expected) {
                Ok(header) => header,
                Err(reason) => return ScanStop { offset, reason },
            };
            if header.term < self.last_term {
                return ScanStop {
                    offset,
                    reason: "record term is lower than the previous record's",
                };
            }
            let offset_u32 = u32::try_from(offset).expect("segment below 4 GiB");
            if header.kind == RecordKind::WAL_STATE {
                if let Some(reason) = open_scan_check_state(&header, self.last_term) {
                    return ScanStop { offset, reason };
                }
                self.state_offsets.push(offset_u32);
            } else {
                self.offsets.push(offset_u32);
            }
            self.last_crc = header.crc;
            self.last_term = header.term;
            offset += header.encoded_len;
            self.end = offset;
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The newest state record of this segment as `(seq, value)`, borrowed from the map.
    pub fn newest_state(&self) -> Option<(u64, &[u8])> {
        let start = *self.state_offsets.last()? as usize;
        let (_, payload) = record::stored_kind_and_payload(&self.map[start..]);
        Some(state_payload_split(payload))
    }

    /// Whether a state record with a `value_len`-byte value still fits after the end.
    pub fn fits_state(&self, value_len: usize) -> bool {
        self.fits(STATE_SEQ_BYTES + value_len)
    }

    /// Writes a state record (sequence number `seq`, then `value`) after the last record,
    /// in the same CRC chain; it repeats the last record's index and term. The caller has
    /// checked [`Segment::fits_state`].
    pub fn append_state(&mut self, seq: u64, value: &[u8]) {
        assert!(
            value.len() <= STATE_BYTES_MAX,
            "state of {} bytes",
            value.len()
        );
        let mut payload = [0u8; STATE_SEQ_BYTES + STATE_BYTES_MAX];
        payload[..STATE_SEQ_BYTES].copy_from_slice(&seq.to_le_bytes());
        payload[STATE_SEQ_BYTES..STATE_SEQ_BYTES + value.len()].copy_from_slice(value);
        let payload = &payload[..STATE_SEQ_BYTES + value.len()];
        let len = record::encoded_len(payload.len());
        assert!(
            self.end + len <= self.map.len(),
            "state record does not fit; caller checks fits_state()"
        );
        let record = Record {
            index: self.last_index(),
            term: self.last_term,
            kind: RecordKind::WAL_STATE,
            payload,
        };
        let start = self.end;
        self.last_crc = record::encode(&mut self.map[start..start + len], self.last_crc, &record);
        self.state_offsets
            .push(u32::try_from(start).expect("segment below 4 GiB"));
        self.end = start + len;
        self.zero_from = self.zero_from.max(self.end);
        self.mark_dirty(start..self.end);
    }

    pub fn first_index(&self) -> LogIndex {
        self.first_index
    }

    /// The index of the last record, or `first_index - 1` if there is none.
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.first_index.0 + self.offsets.len() as u64 - 1)
    }

    pub fn prev_crc(&self) -> u32 {
        self.prev_crc
    }

    /// Size of the file (and the mapping) in bytes.
    pub fn len_bytes(&self) -> usize {
        self.map.len()
    }

    pub fn last_crc(&self) -> u32 {
        self.last_crc
    }

    pub fn last_term(&self) -> Term {
        self.last_term
    }

    pub fn record_count(&self) -> usize {
        self.offsets.len()
    }

    pub fn end_offset(&self) -> usize {
        self.end
    }

    /// Bytes of payload that still fit after the last record.
    pub fn fits(&self, payload_len: usize) -> bool {
        self.end + record::encoded_len(payload_len) <= self.map.len()
    }

    fn position(&self, index: LogIndex) -> Option<usize> {
        let k = usize::try_from(index.0.checked_sub(self.first_index.0)?).ok()?;
        (k < self.offsets.len()).then_some(k)
    }

    /// The record at `index`, borrowed from the mapping.
    pub fn record(&self, index: LogIndex) -> Option<Record<'_>> {
        let start = self.offsets[self.position(index)?] as usize;
        let bytes = &self.map[start..];
        let (kind, payload) = record::stored_kind_and_payload(bytes);
        Some(Record {
            index,
            term: record::stored_term(bytes),
            kind,
            payload,
        })
    }

    /// The term of the record at `index`, read from its header.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        let start = self.offsets[self.position(index)?] as usize;
        Some(record::stored_term(&self.map[start..]))
    }

    fn mark_dirty(&mut self, range: Range<usize>) {
        self.dirty = Some(match self.dirty.take() {
            None => range,
            Some(old) => old.start.min(range.start)..old.end.max(range.end),
        });
    }

    /// Writes `record` after the last one. The caller has checked [`Segment::fits`], the
    /// index and the term.
    pub fn append(&mut self, record: &Record<'_>) {
        let len = record::encoded_len(record.payload.len());
        assert!(
            self.end + len <= self.map.len(),
            "record does not fit; caller checks fits()"
        );
        assert_eq!(
            record.index,
            self.last_index().next(),
            "record index must follow"
        );
        assert!(
            record.term >= self.last_term,
            "term {:?} < {:?}",
            record.term,
            self.last_term
        );
        let start = self.end;
        self.last_crc = record::encode(&mut self.map[start..start + len], self.last_crc, record);
        self.last_term = record.term;
        self.offsets
            .push(u32::try_from(start).expect("segment below 4 GiB"));
        self.end = start + len;
        self.zero_from = self.zero_from.max(self.end);
        self.mark_dirty(start..self.end);
    }

    /// Keeps the first `keep` records and zeroes everything after them, so that no stale
    /// record can ever be read back behind a later one (see FORMAT.md).
    pub fn truncate(&mut self, keep: usize) {
        assert!(
            keep <= self.offsets.len(),
            "keep {keep} > {}",
            self.offsets.len()
        );
        if keep == self.offsets.len() {
            return;
        }
        let cut = self.offsets[keep] as usize;
        self.offsets.truncate(keep);
        let states_kept = self
            .state_offsets
            .partition_point(|offset| (*offset as usize) < cut);
        self.state_offsets.truncate(states_kept);
        self.end = cut;
        self.map[cut..self.zero_from].fill(0);
        self.mark_dirty(cut..self.zero_from);
        self.zero_from = cut;
        let last = self.offsets.last().map(|offset| *offset as usize);
        // The chain continues from whichever record (log or state) ends right at the cut.
        let chain_last = last.max(self.state_offsets.last().map(|offset| *offset as usize));
        self.last_crc = match chain_last {
            Some(offset) => u32::from_le_bytes(
                self.map[offset + 4..offset + 8]
                    .try_into()
                    .expect("4 bytes"),
            ),
            None => self.seed,
        };
        self.last_term = last.map_or(Term::ZERO, |offset| {
            record::stored_term(&self.map[offset..])
        });
    }

    /// Zeroes whatever non-zero bytes lie after the last valid record (a torn write or
    /// stale data) and returns how many bytes that span covered (0 if already clean).
    pub fn clear_after_end(&mut self) -> usize {
        const CHUNK_BYTES: usize = 4096;
        let mut last_nonzero_end = self.end;
        let mut chunk_start = self.end;
        // Bound: the mapping's length, in fixed steps.
        while chunk_start < self.map.len() {
            let chunk_end =
                (chunk_start + CHUNK_BYTES - chunk_start % CHUNK_BYTES).min(self.map.len());
            if self.map[chunk_start..chunk_end].iter().any(|b| *b != 0) {
                last_nonzero_end = chunk_end;
            }
            chunk_start = chunk_end;
        }
        self.zero_from = last_nonzero_end;
        let cleared = last_nonzero_end - self.end;
        if cleared > 0 {
            self.map[self.end..last_nonzero_end].fill(0);
            self.mark_dirty(self.end..last_nonzero_end);
        }
        self.zero_from = self.end;
        self.stale_after_zero_from = false;
        cleared
    }

    /// Flushes the bytes changed since the last sync to stable storage (`msync(MS_SYNC)`
    /// of that range, which on Linux is an fdatasync of the range, including the extent
    /// conversion of preallocated blocks). Only for a segment no [`crate::Flush`] refers
    /// to yet (recovery); the WAL flushes its tail with [`Segment::begin_sync`].
    ///
    /// # Errors
    /// `Io` if the flush fails; the caller must stop (fail-stop, never retry).
    pub fn sync(&mut self) -> Result<()> {
        if let Some(range) = self.dirty.take() {
            self.map
                .flush_range(range.start, range.end - range.start)
                .map_err(Error::io("sync segment", &self.path))?;
            self.sync_release_behind(&range);
        }
        Ok(())
    }

    /// Takes the bytes changed since the last sync, which the caller is about to flush
    /// through [`Segment::file`] (as a whole-file `fdatasync`), and releases the mapped
    /// pages behind them as [`Segment::sync`] does. Releasing before the flush has run
    /// is safe: dropping a page-table entry leaves the page-cache page dirty (it was
    /// marked dirty when the store faulted, and again from the entry's dirty bit), and
    /// `fdatasync` writes dirty page-cache pages whether mapped or not. Returns whether
    /// anything had changed.
    pub fn begin_sync(&mut self) -> bool {
        let Some(range) = self.dirty.take() else {
            return false;
        };
        self.sync_release_behind(&range);
        true
    }

    fn sync_release_behind(&self, range: &Range<usize>) {
        if range.start / RELEASE_STEP_BYTES != range.end / RELEASE_STEP_BYTES {
            self.release_pages_below(range.start);
        }
    }

    /// The open file behind the mapping, to flush it without the mapping.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Unmaps this process's view of the whole pages before `offset`; their contents stay
    /// in the file and the page cache. The log is written once, front to back, and read
    /// back rarely (a lagging follower, a restart), yet every page a write or a recovery
    /// scan touched stays mapped and counts toward the process's resident memory: 64 MiB
    /// per segment. A later read faults a page back in from the page cache. Only a hint:
    /// a refusal costs memory, never correctness.
    pub fn release_pages_below(&self, offset: usize) {
        let offset = offset.min(self.map.len());
        let end = offset - offset % RELEASE_PAGE_BYTES;
        if end == 0 {
            return;
        }
        // SAFETY: on a shared file mapping MADV_DONTNEED drops only this process's page
        // table entries (a dirty entry's page is marked dirty first); the next access maps
        // the same page-cache page again, so no byte anyone reads changes. `&self` is
        // enough: no reference into the released range changes either.
        let released = unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, 0, end)
        };
        if let Err(refused) = released {
            tracing::debug!(path = %self.path.display(), error = %refused, "madvise(MADV_DONTNEED) refused");
        }
    }

    /// Forgets the pending dirty range (sync policy `never`).
    pub fn forget_dirty(&mut self) {
        self.dirty = None;
    }

    /// O(records) check of the invariants in the module header.
    pub fn check_invariants(&self) {
        assert!(
            self.end <= self.zero_from,
            "end {} > zero_from {}",
            self.end,
            self.zero_from
        );
        debug_assert!(
            self.offsets.windows(2).all(|w| w[0] < w[1]),
            "offsets increase"
        );
        if self.stale_after_zero_from {
            return;
        }
        // A bounded window: scanning a whole 64 MiB mapping on every call would be too slow.
        let window_end = (self.zero_from + 4096).min(self.map.len());
        assert!(
            self.map[self.zero_from..window_end].iter().all(|b| *b == 0),
            "zeros after zero_from"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_seeds_of_distinct_salts_differ() {
        for prev_crc in [0u32, 0x1234_5678, u32::MAX] {
            let seeds: std::collections::HashSet<u32> = (0..1u32 << 16)
                .map(|salt| chain_seed(prev_crc, salt))
                .collect();
            assert_eq!(seeds.len(), 1 << 16, "prev_crc {prev_crc:#x}");
        }
    }

    /// The truncation case of FORMAT.md, Claim 6: the new incarnation rewrites records
    /// byte for byte (same index, term, payload) at the same offsets; the old records
    /// behind them still fail their chained CRC because the seeds differ.
    #[test]
    fn stale_records_behind_a_byte_identical_prefix_never_chain_under_a_new_salt() {
        let record_bytes = record::encoded_len(5);
        let encode_chain = |seed: u32, count: u64| {
            let mut buf = vec![0u8; record_bytes * 4];
            let mut crc = seed;
            for k in 0..count {
                let start = k as usize * record_bytes;
                let record = Record {
                    index: LogIndex(10 + k),
                    term: Term(1),
                    kind: RecordKind(2),
                    payload: b"hello",
                };
                crc = record::encode(&mut buf[start..start + record_bytes], crc, &record);
            }
            (buf, crc)
        };
        let prev_crc = 0xdead_beef;
        let (old, _) = encode_chain(chain_seed(prev_crc, 7), 4);
        for salt in [0u32, 6, 8, u32::MAX] {
            let (new, new_crc) = encode_chain(chain_seed(prev_crc, salt), 2);
            assert_ne!(new[4..8], old[4..8], "only the CRCs differ");
            let stale = &old[2 * record_bytes..];
            assert_eq!(
                record::decode(stale, new_crc, LogIndex(12)),
                Err("checksum mismatch"),
                "salt {salt}"
            );
        }
    }
}
