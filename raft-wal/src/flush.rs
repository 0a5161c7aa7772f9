//! Detached flushes: [`crate::Wal::begin_sync`] does the quick part of a sync on the
//! WAL's thread and returns a [`Flush`]; running the flush, on any thread, does the slow
//! durable part while the WAL goes on appending, truncating and compacting.
//!
//! A flush is an `fdatasync` of the tail segment's file, through an `Arc` of the handle
//! the segment was opened with, not an `msync` of the range `begin_sync` took: the segment
//! may be unmapped while the flush runs (a roll, a truncation, a reset), so a flush holds
//! no pointer into a mapping. On Linux `msync(MS_SYNC)` of a shared file mapping is
//! `vfs_fsync_range(file, range, datasync = 1)` and `fdatasync` is the same call over the
//! whole file; a store through the mapping marks its page-cache page dirty when it faults
//! (and write-back write-protects the page again), so `fdatasync` writes every byte stored
//! before it. Whole-file instead of ranged costs nothing here: every segment but the tail
//! is already durable, and the tail's dirty pages are the ones written since the last
//! flush, plus any written after `begin_sync`, which ride along harmlessly (`msync` and
//! `fdatasync` of a batch cost the same; docs/bench/lab-notes.md has the measurements). The handle keeps the inode open,
//! so a flush of a segment removed meanwhile succeeds; its records were discarded on
//! purpose (truncate, compact, reset), so nothing needs them durable.
//!
//! Invariants, kept by the `SyncGate` a WAL shares with its flushes:
//! - Generations: the WAL numbers each `begin_sync` that found written bytes, and the gate
//!   holds the highest number whose flush completed. Every byte written before the
//!   `begin_sync` numbered `g` is durable once the gate's durable generation is at least
//!   `g`: flush `g` synced the tail of that moment whole, and every earlier segment was
//!   made durable whole when the log rolled past it. So a later flush covers an earlier
//!   one, and a flush that finds its generation durable makes no system call.
//! - Every flush of the tail (a `Flush`, `sync`, the roll, the flush before a state-file
//!   copy) runs under the gate's lock, and the first failure is kept: every later flush
//!   fails too. Linux reports a write-back error once per open file description (`errseq`),
//!   and all flushes of a segment share one: without the lock and the kept failure, a
//!   flush on one thread could consume the error a concurrent flush needed, which would
//!   then return `Ok` for bytes that never reached the disk.
//!
//! Never: hold a pointer into a mapping, or retry a failed flush (fail-stop).

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// A started sync: running it (on any thread) makes every byte the WAL wrote before
/// [`crate::Wal::begin_sync`] durable. Under sync policy `never`, or when everything was
/// durable already, it does nothing.
///
/// Running a flush makes durable everything written before its own `begin_sync`, whatever
/// became of earlier flushes (run, still running, dropped unrun), so a caller may skip a
/// flush that a later one covers. A record that a truncate, compact or reset removed after
/// `begin_sync` is not made durable: it was discarded on purpose, and what a crash brings
/// back of it is what FORMAT.md's Claims 1 and 3 allow. Dropping the last flush of a
/// removed segment closes the file, which frees its blocks on the dropping thread.
pub struct Flush {
    target: Option<FlushTarget>,
}

struct FlushTarget {
    /// The segment's own handle (not a pointer into its mapping, which may go away).
    file: Arc<File>,
    /// The segment's path at `begin_sync`, for the error message.
    path: PathBuf,
    gate: Arc<SyncGate>,
    /// Every byte written before this flush's `begin_sync` is durable at this generation.
    generation: u64,
}

// The log-sync thread owns flushes; the WAL's thread makes them.
const _: fn() = || {
    fn send_static<T: Send + 'static>() {}
    send_static::<Flush>();
};

impl Flush {
    /// A flush with nothing to do.
    pub(crate) fn nothing() -> Flush {
        Flush { target: None }
    }

    /// A flush of `file` (the tail at generation `generation`) through `gate`.
    pub(crate) fn of(
        file: Arc<File>,
        path: PathBuf,
        gate: Arc<SyncGate>,
        generation: u64,
    ) -> Flush {
        Flush {
            target: Some(FlushTarget {
                file,
                path,
                gate,
                generation,
            }),
        }
    }

    /// Makes every byte written before this flush's `begin_sync` durable. Running it again
    /// does nothing more.
    ///
    /// # Errors
    /// `Io` naming the segment file if the flush fails, or if an earlier flush of the same
    /// WAL failed. Fail-stop: the caller must stop the process, never retry.
    pub fn run(&self) -> Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        target
            .gate
            .sync(target.generation, &target.path, || target.file.sync_data())
    }
}

impl fmt::Debug for Flush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            None => f.write_str("Flush(nothing)"),
            Some(target) => f
                .debug_struct("Flush")
                .field("path", &target.path)
                .field("generation", &target.generation)
                .finish_non_exhaustive(),
        }
    }
}

/// What a WAL and its flushes share (see the module header).
#[derive(Default)]
pub(crate) struct SyncGate {
    /// Held across every flush of a segment; true once one failed.
    failed: Mutex<bool>,
    /// The highest generation whose flush completed. Written under `failed`'s lock;
    /// read without it by `begin_sync`, which must not wait for a running flush.
    durable: AtomicU64,
}

impl SyncGate {
    /// Every byte written before the `begin_sync` numbered this is durable.
    pub(crate) fn durable_generation(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Runs `sync` (a flush making every write before generation `generation` durable)
    /// unless that generation is durable already or an earlier flush failed.
    ///
    /// # Errors
    /// `Io` naming `path` if `sync` fails, or if an earlier flush failed.
    pub(crate) fn sync(
        &self,
        generation: u64,
        path: &Path,
        sync: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<()> {
        let mut failed = self
            .failed
            .lock()
            .expect("a flush never panics holding the gate");
        if *failed {
            return Err(
                Error::io("sync segment after an earlier sync failed", path)(
                    std::io::Error::other("an earlier sync of this WAL failed"),
                ),
            );
        }
        if self.durable_generation() >= generation {
            return Ok(());
        }
        if let Err(source) = sync() {
            *failed = true;
            return Err(Error::io("sync segment", path)(source));
        }
        self.durable.fetch_max(generation, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_skips_durable_generations_and_keeps_the_first_failure() {
        let gate = SyncGate::default();
        let path = Path::new("/nowhere/1.seg");
        let mut calls = 0;
        gate.sync(2, path, || {
            calls += 1;
            Ok(())
        })
        .expect("first sync");
        assert_eq!(gate.durable_generation(), 2);
        gate.sync(1, path, || {
            calls += 1;
            Ok(())
        })
        .expect("covered");
        assert_eq!(calls, 1, "generation 1 was covered by generation 2");
        let failed = gate.sync(3, path, || Err(std::io::Error::other("disk gone")));
        assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
        let again = gate.sync(4, path, || {
            calls += 1;
            Ok(())
        });
        assert!(matches!(again, Err(Error::Io { .. })), "{again:?}");
        assert_eq!(calls, 1, "no flush runs after a failure");
        assert_eq!(gate.durable_generation(), 2);
    }
}
