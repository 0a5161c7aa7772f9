//! The string commands: SET and its relatives, GETDEL, INCR*, INCRBYFLOAT, APPEND,
//! SETRANGE, MSET, MSETNX, and the reads GET, STRLEN and GETRANGE.
//!
//! TTL rules, as Redis: a write that replaces the value (SET without KEEPTTL, GETSET,
//! MSET) clears the TTL; one that edits it (INCR*, APPEND, SETRANGE) keeps it.

use bytes::Bytes;

use super::command::{DbIndex, SetCondition, SetReply, SetTtl};
use super::databases::Databases;
use super::float::{self, FloatError};
use super::ttl::set_deadline;
use super::{ReadAt, Reply, WriteAt, VALUE_BYTES_MAX};
use crate::cmd::CommandError;
use crate::resp::number::parse_i64;

/// The live value of `key` and its deadline.
fn live_value(dbs: &Databases, now: u64, db: DbIndex, key: &[u8]) -> Option<(Bytes, Option<u64>)> {
    let slot = dbs.live(db, key, now)?;
    Some((slot.item().clone().into_value(), slot.deadline()))
}

/// Stores `value` at `key` as changed by this entry.
fn store(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    key: &[u8],
    value: &[u8],
    deadline: Option<u64>,
) {
    dbs.get_mut(db)
        .keys
        .insert(key, value, at.revision, deadline);
}

#[allow(clippy::too_many_arguments)] // one per SET option, as Redis' setGenericCommand
pub(super) fn set(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    key: &Bytes,
    value: &Bytes,
    condition: SetCondition,
    reply: SetReply,
    ttl: SetTtl,
) -> Reply {
    // Redis checks the time before looking at the key.
    let new_deadline = match ttl {
        SetTtl::Expire(expiry) => match set_deadline(expiry, at.now) {
            Ok(deadline) => Some(deadline),
            Err(invalid) => return Reply::Error(invalid),
        },
        SetTtl::Clear | SetTtl::Keep => None,
    };
    // A plain SET (the common case) looks the key up once, in the insert.
    if condition == SetCondition::Always && reply == SetReply::Ok && ttl != SetTtl::Keep {
        store(dbs, at, db, key, value, new_deadline);
        return Reply::Ok;
    }
    let old = live_value(dbs, at.now, db, key);
    let write = match condition {
        SetCondition::Always => true,
        SetCondition::IfAbsent => old.is_none(),
        SetCondition::IfPresent => old.is_some(),
    };
    if write {
        let deadline = match ttl {
            SetTtl::Keep => old.as_ref().and_then(|(_, deadline)| *deadline),
            _ => new_deadline,
        };
        store(dbs, at, db, key, value, deadline);
    }
    match reply {
        SetReply::Ok if write => Reply::Ok,
        SetReply::Ok => Reply::Nil,
        SetReply::OldValue => old.map_or(Reply::Nil, |(value, _)| Reply::Bulk(value)),
        SetReply::Flag => Reply::flag(write),
    }
}

pub(super) fn get(dbs: &Databases, at: ReadAt, db: DbIndex, key: &[u8]) -> Reply {
    live_value(dbs, at.now, db, key).map_or(Reply::Nil, |(value, _)| Reply::Bulk(value))
}

pub(super) fn get_del(dbs: &mut Databases, at: WriteAt, db: DbIndex, key: &[u8]) -> Reply {
    dbs.remove_live(db, key, at.now).map_or(Reply::Nil, |slot| {
        Reply::Bulk(slot.item().clone().into_value())
    })
}

pub(super) fn strlen(dbs: &Databases, at: ReadAt, db: DbIndex, key: &[u8]) -> Reply {
    Reply::count(
        dbs.live(db, key, at.now)
            .map_or(0, |slot| slot.value().len()),
    )
}

/// GETRANGE with Redis' index rules (negative from the end, clamped, inclusive end).
pub(super) fn get_range(
    dbs: &Databases,
    at: ReadAt,
    db: DbIndex,
    key: &[u8],
    start: i64,
    end: i64,
) -> Reply {
    let Some(slot) = dbs.live(db, key, at.now) else {
        return Reply::bulk("");
    };
    let value = slot.value();
    let len = i64::try_from(value.len()).expect("values are capped far below 2^63");
    if start < 0 && end < 0 && start > end {
        return Reply::bulk("");
    }
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 {
        (len + end).max(0)
    } else {
        end.min(len - 1)
    };
    if start > end || len == 0 {
        return Reply::bulk("");
    }
    let (start, end) = (start as usize, end as usize);
    Reply::Bulk(slot.item().clone().into_value().slice(start..=end))
}

pub(super) fn incr_by(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    key: &[u8],
    delta: i64,
) -> Reply {
    let (current, deadline) = match live_value(dbs, at.now, db, key) {
        None => (0, None),
        Some((value, deadline)) => match parse_i64(&value) {
            Some(current) => (current, deadline),
            None => return Reply::Error(CommandError::NotInteger),
        },
    };
    let Some(next) = current.checked_add(delta) else {
        return Reply::Error(CommandError::IncrementOverflow);
    };
    store(dbs, at, db, key, next.to_string().as_bytes(), deadline);
    Reply::Integer(next)
}

pub(super) fn incr_by_float(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    key: &[u8],
    delta: &[u8],
) -> Reply {
    let (current, deadline) =
        live_value(dbs, at.now, db, key).unwrap_or((Bytes::from_static(b"0"), None));
    match float::add(&current, delta) {
        Ok(sum) => {
            store(dbs, at, db, key, sum.as_bytes(), deadline);
            Reply::bulk(sum)
        }
        Err(FloatError::NotFloat) => Reply::Error(CommandError::NotFloat),
        Err(FloatError::NanOrInfinity) => Reply::Error(CommandError::FloatNanOrInfinity),
    }
}

pub(super) fn append(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    key: &[u8],
    suffix: &[u8],
) -> Reply {
    let (old, deadline) = live_value(dbs, at.now, db, key).unwrap_or_default();
    let len = old.len().saturating_add(suffix.len());
    if len > VALUE_BYTES_MAX {
        return Reply::Error(CommandError::StringTooLong);
    }
    let mut joined = Vec::with_capacity(len);
    joined.extend_from_slice(&old);
    joined.extend_from_slice(suffix);
    store(dbs, at, db, key, &joined, deadline);
    Reply::count(len)
}

/// SETRANGE: zero-pads up to `offset`; an empty `value` changes nothing.
pub(super) fn set_range(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    key: &[u8],
    offset: u64,
    value: &[u8],
) -> Reply {
    let old = live_value(dbs, at.now, db, key);
    let old_len = old.as_ref().map_or(0, |(old, _)| old.len());
    if value.is_empty() {
        return Reply::count(old_len);
    }
    let end = usize::try_from(offset)
        .ok()
        .and_then(|offset| offset.checked_add(value.len()))
        .filter(|end| *end <= VALUE_BYTES_MAX);
    let Some(end) = end else {
        return Reply::Error(CommandError::StringTooLong);
    };
    let (old, deadline) = old.unwrap_or_default();
    let mut joined = old.to_vec();
    if joined.len() < end {
        joined.resize(end, 0);
    }
    joined[end - value.len()..end].copy_from_slice(value);
    store(dbs, at, db, key, &joined, deadline);
    Reply::count(joined.len())
}

pub(super) fn mset(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    pairs: &[(Bytes, Bytes)],
) -> Reply {
    for (key, value) in pairs {
        store(dbs, at, db, key, value, None);
    }
    Reply::Ok
}

pub(super) fn mset_nx(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    pairs: &[(Bytes, Bytes)],
) -> Reply {
    if pairs
        .iter()
        .any(|(key, _)| dbs.live(db, key, at.now).is_some())
    {
        return Reply::flag(false);
    }
    mset(dbs, at, db, pairs);
    Reply::flag(true)
}
