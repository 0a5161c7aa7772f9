//! PING, ECHO, QUIT, READONLY and READWRITE: commands answered by the connection without
//! touching the replicated state.

use bytes::Bytes;

use super::args::{value, Context};
use super::error::CommandError;
use super::local::LocalCommand;
use super::Command;

/// `PING [message]`
pub(super) fn parse_ping(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    match args {
        [] => Ok(Command::Local(LocalCommand::Ping { message: None })),
        [message] => Ok(Command::Local(LocalCommand::Ping {
            message: Some(value(message, context.limits)?),
        })),
        _ => Err(CommandError::WrongArity { command: "ping" }),
    }
}

/// `ECHO message`
pub(super) fn parse_echo(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::Echo {
        message: value(&args[0], context.limits)?,
    }))
}

/// `QUIT` (extra arguments are ignored, as in Redis)
pub(super) fn parse_quit(_: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::Quit))
}

/// `READONLY`: this connection's reads may be served from local state without a ReadIndex
/// (possibly stale, never invented).
pub(super) fn parse_readonly(_: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::ReadOnly))
}

/// `READWRITE`: back to linearizable reads (the default).
pub(super) fn parse_readwrite(_: &[Bytes], _: &Context<'_>) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::ReadWrite))
}
