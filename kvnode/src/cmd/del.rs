//! DEL: removes keys; replies with how many existed.

use bytes::Bytes;

use super::args::{keys, CommandLimits};
use super::error::CommandError;
use super::Command;
use crate::state_machine::WriteCommand;

/// `DEL key [key ...]`
pub(super) fn parse_del(args: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    Ok(Command::Write(WriteCommand::Del {
        keys: keys(args, limits)?,
    }))
}
