//! Typed access to a command's arguments, with the size limits checked on the way in.

use bytes::Bytes;

use super::error::CommandError;
use crate::resp::number::{parse_i64, parse_u64};

/// Per-server caps on keys and values, checked at parse time so an oversized write is
/// refused before it reaches the Raft log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLimits {
    /// Longest key (and KEYS/SCAN pattern) accepted, in bytes.
    pub key_bytes_max: usize,
    /// Longest value accepted, in bytes (SET, APPEND's suffix, MSET values, ECHO).
    pub value_bytes_max: usize,
}

impl Default for CommandLimits {
    fn default() -> CommandLimits {
        CommandLimits {
            // Redis allows 512 MiB keys; a replicated store's keys live in every snapshot
            // and every SCAN reply, so the default is far lower.
            key_bytes_max: 64 * 1024,
            value_bytes_max: 64 * 1024 * 1024,
        }
    }
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

/// True if `arg` spells `word`, ignoring ASCII case (option and subcommand names).
pub(crate) fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}
