//! Commands on keys as a whole: DEL/UNLINK, RENAME, COPY, MOVE, and the reads EXISTS,
//! TOUCH, DBSIZE, KEYS, SCAN, TYPE and RANDOMKEY. (SWAPDB, FLUSHDB and FLUSHALL are
//! [`super::Databases`] operations.)
//!
//! A key that moves (RENAME, MOVE) or is copied keeps its deadline and gets this entry's
//! revision at its destination: it changed there.

use bytes::Bytes;

use super::command::DbIndex;
use super::databases::Databases;
use super::{ReadAt, Reply, WriteAt};
use crate::cmd::CommandError;

pub(super) fn del(dbs: &mut Databases, at: WriteAt, db: DbIndex, keys: &[Bytes]) -> Reply {
    let removed = keys
        .iter()
        .filter(|key| dbs.remove_live(db, key, at.now).is_some())
        .count();
    Reply::count(removed)
}

pub(super) fn rename(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    from: &[u8],
    to: &[u8],
    only_if_absent: bool,
) -> Reply {
    if dbs.live(db, from, at.now).is_none() {
        return Reply::Error(CommandError::NoSuchKey);
    }
    if from == to {
        return if only_if_absent {
            Reply::flag(false)
        } else {
            Reply::Ok
        };
    }
    if only_if_absent && dbs.live(db, to, at.now).is_some() {
        return Reply::flag(false);
    }
    let keys = &mut dbs.get_mut(db).keys;
    let slot = keys.remove(from).expect("live above");
    keys.insert(to, slot.value(), at.revision, slot.deadline());
    if only_if_absent {
        Reply::flag(true)
    } else {
        Reply::Ok
    }
}

#[allow(clippy::too_many_arguments)] // COPY's arguments, as Redis names them
pub(super) fn copy(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    from: &[u8],
    to_db: DbIndex,
    to: &[u8],
    replace: bool,
) -> Reply {
    if db == to_db && from == to {
        return Reply::Error(CommandError::SameObject);
    }
    let Some(slot) = dbs.live(db, from, at.now).cloned() else {
        return Reply::flag(false);
    };
    if !replace && dbs.live(to_db, to, at.now).is_some() {
        return Reply::flag(false);
    }
    dbs.get_mut(to_db)
        .keys
        .insert(to, slot.value(), at.revision, slot.deadline());
    Reply::flag(true)
}

pub(super) fn move_key(
    dbs: &mut Databases,
    at: WriteAt,
    db: DbIndex,
    key: &[u8],
    to_db: DbIndex,
) -> Reply {
    if db == to_db {
        return Reply::Error(CommandError::SameObject);
    }
    if dbs.live(db, key, at.now).is_none() || dbs.live(to_db, key, at.now).is_some() {
        return Reply::flag(false);
    }
    let slot = dbs.get_mut(db).keys.remove(key).expect("live above");
    dbs.get_mut(to_db)
        .keys
        .insert_item(slot.item().clone(), at.revision, slot.deadline());
    Reply::flag(true)
}

pub(super) fn exists(dbs: &Databases, at: ReadAt, db: DbIndex, keys: &[Bytes]) -> Reply {
    Reply::count(
        keys.iter()
            .filter(|key| dbs.live(db, key, at.now).is_some())
            .count(),
    )
}

pub(super) fn db_size(dbs: &Databases, at: ReadAt, db: DbIndex) -> Reply {
    Reply::count(
        dbs.get(db)
            .map_or(0, |database| database.keys.live_len(at.now)),
    )
}

pub(super) fn keys(dbs: &Databases, at: ReadAt, db: DbIndex, pattern: &[u8]) -> Reply {
    let keys = dbs
        .get(db)
        .map(|database| database.keys.keys_matching(pattern, at.now))
        .unwrap_or_default();
    Reply::Array(keys.into_iter().map(Reply::Bulk).collect())
}

#[allow(clippy::too_many_arguments)] // SCAN's options
pub(super) fn scan(
    dbs: &Databases,
    at: ReadAt,
    db: DbIndex,
    cursor: u64,
    pattern: Option<&[u8]>,
    count: usize,
    type_excludes_strings: bool,
) -> Reply {
    let (next, keys) = match dbs.get(db) {
        Some(database) => database.keys.scan(cursor, count, pattern, at.now),
        None => (0, Vec::new()),
    };
    let keys = if type_excludes_strings {
        Vec::new()
    } else {
        keys.into_iter().map(Reply::Bulk).collect()
    };
    Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(keys)])
}

/// TYPE: every value is a string.
pub(super) fn key_type(dbs: &Databases, at: ReadAt, db: DbIndex, key: &[u8]) -> Reply {
    match dbs.live(db, key, at.now) {
        Some(_) => Reply::Simple("string"),
        None => Reply::Simple("none"),
    }
}

pub(super) fn random_key(dbs: &Databases, at: ReadAt, db: DbIndex) -> Reply {
    dbs.get(db)
        .and_then(|database| database.keys.random_live(at.seed, at.now))
        .map_or(Reply::Nil, |slot| Reply::bulk(slot.key()))
}
