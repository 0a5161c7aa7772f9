//! WAL configuration: every limit of the crate lives here and is checked by
//! [`WalConfig::validate`] before anything touches the disk.

use crate::error::{Error, Result};
use crate::record::RECORD_HEADER_BYTES;
use crate::segment::SEGMENT_HEADER_BYTES;

/// When the WAL makes written data durable.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `sync` flushes the touched byte range to stable storage before it returns (the
    /// default, and the only safe choice for a Raft node: a vote or an acknowledgement
    /// may only leave after it).
    #[default]
    Always,
    /// `sync` does nothing. **Unsafe**: a power failure loses acknowledged writes and can
    /// make a node vote twice in a term. For tests and benchmarks only.
    Never,
}

/// Default segment size: large enough that rollover (two extra syncs) is rare, small
/// enough that compaction frees disk in useful steps.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Default number of compacted segments kept for reuse: rolls happen one at a time and a
/// node compacts about as often as it rolls, so two spares cover a roll while another
/// compaction is pending, for 128 MiB of disk at the default segment size.
pub const SPARE_SEGMENTS_DEFAULT: usize = 2;

/// Upper bound of `spare_segments_max`: spares hold disk space that nothing else uses.
pub const SPARE_SEGMENTS_LIMIT: usize = 64;

/// Segments are mapped whole and addressed with `u32` offsets in the in-memory index.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;

/// The smallest segment that holds a header and a page of records.
pub const SEGMENT_BYTES_MIN: u64 = 4096;

const _: () = assert!(SEGMENT_BYTES_MIN < SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SPARE_SEGMENTS_DEFAULT <= SPARE_SEGMENTS_LIMIT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_MIN > (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES) as u64);

/// How a [`crate::Wal`] behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// Size every segment file is preallocated to, header included.
    pub segment_bytes: u64,
    /// When data becomes durable.
    pub sync_policy: SyncPolicy,
    /// How many segments freed by prefix compaction are kept (renamed to `*.spare`) and
    /// reused for new segments instead of being deleted and created afresh. A reused file
    /// has written blocks whose pages are probably still cached, so appends into it skip
    /// the page allocation, zero-fill and extent conversion a fresh preallocated file
    /// costs (measured in docs/bench/lab-notes.md). 0 disables recycling. Spares take disk space
    /// (`segment_bytes` each) and are deleted when the WAL is opened.
    pub spare_segments_max: usize,
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            sync_policy: SyncPolicy::Always,
            spare_segments_max: SPARE_SEGMENTS_DEFAULT,
        }
    }
}

impl WalConfig {
    /// Largest record payload that fits in one segment.
    pub fn record_payload_bytes_max(&self) -> u64 {
        self.segment_bytes - (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES) as u64
    }

    /// Checks every limit.
    ///
    /// # Errors
    /// `InvalidConfig` naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes < SEGMENT_BYTES_MIN {
            return Err(Error::InvalidConfig {
                field: "segment_bytes",
                reason: "below the minimum of 4096",
            });
        }
        if self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err(Error::InvalidConfig {
                field: "segment_bytes",
                reason: "above the maximum of 4 GiB - 1",
            });
        }
        if self.segment_bytes % 8 != 0 {
            return Err(Error::InvalidConfig {
                field: "segment_bytes",
                reason: "not a multiple of 8 (records are 8-byte aligned)",
            });
        }
        if self.spare_segments_max > SPARE_SEGMENTS_LIMIT {
            return Err(Error::InvalidConfig {
                field: "spare_segments_max",
                reason: "above the maximum of 64",
            });
        }
        Ok(())
    }
}
