//! The shared memory map of a segment file, the range of it changed since the last sync,
//! flushing that range, and releasing pages already written.
//!
//! Every write to the mapping behind the header widens `dirty`; a sync takes the range
//! and flushes it (or leaves the flush to a [`crate::Flush`]), and a failed flush is
//! returned, never retried (fail-stop). Releasing pages is only a hint to the kernel: a
//! refusal costs memory, never data.

use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use memmap2::{MmapMut, UncheckedAdvice};

use crate::error::{Error, Result};
use crate::segment::Segment;

/// A sync releases the mapped pages behind it each time the log crosses a multiple of
/// this ([`Segment::release_pages_below`]): one extra system call per MiB written.
const RELEASE_STEP_BYTES: usize = 1 << 20;
/// Page size for rounding releases down: the smallest Linux page. On a kernel with larger
/// pages `madvise` rounds the length up, releasing the page being written too, which
/// costs a fault to map it again, never data.
const RELEASE_PAGE_BYTES: usize = 4096;

pub(super) fn map_file(file: &File, path: &Path) -> Result<MmapMut> {
    // SAFETY: the WAL directory is locked by this process (see `wal::DirLock`), and no code
    // shrinks a mapped file, so the mapping stays backed for its whole life. Another
    // process truncating the file behind our back is outside the contract (FORMAT.md).
    unsafe { MmapMut::map_mut(file) }.map_err(Error::io("map", path))
}

impl Segment {
    pub(super) fn mark_dirty(&mut self, range: Range<usize>) {
        self.dirty = Some(match self.dirty.take() {
            None => range,
            Some(old) => old.start.min(range.start)..old.end.max(range.end),
        });
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
}
