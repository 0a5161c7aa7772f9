//! One segment file: a header, then records back to back, then zeros to the preallocated
//! end. The file is preallocated with `posix_fallocate` (so a full disk is an error at
//! creation, never a SIGBUS on a sparse page) and written through a shared memory map.
//!
//! Invariants (checked where they are cheap, see [`Segment::check_invariants`]):
//! - `offsets[k]` is where the record with index `first_index + k` starts; offsets
//!   increase and the records between them are valid and chained.
//! - `state_offsets` lists, in increasing order, where the WAL's state records start
//!   (kind [`RecordKind::WAL_STATE`](crate::record::RecordKind::WAL_STATE)); they sit in
//!   the same chain but take no index.
//! - Every byte at or after `zero_from` is zero in the mapping, or, in a recycled segment
//!   (`stale_after_zero_from`), a byte some earlier incarnation of the file wrote; and
//!   `end <= zero_from`. Such stale bytes never validate as records of this incarnation
//!   (FORMAT.md, "Recycled segments"), so only bytes this incarnation wrote need zeroing
//!   on truncation.
//! - The file is never shrunk while mapped.
//!
//! Never: panic on file content, or write outside `[SEGMENT_HEADER_BYTES, len)`.
//!
//! This file holds the segment's state, creating and opening it, and its accessors; the
//! rest, one concept a file:
//! - `header`: the header's encoding and the first record's chain seed;
//! - `names`: segment and spare file names;
//! - `records`: scanning, reading, appending and truncating records;
//! - `mapping`: the memory map, the dirty range, syncs and page release;
//! - `spare`: compacted segments kept for reuse, retired and recycled.

mod header;
mod mapping;
mod names;
mod records;
mod spare;

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Advice, MmapMut};
use raft_core::{LogIndex, Term};

use crate::error::{Error, Result};
use crate::meta::sync_dir;

pub use header::{
    chain_seed, FORMAT_VERSION, FORMAT_VERSION_READABLE_OLDEST, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC,
};
pub use names::{file_name, parse_file_name, spare_file_name, SPARE_SUFFIX};
pub use records::{ScanStop, STATE_SEQ_BYTES};
pub use spare::Spare;

use header::{decode_header, encode_header, new_salt, DecodedSegmentHeader};
use mapping::map_file;

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
        // of a folio dirties all of it, so every msync would write back whole folios
        // reaching far past the last record. Random-access advice makes faults allocate
        // single pages, so write-back matches what was written. Only a hint: a refusal
        // costs speed, never correctness.
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

    pub fn path(&self) -> &Path {
        &self.path
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
