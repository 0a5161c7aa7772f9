//! Read commands, as they appear inside a transaction (the only place a read is logged).
//!
//! ```text
//! read       = db:u32le tag:u8 body
//! Get         1: key
//! MGet        2: count:u32le key*
//! Exists      3: count:u32le key*
//! StrLen      4: key
//! GetRange    5: key start:i64le end:i64le
//! DbSize      6
//! Keys        7: pattern
//! Scan        8: cursor:u64le flags:u8 (bit 0 pattern follows, bit 1 TYPE excludes strings)
//!                [pattern] count:u32le
//! Ttl         9: unit:u8 (0 seconds, 1 milliseconds) key
//! ExpireTime 10: unit:u8 key
//! Type       11: key
//! RandomKey  12
//! Revision   13: key
//! Revisions  14: count:u32le key*
//! Time       15
//! Digest     16
//! Object     17: field:u8 (0 encoding, 1 refcount, 2 freq, 3 idletime) key
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::super::command::{ObjectField, ReadCommand, ReadOp, TimeUnit};
use super::super::wire::{put_bytes, put_count, Reader};
use super::{decode_count, decode_db, DecodeError};

const TAG_GET: u8 = 1;
const TAG_MGET: u8 = 2;
const TAG_EXISTS: u8 = 3;
const TAG_STRLEN: u8 = 4;
const TAG_GETRANGE: u8 = 5;
const TAG_DBSIZE: u8 = 6;
const TAG_KEYS: u8 = 7;
const TAG_SCAN: u8 = 8;
const TAG_TTL: u8 = 9;
const TAG_EXPIRETIME: u8 = 10;
const TAG_TYPE: u8 = 11;
const TAG_RANDOMKEY: u8 = 12;
const TAG_REVISION: u8 = 13;
const TAG_REVISIONS: u8 = 14;
const TAG_TIME: u8 = 15;
const TAG_DIGEST: u8 = 16;
const TAG_OBJECT: u8 = 17;

/// OBJECT's fields in their wire order.
const OBJECT_FIELDS: [ObjectField; 4] = [
    ObjectField::Encoding,
    ObjectField::RefCount,
    ObjectField::Freq,
    ObjectField::IdleTime,
];

/// Appends `db tag body`.
pub(super) fn encode_body(command: &ReadCommand, out: &mut BytesMut) {
    out.put_u32_le(command.db.0);
    let key = |out: &mut BytesMut, tag: u8, key: &[u8]| {
        out.put_u8(tag);
        put_bytes(out, key);
    };
    let keys = |out: &mut BytesMut, tag: u8, keys: &[Bytes]| {
        out.put_u8(tag);
        put_count(out, keys.len());
        keys.iter().for_each(|key| put_bytes(out, key));
    };
    let unit = |unit: TimeUnit| u8::from(unit == TimeUnit::Milliseconds);
    match &command.op {
        ReadOp::Get { key: k } => key(out, TAG_GET, k),
        ReadOp::MGet { keys: ks } => keys(out, TAG_MGET, ks),
        ReadOp::Exists { keys: ks } => keys(out, TAG_EXISTS, ks),
        ReadOp::StrLen { key: k } => key(out, TAG_STRLEN, k),
        ReadOp::GetRange { key: k, start, end } => {
            key(out, TAG_GETRANGE, k);
            out.put_i64_le(*start);
            out.put_i64_le(*end);
        }
        ReadOp::DbSize => out.put_u8(TAG_DBSIZE),
        ReadOp::Keys { pattern } => key(out, TAG_KEYS, pattern),
        ReadOp::Scan {
            cursor,
            pattern,
            count,
            type_excludes_strings,
        } => {
            out.put_u8(TAG_SCAN);
            out.put_u64_le(*cursor);
            out.put_u8(u8::from(pattern.is_some()) | u8::from(*type_excludes_strings) << 1);
            if let Some(pattern) = pattern {
                put_bytes(out, pattern);
            }
            put_count(out, *count);
        }
        ReadOp::Ttl { key: k, unit: u } => {
            out.put_u8(TAG_TTL);
            out.put_u8(unit(*u));
            put_bytes(out, k);
        }
        ReadOp::ExpireTime { key: k, unit: u } => {
            out.put_u8(TAG_EXPIRETIME);
            out.put_u8(unit(*u));
            put_bytes(out, k);
        }
        ReadOp::Type { key: k } => key(out, TAG_TYPE, k),
        ReadOp::RandomKey => out.put_u8(TAG_RANDOMKEY),
        ReadOp::Revision { key: k } => key(out, TAG_REVISION, k),
        ReadOp::Revisions { keys: ks } => keys(out, TAG_REVISIONS, ks),
        ReadOp::Time => out.put_u8(TAG_TIME),
        ReadOp::Digest => out.put_u8(TAG_DIGEST),
        ReadOp::Object { key: k, field } => {
            out.put_u8(TAG_OBJECT);
            let at = OBJECT_FIELDS
                .iter()
                .position(|known| known == field)
                .expect("every field is in OBJECT_FIELDS");
            out.put_u8(u8::try_from(at).expect("four fields"));
            put_bytes(out, k);
        }
    }
}

fn decode_keys(reader: &mut Reader<'_>) -> Result<Vec<Bytes>, DecodeError> {
    let count = decode_count(reader, 4)?;
    Ok((0..count)
        .map(|_| reader.bytes())
        .collect::<Result<_, _>>()?)
}

fn decode_unit(reader: &mut Reader<'_>) -> Result<TimeUnit, DecodeError> {
    match reader.u8()? {
        0 => Ok(TimeUnit::Seconds),
        1 => Ok(TimeUnit::Milliseconds),
        value => Err(DecodeError::InvalidField {
            what: "time unit",
            value,
        }),
    }
}

/// Reads `db tag body`.
pub(super) fn decode_body(reader: &mut Reader<'_>) -> Result<ReadCommand, DecodeError> {
    let db = decode_db(reader)?;
    let op = match reader.u8()? {
        TAG_GET => ReadOp::Get {
            key: reader.bytes()?,
        },
        TAG_MGET => ReadOp::MGet {
            keys: decode_keys(reader)?,
        },
        TAG_EXISTS => ReadOp::Exists {
            keys: decode_keys(reader)?,
        },
        TAG_STRLEN => ReadOp::StrLen {
            key: reader.bytes()?,
        },
        TAG_GETRANGE => ReadOp::GetRange {
            key: reader.bytes()?,
            start: reader.i64()?,
            end: reader.i64()?,
        },
        TAG_DBSIZE => ReadOp::DbSize,
        TAG_KEYS => ReadOp::Keys {
            pattern: reader.bytes()?,
        },
        TAG_SCAN => {
            let cursor = reader.u64()?;
            let flags = reader.u8()?;
            if flags & !0b11 != 0 {
                return Err(DecodeError::InvalidField {
                    what: "SCAN flags",
                    value: flags,
                });
            }
            let pattern = if flags & 1 != 0 {
                Some(reader.bytes()?)
            } else {
                None
            };
            ReadOp::Scan {
                cursor,
                pattern,
                count: usize::try_from(reader.u32()?).expect("u32 fits in usize"),
                type_excludes_strings: flags & 2 != 0,
            }
        }
        TAG_TTL => ReadOp::Ttl {
            unit: decode_unit(reader)?,
            key: reader.bytes()?,
        },
        TAG_EXPIRETIME => ReadOp::ExpireTime {
            unit: decode_unit(reader)?,
            key: reader.bytes()?,
        },
        TAG_TYPE => ReadOp::Type {
            key: reader.bytes()?,
        },
        TAG_RANDOMKEY => ReadOp::RandomKey,
        TAG_REVISION => ReadOp::Revision {
            key: reader.bytes()?,
        },
        TAG_REVISIONS => ReadOp::Revisions {
            keys: decode_keys(reader)?,
        },
        TAG_TIME => ReadOp::Time,
        TAG_DIGEST => ReadOp::Digest,
        TAG_OBJECT => {
            let value = reader.u8()?;
            let field =
                *OBJECT_FIELDS
                    .get(usize::from(value))
                    .ok_or(DecodeError::InvalidField {
                        what: "OBJECT field",
                        value,
                    })?;
            ReadOp::Object {
                field,
                key: reader.bytes()?,
            }
        }
        tag => return Err(DecodeError::UnknownTag { tag }),
    };
    Ok(ReadCommand { db, op })
}
