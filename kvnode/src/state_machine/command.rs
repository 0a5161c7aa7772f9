//! The commands the state machine executes: writes (carried in the Raft log) and reads.
//!
//! Every command names its database ([`DbIndex`]): the connection's SELECTed one, fixed
//! when the command is parsed, so a forwarded write or a transaction carries it whole.
//! Times in commands are what the client gave (relative or absolute milliseconds); the
//! state machine turns them into deadlines from the entry's effective time at apply.

use bytes::Bytes;

/// A database number (`SELECT n`). The state machine holds any index below
/// [`DATABASES_MAX`]; the configured `databases` limits what clients may select.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DbIndex(pub u32);

/// The most databases any configuration may have: a constant of the state machine, so the
/// log encoding can refuse larger indexes on every replica alike.
pub const DATABASES_MAX: u32 = 1 << 16;

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

/// What SET answers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SetReply {
    /// OK, or nil if the condition failed (SET, SETEX, PSETEX, MSET).
    Ok,
    /// The old value or nil (SET ... GET, GETSET).
    OldValue,
    /// 1 if written, 0 if not (SETNX).
    Flag,
}

/// The command a time argument came from: its name appears in Redis' error text.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TtlCommand {
    Set,
    SetEx,
    PSetEx,
    GetEx,
    Expire,
    PExpire,
    ExpireAt,
    PExpireAt,
}

impl TtlCommand {
    /// Redis' lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            TtlCommand::Set => "set",
            TtlCommand::SetEx => "setex",
            TtlCommand::PSetEx => "psetex",
            TtlCommand::GetEx => "getex",
            TtlCommand::Expire => "expire",
            TtlCommand::PExpire => "pexpire",
            TtlCommand::ExpireAt => "expireat",
            TtlCommand::PExpireAt => "pexpireat",
        }
    }

    pub(super) const ALL: [TtlCommand; 8] = [
        TtlCommand::Set,
        TtlCommand::SetEx,
        TtlCommand::PSetEx,
        TtlCommand::GetEx,
        TtlCommand::Expire,
        TtlCommand::PExpire,
        TtlCommand::ExpireAt,
        TtlCommand::PExpireAt,
    ];
}

/// A time a client gave, as given: Redis checks its range only when the command runs
/// (after looking the key up, for GETEX), so the state machine does too, at apply.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// From the entry's effective time, or since the Unix epoch if `absolute`.
    pub value: i64,
    pub unit: TimeUnit,
    pub absolute: bool,
    pub command: TtlCommand,
}

/// What a SET does to the key's time to live.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SetTtl {
    /// Replaced values lose their TTL (plain SET, as in Redis).
    Clear,
    /// KEEPTTL.
    Keep,
    Expire(Expiry),
}

/// What GETEX does to the key's time to live.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GetExTtl {
    Persist,
    Expire(Expiry),
    /// The time was not an integer: Redis looks the key up first, so a missing key
    /// answers nil and an existing one `ERR value is not an integer or out of range`.
    NotInteger,
}

/// EXPIRE's NX / XX / GT / LT (XX combines with GT or LT; the parser refuses the rest).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpireCondition {
    /// NX: only if the key has no TTL.
    pub if_none: bool,
    /// XX: only if the key has a TTL.
    pub if_some: bool,
    /// GT: only if the new deadline is later (no TTL counts as infinite).
    pub if_greater: bool,
    /// LT: only if the new deadline is earlier (no TTL counts as infinite).
    pub if_less: bool,
}

/// A write, replicated through the Raft log and applied by every node in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteCommand {
    /// The database the command's keys are in (the first one for SWAPDB; the source for
    /// MOVE and COPY; unused by FLUSHALL, EXEC and reclamation).
    pub db: DbIndex,
    pub op: WriteOp,
}

/// The writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// SET, SETNX, SETEX, PSETEX, GETSET.
    Set {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
        reply: SetReply,
        ttl: SetTtl,
    },
    /// GETEX with an option (without one it is a read).
    GetEx {
        key: Bytes,
        ttl: GetExTtl,
    },
    GetDel {
        key: Bytes,
    },
    /// DEL and UNLINK: reply with how many of the keys existed.
    Del {
        keys: Vec<Bytes>,
    },
    /// INCR, INCRBY, DECR and DECRBY.
    IncrBy {
        key: Bytes,
        delta: i64,
    },
    /// INCRBYFLOAT; the increment as the client wrote it (checked to be a number).
    IncrByFloat {
        key: Bytes,
        delta: Bytes,
    },
    /// APPEND: reply with the new length.
    Append {
        key: Bytes,
        value: Bytes,
    },
    /// SETRANGE: reply with the new length.
    SetRange {
        key: Bytes,
        offset: u64,
        value: Bytes,
    },
    /// MSET: all pairs in one entry, so they apply atomically (later pairs win).
    MSet {
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// MSETNX: all pairs or none (if any key exists); reply 1 or 0.
    MSetNx {
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT.
    Expire {
        key: Bytes,
        expiry: Expiry,
        condition: ExpireCondition,
    },
    Persist {
        key: Bytes,
    },
    /// RENAME, or RENAMENX when `only_if_absent`.
    Rename {
        from: Bytes,
        to: Bytes,
        only_if_absent: bool,
    },
    /// COPY source destination [DB db] [REPLACE].
    Copy {
        from: Bytes,
        to_db: DbIndex,
        to: Bytes,
        replace: bool,
    },
    Move {
        key: Bytes,
        to_db: DbIndex,
    },
    /// SWAPDB db other.
    SwapDb {
        other: DbIndex,
    },
    FlushDb,
    FlushAll,
    /// The leader's batched deletion of expired keys: deletes each key only if it is
    /// still expired at this entry's time (a key rewritten meanwhile survives).
    Reclaim {
        keys: Vec<(DbIndex, Bytes)>,
    },
    /// EXEC: the transaction's commands, applied atomically in one entry unless a watched
    /// key changed since it was watched.
    Exec {
        watches: Vec<Watch>,
        items: Vec<TxItem>,
    },
    /// ACL SETUSER: the rules as logged (passwords already hashed: `#hash`, `!hash`).
    AclSetUser {
        name: Bytes,
        rules: Vec<Bytes>,
    },
    /// ACL DELUSER.
    AclDelUser {
        names: Vec<Bytes>,
    },
}

impl WriteOp {
    /// ACL SETUSER or DELUSER: applied to the users, never inside a transaction.
    pub fn is_acl(&self) -> bool {
        matches!(
            self,
            WriteOp::AclSetUser { .. } | WriteOp::AclDelUser { .. }
        )
    }
}

/// A key as WATCH saw it: its revision then, or absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    pub db: DbIndex,
    pub key: Bytes,
    pub revision: Option<u64>,
}

/// One command of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxItem {
    Write(WriteCommand),
    Read(ReadCommand),
}

/// What OBJECT reports about a key's value.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ObjectField {
    Encoding,
    RefCount,
    Freq,
    IdleTime,
}

/// Seconds or milliseconds, for TTL and EXPIRETIME.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Milliseconds,
}

/// A read of the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadCommand {
    pub db: DbIndex,
    pub op: ReadOp,
}

/// The reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOp {
    Get {
        key: Bytes,
    },
    MGet {
        keys: Vec<Bytes>,
    },
    /// Counts keys that exist; a key named twice counts twice (as in Redis). TOUCH too.
    Exists {
        keys: Vec<Bytes>,
    },
    StrLen {
        key: Bytes,
    },
    GetRange {
        key: Bytes,
        start: i64,
        end: i64,
    },
    DbSize,
    /// Every key matching a glob pattern.
    Keys {
        pattern: Bytes,
    },
    /// One page of a cursor scan; see [`crate::state_machine::keyspace`] for the cursor.
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        /// `TYPE t`: only `string` exists, so any other type matches nothing.
        type_excludes_strings: bool,
    },
    /// TTL and PTTL.
    Ttl {
        key: Bytes,
        unit: TimeUnit,
    },
    /// EXPIRETIME and PEXPIRETIME.
    ExpireTime {
        key: Bytes,
        unit: TimeUnit,
    },
    Type {
        key: Bytes,
    },
    RandomKey,
    /// REVISION key: the log index of the key's last change, or nil.
    Revision {
        key: Bytes,
    },
    /// WATCH's read: each key's revision or nil (not a client command).
    Revisions {
        keys: Vec<Bytes>,
    },
    /// OBJECT ENCODING | REFCOUNT | FREQ | IDLETIME key.
    Object {
        key: Bytes,
        field: ObjectField,
    },
    /// TIME: the read's time.
    Time,
    /// RAFTKV.DIGEST: a digest of this node's whole state (all databases).
    Digest,
}
