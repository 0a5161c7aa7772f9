//! GET, MGET, STRLEN, EXISTS/TOUCH, GETRANGE and GETDEL: commands on single values.

use bytes::Bytes;

use super::args::{integer, key, keys, Context};
use super::error::CommandError;
use super::{read, write, Command};
use crate::state_machine::{ReadOp, WriteOp};

/// `GET key`
pub(super) fn parse_get(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    read(
        context,
        ReadOp::Get {
            key: key(&args[0], context.limits)?,
        },
    )
}

/// `MGET key [key ...]`
pub(super) fn parse_mget(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    read(
        context,
        ReadOp::MGet {
            keys: keys(args, context.limits)?,
        },
    )
}

/// `STRLEN key`
pub(super) fn parse_strlen(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    read(
        context,
        ReadOp::StrLen {
            key: key(&args[0], context.limits)?,
        },
    )
}

/// `EXISTS key [key ...]` and `TOUCH key [key ...]`: a key named twice counts twice, as in
/// Redis. (TOUCH updates Redis' access time, which raftkv does not keep.)
pub(super) fn parse_exists(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    read(
        context,
        ReadOp::Exists {
            keys: keys(args, context.limits)?,
        },
    )
}

/// `GETRANGE key start end`
pub(super) fn parse_getrange(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    read(
        context,
        ReadOp::GetRange {
            key: key(&args[0], context.limits)?,
            start: integer(&args[1])?,
            end: integer(&args[2])?,
        },
    )
}

/// `GETDEL key`
pub(super) fn parse_getdel(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    write(
        context,
        WriteOp::GetDel {
            key: key(&args[0], context.limits)?,
        },
    )
}
