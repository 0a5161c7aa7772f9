//! OBJECT ENCODING, REFCOUNT, FREQ and IDLETIME: how Redis would hold a string value.
//!
//! raftkv stores every value as bytes; the encoding reported is the one Redis picks for a
//! string it was given whole (`tryObjectEncoding`): `int` for a canonical 64-bit integer
//! of at most 20 characters, `embstr` up to 44 bytes, `raw` beyond. Redis also reports
//! `raw` for a short value it edited in place (APPEND, SETRANGE) and `embstr` for an
//! integer INCRBYFLOAT produced; raftkv judges by the bytes alone (COMMANDS.md).
//! REFCOUNT is Redis' shared-integer count (2147483647) for an `int` value in 0..10000,
//! else 1. FREQ answers Redis' error for a server without an LFU policy (raftkv evicts
//! nothing); IDLETIME is refused: reads do not touch the replicated state, so no node
//! knows when a key was last read.

use super::command::{DbIndex, ObjectField};
use super::databases::Databases;
use super::{ReadAt, Reply};
use crate::cmd::CommandError;
use crate::resp::number::parse_i64;

/// Redis' `OBJ_ENCODING_EMBSTR_SIZE_LIMIT`.
const EMBSTR_BYTES_MAX: usize = 44;
/// Redis' `OBJ_SHARED_INTEGERS`: integers below this share one object.
const SHARED_INTEGERS: i64 = 10_000;
/// Redis' `OBJ_SHARED_REFCOUNT` (`INT_MAX`).
const SHARED_REFCOUNT: i64 = 2_147_483_647;
/// Longest text Redis tries as an integer (`tryObjectEncoding`).
const INT_CHARS_MAX: usize = 20;

fn as_integer(value: &[u8]) -> Option<i64> {
    if value.len() > INT_CHARS_MAX {
        return None;
    }
    parse_i64(value)
}

/// The encoding Redis gives a string value it was handed whole.
pub fn encoding(value: &[u8]) -> &'static str {
    if as_integer(value).is_some() {
        "int"
    } else if value.len() <= EMBSTR_BYTES_MAX {
        "embstr"
    } else {
        "raw"
    }
}

pub(super) fn object(
    dbs: &Databases,
    at: ReadAt,
    db: DbIndex,
    key: &[u8],
    field: ObjectField,
) -> Reply {
    let Some(slot) = dbs.live(db, key, at.now) else {
        return Reply::Nil;
    };
    let value = slot.value();
    match field {
        ObjectField::Encoding => Reply::bulk(encoding(value)),
        ObjectField::RefCount => Reply::Integer(match as_integer(value) {
            Some(number) if (0..SHARED_INTEGERS).contains(&number) => SHARED_REFCOUNT,
            _ => 1,
        }),
        ObjectField::Freq => Reply::Error(CommandError::ObjectFreqNotTracked),
        ObjectField::IdleTime => Reply::Error(CommandError::ObjectIdleTimeNotTracked),
    }
}

#[cfg(test)]
mod tests {
    use super::encoding;

    #[test]
    fn encoding_follows_redis_thresholds() {
        let long_number = "1".repeat(21);
        let cases: [(&[u8], &str); 10] = [
            (b"0", "int"),
            (b"-42", "int"),
            (b"9223372036854775807", "int"),
            (b"9223372036854775808", "embstr"),
            (b"01", "embstr"),
            (b"+1", "embstr"),
            (b"", "embstr"),
            (long_number.as_bytes(), "embstr"),
            (&[b'x'; 44], "embstr"),
            (&[b'x'; 45], "raw"),
        ];
        for (value, expected) in cases {
            assert_eq!(
                encoding(value),
                expected,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
