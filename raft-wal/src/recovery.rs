//! Opening a WAL directory: find the segments, validate each one and the chain between
//! them, and cut the torn tail of the last one.
//!
//! Rules (FORMAT.md, "Recovery"):
//! - Leftover `*.tmp` files are unfinished creations or replacements, and `*.spare` files
//!   are compacted segments kept for reuse: both removed, never read as log.
//! - Every segment but the last was synced before the next one was created, so it must
//!   chain exactly into the next (indexes follow, CRC seed matches); anything else is
//!   `Corrupt`, naming the file and the offset where its valid records end.
//! - In the last segment, bytes after the last valid record are a torn or unsynced write:
//!   they are zeroed (durably) and the cut is logged.

use std::path::{Path, PathBuf};

use raft_core::LogIndex;

use crate::config::{SyncPolicy, WalConfig};
use crate::error::{Error, Result};
use crate::meta::sync_dir;
use crate::segment::{self, ScanStop, Segment};

/// Segment files in `dir`, sorted by first index; removes leftover temporary files.
fn recover_list_segments(dir: &Path) -> Result<Vec<(LogIndex, PathBuf)>> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(Error::io("list WAL directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("list WAL directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            tracing::info!(file = name, "removing unfinished temporary file");
            std::fs::remove_file(entry.path())
                .map_err(Error::io("remove temporary file", entry.path()))?;
        } else if name.ends_with(segment::SPARE_SUFFIX) {
            // A compacted segment kept for reuse by the previous process, possibly with a
            // new header already (a crash inside a recycling): never part of the log.
            tracing::info!(file = name, "removing spare segment file");
            std::fs::remove_file(entry.path())
                .map_err(Error::io("remove spare file", entry.path()))?;
        } else if let Some(first_index) = segment::parse_file_name(name) {
            found.push((first_index, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Checks that `next` continues `previous` exactly.
fn recover_check_chain(previous: &Segment, stop: &ScanStop, next: &Segment) -> Result<()> {
    let corrupt = |reason| Error::Corrupt {
        path: previous.path().to_owned(),
        offset: stop.offset as u64,
        reason,
    };
    if next.first_index() != previous.last_index().next() {
        tracing::error!(
            path = %previous.path().display(),
            offset = stop.offset,
            scan_stopped_because = stop.reason,
            next_first_index = next.first_index().0,
            "sealed segment does not reach the next segment"
        );
        return Err(corrupt("sealed segment ends before the next segment begins (damaged record or missing segment)"));
    }
    if next.prev_crc() != previous.last_crc() {
        return Err(corrupt(
            "next segment does not chain from this segment's last record",
        ));
    }
    if next.record_count() > 0 && next.term(next.first_index()) < Some(previous.last_term()) {
        return Err(corrupt(
            "next segment's first term is lower than this segment's last term",
        ));
    }
    Ok(())
}

/// Opens every segment of `dir` (creating the first one in an empty directory) and
/// returns them, validated and with the torn tail cut.
///
/// # Errors
/// `Corrupt` / `UnsupportedVersion` for damaged or foreign content, `Io` on failure.
pub fn recover(dir: &Path, config: &WalConfig) -> Result<Vec<Segment>> {
    let sync = config.sync_policy == SyncPolicy::Always;
    let listed = recover_list_segments(dir)?;
    if listed.is_empty() {
        return Ok(vec![Segment::create(
            dir,
            LogIndex(1),
            0,
            config.segment_bytes,
            sync,
        )?]);
    }
    let mut opened: Vec<(Segment, ScanStop)> = Vec::with_capacity(listed.len());
    for (first_index, path) in &listed {
        let (segment, stop) = Segment::open(path, *first_index)?;
        if let Some((previous, previous_stop)) = opened.last() {
            recover_check_chain(previous, previous_stop, &segment)?;
        }
        opened.push((segment, stop));
    }
    let last = opened.len() - 1;
    let mut segments = Vec::with_capacity(opened.len());
    for (position, (mut segment, stop)) in opened.into_iter().enumerate() {
        let cleared = segment.clear_after_end();
        if cleared > 0 && position == last {
            tracing::warn!(
                path = %segment.path().display(),
                offset = stop.offset,
                bytes = cleared,
                reason = stop.reason,
                last_index = segment.last_index().0,
                "cut torn tail of the WAL after its last valid record"
            );
        } else if cleared > 0 {
            tracing::warn!(
                path = %segment.path().display(),
                offset = stop.offset,
                bytes = cleared,
                "zeroed non-zero bytes in the unused end of a sealed segment"
            );
        }
        if sync {
            segment.sync()?;
            if position == last {
                // A process that died without its last flush (kill -9, an abort) leaves
                // those writes in the page cache, where this recovery just read them as
                // if durable; the node would then acknowledge them without a sync. Sealed
                // segments were flushed whole when the log rolled past them.
                segment
                    .file()
                    .sync_data()
                    .map_err(Error::io("sync the recovered tail", segment.path()))?;
            }
        } else {
            segment.forget_dirty();
        }
        segments.push(segment);
    }
    if sync {
        sync_dir(dir)?;
    }
    Ok(segments)
}
