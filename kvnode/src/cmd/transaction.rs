//! MULTI, EXEC, DISCARD, WATCH and UNWATCH: parsed here, run by the connection
//! (`connection::transaction`), which queues commands and turns EXEC into one write.

use bytes::Bytes;

use super::args::{keys, Context};
use super::error::CommandError;
use super::local::LocalCommand;
use super::Command;

/// `MULTI`
pub(super) fn parse_multi(_: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::Multi))
}

/// `EXEC`
pub(super) fn parse_exec(_: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::Exec))
}

/// `DISCARD`
pub(super) fn parse_discard(_: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::Discard))
}

/// `WATCH key [key ...]`: the keys of the connection's database.
pub(super) fn parse_watch(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::Watch {
        db: context.db,
        keys: keys(args, context.limits)?,
    }))
}

/// `UNWATCH`
pub(super) fn parse_unwatch(_: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::Unwatch))
}
