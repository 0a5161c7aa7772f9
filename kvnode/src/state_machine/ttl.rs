//! Expiry: EXPIRE and its relatives, PERSIST, GETEX, TTL and EXPIRETIME, the conversion of
//! a client's time into a deadline, and the leader's reclamation entries.
//!
//! Deadlines are absolute Unix milliseconds, computed from the entry's effective time, so
//! every replica computes the same one. A key is gone once the time is past its deadline
//! (Redis' rule: it lives through its deadline's millisecond). Range checks follow Redis
//! exactly, at apply, in Redis' order (GETEX looks the key up first).

use bytes::Bytes;

use super::command::{DbIndex, ExpireCondition, Expiry, GetExTtl, TimeUnit};
use super::databases::Databases;
use super::{ReadAt, Reply, WriteAt};
use crate::cmd::CommandError;

fn invalid(expiry: Expiry) -> CommandError {
    CommandError::InvalidExpireTime {
        command: expiry.command.name(),
    }
}

/// The deadline of SET, SETEX, PSETEX and GETEX (Redis' `getExpireMillisecondsOrReply`):
/// the time must be positive and the deadline must fit in an `i64`.
///
/// # Errors
/// `ERR invalid expire time in '<command>' command`.
pub(super) fn set_deadline(expiry: Expiry, now: u64) -> Result<u64, CommandError> {
    let seconds = expiry.unit == TimeUnit::Seconds;
    if expiry.value <= 0 || (seconds && expiry.value > i64::MAX / 1000) {
        return Err(invalid(expiry));
    }
    let mut when = if seconds {
        expiry.value * 1000
    } else {
        expiry.value
    };
    if !expiry.absolute {
        let now = i64::try_from(now).map_err(|_| invalid(expiry))?;
        when = when.checked_add(now).ok_or(invalid(expiry))?;
    }
    Ok(u64::try_from(when).expect("positive"))
}

/// The deadline of EXPIRE and its relatives (Redis' `expireGenericCommand`): any value
/// whose milliseconds and sum with the base time fit in an `i64`; it may be in the past.
fn expire_when(expiry: Expiry, now: u64) -> Result<i64, CommandError> {
    let mut when = expiry.value;
    if expiry.unit == TimeUnit::Seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return Err(invalid(expiry));
        }
        when *= 1000;
    }
    let base = if expiry.absolute {
        0
    } else {
        i64::try_from(now).map_err(|_| invalid(expiry))?
    };
    if when > i64::MAX - base {
        return Err(invalid(expiry));
    }
    Ok(when + base)
}

pub(super) fn expire(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    key: &[u8],
    expiry: Expiry,
    condition: ExpireCondition,
) -> Reply {
    let when = match expire_when(expiry, at.now) {
        Ok(when) => when,
        Err(invalid) => return Reply::Error(invalid),
    };
    let Some(slot) = dbs.live(db, key, at.now) else {
        return Reply::flag(false);
    };
    // No TTL counts as an infinite one for GT and LT.
    let current = slot.deadline().map(|deadline| deadline as i64);
    let refused = (condition.if_none && current.is_some())
        || (condition.if_some && current.is_none())
        || (condition.if_greater && current.is_none_or(|current| when <= current))
        || (condition.if_less && current.is_some_and(|current| when >= current));
    if refused {
        return Reply::flag(false);
    }
    // A deadline already reached deletes the key (Redis' checkAlreadyExpired).
    match u64::try_from(when) {
        Ok(deadline) if deadline > at.now => {
            dbs.get_mut(db)
                .keys
                .set_meta(key, at.revision, Some(deadline));
        }
        _ => {
            dbs.get_mut(db).keys.remove(key);
        }
    }
    Reply::flag(true)
}

pub(super) fn persist(dbs: &mut Databases, at: WriteAt, db: DbIndex, key: &[u8]) -> Reply {
    let has_ttl = dbs
        .live(db, key, at.now)
        .is_some_and(|slot| slot.deadline().is_some());
    if has_ttl {
        dbs.get_mut(db).keys.set_meta(key, at.revision, None);
    }
    Reply::flag(has_ttl)
}

pub(super) fn get_ex(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    key: &[u8],
    ttl: GetExTtl,
) -> Reply {
    let Some(slot) = dbs.live(db, key, at.now) else {
        return Reply::Nil;
    };
    let value = slot.item().clone().into_value();
    let had_ttl = slot.deadline().is_some();
    match ttl {
        GetExTtl::Persist if had_ttl => {
            dbs.get_mut(db).keys.set_meta(key, at.revision, None);
        }
        GetExTtl::Persist => {}
        GetExTtl::NotInteger => return Reply::Error(CommandError::NotInteger),
        GetExTtl::Expire(expiry) => match set_deadline(expiry, at.now) {
            Err(invalid) => return Reply::Error(invalid),
            Ok(deadline) if deadline > at.now => {
                dbs.get_mut(db)
                    .keys
                    .set_meta(key, at.revision, Some(deadline));
            }
            Ok(_) => {
                dbs.get_mut(db).keys.remove(key);
            }
        },
    }
    Reply::Bulk(value)
}

/// TTL and PTTL: -2 for no key, -1 for no TTL, else the time left (seconds rounded to
/// the nearest, as Redis).
pub(super) fn ttl(dbs: &Databases, at: ReadAt, db: DbIndex, key: &[u8], unit: TimeUnit) -> Reply {
    let Some(slot) = dbs.live(db, key, at.now) else {
        return Reply::Integer(-2);
    };
    let Some(deadline) = slot.deadline() else {
        return Reply::Integer(-1);
    };
    let left = i64::try_from(deadline.saturating_sub(at.now)).unwrap_or(i64::MAX);
    Reply::Integer(match unit {
        TimeUnit::Milliseconds => left,
        TimeUnit::Seconds => (left + 500) / 1000,
    })
}

/// EXPIRETIME and PEXPIRETIME: -2 for no key, -1 for no TTL, else the deadline.
pub(super) fn expire_time(
    dbs: &Databases,
    at: ReadAt,
    db: DbIndex,
    key: &[u8],
    unit: TimeUnit,
) -> Reply {
    let Some(slot) = dbs.live(db, key, at.now) else {
        return Reply::Integer(-2);
    };
    let Some(deadline) = slot.deadline() else {
        return Reply::Integer(-1);
    };
    let deadline = i64::try_from(deadline).unwrap_or(i64::MAX);
    Reply::Integer(match unit {
        TimeUnit::Milliseconds => deadline,
        TimeUnit::Seconds => deadline / 1000,
    })
}

/// The leader's reclamation: deletes each key that is still expired at this entry's time.
/// Replies with how many it deleted (nobody waits for it; logs and tests read it).
pub(super) fn reclaim(dbs: &mut Databases, at: WriteAt, keys: &[(DbIndex, Bytes)]) -> Reply {
    let mut deleted = 0;
    for (db, key) in keys {
        let expired = dbs
            .get(*db)
            .and_then(|database| database.keys.get(key))
            .is_some_and(|slot| slot.expired_at(at.now));
        if expired {
            dbs.get_mut(*db).keys.remove(key);
            deleted += 1;
        }
    }
    Reply::count(deleted)
}
