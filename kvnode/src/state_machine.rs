//! The replicated key-value state machine.
//!
//! Role: apply committed write commands in log order and answer reads, with Redis string
//! semantics, databases, expiry, revisions and transactions, and typed [`Reply`]s (no
//! protocol is spoken here); produce and restore snapshots; keep the member address book
//! and the ACL users ([`crate::acl::Users`], changed only by ACL SETUSER / DELUSER entries).
//!
//! Time (see COMMANDS.md, "Time"): apply never reads a clock. Each entry carries the
//! leader's stamp (Unix milliseconds, [`encoding`]); its *effective time* is
//! `max(stamp, the previous effective time)`, so time never goes back here whatever the
//! clocks do. A write judges expiry at its entry's effective time and turns relative TTLs
//! into absolute deadlines from it. A read is judged at the time the caller gives,
//! clamped to at least the applied effective time ([`StateMachine::read`]).
//!
//! Invariants and prohibitions:
//! - Deterministic: the state after applying entries 1..=i depends only on those entries.
//!   No clocks, no randomness (RANDOMKEY is seeded from the read), no node-local
//!   configuration: the one size cap applied here ([`VALUE_BYTES_MAX`]) is a constant, and
//!   databases are sparse, so replicas configured with different `databases` still agree.
//!   Iteration order (KEYS, SCAN, snapshots) is a fixed hash order ([`keyspace`]).
//! - Every index is applied exactly once, in order: `apply*` panics if handed any index
//!   but `applied_index() + 1` (a broken driver, not bad input).
//! - A command that fails by Redis' rules (INCR of a non-integer) is a *reply*, not a
//!   failure of the apply: the entry is still applied (as a no-op) and the index advances.
//! - A key past its deadline is gone for every command (logical expiry); it stays in
//!   memory until a write touches it or the leader's reclamation entry deletes it.
//! - Every key carries its modification revision: the index of the entry that last
//!   changed its value or deadline ([`databases`] adds a per-database floor).
//! - KEYS, SCAN and DBSIZE describe this node's local state; they are linearizable only
//!   when the server serves them after a ReadIndex.
//!
//! Module map: [`command`] (the command types), [`reply`] (their answers), [`encoding`]
//! (their log-entry bytes), [`keyspace`] (one database's map, order and deadline index),
//! [`databases`] (all of them), `strings`, `ttl`, `keys` and `transaction` (the commands,
//! by family), `float` (INCRBYFLOAT's digits), [`glob`] (patterns), [`members`] (the address
//! book's entry context), [`snapshot`] (the snapshot format), [`digest`] (comparing
//! replicas), `wire` (shared primitives).

pub mod command;
pub mod databases;
pub mod digest;
pub mod encoding;
mod float;
pub mod glob;
mod keys;
pub mod keyspace;
pub mod members;
pub mod object;
pub mod reply;
pub mod snapshot;
mod strings;
mod transaction;
mod ttl;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use raft_core::{LogIndex, NodeId};

use crate::acl::Users;
use crate::cmd::CommandError;

pub use command::{
    DbIndex, ExpireCondition, Expiry, GetExTtl, ObjectField, ReadCommand, ReadOp, SetCondition,
    SetReply, SetTtl, TimeUnit, TtlCommand, TxItem, Watch, WriteCommand, WriteOp, DATABASES_MAX,
};
pub use databases::{Database, Databases};
pub use encoding::{DecodeError, LogEntry};
pub use members::{MemberAddress, MembershipContext};
pub use reply::Reply;
pub use snapshot::SnapshotError;

/// Longest value the state machine will create (Redis' default proto-max-bulk-len). A
/// constant, not configuration: replicas configured differently must still agree.
pub const VALUE_BYTES_MAX: usize = 512 * 1024 * 1024;

/// True if `text` is a number INCRBYFLOAT accepts as an increment.
pub fn float_is_valid(text: &[u8]) -> bool {
    float::is_float(text)
}

/// When, and as which revision, a write applies.
#[derive(Copy, Clone, Debug)]
pub(crate) struct WriteAt {
    /// The entry's effective time, Unix milliseconds.
    pub now: u64,
    /// The entry's index (0 for a legacy entry, which had no revisions).
    pub revision: u64,
}

/// When a read is judged, and what seeds its random choices.
#[derive(Copy, Clone, Debug)]
pub(crate) struct ReadAt {
    pub now: u64,
    pub seed: u64,
}

/// The replicated databases plus the member address book.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateMachine {
    dbs: Databases,
    /// Invariant: the last index applied; never decreases, advances by exactly one.
    applied: LogIndex,
    /// Invariant: the effective time of the last stamped entry applied (Unix ms); never
    /// decreases.
    time_ms: u64,
    /// Addresses of the current members, by id.
    members: BTreeMap<NodeId, MemberAddress>,
    /// The ACL users. Shared with the connections (the raft loop publishes it): an ACL
    /// entry replaces it (copy on write), so a published table never changes.
    users: Arc<Users>,
}

impl StateMachine {
    /// An empty state machine at index 0.
    pub fn new() -> StateMachine {
        StateMachine::default()
    }

    /// The last log index applied (0 before any).
    pub fn applied_index(&self) -> LogIndex {
        self.applied
    }

    /// The effective time of the last stamped entry applied (Unix ms; 0 before any).
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// Keys stored in every database (keys past their deadline not yet reclaimed count).
    pub fn len(&self) -> usize {
        self.dbs.len()
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    /// The databases (for statistics, digests and the leader's reclamation scan).
    pub fn databases(&self) -> &Databases {
        &self.dbs
    }

    /// Applies a decoded log entry at `index` and returns the client's reply (which may
    /// be an error reply, e.g. INCR of a non-integer; the entry is applied either way).
    ///
    /// # Panics
    /// If `index` is not `applied_index() + 1`.
    pub fn apply_entry(&mut self, index: LogIndex, entry: &LogEntry) -> Reply {
        self.advance(index);
        let revision = match entry.stamp {
            Some(stamp) => {
                self.time_ms = self.time_ms.max(stamp);
                index.0
            }
            // A legacy entry has no stamp (time stands still) and no revisions.
            None => 0,
        };
        let at = WriteAt {
            now: self.time_ms,
            revision,
        };
        match &entry.command.op {
            WriteOp::AclSetUser { name, rules } => {
                return match Arc::make_mut(&mut self.users).set_user(index.0, name, rules) {
                    Ok(()) => Reply::Ok,
                    Err(refused) => Reply::Error(refused),
                };
            }
            WriteOp::AclDelUser { names } => {
                return match Arc::make_mut(&mut self.users).delete_users(names) {
                    Ok(deleted) => Reply::count(deleted),
                    Err(refused) => Reply::Error(refused),
                };
            }
            _ => {}
        }
        let reply = apply_write(&mut self.dbs, at, &entry.command);
        self.dbs.trim();
        reply
    }

    /// Advances past an entry that changes no data: a leader's blank entry, or a command
    /// entry that failed to decode (every replica sees the same bytes and skips it alike).
    ///
    /// # Panics
    /// If `index` is not `applied_index() + 1`.
    pub fn apply_blank(&mut self, index: LogIndex) {
        self.advance(index);
    }

    /// Applies a configuration entry: records the addresses in `context`, then forgets the
    /// addresses of nodes not in `members` (the new configuration's voters and learners).
    ///
    /// # Panics
    /// If `index` is not `applied_index() + 1`.
    pub fn apply_membership(
        &mut self,
        index: LogIndex,
        context: &MembershipContext,
        members: &BTreeSet<NodeId>,
    ) {
        self.advance(index);
        for (id, address) in &context.members {
            self.members.insert(*id, address.clone());
        }
        self.members.retain(|id, _| members.contains(id));
    }

    /// Replaces the address book: for `kvnode --restore` only, before the node starts,
    /// done alike on every node restored from one backup for one new cluster.
    pub fn reset_members(&mut self, members: &BTreeMap<NodeId, MemberAddress>) {
        self.members = members.clone();
    }

    /// The ACL users, as the entries applied so far define them.
    pub fn users(&self) -> &Arc<Users> {
        &self.users
    }

    /// Live keys and live keys with a TTL of each database holding any, judged at
    /// [`StateMachine::read_time`] of `clock`: O(databases × buckets), no per-key walk.
    pub fn keyspace(&self, clock: u64) -> Vec<crate::status::DbKeys> {
        let now = self.read_time(clock);
        self.dbs
            .iter()
            .filter_map(|(db, database)| {
                let expired = database.keys.count_expired(now);
                let keys = database.keys.len() - expired;
                (keys > 0).then(|| crate::status::DbKeys {
                    db: db.0,
                    keys: keys as u64,
                    expires: (database.keys.expiring() - expired) as u64,
                })
            })
            .collect()
    }

    /// The address book: every member whose address is known.
    pub fn members(&self) -> &BTreeMap<NodeId, MemberAddress> {
        &self.members
    }

    /// The time a read given `clock` (a leader's clock for a linearizable read, this
    /// node's for a stale one) is judged at: never before the applied effective time, so
    /// a read never sees a key that a write before it already found expired.
    pub fn read_time(&self, clock: u64) -> u64 {
        clock.max(self.time_ms)
    }

    /// Answers a read from the current state, judged at [`StateMachine::read_time`].
    pub fn read(&self, command: &ReadCommand, clock: u64) -> Reply {
        let now = self.read_time(clock);
        if let ReadOp::Digest = command.op {
            return digest::digest_reply(self, self.applied.0);
        }
        let at = ReadAt {
            now,
            seed: keyspace::splitmix64(self.applied.0 ^ now.rotate_left(32)),
        };
        read(&self.dbs, at, command)
    }

    /// The whole state as snapshot bytes (format in [`snapshot`]).
    pub fn snapshot(&self) -> Bytes {
        snapshot::write_snapshot(self)
    }

    /// Length of [`StateMachine::snapshot`]'s bytes, without producing them; O(databases).
    pub fn snapshot_len(&self) -> u64 {
        snapshot::snapshot_len(self)
    }

    /// Streams [`StateMachine::snapshot`]'s bytes to `out` through a bounded buffer.
    ///
    /// # Errors
    /// Whatever `out` returns.
    pub fn write_snapshot(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        snapshot::write_snapshot_to(self, out)
    }

    /// Rebuilds a state machine from [`StateMachine::snapshot`] bytes (this version's or
    /// version 1's).
    ///
    /// # Errors
    /// [`SnapshotError`] saying what is wrong with the bytes; never panics.
    pub fn restore(bytes: &[u8]) -> Result<StateMachine, SnapshotError> {
        let machine = snapshot::read_snapshot(bytes)?;
        if cfg!(debug_assertions) {
            machine.check_invariants();
        }
        Ok(machine)
    }

    /// Checks internal consistency (O(n)); for tests and debug builds.
    pub fn check_invariants(&self) {
        self.dbs.check_invariants();
        self.users.check_invariants();
        assert!(
            self.members.keys().all(|id| !id.is_none()),
            "address book holds node id 0"
        );
    }

    fn advance(&mut self, index: LogIndex) {
        let expected = self.applied.next();
        assert_eq!(
            index, expected,
            "applied {:?} next, expected {:?}",
            index, expected
        );
        self.applied = index;
    }
}

/// Applies one write (a transaction's items come back here, one by one).
pub(crate) fn apply_write(dbs: &mut Databases, at: WriteAt, command: &WriteCommand) -> Reply {
    let db = command.db;
    match &command.op {
        WriteOp::Set {
            key,
            value,
            condition,
            reply,
            ttl,
        } => strings::set(dbs, at, db, key, value, *condition, *reply, *ttl),
        WriteOp::GetDel { key } => strings::get_del(dbs, at, db, key),
        WriteOp::IncrBy { key, delta } => strings::incr_by(dbs, at, db, key, *delta),
        WriteOp::IncrByFloat { key, delta } => strings::incr_by_float(dbs, at, db, key, delta),
        WriteOp::Append { key, value } => strings::append(dbs, at, db, key, value),
        WriteOp::SetRange { key, offset, value } => {
            strings::set_range(dbs, at, db, key, *offset, value)
        }
        WriteOp::MSet { pairs } => strings::mset(dbs, at, db, pairs),
        WriteOp::MSetNx { pairs } => strings::mset_nx(dbs, at, db, pairs),
        WriteOp::GetEx { key, ttl } => ttl::get_ex(dbs, at, db, key, *ttl),
        WriteOp::Expire {
            key,
            expiry,
            condition,
        } => ttl::expire(dbs, at, db, key, *expiry, *condition),
        WriteOp::Persist { key } => ttl::persist(dbs, at, db, key),
        WriteOp::Reclaim { keys } => ttl::reclaim(dbs, at, keys),
        WriteOp::Del { keys } => keys::del(dbs, at, db, keys),
        WriteOp::Rename {
            from,
            to,
            only_if_absent,
        } => keys::rename(dbs, at, db, from, to, *only_if_absent),
        WriteOp::Copy {
            from,
            to_db,
            to,
            replace,
        } => keys::copy(dbs, at, db, from, *to_db, to, *replace),
        WriteOp::Move { key, to_db } => keys::move_key(dbs, at, db, key, *to_db),
        WriteOp::SwapDb { other } => {
            dbs.swap(db, *other, at.revision);
            Reply::Ok
        }
        WriteOp::FlushDb => {
            dbs.flush(db);
            Reply::Ok
        }
        WriteOp::FlushAll => {
            dbs.flush_all();
            Reply::Ok
        }
        WriteOp::Exec { watches, items } => transaction::exec(dbs, at, watches, items),
        // Applied by `StateMachine::apply_entry`; the encoding refuses them in a
        // transaction, the only other way here.
        WriteOp::AclSetUser { .. } | WriteOp::AclDelUser { .. } => {
            Reply::Error(CommandError::NotAllowedInTransaction)
        }
    }
}

/// Answers one read against `dbs` at `at`.
pub(crate) fn read(dbs: &Databases, at: ReadAt, command: &ReadCommand) -> Reply {
    let db = command.db;
    match &command.op {
        ReadOp::Get { key } => strings::get(dbs, at, db, key),
        ReadOp::MGet { keys } => Reply::Array(
            keys.iter()
                .map(|key| strings::get(dbs, at, db, key))
                .collect(),
        ),
        ReadOp::StrLen { key } => strings::strlen(dbs, at, db, key),
        ReadOp::GetRange { key, start, end } => strings::get_range(dbs, at, db, key, *start, *end),
        ReadOp::Ttl { key, unit } => ttl::ttl(dbs, at, db, key, *unit),
        ReadOp::ExpireTime { key, unit } => ttl::expire_time(dbs, at, db, key, *unit),
        ReadOp::Exists { keys } => keys::exists(dbs, at, db, keys),
        ReadOp::DbSize => keys::db_size(dbs, at, db),
        ReadOp::Keys { pattern } => keys::keys(dbs, at, db, pattern),
        ReadOp::Scan {
            cursor,
            pattern,
            count,
            type_excludes_strings,
        } => keys::scan(
            dbs,
            at,
            db,
            *cursor,
            pattern.as_deref(),
            *count,
            *type_excludes_strings,
        ),
        ReadOp::Type { key } => keys::key_type(dbs, at, db, key),
        ReadOp::RandomKey => keys::random_key(dbs, at, db),
        ReadOp::Revision { key } => dbs
            .live_revision(db, key, at.now)
            .map_or(Reply::Nil, |revision| {
                Reply::Integer(revision_reply(revision))
            }),
        ReadOp::Revisions { keys } => Reply::Array(
            keys.iter()
                .map(|key| {
                    dbs.live_revision(db, key, at.now)
                        .map_or(Reply::Nil, |revision| {
                            Reply::Integer(revision_reply(revision))
                        })
                })
                .collect(),
        ),
        ReadOp::Object { key, field } => object::object(dbs, at, db, key, *field),
        ReadOp::Time => {
            let seconds = at.now / 1000;
            let micros = (at.now % 1000) * 1000;
            Reply::Array(vec![
                Reply::bulk(seconds.to_string()),
                Reply::bulk(micros.to_string()),
            ])
        }
        // Inside a transaction: the databases' digest at the entry's time.
        ReadOp::Digest => Reply::bulk(digest::digest_hex(dbs, at.now)),
    }
}

/// Revisions are log indexes, far below `i64::MAX`.
fn revision_reply(revision: u64) -> i64 {
    i64::try_from(revision).expect("log indexes stay below 2^63")
}

#[cfg(test)]
mod tests;
