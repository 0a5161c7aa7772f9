//! INCR, INCRBY, DECR and DECRBY (one `IncrBy` log entry with a signed delta), and
//! INCRBYFLOAT.

use bytes::Bytes;

use super::args::{integer, key, Context};
use super::error::CommandError;
use super::{write, Command};
use crate::state_machine::{float_is_valid, WriteOp};

fn incr_by(args: &[Bytes], delta: i64, context: &Context<'_>) -> Result<Command, CommandError> {
    write(
        context,
        WriteOp::IncrBy {
            key: key(&args[0], context.limits)?,
            delta,
        },
    )
}

/// `INCR key`
pub(super) fn parse_incr(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    incr_by(args, 1, context)
}

/// `DECR key`
pub(super) fn parse_decr(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    incr_by(args, -1, context)
}

/// `INCRBY key increment`
pub(super) fn parse_incrby(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    incr_by(args, integer(&args[1])?, context)
}

/// `DECRBY key decrement`: negating i64::MIN would overflow, refused as Redis refuses it.
pub(super) fn parse_decrby(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    let decrement = integer(&args[1])?;
    let delta = decrement
        .checked_neg()
        .ok_or(CommandError::DecrementOverflow)?;
    incr_by(args, delta, context)
}

/// `INCRBYFLOAT key increment`: the increment must be a number `strtold` reads (`ERR value
/// is not a valid float`); the sum is computed at apply, as Redis' `long double`s would.
pub(super) fn parse_incrbyfloat(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    let delta = &args[1];
    if !float_is_valid(delta) {
        return Err(CommandError::NotFloat);
    }
    write(
        context,
        WriteOp::IncrByFloat {
            key: key(&args[0], context.limits)?,
            delta: delta.clone(),
        },
    )
}
