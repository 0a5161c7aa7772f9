//! INCR, INCRBY, DECR and DECRBY, all one `IncrBy` log entry with a signed delta.

use bytes::Bytes;

use super::args::{integer, key, CommandLimits};
use super::error::CommandError;
use super::Command;
use crate::state_machine::WriteCommand;

fn incr_by(args: &[Bytes], delta: i64, limits: &CommandLimits) -> Result<Command, CommandError> {
    Ok(Command::Write(WriteCommand::IncrBy {
        key: key(&args[0], limits)?,
        delta,
    }))
}

/// `INCR key`
pub(super) fn parse_incr(args: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    incr_by(args, 1, limits)
}

/// `DECR key`
pub(super) fn parse_decr(args: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    incr_by(args, -1, limits)
}

/// `INCRBY key increment`
pub(super) fn parse_incrby(
    args: &[Bytes],
    limits: &CommandLimits,
) -> Result<Command, CommandError> {
    incr_by(args, integer(&args[1])?, limits)
}

/// `DECRBY key decrement`: negating i64::MIN would overflow, refused as Redis refuses it.
pub(super) fn parse_decrby(
    args: &[Bytes],
    limits: &CommandLimits,
) -> Result<Command, CommandError> {
    let decrement = integer(&args[1])?;
    let delta = decrement
        .checked_neg()
        .ok_or(CommandError::DecrementOverflow)?;
    incr_by(args, delta, limits)
}
