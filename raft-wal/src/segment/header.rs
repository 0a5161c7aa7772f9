//! The segment header (FORMAT.md, "Segment file") and the chain seed of a segment's
//! first record.
//!
//! Version 3 headers carry a salt, drawn afresh for every header written, and the first
//! record's chain seed is `prev_crc` continued over the salt; version 2 headers have zero
//! salt bytes and seed the chain with `prev_crc` itself. Decoding checks the length, magic,
//! version, checksum and (version 2) zero salt bytes, and returns `Corrupt` or
//! `UnsupportedVersion`; it never panics on file content.

use std::path::Path;

use raft_core::LogIndex;

use crate::error::{Error, Result};

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
pub(super) fn new_salt() -> u32 {
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

pub(super) fn encode_header(
    first_index: LogIndex,
    prev_crc: u32,
    salt: u32,
) -> [u8; SEGMENT_HEADER_BYTES] {
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
pub(super) struct DecodedSegmentHeader {
    pub(super) first_index: LogIndex,
    pub(super) prev_crc: u32,
    /// Chain seed of the first record.
    pub(super) seed: u32,
}

/// Checks a segment header (version 3, or version 2 which has no salt).
pub(super) fn decode_header(path: &Path, bytes: &[u8]) -> Result<DecodedSegmentHeader> {
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

#[cfg(test)]
mod tests {
    use raft_core::Term;

    use super::*;
    use crate::record::{self, Record, RecordKind};

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
