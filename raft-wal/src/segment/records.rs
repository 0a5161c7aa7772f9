//! The records of one segment: the scan that indexes them on open, reading them back,
//! appending (log records and state records, in one CRC chain), and truncating.
//!
//! The scan never panics on file content: it stops at the first record that does not
//! validate. Every append asserts what recovery will check of it (it fits, its index
//! follows, its term does not decrease) and extends `zero_from` and the dirty range over
//! what it wrote; a truncation zeroes everything after the cut that this incarnation
//! wrote, so no stale record is ever read back behind a later one.

use raft_core::{LogIndex, Term};

use crate::meta::STATE_BYTES_MAX;
use crate::record::{self, Record, RecordKind};
use crate::segment::{Segment, SEGMENT_HEADER_BYTES};

/// Where a scan of a segment's records stopped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanStop {
    pub offset: usize,
    pub reason: &'static str,
}

/// A state record's payload starts with its sequence number (`u64`), then the value.
pub const STATE_SEQ_BYTES: usize = 8;

fn state_payload_split(payload: &[u8]) -> (u64, &[u8]) {
    let seq = u64::from_le_bytes(
        payload[..STATE_SEQ_BYTES]
            .try_into()
            .expect("validated state payload"),
    );
    (seq, &payload[STATE_SEQ_BYTES..])
}

/// Why a checksum-valid state record is still not acceptable, if it is not.
fn open_scan_check_state(header: &record::DecodedHeader, last_term: Term) -> Option<&'static str> {
    let len = header.payload_len as usize;
    if !(STATE_SEQ_BYTES..=STATE_SEQ_BYTES + STATE_BYTES_MAX).contains(&len) {
        return Some("state record payload length out of range");
    }
    if header.term != last_term {
        return Some("state record term differs from the previous record's");
    }
    None
}

impl Segment {
    /// Walks the records from the header on, filling the index. Stops at the first record
    /// that does not validate, or whose term is lower than its predecessor's.
    pub(super) fn open_scan(&mut self) -> ScanStop {
        let mut offset = SEGMENT_HEADER_BYTES;
        // Bound: each step advances `offset` by at least one header, within the mapping.
        loop {
            let expected = self.first_index.plus(self.offsets.len() as u64);
            let header = match record::decode(&self.map[offset..], self.last_crc, expected) {
                Ok(header) => header,
                Err(reason) => return ScanStop { offset, reason },
            };
            if header.term < self.last_term {
                return ScanStop {
                    offset,
                    reason: "record term is lower than the previous record's",
                };
            }
            let offset_u32 = u32::try_from(offset).expect("segment below 4 GiB");
            if header.kind == RecordKind::WAL_STATE {
                if let Some(reason) = open_scan_check_state(&header, self.last_term) {
                    return ScanStop { offset, reason };
                }
                self.state_offsets.push(offset_u32);
            } else {
                self.offsets.push(offset_u32);
            }
            self.last_crc = header.crc;
            self.last_term = header.term;
            offset += header.encoded_len;
            self.end = offset;
        }
    }

    /// The newest state record of this segment as `(seq, value)`, borrowed from the map.
    pub fn newest_state(&self) -> Option<(u64, &[u8])> {
        let start = *self.state_offsets.last()? as usize;
        let (_, payload) = record::stored_kind_and_payload(&self.map[start..]);
        Some(state_payload_split(payload))
    }

    /// Whether a state record with a `value_len`-byte value still fits after the end.
    pub fn fits_state(&self, value_len: usize) -> bool {
        self.fits(STATE_SEQ_BYTES + value_len)
    }

    /// Writes a state record (sequence number `seq`, then `value`) after the last record,
    /// in the same CRC chain; it repeats the last record's index and term. The caller has
    /// checked [`Segment::fits_state`].
    pub fn append_state(&mut self, seq: u64, value: &[u8]) {
        assert!(
            value.len() <= STATE_BYTES_MAX,
            "state of {} bytes",
            value.len()
        );
        let mut payload = [0u8; STATE_SEQ_BYTES + STATE_BYTES_MAX];
        payload[..STATE_SEQ_BYTES].copy_from_slice(&seq.to_le_bytes());
        payload[STATE_SEQ_BYTES..STATE_SEQ_BYTES + value.len()].copy_from_slice(value);
        let payload = &payload[..STATE_SEQ_BYTES + value.len()];
        let len = record::encoded_len(payload.len());
        assert!(
            self.end + len <= self.map.len(),
            "state record does not fit; caller checks fits_state()"
        );
        let record = Record {
            index: self.last_index(),
            term: self.last_term,
            kind: RecordKind::WAL_STATE,
            payload,
        };
        let start = self.end;
        self.last_crc = record::encode(&mut self.map[start..start + len], self.last_crc, &record);
        self.state_offsets
            .push(u32::try_from(start).expect("segment below 4 GiB"));
        self.end = start + len;
        self.zero_from = self.zero_from.max(self.end);
        self.mark_dirty(start..self.end);
    }

    /// Bytes of payload that still fit after the last record.
    pub fn fits(&self, payload_len: usize) -> bool {
        self.end + record::encoded_len(payload_len) <= self.map.len()
    }

    fn position(&self, index: LogIndex) -> Option<usize> {
        let k = usize::try_from(index.0.checked_sub(self.first_index.0)?).ok()?;
        (k < self.offsets.len()).then_some(k)
    }

    /// The record at `index`, borrowed from the mapping.
    pub fn record(&self, index: LogIndex) -> Option<Record<'_>> {
        let start = self.offsets[self.position(index)?] as usize;
        let bytes = &self.map[start..];
        let (kind, payload) = record::stored_kind_and_payload(bytes);
        Some(Record {
            index,
            term: record::stored_term(bytes),
            kind,
            payload,
        })
    }

    /// The term of the record at `index`, read from its header.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        let start = self.offsets[self.position(index)?] as usize;
        Some(record::stored_term(&self.map[start..]))
    }

    /// Writes `record` after the last one. The caller has checked [`Segment::fits`], the
    /// index and the term.
    pub fn append(&mut self, record: &Record<'_>) {
        let len = record::encoded_len(record.payload.len());
        assert!(
            self.end + len <= self.map.len(),
            "record does not fit; caller checks fits()"
        );
        assert_eq!(
            record.index,
            self.last_index().next(),
            "record index must follow"
        );
        assert!(
            record.term >= self.last_term,
            "term {:?} < {:?}",
            record.term,
            self.last_term
        );
        let start = self.end;
        self.last_crc = record::encode(&mut self.map[start..start + len], self.last_crc, record);
        self.last_term = record.term;
        self.offsets
            .push(u32::try_from(start).expect("segment below 4 GiB"));
        self.end = start + len;
        self.zero_from = self.zero_from.max(self.end);
        self.mark_dirty(start..self.end);
    }

    /// Keeps the first `keep` records and zeroes everything after them, so that no stale
    /// record can ever be read back behind a later one (see FORMAT.md).
    pub fn truncate(&mut self, keep: usize) {
        assert!(
            keep <= self.offsets.len(),
            "keep {keep} > {}",
            self.offsets.len()
        );
        if keep == self.offsets.len() {
            return;
        }
        let cut = self.offsets[keep] as usize;
        self.offsets.truncate(keep);
        let states_kept = self
            .state_offsets
            .partition_point(|offset| (*offset as usize) < cut);
        self.state_offsets.truncate(states_kept);
        self.end = cut;
        self.map[cut..self.zero_from].fill(0);
        self.mark_dirty(cut..self.zero_from);
        self.zero_from = cut;
        let last = self.offsets.last().map(|offset| *offset as usize);
        // The chain continues from whichever record (log or state) ends right at the cut.
        let chain_last = last.max(self.state_offsets.last().map(|offset| *offset as usize));
        self.last_crc = match chain_last {
            Some(offset) => u32::from_le_bytes(
                self.map[offset + 4..offset + 8]
                    .try_into()
                    .expect("4 bytes"),
            ),
            None => self.seed,
        };
        self.last_term = last.map_or(Term::ZERO, |offset| {
            record::stored_term(&self.map[offset..])
        });
    }

    /// Zeroes whatever non-zero bytes lie after the last valid record (a torn write or
    /// stale data) and returns how many bytes that span covered (0 if already clean).
    pub fn clear_after_end(&mut self) -> usize {
        const CHUNK_BYTES: usize = 4096;
        let mut last_nonzero_end = self.end;
        let mut chunk_start = self.end;
        // Bound: the mapping's length, in fixed steps.
        while chunk_start < self.map.len() {
            let chunk_end =
                (chunk_start + CHUNK_BYTES - chunk_start % CHUNK_BYTES).min(self.map.len());
            if self.map[chunk_start..chunk_end].iter().any(|b| *b != 0) {
                last_nonzero_end = chunk_end;
            }
            chunk_start = chunk_end;
        }
        self.zero_from = last_nonzero_end;
        let cleared = last_nonzero_end - self.end;
        if cleared > 0 {
            self.map[self.end..last_nonzero_end].fill(0);
            self.mark_dirty(self.end..last_nonzero_end);
        }
        self.zero_from = self.end;
        self.stale_after_zero_from = false;
        cleared
    }
}
