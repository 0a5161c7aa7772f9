//! One log record: a fixed 32-byte header, the payload, and zero padding to 8 bytes.
//!
//! The CRC covers the header (except the CRC field itself) and the payload, and is
//! *chained*: it is computed starting from the CRC of the record before it (or from the
//! segment header's `prev_crc` for a segment's first record). A record therefore only
//! validates directly behind the very record it was written behind, which is what lets
//! recovery reject stale bytes left over from a truncation or from pages of an unsynced
//! write that reached the disk out of order (see FORMAT.md, "Crash safety").
//!
//! Nothing here panics on disk content: [`decode`] returns why a record is not valid.

use raft_core::{LogIndex, Term};

/// Size of the fixed record header.
pub const RECORD_HEADER_BYTES: usize = 32;

/// Records start at multiples of this, so header fields are naturally aligned.
pub const RECORD_ALIGN_BYTES: usize = 8;

const _: () = assert!(RECORD_HEADER_BYTES % RECORD_ALIGN_BYTES == 0);

/// What a record holds, opaque to the WAL. 0 is reserved so that zeroed space never
/// decodes as a record.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordKind(pub u8);

impl RecordKind {
    /// Reserved for the WAL's own state records (see [`crate::wal`] and FORMAT.md): the
    /// state value written into the log so that a batch and its hard state need one sync.
    /// It does not take a log index: its index field repeats the previous record's.
    pub const WAL_STATE: RecordKind = RecordKind(0xff);

    /// True for every kind a caller may write (not 0, not [`RecordKind::WAL_STATE`]).
    pub fn is_valid(self) -> bool {
        self.0 != 0 && self != RecordKind::WAL_STATE
    }
}

/// A record as written by the caller or read back from a mapping (borrowing the payload).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub index: LogIndex,
    pub term: Term,
    pub kind: RecordKind,
    pub payload: &'a [u8],
}

/// The header of a record that passed every check in [`decode`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DecodedHeader {
    pub term: Term,
    pub kind: RecordKind,
    pub payload_len: u32,
    /// This record's CRC: the seed of the next record's.
    pub crc: u32,
    /// Bytes the record occupies, padding included.
    pub encoded_len: usize,
}

/// Bytes a record with `payload_len` payload bytes occupies, padding included.
pub fn encoded_len(payload_len: usize) -> usize {
    let unpadded = RECORD_HEADER_BYTES + payload_len;
    unpadded.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES
}

fn checksum(prev_crc: u32, header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(prev_crc);
    hasher.update(&header[0..4]);
    hasher.update(&header[8..RECORD_HEADER_BYTES]);
    hasher.update(payload);
    hasher.finalize()
}

/// Writes `record` at the start of `out`, which must be exactly `encoded_len` bytes
/// (callers slice the mapping), and returns its CRC.
///
/// # Panics
/// If `out` has the wrong length or the kind is reserved (caller bugs).
pub fn encode(out: &mut [u8], prev_crc: u32, record: &Record<'_>) -> u32 {
    assert_eq!(
        out.len(),
        encoded_len(record.payload.len()),
        "record buffer size"
    );
    assert!(
        record.kind.0 != 0,
        "record kind 0 is reserved; kind {:?}",
        record.kind
    );
    let payload_len = u32::try_from(record.payload.len()).expect("payload bounded by segment size");
    let (header, rest) = out.split_at_mut(RECORD_HEADER_BYTES);
    header[0..4].copy_from_slice(&payload_len.to_le_bytes());
    header[8..16].copy_from_slice(&record.index.0.to_le_bytes());
    header[16..24].copy_from_slice(&record.term.0.to_le_bytes());
    header[24] = record.kind.0;
    header[25..32].fill(0);
    let (payload, padding) = rest.split_at_mut(record.payload.len());
    payload.copy_from_slice(record.payload);
    padding.fill(0);
    let crc = checksum(prev_crc, header, record.payload);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    crc
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4-byte slice"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8-byte slice"))
}

/// Decodes the record at the start of `bytes` (the rest of the segment), which must have
/// index `expected_index` (or, for a [`RecordKind::WAL_STATE`] record, `expected_index - 1`:
/// it repeats the index of the record before it) and chain from `prev_crc`. Returns why
/// not, if it is not valid.
pub fn decode(
    bytes: &[u8],
    prev_crc: u32,
    expected_index: LogIndex,
) -> Result<DecodedHeader, &'static str> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err("no room for a record header");
    }
    let header = &bytes[..RECORD_HEADER_BYTES];
    let payload_len = read_u32(header, 0);
    let len = usize::try_from(payload_len).map_err(|_| "payload length out of range")?;
    let total = encoded_len(len);
    if total > bytes.len() {
        return Err("record length runs past the end of the segment");
    }
    let stored_crc = read_u32(header, 4);
    let payload = &bytes[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
    if checksum(prev_crc, header, payload) != stored_crc {
        return Err("checksum mismatch");
    }
    let kind = RecordKind(header[24]);
    let index = read_u64(header, 8);
    if kind == RecordKind::WAL_STATE {
        if index.checked_add(1) != Some(expected_index.0) {
            return Err("state record index does not repeat the previous record's");
        }
    } else if index != expected_index.0 {
        return Err("record index does not follow the previous record");
    }
    if bytes[RECORD_HEADER_BYTES + len..total]
        .iter()
        .any(|b| *b != 0)
    {
        return Err("padding is not zero");
    }
    if kind.0 == 0 || header[25..32].iter().any(|b| *b != 0) {
        return Err("reserved header bytes are not zero");
    }
    Ok(DecodedHeader {
        term: Term(read_u64(header, 16)),
        kind,
        payload_len,
        crc: stored_crc,
        encoded_len: total,
    })
}

/// Reads the term of a record already validated by [`decode`].
pub fn stored_term(header: &[u8]) -> Term {
    Term(read_u64(header, 16))
}

/// Reads the kind and payload of a record already validated by [`decode`].
pub fn stored_kind_and_payload(bytes: &[u8]) -> (RecordKind, &[u8]) {
    let len = usize::try_from(read_u32(bytes, 0)).expect("validated length");
    (
        RecordKind(bytes[24]),
        &bytes[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &[u8]) -> Record<'_> {
        Record {
            index: LogIndex(7),
            term: Term(3),
            kind: RecordKind(2),
            payload,
        }
    }

    #[test]
    fn round_trips_and_pads_to_eight_bytes() {
        for len in [0usize, 1, 7, 8, 9, 100] {
            let payload = vec![0xabu8; len];
            let mut buf = vec![0u8; encoded_len(len)];
            assert_eq!(buf.len() % RECORD_ALIGN_BYTES, 0);
            let crc = encode(&mut buf, 99, &sample(&payload));
            let header = decode(&buf, 99, LogIndex(7)).expect("valid");
            assert_eq!(header.crc, crc);
            assert_eq!(header.term, Term(3));
            assert_eq!(stored_kind_and_payload(&buf), (RecordKind(2), &payload[..]));
        }
    }

    #[test]
    fn rejects_wrong_chain_wrong_index_zeroes_and_every_bit_flip() {
        let mut buf = vec![0u8; encoded_len(5)];
        encode(&mut buf, 1, &sample(b"hello"));
        assert_eq!(decode(&buf, 2, LogIndex(7)), Err("checksum mismatch"));
        assert!(decode(&buf, 1, LogIndex(8)).is_err());
        assert!(decode(&[0u8; 64], 0, LogIndex(1)).is_err());
        assert!(decode(&buf[..10], 1, LogIndex(7)).is_err());
        let header_and_payload = RECORD_HEADER_BYTES + 5;
        for bit in 0..header_and_payload * 8 {
            let mut flipped = buf.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&flipped, 1, LogIndex(7)).is_err(),
                "bit {bit} undetected"
            );
        }
    }
}
