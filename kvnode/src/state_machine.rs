//! The replicated key-value state machine.
//!
//! Role: apply committed write commands in log order and answer reads, with Redis string
//! semantics and typed [`Reply`]s (no protocol is spoken here); produce and restore
//! snapshots; keep the member address book.
//!
//! Invariants and prohibitions:
//! - Deterministic: the state after applying entries 1..=i depends only on those entries.
//!   No clocks, no randomness, no node-local configuration: the one size cap applied here
//!   ([`VALUE_BYTES_MAX`]) is a constant so every replica decides APPEND alike. Iteration
//!   order (KEYS, SCAN, snapshots) is a fixed hash order ([`keyspace`]).
//! - Every index is applied exactly once, in order: `apply*` panics if handed any index
//!   but `applied_index() + 1` (a broken driver, not bad input).
//! - A command that fails by Redis' rules (INCR of a non-integer) is a *reply*, not a
//!   failure of the apply: the entry is still applied (as a no-op) and the index advances.
//! - KEYS, SCAN and DBSIZE describe this node's local state; they are linearizable only
//!   when the server serves them after a ReadIndex.
//!
//! Module map: [`command`] (the command types), [`reply`] (their answers), [`encoding`]
//! (their log-entry bytes), [`keyspace`] (the map and its order), [`glob`] (patterns),
//! [`members`] (the address book's entry context), [`snapshot`] (the snapshot format),
//! `wire` (shared primitives).

pub mod command;
pub mod encoding;
pub mod glob;
pub mod keyspace;
pub mod members;
pub mod reply;
pub mod snapshot;
mod wire;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use raft_core::{LogIndex, NodeId};

pub use command::{ReadCommand, SetCondition, WriteCommand};
pub use encoding::DecodeError;
pub use members::{MemberAddress, MembershipContext};
pub use reply::Reply;
pub use snapshot::SnapshotError;

use crate::cmd::CommandError;
use crate::resp::number::parse_i64;
use keyspace::KeySpace;

/// Longest value the state machine will create (Redis' default proto-max-bulk-len). A
/// constant, not configuration: replicas configured differently must still agree.
pub const VALUE_BYTES_MAX: usize = 512 * 1024 * 1024;

/// The replicated map plus the member address book.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateMachine {
    keys: KeySpace,
    /// Invariant: the last index applied; never decreases, advances by exactly one.
    applied: LogIndex,
    /// Addresses of the current members, by id.
    members: BTreeMap<NodeId, MemberAddress>,
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

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key exists.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Applies the write at `index` and returns the client's reply (which may be an error
    /// reply, e.g. INCR of a non-integer; the entry is applied either way).
    ///
    /// # Panics
    /// If `index` is not `applied_index() + 1`.
    pub fn apply(&mut self, index: LogIndex, command: &WriteCommand) -> Reply {
        self.advance(index);
        match command {
            WriteCommand::Set {
                key,
                value,
                condition,
                get,
            } => self.apply_set(key, value, *condition, *get),
            WriteCommand::GetSet { key, value } => self
                .keys
                .insert(key, value)
                .map_or(Reply::Nil, |old| Reply::Bulk(old.into_value())),
            WriteCommand::Del { keys } => {
                let removed = keys
                    .iter()
                    .filter(|key| self.keys.remove(key).is_some())
                    .count();
                Reply::count(removed)
            }
            WriteCommand::IncrBy { key, delta } => self.apply_incr_by(key, *delta),
            WriteCommand::Append { key, value } => self.apply_append(key, value),
            WriteCommand::MSet { pairs } => {
                for (key, value) in pairs {
                    self.keys.insert(key, value);
                }
                Reply::Ok
            }
        }
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

    /// The address book: every member whose address is known.
    pub fn members(&self) -> &BTreeMap<NodeId, MemberAddress> {
        &self.members
    }

    /// Answers a read from the current state.
    pub fn read(&self, command: &ReadCommand) -> Reply {
        let count = Reply::count;
        match command {
            ReadCommand::Get { key } => self.get_reply(key),
            ReadCommand::MGet { keys } => {
                Reply::Array(keys.iter().map(|key| self.get_reply(key)).collect())
            }
            ReadCommand::Exists { keys } => count(
                keys.iter()
                    .filter(|key| self.keys.get(key).is_some())
                    .count(),
            ),
            ReadCommand::StrLen { key } => {
                count(self.keys.get(key).map_or(0, |item| item.value().len()))
            }
            ReadCommand::DbSize => count(self.keys.len()),
            ReadCommand::Keys { pattern } => Reply::Array(
                self.keys
                    .keys_matching(pattern)
                    .into_iter()
                    .map(Reply::Bulk)
                    .collect(),
            ),
            ReadCommand::Scan {
                cursor,
                pattern,
                count,
                type_excludes_strings,
            } => {
                if *type_excludes_strings {
                    return Reply::Array(vec![Reply::bulk("0"), Reply::Array(Vec::new())]);
                }
                let (next, keys) = self.keys.scan(*cursor, *count, pattern.as_deref());
                let keys = keys.into_iter().map(Reply::Bulk).collect();
                Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(keys)])
            }
        }
    }

    /// The whole state as snapshot bytes (format in [`snapshot`]).
    pub fn snapshot(&self) -> Bytes {
        snapshot::write_snapshot(self)
    }

    /// Length of [`StateMachine::snapshot`]'s bytes, without producing them; O(members).
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

    /// Rebuilds a state machine from [`StateMachine::snapshot`] bytes.
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
        self.keys.check_invariants();
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

    fn get_reply(&self, key: &[u8]) -> Reply {
        self.keys
            .get(key)
            .map_or(Reply::Nil, |item| Reply::Bulk(item.clone().into_value()))
    }

    fn apply_set(
        &mut self,
        key: &Bytes,
        value: &Bytes,
        condition: SetCondition,
        get: bool,
    ) -> Reply {
        // A plain SET (the common case) looks the key up once, in the insert.
        let (old, write) = match condition {
            SetCondition::Always => (self.keys.insert(key, value), true),
            SetCondition::IfAbsent | SetCondition::IfPresent => {
                let old = self.keys.get(key).cloned();
                let write = match condition {
                    SetCondition::IfAbsent => old.is_none(),
                    _ => old.is_some(),
                };
                if write {
                    self.keys.insert(key, value);
                }
                (old, write)
            }
        };
        match (get, write) {
            (true, _) => old.map_or(Reply::Nil, |item| Reply::Bulk(item.into_value())),
            (false, true) => Reply::Ok,
            (false, false) => Reply::Nil,
        }
    }

    fn apply_incr_by(&mut self, key: &Bytes, delta: i64) -> Reply {
        let current = match self.keys.get(key) {
            None => 0,
            Some(item) => match parse_i64(item.value()) {
                Some(current) => current,
                None => return Reply::Error(CommandError::NotInteger),
            },
        };
        let Some(next) = current.checked_add(delta) else {
            return Reply::Error(CommandError::IncrementOverflow);
        };
        self.keys.insert(key, next.to_string().as_bytes());
        Reply::Integer(next)
    }

    fn apply_append(&mut self, key: &Bytes, suffix: &Bytes) -> Reply {
        let old = self.keys.get(key).map_or(&[][..], |item| item.value());
        let len = old.len().saturating_add(suffix.len());
        if len > VALUE_BYTES_MAX {
            return Reply::Error(CommandError::StringTooLong);
        }
        let mut joined = Vec::with_capacity(len);
        joined.extend_from_slice(old);
        joined.extend_from_slice(suffix);
        self.keys.insert(key, &joined);
        Reply::count(len)
    }
}

#[cfg(test)]
mod tests;
