//! The commands the state machine executes: writes (carried in the Raft log) and reads.

use bytes::Bytes;

/// When SET writes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SetCondition {
    /// Always (plain SET).
    Always,
    /// Only if the key does not exist (NX).
    IfAbsent,
    /// Only if the key exists (XX).
    IfPresent,
}

/// A write, replicated through the Raft log and applied by every node in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteCommand {
    /// SET; with `get`, the reply is the old value instead of OK.
    Set {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
        get: bool,
    },
    /// GETSET: set and reply with the old value.
    GetSet { key: Bytes, value: Bytes },
    /// DEL: reply with how many of the keys existed.
    Del { keys: Vec<Bytes> },
    /// INCR, INCRBY, DECR and DECRBY.
    IncrBy { key: Bytes, delta: i64 },
    /// APPEND: reply with the new length.
    Append { key: Bytes, value: Bytes },
    /// MSET: all pairs in one entry, so they apply atomically (later pairs win).
    MSet { pairs: Vec<(Bytes, Bytes)> },
}

/// A read of the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadCommand {
    Get {
        key: Bytes,
    },
    MGet {
        keys: Vec<Bytes>,
    },
    /// Counts keys that exist; a key named twice counts twice (as in Redis).
    Exists {
        keys: Vec<Bytes>,
    },
    StrLen {
        key: Bytes,
    },
    DbSize,
    /// Every key matching a glob pattern (over this node's local state).
    Keys {
        pattern: Bytes,
    },
    /// One page of a cursor scan; see [`crate::state_machine::keyspace`] for the cursor.
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        type_excludes_strings: bool,
    },
}
