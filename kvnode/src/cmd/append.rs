//! APPEND: extends a value (creating it if absent); replies with the new length.

use bytes::Bytes;

use super::args::{key, value, Context};
use super::error::CommandError;
use super::{write, Command};
use crate::state_machine::WriteOp;

/// `APPEND key value`. Only the suffix is checked here; the state machine refuses a
/// result over its own fixed cap, identically on every replica.
pub(super) fn parse_append(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    write(
        context,
        WriteOp::Append {
            key: key(&args[0], context.limits)?,
            value: value(&args[1], context.limits)?,
        },
    )
}
