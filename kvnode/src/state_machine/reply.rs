//! What a command answers, as a value: the state machine's replies know no protocol.
//! [`crate::reply`] is the one place they become RESP frames, for RESP2 or RESP3.

use bytes::Bytes;

use crate::cmd::CommandError;

/// A command's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Success with nothing to say (`+OK`).
    Ok,
    /// A status word (`+string`, `+none` for TYPE).
    Simple(&'static str),
    /// No value: a missing key, a condition that did not hold.
    Nil,
    /// No array: EXEC of a transaction whose watched keys changed (`*-1` in RESP2).
    NilArray,
    Integer(i64),
    Bulk(Bytes),
    Array(Vec<Reply>),
    /// The command failed by Redis' rules (INCR of a non-integer); a write that fails
    /// this way was still applied, as a no-op.
    Error(CommandError),
}

impl Reply {
    /// A bulk reply copied from `data`.
    pub fn bulk(data: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(data.as_ref()))
    }

    /// A count as an integer reply.
    ///
    /// # Panics
    /// If `count` does not fit in an `i64` (no collection here comes near).
    pub fn count(count: usize) -> Reply {
        Reply::Integer(i64::try_from(count).expect("counts fit in i64"))
    }

    /// 1 or 0.
    pub fn flag(flag: bool) -> Reply {
        Reply::Integer(i64::from(flag))
    }
}
