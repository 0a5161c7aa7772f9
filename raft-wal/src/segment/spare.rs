//! Spares: compacted segments kept for reuse (FORMAT.md, "Recycled segments").
//!
//! A segment is retired to a spare name once compacted, and recycled as a later segment
//! with a new header whose chain seed differs from the last incarnation's. Recycling
//! requires that every index the file ever held lies below the new `first_index - 1`,
//! so none of its stale records can pass recovery (FORMAT.md, Claim 6). A crash at any
//! point leaves the file as a spare (deleted on open) or as a complete segment.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapMut;
use raft_core::LogIndex;

use crate::error::{Error, Result};
use crate::meta::sync_dir;
use crate::segment::{
    chain_seed, encode_header, file_name, new_salt, spare_file_name, Segment, SEGMENT_HEADER_BYTES,
};

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

impl Segment {
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
}
