//! DEL and UNLINK: remove keys; reply with how many existed. (UNLINK frees memory in the
//! background in Redis; here both are one log entry and free at apply.)

use bytes::Bytes;

use super::args::{keys, Context};
use super::error::CommandError;
use super::{write, Command};
use crate::state_machine::WriteOp;

/// `DEL key [key ...]`, `UNLINK key [key ...]`
pub(super) fn parse_del(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    write(
        context,
        WriteOp::Del {
            keys: keys(args, context.limits)?,
        },
    )
}
