//! The snapshot format: the whole state machine as one checksummed byte string.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "RAFTKVSM"
//!      8     4  version u32le (= 3)
//!     12     8  applied index u64le
//!     20     8  effective time u64le (Unix ms)
//!     28     4  member count u32le
//!     32     4  database count u32le (databases written: the non-blank ones)
//!     36     8  body length u64le
//!     44     n  body: member* then users then database*
//!                 member   = id:u64le peer:bytes client:bytes      (ascending id)
//!                 users    = the ACL users ([`users`])
//!                 database = index:u32le revision_floor:u64le key_count:u64le entry*
//!                                                                  (ascending index)
//!                 entry    = key:bytes value:bytes revision:u64le deadline:u64le
//!                            (iteration order; deadline u64::MAX = none)
//!                 bytes    = len:u32le data
//!   44+n     4  CRC32 (crc32fast, IEEE) of bytes [0, 44+n)
//! ```
//!
//! Version 2 (written before ACL users; still read): the same without the users section;
//! it restores with the built-in `default` user only.
//!
//! Version 1 (written before databases and expiry; still read): a 40-byte header
//! (magic, version, applied, member count u32, entry count u64, body length u64), then
//! members and `key value` entries of database 0, no time, revisions or deadlines.
//!
//! The CRC covers the header too, so any single flipped bit anywhere is detected. The
//! body order is fixed, so two replicas with the same state produce identical snapshots.
//! Restoring checks length, magic, version, CRC, then every count against the bytes left
//! before allocating, strict order, and database indexes below [`DATABASES_MAX`]; it
//! never panics.

mod users;

use std::io::{self, Write};

use bytes::{BufMut, Bytes, BytesMut};
use raft_core::{LogIndex, NodeId};
use thiserror::Error;

use super::command::{DbIndex, DATABASES_MAX};
use super::databases::{Database, Databases};
use super::encoding::DecodeError;
use super::keyspace::{scan_position, KeySpace, NO_DEADLINE};
use super::members::{read_address, MemberAddress};
use super::wire::{put_bytes, put_count, Reader, Truncated};
use super::StateMachine;

/// Identifies a raftkv state-machine snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RAFTKVSM";
/// The snapshot format version this build writes.
pub const SNAPSHOT_VERSION: u32 = 3;
/// Before ACL users: no users section.
const DATABASES_VERSION: u32 = 2;
const LEGACY_VERSION: u32 = 1;
const HEADER_BYTES: usize = 44;
const LEGACY_HEADER_BYTES: usize = 40;
const CRC_BYTES: usize = 4;
/// Framing per entry: two lengths, revision, deadline.
const ENTRY_OVERHEAD_BYTES: usize = 24;
/// Framing per database: index, floor, key count.
const DATABASE_OVERHEAD_BYTES: usize = 20;

/// A snapshot that cannot be restored, and why.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot is {len} bytes, shorter than the {min}-byte header and checksum")]
    TooShort { len: usize, min: usize },
    #[error("not a raftkv snapshot (magic {found:02x?})")]
    BadMagic { found: [u8; 8] },
    #[error(
        "snapshot version {version} is not supported (this build reads versions 1 to {SNAPSHOT_VERSION})"
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
    #[error("snapshot database {index} is out of range")]
    DatabaseOutOfRange { index: u32 },
    #[error("snapshot member entry invalid: {0}")]
    Member(#[source] DecodeError),
    #[error("snapshot ACL user at body offset {offset} is invalid: {reason}")]
    User { reason: &'static str, offset: usize },
    #[error("snapshot body has {count} unexpected bytes after the last entry")]
    TrailingBytes { count: usize },
}

impl From<Truncated> for SnapshotError {
    fn from(truncated: Truncated) -> SnapshotError {
        SnapshotError::Truncated {
            offset: truncated.offset,
            needed: truncated.needed,
        }
    }
}

fn written_databases(machine: &StateMachine) -> impl Iterator<Item = (DbIndex, &Database)> {
    machine.dbs.iter().filter(|(_, db)| !db.is_blank())
}

fn body_len(machine: &StateMachine, members: &[u8]) -> usize {
    members.len()
        + written_databases(machine)
            .map(|(_, db)| {
                DATABASE_OVERHEAD_BYTES
                    + ENTRY_OVERHEAD_BYTES * db.keys.len()
                    + db.keys.data_bytes()
            })
            .sum::<usize>()
}

/// Bytes [`write_snapshot_to`] writes for `machine`, known before writing: a stream's
/// length goes in its header (and the WAL's blob header) ahead of the body.
pub(super) fn snapshot_len(machine: &StateMachine) -> u64 {
    (HEADER_BYTES + body_len(machine, &members_body(machine)) + CRC_BYTES) as u64
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
    let mut chunk = BytesMut::with_capacity(SNAPSHOT_CHUNK_BYTES + 1024);
    chunk.put_slice(&SNAPSHOT_MAGIC);
    chunk.put_u32_le(SNAPSHOT_VERSION);
    chunk.put_u64_le(machine.applied.get());
    chunk.put_u64_le(machine.time_ms);
    put_count(&mut chunk, machine.members.len());
    put_count(&mut chunk, written_databases(machine).count());
    chunk.put_u64_le(u64::try_from(body_len(machine, &members)).expect("usize fits in u64"));
    chunk.put_slice(&members);
    let mut crc = crc32fast::Hasher::new();
    let mut emit = |data: &[u8], out: &mut dyn Write| {
        crc.update(data);
        out.write_all(data)
    };
    for (index, db) in written_databases(machine) {
        chunk.put_u32_le(index.0);
        chunk.put_u64_le(db.revision_floor);
        chunk.put_u64_le(u64::try_from(db.keys.len()).expect("usize fits in u64"));
        for slot in db.keys.slots() {
            put_bytes(&mut chunk, slot.key());
            let value = slot.value();
            if value.len() >= SNAPSHOT_CHUNK_BYTES {
                chunk.put_u32_le(
                    u32::try_from(value.len()).expect("values are capped far below 4 GiB"),
                );
                emit(&chunk, out)?;
                chunk.clear();
                emit(value, out)?;
            } else {
                put_bytes(&mut chunk, value);
            }
            chunk.put_u64_le(slot.revision());
            chunk.put_u64_le(slot.deadline().unwrap_or(NO_DEADLINE));
            if chunk.len() >= SNAPSHOT_CHUNK_BYTES {
                emit(&chunk, out)?;
                chunk.clear();
            }
        }
    }
    emit(&chunk, out)?;
    out.write_all(&crc.finalize().to_le_bytes())
}

/// The address book and the users: the body's first part.
fn members_body(machine: &StateMachine) -> BytesMut {
    let mut out = BytesMut::new();
    for (id, address) in &machine.members {
        out.put_u64_le(id.get());
        put_bytes(&mut out, address.peer.as_bytes());
        put_bytes(&mut out, address.client.as_bytes());
    }
    users::write_users(&machine.users, &mut out);
    out
}

/// What the header says.
struct Header {
    version: u32,
    applied: u64,
    time_ms: u64,
    members: u32,
    /// Databases (version 2) or entries of database 0 (version 1).
    count: u64,
    header_bytes: usize,
}

fn read_header(bytes: &[u8]) -> Result<Header, SnapshotError> {
    let min = LEGACY_HEADER_BYTES + CRC_BYTES;
    if bytes.len() < min {
        return Err(SnapshotError::TooShort {
            len: bytes.len(),
            min,
        });
    }
    let mut header = Reader::new(bytes);
    let magic: [u8; 8] = header.take(8)?.try_into().expect("take(8) returns 8 bytes");
    if magic != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic { found: magic });
    }
    let version = header.u32()?;
    let parsed = match version {
        SNAPSHOT_VERSION | DATABASES_VERSION => {
            if bytes.len() < HEADER_BYTES + CRC_BYTES {
                return Err(SnapshotError::TooShort {
                    len: bytes.len(),
                    min: HEADER_BYTES + CRC_BYTES,
                });
            }
            let (applied, time_ms, members) = (header.u64()?, header.u64()?, header.u32()?);
            let count = u64::from(header.u32()?);
            (applied, time_ms, members, count, HEADER_BYTES)
        }
        LEGACY_VERSION => {
            let (applied, members, count) = (header.u64()?, header.u32()?, header.u64()?);
            (applied, 0, members, count, LEGACY_HEADER_BYTES)
        }
        version => return Err(SnapshotError::UnsupportedVersion { version }),
    };
    let body_len = header.u64()?;
    let declared = body_len.saturating_add((parsed.4 + CRC_BYTES) as u64);
    if u64::try_from(bytes.len()) != Ok(declared) {
        return Err(SnapshotError::LengthMismatch {
            declared,
            actual: bytes.len(),
        });
    }
    Ok(Header {
        version,
        applied: parsed.0,
        time_ms: parsed.1,
        members: parsed.2,
        count: parsed.3,
        header_bytes: parsed.4,
    })
}

/// Restores a state machine from [`write_snapshot`]'s output (or a version-1 snapshot).
pub(super) fn read_snapshot(bytes: &[u8]) -> Result<StateMachine, SnapshotError> {
    let header = read_header(bytes)?;
    let (covered, stored) = bytes.split_at(bytes.len() - CRC_BYTES);
    let stored = u32::from_le_bytes(stored.try_into().expect("split leaves exactly 4 bytes"));
    let computed = crc32fast::hash(covered);
    if stored != computed {
        return Err(SnapshotError::ChecksumMismatch { stored, computed });
    }
    let mut body = Reader::new(&covered[header.header_bytes..]);
    let mut machine = StateMachine::new();
    machine.applied = LogIndex(header.applied);
    machine.time_ms = header.time_ms;
    let at_body = |error: SnapshotError| match error {
        SnapshotError::Truncated { offset, needed } => SnapshotError::Truncated {
            offset: header.header_bytes + offset,
            needed,
        },
        other => other,
    };
    read_snapshot_members(&mut body, u64::from(header.members), &mut machine).map_err(at_body)?;
    if header.version == SNAPSHOT_VERSION {
        machine.users = std::sync::Arc::new(users::read_users(&mut body).map_err(at_body)?);
    }
    let dbs = if header.version == LEGACY_VERSION {
        let mut keys = KeySpace::default();
        read_snapshot_entries(&mut body, header.count, &mut keys, false).map_err(at_body)?;
        vec![Database {
            keys,
            revision_floor: 0,
        }]
    } else {
        read_snapshot_databases(&mut body, header.count).map_err(at_body)?
    };
    machine.dbs = Databases::from_vec(dbs);
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

fn read_snapshot_databases(
    body: &mut Reader<'_>,
    count: u64,
) -> Result<Vec<Database>, SnapshotError> {
    check_count(body, "databases", count, DATABASE_OVERHEAD_BYTES)?;
    let mut dbs: Vec<Database> = Vec::new();
    for _ in 0..count {
        let offset = body.position();
        let index = body.u32()?;
        if index >= DATABASES_MAX {
            return Err(SnapshotError::DatabaseOutOfRange { index });
        }
        if (index as usize) < dbs.len() {
            return Err(SnapshotError::OutOfOrder {
                what: "database",
                offset,
            });
        }
        let revision_floor = body.u64()?;
        let entries = body.u64()?;
        let mut keys = KeySpace::default();
        read_snapshot_entries(body, entries, &mut keys, true)?;
        // Bounded: each database read consumed at least its 20-byte header, and
        // `check_count` proved the count fits; the gaps are blank databases.
        dbs.resize_with(index as usize, Database::default);
        dbs.push(Database {
            keys,
            revision_floor,
        });
    }
    Ok(dbs)
}

fn read_snapshot_entries(
    body: &mut Reader<'_>,
    count: u64,
    keys: &mut KeySpace,
    with_metadata: bool,
) -> Result<(), SnapshotError> {
    let entry_bytes_min = if with_metadata {
        ENTRY_OVERHEAD_BYTES
    } else {
        8
    };
    check_count(body, "entries", count, entry_bytes_min)?;
    let mut previous: Option<(u64, &[u8])> = None;
    for _ in 0..count {
        let offset = body.position();
        let key = body.slice()?;
        let value = body.slice()?;
        let (revision, deadline) = if with_metadata {
            (body.u64()?, body.u64()?)
        } else {
            (0, NO_DEADLINE)
        };
        let place = (scan_position(key), key);
        // Strictly ascending rules out duplicates and proves the writer's order.
        if previous.as_ref().is_some_and(|previous| place <= *previous) {
            return Err(SnapshotError::OutOfOrder {
                what: "entry",
                offset,
            });
        }
        previous = Some(place);
        let deadline = (deadline != NO_DEADLINE).then_some(deadline);
        keys.push_sorted(key, value, revision, deadline);
    }
    Ok(())
}
