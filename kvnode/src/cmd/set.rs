//! SET (with NX, XX, GET, KEEPTTL), GETSET and MSET.
//!
//! Expiry options (EX, PX, EXAT, PXAT) are refused with a clear error: expiring keys
//! would need a clock every replica agrees on, which the log does not provide. KEEPTTL is
//! accepted as the no-op it is when no key has a TTL.

use bytes::Bytes;

use super::args::{is, key, value, CommandLimits};
use super::error::CommandError;
use super::Command;
use crate::state_machine::{SetCondition, WriteCommand};

/// `SET key value [NX|XX] [GET] [KEEPTTL]`
pub(super) fn parse_set(args: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    let mut condition = SetCondition::Always;
    let mut get = false;
    for option in &args[2..] {
        let already_conditional = condition != SetCondition::Always;
        if is(option, "NX") && !already_conditional {
            condition = SetCondition::IfAbsent;
        } else if is(option, "XX") && !already_conditional {
            condition = SetCondition::IfPresent;
        } else if is(option, "GET") {
            get = true;
        } else if is(option, "KEEPTTL") {
            // No key ever has a TTL, so keeping it is what always happens.
        } else if ["EX", "PX", "EXAT", "PXAT"]
            .iter()
            .any(|word| is(option, word))
        {
            return Err(CommandError::ExpiryNotSupported {
                option: option.clone(),
            });
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(Command::Write(WriteCommand::Set {
        key: key(&args[0], limits)?,
        value: value(&args[1], limits)?,
        condition,
        get,
    }))
}

/// `GETSET key value`
pub(super) fn parse_getset(
    args: &[Bytes],
    limits: &CommandLimits,
) -> Result<Command, CommandError> {
    Ok(Command::Write(WriteCommand::GetSet {
        key: key(&args[0], limits)?,
        value: value(&args[1], limits)?,
    }))
}

/// `MSET key value [key value ...]`: one log entry, so all pairs apply atomically.
pub(super) fn parse_mset(args: &[Bytes], limits: &CommandLimits) -> Result<Command, CommandError> {
    if args.len() % 2 != 0 {
        return Err(CommandError::WrongArity { command: "mset" });
    }
    let pairs = args
        .chunks_exact(2)
        .map(|pair| Ok((key(&pair[0], limits)?, value(&pair[1], limits)?)))
        .collect::<Result<Vec<_>, CommandError>>()?;
    Ok(Command::Write(WriteCommand::MSet { pairs }))
}
