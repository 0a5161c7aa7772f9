//! The snapshot format: the whole state machine as one checksummed byte string.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "RAFTKVSM"
//!      8     4  version u32le (= 1)
//!     12     8  applied index u64le
//!     20     4  member count u32le
//!     24     8  entry count u64le
//!     32     8  body length u64le
//!     40     n  body: member* then entry*
//!                 member = id:u64le peer:bytes client:bytes   (ascending id)
//!                 entry  = key:bytes value:bytes              (iteration order)
//!                 bytes  = len:u32le data
//!   40+n     4  CRC32 (crc32fast, IEEE) of bytes [0, 40+n)
//! ```
//!
//! The CRC covers the header too, so any single flipped bit anywhere is detected. The
//! body order is the key space's fixed iteration order, so two replicas with the same
//! state produce identical snapshots. Restoring checks length, magic, version, CRC, then
//! every count against the bytes left before allocating; it never panics.

use std::io::{self, Write};

use bytes::{BufMut, Bytes, BytesMut};
use raft_core::{LogIndex, NodeId};
use thiserror::Error;

use super::encoding::DecodeError;
use super::keyspace::{scan_position, KeySpace};
use super::members::{read_address, MemberAddress};
use super::wire::{put_bytes, put_count, Reader, Truncated};
use super::StateMachine;

/// Identifies a raftkv state-machine snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RAFTKVSM";
/// The snapshot format version this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 40;
const CRC_BYTES: usize = 4;

/// A snapshot that cannot be restored, and why.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot is {len} bytes, shorter than the {min}-byte header and checksum")]
    TooShort { len: usize, min: usize },
    #[error("not a raftkv snapshot (magic {found:02x?})")]
    BadMagic { found: [u8; 8] },
    #[error(
        "snapshot version {version} is not supported (this build reads version {SNAPSHOT_VERSION})"
    )]
    UnsupportedVersion { version: u32 },
    #[error("snapshot is {actual} bytes but its header declares {declared}")]
    LengthMismatch { declared: u64, actual: usize },
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("snapshot body truncated: {needed} bytes needed at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error(
        "snapshot declares {count} {what}, more than the {remaining} body bytes left can hold"
    )]
    CountTooLarge {
        what: &'static str,
        count: u64,
        remaining: usize,
    },
    #[error("snapshot {what} out of order or duplicated at body offset {offset}")]
    OutOfOrder { what: &'static str, offset: usize },
    #[error("snapshot member entry invalid: {0}")]
    Member(#[source] DecodeError),
    #[error("snapshot body has {count} unexpected bytes after the last entry")]
    TrailingBytes { count: usize },
}

impl From<Truncated> for SnapshotError {
    fn from(truncated: Truncated) -> SnapshotError {
        SnapshotError::Truncated {
            offset: HEADER_BYTES + truncated.offset,
            needed: truncated.needed,
        }
    }
}

/// Bytes [`write_snapshot_to`] writes for `machine`, known before writing: a stream's
/// length goes in its header (and the WAL's blob header) ahead of the body.
pub(super) fn snapshot_len(machine: &StateMachine) -> u64 {
    let body = members_body(machine).len() + 8 * machine.keys.len() + machine.keys.data_bytes();
    (HEADER_BYTES + body + CRC_BYTES) as u64
}

/// Writes `machine` in the format above as one byte string.
pub(super) fn write_snapshot(machine: &StateMachine) -> Bytes {
    let len = usize::try_from(snapshot_len(machine)).expect("a snapshot fits in memory");
    let mut out = Vec::with_capacity(len);
    write_snapshot_to(machine, &mut out).expect("writing to a Vec cannot fail");
    Bytes::from(out)
}

/// Bytes gathered before each write to the output: large enough that a write costs
/// little per entry, small enough that a snapshot never holds more than this besides
/// the state itself (values past it are written from the state directly).
const SNAPSHOT_CHUNK_BYTES: usize = 64 * 1024;

/// Writes `machine` in the format above to `out`, [`snapshot_len`] bytes in pieces of
/// about [`SNAPSHOT_CHUNK_BYTES`]: a snapshot of any size costs a bounded buffer, not a
/// second copy of the state.
///
/// # Errors
/// Whatever `out` returns.
pub(super) fn write_snapshot_to(machine: &StateMachine, out: &mut impl Write) -> io::Result<()> {
    let members = members_body(machine);
    let body_len = members.len() + 8 * machine.keys.len() + machine.keys.data_bytes();
    let mut chunk = BytesMut::with_capacity(SNAPSHOT_CHUNK_BYTES + 1024);
    chunk.put_slice(&SNAPSHOT_MAGIC);
    chunk.put_u32_le(SNAPSHOT_VERSION);
    chunk.put_u64_le(machine.applied.get());
    put_count(&mut chunk, machine.members.len());
    chunk.put_u64_le(u64::try_from(machine.keys.len()).expect("usize fits in u64"));
    chunk.put_u64_le(u64::try_from(body_len).expect("usize fits in u64"));
    chunk.put_slice(&members);
    let mut crc = crc32fast::Hasher::new();
    let mut emit = |data: &[u8], out: &mut dyn Write| {
        crc.update(data);
        out.write_all(data)
    };
    for (key, value) in machine.keys.iter() {
        put_bytes(&mut chunk, key);
        if value.len() >= SNAPSHOT_CHUNK_BYTES {
            chunk
                .put_u32_le(u32::try_from(value.len()).expect("values are capped far below 4 GiB"));
            emit(&chunk, out)?;
            chunk.clear();
            emit(value, out)?;
            continue;
        }
        put_bytes(&mut chunk, value);
        if chunk.len() >= SNAPSHOT_CHUNK_BYTES {
            emit(&chunk, out)?;
            chunk.clear();
        }
    }
    emit(&chunk, out)?;
    out.write_all(&crc.finalize().to_le_bytes())
}

/// The address book as the body's first part.
fn members_body(machine: &StateMachine) -> BytesMut {
    let mut out = BytesMut::new();
    for (id, address) in &machine.members {
        out.put_u64_le(id.get());
        put_bytes(&mut out, address.peer.as_bytes());
        put_bytes(&mut out, address.client.as_bytes());
    }
    out
}

/// Restores a state machine from [`write_snapshot`]'s output.
pub(super) fn read_snapshot(bytes: &[u8]) -> Result<StateMachine, SnapshotError> {
    let min = HEADER_BYTES + CRC_BYTES;
    if bytes.len() < min {
        return Err(SnapshotError::TooShort {
            len: bytes.len(),
            min,
        });
    }
    let mut header = Reader::new(&bytes[..HEADER_BYTES]);
    let magic: [u8; 8] = header.take(8)?.try_into().expect("take(8) returns 8 bytes");
    if magic != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic { found: magic });
    }
    let version = header.u32()?;
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::UnsupportedVersion { version });
    }
    let (applied, member_count, entry_count, body_len) =
        (header.u64()?, header.u32()?, header.u64()?, header.u64()?);
    let declared = body_len.saturating_add((HEADER_BYTES + CRC_BYTES) as u64);
    if u64::try_from(bytes.len()) != Ok(declared) {
        return Err(SnapshotError::LengthMismatch {
            declared,
            actual: bytes.len(),
        });
    }
    let (covered, stored) = bytes.split_at(bytes.len() - CRC_BYTES);
    let stored = u32::from_le_bytes(stored.try_into().expect("split leaves exactly 4 bytes"));
    let computed = crc32fast::hash(covered);
    if stored != computed {
        return Err(SnapshotError::ChecksumMismatch { stored, computed });
    }
    let mut body = Reader::new(&covered[HEADER_BYTES..]);
    let mut machine = StateMachine::new();
    machine.applied = LogIndex(applied);
    read_snapshot_members(&mut body, u64::from(member_count), &mut machine)?;
    read_snapshot_entries(&mut body, entry_count, &mut machine.keys)?;
    match body.remaining() {
        0 => Ok(machine),
        count => Err(SnapshotError::TrailingBytes { count }),
    }
}

/// Refuses a count whose elements (each at least `element_bytes_min`) cannot fit.
fn check_count(
    body: &Reader<'_>,
    what: &'static str,
    count: u64,
    element_bytes_min: usize,
) -> Result<(), SnapshotError> {
    let remaining = body.remaining();
    if usize::try_from(count).map_or(true, |count| count > remaining / element_bytes_min) {
        return Err(SnapshotError::CountTooLarge {
            what,
            count,
            remaining,
        });
    }
    Ok(())
}

fn read_snapshot_members(
    body: &mut Reader<'_>,
    count: u64,
    machine: &mut StateMachine,
) -> Result<(), SnapshotError> {
    check_count(body, "members", count, 16)?;
    let mut previous = NodeId::NONE;
    for _ in 0..count {
        let offset = body.position();
        let id = NodeId(body.u64()?);
        if id <= previous {
            return Err(SnapshotError::OutOfOrder {
                what: "member",
                offset,
            });
        }
        previous = id;
        let peer = read_address(body).map_err(SnapshotError::Member)?;
        let client = read_address(body).map_err(SnapshotError::Member)?;
        machine.members.insert(id, MemberAddress { peer, client });
    }
    Ok(())
}

fn read_snapshot_entries(
    body: &mut Reader<'_>,
    count: u64,
    keys: &mut KeySpace,
) -> Result<(), SnapshotError> {
    check_count(body, "entries", count, 8)?;
    let mut previous: Option<(u64, &[u8])> = None;
    for _ in 0..count {
        let offset = body.position();
        let key = body.slice()?;
        let value = body.slice()?;
        let place = (scan_position(key), key);
        // Strictly ascending rules out duplicates and proves the writer's order.
        if previous.as_ref().is_some_and(|previous| place <= *previous) {
            return Err(SnapshotError::OutOfOrder {
                what: "entry",
                offset,
            });
        }
        previous = Some(place);
        keys.push_sorted(key, value);
    }
    Ok(())
}
