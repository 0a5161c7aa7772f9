//! SET (NX, XX, GET, EX, PX, EXAT, PXAT, KEEPTTL), SETNX, SETEX, PSETEX, GETSET, MSET,
//! MSETNX and SETRANGE.
//!
//! Options follow Redis' `parseExtendedStringArgumentsOrReply`: NX and XX exclude each
//! other, the four times and KEEPTTL exclude each other (the same time option twice is
//! accepted, the last wins), anything else is a syntax error. A time's range is checked
//! when the command applies, as Redis checks it when it runs.

use bytes::Bytes;

use super::args::{integer, is, key, value, Context};
use super::error::CommandError;
use super::{write, Command};
use crate::state_machine::{Expiry, SetCondition, SetReply, SetTtl, TimeUnit, TtlCommand, WriteOp};

/// The time options, as SET and GETEX spell them.
pub(super) const TIME_OPTIONS: [(&str, TimeUnit, bool); 4] = [
    ("EX", TimeUnit::Seconds, false),
    ("PX", TimeUnit::Milliseconds, false),
    ("EXAT", TimeUnit::Seconds, true),
    ("PXAT", TimeUnit::Milliseconds, true),
];

/// The time option `option` names, if any.
pub(super) fn time_option(option: &[u8]) -> Option<(TimeUnit, bool)> {
    TIME_OPTIONS
        .iter()
        .find(|(name, _, _)| is(option, name))
        .map(|(_, unit, absolute)| (*unit, *absolute))
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms-ts|KEEPTTL]`
pub(super) fn parse_set(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    let mut condition = SetCondition::Always;
    let mut reply = SetReply::Ok;
    let mut ttl = SetTtl::Clear;
    let mut options = args[2..].iter();
    // Bounded by the argument count.
    while let Some(option) = options.next() {
        let timed = matches!(ttl, SetTtl::Expire(_));
        if is(option, "NX") && condition != SetCondition::IfPresent {
            condition = SetCondition::IfAbsent;
        } else if is(option, "XX") && condition != SetCondition::IfAbsent {
            condition = SetCondition::IfPresent;
        } else if is(option, "GET") {
            reply = SetReply::OldValue;
        } else if is(option, "KEEPTTL") && !timed {
            ttl = SetTtl::Keep;
        } else if let Some((unit, absolute)) = time_option(option) {
            let same_kind = match ttl {
                SetTtl::Clear => true,
                SetTtl::Keep => false,
                SetTtl::Expire(expiry) => expiry.unit == unit && expiry.absolute == absolute,
            };
            let Some(amount) = options.next().filter(|_| same_kind) else {
                return Err(CommandError::Syntax);
            };
            ttl = SetTtl::Expire(Expiry {
                value: integer(amount)?,
                unit,
                absolute,
                command: TtlCommand::Set,
            });
        } else {
            return Err(CommandError::Syntax);
        }
    }
    set(context, args, condition, reply, ttl)
}

fn set(
    context: &Context<'_>,
    args: &[Bytes],
    condition: SetCondition,
    reply: SetReply,
    ttl: SetTtl,
) -> Result<Command, CommandError> {
    write(
        context,
        WriteOp::Set {
            key: key(&args[0], context.limits)?,
            value: value(&args[1], context.limits)?,
            condition,
            reply,
            ttl,
        },
    )
}

/// `SETNX key value`: 1 if set, 0 if the key exists.
pub(super) fn parse_setnx(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    set(
        context,
        args,
        SetCondition::IfAbsent,
        SetReply::Flag,
        SetTtl::Clear,
    )
}

fn set_with_time(
    args: &[Bytes],
    context: &Context<'_>,
    unit: TimeUnit,
    command: TtlCommand,
) -> Result<Command, CommandError> {
    let expiry = Expiry {
        value: integer(&args[1])?,
        unit,
        absolute: false,
        command,
    };
    let pair = [args[0].clone(), args[2].clone()];
    set(
        context,
        &pair,
        SetCondition::Always,
        SetReply::Ok,
        SetTtl::Expire(expiry),
    )
}

/// `SETEX key seconds value`
pub(super) fn parse_setex(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    set_with_time(args, context, TimeUnit::Seconds, TtlCommand::SetEx)
}

/// `PSETEX key milliseconds value`
pub(super) fn parse_psetex(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    set_with_time(args, context, TimeUnit::Milliseconds, TtlCommand::PSetEx)
}

/// `GETSET key value`: SET ... GET, clearing the TTL.
pub(super) fn parse_getset(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    set(
        context,
        args,
        SetCondition::Always,
        SetReply::OldValue,
        SetTtl::Clear,
    )
}

fn pairs(
    args: &[Bytes],
    context: &Context<'_>,
    command: &'static str,
) -> Result<Vec<(Bytes, Bytes)>, CommandError> {
    if args.len() % 2 != 0 {
        return Err(CommandError::WrongArity { command });
    }
    args.chunks_exact(2)
        .map(|pair| {
            Ok((
                key(&pair[0], context.limits)?,
                value(&pair[1], context.limits)?,
            ))
        })
        .collect()
}

/// `MSET key value [key value ...]`: one log entry, so all pairs apply atomically.
pub(super) fn parse_mset(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    write(
        context,
        WriteOp::MSet {
            pairs: pairs(args, context, "mset")?,
        },
    )
}

/// `MSETNX key value [key value ...]`: all or none.
pub(super) fn parse_msetnx(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    write(
        context,
        WriteOp::MSetNx {
            pairs: pairs(args, context, "msetnx")?,
        },
    )
}

/// `SETRANGE key offset value`. The value it may create is capped by `value_bytes_max`
/// (this server's limit, checked here); the state machine also applies Redis' 512 MiB.
pub(super) fn parse_setrange(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    let offset = integer(&args[1])?;
    let offset = u64::try_from(offset).map_err(|_| CommandError::OffsetOutOfRange)?;
    let value = value(&args[2], context.limits)?;
    let end = usize::try_from(offset)
        .ok()
        .and_then(|offset| offset.checked_add(value.len()));
    if !value.is_empty() && end.is_none_or(|end| end > context.limits.value_bytes_max) {
        return Err(CommandError::StringTooLong);
    }
    write(
        context,
        WriteOp::SetRange {
            key: key(&args[0], context.limits)?,
            offset,
            value,
        },
    )
}
