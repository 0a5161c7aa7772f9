//! The log-entry encoding: a versioned envelope with the leader's stamp around a command
//! ([`WriteCommand::encode`]), compact and hand-rolled.
//!
//! ```text
//! entry v2 = 0x02 stamp:u64le command          (written by this build)
//! entry v1 = a version-1 command               (older builds; no stamp, database 0)
//! command  = version:u8 (=2) db:u32le tag:u8 body      (write tags in `write`)
//!          | version:u8 (=3) db:u32le tag:u8 body      (ACL SETUSER / DELUSER only)
//! bytes    = len:u32le data[len]
//! ```
//!
//! A follower forwards a write as its command bytes (`RAFTKV.PROPOSE`); the leader
//! stamps it and proposes the envelope. A v1 entry applies as a stamp-less entry: time
//! stands still for it, and it gives the keys it writes revision 0 (see COMMANDS.md).
//!
//! Version 3 is version 2 plus the ACL tags, written only for ACL commands: a cluster in
//! the middle of an upgrade keeps agreeing on every data entry, and a node too old for
//! users says so by version (it logs the entry as undecodable and skips it, as for any
//! version it does not know). A version-2 command with an ACL tag, or a version-3 command
//! without one, is refused.
//!
//! Version rule: a node refuses an entry or command version it does not know rather than
//! guess; a new version must be rolled out to every node before any leader proposes it.
//! Decoding never panics, never allocates for a count the input cannot hold, refuses a
//! database index at or above [`DATABASES_MAX`], and refuses a transaction inside a
//! transaction (no recursion on untrusted input beyond one level).

mod legacy;
mod read;
mod write;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::command::{DbIndex, WriteCommand, DATABASES_MAX};
use super::wire::{Reader, Truncated};

/// The envelope version this build writes.
pub const ENTRY_VERSION: u8 = 2;
/// The command version this build writes.
pub const COMMAND_VERSION: u8 = 2;
/// The command version of ACL SETUSER and DELUSER.
pub const ACL_COMMAND_VERSION: u8 = 3;
/// The version of entries (and commands) written by builds before expiry.
pub const LEGACY_VERSION: u8 = 1;
/// Bytes the envelope adds to a command.
pub const ENVELOPE_BYTES: usize = 9;

/// Bytes that are not a write command of a version this build knows.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty log entry")]
    Empty,
    #[error("log entry or command version {version} is not supported (this build reads entry versions 1 and {ENTRY_VERSION}, command versions 1 to {ACL_COMMAND_VERSION})")]
    UnsupportedVersion { version: u8 },
    #[error("unknown command tag {tag}")]
    UnknownTag { tag: u8 },
    #[error("log entry truncated: {needed} bytes needed at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("invalid {what} {value:#04x}")]
    InvalidField { what: &'static str, value: u8 },
    #[error("element count {count} cannot fit in the {remaining} bytes left")]
    CountTooLarge { count: u32, remaining: usize },
    #[error("database {db} is out of range (at most {DATABASES_MAX} databases)")]
    DatabaseOutOfRange { db: u32 },
    #[error("a transaction may not contain a transaction, a reclamation or an ACL change")]
    NestedTransaction,
    #[error("member address at offset {offset} is not UTF-8 or is too long")]
    InvalidAddress { offset: usize },
    #[error("{count} unexpected bytes after the command")]
    TrailingBytes { count: usize },
}

impl From<Truncated> for DecodeError {
    fn from(truncated: Truncated) -> DecodeError {
        DecodeError::Truncated {
            offset: truncated.offset,
            needed: truncated.needed,
        }
    }
}

/// A decoded log entry: the command and, for a v2 entry, the leader's stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Unix milliseconds, monotonic across the log (see `raft_loop::clock`).
    pub stamp: Option<u64>,
    pub command: WriteCommand,
}

impl LogEntry {
    /// The entry bytes for `command` stamped `stamp`.
    pub fn encode(stamp: u64, command: &WriteCommand) -> Bytes {
        let mut out = BytesMut::with_capacity(ENVELOPE_BYTES + write::encoded_len_hint(command));
        out.put_u8(ENTRY_VERSION);
        out.put_u64_le(stamp);
        write::encode_command(command, &mut out);
        out.freeze()
    }

    /// Decodes entry bytes of either version.
    ///
    /// # Errors
    /// [`DecodeError`] saying what is wrong; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<LogEntry, DecodeError> {
        match bytes.first() {
            None => Err(DecodeError::Empty),
            Some(&LEGACY_VERSION) => Ok(LogEntry {
                stamp: None,
                command: WriteCommand::decode(bytes)?,
            }),
            Some(&ENTRY_VERSION) => {
                let mut reader = Reader::new(&bytes[1..]);
                let stamp = reader.u64()?;
                let command = WriteCommand::decode(&bytes[ENVELOPE_BYTES..])?;
                Ok(LogEntry {
                    stamp: Some(stamp),
                    command,
                })
            }
            Some(&version) => Err(DecodeError::UnsupportedVersion { version }),
        }
    }

    /// The stamp of entry bytes, without decoding the command (the leader's clock reads
    /// every appended entry's stamp).
    pub fn peek_stamp(bytes: &[u8]) -> Option<u64> {
        if bytes.first() != Some(&ENTRY_VERSION) {
            return None;
        }
        Reader::new(&bytes[1..]).u64().ok()
    }
}

impl WriteCommand {
    /// The command's bytes, without a stamp: what a follower forwards to the leader.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(write::encoded_len_hint(self));
        write::encode_command(self, &mut out);
        out.freeze()
    }

    /// Decodes bytes written by [`WriteCommand::encode`] (or a version-1 command).
    ///
    /// # Errors
    /// [`DecodeError`] saying what is wrong; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<WriteCommand, DecodeError> {
        let mut reader = Reader::new(bytes);
        let version = reader.u8().map_err(|_| DecodeError::Empty)?;
        let command = match version {
            COMMAND_VERSION | ACL_COMMAND_VERSION => {
                let command = write::decode_command(&mut reader, false)?;
                if command.op.is_acl() != (version == ACL_COMMAND_VERSION) {
                    return Err(DecodeError::InvalidField {
                        what: "command version for its tag",
                        value: version,
                    });
                }
                command
            }
            LEGACY_VERSION => legacy::decode(&mut reader)?,
            version => return Err(DecodeError::UnsupportedVersion { version }),
        };
        match reader.remaining() {
            0 => Ok(command),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

/// Reads a database index, refusing one at or above [`DATABASES_MAX`].
fn decode_db(reader: &mut Reader<'_>) -> Result<DbIndex, DecodeError> {
    let db = reader.u32()?;
    if db >= DATABASES_MAX {
        return Err(DecodeError::DatabaseOutOfRange { db });
    }
    Ok(DbIndex(db))
}

/// Reads a count whose elements take at least `element_bytes_min` each, refusing one the
/// rest of the input cannot hold, so a forged count allocates nothing.
fn decode_count(reader: &mut Reader<'_>, element_bytes_min: usize) -> Result<usize, DecodeError> {
    let count = reader.u32()?;
    let remaining = reader.remaining();
    let count_usize = usize::try_from(count).expect("u32 fits in usize on supported targets");
    if count_usize > remaining / element_bytes_min {
        return Err(DecodeError::CountTooLarge { count, remaining });
    }
    Ok(count_usize)
}

/// Reads a byte that must be 0 or 1.
fn decode_bool(reader: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match reader.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(DecodeError::InvalidField { what, value }),
    }
}

#[cfg(test)]
mod tests;
