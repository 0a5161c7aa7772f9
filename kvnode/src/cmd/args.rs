//! Typed access to a command's arguments, with the size limits checked on the way in, and
//! the context a command is parsed in (the limits, the connection's database).

use bytes::Bytes;

use super::error::CommandError;
use crate::resp::number::{parse_i64, parse_u64};
use crate::state_machine::DbIndex;

/// Per-server caps on keys, values and transactions, checked at parse time so an
/// oversized write is refused before it reaches the Raft log, and the database count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLimits {
    /// Longest key (and KEYS/SCAN pattern) accepted, in bytes.
    pub key_bytes_max: usize,
    /// Longest value accepted, in bytes (SET, APPEND's suffix, MSET values, ECHO), and
    /// the longest value SETRANGE may create.
    pub value_bytes_max: usize,
    /// The largest log entry: a transaction whose entry would be larger is discarded.
    pub entry_bytes_max: usize,
    /// Databases clients may SELECT (`databases`): 0 to this minus one.
    pub databases: u32,
}

impl Default for CommandLimits {
    fn default() -> CommandLimits {
        CommandLimits {
            // Redis allows 512 MiB keys; a replicated store's keys live in every snapshot
            // and every SCAN reply, so the default is far lower.
            key_bytes_max: 64 * 1024,
            value_bytes_max: 64 * 1024 * 1024,
            entry_bytes_max: 2 * (64 * 1024 + 64 * 1024 * 1024 + 4096),
            databases: 16,
        }
    }
}

/// What a command is parsed against.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub limits: &'a CommandLimits,
    /// The connection's selected database, which every keyed command carries.
    pub db: DbIndex,
}

/// A key argument, checked against `key_bytes_max`.
pub(crate) fn key(arg: &Bytes, limits: &CommandLimits) -> Result<Bytes, CommandError> {
    if arg.len() > limits.key_bytes_max {
        return Err(CommandError::KeyTooLarge {
            len: arg.len(),
            max: limits.key_bytes_max,
        });
    }
    Ok(arg.clone())
}

/// Every argument as a key.
pub(crate) fn keys(args: &[Bytes], limits: &CommandLimits) -> Result<Vec<Bytes>, CommandError> {
    args.iter().map(|arg| key(arg, limits)).collect()
}

/// A value argument, checked against `value_bytes_max`.
pub(crate) fn value(arg: &Bytes, limits: &CommandLimits) -> Result<Bytes, CommandError> {
    if arg.len() > limits.value_bytes_max {
        return Err(CommandError::ValueTooLarge {
            len: arg.len(),
            max: limits.value_bytes_max,
        });
    }
    Ok(arg.clone())
}

/// A signed 64-bit integer argument, as strict as Redis.
pub(crate) fn integer(arg: &[u8]) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or(CommandError::NotInteger)
}

/// An unsigned 64-bit integer argument (cursors, node ids).
pub(crate) fn unsigned(arg: &[u8]) -> Option<u64> {
    parse_u64(arg)
}

/// A database index: an integer (else `not_integer`), then within `databases`.
pub(crate) fn database(
    arg: &[u8],
    limits: &CommandLimits,
    not_integer: CommandError,
) -> Result<DbIndex, CommandError> {
    let index = parse_i64(arg).ok_or(not_integer)?;
    u32::try_from(index)
        .ok()
        .filter(|index| *index < limits.databases)
        .map(DbIndex)
        .ok_or(CommandError::DbIndexOutOfRange)
}

/// True if `arg` spells `word`, ignoring ASCII case (option and subcommand names).
pub(crate) fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}
