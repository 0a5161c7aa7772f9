//! GET, MGET, STRLEN and EXISTS: reads of single keys.

use bytes::Bytes;

use super::args::{key, keys, CommandLimits};
use super::error::CommandError;
use super::Command;
use crate::state_machine::ReadCommand;

/// `GET key`
pub(super) fn parse_get(args: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    Ok(Command::Read(ReadCommand::Get {
        key: key(&args[0], limits)?,
    }))
}

/// `MGET key [key ...]`
pub(super) fn parse_mget(args: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    Ok(Command::Read(ReadCommand::MGet {
        keys: keys(args, limits)?,
    }))
}

/// `STRLEN key`
pub(super) fn parse_strlen(
    args: &[Bytes],
    limits: &CommandLimits,
) -> Result<Command, CommandError> {
    Ok(Command::Read(ReadCommand::StrLen {
        key: key(&args[0], limits)?,
    }))
}

/// `EXISTS key [key ...]`: a key named twice counts twice, as in Redis.
pub(super) fn parse_exists(
    args: &[Bytes],
    limits: &CommandLimits,
) -> Result<Command, CommandError> {
    Ok(Command::Read(ReadCommand::Exists {
        keys: keys(args, limits)?,
    }))
}
