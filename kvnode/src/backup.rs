//! The backup file: a consistent snapshot of a running cluster's state, as `kvctl snapshot
//! save` writes it and `kvnode --restore` reads it.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "RAFTKVBK"
//!      8     4  version u32le (= 1)
//!     12     8  cluster id u64le (of the cluster it was taken from)
//!     20     8  index u64le   (the log index the state reflects)
//!     28     8  term u64le    (the term of the entry at that index)
//!     36     8  taken at, milliseconds since the Unix epoch (the taker's clock)
//!     44     8  data length u64le
//!     52     n  data: a state-machine snapshot (its own format, with its own checksum)
//!   52+n     4  CRC32 (IEEE) of bytes [0, 52+n)
//! ```
//!
//! Reading checks the length, magic, version, declared length and checksum before the
//! data is used, and says which is wrong; it never panics and never allocates more than
//! the file holds.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use raft_core::{LogIndex, Term};
use thiserror::Error;

pub const BACKUP_MAGIC: [u8; 8] = *b"RAFTKVBK";
pub const BACKUP_VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 52;
const CRC_BYTES: u64 = 4;
/// Bytes copied per read while checking or restoring (bounds memory, not the file size).
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// What a backup says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupHeader {
    pub cluster_id: u64,
    pub index: LogIndex,
    pub term: Term,
    pub taken_at_ms: u64,
    pub data_bytes: u64,
}

/// A backup file that cannot be used, and why.
#[derive(Debug, Error)]
pub enum BackupError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} is {len} bytes, shorter than a backup's {min}-byte header and checksum")]
    TooShort { path: String, len: u64, min: u64 },
    #[error("{path} is not a raftkv backup (magic {found:02x?})")]
    BadMagic { path: String, found: [u8; 8] },
    #[error(
        "{path} has backup format version {version}; this build reads version {BACKUP_VERSION}"
    )]
    UnsupportedVersion { path: String, version: u32 },
    #[error("{path} is {actual} bytes but its header declares {declared} (truncated or extended)")]
    LengthMismatch {
        path: String,
        declared: u64,
        actual: u64,
    },
    #[error("{path} is corrupt: checksum stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        path: String,
        stored: u32,
        computed: u32,
    },
}

impl BackupHeader {
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut header = [0u8; HEADER_BYTES];
        header[0..8].copy_from_slice(&BACKUP_MAGIC);
        header[8..12].copy_from_slice(&BACKUP_VERSION.to_le_bytes());
        header[12..20].copy_from_slice(&self.cluster_id.to_le_bytes());
        header[20..28].copy_from_slice(&self.index.0.to_le_bytes());
        header[28..36].copy_from_slice(&self.term.0.to_le_bytes());
        header[36..44].copy_from_slice(&self.taken_at_ms.to_le_bytes());
        header[44..52].copy_from_slice(&self.data_bytes.to_le_bytes());
        header
    }

    fn decode(path: &str, header: &[u8; HEADER_BYTES]) -> Result<BackupHeader, BackupError> {
        let u64_at = |at: usize| {
            u64::from_le_bytes(
                header[at..at + 8]
                    .try_into()
                    .expect("8 bytes in the header"),
            )
        };
        let magic: [u8; 8] = header[0..8].try_into().expect("8 bytes");
        if magic != BACKUP_MAGIC {
            return Err(BackupError::BadMagic {
                path: path.to_owned(),
                found: magic,
            });
        }
        let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if version != BACKUP_VERSION {
            return Err(BackupError::UnsupportedVersion {
                path: path.to_owned(),
                version,
            });
        }
        Ok(BackupHeader {
            cluster_id: u64_at(12),
            index: LogIndex(u64_at(20)),
            term: Term(u64_at(28)),
            taken_at_ms: u64_at(36),
            data_bytes: u64_at(44),
        })
    }
}

/// Writes a backup: the header, the data `fill` writes (exactly `header.data_bytes`), and
/// the checksum. The caller syncs and renames the file into place.
///
/// # Errors
/// Whatever writing fails with, or `fill` writing another length than declared.
pub fn write(
    out: &mut impl Write,
    header: &BackupHeader,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut sink = Checksummed {
        inner: out,
        crc: crc32fast::Hasher::new(),
        written: 0,
    };
    sink.write_all(&header.encode())?;
    fill(&mut sink)?;
    let data = sink.written - HEADER_BYTES as u64;
    if data != header.data_bytes {
        return Err(io::Error::other(format!(
            "backup data is {data} bytes, {} declared",
            header.data_bytes
        )));
    }
    let crc = sink.crc.finalize();
    sink.inner.write_all(&crc.to_le_bytes())
}

/// Checks a backup file whole (length, magic, version, checksum) and returns its header;
/// then [`data`] reads the data.
///
/// # Errors
/// [`BackupError`] naming the file and what is wrong with it.
pub fn check(path: &Path) -> Result<BackupHeader, BackupError> {
    let name = path.display().to_string();
    let io_error = |source| BackupError::Io {
        path: name.clone(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let len = file.metadata().map_err(io_error)?.len();
    let min = HEADER_BYTES as u64 + CRC_BYTES;
    if len < min {
        return Err(BackupError::TooShort {
            path: name,
            len,
            min,
        });
    }
    let mut header_bytes = [0u8; HEADER_BYTES];
    file.read_exact(&mut header_bytes).map_err(io_error)?;
    let header = BackupHeader::decode(&name, &header_bytes)?;
    let declared = min.saturating_add(header.data_bytes);
    if declared != len {
        return Err(BackupError::LengthMismatch {
            path: name,
            declared,
            actual: len,
        });
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header_bytes);
    let mut chunk = vec![0u8; COPY_CHUNK_BYTES];
    let mut left = header.data_bytes;
    while left > 0 {
        let take = usize::try_from(left.min(COPY_CHUNK_BYTES as u64)).expect("at most a chunk");
        file.read_exact(&mut chunk[..take]).map_err(io_error)?;
        crc.update(&chunk[..take]);
        left -= take as u64;
    }
    let mut stored = [0u8; 4];
    file.read_exact(&mut stored).map_err(io_error)?;
    let stored = u32::from_le_bytes(stored);
    let computed = crc.finalize();
    if stored != computed {
        return Err(BackupError::ChecksumMismatch {
            path: name,
            stored,
            computed,
        });
    }
    Ok(header)
}

/// The data of a backup [`check`] accepted.
///
/// # Errors
/// The file cannot be read.
pub fn data(path: &Path, header: &BackupHeader) -> Result<Vec<u8>, BackupError> {
    let name = path.display().to_string();
    let io_error = |source| BackupError::Io {
        path: name.clone(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    file.seek(SeekFrom::Start(HEADER_BYTES as u64))
        .map_err(io_error)?;
    let len = usize::try_from(header.data_bytes).map_err(|_| {
        io_error(io::Error::other(
            "the data is larger than this machine's memory",
        ))
    })?;
    let mut data = vec![0u8; len];
    file.read_exact(&mut data).map_err(io_error)?;
    Ok(data)
}

/// A writer that checksums and counts what passes through.
struct Checksummed<'a, W: Write> {
    inner: &'a mut W,
    crc: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> Write for Checksummed<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.crc.update(&bytes[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(data_bytes: u64) -> BackupHeader {
        BackupHeader {
            cluster_id: 7,
            index: LogIndex(42),
            term: Term(3),
            taken_at_ms: 1_700_000_000_000,
            data_bytes,
        }
    }

    fn backup_file(dir: &Path, data: &[u8]) -> std::path::PathBuf {
        let path = dir.join("backup");
        let mut file = File::create(&path).expect("create");
        write(&mut file, &header(data.len() as u64), |out| {
            out.write_all(data)
        })
        .expect("write");
        path
    }

    #[test]
    fn a_backup_reads_back_what_was_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = backup_file(dir.path(), b"state bytes");
        let read = check(&path).expect("valid");
        assert_eq!(read, header(11));
        assert_eq!(data(&path, &read).expect("data"), b"state bytes");
    }

    #[test]
    fn a_truncated_extended_or_flipped_backup_is_refused_saying_why() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = backup_file(dir.path(), &[7u8; 1000]);
        let good = std::fs::read(&path).expect("read");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() - 10].to_vec(), "declares"),
            ([good.clone(), vec![0]].concat(), "declares"),
            (good[..20].to_vec(), "shorter than"),
            (
                {
                    let mut flipped = good.clone();
                    flipped[HEADER_BYTES + 500] ^= 1;
                    flipped
                },
                "checksum",
            ),
            (
                {
                    let mut other = good.clone();
                    other[0] = b'X';
                    other
                },
                "not a raftkv backup",
            ),
            (
                {
                    let mut newer = good.clone();
                    newer[8] = 9;
                    newer
                },
                "version 9",
            ),
        ];
        for (bytes, expected) in cases {
            std::fs::write(&path, &bytes).expect("write");
            let error = check(&path).expect_err("refused").to_string();
            assert!(error.contains(expected), "{expected}: {error}");
            assert!(error.contains("backup"), "names the file: {error}");
        }
    }
}
