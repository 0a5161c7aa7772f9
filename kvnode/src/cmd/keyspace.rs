//! Commands over keys and the key space: DBSIZE, KEYS, SCAN, TYPE, RANDOMKEY, RENAME,
//! RENAMENX, COPY, MOVE, REVISION, TIME and RAFTKV.DIGEST.
//!
//! DBSIZE, KEYS and SCAN read the node's local state machine. Served after a ReadIndex
//! they are as fresh as any linearizable read; in stale mode they reflect whatever this
//! node has applied.

use bytes::Bytes;

use super::args::{database, integer, is, key, unsigned, Context};
use super::error::CommandError;
use super::{read, write, Command};
use crate::state_machine::{ReadOp, WriteOp};

/// SCAN's COUNT when none is given (Redis' default).
pub const SCAN_COUNT_DEFAULT: usize = 10;
/// Largest COUNT honoured, so one SCAN call's work stays bounded; larger values are
/// clamped (the reply is still a correct page, just a shorter one).
pub const SCAN_COUNT_MAX: usize = 10_000;

/// `DBSIZE`: live keys of the connection's database.
pub(super) fn parse_dbsize(_: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    read(context, ReadOp::DbSize)
}

/// `KEYS pattern`
pub(super) fn parse_keys(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    read(
        context,
        ReadOp::Keys {
            pattern: key(&args[0], context.limits)?,
        },
    )
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
pub(super) fn parse_scan(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    let cursor = unsigned(&args[0]).ok_or(CommandError::InvalidCursor)?;
    let mut pattern = None;
    let mut count = SCAN_COUNT_DEFAULT;
    let mut type_excludes_strings = false;
    let mut options = args[1..].iter();
    // Bounded by the argument count.
    while let Some(option) = options.next() {
        let operand = options.next().ok_or(CommandError::Syntax)?;
        if is(option, "MATCH") {
            pattern = Some(key(operand, context.limits)?);
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
    read(
        context,
        ReadOp::Scan {
            cursor,
            pattern,
            count,
            type_excludes_strings,
        },
    )
}

/// `TYPE key`: `string` or `none`.
pub(super) fn parse_type(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    read(
        context,
        ReadOp::Type {
            key: key(&args[0], context.limits)?,
        },
    )
}

/// `RANDOMKEY`: chosen by a seed derived from the read, never a local random generator.
pub(super) fn parse_randomkey(_: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    read(context, ReadOp::RandomKey)
}

fn rename(
    args: &[Bytes],
    context: &Context<'_>,
    only_if_absent: bool,
) -> Result<Command, CommandError> {
    write(
        context,
        WriteOp::Rename {
            from: key(&args[0], context.limits)?,
            to: key(&args[1], context.limits)?,
            only_if_absent,
        },
    )
}

/// `RENAME key newkey`
pub(super) fn parse_rename(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    rename(args, context, false)
}

/// `RENAMENX key newkey`
pub(super) fn parse_renamenx(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    rename(args, context, true)
}

/// `COPY source destination [DB destination-db] [REPLACE]`
pub(super) fn parse_copy(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    let mut to_db = context.db;
    let mut replace = false;
    let mut options = args[2..].iter();
    // Bounded by the argument count.
    while let Some(option) = options.next() {
        if is(option, "REPLACE") {
            replace = true;
        } else if is(option, "DB") {
            let index = options.next().ok_or(CommandError::Syntax)?;
            to_db = database(index, context.limits, CommandError::NotInteger)?;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let (from, to) = (
        key(&args[0], context.limits)?,
        key(&args[1], context.limits)?,
    );
    if to_db == context.db && from == to {
        return Err(CommandError::SameObject);
    }
    write(
        context,
        WriteOp::Copy {
            from,
            to_db,
            to,
            replace,
        },
    )
}

/// `MOVE key db`
pub(super) fn parse_move(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    let to_db = database(&args[1], context.limits, CommandError::NotInteger)?;
    if to_db == context.db {
        return Err(CommandError::SameObject);
    }
    write(
        context,
        WriteOp::Move {
            key: key(&args[0], context.limits)?,
            to_db,
        },
    )
}

/// `REVISION key`: the log index of the key's last change (its value or its TTL), or nil
/// if it does not exist. Inside `MULTI; SET lock token NX PX ms; REVISION lock; EXEC` it
/// is the holder's fencing token (README, "Locks with fencing tokens").
pub(super) fn parse_revision(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    read(
        context,
        ReadOp::Revision {
            key: key(&args[0], context.limits)?,
        },
    )
}

/// `TIME`: the cluster's time as this read is judged (see COMMANDS.md, "Time").
pub(super) fn parse_time(_: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    read(context, ReadOp::Time)
}

/// `RAFTKV.DIGEST`: `[applied index, effective time, keys, digest]` of this node's state,
/// to compare replicas (a debug command; O(keys)).
pub(super) fn parse_digest(_: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    read(context, ReadOp::Digest)
}
