//! Small metadata files written crash-safely: the two-slot state file (the caller's hard
//! state, a few dozen opaque bytes) and whole-file blobs replaced by rename (snapshots).
//!
//! State file: two fixed slots written alternately, each with a sequence number and a
//! CRC. A write goes to the slot *not* holding the newest value, so a torn write can only
//! damage the older copy: a crash leaves the old value or the new one, never garbage.
//!
//! Blob files: written to a fresh `NAME.PID.SEQ.tmp`, synced, renamed over `NAME`, then the
//! directory is synced; the rename is atomic, so a reader sees the whole old or the whole
//! new blob. Writing and renaming may happen on different threads ([`stage_blob`]).
//!
//! Never: panic on file content.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::segment::FORMAT_VERSION;

/// Largest opaque state value the state file holds.
pub const STATE_BYTES_MAX: usize = 40;

const SLOT_BYTES: usize = 64;
const STATE_MAGIC: [u8; 4] = *b"RKVS";
const BLOB_MAGIC: [u8; 4] = *b"RKVB";
const BLOB_HEADER_BYTES: usize = 16;

const _: () = assert!(16 + STATE_BYTES_MAX + 4 <= SLOT_BYTES);

/// Syncs a directory so that creations, renames and removals in it are durable.
///
/// # Errors
/// `Io` if the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("sync directory", dir))
}

/// The two-slot state file.
pub struct StateFile {
    path: PathBuf,
    file: File,
    /// Sequence number of the newest valid slot (0: nothing written yet).
    seq: u64,
    /// The slot the next write goes to: never the one holding the newest value.
    next_slot: u64,
}

fn encode_slot(seq: u64, value: &[u8]) -> [u8; SLOT_BYTES] {
    assert!(
        value.len() <= STATE_BYTES_MAX,
        "state of {} bytes",
        value.len()
    );
    let mut slot = [0u8; SLOT_BYTES];
    slot[0..4].copy_from_slice(&STATE_MAGIC);
    slot[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    slot[8..16].copy_from_slice(&seq.to_le_bytes());
    slot[16] = u8::try_from(value.len()).expect("bounded by STATE_BYTES_MAX");
    slot[20..20 + value.len()].copy_from_slice(value);
    let crc = crc32fast::hash(&slot[..SLOT_BYTES - 4]);
    slot[SLOT_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// A slot's `(seq, value)`, `Ok(None)` if it was never written (all zero), `Err` with a
/// reason if it is damaged.
fn decode_slot(path: &Path, slot: &[u8]) -> Result<Option<(u64, Vec<u8>)>, &'static str> {
    if slot.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(slot[SLOT_BYTES - 4..].try_into().expect("4 bytes"));
    if slot[0..4] != STATE_MAGIC || crc32fast::hash(&slot[..SLOT_BYTES - 4]) != crc {
        return Err("state slot checksum mismatch");
    }
    let version = u32::from_le_bytes(slot[4..8].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        tracing::error!(path = %path.display(), version, "state file of another format version");
        return Err("state slot of another format version");
    }
    let len = usize::from(slot[16]);
    if len > STATE_BYTES_MAX {
        return Err("state length out of range");
    }
    let seq = u64::from_le_bytes(slot[8..16].try_into().expect("8 bytes"));
    Ok(Some((seq, slot[20..20 + len].to_vec())))
}

impl StateFile {
    /// Opens (creating if missing) the state file and returns it with the newest value.
    ///
    /// # Errors
    /// `Corrupt` if neither slot is valid although one was written (only one slot is ever
    /// being written, so that means damage, not a crash); `Io` on failure.
    pub fn open(path: &Path, sync: bool) -> Result<(StateFile, Option<Vec<u8>>)> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::io("open state file", path))?;
        if !existed {
            file.set_len(2 * SLOT_BYTES as u64)
                .map_err(Error::io("size state file", path))?;
            if sync {
                file.sync_all()
                    .map_err(Error::io("sync state file", path))?;
                sync_dir(
                    path.parent()
                        .expect("state file lives in the WAL directory"),
                )?;
            }
        }
        let mut bytes = [0u8; 2 * SLOT_BYTES];
        file.read_exact_at(&mut bytes, 0)
            .map_err(Error::io("read state file", path))?;
        let slots = [
            decode_slot(path, &bytes[..SLOT_BYTES]),
            decode_slot(path, &bytes[SLOT_BYTES..]),
        ];
        // The slot not holding the newest value (slot 1 if the newest is in slot 0, or if the
        // file is empty, so that sequence number n starts in slot n % 2).
        let next_slot = match &slots {
            [Ok(Some((a, _))), Ok(Some((b, _)))] => u64::from(a > b),
            [Ok(Some(_)), _] => 1,
            [_, Ok(Some(_))] => 0,
            _ => 1,
        };
        let newest = match slots {
            [Ok(a), Ok(b)] => a.into_iter().chain(b).max_by_key(|(seq, _)| *seq),
            [Ok(valid), Err(_)] | [Err(_), Ok(valid)] => valid,
            [Err(reason), Err(_)] => {
                return Err(Error::Corrupt {
                    path: path.to_owned(),
                    offset: 0,
                    reason,
                })
            }
        };
        let seq = newest.as_ref().map_or(0, |(seq, _)| *seq);
        let state = StateFile {
            path: path.to_owned(),
            file,
            seq,
            next_slot,
        };
        Ok((state, newest.map(|(_, value)| value)))
    }

    /// Sequence number of the newest value in the file (0 if none).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Writes `value` with sequence number `seq` (above every one written before) into
    /// the slot not holding the newest value, then (if `sync`) fdatasyncs the file.
    ///
    /// # Errors
    /// `Io` on failure; the caller must stop.
    ///
    /// # Panics
    /// If `seq` is not above the file's newest sequence number.
    pub fn write(&mut self, seq: u64, value: &[u8], sync: bool) -> Result<()> {
        assert!(seq > self.seq, "state seq {seq} not above {}", self.seq);
        let slot_offset = self.next_slot * SLOT_BYTES as u64;
        self.file
            .write_all_at(&encode_slot(seq, value), slot_offset)
            .map_err(Error::io("write state file", &self.path))?;
        if sync {
            self.file
                .sync_data()
                .map_err(Error::io("sync state file", &self.path))?;
        }
        self.seq = seq;
        self.next_slot = 1 - self.next_slot;
        Ok(())
    }
}

/// Replaces `dir/name` with `contents` atomically and durably (temp, sync, rename, sync
/// directory). The contents get a header with magic, version, length and CRC.
///
/// # Errors
/// `Io` on failure.
pub fn write_blob(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    stage_blob(dir, name, &[contents])?.commit().map(drop)
}

/// Bytes of a staged blob written between syncs. A snapshot can be as large as the whole
/// state; synced in one go, its write-back would queue ahead of the WAL's own syncs on the
/// same disk for as long as the whole write takes (long enough to miss heartbeats), while
/// a few MiB at a time let a WAL sync in between.
const BLOB_BYTES_PER_SYNC: usize = 4 << 20;

/// A blob written and synced under a temporary name, not yet in place: the slow half of
/// [`write_blob`], which may run on another thread than the one that commits it.
#[derive(Debug)]
pub struct StagedBlob {
    dir: PathBuf,
    temp: PathBuf,
    path: PathBuf,
}

/// Numbers temporary names, so blobs staged at the same time never share a file.
static STAGE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes the concatenation of `parts` as a blob to a fresh temporary file in `dir` and
/// syncs it (a few MiB at a time); nothing a reader of `dir/name` sees changes until
/// [`StagedBlob::commit`]. A staged blob never committed is a `*.tmp` file, removed when
/// the WAL directory is next opened. Taking parts lets a caller add a prefix to a large
/// body without copying the body.
///
/// # Errors
/// `Io` on failure; `RecordTooLarge` past 4 GiB.
pub fn stage_blob(dir: &Path, name: &str, parts: &[&[u8]]) -> Result<StagedBlob> {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    stage_blob_with(dir, name, total as u64, |sink| {
        parts
            .iter()
            .try_for_each(|part| std::io::Write::write_all(sink, part))
    })
}

/// As [`stage_blob`], with the contents produced by `write`, which must write exactly
/// `len` bytes: a large blob is streamed to the file through a bounded buffer instead of
/// being built in memory first.
///
/// # Errors
/// `Io` on failure, including an error `write` returns or a length other than `len`;
/// `RecordTooLarge` past 4 GiB.
pub fn stage_blob_with(
    dir: &Path,
    name: &str,
    len: u64,
    write: impl FnOnce(&mut BlobSink) -> std::io::Result<()>,
) -> Result<StagedBlob> {
    let declared = u32::try_from(len).map_err(|_| Error::RecordTooLarge {
        size_bytes: len,
        limit_bytes: u64::from(u32::MAX),
    })?;
    let seq = STAGE_SEQ.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!("{name}.{}.{seq}.tmp", std::process::id()));
    let written = (|| {
        let file = File::create(&temp).map_err(Error::io("create", &temp))?;
        let mut sink = BlobSink {
            file,
            offset: BLOB_HEADER_BYTES as u64,
            buffer: Vec::new(),
            unsynced: 0,
            crc: crc32fast::Hasher::new(),
            paced: false,
        };
        write(&mut sink)
            .and_then(|()| sink.flush_buffer())
            .map_err(Error::io("write", &temp))?;
        let BlobSink {
            file, offset, crc, ..
        } = sink;
        let produced = offset - BLOB_HEADER_BYTES as u64;
        if produced != len {
            return Err(Error::io("write", &temp)(std::io::Error::other(format!(
                "blob writer produced {produced} bytes, {len} declared"
            ))));
        }
        let mut header = [0u8; BLOB_HEADER_BYTES];
        header[0..4].copy_from_slice(&BLOB_MAGIC);
        header[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[8..12].copy_from_slice(&declared.to_le_bytes());
        header[12..16].copy_from_slice(&crc.finalize().to_le_bytes());
        file.write_all_at(&header, 0)
            .map_err(Error::io("write", &temp))?;
        file.sync_all().map_err(Error::io("sync", &temp))
    })();
    if let Err(failure) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(failure);
    }
    Ok(StagedBlob {
        dir: dir.to_owned(),
        temp,
        path: dir.join(name),
    })
}

/// Bytes a [`BlobSink`] gathers before writing them.
const BLOB_BUFFER_BYTES: usize = 1 << 20;

/// Where [`stage_blob_with`]'s writer puts the blob's contents: buffered up to 1 MiB per
/// `write` call to the file, synced every few MiB.
pub struct BlobSink {
    file: File,
    /// Where the next write lands in the file.
    offset: u64,
    buffer: Vec<u8>,
    /// Bytes written since the last sync.
    unsynced: usize,
    crc: crc32fast::Hasher,
    /// See [`BlobSink::pace`].
    paced: bool,
}

/// Longest pause [`BlobSink::pace`] takes after one sync.
const PACE_PAUSE_MAX: Duration = Duration::from_millis(200);
/// A paced blob pauses this many times as long as each sync took.
const PACE_FACTOR: u32 = 3;

impl BlobSink {
    /// Bytes of contents taken so far (buffered or written).
    pub fn written(&self) -> u64 {
        self.offset - BLOB_HEADER_BYTES as u64 + self.buffer.len() as u64
    }

    fn write_through(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(data, self.offset)?;
        self.crc.update(data);
        self.offset += data.len() as u64;
        self.unsynced += data.len();
        if self.unsynced >= BLOB_BYTES_PER_SYNC {
            let started = Instant::now();
            self.file.sync_data()?;
            self.unsynced = 0;
            if self.paced {
                std::thread::sleep((started.elapsed() * PACE_FACTOR).min(PACE_PAUSE_MAX));
            }
        }
        Ok(())
    }

    /// From now on, after each sync wait three times as long as it took (at most 200 ms),
    /// so the blob takes at most about a quarter of the disk's time. For a writer on a
    /// background thread (a node's own snapshot of hundreds of MB) sharing the disk with a
    /// log whose syncs the node waits on: every flush a log sync or a rename issues
    /// meanwhile queues behind the blob's write-back, and several nodes writing snapshots
    /// to one disk at once would otherwise hold those syncs long enough for followers to
    /// start elections. Never on a thread that must stay responsive: this makes the whole
    /// write up to twice as long.
    pub fn pace(&mut self) {
        self.paced = true;
    }

    fn flush_buffer(&mut self) -> std::io::Result<()> {
        let buffer = std::mem::take(&mut self.buffer);
        let result = self.write_through(&buffer);
        self.buffer = buffer;
        self.buffer.clear();
        result
    }
}

impl std::io::Write for BlobSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len() + data.len() > BLOB_BUFFER_BYTES {
            self.flush_buffer()?;
        }
        if data.len() >= BLOB_BUFFER_BYTES {
            // Large pieces (a caller's whole body) go straight to the file, unbuffered.
            for chunk in data.chunks(BLOB_BYTES_PER_SYNC) {
                self.write_through(chunk)?;
            }
        } else {
            if self.buffer.capacity() == 0 {
                self.buffer.reserve_exact(BLOB_BUFFER_BYTES);
            }
            self.buffer.extend_from_slice(data);
        }
        Ok(data.len())
    }

    /// Writes what is buffered; syncing stays [`stage_blob_with`]'s business.
    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_buffer()
    }
}

impl StagedBlob {
    /// Renames the blob into place and syncs the directory: the atomic, durable switch.
    ///
    /// Returns an open handle to the blob it replaced, if any: the replaced file's blocks
    /// and cached pages are freed when that handle is closed, which for a large blob is
    /// slow enough that a caller on a busy thread closes it elsewhere.
    ///
    /// # Errors
    /// `Io` on failure (the old blob, if any, is then still in place).
    pub fn commit(self) -> Result<Option<File>> {
        let replaced = File::open(&self.path).ok();
        std::fs::rename(&self.temp, &self.path)
            .map_err(Error::io("rename into place", &self.path))?;
        sync_dir(&self.dir)?;
        Ok(replaced)
    }

    /// Deletes the staged file (best effort: a leftover is removed at the next open).
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// Reads a blob written by [`write_blob`]; `Ok(None)` if there is none.
///
/// # Errors
/// `Corrupt` if it fails its checks (it was renamed into place only once complete and
/// synced, so damage is not a crash artefact); `UnsupportedVersion`; `Io`.
pub fn read_blob(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path)(e)),
    };
    let corrupt = |offset, reason| Error::Corrupt {
        path: path.clone(),
        offset,
        reason,
    };
    if bytes.len() < BLOB_HEADER_BYTES || bytes[0..4] != BLOB_MAGIC {
        return Err(corrupt(0, "bad magic or short header"));
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path,
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let body = &bytes[BLOB_HEADER_BYTES..];
    if u64::from(len) != body.len() as u64 {
        return Err(corrupt(8, "length does not match the file size"));
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if crc32fast::hash(body) != crc {
        return Err(corrupt(BLOB_HEADER_BYTES as u64, "checksum mismatch"));
    }
    Ok(Some(body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_reopen_and_a_torn_newer_slot_falls_back_to_the_older() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let (mut state, value) = StateFile::open(&path, true).expect("open");
        assert_eq!(value, None);
        state.write(1, b"one", true).expect("write");
        state.write(2, b"two", true).expect("write");
        drop(state);
        assert_eq!(
            StateFile::open(&path, true).expect("open").1,
            Some(b"two".to_vec())
        );
        // Tear the newest slot (seq 2 lives in slot 0): the older value comes back.
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[0xff; 7], 10).expect("write");
        assert_eq!(
            StateFile::open(&path, true).expect("open").1,
            Some(b"one".to_vec())
        );
        // Both damaged: an error, not a default.
        file.write_all_at(&[0xff; 7], SLOT_BYTES as u64 + 10)
            .expect("write");
        assert!(matches!(
            StateFile::open(&path, true),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn blob_round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_blob(dir.path(), "b").expect("read"), None);
        write_blob(dir.path(), "b", b"payload").expect("write");
        write_blob(dir.path(), "b", b"payload 2").expect("write");
        assert_eq!(
            read_blob(dir.path(), "b").expect("read"),
            Some(b"payload 2".to_vec())
        );
        let mut bytes = std::fs::read(dir.path().join("b")).expect("read");
        bytes[BLOB_HEADER_BYTES] ^= 1;
        std::fs::write(dir.path().join("b"), bytes).expect("write");
        assert!(matches!(
            read_blob(dir.path(), "b"),
            Err(Error::Corrupt { .. })
        ));
    }
}
