//! DBSIZE, KEYS and SCAN: reads over the whole key space.
//!
//! These read the node's local state machine. Served after a ReadIndex they are as fresh
//! as any linearizable read; in stale mode they reflect whatever this node has applied.

use bytes::Bytes;

use super::args::{integer, is, key, unsigned, CommandLimits};
use super::error::CommandError;
use super::Command;
use crate::state_machine::ReadCommand;

/// SCAN's COUNT when none is given (Redis' default).
pub const SCAN_COUNT_DEFAULT: usize = 10;
/// Largest COUNT honoured, so one SCAN call's work stays bounded; larger values are
/// clamped (the reply is still a correct page, just a shorter one).
pub const SCAN_COUNT_MAX: usize = 10_000;

/// `DBSIZE`
pub(super) fn parse_dbsize(_: &[Bytes], _: &CommandLimits) -> Result<Command, CommandError> {
    Ok(Command::Read(ReadCommand::DbSize))
}

/// `KEYS pattern`
pub(super) fn parse_keys(args: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    Ok(Command::Read(ReadCommand::Keys {
        pattern: key(&args[0], limits)?,
    }))
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE string]`
pub(super) fn parse_scan(args: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    let cursor = unsigned(&args[0]).ok_or(CommandError::InvalidCursor)?;
    let mut pattern = None;
    let mut count = SCAN_COUNT_DEFAULT;
    let mut type_excludes_strings = false;
    let mut options = args[1..].iter();
    // Bounded by the argument count.
    while let Some(option) = options.next() {
        let operand = options.next().ok_or(CommandError::Syntax)?;
        if is(option, "MATCH") {
            pattern = Some(key(operand, limits)?);
        } else if is(option, "COUNT") {
            let requested = integer(operand)?;
            if requested < 1 {
                return Err(CommandError::Syntax);
            }
            count = usize::try_from(requested)
                .unwrap_or(usize::MAX)
                .min(SCAN_COUNT_MAX);
        } else if is(option, "TYPE") {
            // Every value is a string, so any other type filter matches nothing.
            type_excludes_strings = !is(operand, "string");
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(Command::Read(ReadCommand::Scan {
        cursor,
        pattern,
        count,
        type_excludes_strings,
    }))
}
