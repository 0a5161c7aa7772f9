//! Write commands, version 2.
//!
//! ```text
//! command  = 0x02 db:u32le tag:u8 body
//! expiry   = kind:u8 value:i64le     kind: bit 0 absolute, bit 1 milliseconds,
//!                                          bits 4-7 the command (0 set, 1 setex, 2 psetex,
//!                                          3 getex, 4 expire, 5 pexpire, 6 expireat,
//!                                          7 pexpireat)
//! Set         1: flags:u8 [expiry] key value
//!                flags bits 0-1 condition (0 always, 1 NX, 2 XX), bits 2-3 reply (0 OK,
//!                1 old value, 2 flag), bits 4-5 TTL (0 clear, 1 keep, 2 expiry follows)
//! GetEx       2: mode:u8 (0 persist, 1 expiry follows, 2 time not an integer) [expiry] key
//! GetDel      3: key
//! Del         4: count:u32le key*
//! IncrBy      5: key delta:i64le
//! IncrByFloat 6: key delta:bytes
//! Append      7: key value
//! SetRange    8: key offset:u64le value
//! MSet        9: count:u32le (key value)*
//! MSetNx     10: count:u32le (key value)*
//! Expire     11: condition:u8 (bit 0 NX, 1 XX, 2 GT, 3 LT) expiry key
//! Persist    12: key
//! Rename     13: nx:u8 from to
//! Copy       14: replace:u8 to_db:u32le from to
//! Move       15: to_db:u32le key
//! SwapDb     16: other:u32le
//! FlushDb    17
//! FlushAll   18
//! Reclaim    19: count:u32le (db:u32le key)*
//! Exec       20: count:u32le watch* count:u32le item*
//!                watch = db:u32le key known:u8 [revision:u64le]
//!                item  = 1 db:u32le tag:u8 body (a write) | 2 db:u32le tag:u8 body (a read)
//! AclSetUser 21: name:bytes count:u32le rule:bytes*    (command version 3 only)
//! AclDelUser 22: count:u32le name:bytes*               (command version 3 only)
//! ```

use bytes::{BufMut, BytesMut};

use super::super::command::{
    ExpireCondition, Expiry, GetExTtl, SetCondition, SetReply, SetTtl, TimeUnit, TtlCommand,
    TxItem, Watch, WriteCommand, WriteOp,
};
use super::super::wire::{put_bytes, put_count, Reader};
use super::{
    decode_bool, decode_count, decode_db, read, DecodeError, ACL_COMMAND_VERSION, COMMAND_VERSION,
};

const TAG_SET: u8 = 1;
const TAG_GETEX: u8 = 2;
const TAG_GETDEL: u8 = 3;
const TAG_DEL: u8 = 4;
const TAG_INCRBY: u8 = 5;
const TAG_INCRBYFLOAT: u8 = 6;
const TAG_APPEND: u8 = 7;
const TAG_SETRANGE: u8 = 8;
const TAG_MSET: u8 = 9;
const TAG_MSETNX: u8 = 10;
const TAG_EXPIRE: u8 = 11;
const TAG_PERSIST: u8 = 12;
const TAG_RENAME: u8 = 13;
const TAG_COPY: u8 = 14;
const TAG_MOVE: u8 = 15;
const TAG_SWAPDB: u8 = 16;
const TAG_FLUSHDB: u8 = 17;
const TAG_FLUSHALL: u8 = 18;
const TAG_RECLAIM: u8 = 19;
const TAG_EXEC: u8 = 20;
const TAG_ACL_SETUSER: u8 = 21;
const TAG_ACL_DELUSER: u8 = 22;

const ITEM_WRITE: u8 = 1;
const ITEM_READ: u8 = 2;

/// About how many bytes [`encode_command`] writes (exact for the common commands), so the
/// buffer is allocated once.
pub(super) fn encoded_len_hint(command: &WriteCommand) -> usize {
    let framed = |data: &[u8]| data.len() + 4;
    let body = match &command.op {
        WriteOp::Set { key, value, .. }
        | WriteOp::Append { key, value }
        | WriteOp::IncrByFloat { key, delta: value }
        | WriteOp::SetRange { key, value, .. } => framed(key) + framed(value),
        WriteOp::Del { keys } => keys.iter().map(|key| framed(key)).sum(),
        WriteOp::MSet { pairs } | WriteOp::MSetNx { pairs } => {
            pairs.iter().map(|(k, v)| framed(k) + framed(v)).sum()
        }
        WriteOp::Reclaim { keys } => keys.iter().map(|(_, key)| 4 + framed(key)).sum(),
        _ => 64,
    };
    // Version, database, tag, flags, an expiry and the count fields.
    32 + body
}

/// Appends `0x02 db tag body`.
pub(super) fn encode_command(command: &WriteCommand, out: &mut BytesMut) {
    out.put_u8(if command.op.is_acl() {
        ACL_COMMAND_VERSION
    } else {
        COMMAND_VERSION
    });
    encode_body(command, out);
}

/// Appends `db tag body`.
fn encode_body(command: &WriteCommand, out: &mut BytesMut) {
    out.put_u32_le(command.db.0);
    match &command.op {
        WriteOp::Set {
            key,
            value,
            condition,
            reply,
            ttl,
        } => {
            out.put_u8(TAG_SET);
            let condition = match condition {
                SetCondition::Always => 0,
                SetCondition::IfAbsent => 1,
                SetCondition::IfPresent => 2,
            };
            let reply = match reply {
                SetReply::Ok => 0,
                SetReply::OldValue => 1,
                SetReply::Flag => 2,
            };
            let ttl_mode = match ttl {
                SetTtl::Clear => 0,
                SetTtl::Keep => 1,
                SetTtl::Expire(_) => 2,
            };
            out.put_u8(condition | reply << 2 | ttl_mode << 4);
            if let SetTtl::Expire(expiry) = ttl {
                encode_expiry(*expiry, out);
            }
            put_bytes(out, key);
            put_bytes(out, value);
        }
        WriteOp::GetEx { key, ttl } => {
            out.put_u8(TAG_GETEX);
            match ttl {
                GetExTtl::Persist => out.put_u8(0),
                GetExTtl::Expire(expiry) => {
                    out.put_u8(1);
                    encode_expiry(*expiry, out);
                }
                GetExTtl::NotInteger => out.put_u8(2),
            }
            put_bytes(out, key);
        }
        WriteOp::GetDel { key } => encode_key(out, TAG_GETDEL, key),
        WriteOp::Del { keys } => {
            out.put_u8(TAG_DEL);
            put_count(out, keys.len());
            keys.iter().for_each(|key| put_bytes(out, key));
        }
        WriteOp::IncrBy { key, delta } => {
            encode_key(out, TAG_INCRBY, key);
            out.put_i64_le(*delta);
        }
        WriteOp::IncrByFloat { key, delta } => {
            encode_key(out, TAG_INCRBYFLOAT, key);
            put_bytes(out, delta);
        }
        WriteOp::Append { key, value } => {
            encode_key(out, TAG_APPEND, key);
            put_bytes(out, value);
        }
        WriteOp::SetRange { key, offset, value } => {
            encode_key(out, TAG_SETRANGE, key);
            out.put_u64_le(*offset);
            put_bytes(out, value);
        }
        WriteOp::MSet { pairs } => encode_pairs(out, TAG_MSET, pairs),
        WriteOp::MSetNx { pairs } => encode_pairs(out, TAG_MSETNX, pairs),
        WriteOp::Expire {
            key,
            expiry,
            condition,
        } => {
            out.put_u8(TAG_EXPIRE);
            let bit = |set: bool, bit: u8| if set { 1 << bit } else { 0 };
            out.put_u8(
                bit(condition.if_none, 0)
                    | bit(condition.if_some, 1)
                    | bit(condition.if_greater, 2)
                    | bit(condition.if_less, 3),
            );
            encode_expiry(*expiry, out);
            put_bytes(out, key);
        }
        WriteOp::Persist { key } => encode_key(out, TAG_PERSIST, key),
        WriteOp::Rename {
            from,
            to,
            only_if_absent,
        } => {
            out.put_u8(TAG_RENAME);
            out.put_u8(u8::from(*only_if_absent));
            put_bytes(out, from);
            put_bytes(out, to);
        }
        WriteOp::Copy {
            from,
            to_db,
            to,
            replace,
        } => {
            out.put_u8(TAG_COPY);
            out.put_u8(u8::from(*replace));
            out.put_u32_le(to_db.0);
            put_bytes(out, from);
            put_bytes(out, to);
        }
        WriteOp::Move { key, to_db } => {
            out.put_u8(TAG_MOVE);
            out.put_u32_le(to_db.0);
            put_bytes(out, key);
        }
        WriteOp::SwapDb { other } => {
            out.put_u8(TAG_SWAPDB);
            out.put_u32_le(other.0);
        }
        WriteOp::FlushDb => out.put_u8(TAG_FLUSHDB),
        WriteOp::FlushAll => out.put_u8(TAG_FLUSHALL),
        WriteOp::Reclaim { keys } => {
            out.put_u8(TAG_RECLAIM);
            put_count(out, keys.len());
            for (db, key) in keys {
                out.put_u32_le(db.0);
                put_bytes(out, key);
            }
        }
        WriteOp::Exec { watches, items } => encode_exec(out, watches, items),
        WriteOp::AclSetUser { name, rules } => {
            out.put_u8(TAG_ACL_SETUSER);
            put_bytes(out, name);
            put_count(out, rules.len());
            rules.iter().for_each(|rule| put_bytes(out, rule));
        }
        WriteOp::AclDelUser { names } => {
            out.put_u8(TAG_ACL_DELUSER);
            put_count(out, names.len());
            names.iter().for_each(|name| put_bytes(out, name));
        }
    }
}

fn encode_exec(out: &mut BytesMut, watches: &[Watch], items: &[TxItem]) {
    out.put_u8(TAG_EXEC);
    put_count(out, watches.len());
    for watch in watches {
        out.put_u32_le(watch.db.0);
        put_bytes(out, &watch.key);
        match watch.revision {
            None => out.put_u8(0),
            Some(revision) => {
                out.put_u8(1);
                out.put_u64_le(revision);
            }
        }
    }
    put_count(out, items.len());
    for item in items {
        match item {
            TxItem::Write(command) => {
                out.put_u8(ITEM_WRITE);
                encode_body(command, out);
            }
            TxItem::Read(command) => {
                out.put_u8(ITEM_READ);
                read::encode_body(command, out);
            }
        }
    }
}

fn encode_key(out: &mut BytesMut, tag: u8, key: &[u8]) {
    out.put_u8(tag);
    put_bytes(out, key);
}

fn encode_pairs(out: &mut BytesMut, tag: u8, pairs: &[(bytes::Bytes, bytes::Bytes)]) {
    out.put_u8(tag);
    put_count(out, pairs.len());
    for (key, value) in pairs {
        put_bytes(out, key);
        put_bytes(out, value);
    }
}

fn encode_expiry(expiry: Expiry, out: &mut BytesMut) {
    let command = TtlCommand::ALL
        .iter()
        .position(|command| *command == expiry.command)
        .expect("every command is listed");
    let milliseconds = u8::from(expiry.unit == TimeUnit::Milliseconds);
    let command = u8::try_from(command).expect("eight commands");
    out.put_u8(u8::from(expiry.absolute) | milliseconds << 1 | command << 4);
    out.put_i64_le(expiry.value);
}

fn decode_expiry(reader: &mut Reader<'_>) -> Result<Expiry, DecodeError> {
    let kind = reader.u8()?;
    let command = TtlCommand::ALL
        .get(usize::from(kind >> 4))
        .copied()
        .filter(|_| kind & 0b1100 == 0)
        .ok_or(DecodeError::InvalidField {
            what: "expiry kind",
            value: kind,
        })?;
    Ok(Expiry {
        value: reader.i64()?,
        unit: if kind & 2 != 0 {
            TimeUnit::Milliseconds
        } else {
            TimeUnit::Seconds
        },
        absolute: kind & 1 != 0,
        command,
    })
}

/// Reads `db tag body`; `nested` inside a transaction (which may not hold another).
pub(super) fn decode_command(
    reader: &mut Reader<'_>,
    nested: bool,
) -> Result<WriteCommand, DecodeError> {
    let db = decode_db(reader)?;
    let tag = reader.u8()?;
    let op = match tag {
        TAG_SET => decode_set(reader)?,
        TAG_GETEX => {
            let ttl = match reader.u8()? {
                0 => GetExTtl::Persist,
                1 => GetExTtl::Expire(decode_expiry(reader)?),
                2 => GetExTtl::NotInteger,
                value => {
                    return Err(DecodeError::InvalidField {
                        what: "GETEX mode",
                        value,
                    })
                }
            };
            WriteOp::GetEx {
                ttl,
                key: reader.bytes()?,
            }
        }
        TAG_GETDEL => WriteOp::GetDel {
            key: reader.bytes()?,
        },
        TAG_DEL => {
            let count = decode_count(reader, 4)?;
            let keys = (0..count)
                .map(|_| reader.bytes())
                .collect::<Result<_, _>>()?;
            WriteOp::Del { keys }
        }
        TAG_INCRBY => WriteOp::IncrBy {
            key: reader.bytes()?,
            delta: reader.i64()?,
        },
        TAG_INCRBYFLOAT => WriteOp::IncrByFloat {
            key: reader.bytes()?,
            delta: reader.bytes()?,
        },
        TAG_APPEND => WriteOp::Append {
            key: reader.bytes()?,
            value: reader.bytes()?,
        },
        TAG_SETRANGE => WriteOp::SetRange {
            key: reader.bytes()?,
            offset: reader.u64()?,
            value: reader.bytes()?,
        },
        TAG_MSET => WriteOp::MSet {
            pairs: decode_pairs(reader)?,
        },
        TAG_MSETNX => WriteOp::MSetNx {
            pairs: decode_pairs(reader)?,
        },
        TAG_EXPIRE => {
            let bits = reader.u8()?;
            if bits & !0b1111 != 0 {
                return Err(DecodeError::InvalidField {
                    what: "EXPIRE condition",
                    value: bits,
                });
            }
            let condition = ExpireCondition {
                if_none: bits & 1 != 0,
                if_some: bits & 2 != 0,
                if_greater: bits & 4 != 0,
                if_less: bits & 8 != 0,
            };
            WriteOp::Expire {
                condition,
                expiry: decode_expiry(reader)?,
                key: reader.bytes()?,
            }
        }
        TAG_PERSIST => WriteOp::Persist {
            key: reader.bytes()?,
        },
        TAG_RENAME => WriteOp::Rename {
            only_if_absent: decode_bool(reader, "RENAME flag")?,
            from: reader.bytes()?,
            to: reader.bytes()?,
        },
        TAG_COPY => WriteOp::Copy {
            replace: decode_bool(reader, "COPY flag")?,
            to_db: decode_db(reader)?,
            from: reader.bytes()?,
            to: reader.bytes()?,
        },
        TAG_MOVE => WriteOp::Move {
            to_db: decode_db(reader)?,
            key: reader.bytes()?,
        },
        TAG_SWAPDB => WriteOp::SwapDb {
            other: decode_db(reader)?,
        },
        TAG_FLUSHDB => WriteOp::FlushDb,
        TAG_FLUSHALL => WriteOp::FlushAll,
        TAG_RECLAIM if !nested => {
            let count = decode_count(reader, 8)?;
            let keys = (0..count)
                .map(|_| Ok((decode_db(reader)?, reader.bytes()?)))
                .collect::<Result<_, DecodeError>>()?;
            WriteOp::Reclaim { keys }
        }
        TAG_EXEC if !nested => decode_exec(reader)?,
        TAG_ACL_SETUSER if !nested => WriteOp::AclSetUser {
            name: reader.bytes()?,
            rules: decode_byte_strings(reader)?,
        },
        TAG_ACL_DELUSER if !nested => WriteOp::AclDelUser {
            names: decode_byte_strings(reader)?,
        },
        TAG_RECLAIM | TAG_EXEC | TAG_ACL_SETUSER | TAG_ACL_DELUSER => {
            return Err(DecodeError::NestedTransaction)
        }
        tag => return Err(DecodeError::UnknownTag { tag }),
    };
    Ok(WriteCommand { db, op })
}

fn decode_byte_strings(reader: &mut Reader<'_>) -> Result<Vec<bytes::Bytes>, DecodeError> {
    let count = decode_count(reader, 4)?;
    Ok((0..count)
        .map(|_| reader.bytes())
        .collect::<Result<_, _>>()?)
}

fn decode_set(reader: &mut Reader<'_>) -> Result<WriteOp, DecodeError> {
    let flags = reader.u8()?;
    let invalid = DecodeError::InvalidField {
        what: "SET flags",
        value: flags,
    };
    let condition = match flags & 0b11 {
        0 => SetCondition::Always,
        1 => SetCondition::IfAbsent,
        2 => SetCondition::IfPresent,
        _ => return Err(invalid),
    };
    let reply = match (flags >> 2) & 0b11 {
        0 => SetReply::Ok,
        1 => SetReply::OldValue,
        2 => SetReply::Flag,
        _ => return Err(invalid),
    };
    let ttl = match (flags >> 4) & 0b11 {
        0 if flags >> 6 == 0 => SetTtl::Clear,
        1 if flags >> 6 == 0 => SetTtl::Keep,
        2 if flags >> 6 == 0 => SetTtl::Expire(decode_expiry(reader)?),
        _ => return Err(invalid),
    };
    Ok(WriteOp::Set {
        key: reader.bytes()?,
        value: reader.bytes()?,
        condition,
        reply,
        ttl,
    })
}

fn decode_pairs(reader: &mut Reader<'_>) -> Result<Vec<(bytes::Bytes, bytes::Bytes)>, DecodeError> {
    let count = decode_count(reader, 8)?;
    let pairs = (0..count)
        .map(|_| Ok((reader.bytes()?, reader.bytes()?)))
        .collect::<Result<_, super::Truncated>>()?;
    Ok(pairs)
}

fn decode_exec(reader: &mut Reader<'_>) -> Result<WriteOp, DecodeError> {
    let count = decode_count(reader, 9)?;
    let mut watches = Vec::with_capacity(count);
    for _ in 0..count {
        let db = decode_db(reader)?;
        let key = reader.bytes()?;
        let revision = match decode_bool(reader, "watch flag")? {
            true => Some(reader.u64()?),
            false => None,
        };
        watches.push(Watch { db, key, revision });
    }
    // Every item takes at least its kind, database and tag.
    let count = decode_count(reader, 6)?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let item = match reader.u8()? {
            ITEM_WRITE => TxItem::Write(decode_command(reader, true)?),
            ITEM_READ => TxItem::Read(read::decode_body(reader)?),
            value => {
                return Err(DecodeError::InvalidField {
                    what: "transaction item kind",
                    value,
                })
            }
        };
        items.push(item);
    }
    Ok(WriteOp::Exec { watches, items })
}
