//! EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (with NX, XX, GT, LT), PERSIST, TTL, PTTL,
//! EXPIRETIME, PEXPIRETIME and GETEX.
//!
//! Errors come in Redis' order: options first (`ERR Unsupported option`, the
//! compatibility rules), then the time as an integer; its range is checked at apply
//! (`ERR invalid expire time in '<command>' command`), against the entry's time.

use bytes::Bytes;

use super::args::{integer, is, key, Context};
use super::error::CommandError;
use super::set::time_option;
use super::{read, write, Command};
use crate::state_machine::{
    ExpireCondition, Expiry, GetExTtl, ReadOp, TimeUnit, TtlCommand, WriteOp,
};

fn expire(
    args: &[Bytes],
    context: &Context<'_>,
    unit: TimeUnit,
    absolute: bool,
    command: TtlCommand,
) -> Result<Command, CommandError> {
    let mut condition = ExpireCondition::default();
    for option in &args[2..] {
        if is(option, "NX") {
            condition.if_none = true;
        } else if is(option, "XX") {
            condition.if_some = true;
        } else if is(option, "GT") {
            condition.if_greater = true;
        } else if is(option, "LT") {
            condition.if_less = true;
        } else {
            return Err(CommandError::UnsupportedOption {
                option: option.clone(),
            });
        }
    }
    if condition.if_none && (condition.if_some || condition.if_greater || condition.if_less) {
        return Err(CommandError::ExpireNxAndOthers);
    }
    if condition.if_greater && condition.if_less {
        return Err(CommandError::ExpireGtAndLt);
    }
    let expiry = Expiry {
        value: integer(&args[1])?,
        unit,
        absolute,
        command,
    };
    write(
        context,
        WriteOp::Expire {
            key: key(&args[0], context.limits)?,
            expiry,
            condition,
        },
    )
}

/// `EXPIRE key seconds [NX|XX|GT|LT]`
pub(super) fn parse_expire(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    expire(args, context, TimeUnit::Seconds, false, TtlCommand::Expire)
}

/// `PEXPIRE key milliseconds [NX|XX|GT|LT]`
pub(super) fn parse_pexpire(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    expire(
        args,
        context,
        TimeUnit::Milliseconds,
        false,
        TtlCommand::PExpire,
    )
}

/// `EXPIREAT key unix-seconds [NX|XX|GT|LT]`
pub(super) fn parse_expireat(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    expire(args, context, TimeUnit::Seconds, true, TtlCommand::ExpireAt)
}

/// `PEXPIREAT key unix-milliseconds [NX|XX|GT|LT]`
pub(super) fn parse_pexpireat(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    expire(
        args,
        context,
        TimeUnit::Milliseconds,
        true,
        TtlCommand::PExpireAt,
    )
}

/// `PERSIST key`
pub(super) fn parse_persist(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    write(
        context,
        WriteOp::Persist {
            key: key(&args[0], context.limits)?,
        },
    )
}

fn ttl(args: &[Bytes], context: &Context<'_>, unit: TimeUnit) -> Result<Command, CommandError> {
    read(
        context,
        ReadOp::Ttl {
            key: key(&args[0], context.limits)?,
            unit,
        },
    )
}

/// `TTL key`
pub(super) fn parse_ttl(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    ttl(args, context, TimeUnit::Seconds)
}

/// `PTTL key`
pub(super) fn parse_pttl(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    ttl(args, context, TimeUnit::Milliseconds)
}

fn expire_time(
    args: &[Bytes],
    context: &Context<'_>,
    unit: TimeUnit,
) -> Result<Command, CommandError> {
    read(
        context,
        ReadOp::ExpireTime {
            key: key(&args[0], context.limits)?,
            unit,
        },
    )
}

/// `EXPIRETIME key`
pub(super) fn parse_expiretime(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    expire_time(args, context, TimeUnit::Seconds)
}

/// `PEXPIRETIME key`
pub(super) fn parse_pexpiretime(
    args: &[Bytes],
    context: &Context<'_>,
) -> Result<Command, CommandError> {
    expire_time(args, context, TimeUnit::Milliseconds)
}

/// `GETEX key [EX s|PX ms|EXAT ts|PXAT ms-ts|PERSIST]`: a read without an option.
pub(super) fn parse_getex(args: &[Bytes], context: &Context<'_>) -> Result<Command, CommandError> {
    let key = key(&args[0], context.limits)?;
    let mut persist = false;
    // The time option's unit and kind, and its value (if it is an integer).
    let mut time: Option<(TimeUnit, bool, Option<i64>)> = None;
    let mut options = args[1..].iter();
    // Bounded by the argument count.
    while let Some(option) = options.next() {
        if is(option, "PERSIST") && time.is_none() {
            persist = true;
        } else if let Some((unit, absolute)) = time_option(option) {
            let same_kind = !persist && time.is_none_or(|(u, a, _)| u == unit && a == absolute);
            let Some(amount) = options.next().filter(|_| same_kind) else {
                return Err(CommandError::Syntax);
            };
            time = Some((unit, absolute, integer(amount).ok()));
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let ttl = match time {
        // Redis looks the key up before it reads the time (a missing key: nil).
        Some((_, _, None)) => GetExTtl::NotInteger,
        Some((unit, absolute, Some(value))) => GetExTtl::Expire(Expiry {
            value,
            unit,
            absolute,
            command: TtlCommand::GetEx,
        }),
        None if persist => GetExTtl::Persist,
        None => return read(context, ReadOp::Get { key }),
    };
    write(context, WriteOp::GetEx { key, ttl })
}
