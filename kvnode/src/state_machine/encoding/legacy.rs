//! Version-1 commands, written by builds before databases and expiry (and so found in
//! existing logs): decoded as commands on database 0 that clear TTLs as Redis does.
//!
//! ```text
//! command = 0x01 tag:u8 body
//! Set     tag 1: flags:u8 key value     flags bits 0-1 condition (0 always, 1 NX, 2 XX),
//!                                       bit 2 GET, others 0
//! GetSet  tag 2: key value
//! Del     tag 3: count:u32le key*
//! IncrBy  tag 4: key delta:i64le
//! Append  tag 5: key value
//! MSet    tag 6: count:u32le (key value)*
//! ```

use super::super::command::{DbIndex, SetCondition, SetReply, SetTtl, WriteCommand, WriteOp};
use super::super::wire::{Reader, Truncated};
use super::{decode_count, DecodeError};

/// Reads `tag body` of a version-1 command (the version byte already read).
pub(super) fn decode(reader: &mut Reader<'_>) -> Result<WriteCommand, DecodeError> {
    let op = match reader.u8()? {
        1 => {
            let flags = reader.u8()?;
            let condition = match flags & 0b11 {
                0 => SetCondition::Always,
                1 => SetCondition::IfAbsent,
                2 => SetCondition::IfPresent,
                _ => {
                    return Err(DecodeError::InvalidField {
                        what: "SET flags",
                        value: flags,
                    })
                }
            };
            if flags & !0b111 != 0 {
                return Err(DecodeError::InvalidField {
                    what: "SET flags",
                    value: flags,
                });
            }
            WriteOp::Set {
                key: reader.bytes()?,
                value: reader.bytes()?,
                condition,
                reply: if flags & 4 != 0 {
                    SetReply::OldValue
                } else {
                    SetReply::Ok
                },
                ttl: SetTtl::Clear,
            }
        }
        2 => WriteOp::Set {
            key: reader.bytes()?,
            value: reader.bytes()?,
            condition: SetCondition::Always,
            reply: SetReply::OldValue,
            ttl: SetTtl::Clear,
        },
        3 => {
            let count = decode_count(reader, 4)?;
            let keys = (0..count)
                .map(|_| reader.bytes())
                .collect::<Result<_, _>>()?;
            WriteOp::Del { keys }
        }
        4 => WriteOp::IncrBy {
            key: reader.bytes()?,
            delta: reader.i64()?,
        },
        5 => WriteOp::Append {
            key: reader.bytes()?,
            value: reader.bytes()?,
        },
        6 => {
            let count = decode_count(reader, 8)?;
            let pairs = (0..count)
                .map(|_| Ok((reader.bytes()?, reader.bytes()?)))
                .collect::<Result<_, Truncated>>()?;
            WriteOp::MSet { pairs }
        }
        tag => return Err(DecodeError::UnknownTag { tag }),
    };
    Ok(WriteCommand { db: DbIndex(0), op })
}
