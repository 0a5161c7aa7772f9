//! SELECT, SWAPDB, FLUSHDB and FLUSHALL: the databases (`databases` in the config, as
//! Redis' setting; every node of a cluster must have the same count).

use bytes::Bytes;

use super::args::{database, is, Context};
use super::error::CommandError;
use super::local::LocalCommand;
use super::{write, Command};
use crate::state_machine::WriteOp;

/// `SELECT index`: this connection's database from now on.
pub(super) fn parse_select(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    let db = database(&args[0], context.limits, CommandError::NotInteger)?;
    Ok(Command::Local(LocalCommand::Select(db)))
}

/// `SWAPDB index1 index2`
pub(super) fn parse_swapdb(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    // Both must be integers before either is checked against the range, as in Redis.
    let integer = |arg: &[u8], error| crate::resp::number::parse_i64(arg).map(|_| ()).ok_or(error);
    integer(&args[0], CommandError::InvalidFirstDb)?;
    integer(&args[1], CommandError::InvalidSecondDb)?;
    let first = database(&args[0], context.limits, CommandError::InvalidFirstDb)?;
    let second = database(&args[1], context.limits, CommandError::InvalidSecondDb)?;
    let context = Context {
        db: first,
        ..*context
    };
    write(&context, WriteOp::SwapDb { other: second })
}

/// `[ASYNC|SYNC]`: both accepted; the entry frees memory when it applies either way.
fn flush_mode(args: &[Bytes]) -> Result<(), CommandError> {
    match args {
        [] => Ok(()),
        [mode] if is(mode, "ASYNC") || is(mode, "SYNC") => Ok(()),
        _ => Err(CommandError::Syntax),
    }
}

/// `FLUSHDB [ASYNC|SYNC]`
pub(super) fn parse_flushdb(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    flush_mode(args)?;
    write(context, WriteOp::FlushDb)
}

/// `FLUSHALL [ASYNC|SYNC]`
pub(super) fn parse_flushall(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    flush_mode(args)?;
    write(context, WriteOp::FlushAll)
}
