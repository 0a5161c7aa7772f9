//! PING, ECHO, QUIT, SELECT, READONLY and READWRITE: commands answered by the connection
//! without touching the replicated state.

use bytes::Bytes;

use super::args::{integer, value, CommandLimits};
use super::error::CommandError;
use super::local::LocalCommand;
use super::Command;

/// `PING [message]`
pub(super) fn parse_ping(args: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    match args {
        [] => Ok(Command::Local(LocalCommand::Ping { message: None })),
        [message] => Ok(Command::Local(LocalCommand::Ping {
            message: Some(value(message, limits)?),
        })),
        _ => Err(CommandError::WrongArity { command: "ping" }),
    }
}

/// `ECHO message`
pub(super) fn parse_echo(args: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::Echo {
        message: value(&args[0], limits)?,
    }))
}

/// `QUIT` (extra arguments are ignored, as in Redis)
pub(super) fn parse_quit(_: &[Bytes], _: &CommandLimits) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::Quit))
}

/// `SELECT index`: only database 0 exists.
pub(super) fn parse_select(args: &[Bytes], _: &CommandLimits) -> Result<Command, CommandError> {
    match integer(&args[0])? {
        0 => Ok(Command::Local(LocalCommand::Select)),
        _ => Err(CommandError::DbIndexOutOfRange),
    }
}

/// `READONLY`: this connection's reads may be served from local state without a ReadIndex
/// (possibly stale, never invented).
pub(super) fn parse_readonly(_: &[Bytes], _: &CommandLimits) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::ReadOnly))
}

/// `READWRITE`: back to linearizable reads (the default).
pub(super) fn parse_readwrite(_: &[Bytes], _: &CommandLimits) -> Result<Command, CommandError> {
    Ok(Command::Local(LocalCommand::ReadWrite))
}
