//! APPEND: extends a value (creating it if absent); replies with the new length.

use bytes::Bytes;

use super::args::{key, value, CommandLimits};
use super::error::CommandError;
use super::Command;
use crate::state_machine::WriteCommand;

/// `APPEND key value`. Only the suffix is checked here; the state machine refuses a
/// result over its own fixed cap, identically on every replica.
pub(super) fn parse_append(
    args: &[Bytes],
    limits: &CommandLimits,
) -> Result<Command, CommandError> {
    Ok(Command::Write(WriteCommand::Append {
        key: key(&args[0], limits)?,
        value: value(&args[1], limits)?,
    }))
}
